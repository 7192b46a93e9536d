//! One shard's Raft group: types, the log stores, the state machine and its
//! snapshots. The node-to-node network over gRPC lives with the other gRPC
//! faces in `grpc`.

// openraft's traits fix our error type to its `StorageError`, which is large.
#![allow(clippy::result_large_err)]

pub mod applied;
pub mod apply;
#[cfg(test)]
mod leader_flush_tests;
pub mod log_store;
pub mod metrics;
pub mod slots;
pub mod snapshot;
pub mod snapshot_file;
pub mod snapshot_pacing;
pub mod state_machine;
#[cfg(test)]
mod test_stores;
pub mod types;
pub mod wal_store;

pub use types::*;
