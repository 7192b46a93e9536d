//! What can go wrong serving a storage request, and the one mapping from
//! those errors to gRPC statuses.

use storage_api::wire_errors;
use tonic::Status;

use crate::engine::EngineError;
use crate::engine::keys::KeyError;

/// A storage request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// This replica is not the leader.
    #[error("not the leader of shard {shard_id}")]
    NotLeader {
        shard_id: u32,
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// Routed with another map, or for a partition this shard does not own.
    #[error("{message}")]
    WrongShard {
        message: String,
        shard_id: u32,
        map_version: u64,
        /// The slot and the shard it went to, if it moved away from here.
        owner: Option<(u32, u32)>,
    },
    /// The partition's slot is in a move: retry shortly.
    #[error("{message}")]
    SlotMoving {
        message: String,
        shard_id: u32,
        map_version: u64,
    },
    /// A step of a slot move does not fit the shard's slots now.
    #[error("{0}")]
    StepRefused(String),
    /// The request itself is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Too much work is queued already; try again later.
    #[error("{0}")]
    Overloaded(String),
    /// The shard cannot serve right now (no quorum, shutting down, deadline).
    #[error("{0}")]
    Unavailable(String),
    /// Disk or state machine failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<KeyError> for KvError {
    fn from(e: KeyError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl From<KvError> for Status {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NotLeader {
                shard_id,
                leader_id,
                leader_addr,
            } => wire_errors::not_leader(shard_id, leader_id, leader_addr.as_deref()),
            KvError::WrongShard {
                message,
                shard_id,
                map_version,
                owner,
            } => wire_errors::wrong_shard(message, shard_id, map_version, owner),
            KvError::SlotMoving {
                message,
                shard_id,
                map_version,
            } => wire_errors::slot_moving(message, shard_id, map_version),
            KvError::InvalidArgument(m) => Status::invalid_argument(m),
            KvError::StepRefused(m) => Status::failed_precondition(m),
            KvError::Overloaded(m) => Status::resource_exhausted(m),
            KvError::Unavailable(m) => Status::unavailable(m),
            KvError::Engine(e) => Status::internal(e.to_string()),
        }
    }
}

/// NOT_LEADER with the leader's address, from openraft's forward hint,
/// falling back to the shard map for the address.
pub fn forward_to_leader(
    shard: &storage_api::shard_map::ShardSpec,
    forward: &openraft::error::ForwardToLeader<crate::raft::NodeId, crate::raft::Node>,
) -> KvError {
    let leader_addr = forward
        .leader_node
        .as_ref()
        .map(|n| n.addr.clone())
        .or_else(|| {
            forward
                .leader_id
                .and_then(|id| shard.replica(id))
                .map(|r| r.addr.clone())
        });
    KvError::NotLeader {
        shard_id: shard.id,
        leader_id: forward.leader_id,
        leader_addr,
    }
}
