//! The storage error model on the wire, written and read in one place.
//!
//! Routing faults are ordinary gRPC statuses carrying a `google.rpc.ErrorInfo`
//! detail (domain `anatomy.storage`), which `grpcurl` prints and any client
//! can read:
//! - `NOT_LEADER` (code UNAVAILABLE): this replica is not its shard's leader;
//!   metadata `leader_id` / `leader_addr` name the leader when it is known.
//! - `WRONG_SHARD` (code FAILED_PRECONDITION): the request was routed with
//!   another shard-map version or for a partition this shard does not own;
//!   metadata `map_version` and `shard_id` say what the node runs.
//! - `SLOT_MOVING` (code UNAVAILABLE): the partition's slot is being moved
//!   between shards; retry after a short backoff (a move pauses a slot for
//!   a moment, see docs/partitioning.md); metadata as for WRONG_SHARD.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The ErrorInfo domain of storage errors.
pub const DOMAIN: &str = "anatomy.storage";
/// The ErrorInfo reason of a request sent to a follower.
pub const NOT_LEADER: &str = "NOT_LEADER";
/// The ErrorInfo reason of a request routed to the wrong shard.
pub const WRONG_SHARD: &str = "WRONG_SHARD";

/// The ErrorInfo reason of a request for a slot in a move.
pub const SLOT_MOVING: &str = "SLOT_MOVING";

/// The status a follower answers with.
pub fn not_leader(shard_id: u32, leader_id: Option<u64>, leader_addr: Option<&str>) -> Status {
    let mut meta = HashMap::new();
    meta.insert("shard_id".to_string(), shard_id.to_string());
    if let Some(id) = leader_id {
        meta.insert("leader_id".into(), id.to_string());
    }
    if let Some(addr) = leader_addr {
        meta.insert("leader_addr".into(), addr.to_string());
    }
    let hint = leader_addr.map_or_else(
        || "no leader is known yet; retry shortly".to_string(),
        |a| format!("the leader is at {a}"),
    );
    Status::with_error_details(
        Code::Unavailable,
        format!("not the leader of shard {shard_id}: {hint}"),
        ErrorDetails::with_error_info(NOT_LEADER, DOMAIN, meta),
    )
}

/// The status a node answers a misrouted request with; `owner` names the
/// slot and the shard it moved to, when it moved away from this one.
pub fn wrong_shard(
    message: String,
    shard_id: u32,
    map_version: u64,
    owner: Option<(u32, u32)>,
) -> Status {
    let mut meta = shard_meta(shard_id, map_version);
    if let Some((slot, owner)) = owner {
        meta.insert("slot".into(), slot.to_string());
        meta.insert("owner_shard".into(), owner.to_string());
    }
    shard_fault(Code::FailedPrecondition, WRONG_SHARD, message, meta)
}

/// The status a node answers a request for a slot in a move with.
pub fn slot_moving(message: String, shard_id: u32, map_version: u64) -> Status {
    let meta = shard_meta(shard_id, map_version);
    shard_fault(Code::Unavailable, SLOT_MOVING, message, meta)
}

fn shard_meta(shard_id: u32, map_version: u64) -> HashMap<String, String> {
    let mut meta = HashMap::new();
    meta.insert("shard_id".to_string(), shard_id.to_string());
    meta.insert("map_version".to_string(), map_version.to_string());
    meta
}

fn shard_fault(code: Code, reason: &str, message: String, meta: HashMap<String, String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, meta),
    )
}

/// What a status means for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Ask the leader instead: its replica id and its address as the
    /// follower's own shard map gives it, when the follower knew them. A
    /// client follows the id (the address it has for a replica may differ
    /// from the follower's: another network view, a proxy).
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    /// The sender's shard map does not match the node's.
    WrongShard {
        node_map_version: Option<u64>,
        /// The slot and the shard it moved to (a redirect), when it moved
        /// away.
        owner: Option<(u32, u32)>,
    },
    /// The slot is being moved: the same request succeeds shortly, here
    /// or (with a newer map) on the slot's new shard.
    SlotMoving { node_map_version: Option<u64> },
    /// Anything else.
    Other,
}

/// Reads the routing fault out of a status.
pub fn fault(status: &Status) -> Fault {
    let details = status.get_error_details();
    let Some(info) = details.error_info().filter(|i| i.domain == DOMAIN) else {
        return Fault::Other;
    };
    match info.reason.as_str() {
        NOT_LEADER => Fault::NotLeader {
            leader_id: info
                .metadata
                .get("leader_id")
                .and_then(|id| id.parse().ok()),
            leader_addr: info.metadata.get("leader_addr").cloned(),
        },
        WRONG_SHARD => Fault::WrongShard {
            node_map_version: map_version(&info.metadata),
            owner: number(&info.metadata, "slot").zip(number(&info.metadata, "owner_shard")),
        },
        SLOT_MOVING => Fault::SlotMoving {
            node_map_version: map_version(&info.metadata),
        },
        _ => Fault::Other,
    }
}

fn map_version(metadata: &HashMap<String, String>) -> Option<u64> {
    number(metadata, "map_version")
}

fn number<T: std::str::FromStr>(metadata: &HashMap<String, String>, key: &str) -> Option<T> {
    metadata.get(key).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip() {
        let s = not_leader(2, Some(3), Some("10.0.0.3:50071"));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            fault(&s),
            Fault::NotLeader {
                leader_id: Some(3),
                leader_addr: Some("10.0.0.3:50071".into())
            }
        );
        assert_eq!(
            fault(&not_leader(2, None, None)),
            Fault::NotLeader {
                leader_id: None,
                leader_addr: None
            }
        );
        let s = wrong_shard("nope".into(), 1, 7, None);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            fault(&s),
            Fault::WrongShard {
                node_map_version: Some(7),
                owner: None
            }
        );
        assert_eq!(
            fault(&wrong_shard("moved".into(), 1, 9, Some((200, 3)))),
            Fault::WrongShard {
                node_map_version: Some(9),
                owner: Some((200, 3))
            }
        );
        let s = slot_moving("moving".into(), 1, 8);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            fault(&s),
            Fault::SlotMoving {
                node_map_version: Some(8)
            }
        );
        assert_eq!(fault(&Status::unavailable("down")), Fault::Other);
    }
}
