//! The only way the business service talks to storage: routing by slot,
//! leader following and retries. The contract it routes by (the shard map,
//! the wire errors, the generated code) lives in `storage-api`, which the
//! storage nodes share.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod client;
pub mod owners;

pub use client::{ClientConfig, StorageClient, StorageError};
pub use storage_api::ShardMap;
