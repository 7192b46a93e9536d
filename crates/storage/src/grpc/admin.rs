//! The `anatomy.storage.v1.Admin` service: what a replica knows about its
//! Raft group, and a cluster-wide view gathered replica by replica, so an
//! operator can watch leaders change during a failover.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use openraft::ServerState;
use storage_api::shard_map::{ReplicaSpec, ShardSpec};
use storage_api::v1 as pb;
use storage_api::v1::admin_client::AdminClient;
use storage_api::v1::admin_server::Admin;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::grpc::raft_network::lazy_channel;
use anatomy_runtime::tls::Identity;

use crate::node::StorageNode;
use crate::raft::applied::Applied;

/// How long ClusterStatus waits for each replica.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The Admin service of one replica.
#[derive(Debug, Clone)]
pub struct AdminService {
    node: StorageNode,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl AdminService {
    /// Serves `node`.
    pub fn new(node: StorageNode) -> Self {
        Self {
            node,
            channels: Arc::default(),
        }
    }

    fn channel(&self, addr: &str, peer: Identity) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| "channel cache poisoned".to_string())?;
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = lazy_channel(&self.node.transport, addr, peer, ASK_TIMEOUT)?;
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    async fn ask(&self, shard: u32, replica: &ReplicaSpec) -> pb::ReplicaStatus {
        let mut status = pb::ReplicaStatus {
            replica_id: replica.id,
            addr: replica.addr.clone(),
            ..Default::default()
        };
        let answer = match self.channel(&replica.addr, Identity::storage(shard, replica.id)) {
            Ok(channel) => {
                let mut request = Request::new(pb::NodeStatusRequest {});
                request.set_timeout(ASK_TIMEOUT);
                AdminClient::new(channel)
                    .node_status(request)
                    .await
                    .map(Response::into_inner)
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(node) => {
                status.reachable = true;
                status.status = Some(node);
            }
            Err(e) => status.error = e,
        }
        status
    }

    async fn shard_status(&self, shard: &ShardSpec) -> pb::ShardStatus {
        let replicas = join_all(shard.replicas.iter().map(|r| self.ask(shard.id, r))).await;
        // The leader of the highest term any reachable replica reports.
        let leader = replicas
            .iter()
            .filter_map(|r| r.status.as_ref())
            .filter(|s| s.role == "Leader")
            .max_by_key(|s| s.term);
        pb::ShardStatus {
            shard_id: shard.id,
            slot_start: shard.slot_start,
            slot_end: shard.slot_end,
            leader_id: leader.map_or(0, |l| l.replica_id),
            leader_addr: leader.map(|l| l.addr.clone()).unwrap_or_default(),
            term: leader.map_or(0, |l| l.term),
            commit_index: leader.map_or(0, |l| l.commit_index),
            keys: leader.map_or(0, |l| l.keys),
            replicas,
        }
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    }
}

/// This replica's own view of its group.
pub fn node_status(node: &StorageNode) -> Result<pb::NodeStatus, Status> {
    let m = node.raft.metrics().borrow().clone();
    let (state, keys) = node.state().map_err(|e| Status::internal(e.to_string()))?;
    let shard = node.shard();
    let leader_addr = m
        .current_leader
        .and_then(|id| shard.replica(id))
        .map(|r| r.addr.clone())
        .unwrap_or_default();
    Ok(pb::NodeStatus {
        shard_id: shard.id,
        replica_id: node.me.id,
        addr: node.me.addr.clone(),
        role: role(m.state).into(),
        term: m.current_term,
        leader_id: m.current_leader.unwrap_or(0),
        leader_addr,
        last_log_index: m.last_log_index.unwrap_or(0),
        commit_index: m.last_applied.map_or(0, |l| l.index),
        applied_index: Applied::of(&state)
            .map_err(|e| Status::internal(e.to_string()))?
            .index(),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        purged_index: m.purged.map_or(0, |l| l.index),
        voters: m.membership_config.membership().voter_ids().collect(),
        slot_start: shard.slot_start,
        slot_end: shard.slot_end,
        keys,
        revision: state.revision,
        map_version: node.fence.map_version(),
    })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn node_status(
        &self,
        _: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        node_status(&self.node).map(Response::new)
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let map = &self.node.map;
        let shards = join_all(map.shards.iter().map(|s| self.shard_status(s))).await;
        Ok(Response::new(pb::ClusterStatus {
            map_version: map.version,
            slots: map.slots,
            shards,
        }))
    }
}
