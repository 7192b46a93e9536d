//! The command line. Every flag has an `ANATOMY_LOADGEN_*` env twin.

use std::path::PathBuf;
use std::time::Duration;

use anatomy_runtime::parse_duration;
use clap::{Args, Parser, Subcommand};

use crate::targets::storage::Op;

/// Anatomy's load generator: puts load on storage (or etcd, for
/// comparison) or on the ledger, and reports throughput and latency
/// percentiles from HDR histograms.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub workload: Workload,
}

/// What to load.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Anatomy storage, directly (256-byte puts to new keys, or linearizable gets).
    Storage(StorageArgs),
    /// etcd over its v3 gRPC API, with the same operations.
    Etcd(EtcdArgs),
    /// Deposits through the gateway (end to end).
    Deposit(DepositArgs),
    /// Random transfers between accounts, then a check of the ledger's
    /// invariants (money conserved, none negative, nothing stuck PENDING,
    /// histories consistent). Exits non-zero with the evidence on a violation.
    Bank(BankArgs),
}

/// How long, how hard, and where the numbers go.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Closed loop: operations in flight; a comma list runs one after another.
    #[arg(
        long,
        env = "ANATOMY_LOADGEN_CONCURRENCY",
        value_delimiter = ',',
        default_value = "16"
    )]
    pub concurrency: Vec<usize>,

    /// Open loop instead: arrivals per second (a comma list runs a sweep);
    /// --concurrency then caps operations in flight.
    #[arg(long, env = "ANATOMY_LOADGEN_RATE", value_delimiter = ',')]
    pub rate: Vec<f64>,

    /// How long each run lasts.
    #[arg(long, env = "ANATOMY_LOADGEN_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Deadline of each operation.
    #[arg(long, env = "ANATOMY_LOADGEN_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// Append one JSON object per run to this file.
    #[arg(long, env = "ANATOMY_LOADGEN_JSON")]
    pub json: Option<PathBuf>,

    /// A name for these runs in the report.
    #[arg(long, env = "ANATOMY_LOADGEN_LABEL")]
    pub label: Option<String>,
}

/// Key-value operations, shared by the storage and etcd workloads.
#[derive(Debug, Clone, Args)]
pub struct KvArgs {
    /// Put new keys or get existing ones.
    #[arg(long, env = "ANATOMY_LOADGEN_OP", value_enum, default_value = "put")]
    pub op: Op,

    /// Bytes per value.
    #[arg(long, env = "ANATOMY_LOADGEN_VALUE_SIZE", default_value_t = 256)]
    pub value_size: usize,

    /// Write keys 0..N first (gets read among them; puts then add new keys).
    #[arg(long, env = "ANATOMY_LOADGEN_PRELOAD", default_value_t = 0)]
    pub preload: u64,

    /// Keys 0..N already exist (from an earlier --preload): gets read among
    /// them without preloading again.
    #[arg(long, env = "ANATOMY_LOADGEN_KEYS", default_value_t = 0)]
    pub keys: u64,

    /// Operations in flight while preloading.
    #[arg(
        long,
        env = "ANATOMY_LOADGEN_PRELOAD_CONCURRENCY",
        default_value_t = 64
    )]
    pub preload_concurrency: usize,
}

/// The storage workload.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// The shard map the storage nodes run (for a multi-shard cluster).
    #[arg(long, env = "ANATOMY_SHARD_MAP")]
    pub shard_map: Option<PathBuf>,

    /// The single storage node when there is no --shard-map.
    #[arg(long, env = "ANATOMY_STORAGE_ADDR", default_value = "127.0.0.1:50071")]
    pub storage_addr: String,

    #[command(flatten)]
    pub kv: KvArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// The etcd workload.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd client endpoints, host:port[,host:port...].
    #[arg(
        long,
        env = "ANATOMY_LOADGEN_ETCD",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    #[command(flatten)]
    pub kv: KvArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// The bank workload.
#[derive(Debug, Clone, Args)]
pub struct BankArgs {
    /// Gateways, host:port[,host:port...], used round-robin.
    #[arg(
        long,
        env = "ANATOMY_LOADGEN_GATEWAY",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub gateway: Vec<String>,

    /// The API key to call with.
    #[arg(long, env = "ANATOMY_LOADGEN_API_KEY", default_value = "dev-key-acme")]
    pub api_key: String,

    /// How many accounts (bank-0, bank-1, ...).
    #[arg(long, env = "ANATOMY_LOADGEN_ACCOUNTS", default_value_t = 20)]
    pub accounts: usize,

    /// What each account is funded with.
    #[arg(long, env = "ANATOMY_LOADGEN_INITIAL", default_value_t = 1000)]
    pub initial: i64,

    /// How long to wait, after the load, for every transfer to end.
    #[arg(long, env = "ANATOMY_LOADGEN_SETTLE", value_parser = parse_duration, default_value = "60s")]
    pub settle: Duration,

    #[command(flatten)]
    pub run: RunArgs,
}

/// The deposit workload.
#[derive(Debug, Clone, Args)]
pub struct DepositArgs {
    /// Gateways, host:port[,host:port...], used round-robin.
    #[arg(
        long,
        env = "ANATOMY_LOADGEN_GATEWAY",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub gateway: Vec<String>,

    /// The API key to call with.
    #[arg(long, env = "ANATOMY_LOADGEN_API_KEY", default_value = "dev-key-acme")]
    pub api_key: String,

    /// How many accounts the deposits spread over.
    #[arg(long, env = "ANATOMY_LOADGEN_ACCOUNTS", default_value_t = 100)]
    pub accounts: u64,

    #[command(flatten)]
    pub run: RunArgs,
}
