//! The client side of node-to-node Raft traffic, over gRPC.
//!
//! openraft's messages travel postcard-encoded in a `bytes` field, inside an
//! envelope naming the shard and the target replica, so a node can refuse
//! traffic meant for another Raft group. The receiving node sends back the
//! `Result` openraft returned (`raft_reply::Reply`), so remote Raft errors
//! arrive typed.

use std::collections::HashMap;
use std::time::Duration;

use anatomy_runtime::tls::transport::endpoint;
use anatomy_runtime::tls::{Identity, Transport};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage_api::v1::raft_client::RaftClient;
use storage_api::v1::{RaftReply, RaftRequest};
use tonic::transport::Channel;

use storage_api::shard_map::ShardSpec;

use crate::grpc::raft_reply::{Reply, ReplyError};
use crate::raft::types::{Node, NodeId, TypeConfig};
use crate::rebuild::VoteGate;

/// Raft messages can carry large batches and snapshot chunks.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Opens connections to the other replicas of one shard.
#[derive(Debug, Clone)]
pub struct Network {
    shard: ShardSpec,
    map_version: u64,
    connect_timeout: Duration,
    transport: Transport,
    channels: HashMap<NodeId, Channel>,
    gate: VoteGate,
}

impl Network {
    /// The network of shard `shard_id`, over `transport`; `gate` decides
    /// whether this replica may ask for votes.
    pub fn new(
        shard: ShardSpec,
        map_version: u64,
        connect_timeout: Duration,
        gate: VoteGate,
        transport: Transport,
    ) -> Self {
        Self {
            shard,
            map_version,
            connect_timeout,
            transport,
            channels: HashMap::new(),
            gate,
        }
    }
}

/// Connects lazily to `addr` (host:port), which must be `peer`;
/// reconnects by itself.
pub fn lazy_channel(
    transport: &Transport,
    addr: &str,
    peer: Identity,
    connect_timeout: Duration,
) -> Result<Channel, String> {
    let endpoint = endpoint(addr)
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    transport
        .lazy_channel(endpoint, peer)
        .map_err(|e| e.to_string())
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        // The shard map is the source of truth for addresses; the address
        // stored in the membership is only a fallback.
        let addr = self
            .shard
            .replica(target)
            .map_or_else(|| node.addr.clone(), |r| r.addr.clone());
        let peer = Identity::storage(self.shard.id, target);
        let channel = match self.channels.get(&target) {
            Some(channel) => Ok(channel.clone()),
            None => lazy_channel(&self.transport, &addr, peer, self.connect_timeout).inspect(|c| {
                self.channels.insert(target, c.clone());
            }),
        };
        Peer {
            gate: self.gate.clone(),
            shard_id: self.shard.id,
            map_version: self.map_version,
            target,
            addr,
            client: channel.map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }),
        }
    }
}

/// A connection to one other replica.
#[derive(Debug)]
pub struct Peer {
    gate: VoteGate,
    shard_id: u32,
    map_version: u64,
    target: NodeId,
    addr: String,
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerError(String);

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    {
        let unreachable = |m: String| RPCError::Unreachable(Unreachable::new(&PeerError(m)));
        let client = match &mut self.client {
            Ok(client) => client,
            Err(e) => return Err(unreachable(format!("{}: {e}", self.addr))),
        };
        let payload =
            postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftRequest {
            shard_id: self.shard_id,
            target_node: self.target,
            map_version: self.map_version,
            payload: payload.into(),
        });
        request.set_timeout(option.hard_ttl());
        let reply: Result<tonic::Response<RaftReply>, tonic::Status> = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|s| {
            let message = format!("{} {:?}: {}", self.addr, s.code(), s.message());
            match s.code() {
                tonic::Code::Unavailable | tonic::Code::FailedPrecondition => unreachable(message),
                _ => RPCError::Network(NetworkError::new(&PeerError(message))),
            }
        })?;
        let reply: Reply<Resp, E> = postcard::from_bytes(&reply.into_inner().payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        match reply {
            Reply::Ok(value) => Ok(value),
            Reply::Err(ReplyError::Api(e)) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(e),
            ))),
            // A replica that stopped is as good as unreachable: back off.
            Reply::Err(ReplyError::Fatal(message)) => Err(unreachable(format!(
                "{} stopped on a fatal error: {message}",
                self.addr
            ))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(Rpc::Append, &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let term = rpc.vote.leader_id.term;
        if !self.gate.allows(term) {
            let refusal = PeerError(self.gate.refusal(term));
            return Err(RPCError::Unreachable(Unreachable::new(&refusal)));
        }
        self.call(Rpc::Vote, &rpc, option).await
    }
}
