//! The `anatomy.storage.v1.Admin` service: what a replica knows about its
//! Raft group, a cluster-wide view gathered replica by replica (so an
//! operator can watch leaders change during a failover, and slots move),
//! and the steps of slot moves.

use std::time::Duration;

use futures::future::join_all;
use openraft::ServerState;
use storage_api::shard_map::{ReplicaSpec, ShardSpec, shard_from_info, shard_list};
use storage_api::v1 as pb;
use storage_api::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::directory::{add_shard, list_shards, listed_shards};
use crate::grpc::peers::Peers;
use crate::move_driver::{DEFAULT_SLOTS_PER_STEP, MoveDriver};
use crate::node::StorageNode;
use crate::raft::applied::Applied;
use crate::raft::slots::{IngestItem, SlotCommand, SlotState, SlotTable};
use crate::slot_steps;

/// How long ClusterStatus waits for each replica.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The Admin service of one replica.
#[derive(Debug, Clone)]
pub struct AdminService {
    node: StorageNode,
    peers: Peers,
    driver: MoveDriver,
}

impl AdminService {
    /// Serves `node`.
    pub fn new(node: StorageNode) -> Self {
        let peers = Peers::new(node.transport.clone(), ASK_TIMEOUT);
        let driver = MoveDriver::new(node.clone(), peers.clone());
        Self {
            node,
            peers,
            driver,
        }
    }

    /// Refuses a step meant for another shard.
    fn mine(&self, shard_id: u32) -> Result<(), Status> {
        let mine = self.node.shard().id;
        if shard_id == mine {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "this replica serves shard {mine}, not shard {shard_id}"
        )))
    }

    async fn ask(&self, shard: u32, replica: &ReplicaSpec) -> pb::ReplicaStatus {
        let mut status = pb::ReplicaStatus {
            replica_id: replica.id,
            addr: replica.addr.clone(),
            ..Default::default()
        };
        let answer = self.peers.node_status(shard, replica, ASK_TIMEOUT).await;
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
            owned_slots: leader.map(|l| l.owned_slots.clone()).unwrap_or_default(),
            moving: leader.map(|l| l.moving.clone()).unwrap_or_default(),
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
    let slots = node.fence.slots.current();
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
        owned_slots: owned_slots(&slots),
        moving: moving(&slots),
    })
}

fn owned_slots(table: &SlotTable) -> Vec<pb::SlotRange> {
    let ranges = table.owned_ranges().into_iter();
    ranges
        .map(|(start, end)| pb::SlotRange { start, end })
        .collect()
}

fn moving(table: &SlotTable) -> Vec<pb::SlotInMove> {
    let side = |slot, move_id, side: &str| pb::SlotInMove {
        slot,
        move_id,
        side: side.into(),
    };
    table
        .moving()
        .into_iter()
        .filter_map(|(slot, state)| match state {
            SlotState::Frozen(m) => Some(side(slot, m, "source")),
            SlotState::Importing(m) => Some(side(slot, m, "destination")),
            SlotState::Owned | SlotState::NotOwned => None,
        })
        .collect()
}

/// The node's command for a ChangeSlots request.
fn slot_command(req: pb::ChangeSlotsRequest, slots: u32) -> Result<SlotCommand, Status> {
    use pb::change_slots_request::Step;
    let move_id = req.move_id;
    let step = req.step.ok_or_else(|| {
        Status::invalid_argument(
            "set one step: import, freeze, ingest, activate, abandon, unfreeze, release or add_shard",
        )
    })?;
    if move_id == 0 && !matches!(step, Step::AddShard(_)) {
        return Err(Status::invalid_argument("move_id must not be 0"));
    }
    Ok(match step {
        Step::Import(l) => SlotCommand::Import {
            move_id,
            slots: l.slots,
        },
        Step::Freeze(l) => SlotCommand::Freeze {
            move_id,
            slots: l.slots,
        },
        Step::Ingest(page) => SlotCommand::Ingest {
            move_id,
            items: page
                .items
                .into_iter()
                .map(|i| IngestItem {
                    key: i.key.to_vec(),
                    version: i.version,
                    value: i.value.to_vec(),
                })
                .collect(),
        },
        Step::Activate(map_version) => SlotCommand::Activate {
            move_id,
            map_version,
        },
        Step::Abandon(_) => SlotCommand::Abandon { move_id },
        Step::Unfreeze(_) => SlotCommand::Unfreeze { move_id },
        Step::Release(r) => SlotCommand::Release {
            move_id,
            map_version: r.map_version,
            to_shard: r.to_shard,
        },
        Step::AddShard(info) => SlotCommand::AddShard {
            shard: shard_from_info(&info, slots)
                .map_err(|e| Status::invalid_argument(format!("shard {}: {e}", info.id)))?,
        },
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
        let map = list_shards(&self.node, &self.peers).await;
        let shards = join_all(map.shards.iter().map(|s| self.shard_status(s))).await;
        let leaders = shards.iter().flat_map(|s| &s.replicas);
        let newest = leaders
            .filter_map(|r| r.status.as_ref())
            .map(|s| s.map_version)
            .max();
        Ok(Response::new(pb::ClusterStatus {
            map_version: newest.unwrap_or(map.version),
            slots: map.slots,
            shards,
        }))
    }

    async fn move_slots(
        &self,
        request: Request<pb::MoveSlotsRequest>,
    ) -> Result<Response<pb::MoveSlotsResponse>, Status> {
        let req = request.into_inner();
        let per_step = match req.slots_per_step {
            0 => DEFAULT_SLOTS_PER_STEP,
            n => n as usize,
        };
        self.driver
            .move_slots(req.slots, req.to_shard, per_step)
            .await
            .map(Response::new)
    }

    async fn change_slots(
        &self,
        request: Request<pb::ChangeSlotsRequest>,
    ) -> Result<Response<pb::ChangeSlotsResponse>, Status> {
        let req = request.into_inner();
        self.mine(req.shard_id)?;
        let command = slot_command(req, self.node.map.slots)?;
        slot_steps::change_slots(&self.node, command).await?;
        Ok(Response::new(pb::ChangeSlotsResponse {}))
    }

    async fn add_shard(
        &self,
        request: Request<pb::AddShardRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        let info = request.into_inner().shard.ok_or_else(|| {
            Status::invalid_argument(
                "name the shard: {\"shard\": {\"id\": N, \"replicas\": [...]}}",
            )
        })?;
        let map = add_shard(&self.node, &self.peers, &self.driver, info).await?;
        Ok(Response::new(shard_list(&map)))
    }

    async fn list_shards(
        &self,
        _: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        Ok(Response::new(listed_shards(&self.node, &self.peers).await))
    }

    async fn export_slots(
        &self,
        request: Request<pb::ExportSlotsRequest>,
    ) -> Result<Response<pb::ExportSlotsResponse>, Status> {
        let req = request.into_inner();
        self.mine(req.shard_id)?;
        let (items, more) = slot_steps::export_slots(&self.node, req.move_id, &req.start_after)
            .await
            .map_err(Status::from)?;
        let items = items
            .into_iter()
            .map(|i| pb::ExportedItem {
                key: i.key.into(),
                version: i.version,
                value: i.value.into(),
            })
            .collect();
        Ok(Response::new(pb::ExportSlotsResponse { items, more }))
    }
}
