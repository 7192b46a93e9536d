//! The storage client: routes each request by its partition's slot to the
//! owning shard, sends it to that shard's leader (learned from NOT_LEADER
//! answers and cached per shard), and retries what is safe to retry within
//! the caller's deadline.
//!
//! Retried: NOT_LEADER (at once when the follower named the leader, else
//! after a backoff), UNAVAILABLE and transport failures (the next replica,
//! after exponential backoff with full jitter). Not retried: WRONG_SHARD
//! (the map is wrong; retrying cannot help) and bad requests. Writes are
//! retried too, so callers make them conditional: a write that did commit
//! before its answer was lost fails its conditions on the retry instead of
//! applying twice.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anatomy_proto::storage::v1 as pb;
use anatomy_proto::storage::v1::kv_client::KvClient;
use anatomy_runtime::layers::propagate::{Propagate, PropagateLayer};
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::Layer as _;

use crate::shard_map::{ShardId, ShardMap, ShardSpec};
use crate::wire_errors::{Fault, fault};

/// How the client connects and retries.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// TCP connect timeout per replica.
    pub connect_timeout: Duration,
    /// Longest one attempt may take (a frozen replica costs at most this).
    pub attempt_timeout: Duration,
    /// First retry backoff; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest retry backoff.
    pub backoff_max: Duration,
    /// Stop retrying this long before the caller's deadline (at most a
    /// tenth of it), so that UNAVAILABLE reaches the caller in time.
    pub deadline_margin: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(1),
            backoff_base: Duration::from_millis(25),
            // Polls a shard that is electing a leader about every 100 ms.
            backoff_max: Duration::from_millis(200),
            deadline_margin: Duration::from_millis(250),
        }
    }
}

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The shard could not answer within the deadline (no leader, no
    /// quorum, replicas down). Retryable later.
    #[error("storage shard {shard} is unavailable: {detail}")]
    Unavailable { shard: ShardId, detail: String },
    /// The shard map this client runs differs from the nodes'.
    #[error("storage shard {shard} refused the route: {detail}")]
    WrongShard { shard: ShardId, detail: String },
    /// Storage refused the request itself (a bug in the caller, or overload).
    #[error("storage shard {shard} rejected the request: {code:?}: {message}")]
    Rejected {
        shard: ShardId,
        code: Code,
        message: String,
    },
    /// A replica address in the shard map is not a valid URI.
    #[error("bad storage address {addr}: {detail}")]
    BadAddress { addr: String, detail: String },
}

const NO_LEADER: usize = usize::MAX;

#[derive(Debug)]
struct ShardRoute {
    spec: ShardSpec,
    clients: Vec<KvClient<Propagate<Channel>>>,
    leader: AtomicUsize,
}

impl ShardRoute {
    fn first_target(&self) -> usize {
        match self.leader.load(Ordering::Relaxed) {
            NO_LEADER => 0,
            i => i,
        }
    }

    fn index_of(&self, addr: &str) -> Option<usize> {
        self.spec.replicas.iter().position(|r| r.addr == addr)
    }
}

/// A client of every shard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StorageClient {
    map: Arc<ShardMap>,
    shards: Arc<[ShardRoute]>,
    config: ClientConfig,
}

impl StorageClient {
    /// A client for `map`; connects lazily.
    pub fn new(map: ShardMap, config: ClientConfig) -> Result<Self, StorageError> {
        let shards = map
            .shards
            .iter()
            .map(|spec| {
                let clients = spec
                    .replicas
                    .iter()
                    .map(|r| connect(&r.addr, config.connect_timeout))
                    .collect::<Result<_, _>>()?;
                Ok(ShardRoute {
                    spec: spec.clone(),
                    clients,
                    leader: AtomicUsize::new(NO_LEADER),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Self {
            map: Arc::new(map),
            shards: shards.into(),
            config,
        })
    }

    /// The shard map this client routes by.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    fn route(&self, shard: ShardId) -> Result<&ShardRoute, StorageError> {
        self.shards
            .get(shard as usize)
            .ok_or(StorageError::WrongShard {
                shard,
                detail: format!("the shard map has no shard {shard}"),
            })
    }

    fn route_for(&self, partition: &str) -> &ShardRoute {
        &self.shards[self.map.shard_for(partition).id as usize]
    }

    fn pb_route(&self, shard: ShardId) -> Option<pb::Route> {
        Some(pb::Route {
            shard_id: shard,
            map_version: self.map.version,
        })
    }

    /// Reads items of one partition (linearizable).
    pub async fn read(
        &self,
        partition: &str,
        keys: Vec<pb::ItemKey>,
        timeout: Duration,
    ) -> Result<Vec<pb::Item>, StorageError> {
        let shard = self.route_for(partition);
        let request = pb::ReadRequest {
            route: self.pb_route(shard.spec.id),
            partition: partition.to_string(),
            keys,
        };
        self.call(shard, timeout, |mut c, t| {
            let req = with_timeout(request.clone(), t);
            async move { c.read(req).await }
        })
        .await
        .map(|r| r.items)
    }

    /// An atomic conditional batch inside one partition.
    pub async fn write(
        &self,
        partition: &str,
        conditions: Vec<pb::Condition>,
        mutations: Vec<pb::Mutation>,
        timeout: Duration,
    ) -> Result<pb::WriteResponse, StorageError> {
        let shard = self.route_for(partition);
        let request = pb::WriteRequest {
            route: self.pb_route(shard.spec.id),
            partition: partition.to_string(),
            conditions,
            mutations,
        };
        self.call(shard, timeout, |mut c, t| {
            let req = with_timeout(request.clone(), t);
            async move { c.write(req).await }
        })
        .await
    }

    /// A scan. Inside one partition the route comes from the partition;
    /// across partitions (`PartitionPrefix`) it goes to `shard`.
    pub async fn scan(
        &self,
        shard: ShardId,
        mut request: pb::ScanRequest,
        timeout: Duration,
    ) -> Result<pb::ScanResponse, StorageError> {
        let shard = match &request.scope {
            Some(pb::scan_request::Scope::Partition(p)) => self.route_for(p),
            _ => self.route(shard)?,
        };
        request.route = self.pb_route(shard.spec.id);
        self.call(shard, timeout, |mut c, t| {
            let req = with_timeout(request.clone(), t);
            async move { c.scan(req).await }
        })
        .await
    }

    /// Runs one call against a shard with leader following and retries.
    async fn call<T, F, Fut>(
        &self,
        shard: &ShardRoute,
        timeout: Duration,
        mut op: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut(KvClient<Propagate<Channel>>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + timeout - self.config.deadline_margin.min(timeout / 10);
        let replicas = shard.clients.len();
        let mut target = shard.first_target();
        let mut last = String::from("no attempt finished before the deadline");
        for attempt in 0u32.. {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let budget = remaining.min(self.config.attempt_timeout);
            let status = match op(shard.clients[target].clone(), budget).await {
                Ok(response) => {
                    shard.leader.store(target, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Err(status) => status,
            };
            last = format!(
                "{}: {:?}: {}",
                shard.spec.replicas[target].addr,
                status.code(),
                status.message()
            );
            match fault(&status) {
                Fault::NotLeader { leader_addr } => {
                    if let Some(i) = leader_addr.as_deref().and_then(|a| shard.index_of(a))
                        && i != target
                    {
                        shard.leader.store(i, Ordering::Relaxed);
                        target = i;
                        continue;
                    }
                    metrics::counter!("storage_client_retries_total",
                        "shard" => shard.spec.id.to_string(), "reason" => "NotLeader")
                    .increment(1);
                    shard.leader.store(NO_LEADER, Ordering::Relaxed);
                    target = (target + 1) % replicas;
                }
                Fault::WrongShard { .. } => {
                    return Err(StorageError::WrongShard {
                        shard: shard.spec.id,
                        detail: status.message().to_string(),
                    });
                }
                Fault::Other if retryable(status.code()) => {
                    metrics::counter!("storage_client_retries_total",
                        "shard" => shard.spec.id.to_string(), "reason" => anatomy_runtime::grpc::code_name(status.code()))
                    .increment(1);
                    shard.leader.store(NO_LEADER, Ordering::Relaxed);
                    target = (target + 1) % replicas;
                }
                Fault::Other => {
                    return Err(StorageError::Rejected {
                        shard: shard.spec.id,
                        code: status.code(),
                        message: status.message().to_string(),
                    });
                }
            }
            let pause = self
                .backoff(attempt)
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
        Err(StorageError::Unavailable {
            shard: shard.spec.id,
            detail: last,
        })
    }

    /// Exponential backoff with full jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.config.backoff_max);
        cap.mul_f64(rand::rng().random::<f64>())
    }
}

/// Failures that another attempt (maybe on another replica) can fix.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Aborted
    )
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

fn connect(
    addr: &str,
    connect_timeout: Duration,
) -> Result<KvClient<Propagate<Channel>>, StorageError> {
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| StorageError::BadAddress {
            addr: addr.to_string(),
            detail: e.to_string(),
        })?;
    let channel = endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(KvClient::new(PropagateLayer.layer(channel)))
}
