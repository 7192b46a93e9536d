//! Applying committed entries to the engine: conditions are checked and
//! mutations staged in an overlay over one read view, so later batches of
//! the same apply call see earlier ones; then everything (data and
//! metadata) is committed in one engine transaction.

use std::collections::BTreeMap;

use openraft::EntryPayload;

use super::applied::Applied;
use super::types::{
    ConditionFailure, Entry, ProposalOutcome, StoredMembership, WriteBatch, WriteOutcome,
};
use crate::engine::keys::item_key;
use crate::engine::{ChangeSet, Engine, EngineError, Meta, ReadView, Stored};

/// Staged writes on top of a read view.
struct Overlay<'a> {
    view: &'a dyn ReadView,
    writes: BTreeMap<Vec<u8>, Option<Stored>>,
    meta: Meta,
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

    fn apply_batch(&mut self, batch: WriteBatch) -> Result<WriteOutcome, EngineError> {
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
}

/// Applies `entries` in order and commits the result; returns one outcome
/// per entry (empty for blank and membership entries).
pub fn apply_entries(
    engine: &dyn Engine,
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
            },
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m);
                ProposalOutcome::default()
            }
        };
        outcomes.push(outcome);
    }
    let Overlay {
        writes, mut meta, ..
    } = overlay;
    applied.record(&mut meta)?;
    drop(view);
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
    use crate::raft::types::{Condition, Mutation, Proposal};

    fn entry(index: u64, writes: Vec<WriteBatch>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal { writes }),
        }
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
        let out = apply_entries(&engine, vec![entry(1, vec![create, again, update])], false)
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
        let out =
            apply_entries(&engine, vec![entry(1, vec![refused, both])], false).expect("apply");
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
}
