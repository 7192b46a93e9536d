//! The storage state machine's apply (`storage::raft::apply`) against a
//! model a reader can check by eye: a map from (table, partition, key) to
//! (version, value) and a revision counter. The input is a log of entries
//! (blank, or proposals of conditional batches) applied in several calls;
//! every outcome (applied at which revision, or rejected with which
//! failures), every item, the revision and the applied index must match
//! the model exactly. Names come from small alphabets chosen to collide if
//! the flat key encoding ever let them: `acme` and `acme/a`, `t` and `tu`,
//! keys with a NUL in them.

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use storage::engine::Engine;
use storage::engine::keys::item_key;
use storage::engine::memory::MemEngine;
use storage::raft::applied::Applied;
use storage::raft::apply::apply_entries;
use storage::raft::slots::{SlotCell, SlotTable};
use storage::raft::{
    Condition, ConditionFailure, Entry, Mutation, Proposal, ProposalOutcome, WriteBatch,
    WriteOutcome,
};

const PARTITIONS: [&str; 4] = ["acme/a", "acme/b", "acme", "acme/ab"];
const TABLES: [&str; 3] = ["t", "u", "tu"];
const KEYS: [&[u8]; 4] = [b"", b"a", b"a\0", b"\0a"];

fn partition(i: u8) -> String {
    PARTITIONS[usize::from(i) % PARTITIONS.len()].to_string()
}
fn table(i: u8) -> String {
    TABLES[usize::from(i) % TABLES.len()].to_string()
}
fn key(i: u8) -> Vec<u8> {
    KEYS[usize::from(i) % KEYS.len()].to_vec()
}

/// What a condition expects of its item.
#[derive(Debug, Arbitrary)]
enum Expect {
    /// The version the model holds now (so it passes, unless an earlier
    /// batch of the same entry changed it).
    Current,
    /// A given version (0 = absent).
    Exactly(u8),
}

#[derive(Debug, Arbitrary)]
struct ConditionIn {
    partition: Option<u8>,
    table: u8,
    key: u8,
    expect: Expect,
}

#[derive(Debug, Arbitrary)]
struct MutationIn {
    partition: Option<u8>,
    table: u8,
    key: u8,
    value: Option<u8>,
}

#[derive(Debug, Arbitrary)]
struct BatchIn {
    partition: u8,
    conditions: Vec<ConditionIn>,
    mutations: Vec<MutationIn>,
}

#[derive(Debug, Arbitrary)]
enum EntryIn {
    Blank,
    Proposal(Vec<BatchIn>),
}

/// Entries, and after which of them apply is called (a commit).
#[derive(Debug, Arbitrary)]
struct Input {
    entries: Vec<(EntryIn, bool)>,
    durable: bool,
}

type ItemKey = (String, String, Vec<u8>);

/// The model: what the state machine should hold.
#[derive(Debug, Default)]
struct Model {
    items: BTreeMap<ItemKey, (u64, Vec<u8>)>,
    revision: u64,
}

impl Model {
    fn version(&self, item: &ItemKey) -> u64 {
        self.items.get(item).map_or(0, |(v, _)| *v)
    }

    fn apply(&mut self, batch: &WriteBatch) -> WriteOutcome {
        let failures: Vec<_> = batch
            .conditions
            .iter()
            .filter_map(|c| {
                let partition = c
                    .partition
                    .clone()
                    .unwrap_or_else(|| batch.partition.clone());
                let actual = self.version(&(c.table.clone(), partition.clone(), c.key.clone()));
                (actual != c.expected_version).then(|| ConditionFailure {
                    partition,
                    table: c.table.clone(),
                    key: c.key.clone(),
                    expected_version: c.expected_version,
                    actual_version: actual,
                })
            })
            .collect();
        if !failures.is_empty() {
            return WriteOutcome::Rejected { failures };
        }
        if !batch.mutations.is_empty() {
            self.revision += 1;
        }
        for m in &batch.mutations {
            let partition = m
                .partition
                .clone()
                .unwrap_or_else(|| batch.partition.clone());
            let item = (m.table.clone(), partition, m.key.clone());
            match &m.value {
                Some(value) => self.items.insert(item, (self.revision, value.clone())),
                None => self.items.remove(&item),
            };
        }
        WriteOutcome::Applied {
            revision: self.revision,
        }
    }
}

/// Builds the storage batch; conditions that expect "current" read the
/// model as it is before the entry (what a proposer would have read).
fn batch(input: BatchIn, model: &Model) -> WriteBatch {
    let own = partition(input.partition);
    let conditions = input
        .conditions
        .into_iter()
        .map(|c| {
            let (table, key) = (table(c.table), key(c.key));
            let target = c.partition.map_or_else(|| own.clone(), partition);
            let expected_version = match c.expect {
                Expect::Current => model.version(&(table.clone(), target, key.clone())),
                Expect::Exactly(v) => u64::from(v),
            };
            Condition {
                partition: c.partition.map(partition),
                table,
                key,
                expected_version,
            }
        })
        .collect();
    let mutations = input
        .mutations
        .into_iter()
        .map(|m| Mutation {
            partition: m.partition.map(partition),
            table: table(m.table),
            key: key(m.key),
            value: m.value.map(|v| vec![v]),
        })
        .collect();
    WriteBatch {
        partition: own,
        conditions,
        mutations,
    }
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let engine = MemEngine::new();
    let mut model = Model::default();
    let mut pending: Vec<Entry> = Vec::new();
    let mut expected: Vec<ProposalOutcome> = Vec::new();
    let mut index = 0;
    for (entry, commit) in input.entries {
        index += 1;
        let payload = match entry {
            EntryIn::Blank => EntryPayload::Blank,
            EntryIn::Proposal(batches) => {
                let writes: Vec<_> = batches.into_iter().map(|b| batch(b, &model)).collect();
                let outcomes = writes.iter().map(|w| model.apply(w)).collect();
                expected.push(ProposalOutcome {
                    outcomes,
                    slot: None,
                });
                EntryPayload::Normal(Proposal { writes, slot: None })
            }
        };
        if matches!(payload, EntryPayload::Blank) {
            expected.push(ProposalOutcome::default());
        }
        pending.push(Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        });
        if commit {
            check_apply(
                &engine,
                std::mem::take(&mut pending),
                &mut expected,
                input.durable,
            );
        }
    }
    check_apply(&engine, pending, &mut expected, input.durable);
    check_state(&engine, &model, index);
}

/// A slot table owning every slot: the model knows nothing of moves.
fn every_slot() -> SlotCell {
    SlotCell::new(SlotTable::owning_range(1, 1024, 0, 1024))
}

fn check_apply(
    engine: &MemEngine,
    entries: Vec<Entry>,
    expected: &mut Vec<ProposalOutcome>,
    durable: bool,
) {
    if entries.is_empty() {
        return;
    }
    let got = match apply_entries(engine, &every_slot(), entries, durable) {
        Ok(got) => got,
        Err(e) => panic!("apply failed on the in-memory engine: {e}"),
    };
    assert_eq!(
        got,
        std::mem::take(expected),
        "outcomes differ from the model's"
    );
}

#[allow(clippy::expect_used)] // the in-memory engine does not fail
fn check_state(engine: &MemEngine, model: &Model, last_index: u64) {
    let view = engine.read().expect("read view");
    let meta = view.meta().expect("meta");
    assert_eq!(meta.revision, model.revision, "revision");
    let applied = Applied::of(&meta).expect("applied");
    assert_eq!(applied.index(), last_index, "applied index");
    assert_eq!(
        view.len().expect("len"),
        model.items.len() as u64,
        "item count"
    );
    for t in TABLES {
        for p in PARTITIONS {
            for k in KEYS {
                let got = view.get(&item_key(t, p, k)).expect("get");
                let want = model.items.get(&(t.to_string(), p.to_string(), k.to_vec()));
                assert_eq!(
                    got.map(|s| (s.version, s.value)),
                    want.cloned(),
                    "item ({t}, {p}, {k:?})"
                );
            }
        }
    }
}

/// Hand-made logs: creates, conditional updates, a cross-partition batch,
/// a rejected batch, deletes, several commits.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        vec![
            1, 1, 0, 1, 0, 0, 2, 1, 0, 0, 7, 1, 0, 1, 1, 0, 1, 3, 0, 0, 1,
        ],
        vec![
            1, 3, 1, 0, 1, 1, 2, 1, 0, 1, 1, 9, 1, 0, 0, 1, 2, 0, 2, 3, 0, 0, 0, 1, 1,
        ],
        (0u8..64).collect(),
        (0u8..64).rev().collect(),
    ]
}
