//! The application layer: use cases over the domain, and the ports (plain
//! traits) they need from the outside world.

#[cfg(test)]
pub mod fake;
pub mod ledger;
pub mod paging;
pub mod ports;
pub mod records;
pub mod recovery;
#[cfg(test)]
mod tests;
pub mod transfers;

pub use ledger::{AccountList, EntryList, Ledger, MoveMoney};
pub use ports::{Change, Clock, Commit, Deadline, Record, RecordKey, Store, StoreError, Versioned};
pub use transfers::{Recovered, TransferCmd};
