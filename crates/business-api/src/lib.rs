//! The business service's contract, `anatomy.business.v1`: what the gateway
//! calls. Generated client and server plus the descriptor set for
//! reflection.
#![forbid(unsafe_code)]

/// `anatomy.business.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("anatomy.business.v1");
    /// Descriptor set of this package and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
}
