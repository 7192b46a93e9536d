//! Ports: what the use cases need from storage and from the clock. Plain
//! traits; the adapters implement them.
//!
//! Storage is seen as a store of domain records with optimistic
//! concurrency: every record has a version (0 = absent); a `Change` lists
//! its conditions (the versions records must still have) and the records it
//! writes, and commits atomically only if every condition holds. A change may only touch
//! records that live together (`Store::colocated`): one account's records
//! always do; two accounts' records do when they share a storage shard.

use std::future::Future;
use std::time::SystemTime;

pub use super::time_budget::TimeBudget;

use crate::domain::{
    Account, AccountId, AccountKey, DomainError, Entry, Inbound, PendingMark, Receipt, RequestId,
    TenantId, Transfer, TransferId,
};

/// Names one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    Account(AccountKey),
    Receipt(AccountKey, RequestId),
    Entry(AccountKey, u64),
    /// A transfer, in its source account's partition.
    Transfer(TenantId, TransferId),
    /// The mark of a transfer still in flight, next to the transfer.
    Pending(TenantId, TransferId),
    /// The destination's decision on a transfer, in the destination's partition.
    Inbound(AccountKey, TransferId),
}

impl RecordKey {
    /// The account whose partition holds the record.
    pub fn owner(&self) -> AccountKey {
        match self {
            Self::Account(k) | Self::Receipt(k, _) | Self::Entry(k, _) | Self::Inbound(k, _) => {
                k.clone()
            }
            Self::Transfer(t, id) | Self::Pending(t, id) => AccountKey {
                tenant: t.clone(),
                account: id.from.clone(),
            },
        }
    }
}

/// A record's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Account(Account),
    Receipt(Receipt),
    Entry(Entry),
    Transfer(Transfer),
    Pending(PendingMark),
    Inbound(Inbound),
}

/// A stored value and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// One write of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(RecordKey, Record),
    Delete(RecordKey),
}

/// An atomic, conditional change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Each record's version at commit time must be the one given (0 = absent).
    pub conditions: Vec<(RecordKey, u64)>,
    pub writes: Vec<Write>,
}

impl Change {
    /// Commit only if `key` still has `version` (0 = absent).
    pub fn if_version(mut self, key: RecordKey, version: u64) -> Self {
        self.conditions.push((key, version));
        self
    }

    /// Writes `record` under `key`.
    pub fn put(mut self, key: RecordKey, record: Record) -> Self {
        self.writes.push(Write::Put(key, record));
        self
    }

    /// Deletes `key`.
    pub fn delete(mut self, key: RecordKey) -> Self {
        self.writes.push(Write::Delete(key));
        self
    }
}

/// Whether a change was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// Something changed since the read (or a record moved to another
    /// shard since the use case planned the change); nothing was written.
    Conflict,
}

/// A page of a tenant's accounts, gathered from every shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPage {
    /// In account id order.
    pub accounts: Vec<Account>,
    /// More accounts follow the last one.
    pub more: bool,
    /// Shards that could not answer.
    pub missing_shards: Vec<u32>,
}

/// A transfer still in flight, as its pending mark shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTransfer {
    pub tenant: TenantId,
    pub id: TransferId,
    pub mark: Versioned<PendingMark>,
}

/// Storage failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Unavailable(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("a change touched records on different shards: {0}")]
    NotColocated(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Where the ledger's records live.
pub trait Store: Send + Sync + 'static {
    /// Reads records of one account's partition in one linearizable read;
    /// one answer per key, None where absent.
    fn read(
        &self,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<Vec<Option<Versioned<Record>>>, StoreError>> + Send;

    /// Like [`Store::read`], but may answer without confirming it is up to
    /// date, which saves a round through storage: for a read whose versions
    /// the following [`Store::commit`] checks. A stale answer then makes
    /// the commit a [`Commit::Conflict`]; nothing else may be decided on it.
    fn read_optimistic(
        &self,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<Vec<Option<Versioned<Record>>>, StoreError>> + Send {
        self.read(keys, budget)
    }

    /// Commits a change atomically, if its expectations still hold.
    fn commit(
        &self,
        change: Change,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;

    /// Whether one change may touch both accounts' records.
    fn colocated(&self, a: &AccountKey, b: &AccountKey) -> bool;

    /// Up to `limit` of a tenant's accounts after `after`, in id order.
    fn list_accounts(
        &self,
        tenant: &TenantId,
        after: Option<&AccountId>,
        limit: usize,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<AccountPage, StoreError>> + Send;

    /// Up to `limit` entries of an account older than sequence `before`,
    /// newest first; and whether more follow.
    fn list_entries(
        &self,
        key: &AccountKey,
        before: Option<u64>,
        limit: usize,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<(Vec<Entry>, bool), StoreError>> + Send;

    /// Whether transfers from this account are still in flight.
    fn has_pending(
        &self,
        key: &AccountKey,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The storage shards, to list what is in flight on each.
    fn shards(&self) -> Vec<u32>;

    /// Up to `limit` transfers in flight from accounts on `shard`.
    fn list_pending(
        &self,
        shard: u32,
        limit: usize,
        budget: TimeBudget,
    ) -> impl Future<Output = Result<Vec<PendingTransfer>, StoreError>> + Send;
}

/// Wall-clock time, for timestamps.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
