//! The business binary's command line. Every flag has an `ANATOMY_*` env twin.

use std::path::PathBuf;
use std::time::Duration;

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

    /// The storage shard map (TOML), the same file the storage nodes run.
    /// Without one, storage is a single node at --storage-addr.
    #[arg(long, env = "ANATOMY_SHARD_MAP")]
    pub shard_map: Option<PathBuf>,

    /// The single storage node to use when there is no --shard-map.
    #[arg(long, env = "ANATOMY_STORAGE_ADDR", default_value = "127.0.0.1:50071")]
    pub storage_addr: String,

    /// Time a request may take when its caller sent no deadline.
    #[arg(long, env = "ANATOMY_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub request_timeout: Duration,

    /// How many times a change that lost a race with another change to the
    /// same account is retried before ABORTED.
    #[arg(long, env = "ANATOMY_MAX_ATTEMPTS", default_value_t = 16)]
    pub max_attempts: u32,

    /// Longest a single storage attempt may take before trying another replica.
    #[arg(long, env = "ANATOMY_STORAGE_ATTEMPT_TIMEOUT", value_parser = parse_duration, default_value = "1s")]
    pub storage_attempt_timeout: Duration,

    /// Time between passes of the transfer recovery worker.
    #[arg(long, env = "ANATOMY_RECOVERY_INTERVAL", value_parser = parse_duration, default_value = "2s")]
    pub recovery_interval: Duration,

    /// The recovery worker takes over transfers pending for longer than this.
    #[arg(long, env = "ANATOMY_RECOVERY_AFTER", value_parser = parse_duration, default_value = "5s")]
    pub recovery_after: Duration,

    /// Pause before each step of a cross-shard transfer, to watch the saga
    /// (or kill a replica mid-transfer and watch recovery). 0 in production.
    #[arg(long, env = "ANATOMY_SAGA_STEP_PAUSE", value_parser = parse_duration, default_value = "0s")]
    pub saga_step_pause: Duration,

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
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }
}
