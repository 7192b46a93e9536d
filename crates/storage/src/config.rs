//! The storage binary's command line. Every flag has an `ANATOMY_*` env twin.

use std::path::PathBuf;
use std::time::Duration;

use anatomy_runtime::tls::TlsArgs;
use anatomy_runtime::{CommonArgs, HealthcheckArgs, parse_duration};
use clap::{Args, Parser, Subcommand};

pub use crate::damage::OnDamage;
pub use crate::node::LogKind;

/// The default gRPC port of a storage node.
pub const DEFAULT_PORT: u16 = 50071;

/// Anatomy storage: one replica of one shard of a partitioned,
/// Raft-replicated key-value store.
#[derive(Debug, Clone, Parser)]
#[command(name = "storage", bin_name = "storage", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub node: StorageArgs,
}

/// Subcommands besides serving (the default).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a storage node's grpc.health.v1; exit 0 only if it is SERVING.
    Healthcheck(HealthcheckArgs),
}

/// How to run a storage node.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// The shard map (TOML). Without one, this node is the single replica of
    /// a single shard that owns every slot.
    #[arg(long, env = "ANATOMY_SHARD_MAP")]
    pub shard_map: Option<PathBuf>,

    /// Which shard of the map this node serves.
    #[arg(long, env = "ANATOMY_SHARD", default_value_t = 0)]
    pub shard: u32,

    /// Which replica of that shard this node is (its Raft node id, from 1).
    #[arg(long, env = "ANATOMY_REPLICA", default_value_t = 1)]
    pub replica: u64,

    /// Take --shard and --replica from the shard map: the replica whose
    /// address's first DNS label is this machine's hostname (a StatefulSet
    /// pod `storage-s0-1`, a compose container `storage-s0-r2`).
    #[arg(long, env = "ANATOMY_IDENTITY_FROM_HOSTNAME")]
    pub identity_from_hostname: bool,

    /// Address to listen on. Default: this replica's address in the shard
    /// map (0.0.0.0 with its port when the map names a host), or
    /// 127.0.0.1:50071 without a map.
    #[arg(long, env = "ANATOMY_LISTEN")]
    pub listen: Option<String>,

    /// Address to serve Prometheus metrics on (GET /metrics), or "off".
    #[arg(long, env = "ANATOMY_METRICS_LISTEN", default_value = "127.0.0.1:9071")]
    pub metrics_listen: String,

    /// Address to serve grpc.health.v1 on in plaintext, for probes that
    /// cannot present a client certificate (kubelet, Compose, the
    /// `healthcheck` subcommand), or "off". It serves nothing else.
    #[arg(long, env = "ANATOMY_HEALTH_LISTEN", default_value = "127.0.0.1:50571")]
    pub health_listen: String,

    /// Where the Raft log, the state machine and snapshots live.
    /// Default: .anatomy/data/storage-s<shard>-r<replica>.
    #[arg(long, env = "ANATOMY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Time a request may take when its caller sent no deadline.
    #[arg(long, env = "ANATOMY_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub request_timeout: Duration,

    #[command(flatten)]
    pub raft: RaftArgs,

    #[command(flatten)]
    pub proposer: ProposerArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Raft timing and log compaction.
#[derive(Debug, Clone, Args)]
pub struct RaftArgs {
    /// Leader heartbeat interval.
    #[arg(long, env = "ANATOMY_RAFT_HEARTBEAT", value_parser = parse_duration, default_value = "50ms")]
    pub raft_heartbeat: Duration,

    /// Shortest election timeout. openraft 0.9 starts an election after the
    /// leader lease (= --raft-election-max) plus a random timeout between
    /// min and max, so a dead leader is replaced after max + [min, max].
    #[arg(long, env = "ANATOMY_RAFT_ELECTION_MIN", value_parser = parse_duration, default_value = "250ms")]
    pub raft_election_min: Duration,

    /// Longest election timeout (randomised between min and max).
    #[arg(long, env = "ANATOMY_RAFT_ELECTION_MAX", value_parser = parse_duration, default_value = "500ms")]
    pub raft_election_max: Duration,

    /// Take a snapshot (and compact the log) after at least this many log
    /// entries (and see --snapshot-growth-percent). The WAL holds about
    /// this many entries beyond the growth rule's, plus --keep-logs.
    #[arg(long, env = "ANATOMY_SNAPSHOT_EVERY", default_value_t = 2_000)]
    pub snapshot_every: u64,

    /// ... and only once those entries wrote at least this percentage of
    /// the last snapshot's (uncompressed) size: a snapshot rewrites all
    /// the data, so with a large state a fixed entry count would snapshot
    /// without pause.
    /// 0 = by entry count alone.
    #[arg(long, env = "ANATOMY_SNAPSHOT_GROWTH_PERCENT", default_value_t = 25)]
    pub snapshot_growth_percent: u32,

    /// Log entries kept behind the last snapshot, for slow followers.
    #[arg(long, env = "ANATOMY_KEEP_LOGS", default_value_t = 1_000)]
    pub keep_logs: u64,

    /// Where the Raft log lives: an append-only write-ahead log (wal), or a
    /// redb B-tree (redb). Both fsync every append before acknowledging it.
    #[arg(long, env = "ANATOMY_RAFT_LOG", value_enum, default_value_t = LogKind::Wal)]
    pub raft_log: LogKind,

    /// Bytes of recent log entries the WAL keeps in memory for replication.
    #[arg(long, env = "ANATOMY_WAL_CACHE_BYTES", default_value_t = 64 << 20)]
    pub wal_cache_bytes: usize,

    /// Size of one WAL chunk file. After a snapshot the log is purged, and
    /// only whole chunks behind the purge point are deleted: smaller chunks
    /// give disk back sooner, at one more file per chunk.
    #[arg(long, env = "ANATOMY_WAL_CHUNK_BYTES", default_value_t = 16 << 20)]
    pub wal_chunk_bytes: usize,

    /// Fsync the state machine at least every this many applied entries
    /// (the log is always fsynced; this only bounds re-apply work after a crash).
    #[arg(long, env = "ANATOMY_SYNC_EVERY", default_value_t = 100)]
    pub sync_every: u64,

    /// What to do when this replica's Raft log is damaged (a flipped byte,
    /// not a torn tail, which is always cut off safely): rebuild = move the
    /// data directory aside and rebuild the replica from its peers, taking
    /// no part in elections until it holds everything it held before;
    /// refuse = exit with an error naming the damaged file. A damaged
    /// snapshot or state.redb is always rebuilt locally.
    #[arg(long, env = "ANATOMY_ON_DAMAGE", value_enum, default_value_t = OnDamage::Rebuild)]
    pub on_damage: OnDamage,
}

/// Group commit.
#[derive(Debug, Clone, Args)]
pub struct ProposerArgs {
    /// Write batches that may wait for the proposer; beyond, RESOURCE_EXHAUSTED.
    #[arg(long, env = "ANATOMY_WRITE_QUEUE", default_value_t = 4096)]
    pub write_queue: usize,

    /// Write batches per Raft log entry at most.
    #[arg(long, env = "ANATOMY_MAX_BATCHES_PER_ENTRY", default_value_t = 512)]
    pub max_batches_per_entry: usize,

    /// Bytes per Raft log entry at most.
    #[arg(long, env = "ANATOMY_MAX_ENTRY_BYTES", default_value_t = 1 << 20)]
    pub max_entry_bytes: usize,

    /// Raft log entries being proposed at once at most. openraft 0.9
    /// appends one entry at a time, so 1 makes the biggest batches.
    #[arg(long, env = "ANATOMY_MAX_IN_FLIGHT", default_value_t = 1)]
    pub max_in_flight: usize,
}

impl StorageArgs {
    /// The data directory, defaulted from shard and replica.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                ".anatomy/data/storage-s{}-r{}",
                self.shard, self.replica
            ))
        })
    }
}

/// The address to listen on for a replica advertised at `addr`: the same
/// address when it is an IP, else every interface on its port.
pub fn listen_for(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(_) => addr.to_string(),
        Err(_) => {
            let port = addr.rsplit(':').next().unwrap_or("50071");
            format!("0.0.0.0:{port}")
        }
    }
}

/// Where `healthcheck` connects for a node listening on `listen`.
pub fn probe_addr(listen: &str) -> String {
    match listen.strip_prefix("0.0.0.0:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => listen.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_where_the_map_says() {
        assert_eq!(listen_for("127.0.0.1:50072"), "127.0.0.1:50072");
        assert_eq!(listen_for("storage-s0-r1:50071"), "0.0.0.0:50071");
        assert_eq!(probe_addr("0.0.0.0:50071"), "127.0.0.1:50071");
    }

    #[test]
    fn help_lists_every_env_twin() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "ANATOMY_SHARD_MAP",
            "ANATOMY_LISTEN",
            "ANATOMY_DATA_DIR",
            "ANATOMY_MAX_IN_FLIGHT",
            "ANATOMY_HEALTH_LISTEN",
            "ANATOMY_TLS_DIR",
            "ANATOMY_TLS_DEV_CERTS",
            "ANATOMY_INSECURE_PLAINTEXT",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
    }
}
