//! The client's way to each shard: a lazily connected channel per replica,
//! the replica it believes leads, and the shard's breaker. The list grows
//! when shard 0 lists a shard added to the running cluster; it never
//! shrinks, and a shard keeps its route (and so its leader and breaker).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anatomy_runtime::layers::propagate::{Propagate, PropagateLayer};
use anatomy_runtime::tls::{Identity, Transport, transport::endpoint};
use storage_api::shard_map::{ShardId, ShardMap, ShardSpec, shard_from_info};
use storage_api::v1 as pb;
use storage_api::v1::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tower::Layer as _;

use crate::breaker::ShardBreaker;
use crate::config::ClientConfig;
use crate::error::StorageError;

const NO_LEADER: usize = usize::MAX;

/// One shard as the client reaches it.
#[derive(Debug)]
pub(crate) struct ShardRoute {
    pub spec: ShardSpec,
    pub clients: Vec<KvClient<Propagate<Channel>>>,
    pub leader: AtomicUsize,
    pub breaker: ShardBreaker,
}

impl ShardRoute {
    fn new(
        spec: &ShardSpec,
        config: &ClientConfig,
        transport: &Transport,
    ) -> Result<Self, StorageError> {
        let clients = spec
            .replicas
            .iter()
            .map(|r| {
                let peer = Identity::storage(spec.id, r.id);
                connect(&r.addr, peer, config.connect_timeout, transport)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            spec: spec.clone(),
            clients,
            leader: AtomicUsize::new(NO_LEADER),
            breaker: ShardBreaker::new(config.breaker_open_after, config.breaker_probe_every),
        })
    }

    /// Forgets the leader (a retry goes to the next replica).
    pub fn forget_leader(&self) {
        self.leader.store(NO_LEADER, Ordering::Relaxed);
    }

    /// The replica to ask first: the leader last seen, else the first.
    pub fn first_target(&self) -> usize {
        match self.leader.load(Ordering::Relaxed) {
            NO_LEADER => 0,
            i => i,
        }
    }
}

/// Every shard's route, in id order, and when the list was last asked for.
#[derive(Debug)]
pub(crate) struct Routes {
    routes: RwLock<Vec<Arc<ShardRoute>>>,
    listed_at: Mutex<Option<Instant>>,
    transport: Transport,
    config: ClientConfig,
}

impl Routes {
    /// A route to each shard of `map`.
    pub fn new(
        map: &ShardMap,
        config: ClientConfig,
        transport: &Transport,
    ) -> Result<Self, StorageError> {
        let routes = map
            .shards
            .iter()
            .map(|spec| ShardRoute::new(spec, &config, transport).map(Arc::new))
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Self {
            routes: RwLock::new(routes),
            listed_at: Mutex::default(),
            transport: transport.clone(),
            config,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ShardRoute>>> {
        self.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The route to `shard`.
    pub fn get(&self, shard: ShardId) -> Result<Arc<ShardRoute>, StorageError> {
        self.read()
            .get(shard as usize)
            .cloned()
            .ok_or(StorageError::WrongShard {
                shard,
                detail: format!("the shard map has no shard {shard}"),
            })
    }

    /// Every shard's id, in order.
    pub fn ids(&self) -> Vec<ShardId> {
        self.read().iter().map(|r| r.spec.id).collect()
    }

    /// Notes that the list is being asked for now.
    pub fn listed_now(&self) {
        *self.listed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether the list was last asked for `every` ago or more (or never);
    /// if so, notes it as asked now, so one caller asks.
    pub fn list_due(&self, every: Duration) -> bool {
        let mut at = self.listed_at.lock().unwrap_or_else(|e| e.into_inner());
        let due = at.is_none_or(|t| t.elapsed() >= every);
        if due {
            *at = Some(Instant::now());
        }
        due
    }

    /// Adds a route to each shard of shard 0's list not known yet (the next
    /// ids only: the list only grows); returns how many were added.
    pub fn add_listed(&self, listed: &pb::ListShardsResponse) -> Result<usize, StorageError> {
        let mut added = 0;
        for info in &listed.shards {
            if info.id as usize != self.read().len() {
                continue;
            }
            let spec =
                shard_from_info(info, listed.slots).map_err(|e| StorageError::WrongShard {
                    shard: 0,
                    detail: format!("shard 0 lists a shard this client cannot use: {e}"),
                })?;
            let route = Arc::new(ShardRoute::new(&spec, &self.config, &self.transport)?);
            let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
            if routes.len() == spec.id as usize {
                routes.push(route);
                added += 1;
                tracing::info!(shard = spec.id, "storage client learned of a new shard");
            }
        }
        Ok(added)
    }
}

fn connect(
    addr: &str,
    peer: Identity,
    connect_timeout: Duration,
    transport: &Transport,
) -> Result<KvClient<Propagate<Channel>>, StorageError> {
    let endpoint = endpoint(addr).map_err(|e| StorageError::BadAddress {
        addr: addr.to_string(),
        detail: e.to_string(),
    })?;
    let endpoint = endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = transport
        .lazy_channel(endpoint, peer)
        .map_err(|e| StorageError::Tls(e.to_string()))?;
    Ok(KvClient::new(PropagateLayer.layer(channel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: &[u32]) -> pb::ListShardsResponse {
        pb::ListShardsResponse {
            slots: 1024,
            shards: ids
                .iter()
                .map(|&id| pb::ShardInfo {
                    id,
                    replicas: vec![pb::ShardReplica {
                        id: 1,
                        addr: format!("127.0.0.1:{}", 50071 + id),
                    }],
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn the_list_grows_by_the_next_ids_only() {
        let map = ShardMap::uniform(2, 1, |s, _| format!("127.0.0.1:{}", 50071 + s));
        let routes =
            Routes::new(&map, ClientConfig::default(), &Transport::Plaintext).expect("routes");
        assert_eq!(routes.add_listed(&listed(&[0, 1])).expect("same"), 0);
        assert_eq!(routes.add_listed(&listed(&[0, 1, 3])).expect("gap"), 0);
        assert_eq!(routes.add_listed(&listed(&[0, 1, 2, 3])).expect("two"), 2);
        assert_eq!(routes.ids(), vec![0, 1, 2, 3]);
        assert!(routes.get(4).is_err());
    }

    #[tokio::test]
    async fn one_caller_at_a_time_finds_the_list_due() {
        tokio::time::pause();
        let map = ShardMap::uniform(1, 1, |_, _| "127.0.0.1:50071".into());
        let routes =
            Routes::new(&map, ClientConfig::default(), &Transport::Plaintext).expect("routes");
        let every = Duration::from_secs(5);
        assert!(routes.list_due(every), "never asked");
        assert!(!routes.list_due(every), "just claimed");
        tokio::time::advance(every).await;
        assert!(routes.list_due(every));
    }
}
