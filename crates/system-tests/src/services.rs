//! Business and gateway replicas started in-process, each from its real
//! command line (so a test passes the flags a user would), served on a
//! loopback port 0 listener.

use std::time::Duration;

use std::path::Path;

use anatomy_runtime::tls::Identity;
use anatomy_runtime::{Health, HealthcheckArgs, Shutdown};
use clap::Parser;
use gateway_api::v1::ledger_client::LedgerClient;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;

/// The API keys every test gateway accepts: `key-a` is tenant `acme`,
/// `key-g` is tenant `globex`.
pub const API_KEYS: &str = "key-a=acme,key-g=globex";

/// A running service; [`Service::stop`] drains it like SIGTERM would.
pub struct Service {
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl Service {
    fn spawn<F>(shutdown: Shutdown, run: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self {
            shutdown,
            task: tokio::spawn(run),
        }
    }

    /// Triggers a graceful shutdown and waits for it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }
}

/// A loopback listener on a free port, and its address.
pub async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    (l, addr)
}

/// Waits until the server at `addr` answers its health check SERVING.
pub async fn wait_serving(addr: &str) {
    let args = HealthcheckArgs {
        addr: Some(addr.to_string()),
        service: String::new(),
        wait: Duration::from_secs(10),
    };
    anatomy_runtime::healthcheck::run(&args, addr)
        .await
        .expect("server becomes SERVING");
}

/// A business replica over the storage at `storage_args` (as
/// [`crate::Cluster::business_args`] gives them: the shard map and the
/// cluster's TLS directory), plus `extra` flags.
pub async fn business(storage_args: &[&str], extra: &[&str]) -> (Service, String) {
    let (listener, addr) = listener().await;
    let mut args = vec!["business", "--listen", &addr];
    args.extend_from_slice(storage_args);
    args.extend_from_slice(extra);
    let cli = business::config::Cli::parse_from(args);
    let transport = cli
        .service
        .tls
        .transport(Identity::Business)
        .expect("certificates");
    let health = Health::new(&[business::HEALTH_SERVICE]).await;
    let shutdown = Shutdown::new();
    let service = Service::spawn(shutdown.clone(), async move {
        business::serve(&cli.service, &transport, listener, health, shutdown)
            .await
            .expect("business");
    });
    (service, addr)
}

/// A gateway with the certificates in `tls_dir` over the business
/// replicas at `business_addrs` (comma-separated) with [`API_KEYS`], plus
/// `extra` flags; and a client of its public API (plaintext, as the
/// public edge is by default).
pub async fn gateway(
    tls_dir: &Path,
    business_addrs: &str,
    extra: &[&str],
) -> (Service, LedgerClient<Channel>) {
    let (listener, addr) = listener().await;
    let tls = tls_dir.display().to_string();
    let mut args = vec![
        "gateway",
        "--tls-dir",
        &tls,
        "--listen",
        &addr,
        "--business-addr",
        business_addrs,
        "--api-keys",
        API_KEYS,
        "--http-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let cli = gateway::config::Cli::parse_from(args);
    let transport = cli
        .service
        .tls
        .transport(Identity::Gateway)
        .expect("certificates");
    let health = Health::new(&[gateway::HEALTH_SERVICE]).await;
    let shutdown = Shutdown::new();
    let service = Service::spawn(shutdown.clone(), async move {
        gateway::serve(&cli.service, &transport, listener, health, shutdown)
            .await
            .expect("gateway");
    });
    let client = LedgerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    (service, client)
}

/// `message` as tenant `key`'s call (a bearer API key).
pub fn as_tenant<T>(key: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    r
}
