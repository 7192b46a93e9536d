//! One harness for Anatomy's system tests (as linkerd's `app/integration`):
//! every service a real gRPC server on a loopback port inside the test
//! process, real Raft, real files in a temporary directory.
//!
//! - [`storage_cluster::Cluster`]: any number of shards × replicas, each
//!   replica stoppable and restartable on its address;
//! - [`services`]: business and gateway replicas over such a cluster, and
//!   a tenant-authenticated client of the gateway.
//!
//! Only test code uses this crate, so it may panic on set-up failures.
#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod services;
pub mod slots;
pub mod storage_cluster;

pub use services::Service;
pub use storage_cluster::{Cluster, fast_tuning};
