//! The list of shards: the map file's, and the shards added to the running
//! cluster since, which shard 0's Raft log lists (`SlotCommand::AddShard`).
//!
//! Why shard 0's log: the list changes rarely and must be agreed on, which
//! is what a Raft group is for, and every cluster has a shard 0 — a
//! separate metadata group would be three more processes to run for one
//! record. What each shard *owns* is not here: that is in each shard's own
//! log (`raft::slots`), checked where the writes apply.
//!
//! A node or client learns the list at start (the map file) and from shard
//! 0 when it needs more (a redirect naming a shard it does not know, a
//! move to a new shard, a status report). The list only grows: a shard
//! once listed is never taken away or given other replicas.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use storage_api::shard_map::{ShardMap, ShardSpec, shard_from_info, shard_info, shard_list};
use storage_api::v1 as pb;
use storage_api::v1::change_slots_request::Step;
use tonic::{Request, Status};

use crate::grpc::peers::Peers;
use crate::move_driver::MoveDriver;
use crate::node::StorageNode;

/// How long one shard 0 replica may take to list the shards.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The shards this node knows of. Cheap to clone; only grows.
#[derive(Debug, Clone)]
pub struct Directory {
    map: Arc<RwLock<ShardMap>>,
}

impl Directory {
    /// Starts from the map file's shards.
    pub fn new(map: ShardMap) -> Self {
        Self {
            map: Arc::new(RwLock::new(map)),
        }
    }

    /// The shards known now.
    pub fn current(&self) -> ShardMap {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds the shards of `added` not known yet; whether any was.
    pub fn learn(&self, added: &[ShardSpec]) -> bool {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let grew = map.extend_with(added);
        if grew {
            tracing::info!(shards = map.shards.len(), "learned of a new shard");
        }
        grew
    }
}

/// Every shard this node can know of now: its map file's and shard 0's
/// list (shard 0's own map file's and its log's). A shard 0 replica reads
/// its own table (a follower may be a little behind: the list only grows,
/// so late is never wrong, only short); any other asks shard 0's replicas,
/// and keeps what it knew when none answers.
pub async fn list_shards(node: &StorageNode, peers: &Peers) -> ShardMap {
    if let Err(e) = shard_zero_list(node, peers).await {
        tracing::debug!(error = %e, "shard 0 did not list the shards");
    }
    node.directory.current()
}

/// The answer of Kv/ListShards and Admin/ListShards.
pub async fn listed_shards(node: &StorageNode, peers: &Peers) -> pb::ListShardsResponse {
    shard_list(&list_shards(node, peers).await)
}

/// The shards shard 0 lists (learned into this node's directory too).
async fn shard_zero_list(node: &StorageNode, peers: &Peers) -> Result<Vec<ShardSpec>, String> {
    if node.shard().id == 0 {
        node.directory
            .learn(&node.fence.slots.current().added_shards);
        return Ok(node.directory.current().shards);
    }
    let listed = ask_shard_zero(&node.directory.current(), peers).await?;
    node.directory.learn(&listed);
    Ok(listed)
}

/// The shard list from the first shard 0 replica that answers.
async fn ask_shard_zero(map: &ShardMap, peers: &Peers) -> Result<Vec<ShardSpec>, String> {
    let zero = map.shard(0).ok_or("the map has no shard 0")?;
    let mut last = String::from("shard 0 has no replicas");
    for replica in &zero.replicas {
        let mut admin = match peers.admin(0, replica) {
            Ok(admin) => admin,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let mut request = Request::new(pb::ListShardsRequest {});
        request.set_timeout(ASK_TIMEOUT);
        match admin.list_shards(request).await {
            Ok(answer) => return shards_of(&answer.into_inner()),
            Err(status) => {
                last = format!(
                    "{}: {:?}: {}",
                    replica.addr,
                    status.code(),
                    status.message()
                )
            }
        }
    }
    Err(last)
}

/// The shards a ListShards answer names.
pub fn shards_of(answer: &pb::ListShardsResponse) -> Result<Vec<ShardSpec>, String> {
    answer
        .shards
        .iter()
        .map(|info| shard_from_info(info, answer.slots).map_err(|e| e.to_string()))
        .collect()
}

/// Lists a new shard in shard 0's log (Admin/AddShard): `info` must be the
/// next shard id with valid replicas, and the shard must be running —
/// one of its replicas leads it — and own no slot. Repeating an addition
/// changes nothing. Returns the shards listed afterwards.
pub async fn add_shard(
    node: &StorageNode,
    peers: &Peers,
    driver: &MoveDriver,
    info: pb::ShardInfo,
) -> Result<ShardMap, Status> {
    let spec = shard_from_info(&info, node.map.slots)
        .map_err(|e| Status::invalid_argument(format!("shard {}: {e}", info.id)))?;
    let listed = shard_zero_list(node, peers)
        .await
        .map_err(|e| Status::unavailable(format!("shard 0 cannot list the shards: {e}")))?;
    if let Some(known) = listed.iter().find(|s| s.id == spec.id) {
        if known.replicas == spec.replicas {
            return Ok(node.directory.current());
        }
        return Err(Status::failed_precondition(format!(
            "shard {} is already listed, with replicas {}; a new shard takes id {}",
            spec.id,
            show_replicas(known),
            listed.len()
        )));
    }
    if spec.id as usize != listed.len() {
        return Err(Status::invalid_argument(format!(
            "the next shard id is {} (shards 0..{} are listed), not {}",
            listed.len(),
            listed.len(),
            spec.id
        )));
    }
    check_running_and_empty(&spec, peers).await?;
    driver
        .change(0, u64::from(spec.id), Step::AddShard(info))
        .await?;
    node.directory.learn(std::slice::from_ref(&spec));
    tracing::info!(shard = spec.id, replicas = %show_replicas(&spec), "shard added to the cluster");
    Ok(node.directory.current())
}

/// The shard has a leader (its replicas run and formed their group) and
/// owns no slot: it was started as a new, empty shard.
async fn check_running_and_empty(spec: &ShardSpec, peers: &Peers) -> Result<(), Status> {
    let mut heard = Vec::new();
    for replica in &spec.replicas {
        let answer = peers.node_status(spec.id, replica, ASK_TIMEOUT).await;
        match answer {
            Ok(status) if status.shard_id != spec.id => {
                return Err(Status::failed_precondition(format!(
                    "{} serves shard {}, not shard {}",
                    replica.addr, status.shard_id, spec.id
                )));
            }
            Ok(status) if status.role == "Leader" => {
                if !status.owned_slots.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "shard {} already owns slots: a shard is added owning none \
                         (slot_end = slot_start in its map file)",
                        spec.id
                    )));
                }
                return Ok(());
            }
            Ok(status) => heard.push(format!("{}: {}", replica.addr, status.role)),
            Err(e) => heard.push(format!("{}: {e}", replica.addr)),
        }
    }
    Err(Status::failed_precondition(format!(
        "shard {} has no leader yet: start its replicas first ({})",
        spec.id,
        heard.join("; ")
    )))
}

fn show_replicas(spec: &ShardSpec) -> String {
    let shown: Vec<String> = spec
        .replicas
        .iter()
        .map(|r| format!("{}={}", r.id, r.addr))
        .collect();
    shown.join(",")
}

/// How often a new shard's replica asks whether shard 0 lists it yet.
const JOIN_RETRY: Duration = Duration::from_secs(1);

/// A shard started owning nothing (its range in the map file is empty)
/// joins the running cluster by itself: each of its replicas asks shard 0
/// until shard 0 lists the shard, and the one that leads it asks shard 0
/// to list it (as Admin/AddShard does). So `scripts/up.sh`, Compose and
/// Kubernetes only start the new replicas; they report SERVING once the
/// shard is listed (see `serve`). Ends when listed; retried every second.
pub async fn join_cluster(node: StorageNode) {
    let shard = node.shard().clone();
    let owns_some = !node.fence.slots.current().owned_ranges().is_empty();
    if shard.id == 0 || shard.slot_start != shard.slot_end || owns_some {
        return;
    }
    let peers = Peers::new(node.transport.clone(), ASK_TIMEOUT);
    let driver = MoveDriver::new(node.clone(), peers.clone());
    let mut warned = false;
    loop {
        let listed = shard_zero_list(&node, &peers).await;
        if let Ok(listed) = &listed
            && listed.iter().any(|s| s.id == shard.id)
        {
            tracing::info!(
                shard = shard.id,
                "shard 0 lists this shard: it has joined the cluster"
            );
            return;
        }
        let asked = match (&listed, node.believes_leader()) {
            (Ok(_), Ok(())) => add_shard(&node, &peers, &driver, shard_info(&shard))
                .await
                .map(|_| ())
                .map_err(|e| format!("{:?}: {}", e.code(), e.message())),
            (Err(e), _) => Err(e.clone()),
            (Ok(_), Err(_)) => Ok(()),
        };
        match asked {
            Err(e) if !warned => {
                tracing::warn!(shard = shard.id, error = %e, "cannot join the cluster yet; retrying");
                warned = true;
            }
            _ => {}
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}
