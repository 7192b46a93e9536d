//! The server side of node-to-node Raft traffic: checks the envelope names
//! this shard and this replica, hands the message to openraft, and sends
//! back openraft's `Result` (a fatal error as its message: see `raft_reply`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use storage_api::v1::raft_server::Raft as RaftRpc;
use storage_api::v1::{RaftReply, RaftRequest};
use tonic::{Request, Response, Status};

use crate::grpc::raft_reply::Reply;
use crate::raft::types::{NodeId, Raft};
use crate::rebuild::VoteGate;

/// The `anatomy.storage.v1.Raft` service of one replica.
#[derive(Clone)]
pub struct RaftService {
    shard_id: u32,
    node_id: NodeId,
    raft: Raft,
    gate: VoteGate,
}

impl RaftService {
    /// Serves replica `node_id` of shard `shard_id`; `gate` decides whether
    /// it may grant votes.
    pub fn new(shard_id: u32, node_id: NodeId, raft: Raft, gate: VoteGate) -> Self {
        Self {
            shard_id,
            node_id,
            raft,
            gate,
        }
    }

    fn open<T: DeserializeOwned>(&self, request: Request<RaftRequest>) -> Result<T, Status> {
        let request = request.into_inner();
        if request.shard_id != self.shard_id || request.target_node != self.node_id {
            return Err(Status::failed_precondition(format!(
                "this is replica {} of shard {}, not replica {} of shard {}: check the shard map",
                self.node_id, self.shard_id, request.target_node, request.shard_id
            )));
        }
        postcard::from_bytes(&request.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    let payload = postcard::to_stdvec(result)
        .map_err(|e| Status::internal(format!("cannot encode Raft reply: {e}")))?;
    Ok(Response::new(RaftReply {
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&Reply::from(self.raft.append_entries(rpc).await))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: openraft::raft::VoteRequest<NodeId> = self.open(request)?;
        let term = rpc.vote.leader_id.term;
        if !self.gate.allows(term) {
            return Err(Status::unavailable(self.gate.refusal(term)));
        }
        reply(&Reply::from(self.raft.vote(rpc).await))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&Reply::from(self.raft.install_snapshot(rpc).await))
    }
}
