//! What the load generator can drive.

pub mod bank;
pub mod etcd;
pub mod ledger;
pub mod storage;

/// A short failure kind for a gRPC status.
pub fn kind(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// A value of `size` bytes that differs per operation.
pub fn value(size: usize, n: u64) -> Vec<u8> {
    let mut v = vec![b'x'; size];
    let tag = n.to_le_bytes();
    let k = tag.len().min(size);
    v[..k].copy_from_slice(&tag[..k]);
    v
}
