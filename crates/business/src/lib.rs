//! Anatomy's business service: the multi-tenant ledger. Hexagonal:
//! `domain` (pure rules), `app` (use cases and the ports they need),
//! `adapters` (storage service, gRPC). Stateless: run as many as you like.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;

use std::sync::Arc;

use anatomy_runtime::layers::authorize::{Caller, Matrix};
use anatomy_runtime::server::{self, ConnectionAge, ServerError, ServerLimits};
use anatomy_runtime::tls::{Identity, TlsError, Transport};
use anatomy_runtime::{Health, Shutdown};
use business_api::v1::FILE_DESCRIPTOR_SET;
use business_api::v1::ledger_server::LedgerServer;
use storage_api::shard_map::ShardMapError;
use storage_client::{ClientConfig, ShardMap, StorageClient, StorageError};
use tokio::net::TcpListener;

use crate::adapters::grpc::LedgerService;
use crate::adapters::storage::StorageStore;
use crate::app::Ledger;
use crate::app::RecoveryConfig;
use crate::app::ports::SystemClock;
use crate::app::recovery_worker;
use crate::config::BusinessArgs;

/// The health service name readiness is reported under (and "").
pub const HEALTH_SERVICE: &str = "anatomy.business.v1.Ledger";

/// Why the business service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    ShardMap(#[from] ShardMapError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Metrics(#[from] anatomy_runtime::prometheus::MetricsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Who may call the ledger: the gateway (which authenticated the tenant
/// the request names — the only reason business may trust it) and the
/// operator.
pub fn access() -> Matrix {
    Matrix::new().allow(
        "anatomy.business.v1.Ledger",
        &[
            Caller::Is(Identity::Gateway),
            Caller::Is(Identity::Operator),
        ],
    )
}

/// The storage client the flags describe, over `transport`.
pub fn storage_client(
    args: &BusinessArgs,
    transport: &Transport,
) -> Result<StorageClient, RunError> {
    let map = match &args.shard_map {
        Some(path) => ShardMap::load(path)?,
        None => ShardMap::single(&args.storage_addr),
    };
    let config = ClientConfig {
        attempt_timeout: args.storage_attempt_timeout,
        breaker_open_after: args.storage_breaker_open_after,
        breaker_probe_every: args.storage_breaker_probe_every,
        ..ClientConfig::default()
    };
    Ok(StorageClient::new(map, config, transport)?)
}

/// Runs the business service from its flags until SIGTERM/SIGINT.
pub async fn run(args: BusinessArgs) -> Result<(), RunError> {
    anatomy_runtime::prometheus::install("business", &args.metrics_listen, &[])?;
    let transport = args.tls.transport(Identity::Business)?;
    let listener = server::bind(&args.listen).await?;
    let health = Health::new(&[HEALTH_SERVICE]).await;
    let shutdown = Shutdown::on_signals(health.clone())?;
    server::spawn_health_listener(&args.health_listen, &health, &shutdown).await?;
    serve(&args, &transport, listener, health, shutdown).await
}

/// Serves on `listener` over `transport` (which is also how it reaches
/// storage) until `shutdown` fires.
pub async fn serve(
    args: &BusinessArgs,
    transport: &Transport,
    listener: TcpListener,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let addr = server::local_addr(&listener)?;
    let ledger = Arc::new(
        Ledger::new(
            StorageStore::new(storage_client(args, transport)?)
                .with_optimistic_reads(args.optimistic_reads),
            SystemClock,
            args.max_attempts,
        )
        .with_step_pause(args.saga_step_pause),
    );
    let worker = RecoveryConfig {
        every: args.recovery_interval,
        older_than: args.recovery_after,
        transfer_budget: args.request_timeout,
        concurrency: args.recovery_concurrency,
        max_backoff: args.recovery_max_backoff,
    };
    tokio::spawn(recovery_worker::run(
        ledger.clone(),
        worker,
        shutdown.wait(),
    ));
    let (reflection, reflection_alpha) = server::reflection(&[FILE_DESCRIPTOR_SET])?;
    let limits = ServerLimits {
        connection_age: ConnectionAge::after(args.max_connection_age),
        ..args.common.limits(args.request_timeout)
    };
    let incoming = transport.incoming(listener)?;
    let serving = server::builder(limits, transport.authorize(access()))
        .add_service(health.service())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            LedgerServer::new(LedgerService::new(ledger, args.request_timeout))
                .max_decoding_message_size(limits.max_request_bytes),
        )
        .serve_with_incoming_shutdown(incoming, shutdown.wait());
    // Stateless: ready as soon as it listens. Storage trouble shows up per
    // request (UNAVAILABLE), not as an unready replica.
    health.set_serving(true).await;
    tracing::info!(%addr, mtls = transport.is_mtls(), "business listening");
    server::run(serving, &shutdown, args.common.shutdown_grace).await?;
    tracing::info!("business stopped");
    Ok(())
}
