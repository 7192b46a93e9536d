//! The public edge, in process: a real gateway (its HTTP router, and its
//! gRPC server on a loopback port) in front of a real business gRPC server
//! whose store is the in-memory fake. Started once per fuzzing process.
//!
//! The backend is healthy and fast, so a 5xx or an INTERNAL from the edge
//! can only come from the input: that is what the targets look for.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anatomy_runtime::tls::Transport;
use anatomy_runtime::{Health, Shutdown};
use business::adapters::grpc::LedgerService;
use business::app::fake::FakeStore;
use business::app::ledger::Ledger;
use business::app::ports::SystemClock;
use business_api::v1::ledger_server::LedgerServer;
use gateway::config::Cli;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_stream::wrappers::TcpListenerStream;

/// The API key of tenant `acme` (the gateway's development keys).
pub const ACME_KEY: &str = "dev-key-acme";

/// The running edge.
pub struct Edge {
    /// Runs the servers; targets `block_on` it.
    pub runtime: Runtime,
    /// The gateway's HTTP/JSON router, as `gateway::serve` builds it.
    pub http: axum::Router,
    /// Where the gateway's gRPC server listens.
    pub grpc: SocketAddr,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("grpc", &self.grpc).finish()
    }
}

/// The edge of this process, started on first use.
pub fn edge() -> &'static Edge {
    static EDGE: OnceLock<Edge> = OnceLock::new();
    EDGE.get_or_init(start)
}

#[allow(clippy::expect_used)] // a fuzzing process without its edge cannot run
fn start() -> Edge {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (http, grpc) = runtime.block_on(async {
        let business = spawn_business().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let grpc = listener.local_addr().expect("local addr");
        let cli = gateway_cli(business);
        let (service, keys) =
            gateway::gateway(&cli.service, &Transport::Plaintext).expect("gateway");
        let http = gateway::http_app(&cli.service, service, keys);
        let health = Health::new(&[gateway::HEALTH_SERVICE]).await;
        tokio::spawn(async move {
            let served = gateway::serve(
                &cli.service,
                &Transport::Plaintext,
                listener,
                health,
                Shutdown::new(),
            )
            .await;
            served.expect("gateway serves");
        });
        (http, grpc)
    });
    Edge {
        runtime,
        http,
        grpc,
    }
}

/// The gateway's flags: every port on loopback port 0, the default limits.
fn gateway_cli(business: SocketAddr) -> Cli {
    use clap::Parser as _;
    Cli::parse_from([
        "gateway".to_string(),
        format!("--business-addr={business}"),
        "--listen=127.0.0.1:0".into(),
        "--http-listen=127.0.0.1:0".into(),
        "--health-listen=127.0.0.1:0".into(),
        "--metrics-listen=127.0.0.1:0".into(),
    ])
}

#[allow(clippy::expect_used)]
async fn spawn_business() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let ledger = Arc::new(Ledger::new(FakeStore::new(), SystemClock, 3));
    let service = LedgerServer::new(LedgerService::new(ledger, Duration::from_secs(5)));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}
