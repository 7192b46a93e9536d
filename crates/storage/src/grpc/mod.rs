//! The storage node's gRPC faces, as business groups its adapters: each
//! file turns wire messages into the node's own types and back, and holds
//! no storage logic.
//! - `kv`: `anatomy.storage.v1.Kv`, what clients call;
//! - `admin`: `anatomy.storage.v1.Admin`, cluster status and slot moves;
//! - `peers`: Admin clients to other replicas (ClusterStatus, moves);
//! - `raft_service`: `anatomy.storage.v1.Raft`, the server side of the
//!   node-to-node network;
//! - `raft_network`: its client side, openraft's `RaftNetwork` over gRPC.

pub mod admin;
pub mod kv;
pub mod peers;
pub mod raft_network;
pub mod raft_reply;
pub mod raft_service;
