//! The only way the business service talks to storage: the shard map,
//! routing by slot, leader tracking and retries, and the wire error model
//! shared with the storage nodes.
#![forbid(unsafe_code)]

pub mod client;
pub mod shard_map;
pub mod wire_errors;

pub use client::{ClientConfig, StorageClient, StorageError};
pub use shard_map::ShardMap;
