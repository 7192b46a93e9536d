//! The gateway binary's command line. Every flag has an `ANATOMY_*` env twin.

use std::path::PathBuf;
use std::time::Duration;

use anatomy_runtime::tls::TlsArgs;
use anatomy_runtime::{CommonArgs, HealthcheckArgs, parse_duration};
use clap::{Args, Parser, Subcommand};

/// The default gRPC port of the gateway.
pub const DEFAULT_PORT: u16 = 50051;

/// Anatomy gateway: the public Ledger API. Authenticates callers and
/// balances their calls over the business replicas.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", bin_name = "gateway", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub service: GatewayArgs,
}

/// Subcommands besides serving (the default).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a gateway's grpc.health.v1; exit 0 only if it is SERVING.
    Healthcheck(HealthcheckArgs),
}

/// How to run the gateway.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "ANATOMY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    /// Address to listen on for HTTP/JSON (the same API).
    #[arg(long, env = "ANATOMY_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: String,

    /// Address to serve Prometheus metrics on (GET /metrics), or "off".
    #[arg(long, env = "ANATOMY_METRICS_LISTEN", default_value = "127.0.0.1:9051")]
    pub metrics_listen: String,

    /// Address to serve grpc.health.v1 on in plaintext, for probes (the
    /// same status the public port reports; there it needs TLS when
    /// --public-tls-cert is set), or "off". It serves nothing else.
    #[arg(long, env = "ANATOMY_HEALTH_LISTEN", default_value = "127.0.0.1:50551")]
    pub health_listen: String,

    /// The business replicas: host:port[,host:port...]. Every address a
    /// name resolves to is a replica (a headless Service or a compose
    /// service name), re-resolved every --resolve-interval.
    #[arg(long, env = "ANATOMY_BUSINESS_ADDR", default_value = "127.0.0.1:50061")]
    pub business_addr: String,

    /// How often business names are resolved again.
    #[arg(long, env = "ANATOMY_RESOLVE_INTERVAL", value_parser = parse_duration, default_value = "5s")]
    pub resolve_interval: Duration,

    /// API keys and their tenants: key=tenant[,key=tenant...]. Without it the
    /// gateway uses the development keys (dev-key-acme=acme,
    /// dev-key-globex=globex) and says so loudly.
    #[arg(long, env = "ANATOMY_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,

    /// How long a client connection to the public gRPC port lives (about:
    /// each gateway draws its own within ±10 %) before the gateway sends
    /// GOAWAY and the client moves to a new connection — so that callers
    /// behind a connection balancer (a Kubernetes Service) spread onto
    /// gateways started after they connected. Calls on the old connection
    /// get --max-deadline to finish. 0 = never.
    #[arg(long, env = "ANATOMY_MAX_CONNECTION_AGE", value_parser = parse_duration, default_value = "60s")]
    pub max_connection_age: Duration,

    /// How long an HTTP/JSON client has to send a request's headers after
    /// connecting or after its last answer (idle keep-alive connections
    /// close after as long), and to answer an HTTP/2 ping.
    #[arg(long, env = "ANATOMY_HTTP_HEADER_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub http_header_timeout: Duration,

    /// How long an HTTP/JSON client has to send a request's body (the body
    /// is at most 64 KiB); a slower one gets 408.
    #[arg(long, env = "ANATOMY_HTTP_BODY_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub http_body_timeout: Duration,

    /// Deadline given to calls whose caller sent none.
    #[arg(long, env = "ANATOMY_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub request_timeout: Duration,

    /// Extra attempts for a call that no business replica could answer
    /// (every Ledger call is safe to repeat). Keep it above
    /// --breaker-failures, so a dead replica's breaker opens before the
    /// attempts run out and the last ones reach a live replica.
    #[arg(long, env = "ANATOMY_RETRIES", default_value_t = 3)]
    pub retries: u32,

    /// Retries may add at most this percentage of the calls (over the
    /// last 10s) on top of them, so they cannot multiply an outage.
    #[arg(long, env = "ANATOMY_RETRY_BUDGET_PERCENT", default_value_t = 10.0)]
    pub retry_budget_percent: f32,

    /// Retries per second always allowed, even with little traffic.
    #[arg(long, env = "ANATOMY_RETRY_BUDGET_MIN_PER_SEC", default_value_t = 10)]
    pub retry_budget_min_per_sec: u32,

    /// Calls per second each tenant may make (a token bucket per tenant;
    /// beyond it RESOURCE_EXHAUSTED with a retry hint). 0 = no limit.
    #[arg(long, env = "ANATOMY_TENANT_RPS", default_value_t = 5000)]
    pub tenant_rps: u32,

    /// How many calls a tenant may make at once above its rate (the
    /// bucket's size). 0 = the same as --tenant-rps.
    #[arg(long, env = "ANATOMY_TENANT_BURST", default_value_t = 10000)]
    pub tenant_burst: u32,

    /// Calls that may wait for a business replica at most.
    #[arg(long, env = "ANATOMY_BALANCER_QUEUE", default_value_t = 1024)]
    pub balancer_queue: usize,

    /// Consecutive failed calls to one business replica that open its
    /// circuit breaker (the replica gets no calls while open).
    #[arg(long, env = "ANATOMY_BREAKER_FAILURES", default_value_t = 2)]
    pub breaker_failures: u32,

    /// How long an open breaker keeps its replica out before one probe call.
    #[arg(long, env = "ANATOMY_BREAKER_OPEN_FOR", value_parser = parse_duration, default_value = "2s")]
    pub breaker_open_for: Duration,

    /// Certificate (PEM, leaf first) for TLS on the public listeners
    /// (--listen and --http-listen), with --public-tls-key. Without them
    /// both are plaintext (local use: `grpcurl -plaintext`). Clients
    /// present no certificate (tenants use API keys). Reloaded when the
    /// files change.
    #[arg(long, env = "ANATOMY_PUBLIC_TLS_CERT", requires = "public_tls_key")]
    pub public_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --public-tls-cert.
    #[arg(long, env = "ANATOMY_PUBLIC_TLS_KEY", requires = "public_tls_cert")]
    pub public_tls_key: Option<PathBuf>,

    /// How the gateway reaches business: mutual TLS as `gateway`.
    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_env_twin() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "ANATOMY_LISTEN",
            "ANATOMY_BUSINESS_ADDR",
            "ANATOMY_API_KEYS",
            "ANATOMY_REQUEST_TIMEOUT",
            "ANATOMY_HEALTH_LISTEN",
            "ANATOMY_TLS_DIR",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }
}
