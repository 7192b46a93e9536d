//! The driver of a slot move: it runs on the node that got `MoveSlots` and
//! walks each step through the two shards' leaders (Admin `ChangeSlots` and
//! `ExportSlots`). It keeps no state of its own: every step is committed
//! in a shard's Raft log, so a driver that dies leaves slots frozen or
//! importing under a move id, and the next driver finishes or undoes that
//! move from what the shards say (`recover`) before it starts its own.
//!
//! One step, for a few slots from `source` to `dest` (docs/partitioning.md):
//! 1. dest imports the slots (refuses clients for them, takes copies);
//! 2. source freezes them: from here on, requests for them get
//!    SLOT_MOVING, so what the source holds now is final;
//! 3. the source's items of those slots are copied, a page at a time, each
//!    page one Raft-committed ingest on dest (idempotent);
//! 4. dest activates them at a new map version: it owns them;
//! 5. source releases them: WRONG_SHARD from now on, its copy deleted.
//!
//! A failure before 4 undoes the step (dest abandons, source unfreezes);
//! once 4 may have happened, the step only goes forward.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use storage_api::shard_map::{ShardId, ShardMap, ShardSpec};
use storage_api::v1 as pb;
use storage_api::wire_errors::{Fault, fault};
use tonic::{Code, Status};

use crate::directory::list_shards;
use crate::grpc::peers::Peers;
use crate::node::StorageNode;

/// How long one call to a shard may keep trying its replicas.
const STEP_PATIENCE: Duration = Duration::from_secs(10);
/// How long one call to one replica may take (an ingest of a full page
/// is one Raft round on the destination).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between tries when a shard has no leader to answer.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Slots per step when the request does not say.
pub const DEFAULT_SLOTS_PER_STEP: usize = 8;

/// What one shard's leader says about its slots.
#[derive(Debug, Clone)]
struct ShardSlots {
    map_version: u64,
    owned: BTreeSet<u32>,
    /// move id → (slots, side: "source" or "destination").
    moving: BTreeMap<u64, (Vec<u32>, String)>,
}

/// Drives moves between the shards of the cluster (the node's directory,
/// refreshed from shard 0 before each move, so a shard added since this
/// node started is a valid destination).
#[derive(Debug, Clone)]
pub struct MoveDriver {
    node: StorageNode,
    peers: Peers,
}

fn shard_of(map: &ShardMap, id: ShardId) -> Result<&ShardSpec, Status> {
    map.shard(id).ok_or_else(|| {
        Status::invalid_argument(format!(
            "there is no shard {id}: the map has shards 0..{}",
            map.shards.len()
        ))
    })
}

impl MoveDriver {
    /// A driver on `node`, reaching the shards through `peers`.
    pub fn new(node: StorageNode, peers: Peers) -> Self {
        Self { node, peers }
    }

    /// The shards as this node knows them now.
    fn map(&self) -> ShardMap {
        self.node.directory.current()
    }

    /// Moves `slots` to shard `to`, `per_step` slots at a time.
    pub async fn move_slots(
        &self,
        slots: Vec<u32>,
        to: ShardId,
        per_step: usize,
    ) -> Result<pb::MoveSlotsResponse, Status> {
        let map = list_shards(&self.node, &self.peers).await;
        shard_of(&map, to)?;
        let wanted: BTreeSet<u32> = slots.into_iter().collect();
        if wanted.is_empty() {
            return Err(Status::invalid_argument("name at least one slot to move"));
        }
        if let Some(bad) = wanted.iter().find(|s| **s >= map.slots) {
            return Err(Status::invalid_argument(format!(
                "slot {bad} does not exist: slots are 0..{}",
                map.slots
            )));
        }
        let recovered = self.recover().await?;
        let shards = self.survey().await?;
        let mut version = shards.values().map(|s| s.map_version).max().unwrap_or(0);
        let mut steps = Vec::new();
        for (from, group) in plan(&shards, &wanted, to)? {
            for chunk in group.chunks(per_step.max(1)) {
                version += 1;
                steps.push(self.step(from, to, chunk.to_vec(), version).await?);
            }
        }
        Ok(pb::MoveSlotsResponse {
            map_version: version,
            steps,
            recovered,
        })
    }

    /// One step: freeze, copy, activate, release (see the module doc).
    async fn step(
        &self,
        from: ShardId,
        to: ShardId,
        slots: Vec<u32>,
        version: u64,
    ) -> Result<pb::MoveStep, Status> {
        let move_id = new_move_id();
        let list = || pb::SlotList {
            slots: slots.clone(),
        };
        self.change(to, move_id, pb::change_slots_request::Step::Import(list()))
            .await?;
        if let Err(e) = self
            .change(
                from,
                move_id,
                pb::change_slots_request::Step::Freeze(list()),
            )
            .await
        {
            self.undo(from, to, move_id).await;
            return Err(e);
        }
        let frozen_at = Instant::now();
        let (items, bytes) = match self.copy(from, to, move_id).await {
            Ok(copied) => copied,
            Err(e) => {
                self.undo(from, to, move_id).await;
                return Err(e);
            }
        };
        // From here on only forward: the activation may have committed
        // even if its answer is lost.
        self.change(
            to,
            move_id,
            pb::change_slots_request::Step::Activate(version),
        )
        .await?;
        let pause = frozen_at.elapsed();
        self.change(
            from,
            move_id,
            pb::change_slots_request::Step::Release(pb::ReleaseSlots {
                map_version: version,
                to_shard: to,
            }),
        )
        .await?;
        tracing::info!(move_id, from, to, ?slots, items, ?pause, "moved slots");
        Ok(pb::MoveStep {
            move_id,
            from_shard: from,
            to_shard: to,
            slots,
            items,
            bytes,
            pause_micros: u64::try_from(pause.as_micros()).unwrap_or(u64::MAX),
            map_version: version,
        })
    }

    /// Copies every item of the move's frozen slots; returns (items, bytes).
    async fn copy(&self, from: ShardId, to: ShardId, move_id: u64) -> Result<(u64, u64), Status> {
        let mut after = Vec::new();
        let (mut items, mut bytes) = (0u64, 0u64);
        loop {
            let request = pb::ExportSlotsRequest {
                shard_id: from,
                move_id,
                start_after: after.clone().into(),
            };
            let page = self
                .on_leader(from, |mut admin| {
                    let request = request.clone();
                    async move { admin.export_slots(request).await }
                })
                .await?;
            let Some(last) = page.items.last() else {
                return Ok((items, bytes));
            };
            after = last.key.to_vec();
            items += page.items.len() as u64;
            bytes += page
                .items
                .iter()
                .map(|i| (i.key.len() + i.value.len()) as u64)
                .sum::<u64>();
            let more = page.more;
            self.change(to, move_id, pb::change_slots_request::Step::Ingest(page))
                .await?;
            if !more {
                return Ok((items, bytes));
            }
        }
    }

    /// Undoes a step that has not activated: best effort, as `recover`
    /// does the same for whatever this leaves.
    async fn undo(&self, from: ShardId, to: ShardId, move_id: u64) {
        let abandon = pb::change_slots_request::Step::Abandon(true);
        let unfreeze = pb::change_slots_request::Step::Unfreeze(true);
        for (shard, step) in [(to, abandon), (from, unfreeze)] {
            if let Err(e) = self.change(shard, move_id, step).await {
                tracing::warn!(move_id, shard, error = %e, "could not undo a move step; the next move recovers it");
            }
        }
    }

    /// Finishes or undoes moves an earlier driver left half done.
    async fn recover(&self) -> Result<Vec<String>, Status> {
        let shards = self.survey().await?;
        let mut report = Vec::new();
        let moves: BTreeSet<u64> = shards
            .values()
            .flat_map(|s| s.moving.keys().copied())
            .collect();
        for move_id in moves {
            let side = |wanted: &str| {
                shards.iter().find_map(|(id, s)| {
                    s.moving
                        .get(&move_id)
                        .filter(|(_, side)| side == wanted)
                        .map(|(slots, _)| (*id, slots.clone()))
                })
            };
            let (source, dest) = (side("source"), side("destination"));
            report.push(self.settle(&shards, move_id, source, dest).await?);
        }
        Ok(report)
    }

    /// Settles one half-done move; returns what was done.
    async fn settle(
        &self,
        shards: &BTreeMap<ShardId, ShardSlots>,
        move_id: u64,
        source: Option<(ShardId, Vec<u32>)>,
        dest: Option<(ShardId, Vec<u32>)>,
    ) -> Result<String, Status> {
        use pb::change_slots_request::Step;
        if let Some((to, _)) = &dest {
            // Not activated yet: undo it (the source unfreezes below).
            self.change(*to, move_id, Step::Abandon(true)).await?;
        }
        let Some((from, slots)) = source else {
            return Ok(format!("move {move_id}: abandoned its partial copy"));
        };
        let new_owner = shards
            .iter()
            .find(|(id, s)| **id != from && slots.iter().all(|slot| s.owned.contains(slot)));
        match (dest, new_owner) {
            (None, Some((to, s))) => {
                let release = pb::ReleaseSlots {
                    map_version: s.map_version,
                    to_shard: *to,
                };
                self.change(from, move_id, Step::Release(release)).await?;
                Ok(format!(
                    "move {move_id}: shard {to} had taken slots {slots:?} over; shard {from} released them"
                ))
            }
            _ => {
                self.change(from, move_id, Step::Unfreeze(true)).await?;
                Ok(format!(
                    "move {move_id}: undone; shard {from} owns slots {slots:?} again"
                ))
            }
        }
    }

    /// Every shard's slots, from its leader.
    async fn survey(&self) -> Result<BTreeMap<ShardId, ShardSlots>, Status> {
        let mut out = BTreeMap::new();
        for shard in &self.map().shards {
            let status = self
                .on_leader(shard.id, |mut admin| async move {
                    admin.node_status(pb::NodeStatusRequest {}).await
                })
                .await?;
            out.insert(shard.id, shard_slots(&status));
        }
        Ok(out)
    }

    pub(crate) async fn change(
        &self,
        shard: ShardId,
        move_id: u64,
        step: pb::change_slots_request::Step,
    ) -> Result<(), Status> {
        let request = pb::ChangeSlotsRequest {
            shard_id: shard,
            move_id,
            step: Some(step),
        };
        self.on_leader(shard, |mut admin| {
            let request = request.clone();
            async move { admin.change_slots(request).await }
        })
        .await
        .map(|_| ())
    }

    /// Calls `call` on `shard`'s leader: follows NOT_LEADER hints, tries
    /// the next replica on anything retryable, for up to STEP_PATIENCE.
    /// NodeStatus is answered by any replica, so the survey asks until one
    /// says it leads.
    async fn on_leader<T, F, Fut>(&self, shard: ShardId, call: F) -> Result<T, Status>
    where
        F: Fn(storage_api::v1::admin_client::AdminClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
        T: LeaderAnswer,
    {
        let spec = shard_of(&self.map(), shard)?.clone();
        let deadline = Instant::now() + STEP_PATIENCE;
        let mut at = 0usize;
        let mut last = Status::unavailable(format!("shard {shard} was not asked"));
        while Instant::now() < deadline {
            let replica = &spec.replicas[at % spec.replicas.len()];
            let answer = match self.peers.admin(shard, replica) {
                Ok(admin) => tokio::time::timeout(CALL_TIMEOUT, call(admin))
                    .await
                    .unwrap_or_else(|_| Err(Status::unavailable("no answer in time"))),
                Err(e) => Err(Status::unavailable(e)),
            };
            match answer {
                Ok(response) if response.get_ref().is_leaders() => {
                    return Ok(response.into_inner());
                }
                Ok(_) => last = Status::unavailable(format!("shard {shard}: no leader yet")),
                Err(status) => {
                    if let Fault::NotLeader {
                        leader_id: Some(id),
                        ..
                    } = fault(&status)
                        && let Some(i) = spec.replicas.iter().position(|r| r.id == id)
                        && i != at % spec.replicas.len()
                    {
                        at = i;
                        continue;
                    }
                    if !matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) {
                        return Err(status);
                    }
                    last = status;
                }
            }
            at += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(Status::unavailable(format!(
            "shard {shard} did not answer the move within {STEP_PATIENCE:?}: {}",
            last.message()
        )))
    }
}

/// Whether an answer came from the shard's leader (only NodeStatus can
/// come from a follower; every other step is refused there).
trait LeaderAnswer {
    fn is_leaders(&self) -> bool {
        true
    }
}

impl LeaderAnswer for pb::NodeStatus {
    fn is_leaders(&self) -> bool {
        self.role == "Leader"
    }
}
impl LeaderAnswer for pb::ChangeSlotsResponse {}
impl LeaderAnswer for pb::ExportSlotsResponse {}

fn shard_slots(status: &pb::NodeStatus) -> ShardSlots {
    let mut moving: BTreeMap<u64, (Vec<u32>, String)> = BTreeMap::new();
    for m in &status.moving {
        let entry = moving
            .entry(m.move_id)
            .or_insert_with(|| (Vec::new(), m.side.clone()));
        entry.0.push(m.slot);
    }
    ShardSlots {
        map_version: status.map_version,
        owned: status
            .owned_slots
            .iter()
            .flat_map(|r| r.start..r.end)
            .collect(),
        moving,
    }
}

/// The wanted slots grouped by their owner now, leaving out those `to`
/// owns already.
fn plan(
    shards: &BTreeMap<ShardId, ShardSlots>,
    wanted: &BTreeSet<u32>,
    to: ShardId,
) -> Result<BTreeMap<ShardId, Vec<u32>>, Status> {
    let mut groups: BTreeMap<ShardId, Vec<u32>> = BTreeMap::new();
    for &slot in wanted {
        let owner = shards
            .iter()
            .find(|(_, s)| s.owned.contains(&slot))
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "no shard owns slot {slot} right now (is it in a move?); try again"
                ))
            })?;
        if owner != to {
            groups.entry(owner).or_default().push(slot);
        }
    }
    Ok(groups)
}

/// A move id no other driver picks: the wall clock in microseconds.
fn new_move_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(owned: std::ops::Range<u32>) -> ShardSlots {
        ShardSlots {
            map_version: 1,
            owned: owned.collect(),
            moving: BTreeMap::new(),
        }
    }

    #[test]
    fn a_plan_groups_slots_by_owner_and_skips_the_destinations_own() {
        let shards = BTreeMap::from([(0, shard(0..4)), (1, shard(4..8))]);
        let wanted = BTreeSet::from([1, 2, 5, 6]);
        let groups = plan(&shards, &wanted, 1).expect("plan");
        assert_eq!(groups, BTreeMap::from([(0, vec![1, 2])]));
    }

    #[test]
    fn a_slot_nobody_owns_is_refused() {
        let shards = BTreeMap::from([(0, shard(0..4))]);
        let err = plan(&shards, &BTreeSet::from([6]), 0).expect_err("unowned");
        assert_eq!(err.code(), Code::FailedPrecondition);
    }
}
