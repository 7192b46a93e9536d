//! Anatomy's business service: the multi-tenant ledger. Hexagonal:
//! `domain` (pure rules), `app` (use cases and the ports they need),
//! `adapters` (storage service, gRPC). Stateless: run as many as you like.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;

use std::sync::Arc;

use anatomy_proto::business::v1::FILE_DESCRIPTOR_SET;
use anatomy_proto::business::v1::ledger_server::LedgerServer;
use anatomy_runtime::server::{self, ServerError};
use anatomy_runtime::{Health, Shutdown};
use storage_client::shard_map::ShardMapError;
use storage_client::{ClientConfig, ShardMap, StorageClient, StorageError};
use tokio::net::TcpListener;

use crate::adapters::grpc::LedgerService;
use crate::adapters::storage::StorageStore;
use crate::app::Ledger;
use crate::app::ports::SystemClock;
use crate::app::recovery::{self, RecoveryConfig};
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
}

/// The storage client the flags describe.
pub fn storage_client(args: &BusinessArgs) -> Result<StorageClient, RunError> {
    let map = match &args.shard_map {
        Some(path) => ShardMap::load(path)?,
        None => ShardMap::single(&args.storage_addr),
    };
    let config = ClientConfig {
        attempt_timeout: args.storage_attempt_timeout,
        ..ClientConfig::default()
    };
    Ok(StorageClient::new(map, config)?)
}

/// Runs the business service from its flags until SIGTERM/SIGINT.
pub async fn run(args: BusinessArgs) -> Result<(), RunError> {
    anatomy_runtime::prometheus::install("business", &args.metrics_listen, &[])?;
    let listener = server::bind(&args.listen).await?;
    let health = Health::new(&[HEALTH_SERVICE]).await;
    let shutdown = Shutdown::on_signals(health.clone())?;
    serve(&args, listener, health, shutdown).await
}

/// Serves on `listener` until `shutdown` fires.
pub async fn serve(
    args: &BusinessArgs,
    listener: TcpListener,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let addr = server::local_addr(&listener)?;
    let ledger = Arc::new(
        Ledger::new(
            StorageStore::new(storage_client(args)?),
            SystemClock,
            args.max_attempts,
        )
        .with_step_pause(args.saga_step_pause),
    );
    let worker = RecoveryConfig {
        every: args.recovery_interval,
        older_than: args.recovery_after,
        pass_budget: args.request_timeout,
    };
    tokio::spawn(recovery::run(ledger.clone(), worker, shutdown.wait()));
    let (reflection, reflection_alpha) = server::reflection(&[FILE_DESCRIPTOR_SET])?;
    let limits = args.common.limits(args.request_timeout);
    let serving = server::builder(limits)
        .add_service(health.service())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            LedgerServer::new(LedgerService::new(ledger, args.request_timeout))
                .max_decoding_message_size(limits.max_request_bytes),
        )
        .serve_with_incoming_shutdown(server::incoming(listener), shutdown.wait());
    // Stateless: ready as soon as it listens. Storage trouble shows up per
    // request (UNAVAILABLE), not as an unready replica.
    health.set_serving(true).await;
    tracing::info!(%addr, "business listening");
    server::run(serving, &shutdown, args.common.shutdown_grace).await?;
    tracing::info!("business stopped");
    Ok(())
}
