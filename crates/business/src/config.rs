//! The business binary's command line. Every flag has an `ANATOMY_*` env twin.

use std::path::PathBuf;
use std::time::Duration;

use anatomy_runtime::tls::TlsArgs;
use anatomy_runtime::{CommonArgs, HealthcheckArgs, parse_duration};
use clap::{Args, Parser, Subcommand};

/// The default gRPC port of the business service.
pub const DEFAULT_PORT: u16 = 50061;

/// Anatomy business: the multi-tenant ledger's use cases, stateless, over
/// the storage service.
#[derive(Debug, Clone, Parser)]
#[command(name = "business", bin_name = "business", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub service: BusinessArgs,
}

/// Subcommands besides serving (the default).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a business replica's grpc.health.v1; exit 0 only if it is SERVING.
    Healthcheck(HealthcheckArgs),
}

/// How to run the business service.
#[derive(Debug, Clone, Args)]
pub struct BusinessArgs {
    /// Address to listen on.
    #[arg(long, env = "ANATOMY_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: String,

    /// Address to serve Prometheus metrics on (GET /metrics), or "off".
    #[arg(long, env = "ANATOMY_METRICS_LISTEN", default_value = "127.0.0.1:9061")]
    pub metrics_listen: String,

    /// Address to serve grpc.health.v1 on in plaintext, for probes that
    /// cannot present a client certificate (kubelet, Compose, the
    /// `healthcheck` subcommand), or "off". It serves nothing else.
    #[arg(long, env = "ANATOMY_HEALTH_LISTEN", default_value = "127.0.0.1:50561")]
    pub health_listen: String,

    /// The storage shard map (TOML), the same file the storage nodes run.
    /// Without one, storage is a single node at --storage-addr.
    #[arg(long, env = "ANATOMY_SHARD_MAP")]
    pub shard_map: Option<PathBuf>,

    /// The single storage node to use when there is no --shard-map.
    #[arg(long, env = "ANATOMY_STORAGE_ADDR", default_value = "127.0.0.1:50071")]
    pub storage_addr: String,

    /// How long a gateway's connection lives (about: each replica draws its
    /// own within ±10 %) before this replica sends GOAWAY and the gateway
    /// moves to a new one; calls on the old connection get --max-deadline
    /// to finish. It renews connections (and their TLS handshakes) now and
    /// then; gateways balance per call, so nothing else needs it. 0 = never.
    #[arg(long, env = "ANATOMY_MAX_CONNECTION_AGE", value_parser = parse_duration, default_value = "60s")]
    pub max_connection_age: Duration,

    /// Time a request may take when its caller sent no deadline.
    #[arg(long, env = "ANATOMY_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub request_timeout: Duration,

    /// How many times a change that lost a race with another change to the
    /// same account is retried before ABORTED.
    #[arg(long, env = "ANATOMY_MAX_ATTEMPTS", default_value_t = 16)]
    pub max_attempts: u32,

    /// Read an account before changing it without storage's read-index
    /// round: the change's conditional write catches a stale read, which
    /// then costs a retry (docs/architecture.md). `false` makes those reads
    /// linearizable too, to measure what the round costs.
    #[arg(long, env = "ANATOMY_OPTIMISTIC_READS", default_value_t = true, action = clap::ArgAction::Set)]
    pub optimistic_reads: bool,

    /// Longest a single storage attempt may take before trying another replica.
    #[arg(long, env = "ANATOMY_STORAGE_ATTEMPT_TIMEOUT", value_parser = parse_duration, default_value = "1s")]
    pub storage_attempt_timeout: Duration,

    /// A storage shard that served nothing for this long (no leader, no
    /// majority) fails calls at once with UNAVAILABLE naming it, instead of
    /// retrying until each caller's deadline; one call per
    /// --storage-breaker-probe-every probes it. 0 turns this off.
    #[arg(long, env = "ANATOMY_STORAGE_BREAKER_OPEN_AFTER", value_parser = parse_duration, default_value = "2500ms")]
    pub storage_breaker_open_after: Duration,

    /// How often a call probes a shard that is failing fast.
    #[arg(long, env = "ANATOMY_STORAGE_BREAKER_PROBE_EVERY", value_parser = parse_duration, default_value = "250ms")]
    pub storage_breaker_probe_every: Duration,

    /// Time between passes of the transfer recovery worker.
    #[arg(long, env = "ANATOMY_RECOVERY_INTERVAL", value_parser = parse_duration, default_value = "2s")]
    pub recovery_interval: Duration,

    /// The recovery worker takes over transfers pending for longer than this.
    #[arg(long, env = "ANATOMY_RECOVERY_AFTER", value_parser = parse_duration, default_value = "5s")]
    pub recovery_after: Duration,

    /// How many pending transfers the recovery worker drives at once (each
    /// with its own --request-timeout), so that one stuck on a shard without
    /// a majority does not hold up the others.
    #[arg(long, env = "ANATOMY_RECOVERY_CONCURRENCY", default_value_t = 16)]
    pub recovery_concurrency: usize,

    /// Longest the recovery worker leaves a transfer alone after its
    /// recovery failed (it backs off from 2 × --recovery-interval, doubling
    /// per failure, up to this).
    #[arg(long, env = "ANATOMY_RECOVERY_MAX_BACKOFF", value_parser = parse_duration, default_value = "1m")]
    pub recovery_max_backoff: Duration,

    /// Pause before each step of a cross-shard transfer, to watch the saga
    /// (or kill a replica mid-transfer and watch recovery). 0 in production.
    #[arg(long, env = "ANATOMY_SAGA_STEP_PAUSE", value_parser = parse_duration, default_value = "0s")]
    pub saga_step_pause: Duration,

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
            "ANATOMY_SHARD_MAP",
            "ANATOMY_STORAGE_ADDR",
            "ANATOMY_REQUEST_TIMEOUT",
            "ANATOMY_RECOVERY_CONCURRENCY",
            "ANATOMY_RECOVERY_MAX_BACKOFF",
            "ANATOMY_HEALTH_LISTEN",
            "ANATOMY_TLS_DIR",
            "ANATOMY_INSECURE_PLAINTEXT",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }
}
