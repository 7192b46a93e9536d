//! Anatomy's gateway: the edge of the system. It owns the public API
//! (`anatomy.gateway.v1`), authenticates callers, gives calls a deadline,
//! and balances them over the business replicas. Stateless.
#![forbid(unsafe_code)]

pub mod auth;
pub mod balance;
pub mod config;
pub mod convert;
pub mod http;
pub mod http_edge;
pub mod http_errors;
pub mod http_serve;
pub mod ledger;
pub mod public;
pub mod rate_limit;

use anatomy_runtime::layers::authorize::AuthorizeLayer;
use anatomy_runtime::layers::breaker::BreakerConfig;
use anatomy_runtime::server::{self, ConnectionAge, ServerError, ServerLimits};
use anatomy_runtime::tls::{Identity, TlsError, Transport};
use anatomy_runtime::{Health, Shutdown};
use business_api::v1::ledger_client::LedgerClient;
use gateway_api::v1::FILE_DESCRIPTOR_SET;
use gateway_api::v1::ledger_server::LedgerServer;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;

use tokio::net::TcpListener;

use crate::auth::{ApiKeyError, ApiKeys, DEV_KEYS};
use crate::balance::TargetError;
use crate::config::GatewayArgs;
use crate::ledger::{CallPolicy, Gateway};
use crate::rate_limit::TenantLimits;
use anatomy_runtime::retry::{Backoff, RetryPolicy};
use std::sync::Arc;
use tower::retry::budget::TpsBudget;

/// The health service name readiness is reported under (and "").
pub const HEALTH_SERVICE: &str = "anatomy.gateway.v1.Ledger";

/// Waits between attempts of a call no business replica answered: short,
/// since the balancer picks another replica (a dead one's breaker opens).
const RETRY_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(40),
    max: Duration::from_millis(640),
};

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    ApiKeys(#[from] ApiKeyError),
    #[error(transparent)]
    Targets(#[from] TargetError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Metrics(#[from] anatomy_runtime::prometheus::MetricsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The configured API keys, or the development keys with a warning.
pub fn api_keys(args: &GatewayArgs) -> Result<ApiKeys, ApiKeyError> {
    match args.api_keys.as_deref() {
        Some(spec) => ApiKeys::parse(spec),
        None => {
            tracing::warn!(
                "NO API KEYS CONFIGURED: using the development keys {DEV_KEYS}. \
                 Anyone who knows them can use the ledger. Set --api-keys / ANATOMY_API_KEYS."
            );
            ApiKeys::parse(DEV_KEYS)
        }
    }
}

/// Runs the gateway from its flags until SIGTERM/SIGINT.
pub async fn run(args: GatewayArgs) -> Result<(), RunError> {
    anatomy_runtime::prometheus::install("gateway", &args.metrics_listen, &[])?;
    let transport = args.tls.transport(Identity::Gateway)?;
    let listener = server::bind(&args.listen).await?;
    let health = Health::new(&[HEALTH_SERVICE]).await;
    let shutdown = Shutdown::on_signals(health.clone())?;
    server::spawn_health_listener(&args.health_listen, &health, &shutdown).await?;
    serve(&args, &transport, listener, health, shutdown).await
}

/// The gateway's Ledger service over the business replicas the flags
/// name, reached over `transport`, and the API keys it accepts.
pub fn gateway(args: &GatewayArgs, transport: &Transport) -> Result<(Gateway, ApiKeys), RunError> {
    let keys = api_keys(args)?;
    let targets = balance::parse_targets(&args.business_addr)?;
    let breaker = BreakerConfig {
        failure_threshold: args.breaker_failures,
        open_for: args.breaker_open_for,
    };
    let (pool, state) = balance::pool(
        targets,
        args.resolve_interval,
        args.balancer_queue,
        breaker,
        transport.clone(),
    );
    let policy = CallPolicy {
        default_timeout: args.request_timeout,
        retry: RetryPolicy {
            backoff: RETRY_BACKOFF,
            max_retries: Some(args.retries),
            budget: Some(Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                args.retry_budget_min_per_sec,
                args.retry_budget_percent / 100.0,
            ))),
        },
        none_ready_wait: breaker.open_for / 4,
        none_ready_patience: breaker.open_for + breaker.open_for / 4,
        tenant_limits: TenantLimits::new(args.tenant_rps, args.tenant_burst),
    };
    Ok((Gateway::new(LedgerClient::new(pool), state, policy), keys))
}

/// The HTTP/JSON API over `gateway`, with its protection (shedding, RED
/// metrics) as the flags set it. The fuzz targets drive this router.
pub fn http_app(args: &GatewayArgs, gateway: Gateway, keys: ApiKeys) -> axum::Router {
    http_edge::protect(
        http::router(
            http::HttpState {
                gateway,
                keys,
                max_deadline: args.common.max_deadline,
            },
            args.http_body_timeout,
        ),
        args.common.max_concurrent_calls,
    )
}

/// Serves on `listener` until `shutdown` fires, reaching business over
/// `transport`.
pub async fn serve(
    args: &GatewayArgs,
    transport: &Transport,
    listener: TcpListener,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let addr = server::local_addr(&listener)?;
    let (gateway, keys) = gateway(args, transport)?;
    let http = http_app(args, gateway.clone(), keys.clone());
    let public_cert = public::certificate(args)?;
    let http_listener = server::bind(&args.http_listen).await?;
    let http_addr = server::local_addr(&http_listener)?;
    let http_listener = public::http(http_listener, public_cert.as_ref())?;
    let http_task = tokio::spawn(http_serve::serve(
        http_listener,
        http,
        args.http_header_timeout,
        shutdown.wait(),
    ));
    let (reflection, reflection_alpha) = server::reflection(&[FILE_DESCRIPTOR_SET])?;
    let limits = ServerLimits {
        connection_age: ConnectionAge::after(args.max_connection_age),
        ..args.common.limits(args.request_timeout)
    };
    let ledger = LedgerServer::new(gateway).max_decoding_message_size(limits.max_request_bytes);
    // The public edge: callers are tenants with API keys, not identities.
    let serving = server::builder(limits, AuthorizeLayer::off())
        .add_service(health.service())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(InterceptedService::new(ledger, keys))
        .serve_with_incoming_shutdown(
            public::grpc(listener, public_cert.as_ref())?,
            shutdown.wait(),
        );
    health.set_serving(true).await;
    tracing::info!(%addr, %http_addr, business = %args.business_addr,
        public_tls = public_cert.is_some(), mtls = transport.is_mtls(), "gateway listening");
    server::run(serving, &shutdown, args.common.shutdown_grace).await?;
    let _ = tokio::time::timeout(args.common.shutdown_grace, http_task).await;
    tracing::info!("gateway stopped");
    Ok(())
}
