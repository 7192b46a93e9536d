//! The command line: `nemesis run`, `nemesis report`, `nemesis now`.

use std::path::PathBuf;
use std::time::Duration;

use anatomy_runtime::parse_duration;
use clap::{Args, Parser, Subcommand};

use crate::plan::FaultKind;

/// Anatomy's nemesis: breaks a local cluster (started by scripts/up.sh)
/// on a seeded schedule while a workload runs, and reports what the
/// workload saw. scripts/chaos/run.sh drives it.
#[derive(Debug, Parser)]
#[command(name = "nemesis", bin_name = "nemesis", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put a fault-injecting proxy on every peer link of the cluster in
    /// --dir (and a shard map per replica that routes through them, for
    /// scripts/up.sh to start the replicas with); once every storage
    /// replica serves, inject faults on a seeded schedule for --duration,
    /// record them in --journal, heal them all, and keep the links up until
    /// SIGTERM or SIGINT.
    Run(RunArgs),
    /// Write report.md and a chart from a run's history (or the bank
    /// workload's per-second series) and its faults.
    Report(ReportArgs),
    /// Print the time now on the monotonic clock that histories and faults
    /// are stamped with (nanoseconds).
    Now,
}

/// The fault schedule.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cluster's state directory (as scripts/up.sh --dir).
    #[arg(long, env = "ANATOMY_DIR", default_value = ".anatomy")]
    pub dir: PathBuf,

    /// Which faults to inject, a comma list: kill (kill -9, then restart),
    /// pause (SIGSTOP, then SIGCONT), partition (a leader cut off from its
    /// followers, a follower cut off, or one replica of every shard cut
    /// off), torn (kill -9, a half-written record appended to the log,
    /// restart).
    #[arg(
        long,
        env = "ANATOMY_NEMESIS_FAULTS",
        value_enum,
        value_delimiter = ',',
        default_value = "kill,pause,partition,torn"
    )]
    pub faults: Vec<FaultKind>,

    /// How long faults are injected (the last one is healed by then).
    #[arg(long, env = "ANATOMY_NEMESIS_DURATION", value_parser = parse_duration, default_value = "120s")]
    pub duration: Duration,

    /// The schedule's seed: the same seed gives the same faults, in the
    /// same order, with the same timing.
    #[arg(long, env = "ANATOMY_NEMESIS_SEED", default_value_t = 1)]
    pub seed: u64,

    /// How long to wait, once every replica serves, before the first fault.
    #[arg(long, env = "ANATOMY_NEMESIS_WARMUP", value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,

    /// The shortest and longest a fault is held (uniformly in between).
    #[arg(long, env = "ANATOMY_NEMESIS_HOLD_MIN", value_parser = parse_duration, default_value = "1s")]
    pub hold_min: Duration,
    #[arg(long, env = "ANATOMY_NEMESIS_HOLD_MAX", value_parser = parse_duration, default_value = "5s")]
    pub hold_max: Duration,

    /// The shortest and longest quiet time between two faults.
    #[arg(long, env = "ANATOMY_NEMESIS_QUIET_MIN", value_parser = parse_duration, default_value = "1s")]
    pub quiet_min: Duration,
    #[arg(long, env = "ANATOMY_NEMESIS_QUIET_MAX", value_parser = parse_duration, default_value = "4s")]
    pub quiet_max: Duration,

    /// Where each fault is recorded as it starts and ends (JSON lines).
    #[arg(long, env = "ANATOMY_NEMESIS_JOURNAL", default_value = "faults.jsonl")]
    pub journal: PathBuf,

    /// How long the replicas may take to serve before the first fault.
    #[arg(long, env = "ANATOMY_NEMESIS_READY_TIMEOUT", value_parser = parse_duration, default_value = "120s")]
    pub ready_timeout: Duration,
}

/// What the report is made from.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The faults (`nemesis run --journal`).
    #[arg(long, env = "ANATOMY_NEMESIS_JOURNAL", default_value = "faults.jsonl")]
    pub faults: PathBuf,

    /// A register history (`loadgen register --history`).
    #[arg(long, conflicts_with = "series")]
    pub history: Option<PathBuf>,

    /// Or the bank workload's results (`loadgen bank --json`): its
    /// per-second series, which started at --series-start.
    #[arg(long, requires = "series_start")]
    pub series: Option<PathBuf>,

    /// When the series' second 0 began (`nemesis now` just before the
    /// workload started).
    #[arg(long)]
    pub series_start: Option<u64>,

    /// The verdict's text (the checker's or the bank's output) and whether
    /// it passed.
    #[arg(long)]
    pub verdict: PathBuf,
    #[arg(long)]
    pub passed: bool,

    /// A title line (e.g. the command that made the run).
    #[arg(long, default_value = "chaos run")]
    pub title: String,

    /// The report (Markdown) and the chart (.svg or .png).
    #[arg(long, default_value = "report.md")]
    pub out: PathBuf,
    #[arg(long, default_value = "chart.svg")]
    pub chart: PathBuf,
}
