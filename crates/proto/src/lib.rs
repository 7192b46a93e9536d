//! Anatomy's gRPC contracts: generated clients, servers and messages, plus
//! the encoded descriptor sets that server reflection serves.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// The public API (`anatomy.gateway.v1`).
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("anatomy.gateway.v1");
        include!(concat!(env!("OUT_DIR"), "/anatomy.gateway.v1.serde.rs"));
        /// Descriptor set of this package and its imports, for reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));
    }
}

/// The business service's internal API (`anatomy.business.v1`).
pub mod business {
    pub mod v1 {
        tonic::include_proto!("anatomy.business.v1");
        /// Descriptor set of this package and its imports, for reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/business_descriptor.bin"));
    }
}

/// The storage service's API (`anatomy.storage.v1`).
pub mod storage {
    pub mod v1 {
        tonic::include_proto!("anatomy.storage.v1");
        /// Descriptor set of this package and its imports, for reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/storage_descriptor.bin"));
    }
}

/// Well-known types used by the contracts.
pub use prost_types::Timestamp;
