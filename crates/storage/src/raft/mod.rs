//! One shard's Raft group: types, the log store, the state machine and its
//! snapshots, the node-to-node network over gRPC and its server side.

// openraft's traits fix our error type to its `StorageError`, which is large.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod service;
pub mod snapshot;
pub mod state_machine;
pub mod types;
pub mod wal_store;

pub use types::*;
