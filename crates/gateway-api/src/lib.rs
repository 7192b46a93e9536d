//! Anatomy's public contract, `anatomy.gateway.v1`: the generated client
//! and server, the proto3 JSON mapping (for the HTTP API) and the encoded
//! descriptor set that server reflection serves.
#![forbid(unsafe_code)]

/// `anatomy.gateway.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("anatomy.gateway.v1");
    include!(concat!(env!("OUT_DIR"), "/anatomy.gateway.v1.serde.rs"));
    /// Descriptor set of this package and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
}
