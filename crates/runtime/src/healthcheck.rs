//! The `healthcheck` subcommand: asks a server's grpc.health.v1 and exits 0
//! only when it reports SERVING. Images built FROM scratch have no shell or
//! curl, so the binary is its own probe; scripts use it to wait for readiness.

use std::time::Duration;

use clap::Args;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::cli::parse_duration;

/// Flags of the `healthcheck` subcommand.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The server to ask, as host:port.
    #[arg(long, env = "ANATOMY_HEALTHCHECK_ADDR")]
    pub addr: Option<String>,

    /// The service name to ask about ("" = the whole server).
    #[arg(long, env = "ANATOMY_HEALTHCHECK_SERVICE", default_value = "")]
    pub service: String,

    /// Keep asking until SERVING or this much time has passed (0 = ask once).
    #[arg(long, env = "ANATOMY_HEALTHCHECK_WAIT", value_parser = parse_duration, default_value = "0s")]
    pub wait: Duration,
}

/// Why a health check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{addr} is not a valid address: {source}")]
    Address {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("{addr} did not answer: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("{addr} reports {status:?}")]
    NotServing { addr: String, status: ServingStatus },
}

/// Asks once (or, with `wait`, until SERVING or the time is up).
pub async fn run(args: &HealthcheckArgs, default_addr: &str) -> Result<(), HealthcheckError> {
    let addr = args.addr.as_deref().unwrap_or(default_addr);
    let deadline = tokio::time::Instant::now() + args.wait;
    loop {
        let result = check_once(addr, &args.service).await;
        if result.is_ok() || tokio::time::Instant::now() >= deadline {
            return result;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One Check call with 2 s connect and request timeouts.
pub async fn check_once(addr: &str, service: &str) -> Result<(), HealthcheckError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| HealthcheckError::Address {
            addr: addr.into(),
            source,
        })?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    let unreachable = |detail: String| HealthcheckError::Unreachable {
        addr: addr.into(),
        detail,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map_err(|s| unreachable(format!("{:?}: {}", s.code(), s.message())))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        status => Err(HealthcheckError::NotServing {
            addr: addr.into(),
            status,
        }),
    }
}
