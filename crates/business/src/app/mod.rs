//! The application layer: use cases over the domain, and the ports (plain
//! traits) they need from the outside world.

pub mod ledger;
pub mod ports;

pub use ledger::{Ledger, MoveMoney};
pub use ports::{
    AccountChange, AccountState, AccountStore, Clock, Commit, Deadline, StoreError, Versioned,
};
