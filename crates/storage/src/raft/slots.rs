//! Which slots this shard owns, as its own Raft log says.
//!
//! Ownership is state-machine state, not configuration: it changes only
//! through slot commands committed in the shard's log, so every replica
//! agrees on it at every log index, and a write is checked against it when
//! it is *applied*, not only when it arrives. A write that raced a move
//! (checked in the handler while the slot was owned, committed after the
//! slot was frozen) is refused when applied, and changes nothing.
//!
//! A slot is in one of four states on each shard:
//! - not owned: requests for it get WRONG_SHARD;
//! - owned: served;
//! - frozen (on the source of a move): refused with SLOT_MOVING, which is
//!   retryable; the data stays until the move releases it;
//! - importing (on the destination): refused with SLOT_MOVING; only the
//!   move's own ingests write to it.
//!
//! A move goes: the destination imports (slots importing, no data), the
//! source freezes (everything written before the freeze is what gets
//! copied; nothing is written after it), the copy is ingested in chunks,
//! the destination activates (slots owned), the source releases (slots not
//! owned, its copy of their data deleted). Before the destination
//! activates, a move can be undone: the source unfreezes, the destination
//! abandons (its partial copy deleted). See docs/partitioning.md.
//!
//! The table is stored under one reserved engine key that no item can have
//! (tables are never empty), written only when it changes; a shard that
//! never took part in a move has no such key and owns what the static
//! shard map gave it.

use std::sync::Arc;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storage_api::shard_map::{ShardId, ShardSpec, slot_of};
use tokio::sync::watch;

use crate::engine::{EngineError, ReadView};

/// A move's id, chosen by whoever drives it; every step names it, so a step
/// repeated (a retried RPC, a resumed driver) does nothing new.
pub type MoveId = u64;

/// The engine key the table is stored under: the flat key of table "",
/// partition "", key "slots" — tables must not be empty, so no item has it.
pub const SLOT_TABLE_KEY: &[u8] = b"\0\0slots";

/// One slot's state on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotState {
    NotOwned,
    Owned,
    /// The source side of a move: refused (retryable), data kept.
    Frozen(MoveId),
    /// The destination side of a move: refused (retryable), being copied in.
    Importing(MoveId),
}

/// Every slot's state on this shard, and the newest shard-map version the
/// shard has taken part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTable {
    pub map_version: u64,
    pub states: Vec<SlotState>,
    /// Where each slot this shard released went, and at which map version:
    /// the redirect a WRONG_SHARD carries (as Redis Cluster's MOVED).
    pub moved_to: BTreeMap<u32, (ShardId, u64)>,
    /// Shards added to the running cluster, in id order: kept by shard 0
    /// only, whose log is where the list of shards lives (the map file
    /// lists the shards a cluster started with).
    pub added_shards: Vec<ShardSpec>,
}

/// Whether a partition may be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Serve,
    NotOwned {
        slot: u32,
        /// The shard it went to and the map version since, if it left here.
        moved_to: Option<(ShardId, u64)>,
    },
    Moving {
        slot: u32,
        move_id: MoveId,
    },
}

/// A change of ownership, committed in the shard's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotCommand {
    /// Destination: these slots (not owned here) start importing.
    Import { move_id: MoveId, slots: Vec<u32> },
    /// Destination: items copied from the source (flat engine keys, with
    /// the versions the source gave them). Each must be in an importing
    /// slot of this move. Idempotent.
    Ingest {
        move_id: MoveId,
        items: Vec<IngestItem>,
    },
    /// Destination: the move's slots are owned from now on.
    Activate { move_id: MoveId, map_version: u64 },
    /// Destination, undoing a move: its slots are not owned, the partial
    /// copy is deleted.
    Abandon { move_id: MoveId },
    /// Source: these owned slots are frozen for the move.
    Freeze { move_id: MoveId, slots: Vec<u32> },
    /// Source, undoing a move: its frozen slots are owned again.
    Unfreeze { move_id: MoveId },
    /// Source, after the destination activated: its frozen slots are not
    /// owned any more (they are on `to_shard`), and their data here is
    /// deleted.
    Release {
        move_id: MoveId,
        map_version: u64,
        to_shard: ShardId,
    },
    /// Shard 0: a shard joins the cluster (its replicas running, owning
    /// nothing). Repeating it with the same replicas changes nothing.
    AddShard { shard: ShardSpec },
}

/// One copied item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestItem {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub version: u64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Why a slot command was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{0}")]
pub struct SlotCommandError(pub String);

/// What a slot command leaves for the apply step to do with the data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataEffect {
    /// Slots whose items on this shard are to be deleted.
    pub drop_slots: Vec<u32>,
}

impl SlotTable {
    /// A table owning `[start, end)` of `slot_count` slots.
    pub fn owning_range(map_version: u64, slot_count: u32, start: u32, end: u32) -> Self {
        let states = (0..slot_count.max(1))
            .map(|s| {
                if (start..end).contains(&s) {
                    SlotState::Owned
                } else {
                    SlotState::NotOwned
                }
            })
            .collect();
        Self {
            map_version,
            states,
            moved_to: BTreeMap::new(),
            added_shards: Vec::new(),
        }
    }

    /// How many slots the map has.
    pub fn slot_count(&self) -> u32 {
        u32::try_from(self.states.len()).unwrap_or(u32::MAX)
    }

    /// The slot a partition hashes to.
    pub fn slot(&self, partition: &str) -> u32 {
        slot_of(partition, self.slot_count())
    }

    /// The state of one slot (NotOwned outside the table).
    pub fn state(&self, slot: u32) -> SlotState {
        self.states
            .get(slot as usize)
            .copied()
            .unwrap_or(SlotState::NotOwned)
    }

    /// Whether a partition may be served here now.
    pub fn access(&self, partition: &str) -> Access {
        self.access_slot(self.slot(partition))
    }

    /// Whether a slot may be served here now.
    pub fn access_slot(&self, slot: u32) -> Access {
        match self.state(slot) {
            SlotState::Owned => Access::Serve,
            SlotState::NotOwned => Access::NotOwned {
                slot,
                moved_to: self.moved_to.get(&slot).copied(),
            },
            SlotState::Frozen(move_id) | SlotState::Importing(move_id) => {
                Access::Moving { slot, move_id }
            }
        }
    }

    /// Whether an ingested item's partition is importing for `move_id`.
    pub fn importing(&self, partition: &str, move_id: MoveId) -> bool {
        self.state(self.slot(partition)) == SlotState::Importing(move_id)
    }

    /// The owned slots as `[start, end)` ranges, in order.
    pub fn owned_ranges(&self) -> Vec<(u32, u32)> {
        ranges(&self.states, |s| s == SlotState::Owned)
    }

    /// Slots in a move, whatever their side: (slot, state).
    pub fn moving(&self) -> Vec<(u32, SlotState)> {
        (0..self.slot_count())
            .map(|s| (s, self.state(s)))
            .filter(|(_, st)| matches!(st, SlotState::Frozen(_) | SlotState::Importing(_)))
            .collect()
    }

    /// Applies a slot command to the table (Ingest only checks that the
    /// move is importing something). Refused commands change nothing.
    pub fn apply(&mut self, command: &SlotCommand) -> Result<DataEffect, SlotCommandError> {
        let mut next = self.clone();
        let effect = next.apply_in_place(command)?;
        *self = next;
        Ok(effect)
    }

    fn apply_in_place(&mut self, command: &SlotCommand) -> Result<DataEffect, SlotCommandError> {
        use SlotState::{Frozen, Importing, NotOwned, Owned};
        match command {
            SlotCommand::Import { move_id, slots } => {
                self.change(slots, |st| match st {
                    NotOwned => Some(Importing(*move_id)),
                    Importing(m) if m == *move_id => Some(st),
                    _ => None,
                })?;
                Ok(DataEffect::default())
            }
            SlotCommand::Freeze { move_id, slots } => {
                self.change(slots, |st| match st {
                    Owned => Some(Frozen(*move_id)),
                    Frozen(m) if m == *move_id => Some(st),
                    _ => None,
                })?;
                Ok(DataEffect::default())
            }
            SlotCommand::Ingest { move_id, .. } => {
                if self.slots_in(Importing(*move_id)).is_empty() {
                    return Err(SlotCommandError(format!(
                        "move {move_id} is importing nothing on this shard"
                    )));
                }
                Ok(DataEffect::default())
            }
            SlotCommand::Activate {
                move_id,
                map_version,
            } => {
                self.settle(Importing(*move_id), Owned, Some(*map_version));
                Ok(DataEffect::default())
            }
            SlotCommand::Unfreeze { move_id } => {
                self.settle(Frozen(*move_id), Owned, None);
                Ok(DataEffect::default())
            }
            SlotCommand::Abandon { move_id } => Ok(DataEffect {
                drop_slots: self.settle(Importing(*move_id), NotOwned, None),
            }),
            SlotCommand::Release {
                move_id,
                map_version,
                to_shard,
            } => {
                let drop_slots = self.settle(Frozen(*move_id), NotOwned, Some(*map_version));
                for &slot in &drop_slots {
                    self.moved_to.insert(slot, (*to_shard, *map_version));
                }
                Ok(DataEffect { drop_slots })
            }
            SlotCommand::AddShard { shard } => {
                self.add_shard(shard)?;
                Ok(DataEffect::default())
            }
        }
    }

    /// Lists a new shard (idempotent); a different shard under a listed id
    /// is refused.
    fn add_shard(&mut self, shard: &ShardSpec) -> Result<(), SlotCommandError> {
        match self.added_shards.iter().find(|s| s.id == shard.id) {
            Some(listed) if listed.replicas == shard.replicas => Ok(()),
            Some(listed) => Err(SlotCommandError(format!(
                "shard {} is already listed, with replicas {:?}",
                listed.id, listed.replicas
            ))),
            None => {
                self.added_shards.push(shard.clone());
                self.added_shards.sort_by_key(|s| s.id);
                Ok(())
            }
        }
    }

    /// Moves every slot listed through `step` (None = refused), all or none.
    fn change(
        &mut self,
        slots: &[u32],
        step: impl Fn(SlotState) -> Option<SlotState>,
    ) -> Result<(), SlotCommandError> {
        if slots.is_empty() {
            return Err(SlotCommandError("a move needs at least one slot".into()));
        }
        let mut next = self.states.clone();
        for &slot in slots {
            let state = self.state(slot);
            let to = step(state)
                .filter(|_| slot < self.slot_count())
                .ok_or_else(|| {
                    SlotCommandError(format!("slot {slot} is {state:?} on this shard"))
                })?;
            next[slot as usize] = to;
        }
        self.states = next;
        Ok(())
    }

    /// Every slot in `from` goes to `to`; returns those slots. Repeating it
    /// finds none, so a repeated step is a no-op.
    fn settle(&mut self, from: SlotState, to: SlotState, map_version: Option<u64>) -> Vec<u32> {
        let slots = self.slots_in(from);
        for &slot in &slots {
            self.states[slot as usize] = to;
        }
        if let Some(v) = map_version {
            self.map_version = self.map_version.max(v);
        }
        slots
    }

    fn slots_in(&self, wanted: SlotState) -> Vec<u32> {
        (0..self.slot_count())
            .filter(|&s| self.state(s) == wanted)
            .collect()
    }

    /// Encodes the table for the engine.
    pub fn encode(&self) -> Result<Vec<u8>, EngineError> {
        postcard::to_stdvec(self).map_err(|e| EngineError::new("encode the slot table", e))
    }

    /// The table stored in `view`, if one was ever stored.
    pub fn stored(view: &dyn ReadView) -> Result<Option<Self>, EngineError> {
        view.get(SLOT_TABLE_KEY)?
            .map(|s| {
                postcard::from_bytes(&s.value)
                    .map_err(|e| EngineError::new("decode the slot table", e))
            })
            .transpose()
    }
}

/// `[start, end)` runs of slots whose state passes `keep`.
fn ranges(states: &[SlotState], keep: impl Fn(SlotState) -> bool) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for (i, st) in states.iter().enumerate() {
        let slot = u32::try_from(i).unwrap_or(u32::MAX);
        if !keep(*st) {
            continue;
        }
        match out.last_mut() {
            Some((_, end)) if *end == slot => *end = slot + 1,
            _ => out.push((slot, slot + 1)),
        }
    }
    out
}

/// Slot ranges as text, e.g. `0..100, 300..341` (empty: `none`).
pub fn show_ranges(ranges: &[(u32, u32)]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges
        .iter()
        .map(|(a, b)| format!("{a}..{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The live table, shared by the state machine (which sets it as it
/// applies) and the request handlers (which read it).
#[derive(Debug, Clone)]
pub struct SlotCell {
    /// What the static shard map gives, for an engine with no stored table.
    initial: Arc<SlotTable>,
    current: Arc<watch::Sender<Arc<SlotTable>>>,
}

impl SlotCell {
    /// A cell starting at the static map's table.
    pub fn new(initial: SlotTable) -> Self {
        let initial = Arc::new(initial);
        let (current, _) = watch::channel(initial.clone());
        Self {
            initial,
            current: Arc::new(current),
        }
    }

    /// The table as last applied.
    pub fn current(&self) -> Arc<SlotTable> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every table published from now on (tests wait
    /// on it for a command to be applied).
    pub fn subscribe(&self) -> watch::Receiver<Arc<SlotTable>> {
        self.current.subscribe()
    }

    /// Sets the table.
    pub fn set(&self, table: SlotTable) {
        self.current.send_replace(Arc::new(table));
    }

    /// Sets the table from what `view` holds (the initial one if nothing).
    pub fn load(&self, view: &dyn ReadView) -> Result<(), EngineError> {
        let table = SlotTable::stored(view)?.unwrap_or_else(|| (*self.initial).clone());
        self.set(table);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
