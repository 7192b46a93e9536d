//! What a shard's Raft log carries: proposals of conditional write batches,
//! and what applying them returns.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::slots::{MoveId, SlotCommand, SlotCommandError};

/// A replica's Raft node id: its replica id in the shard map (1-based).
pub type NodeId = u64;

/// The Raft node descriptor: where the replica's gRPC server listens.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// openraft's type configuration for one shard's Raft group.
    pub TypeConfig:
        D = Proposal,
        R = ProposalOutcome,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = tokio::fs::File,
);

// declare_raft_types! names `Cursor` in its defaults even when they are
// overridden; keep it in scope.
#[allow(dead_code)]
type _CursorInScope = Cursor<Vec<u8>>;

/// One Raft log entry's payload: the write batches the proposer gathered
/// while the previous entry was being appended (group commit), or a change
/// of slot ownership (see `slots`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub writes: Vec<WriteBatch>,
    pub slot: Option<SlotCommand>,
}

impl Proposal {
    /// The bytes its mutations write: partitions, tables, keys and values.
    pub fn written_bytes(&self) -> u64 {
        let ingested = match &self.slot {
            Some(SlotCommand::Ingest { items, .. }) => {
                items.iter().map(|i| i.key.len() + i.value.len()).sum()
            }
            _ => 0,
        };
        let batches = self.writes.iter();
        let written: usize = batches
            .flat_map(|b| b.mutations.iter().map(move |m| (b, m)))
            .map(|(b, m)| {
                let partition = m.partition.as_ref().unwrap_or(&b.partition);
                partition.len() + m.table.len() + m.key.len() + m.value.as_ref().map_or(0, Vec::len)
            })
            .sum();
        (written + ingested) as u64
    }
}

/// An atomic conditional batch inside one shard (usually one partition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub partition: String,
    pub conditions: Vec<Condition>,
    pub mutations: Vec<Mutation>,
}

impl WriteBatch {
    /// The partitions its conditions and mutations name besides its own.
    pub fn other_partitions(&self) -> impl Iterator<Item = &str> {
        self.conditions
            .iter()
            .filter_map(|c| c.partition.as_deref())
            .chain(self.mutations.iter().filter_map(|m| m.partition.as_deref()))
    }
}

/// The item (table, key) of the batch's partition must have this version
/// (0 = must not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Another partition of the batch's shard; None = the batch's partition.
    pub partition: Option<String>,
    pub table: String,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub expected_version: u64,
}

/// Put (Some) or delete (None) one item of the batch's partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// Another partition of the batch's shard; None = the batch's partition.
    pub partition: Option<String>,
    pub table: String,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A condition that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionFailure {
    pub partition: String,
    pub table: String,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub expected_version: u64,
    pub actual_version: u64,
}

/// What applying one write batch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Every mutation was written at this revision.
    Applied { revision: u64 },
    /// Nothing was written.
    Rejected { failures: Vec<ConditionFailure> },
    /// Nothing was written: this shard does not own the partition's slot
    /// (`moving` None), or the slot is in a move (retry shortly).
    Refused {
        partition: String,
        slot: u32,
        moving: Option<MoveId>,
        map_version: u64,
    },
}

/// One outcome per write batch of the proposal, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalOutcome {
    pub outcomes: Vec<WriteOutcome>,
    /// What the slot command did, when the entry carried one.
    pub slot: Option<Result<(), SlotCommandError>>,
}

/// Shorthands for openraft's generic types over this config.
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageIoError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
