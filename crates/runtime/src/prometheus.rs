//! Prometheus metrics for one process.
//!
//! Code records through the `metrics` facade (`metrics::counter!` …) from
//! any crate, the way it logs through `tracing`; `install` puts one
//! exporter behind it that serves the Prometheus text format on
//! `http://<listen>/metrics`. Without `install` (unit tests, libraries)
//! recording is a no-op.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Latency buckets (seconds) for every histogram: fine below the 100 ms
/// SLO threshold, coarse above it.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-listen {0:?} is not an address like 127.0.0.1:9051 (or \"off\")")]
    Address(String),
    #[error("cannot start the /metrics server on {addr}: {source}")]
    Install {
        addr: SocketAddr,
        source: metrics_exporter_prometheus::BuildError,
    },
}

/// Starts serving `/metrics` on `listen` (or nothing when it is `off` or
/// empty), labelling every series with `app = <app>` and `labels`. Call
/// once, inside the tokio runtime.
pub fn install(
    app: &'static str,
    listen: &str,
    labels: &[(&str, String)],
) -> Result<(), MetricsError> {
    if listen.is_empty() || listen == "off" {
        return Ok(());
    }
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| MetricsError::Address(listen.to_owned()))?;
    let builder = labels.iter().fold(
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .add_global_label("app", app),
        |builder, (key, value)| builder.add_global_label(*key, value.clone()),
    );
    builder
        .set_buckets(LATENCY_BUCKETS)
        .and_then(PrometheusBuilder::install)
        .map_err(|source| MetricsError::Install { addr, source })?;
    describe();
    tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    Ok(())
}

/// Help texts for the metrics this crate records.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("grpc_server_started_total", "gRPC calls started, by method");
    describe_counter!(
        "grpc_server_handled_total",
        "gRPC calls finished, by method and status code"
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        Unit::Seconds,
        "Time from a call's arrival to its response head, by method"
    );
    describe_gauge!("grpc_server_in_flight", "gRPC calls being served now");
    describe_gauge!(
        "circuit_breaker_state",
        "Per endpoint: 0 closed, 1 half-open, 2 open"
    );
}
