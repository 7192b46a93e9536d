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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anatomy_runtime::grpc::failed_in_transit;
use anatomy_runtime::layers::propagate::Propagate;
use anatomy_runtime::retry::{self, Backoff, GaveUp, RetryPolicy, Step};

use crate::breaker::Admit;
use crate::config::ClientConfig;
use crate::error::StorageError;
use crate::owners::SlotOwners;
use crate::routes::{Routes, ShardRoute};
use anatomy_runtime::tls::Transport;
use storage_api::v1 as pb;
use storage_api::v1::kv_client::KvClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};

use storage_api::shard_map::{ShardId, ShardMap, ShardSpec};
use storage_api::wire_errors::{Fault, fault};

/// A client of every shard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StorageClient {
    map: Arc<ShardMap>,
    owners: Arc<SlotOwners>,
    /// One route per shard; grows when shard 0 lists a shard added to
    /// the running cluster (`refresh_shards`).
    routes: Arc<Routes>,
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
        Ok(Self {
            owners: Arc::new(SlotOwners::from_map(&map)),
            routes: Arc::new(Routes::new(&map, config, transport)?),
            map: Arc::new(map),
            config,
        })
    }

    /// The ids of every shard this client knows, in order.
    pub fn shard_ids(&self) -> Vec<ShardId> {
        self.maybe_refresh_shards();
        self.routes.ids()
    }

    /// Asks shard 0 for the shard list and adds a route to each shard not
    /// known yet; returns how many were added. The list only grows.
    pub async fn refresh_shards(&self) -> Result<usize, StorageError> {
        self.routes.listed_now();
        let zero = self.route(0)?;
        let answer = self
            .call(&zero, SHARD_LIST_TIMEOUT, |mut c, t| async move {
                c.list_shards(with_timeout(pb::ListShardsRequest {}, t))
                    .await
            })
            .await?;
        self.routes.add_listed(&answer)
    }

    /// Refreshes the shard list in the background when it was last asked
    /// for more than `SHARD_LIST_EVERY` ago (or never).
    fn maybe_refresh_shards(&self) {
        if self.routes.list_due(SHARD_LIST_EVERY)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
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
    ///
    /// A redirect that teaches nothing new is not a reason to give up:
    /// concurrent calls sent to the old owner all come back with the same
    /// redirect, and only the first one learns it — the others just ask
    /// the owner it learned (found by the reshard e2e, which refused one
    /// deposit of ~14 000 this way). And a shard this client already knows
    /// to own the slot again, at a newer map version than its redirect
    /// names, has not applied that version yet (a new leader catching up):
    /// it is asked again after a pause, within the deadline. A redirect for
    /// another slot than the partition's (a batch that also holds another
    /// partition's keys, whose slot moved away) is the caller's to handle:
    /// it plans the batch anew.
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
        let own_slot = self.map.slot(partition);
        let mut redirects = 0;
        loop {
            let asked = self.shard_of(partition);
            let left = timeout.saturating_sub(started.elapsed());
            let (slot, moved) = match call(asked, left).await {
                Err(StorageError::Moved {
                    slot,
                    owner,
                    map_version,
                    shard,
                }) => {
                    self.owners.learn(slot, owner, map_version);
                    let moved = StorageError::WrongShard {
                        shard,
                        detail: format!(
                            "slot {slot} moved to shard {owner} (map version {map_version})"
                        ),
                    };
                    (slot, moved)
                }
                other => return other,
            };
            if slot != own_slot {
                return Err(moved);
            }
            let now = self.shard_of(partition);
            if now == asked {
                // The shard knows an older map than this client: wait for
                // it to catch up, as for a slot in a move.
                if started.elapsed() + SLOT_MOVING_PAUSE >= timeout {
                    return Err(moved);
                }
                tokio::time::sleep(SLOT_MOVING_PAUSE).await;
                continue;
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(moved);
            }
            if self.route(now).is_err() {
                // A shard added after this client started.
                self.refresh_shards().await?;
            }
        }
    }

    fn route(&self, shard: ShardId) -> Result<Arc<ShardRoute>, StorageError> {
        self.routes.get(shard)
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
        shard.forget_leader();
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
}
