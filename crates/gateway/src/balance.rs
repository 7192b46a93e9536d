//! Client-side load balancing over the business replicas.
//!
//! gRPC keeps one long-lived HTTP/2 connection per peer, so a connection
//! balancer (kube-proxy, a plain Service VIP) pins each gateway to one
//! business replica. Instead the gateway resolves the business address
//! itself — every A record of the name, the same code under Docker Compose
//! (several containers per service name) and Kubernetes (a headless
//! Service) — re-resolves it periodically and after failures, and balances
//! each request with power of two choices over the number of requests in
//! flight (tower's p2c; tonic's own `balance_channel` picks at random).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anatomy_runtime::layers::breaker::{Breaker, BreakerConfig, BreakerHandle, BreakerState};
use anatomy_runtime::layers::propagate::PropagateLayer;
use anatomy_runtime::tls::transport::endpoint;
use anatomy_runtime::tls::{Identity, Transport};
use hickory_resolver::TokioResolver;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::BoxError;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::load_shed::error::Overloaded;
use tower::util::BoxCloneSyncService;
use tower::{Layer as _, ServiceBuilder};

/// A balanced, cloneable HTTP/2 service over every business replica.
pub type Pool = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, PoolError>;

/// The pool could not carry a call (a concrete type: tonic's generic
/// client bounds trip over a bare `BoxError` in async trait methods).
#[derive(Debug, thiserror::Error)]
#[error("business pool: {0}")]
pub struct PoolError(#[source] pub BoxError);

/// A `host:port` target that may resolve to several addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// A bad target list.
#[derive(Debug, thiserror::Error)]
#[error("invalid address {0:?}: expected host:port[,host:port...]")]
pub struct TargetError(String);

/// Parses `host:port,host:port`.
pub fn parse_targets(spec: &str) -> Result<Vec<Target>, TargetError> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| TargetError(s.into()))?;
            let port = port.parse().map_err(|_| TargetError(s.into()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(TargetError(s.into()));
            }
            Ok(Target {
                host: host.into(),
                port,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|t| {
            if t.is_empty() {
                Err(TargetError(spec.into()))
            } else {
                Ok(t)
            }
        })
}

/// What the pool's discovery task shares with the request path.
#[derive(Debug, Default)]
pub struct PoolState {
    endpoints: AtomicUsize,
    failure: Notify,
}

impl PoolState {
    /// How many business replicas the pool currently balances over.
    pub fn endpoints(&self) -> usize {
        self.endpoints.load(Ordering::Relaxed)
    }

    /// A call failed to reach a replica: re-resolve soon.
    pub fn report_failure(&self) {
        self.failure.notify_one();
    }
}

/// Builds the pool and starts its discovery task; connections go over
/// `transport` (with mTLS, only to servers that are `business`).
///
/// The stack, outside in: a bounded queue (callers share one balancer);
/// load shedding (when no replica is ready, fail now with UNAVAILABLE
/// instead of waiting out the deadline); p2c over in-flight counts; and
/// per replica a circuit breaker, so a dead replica — which fails fast and
/// so looks least loaded — leaves the ready set instead of drawing calls.
pub fn pool(
    targets: Vec<Target>,
    every: Duration,
    queue: usize,
    breaker: BreakerConfig,
    transport: Transport,
) -> (Pool, Arc<PoolState>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(PoolState::default());
    tokio::spawn(discover(
        targets,
        every,
        breaker,
        transport,
        tx,
        state.clone(),
    ));
    let discover = PendingRequestsDiscover::new(
        UnboundedReceiverStream::new(rx),
        CompleteOnResponse::default(),
    );
    let balanced = ServiceBuilder::new()
        .map_err(pool_error)
        .buffer(queue.max(1))
        .load_shed()
        .service(Balance::new(discover));
    // Outermost, so it runs in the caller's span (the buffer runs the rest
    // on its own task).
    let traced = PropagateLayer.layer(balanced);
    (BoxCloneSyncService::new(traced), state)
}

/// What the pool answers when no replica is ready to take a call: the
/// call reached no replica, so the gateway retries it (see
/// `ledger::unreachable`).
pub const NO_REPLICA_READY: &str =
    "no business replica is ready (all unreachable or still being discovered)";

fn pool_error(e: BoxError) -> PoolError {
    if e.is::<Overloaded>() {
        // tonic finds a Status in the error's source chain and uses it.
        return PoolError(Box::new(tonic::Status::unavailable(NO_REPLICA_READY)));
    }
    PoolError(e)
}

type Changes = mpsc::UnboundedSender<Result<Change<SocketAddr, Breaker<Channel>>, Infallible>>;

async fn discover(
    targets: Vec<Target>,
    every: Duration,
    breaker: BreakerConfig,
    transport: Transport,
    tx: Changes,
    state: Arc<PoolState>,
) {
    let resolver = match TokioResolver::builder_tokio().and_then(|b| {
        let mut b = b;
        b.options_mut().cache_size = 0;
        b.build()
    }) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "no DNS resolver; only IP addresses will work");
            None
        }
    };
    let mut current: HashSet<SocketAddr> = HashSet::new();
    let mut breakers: HashMap<SocketAddr, BreakerHandle> = HashMap::new();
    loop {
        let next = resolve_all(resolver.as_ref(), &targets, &current).await;
        for addr in next.difference(&current) {
            match channel(*addr, &transport) {
                Ok(c) => {
                    tracing::info!(%addr, "business replica added");
                    let endpoint = Breaker::new(c, breaker);
                    breakers.insert(*addr, endpoint.handle());
                    let _ = tx.send(Ok(Change::Insert(*addr, endpoint)));
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot use business address"),
            }
        }
        for addr in current.difference(&next) {
            tracing::info!(%addr, "business replica removed");
            breakers.remove(addr);
            metrics::gauge!("circuit_breaker_state", "endpoint" => addr.to_string()).set(0.0);
            let _ = tx.send(Ok(Change::Remove(*addr)));
        }
        state.endpoints.store(next.len(), Ordering::Relaxed);
        publish_metrics(&breakers);
        current = next;
        if tx.is_closed() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = state.failure.notified() => {
                // At most one early re-resolution per second.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Endpoint count and each endpoint's breaker state, for /metrics
/// (refreshed on every re-resolution, and early after failures).
fn publish_metrics(breakers: &HashMap<SocketAddr, BreakerHandle>) {
    metrics::gauge!("balancer_endpoints", "target" => "business").set(breakers.len() as f64);
    for (addr, handle) in breakers {
        let state = match handle.state() {
            BreakerState::Closed { .. } => 0.0,
            BreakerState::HalfOpen { .. } => 1.0,
            BreakerState::Open { .. } => 2.0,
        };
        metrics::gauge!("circuit_breaker_state", "endpoint" => addr.to_string()).set(state);
    }
}

/// Every address of every target; a name that fails to resolve keeps the
/// addresses it had (a DNS hiccup must not empty the pool).
async fn resolve_all(
    resolver: Option<&TokioResolver>,
    targets: &[Target],
    previous: &HashSet<SocketAddr>,
) -> HashSet<SocketAddr> {
    let mut out = HashSet::new();
    for t in targets {
        if let Ok(ip) = t.host.parse::<IpAddr>() {
            out.insert(SocketAddr::new(ip, t.port));
            continue;
        }
        let Some(resolver) = resolver else { continue };
        match resolver.lookup_ip(fqdn(&t.host)).await {
            Ok(ips) => out.extend(ips.iter().map(|ip| SocketAddr::new(ip, t.port))),
            Err(e) => {
                tracing::warn!(host = %t.host, error = %e, "cannot resolve business address; keeping the last answer");
                out.extend(previous.iter().filter(|a| a.port() == t.port));
            }
        }
    }
    out
}

/// Names with a dot are looked up as absolute names (no search-domain
/// expansion under Kubernetes' ndots:5); single labels as they are.
fn fqdn(host: &str) -> String {
    if host.contains('.') && !host.ends_with('.') {
        format!("{host}.")
    } else {
        host.to_string()
    }
}

fn channel(addr: SocketAddr, transport: &Transport) -> Result<Channel, String> {
    let endpoint = endpoint(&addr.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    transport
        .lazy_channel(endpoint, Identity::Business)
        .map_err(|e| e.to_string())
}

/// A pool over an address nothing listens on, for tests that never send
/// through it (or want every call refused).
#[cfg(test)]
pub(crate) fn unreachable_pool() -> (Pool, Arc<PoolState>) {
    pool(
        vec![Target {
            host: "127.0.0.1".into(),
            port: 1,
        }],
        Duration::from_secs(60),
        16,
        BreakerConfig::default(),
        Transport::Plaintext,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_lists() {
        let t = parse_targets("127.0.0.1:50061, business:50061").expect("valid");
        assert_eq!(
            t[1],
            Target {
                host: "business".into(),
                port: 50061
            }
        );
        assert!(parse_targets("business").is_err());
        assert!(parse_targets("business:x").is_err());
        assert!(parse_targets("").is_err());
    }

    #[test]
    fn dotted_names_are_absolute() {
        assert_eq!(
            fqdn("business.anatomy.svc.cluster.local"),
            "business.anatomy.svc.cluster.local."
        );
        assert_eq!(fqdn("business"), "business");
    }
}
