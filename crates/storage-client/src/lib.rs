//! The only way the business service talks to storage: routing by slot,
//! leader following and retries. The contract it routes by (the shard map,
//! the wire errors, the generated code) lives in `storage-api`, which the
//! storage nodes share.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod client;
pub mod config;
pub mod error;
pub mod owners;
mod routes;

pub use client::StorageClient;
pub use config::ClientConfig;
pub use error::StorageError;
pub use storage_api::ShardMap;
