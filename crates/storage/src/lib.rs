//! Anatomy's storage service: a partitioned key-value store whose every
//! shard is an openraft group with its log and state machine in redb.
#![forbid(unsafe_code)]

pub mod engine;
pub mod raft;
