//! Admin clients to other replicas, one lazily connected channel per
//! address, each authenticated as the replica it should be (mTLS).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anatomy_runtime::tls::{Identity, Transport};
use storage_api::shard_map::ReplicaSpec;
use storage_api::v1::admin_client::AdminClient;
use tonic::transport::Channel;

use crate::grpc::raft_network::lazy_channel;

/// A cache of channels to other replicas.
#[derive(Debug, Clone)]
pub struct Peers {
    transport: Transport,
    connect_timeout: Duration,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    /// Reaches replicas over `transport`, connecting within `connect_timeout`.
    pub fn new(transport: Transport, connect_timeout: Duration) -> Self {
        Self {
            transport,
            connect_timeout,
            channels: Arc::default(),
        }
    }

    /// An Admin client to replica `replica` of shard `shard`.
    pub fn admin(&self, shard: u32, replica: &ReplicaSpec) -> Result<AdminClient<Channel>, String> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| "channel cache poisoned".to_string())?;
        if let Some(channel) = channels.get(&replica.addr) {
            return Ok(AdminClient::new(channel.clone()));
        }
        let peer = Identity::storage(shard, replica.id);
        let channel = lazy_channel(&self.transport, &replica.addr, peer, self.connect_timeout)?;
        channels.insert(replica.addr.clone(), channel.clone());
        Ok(AdminClient::new(channel))
    }

    /// What replica `replica` of shard `shard` says about itself
    /// (NodeStatus), within `timeout`; why it could not be asked, else.
    pub async fn node_status(
        &self,
        shard: u32,
        replica: &ReplicaSpec,
        timeout: Duration,
    ) -> Result<storage_api::v1::NodeStatus, String> {
        let mut admin = self.admin(shard, replica)?;
        let mut request = tonic::Request::new(storage_api::v1::NodeStatusRequest {});
        request.set_timeout(timeout);
        admin
            .node_status(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    }
}
