//! The storage client: routes each request by its partition's slot to the
//! owning shard, sends it to that shard's leader (learned from NOT_LEADER
//! answers and cached per shard), and retries what is safe to retry within
//! the caller's deadline.
//!
//! Retried: NOT_LEADER (at once when the follower named the leader, else
//! after a backoff), UNAVAILABLE and transport failures (the next replica,
//! after exponential backoff with full jitter). SLOT_MOVING waits briefly
//! and asks again, bounded by the deadline only. Not retried: WRONG_SHARD
//! (the map is wrong; retrying cannot help) and bad requests. Writes are
//! retried too, so callers make them conditional: a write that did commit
//! before its answer was lost fails its conditions on the retry instead of
//! applying twice.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anatomy_runtime::grpc::failed_in_transit;
use anatomy_runtime::layers::propagate::{Propagate, PropagateLayer};
use anatomy_runtime::retry::{self, Backoff, GaveUp, RetryPolicy, Step};

use crate::breaker::{Admit, ShardBreaker};
use crate::owners::SlotOwners;
use anatomy_runtime::tls::{Identity, Transport, transport::endpoint};
use storage_api::v1 as pb;
use storage_api::v1::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::Layer as _;

use storage_api::shard_map::{ShardId, ShardMap, ShardSpec, shard_from_info};
use storage_api::wire_errors::{Fault, fault};

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
    /// A shard that answered nothing for this long fails calls at once
    /// (UNAVAILABLE naming it) instead of retrying to each deadline; zero:
    /// never (see `breaker`).
    pub breaker_open_after: Duration,
    /// While it fails fast, one call this often goes through to probe it.
    pub breaker_probe_every: Duration,
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
            // A few election timeouts (250-500 ms each): a normal election
            // ends well within it.
            breaker_open_after: Duration::from_millis(2500),
            breaker_probe_every: Duration::from_millis(250),
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
    /// The slot moved to another shard (a redirect). The client follows it
    /// itself; a caller sees this only when redirects did not settle.
    #[error(
        "storage shard {shard} says slot {slot} moved to shard {owner} (map version {map_version})"
    )]
    Moved {
        shard: ShardId,
        slot: u32,
        owner: ShardId,
        map_version: u64,
    },
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
    /// Our certificate cannot be used to reach storage.
    #[error("cannot set up TLS to storage: {0}")]
    Tls(String),
}

impl StorageError {
    /// What a caller outside the cluster may be told: which dependency
    /// failed and how, never where it lives (the full error, with replica
    /// addresses, is for this service's logs).
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable { shard, .. } => format!(
                "storage shard {shard} is unavailable (no replica could serve it in time); retry later"
            ),
            Self::WrongShard { shard, .. } | Self::Moved { shard, .. } => {
                format!("storage shard {shard} is being reconfigured; retry later")
            }
            Self::Rejected { shard, code, .. } => {
                format!("storage shard {shard} refused the request ({code:?})")
            }
            Self::BadAddress { .. } | Self::Tls(_) => {
                "this service cannot reach storage (misconfigured; see its logs)".into()
            }
        }
    }
}

const NO_LEADER: usize = usize::MAX;

#[derive(Debug)]
struct ShardRoute {
    spec: ShardSpec,
    clients: Vec<KvClient<Propagate<Channel>>>,
    leader: AtomicUsize,
    breaker: ShardBreaker,
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

    fn first_target(&self) -> usize {
        match self.leader.load(Ordering::Relaxed) {
            NO_LEADER => 0,
            i => i,
        }
    }
}

/// A client of every shard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StorageClient {
    map: Arc<ShardMap>,
    owners: Arc<SlotOwners>,
    /// One route per shard, in id order; grows when shard 0 lists a shard
    /// added to the running cluster (`refresh_shards`).
    shards: Arc<RwLock<Vec<Arc<ShardRoute>>>>,
    /// When the shard list was last asked for.
    listed_at: Arc<Mutex<Option<Instant>>>,
    transport: Transport,
    config: ClientConfig,
}

/// How often the client asks shard 0 for the shard list while it is used:
/// a shard added to the cluster is known within this long even by a client
/// no redirect has sent there yet (a cross-shard scan must include it).
const SHARD_LIST_EVERY: Duration = Duration::from_secs(5);
/// How long asking shard 0 for the shard list may take.
const SHARD_LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// How many redirects one call follows at most (a slot moved more often
/// than this during one call is refused; the caller retries later).
const MAX_REDIRECTS: usize = 4;

impl StorageClient {
    /// A client for `map` over `transport` (with mTLS, each replica's
    /// connection accepts only that replica's identity); connects lazily.
    pub fn new(
        map: ShardMap,
        config: ClientConfig,
        transport: &Transport,
    ) -> Result<Self, StorageError> {
        let shards = map
            .shards
            .iter()
            .map(|spec| ShardRoute::new(spec, &config, transport).map(Arc::new))
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Self {
            owners: Arc::new(SlotOwners::from_map(&map)),
            map: Arc::new(map),
            shards: Arc::new(RwLock::new(shards)),
            listed_at: Arc::default(),
            transport: transport.clone(),
            config,
        })
    }

    /// The ids of every shard this client knows, in order.
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.maybe_refresh_shards();
        self.routes().iter().map(|r| r.spec.id).collect()
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ShardRoute>>> {
        self.shards.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks shard 0 for the shard list and adds a route to each shard not
    /// known yet; returns how many were added. The list only grows.
    pub async fn refresh_shards(&self) -> Result<usize, StorageError> {
        *self.listed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let zero = self.route(0)?;
        let answer = self
            .call(&zero, SHARD_LIST_TIMEOUT, |mut c, t| async move {
                c.list_shards(with_timeout(pb::ListShardsRequest {}, t))
                    .await
            })
            .await?;
        let mut added = 0;
        for info in &answer.shards {
            if info.id as usize != self.routes().len() {
                continue;
            }
            let spec =
                shard_from_info(info, answer.slots).map_err(|e| StorageError::WrongShard {
                    shard: 0,
                    detail: format!("shard 0 lists a shard this client cannot use: {e}"),
                })?;
            let route = Arc::new(ShardRoute::new(&spec, &self.config, &self.transport)?);
            let mut routes = self.shards.write().unwrap_or_else(|e| e.into_inner());
            if routes.len() == spec.id as usize {
                routes.push(route);
                added += 1;
                tracing::info!(shard = spec.id, "storage client learned of a new shard");
            }
        }
        Ok(added)
    }

    /// Refreshes the shard list in the background when it was last asked
    /// for more than `SHARD_LIST_EVERY` ago (or never).
    fn maybe_refresh_shards(&self) {
        let due = {
            let mut at = self.listed_at.lock().unwrap_or_else(|e| e.into_inner());
            let due = at.is_none_or(|t| t.elapsed() >= SHARD_LIST_EVERY);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if due && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.clone();
            runtime.spawn(async move {
                if let Err(e) = client.refresh_shards().await {
                    tracing::debug!(error = %e, "could not refresh the shard list");
                }
            });
        }
    }

    /// The shard that owns a partition, as this client knows now.
    pub fn shard_of(&self, partition: &str) -> ShardId {
        self.owners.owner(self.map.slot(partition))
    }

    /// Runs `call` on the partition's owner, following redirects: a shard
    /// that gave the slot away names its new owner, which this client
    /// remembers (only if newer than what it knew) and asks instead.
    async fn routed<T, F, Fut>(
        &self,
        partition: &str,
        timeout: Duration,
        call: F,
    ) -> Result<T, StorageError>
    where
        F: Fn(ShardId, Duration) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        self.maybe_refresh_shards();
        let started = Instant::now();
        let mut last = None;
        for _ in 0..MAX_REDIRECTS {
            let left = timeout.saturating_sub(started.elapsed());
            match call(self.shard_of(partition), left).await {
                Err(StorageError::Moved {
                    slot,
                    owner,
                    map_version,
                    shard,
                }) => {
                    let moved = StorageError::WrongShard {
                        shard,
                        detail: format!(
                            "slot {slot} moved to shard {owner} (map version {map_version})"
                        ),
                    };
                    if !self.owners.learn(slot, owner, map_version) {
                        return Err(moved);
                    }
                    if self.route(owner).is_err() {
                        // A shard added after this client started.
                        self.refresh_shards().await?;
                    }
                    last = Some(moved);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(StorageError::WrongShard {
            shard: self.shard_of(partition),
            detail: "redirects did not settle".into(),
        }))
    }

    fn route(&self, shard: ShardId) -> Result<Arc<ShardRoute>, StorageError> {
        self.routes()
            .get(shard as usize)
            .cloned()
            .ok_or(StorageError::WrongShard {
                shard,
                detail: format!("the shard map has no shard {shard}"),
            })
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
        self.read_with(partition, keys, pb::ReadConsistency::Linearizable, timeout)
            .await
    }

    /// Reads items of one partition with the consistency asked for.
    pub async fn read_with(
        &self,
        partition: &str,
        keys: Vec<pb::ItemKey>,
        consistency: pb::ReadConsistency,
        timeout: Duration,
    ) -> Result<Vec<pb::Item>, StorageError> {
        let request = pb::ReadRequest {
            route: None,
            partition: partition.to_string(),
            keys,
            consistency: consistency.into(),
        };
        self.routed(partition, timeout, |id, timeout| {
            let request = pb::ReadRequest {
                route: self.pb_route(id),
                ..request.clone()
            };
            async move {
                self.call(&*self.route(id)?, timeout, move |mut c, t| {
                    let req = with_timeout(request.clone(), t);
                    async move { c.read(req).await }
                })
                .await
            }
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
        let request = pb::WriteRequest {
            route: None,
            partition: partition.to_string(),
            conditions,
            mutations,
        };
        self.routed(partition, timeout, |id, timeout| {
            let request = pb::WriteRequest {
                route: self.pb_route(id),
                ..request.clone()
            };
            async move {
                self.call(&*self.route(id)?, timeout, move |mut c, t| {
                    let req = with_timeout(request.clone(), t);
                    async move { c.write(req).await }
                })
                .await
            }
        })
        .await
    }

    /// A scan. Inside one partition the route comes from the partition;
    /// across partitions (`PartitionPrefix`) it goes to `shard`.
    pub async fn scan(
        &self,
        shard: ShardId,
        request: pb::ScanRequest,
        timeout: Duration,
    ) -> Result<pb::ScanResponse, StorageError> {
        let scan = |id: ShardId, timeout| {
            let request = pb::ScanRequest {
                route: self.pb_route(id),
                ..request.clone()
            };
            async move {
                self.call(&*self.route(id)?, timeout, move |mut c, t| {
                    let req = with_timeout(request.clone(), t);
                    async move { c.scan(req).await }
                })
                .await
            }
        };
        match &request.scope {
            Some(pb::scan_request::Scope::Partition(p)) => self.routed(p, timeout, scan).await,
            _ => scan(shard, timeout).await,
        }
    }

    /// Runs one call against a shard with leader following and retries
    /// (the runtime's one retry loop), within `timeout`.
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
        let mut deadline = Instant::now() + timeout - self.config.deadline_margin.min(timeout / 10);
        match shard.breaker.admit() {
            Admit::Go => {}
            Admit::Probe => deadline = deadline.min(Instant::now() + shard.breaker.probe_budget()),
            Admit::Refuse { failing_for } => {
                metrics::counter!("storage_client_fail_fast_total",
                    "shard" => shard.spec.id.to_string())
                .increment(1);
                return Err(StorageError::Unavailable {
                    shard: shard.spec.id,
                    detail: format!(
                        "no replica has served it for {failing_for:?} (no leader, or no majority); \
                         failing fast while it is probed"
                    ),
                });
            }
        }
        let policy = RetryPolicy {
            backoff: Backoff {
                base: self.config.backoff_base,
                max: self.config.backoff_max,
            },
            max_retries: None,
            budget: None,
        };
        let target = AtomicUsize::new(shard.first_target());
        let outcome = retry::run(&policy, deadline, |attempt| {
            let at = target.load(Ordering::Relaxed);
            let budget = attempt.remaining.min(self.config.attempt_timeout);
            let answer = op(shard.clients[at].clone(), budget);
            let target = &target;
            async move {
                match answer.await {
                    Ok(response) => {
                        shard.breaker.success();
                        shard.leader.store(at, Ordering::Relaxed);
                        Step::Done(response.into_inner())
                    }
                    Err(status) => {
                        let (step, next) = judge(shard, at, &status);
                        target.store(next, Ordering::Relaxed);
                        step
                    }
                }
            }
        })
        .await;
        outcome.map_err(|gave_up| match gave_up {
            GaveUp::Deadline(None) => StorageError::Unavailable {
                shard: shard.spec.id,
                detail: "no attempt finished before the deadline".into(),
            },
            GaveUp::Failed(e)
            | GaveUp::Deadline(Some(e))
            | GaveUp::BudgetSpent(e)
            | GaveUp::Exhausted(e) => e,
        })
    }
}

/// How long to wait before asking again about a slot in a move: a move
/// pauses each slot for about as long as its copy takes (tens of
/// milliseconds for a few slots; docs/partitioning.md).
const SLOT_MOVING_PAUSE: Duration = Duration::from_millis(25);

/// What a failed attempt on replica `at` of `shard` means, and which
/// replica to try next: the leader a follower named (at once), else the
/// next replica after a backoff; a misroute or a bad request is final.
fn judge<T>(shard: &ShardRoute, at: usize, status: &Status) -> (Step<T, StorageError>, usize) {
    let replicas = shard.clients.len();
    let unavailable = || StorageError::Unavailable {
        shard: shard.spec.id,
        detail: format!(
            "{}: {:?}: {}",
            shard.spec.replicas[at].addr,
            status.code(),
            status.message()
        ),
    };
    let count_retry = |reason: &'static str| {
        metrics::counter!("storage_client_retries_total",
            "shard" => shard.spec.id.to_string(), "reason" => reason)
        .increment(1);
        shard.leader.store(NO_LEADER, Ordering::Relaxed);
    };
    match fault(status) {
        Fault::NotLeader {
            leader_id,
            leader_addr,
        } => {
            if let Some(i) = leader_index(&shard.spec, leader_id, leader_addr.as_deref())
                && i != at
            {
                shard.leader.store(i, Ordering::Relaxed);
                return (Step::RetryNow(unavailable()), i);
            }
            if shard.breaker.failure() {
                return (Step::Fail(unavailable()), at);
            }
            count_retry("NotLeader");
            (Step::Retry(unavailable()), (at + 1) % replicas)
        }
        Fault::WrongShard {
            node_map_version: Some(map_version),
            owner: Some((slot, owner)),
        } => (
            Step::Fail(StorageError::Moved {
                shard: shard.spec.id,
                slot,
                owner,
                map_version,
            }),
            at,
        ),
        Fault::WrongShard { .. } => {
            let wrong = StorageError::WrongShard {
                shard: shard.spec.id,
                detail: status.message().to_string(),
            };
            (Step::Fail(wrong), at)
        }
        Fault::SlotMoving { .. } => {
            // A healthy leader pausing one slot for a move: wait and ask it
            // again. Not a retry (nothing failed), so only the deadline
            // bounds it; the leader stays the leader.
            metrics::counter!("storage_client_retries_total",
                "shard" => shard.spec.id.to_string(), "reason" => "SlotMoving")
            .increment(1);
            (Step::Wait(unavailable(), SLOT_MOVING_PAUSE), at)
        }
        Fault::Other if retryable(status.code()) || failed_in_transit(status) => {
            if shard.breaker.failure() {
                return (Step::Fail(unavailable()), at);
            }
            count_retry(anatomy_runtime::grpc::code_name(status.code()));
            (Step::Retry(unavailable()), (at + 1) % replicas)
        }
        Fault::Other => {
            let rejected = StorageError::Rejected {
                shard: shard.spec.id,
                code: status.code(),
                message: status.message().to_string(),
            };
            (Step::Fail(rejected), at)
        }
    }
}

/// Which of `spec`'s replicas a NOT_LEADER hint names: by id first. The
/// follower's address for the leader comes from its own shard map, which
/// may name replicas otherwise than ours — found by the nemesis, whose
/// replicas reach each other through proxies: following addresses only,
/// clients missed every hint and polled the replicas in turn, and the bank
/// workload stalled for up to 27 s (docs/correctness.md).
fn leader_index(
    spec: &ShardSpec,
    leader_id: Option<u64>,
    leader_addr: Option<&str>,
) -> Option<usize> {
    leader_id
        .and_then(|id| spec.replicas.iter().position(|r| r.id == id))
        .or_else(|| leader_addr.and_then(|a| spec.replicas.iter().position(|r| r.addr == a)))
}

/// Failures that another attempt (maybe on another replica) can fix; and
/// any status tonic made from a connection that broke under the call
/// (`failed_in_transit`, an Internal h2 error among them).
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

    #[test]
    fn a_leader_hint_is_followed_by_id_whatever_address_it_gives() {
        let spec = ShardSpec {
            id: 0,
            slot_start: 0,
            slot_end: 1024,
            replicas: (1..=3)
                .map(|id| storage_api::shard_map::ReplicaSpec {
                    id,
                    addr: format!("10.0.0.{id}:50071"),
                })
                .collect(),
        };
        let through_a_proxy = Some("127.0.0.1:40573");
        assert_eq!(leader_index(&spec, Some(3), through_a_proxy), Some(2));
        assert_eq!(leader_index(&spec, None, Some("10.0.0.2:50071")), Some(1));
        assert_eq!(leader_index(&spec, None, through_a_proxy), None);
        assert_eq!(leader_index(&spec, Some(9), None), None);
    }

    #[test]
    fn public_messages_name_the_shard_never_an_address() {
        let addr = "10.1.2.3:50071";
        let errors = [
            StorageError::Unavailable {
                shard: 2,
                detail: format!("{addr}: connection refused"),
            },
            StorageError::WrongShard {
                shard: 2,
                detail: format!("{addr} says shard 1"),
            },
            StorageError::Rejected {
                shard: 2,
                code: Code::Internal,
                message: format!("at {addr}"),
            },
            StorageError::BadAddress {
                addr: addr.into(),
                detail: "bad".into(),
            },
            StorageError::Tls(format!("{addr}: no certificate")),
        ];
        for e in errors {
            let public = e.public_message();
            assert!(!public.contains("10.1.2.3"), "{public}");
            assert!(
                e.to_string().contains("10.1.2.3"),
                "the log keeps the detail: {e}"
            );
        }
    }
}
