//! The command line. Flags have `ANATOMY_LOADGEN_*` environment twins
//! (the storage address and shard map share the services' `ANATOMY_*`).

use std::path::PathBuf;
use std::time::Duration;

use anatomy_runtime::parse_duration;
use anatomy_runtime::tls::args::ToolTlsArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::targets::storage::Op;

/// Anatomy's load generator: puts load on storage (or etcd, for
/// comparison) or on the ledger, closed loop or open loop (constant rate,
/// latency from each request's scheduled time), and reports throughput,
/// goodput and latency percentiles from HDR histograms, per run and per
/// second, as a table, JSON lines and CSV; `loadgen plot` draws charts.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub workload: Workload,
}

const EXAMPLES: &str = "\
Examples:
  loadgen deposit --gateway 127.0.0.1:50051 --concurrency 16 --duration 10s
  loadgen deposit --rate 1000 --duration 30s --json run.jsonl --csv run.csv
  loadgen deposit --sweep 200:2000:4 --duration 5s --label 'limits off' --json off.jsonl
  loadgen plot --input off.jsonl --input on.jsonl --kind goodput --out sweep.png
  loadgen storage --shard-map .anatomy/shard-map.toml --op put --concurrency 1,16,64
  loadgen register --shard-map .anatomy/shard-map.toml --duration 30s --history h.jsonl
  loadgen check h.jsonl

See docs/loadgen.md.";

/// What to do.
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
    /// Concurrent reads, writes and compare-and-sets of a few contended
    /// keys, straight to storage, recorded as a history (JSON lines) for
    /// `loadgen check`.
    Register(RegisterArgs),
    /// Decide whether a register history is linearizable. Exit status: 0
    /// linearizable; 1 not (the key and a minimal set of operations that
    /// cannot be ordered are printed); 2 bad input, or undecided within
    /// --timeout.
    Check(CheckArgs),
    /// Draw a chart (PNG or SVG) from --json results: latency percentiles
    /// over time of a run, or throughput and goodput against offered load
    /// of one or more sweeps (one line per --label).
    Plot(PlotArgs),
}

/// The most rates one run of loadgen sweeps over.
pub const MAX_RATES: usize = 1000;
/// The highest rate accepted, arrivals per second.
pub const MAX_RATE: f64 = 10_000_000.0;

/// A rate: arrivals per second, positive.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .trim_end_matches("/s")
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (requests per second)"))?;
    if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
        Ok(rate)
    } else {
        Err(format!(
            "{text:?}: a rate must be above 0 and at most {MAX_RATE}"
        ))
    }
}

/// Rates of a sweep, `FROM:TO:STEPS`: STEPS rates evenly spaced from FROM to TO, both included.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep(pub Vec<f64>);

/// Parses `FROM:TO:STEPS` (e.g. `200:2000:4` → 200, 800, 1400, 2000).
pub fn parse_sweep(text: &str) -> Result<Sweep, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [from, to, steps] = parts.as_slice() else {
        return Err(format!("{text:?} is not FROM:TO:STEPS, e.g. 200:2000:4"));
    };
    let (from, to) = (parse_rate(from)?, parse_rate(to)?);
    let steps: usize = steps
        .trim()
        .parse()
        .map_err(|_| format!("{steps:?} is not a number of steps"))?;
    if steps == 0 || steps > MAX_RATES {
        return Err(format!("a sweep has 1 to {MAX_RATES} steps, not {steps}"));
    }
    if steps == 1 {
        return Ok(Sweep(vec![from]));
    }
    let step = (to - from) / (steps - 1) as f64;
    Ok(Sweep(
        (0..steps)
            .map(|i| {
                if i + 1 == steps {
                    to
                } else {
                    from + step * i as f64
                }
            })
            .collect(),
    ))
}

/// How long, how hard, and where the numbers go.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Closed loop: operations in flight; a comma list runs one after
    /// another. In open loop, if given, it caps operations in flight
    /// instead (see --max-in-flight). [default: 16]
    #[arg(
        long,
        short = 'c',
        env = "ANATOMY_LOADGEN_CONCURRENCY",
        value_delimiter = ','
    )]
    pub concurrency: Vec<usize>,

    /// Open loop instead: arrivals per second at a constant rate, latency
    /// measured from each arrival's scheduled time (no coordinated
    /// omission). A comma list runs one rate after another.
    #[arg(
        long,
        visible_alias = "rates",
        short = 'r',
        env = "ANATOMY_LOADGEN_RATE",
        value_delimiter = ',',
        value_parser = parse_rate,
        conflicts_with = "sweep"
    )]
    pub rate: Vec<f64>,

    /// Open loop over a range of rates, FROM:TO:STEPS, evenly spaced, both
    /// ends included (200:2000:4 runs 200, 800, 1400 and 2000/s), each for
    /// --duration after --warmup.
    #[arg(long, env = "ANATOMY_LOADGEN_SWEEP", value_parser = parse_sweep)]
    pub sweep: Option<Sweep>,

    /// Open loop: the most operations in flight; an arrival beyond it
    /// fails at once as "dropped (too many in flight)". Default: the
    /// largest --concurrency if given, else 10000.
    #[arg(long, env = "ANATOMY_LOADGEN_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,

    /// How long each run is measured.
    #[arg(long, short = 'd', env = "ANATOMY_LOADGEN_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Unmeasured load at the same rate (or concurrency) before each run.
    /// Default: 1s when there are several rates (a sweep), else none.
    #[arg(long, env = "ANATOMY_LOADGEN_WARMUP", value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// The gRPC deadline of each request; a successful answer within it
    /// (from the scheduled time, in open loop) counts as goodput.
    #[arg(
        long,
        visible_alias = "timeout",
        env = "ANATOMY_LOADGEN_DEADLINE",
        value_parser = parse_duration,
        default_value = "1s"
    )]
    pub deadline: Duration,

    /// Append one JSON object per run to this file (JSON lines), with the
    /// run's per-second series; `loadgen plot` reads it.
    #[arg(long, env = "ANATOMY_LOADGEN_JSON")]
    pub json: Option<PathBuf>,

    /// Append one CSV row per second of each run to this file (a header
    /// first if the file is new).
    #[arg(long, env = "ANATOMY_LOADGEN_CSV")]
    pub csv: Option<PathBuf>,

    /// Append one CSV summary row per run (per rate, in a sweep) to this file.
    #[arg(long, env = "ANATOMY_LOADGEN_SUMMARY_CSV")]
    pub summary_csv: Option<PathBuf>,

    /// A name for these runs in every output (e.g. "limits on"), so that
    /// sweeps can be told apart on one chart. Default: the workload.
    #[arg(long, env = "ANATOMY_LOADGEN_LABEL")]
    pub label: Option<String>,

    /// No progress bar and no notes on stderr (the bar is only drawn when
    /// stderr is a terminal anyway).
    #[arg(long, short = 'q', env = "ANATOMY_LOADGEN_QUIET")]
    pub quiet: bool,
}

/// The closed-loop concurrency when none is given.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The open-loop cap on operations in flight when none is given.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

impl RunArgs {
    /// The open-loop rates (none: closed loop).
    pub fn rates(&self) -> Vec<f64> {
        match &self.sweep {
            Some(Sweep(rates)) => rates.clone(),
            None => self.rate.clone(),
        }
    }

    /// The closed-loop concurrencies.
    pub fn concurrencies(&self) -> Vec<usize> {
        if self.concurrency.is_empty() {
            vec![DEFAULT_CONCURRENCY]
        } else {
            self.concurrency.iter().map(|&c| c.max(1)).collect()
        }
    }

    /// The open-loop cap on operations in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
            .or_else(|| self.concurrency.iter().copied().max())
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT)
            .max(1)
    }

    /// The warm-up before each run.
    pub fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(if self.rates().len() > 1 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        })
    }
}

/// Which chart to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlotKind {
    /// latency for one run (or with --run), goodput for more.
    Auto,
    /// Latency percentiles (p50, p90, p99, max) and rates per second, over
    /// time (several runs: end to end).
    Latency,
    /// Throughput and goodput, and p50/p99, against offered load; one line
    /// per label.
    Goodput,
}

/// The plot subcommand.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A --json file of loadgen runs; repeat to draw several (e.g. a sweep
    /// with limits off and one with limits on).
    #[arg(long, short = 'i', required = true)]
    pub input: Vec<PathBuf>,

    /// The chart file, .png or .svg. Default: the first input with .png.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,

    /// What to draw.
    #[arg(long, short = 'k', value_enum, default_value = "auto")]
    pub kind: PlotKind,

    /// Latency chart of one run only: its index among the inputs' runs,
    /// from 0. Default: every run, end to end.
    #[arg(long)]
    pub run: Option<usize>,

    /// The chart's title.
    #[arg(long)]
    pub title: Option<String>,

    /// Width in pixels.
    #[arg(long, default_value_t = 1200)]
    pub width: u32,

    /// Height in pixels.
    #[arg(long, default_value_t = 900)]
    pub height: u32,
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

    /// Storage is reached with mutual TLS as the operator.
    #[command(flatten)]
    pub tls: ToolTlsArgs,

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

/// The register workload.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// The shard map the storage nodes run (for a multi-shard cluster).
    #[arg(long, env = "ANATOMY_SHARD_MAP")]
    pub shard_map: Option<PathBuf>,

    /// The single storage node when there is no --shard-map.
    #[arg(long, env = "ANATOMY_STORAGE_ADDR", default_value = "127.0.0.1:50071")]
    pub storage_addr: String,

    /// Storage is reached with mutual TLS as the operator.
    #[command(flatten)]
    pub tls: ToolTlsArgs,

    /// Where to write the history (JSON lines, one event per line).
    #[arg(long, env = "ANATOMY_LOADGEN_HISTORY", default_value = "history.jsonl")]
    pub history: PathBuf,

    /// Concurrent clients (each one process at a time; a new process id
    /// replaces one whose operation's outcome is unknown).
    #[arg(long, env = "ANATOMY_LOADGEN_CLIENTS", default_value_t = 10)]
    pub clients: usize,

    /// Keys the clients share (few, so that they contend).
    #[arg(long, env = "ANATOMY_LOADGEN_KEYS", default_value_t = 8)]
    pub keys: usize,

    /// The keys' partitions are `<prefix>/k0`, `<prefix>/k1`, ...; by
    /// default a fresh prefix per run (`register/<ms>-<pid>`). Give one to
    /// know their slots beforehand (CRC-32 of the partition mod 1024), as
    /// scripts/chaos/run.sh --moves does to move them during the run. It
    /// must be new: the history starts from empty registers.
    #[arg(long, env = "ANATOMY_LOADGEN_REGISTER_PREFIX")]
    pub prefix: Option<String>,

    /// At most this many operations per second, all clients together
    /// (bounds the history's size: about rate x duration operations).
    #[arg(long, env = "ANATOMY_LOADGEN_RATE", value_parser = parse_rate, default_value = "1000")]
    pub rate: f64,

    /// How long to run.
    #[arg(long, short = 'd', env = "ANATOMY_LOADGEN_DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// The deadline of each storage call.
    #[arg(
        long,
        visible_alias = "timeout",
        env = "ANATOMY_LOADGEN_DEADLINE",
        value_parser = parse_duration,
        default_value = "1s"
    )]
    pub deadline: Duration,
}

/// The history checker.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The history to check (JSON lines, as `loadgen register` writes).
    #[arg(env = "ANATOMY_LOADGEN_HISTORY")]
    pub history: PathBuf,

    /// Give up (exit status 2) if not decided within this.
    #[arg(long, env = "ANATOMY_LOADGEN_CHECK_TIMEOUT", value_parser = parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sweeps_parse() {
        assert_eq!(
            parse_sweep("200:2000:4"),
            Ok(Sweep(vec![200.0, 800.0, 1400.0, 2000.0]))
        );
        assert_eq!(parse_sweep("500:500:1"), Ok(Sweep(vec![500.0])));
        assert_eq!(
            parse_sweep("1000:100:3"),
            Ok(Sweep(vec![1000.0, 550.0, 100.0]))
        );
        assert_eq!(
            parse_sweep("100/s:300/s:3"),
            Ok(Sweep(vec![100.0, 200.0, 300.0]))
        );
        for bad in [
            "",
            "1:2",
            "1:2:3:4",
            "0:100:3",
            "x:100:3",
            "1:100:0",
            "1:100:-2",
            "1:100:1001",
            "-5:10:2",
            "1:inf:2",
        ] {
            assert!(parse_sweep(bad).is_err(), "{bad:?}");
        }
    }

    fn deposit(args: &[&str]) -> RunArgs {
        let mut argv = vec!["loadgen", "deposit"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                workload: Workload::Deposit(d),
            }) => d.run,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rates_concurrency_and_defaults() {
        let closed = deposit(&[]);
        assert!(closed.rates().is_empty());
        assert_eq!(closed.concurrencies(), vec![16]);
        assert_eq!(closed.deadline, Duration::from_secs(1));
        assert_eq!(closed.warmup(), Duration::ZERO);

        let sweep = deposit(&["--sweep", "200:2000:4", "--duration", "5s"]);
        assert_eq!(sweep.rates(), vec![200.0, 800.0, 1400.0, 2000.0]);
        assert_eq!(sweep.warmup(), Duration::from_secs(1));
        assert_eq!(sweep.max_in_flight(), DEFAULT_MAX_IN_FLIGHT);

        let list = deposit(&[
            "--rates",
            "100,200",
            "--concurrency",
            "64",
            "--timeout",
            "10s",
        ]);
        assert_eq!(list.rates(), vec![100.0, 200.0]);
        assert_eq!(list.max_in_flight(), 64);
        assert_eq!(list.deadline, Duration::from_secs(10));

        let one = deposit(&["--rate", "300", "--max-in-flight", "5", "--warmup", "2s"]);
        assert_eq!(one.max_in_flight(), 5);
        assert_eq!(one.warmup(), Duration::from_secs(2));

        for bad in [
            &["--rate", "100", "--sweep", "1:2:2"][..],
            &["--rate", "0"],
            &["--rate", "abc"],
            &["--sweep", "1:2"],
        ] {
            let mut argv = vec!["loadgen", "deposit"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
