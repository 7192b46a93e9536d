//! Ports: what the use cases need from storage and from the clock. Plain
//! traits; the adapters implement them.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use crate::domain::{Account, AccountKey, DomainError, Entry, Receipt, RequestId};

/// When the caller stops waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A stored value and the storage version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What storage holds for one account and one request id, read together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountState {
    pub account: Option<Versioned<Account>>,
    pub receipt: Option<Receipt>,
}

/// One atomic change to an account: the new account, the entry it
/// appends (if any) and the receipt that makes the change idempotent.
/// Committed only if the account still has `expected_version` (0 = absent)
/// and no receipt exists yet for the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    pub key: AccountKey,
    pub expected_version: u64,
    pub account: Account,
    pub entry: Option<Entry>,
    pub receipt: Receipt,
}

/// Whether a change was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// Something changed since the read; nothing was written.
    Conflict,
}

/// Storage failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Unavailable(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Corrupt(m) => Self::Internal(m),
        }
    }
}

/// Where accounts live.
pub trait AccountStore: Send + Sync + 'static {
    /// Reads an account and, when given, the receipt of a request id, in one
    /// consistent (linearizable) read.
    fn load(
        &self,
        key: &AccountKey,
        request_id: Option<&RequestId>,
        deadline: Deadline,
    ) -> impl Future<Output = Result<AccountState, StoreError>> + Send;

    /// Commits a change atomically, if its conditions still hold.
    fn commit(
        &self,
        change: AccountChange,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;
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
