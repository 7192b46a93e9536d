//! The storage contract, in one place, shared by the storage nodes (which
//! serve it) and storage-client (which routes by it):
//! - [`v1`]: `anatomy.storage.v1`, the generated gRPC code (Kv, Raft, Admin)
//!   and its descriptor set;
//! - [`shard_map`]: which shard owns which slots, and where its replicas are;
//! - [`wire_errors`]: NOT_LEADER and WRONG_SHARD as gRPC statuses, written
//!   and read by the same code.
#![forbid(unsafe_code)]

pub mod shard_map;
pub mod wire_errors;

pub use shard_map::ShardMap;

/// `anatomy.storage.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("anatomy.storage.v1");
    /// Descriptor set of this package and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
}
