//! The gRPC server bootstrap every service uses: bind, health, reflection,
//! and a graceful shutdown on SIGTERM/SIGINT.
//!
//! Shutdown order matters: first every health status flips to NOT_SERVING
//! (so probes and balancers stop sending new work), then the server stops
//! accepting and drains the calls in flight, for at most the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use rand::Rng as _;
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use crate::layers::authorize::AuthorizeLayer;
use crate::layers::deadline::DeadlineLayer;
use crate::layers::decode_error::DecodeErrorLayer;
use crate::layers::red::RedLayer;
use crate::layers::shed::ShedLayer;
use crate::layers::trace::TraceLayer;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// Why a server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
}

/// Binds a TCP listener, with an error that names the address.
pub async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// The listener as the stream tonic serves from, with TCP_NODELAY on every
/// accepted connection. (Server::tcp_nodelay applies only to listeners
/// tonic binds itself; without it, small responses wait for Nagle and the
/// peer's delayed ACK: 40 ms stalls.)
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// The middleware every server runs, outside in: RED metrics, trace span,
/// authorization, load shedding, deadline, decode errors (see each layer's
/// module for why it sits where it does).
pub type ServerLayers = Stack<
    DecodeErrorLayer,
    Stack<
        DeadlineLayer,
        Stack<ShedLayer, Stack<AuthorizeLayer, Stack<TraceLayer, Stack<RedLayer, Identity>>>>,
    >,
>;

/// How much a server takes on.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Calls served at once; beyond, RESOURCE_EXHAUSTED (0: no bound).
    pub max_in_flight: usize,
    /// The deadline of a call that brought none.
    pub default_deadline: Duration,
    /// The longest deadline a call may have; longer ones are cut to it.
    pub max_deadline: Duration,
    /// The largest request message accepted (bytes).
    pub max_request_bytes: usize,
    /// How long a client connection lives before the server asks the
    /// client to move to a new one (see `ConnectionAge`).
    pub connection_age: ConnectionAge,
}

/// Whether and when a server ends client connections by age.
///
/// Only a server whose clients reach it through a connection balancer (a
/// Kubernetes Service address in front of the gateways) needs it: gRPC keeps
/// one HTTP/2 connection per peer, so without it a client stays on the
/// replica it first reached and never meets one that started later. The
/// gateway balances business per request over every address it resolves,
/// and storage clients (business, Raft peers) dial the replica they mean,
/// so those servers never age connections: aging them only adds moments
/// where a call meets a closing connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionAge {
    /// Connections live until the client or the network ends them.
    Unlimited,
    /// After about `max` (each process draws its own age within ±10 %,
    /// gRPC's jitter, so that replicas started together do not send every
    /// client away in the same second) the server sends GOAWAY: the client
    /// opens a new connection for its next calls, and the old one closes
    /// once the calls already on it have ended — at most the server's
    /// longest deadline (`--max-deadline`) later, since the deadline layer
    /// bounds every call.
    Limited { max: Duration },
}

impl ConnectionAge {
    /// Ages connections after about `max` (0: never).
    pub fn after(max: Duration) -> Self {
        if max.is_zero() {
            Self::Unlimited
        } else {
            Self::Limited { max }
        }
    }

    /// The age this process gives its connections: `max` ±10 %.
    fn jittered(max: Duration) -> Duration {
        max.mul_f64(rand::rng().random_range(0.9..=1.1))
    }
}

/// A tonic server with the settings and middleware every service wants;
/// `authorize` decides who may call what (`AuthorizeLayer::off()` for a
/// public or plaintext server).
///
/// Connections are aged only as `limits.connection_age` says.
pub fn builder(limits: ServerLimits, authorize: AuthorizeLayer) -> Server<ServerLayers> {
    let mut server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let ConnectionAge::Limited { max } = limits.connection_age {
        let age = ConnectionAge::jittered(max);
        tracing::debug!(?age, "client connections are aged");
        // No `max_connection_age_grace`: with a grace set, tonic 0.14 never
        // sends the GOAWAY at `age` — it closes the connection outright at
        // `age + grace`, cutting every call on it (seen as
        // "peer closed connection without sending TLS close_notify" at the
        // gateway, and failed deposits when both business replicas' cuts
        // fell in the same second). The deadline layer already bounds how
        // long the calls on a GOAWAY'd connection can take.
        server = server.max_connection_age(age);
    }
    server
        .layer(RedLayer)
        .layer(TraceLayer)
        .layer(authorize)
        .layer(ShedLayer::new(limits.max_in_flight))
        .layer(DeadlineLayer::new(
            limits.default_deadline,
            limits.max_deadline,
        ))
        .layer(DecodeErrorLayer)
}

/// Server reflection, v1 and v1alpha (grpcurl up to 1.8 speaks only
/// v1alpha), over the given encoded descriptor sets plus grpc.health.v1, so
/// `grpcurl list` and `grpcurl describe` work without proto files.
#[allow(clippy::type_complexity)]
pub fn reflection(
    sets: &[&'static [u8]],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServerError,
> {
    crate::grpc::register_methods(tonic_health::pb::FILE_DESCRIPTOR_SET);
    crate::grpc::register_methods(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET);
    crate::grpc::register_methods(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for set in sets {
        crate::grpc::register_methods(set);
    }
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for set in sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        builder
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// The health service name that answers "is the process alive?": SERVING
/// from start until shutdown begins, whatever readiness says. Liveness
/// probes ask for it; a storage replica that lost its leader is unready
/// (don't send it work) but alive (don't restart it).
pub const LIVENESS: &str = "liveness";

/// The health of one server: the whole server ("") and each named service
/// share one readiness status, which sticks at NOT_SERVING once shutdown
/// began; `LIVENESS` is SERVING until then.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Arc<[&'static str]>,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Health {
    /// Health for these service names, all starting NOT_SERVING until
    /// `set_serving(true)`.
    pub async fn new(services: &[&'static str]) -> Self {
        let health = Self {
            reporter: HealthReporter::new(),
            services: services.into(),
            stopping: Arc::new(AtomicBool::new(false)),
        };
        health.publish(ServingStatus::NotServing).await;
        health
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        health
    }

    /// The grpc.health.v1 service that reports this health.
    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    /// Reports SERVING or NOT_SERVING; ignored once shutdown has begun.
    pub async fn set_serving(&self, serving: bool) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.publish(status).await;
    }

    /// Reports NOT_SERVING for good.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.publish(ServingStatus::NotServing).await;
        self.reporter
            .set_service_status(LIVENESS, ServingStatus::NotServing)
            .await;
    }

    async fn publish(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in self.services.iter() {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// The shared shutdown signal: fires once, on SIGTERM, SIGINT or `trigger`.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal nobody has fired yet.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    /// Fires on SIGTERM or SIGINT, after marking every service NOT_SERVING.
    pub fn on_signals(health: Health) -> Result<Self, ServerError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
        let shutdown = Self::new();
        let fire = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                () = fire.wait() => return,
            };
            tracing::info!(signal = name, "shutting down: NOT_SERVING, then draining");
            health.stop().await;
            fire.trigger();
        });
        Ok(shutdown)
    }

    /// Fires the signal (tests, or a fatal error elsewhere).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn fired(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the signal has fired.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|fired| *fired).await;
        }
    }
}

/// Runs `serving` (a server built with `serve_with_incoming_shutdown(..,
/// shutdown.wait())`) to the end, but once the shutdown has fired waits at
/// most `grace` for in-flight calls to drain.
pub async fn run(
    serving: impl Future<Output = Result<(), tonic::transport::Error>>,
    shutdown: &Shutdown,
    grace: Duration,
) -> Result<(), ServerError> {
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => return Ok(result?),
        () = shutdown.wait() => {}
    }
    match tokio::time::timeout(grace, serving).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "grace period over; exiting with calls still in flight"
            );
            Ok(())
        }
    }
}

/// Serves grpc.health.v1 alone, in plaintext, on `addr` until `shutdown`
/// ("off": nowhere). Probes use it: a kubelet gRPC probe or a Compose
/// healthcheck cannot present a client certificate, and the main port
/// requires one. It answers nothing but health.
pub async fn spawn_health_listener(
    addr: &str,
    health: &Health,
    shutdown: &Shutdown,
) -> Result<Option<SocketAddr>, ServerError> {
    if addr == "off" {
        return Ok(None);
    }
    let listener = bind(addr).await?;
    let bound = local_addr(&listener)?;
    // Reflection of grpc.health.v1 only, so that a plain
    // `grpcurl -plaintext <addr> grpc.health.v1.Health/Check` works here too.
    let (reflection, reflection_alpha) = reflection(&[])?;
    let serving = Server::builder()
        .add_service(health.service())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.wait());
    tokio::spawn(async move {
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the health listener failed");
        }
    });
    Ok(Some(bound))
}

/// The address a listener actually got (useful with port 0).
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: "<bound listener>".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::pb::{HealthCheckRequest, health_check_response};

    async fn status(health: &Health, service: &str) -> health_check_response::ServingStatus {
        let reply = HealthService::from_health_reporter(health.reporter.clone())
            .check(tonic::Request::new(HealthCheckRequest {
                service: service.into(),
            }))
            .await
            .expect("known service");
        reply.into_inner().status()
    }

    #[test]
    fn a_zero_age_never_ages_and_ages_are_jittered_within_ten_percent() {
        assert_eq!(
            ConnectionAge::after(Duration::ZERO),
            ConnectionAge::Unlimited
        );
        let max = Duration::from_secs(60);
        assert_eq!(ConnectionAge::after(max), ConnectionAge::Limited { max });
        let ages: Vec<Duration> = (0..200).map(|_| ConnectionAge::jittered(max)).collect();
        assert!(
            ages.iter()
                .all(|a| (Duration::from_secs(54)..=Duration::from_secs(66)).contains(a))
        );
        assert!(
            ages.iter().any(|a| *a != ages[0]),
            "processes draw different ages"
        );
    }

    /// A client of an aging server, on a real socket: the connector counts
    /// the connections it opens.
    async fn aging_server_and_client(
        age: Duration,
    ) -> (
        tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let listener = bind("127.0.0.1:0").await.expect("bind");
        let addr = local_addr(&listener).expect("address");
        let health = Health::new(&[]).await;
        let limits = ServerLimits {
            max_in_flight: 0,
            default_deadline: Duration::from_secs(5),
            max_deadline: Duration::from_secs(30),
            max_request_bytes: 1 << 20,
            connection_age: ConnectionAge::after(age),
        };
        let router = builder(limits, AuthorizeLayer::off()).add_service(health.service());
        tokio::spawn(router.serve_with_incoming(incoming(listener)));
        let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connects.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
            }
        });
        let channel = tonic::transport::Endpoint::from_static("http://aging.test")
            .connect_with_connector_lazy(connector);
        (
            tonic_health::pb::health_client::HealthClient::new(channel),
            connects,
        )
    }

    // With tonic's `max_connection_age_grace` set (to --max-deadline, 30 s,
    // as this server did), the connection was cut at age + grace with no
    // GOAWAY before it: the client kept its one connection for 30.3 s here
    // and lost the calls on it when it was cut.
    #[tokio::test]
    async fn an_aged_connection_is_renewed_soon_after_its_age_and_no_call_fails() {
        let (mut client, connects) = aging_server_and_client(Duration::from_millis(300)).await;
        let renewed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut calls = 0;
            while connects.load(std::sync::atomic::Ordering::SeqCst) < 2 {
                client
                    .check(HealthCheckRequest::default())
                    .await
                    .unwrap_or_else(|e| panic!("call {calls} failed: {e}"));
                calls += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            calls
        })
        .await
        .expect("the client moved to a new connection within 10 s of a 300 ms age");
        assert!(renewed > 1, "calls went over the first connection first");
        for _ in 0..20 {
            client
                .check(HealthCheckRequest::default())
                .await
                .expect("calls go on over the new connection");
        }
    }

    #[tokio::test]
    async fn liveness_stays_serving_while_unready_until_shutdown() {
        use health_check_response::ServingStatus as S;
        let health = Health::new(&["anatomy.x.v1.X"]).await;
        assert_eq!(status(&health, "").await, S::NotServing);
        assert_eq!(status(&health, LIVENESS).await, S::Serving);
        health.set_serving(true).await;
        assert_eq!(status(&health, "anatomy.x.v1.X").await, S::Serving);
        health.stop().await;
        assert_eq!(status(&health, "").await, S::NotServing);
        assert_eq!(status(&health, LIVENESS).await, S::NotServing);
        health.set_serving(true).await;
        assert_eq!(status(&health, "").await, S::NotServing, "stop sticks");
    }
}
