//! Applying committed entries to the engine: ownership is checked, then
//! conditions, and mutations staged in an overlay over one read view, so
//! later batches of the same apply call see earlier ones; then everything
//! (data, metadata and a changed slot table) is committed in one engine
//! transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::EntryPayload;

use super::applied::Applied;
use super::slots::{
    Access, IngestItem, MoveId, SLOT_TABLE_KEY, SlotCell, SlotCommand, SlotCommandError, SlotTable,
};
use super::types::{
    ConditionFailure, Entry, ProposalOutcome, StoredMembership, WriteBatch, WriteOutcome,
};
use crate::engine::keys::{item_key, split_key};
use crate::engine::{ChangeSet, Engine, EngineError, Meta, ReadView, Stored};

/// Staged writes on top of a read view.
struct Overlay<'a> {
    view: &'a dyn ReadView,
    writes: BTreeMap<Vec<u8>, Option<Stored>>,
    meta: Meta,
    /// The slot table as of the view, and as changed by slot commands of
    /// this apply call (copied only when one changes it).
    slots: Arc<SlotTable>,
    changed_slots: Option<SlotTable>,
}

impl Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError> {
        match self.writes.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.view.get(key),
        }
    }

    fn version(&self, key: &[u8]) -> Result<u64, EngineError> {
        Ok(self.get(key)?.map_or(0, |s| s.version))
    }

    fn slot_table(&self) -> &SlotTable {
        self.changed_slots.as_ref().unwrap_or(&self.slots)
    }

    /// The first partition of the batch this shard may not write now.
    fn refusal(&self, batch: &WriteBatch) -> Option<WriteOutcome> {
        let table = self.slot_table();
        std::iter::once(batch.partition.as_str())
            .chain(batch.other_partitions())
            .find_map(|partition| match table.access(partition) {
                Access::Serve => None,
                Access::NotOwned { slot, .. } => Some(WriteOutcome::Refused {
                    partition: partition.to_string(),
                    slot,
                    moving: None,
                    map_version: table.map_version,
                }),
                Access::Moving { slot, move_id } => Some(WriteOutcome::Refused {
                    partition: partition.to_string(),
                    slot,
                    moving: Some(move_id),
                    map_version: table.map_version,
                }),
            })
    }

    fn apply_batch(&mut self, batch: WriteBatch) -> Result<WriteOutcome, EngineError> {
        // Checked here, at apply time, and not only by the handler: a write
        // that raced a freeze is refused by every replica alike.
        if let Some(refused) = self.refusal(&batch) {
            return Ok(refused);
        }
        let mut failures = Vec::new();
        for c in batch.conditions {
            let partition = c.partition.unwrap_or_else(|| batch.partition.clone());
            let actual = self.version(&item_key(&c.table, &partition, &c.key))?;
            if actual != c.expected_version {
                failures.push(ConditionFailure {
                    partition,
                    table: c.table,
                    key: c.key,
                    expected_version: c.expected_version,
                    actual_version: actual,
                });
            }
        }
        if !failures.is_empty() {
            return Ok(WriteOutcome::Rejected { failures });
        }
        if batch.mutations.is_empty() {
            return Ok(WriteOutcome::Applied {
                revision: self.meta.revision,
            });
        }
        self.meta.revision += 1;
        let revision = self.meta.revision;
        for m in batch.mutations {
            let stored = m.value.map(|value| Stored {
                version: revision,
                value,
            });
            let partition = m.partition.as_deref().unwrap_or(&batch.partition);
            self.writes
                .insert(item_key(&m.table, partition, &m.key), stored);
        }
        Ok(WriteOutcome::Applied { revision })
    }

    /// Applies one slot command; a refused one changes nothing.
    fn apply_slot_command(
        &mut self,
        command: SlotCommand,
    ) -> Result<Result<(), SlotCommandError>, EngineError> {
        let mut table = self.slot_table().clone();
        let effect = match table.apply(&command) {
            Ok(effect) => effect,
            Err(refused) => return Ok(Err(refused)),
        };
        if let SlotCommand::Ingest { move_id, items } = command
            && let Err(refused) = self.ingest(&table, move_id, items)
        {
            return Ok(Err(refused));
        }
        if !effect.drop_slots.is_empty() {
            self.drop_slots(&table, &effect.drop_slots)?;
        }
        self.changed_slots = Some(table);
        Ok(Ok(()))
    }

    /// Writes copied items, with the versions the source gave them. The
    /// revision is raised past every one of them, so a version this shard
    /// hands out later can never equal an older copied one.
    fn ingest(
        &mut self,
        table: &SlotTable,
        move_id: MoveId,
        items: Vec<IngestItem>,
    ) -> Result<(), SlotCommandError> {
        for item in &items {
            let importing = split_key(&item.key)
                .filter(|(t, _, _)| !t.is_empty())
                .is_some_and(|(_, partition, _)| table.importing(partition, move_id));
            if !importing {
                return Err(SlotCommandError(format!(
                    "an ingested item of move {move_id} is not in a slot it imports"
                )));
            }
        }
        for item in items {
            self.meta.revision = self.meta.revision.max(item.version);
            let stored = Stored {
                version: item.version,
                value: item.value,
            };
            self.writes.insert(item.key, Some(stored));
        }
        Ok(())
    }

    /// Deletes every item of these slots: committed ones and staged ones.
    fn drop_slots(&mut self, table: &SlotTable, slots: &[u32]) -> Result<(), EngineError> {
        let mut dropped = vec![false; table.slot_count() as usize];
        for &slot in slots {
            if let Some(d) = dropped.get_mut(slot as usize) {
                *d = true;
            }
        }
        let in_dropped = |key: &[u8]| {
            split_key(key)
                .filter(|(t, _, _)| !t.is_empty())
                .is_some_and(|(_, partition, _)| {
                    dropped
                        .get(table.slot(partition) as usize)
                        .copied()
                        .unwrap_or(false)
                })
        };
        let mut doomed = Vec::new();
        for item in self.view.iter_all()? {
            let (key, _) = item?;
            if in_dropped(&key) {
                doomed.push(key);
            }
        }
        doomed.extend(self.writes.keys().filter(|k| in_dropped(k)).cloned());
        for key in doomed {
            self.writes.insert(key, None);
        }
        Ok(())
    }
}

/// Applies `entries` in order and commits the result; returns one outcome
/// per entry (empty for blank and membership entries). A changed slot
/// table is published to `slots` before the commit, so a reader that sees
/// the commit's data also sees the table that allowed it (see kv.rs).
pub fn apply_entries(
    engine: &dyn Engine,
    slots: &SlotCell,
    entries: Vec<Entry>,
    durable: bool,
) -> Result<Vec<ProposalOutcome>, EngineError> {
    let view = engine.read()?;
    let meta = view.meta()?;
    let mut applied = Applied::of(&meta)?;
    let mut overlay = Overlay {
        view: view.as_ref(),
        writes: BTreeMap::new(),
        meta,
        slots: slots.current(),
        changed_slots: None,
    };
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        applied.last_applied = Some(entry.log_id);
        let outcome = match entry.payload {
            EntryPayload::Blank => ProposalOutcome::default(),
            EntryPayload::Normal(proposal) => ProposalOutcome {
                outcomes: proposal
                    .writes
                    .into_iter()
                    .map(|b| overlay.apply_batch(b))
                    .collect::<Result<_, _>>()?,
                slot: proposal
                    .slot
                    .map(|c| overlay.apply_slot_command(c))
                    .transpose()?,
            },
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m);
                ProposalOutcome::default()
            }
        };
        outcomes.push(outcome);
    }
    let Overlay {
        mut writes,
        mut meta,
        changed_slots,
        ..
    } = overlay;
    applied.record(&mut meta)?;
    drop(view);
    if let Some(table) = changed_slots {
        let stored = Stored {
            version: 0,
            value: table.encode()?,
        };
        writes.insert(SLOT_TABLE_KEY.to_vec(), Some(stored));
        slots.set(table);
    }
    engine.commit(ChangeSet {
        writes,
        meta,
        durable,
    })?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::engine::memory::MemEngine;
    use crate::raft::slots::IngestItem;
    use crate::raft::types::{Condition, Mutation, Proposal};

    fn entry(index: u64, writes: Vec<WriteBatch>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal { writes, slot: None }),
        }
    }

    /// A slot table owning every slot.
    fn everything() -> SlotCell {
        SlotCell::new(SlotTable::owning_range(1, 1024, 0, 1024))
    }

    fn put(table: &str, key: &str, value: &str) -> Mutation {
        Mutation {
            partition: None,
            table: table.into(),
            key: key.into(),
            value: Some(value.into()),
        }
    }

    fn expect(table: &str, key: &str, version: u64) -> Condition {
        Condition {
            partition: None,
            table: table.into(),
            key: key.into(),
            expected_version: version,
        }
    }

    fn batch(conditions: Vec<Condition>, mutations: Vec<Mutation>) -> WriteBatch {
        WriteBatch {
            partition: "acme/a".into(),
            conditions,
            mutations,
        }
    }

    #[test]
    fn later_batches_see_earlier_ones_and_conditions_gate_everything() {
        let engine = MemEngine::new();
        let create = batch(
            vec![expect("account", "", 0)],
            vec![put("account", "", "v1")],
        );
        let again = batch(
            vec![expect("account", "", 0)],
            vec![put("account", "", "v2"), put("idem", "r", "x")],
        );
        let update = batch(
            vec![expect("account", "", 1)],
            vec![put("account", "", "v3")],
        );
        let out = apply_entries(
            &engine,
            &everything(),
            vec![entry(1, vec![create, again, update])],
            false,
        )
        .expect("apply");
        let outcomes = &out[0].outcomes;
        assert_eq!(outcomes[0], WriteOutcome::Applied { revision: 1 });
        assert_eq!(
            outcomes[1],
            WriteOutcome::Rejected {
                failures: vec![ConditionFailure {
                    partition: "acme/a".into(),
                    table: "account".into(),
                    key: vec![],
                    expected_version: 0,
                    actual_version: 1,
                }]
            }
        );
        assert_eq!(outcomes[2], WriteOutcome::Applied { revision: 2 });
        let view = engine.read().expect("read");
        let account = view.get(&item_key("account", "acme/a", b"")).expect("get");
        assert_eq!(
            account.map(|s| (s.version, s.value)),
            Some((2, b"v3".to_vec()))
        );
        assert_eq!(
            view.get(&item_key("idem", "acme/a", b"r")).expect("get"),
            None,
            "rejected batch wrote nothing"
        );
        let meta = view.meta().expect("meta");
        assert_eq!((meta.revision, view.len().expect("len")), (2, 1));
        assert_eq!(Applied::of(&meta).expect("applied").index(), 1);
    }

    #[test]
    fn a_batch_may_span_partitions_atomically() {
        let engine = MemEngine::new();
        let mut debit = put("account", "", "a-90");
        debit.partition = Some("acme/a".into());
        let mut credit = put("account", "", "b-10");
        credit.partition = Some("acme/b".into());
        let mut b_absent = expect("account", "", 7);
        b_absent.partition = Some("acme/b".into());
        let refused = batch(vec![b_absent], vec![debit.clone(), credit.clone()]);
        let both = batch(vec![], vec![debit, credit]);
        let out = apply_entries(
            &engine,
            &everything(),
            vec![entry(1, vec![refused, both])],
            false,
        )
        .expect("apply");
        assert!(
            matches!(&out[0].outcomes[0], WriteOutcome::Rejected { failures } if failures[0].partition == "acme/b")
        );
        assert_eq!(out[0].outcomes[1], WriteOutcome::Applied { revision: 1 });
        let view = engine.read().expect("read");
        for (p, v) in [("acme/a", "a-90"), ("acme/b", "b-10")] {
            let got = view
                .get(&item_key("account", p, b""))
                .expect("get")
                .expect("written");
            assert_eq!(got.value, v.as_bytes());
        }
    }

    #[test]
    fn deletes_count_keys_down() {
        let engine = MemEngine::new();
        let add = batch(vec![], vec![put("t", "a", "1"), put("t", "b", "2")]);
        let del = batch(
            vec![],
            vec![Mutation {
                partition: None,
                table: "t".into(),
                key: b"a".to_vec(),
                value: None,
            }],
        );
        apply_entries(
            &engine,
            &everything(),
            vec![entry(1, vec![add]), entry(2, vec![del])],
            true,
        )
        .expect("apply");
        let view = engine.read().expect("read");
        assert_eq!(
            (
                view.meta().expect("meta").revision,
                view.len().expect("len")
            ),
            (2, 1)
        );
    }

    fn command(index: u64, command: SlotCommand) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal {
                writes: vec![],
                slot: Some(command),
            }),
        }
    }

    fn slot_of_a(cell: &SlotCell) -> u32 {
        cell.current().slot("acme/a")
    }

    #[test]
    fn a_write_racing_a_freeze_is_refused_when_applied() {
        let engine = MemEngine::new();
        let cell = everything();
        let slot = slot_of_a(&cell);
        let freeze = SlotCommand::Freeze {
            move_id: 4,
            slots: vec![slot],
        };
        let write = batch(vec![], vec![put("account", "", "v1")]);
        let out = apply_entries(
            &engine,
            &cell,
            vec![command(1, freeze), entry(2, vec![write])],
            false,
        )
        .expect("apply");
        assert_eq!(out[0].slot, Some(Ok(())));
        assert_eq!(
            out[1].outcomes[0],
            WriteOutcome::Refused {
                partition: "acme/a".into(),
                slot,
                moving: Some(4),
                map_version: 1,
            }
        );
        let view = engine.read().expect("read");
        assert_eq!(
            view.get(&item_key("account", "acme/a", b"")).expect("get"),
            None
        );
        assert_eq!(
            SlotTable::stored(view.as_ref()).expect("stored"),
            Some((*cell.current()).clone()),
            "the table is stored with the data and published"
        );
    }

    #[test]
    fn ingested_items_keep_their_versions_and_raise_the_revision() {
        let engine = MemEngine::new();
        let cell = SlotCell::new(SlotTable::owning_range(1, 1024, 0, 0));
        let slot = slot_of_a(&cell);
        let key = item_key("account", "acme/a", b"");
        let item = IngestItem {
            key: key.clone(),
            version: 41,
            value: b"copied".to_vec(),
        };
        let stray = IngestItem {
            key: item_key("account", "acme/other", b""),
            ..item.clone()
        };
        let steps = vec![
            command(
                1,
                SlotCommand::Import {
                    move_id: 2,
                    slots: vec![slot],
                },
            ),
            command(
                2,
                SlotCommand::Ingest {
                    move_id: 2,
                    items: vec![item.clone(), stray],
                },
            ),
            command(
                3,
                SlotCommand::Ingest {
                    move_id: 2,
                    items: vec![item],
                },
            ),
            command(
                4,
                SlotCommand::Activate {
                    move_id: 2,
                    map_version: 2,
                },
            ),
            entry(
                5,
                vec![batch(
                    vec![expect("account", "", 41)],
                    vec![put("account", "", "v2")],
                )],
            ),
        ];
        let out = apply_entries(&engine, &cell, steps, false).expect("apply");
        assert!(
            matches!(&out[1].slot, Some(Err(e)) if e.0.contains("not in a slot")),
            "an item outside the move's slots refuses the whole chunk: {:?}",
            out[1].slot
        );
        assert_eq!(out[2].slot, Some(Ok(())));
        assert_eq!(out[4].outcomes[0], WriteOutcome::Applied { revision: 42 });
        let view = engine.read().expect("read");
        let got = view.get(&key).expect("get").expect("present");
        assert_eq!((got.version, got.value), (42, b"v2".to_vec()));
    }

    #[test]
    fn a_release_deletes_the_slots_data_and_nothing_else() {
        let engine = MemEngine::new();
        let cell = everything();
        let a = slot_of_a(&cell);
        let mut other = batch(vec![], vec![put("account", "", "b")]);
        other.partition = (0..)
            .map(|i| format!("acme/{i}"))
            .find(|p| cell.current().slot(p) != a)
            .unwrap_or_default();
        let steps = vec![
            entry(
                1,
                vec![
                    batch(
                        vec![],
                        vec![put("account", "", "a"), put("entry", "1", "e")],
                    ),
                    other.clone(),
                ],
            ),
            command(
                2,
                SlotCommand::Freeze {
                    move_id: 8,
                    slots: vec![a],
                },
            ),
            command(
                3,
                SlotCommand::Release {
                    move_id: 8,
                    map_version: 3,
                    to_shard: 1,
                },
            ),
        ];
        apply_entries(&engine, &cell, steps, true).expect("apply");
        let view = engine.read().expect("read");
        assert_eq!(
            view.get(&item_key("account", "acme/a", b"")).expect("get"),
            None
        );
        assert_eq!(
            view.get(&item_key("entry", "acme/a", b"1")).expect("get"),
            None
        );
        assert!(
            view.get(&item_key("account", &other.partition, b""))
                .expect("get")
                .is_some()
        );
        assert_eq!(cell.current().map_version, 3);
    }
}
