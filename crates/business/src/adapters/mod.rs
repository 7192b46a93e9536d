//! Adapters: the edges where the ledger meets the outside world — the
//! storage service (driven) and gRPC callers (driving).

pub mod codec;
pub mod grpc;
pub mod storage;
