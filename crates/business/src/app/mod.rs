//! The application layer: use cases over the domain, and the ports (plain
//! traits) they need from the outside world.

// The in-memory store: for unit tests, and (feature `fake`) for the fuzz
// targets' in-process edge.
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod ledger;
pub mod paging;
pub mod ports;
pub mod recovery;
pub mod recovery_worker;
pub mod saga;

#[cfg(test)]
mod tests;
pub mod time_budget;
pub mod transfers;
pub mod typed_reads;

pub use ledger::{AccountList, EntryList, Ledger, MoveMoney};
pub use ports::{
    Change, Clock, Commit, Record, RecordKey, Store, StoreError, TimeBudget, Versioned,
};
pub use recovery::{Recovered, RecoveryConfig};
pub use transfers::TransferCmd;
