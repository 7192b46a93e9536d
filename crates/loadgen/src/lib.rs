//! Anatomy's load generator. `runner` drives a `Target` closed- or
//! open-loop, `stats` and `series` measure with HDR histograms (per run and
//! per second), `report` writes the table, JSON and CSV, `plot` draws
//! charts, and `targets` holds what can be driven: storage, etcd (for
//! comparison), the ledger, a register. `history` is the register's
//! history format, and `check` decides whether a history is linearizable.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
mod correctness;
pub mod history;
pub mod plot;
pub mod report;
pub mod runner;
pub mod series;
pub mod stats;
pub mod targets;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anatomy_runtime::tls::args::ToolTlsArgs;
use cli::{BankArgs, Cli, DepositArgs, EtcdArgs, KvArgs, PlotArgs, RunArgs, StorageArgs, Workload};
use report::Row;
use runner::{Mode, Plan, Target};
use storage_client::{ClientConfig, ShardMap, StorageClient};
use targets::bank::Bank;
use targets::etcd::Etcd;
use targets::ledger::Deposits;
use targets::storage::{Op, Storage};

/// Why a load run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
    #[error("the bank check found {0} violation(s)")]
    Violations(usize),
    #[error("cannot draw the chart: {0:#}")]
    Plot(anyhow::Error),
    #[error("{path}: {source}")]
    BadHistory {
        path: String,
        source: check::BadHistory,
    },
    #[error("{keys} of {of} keys are not linearizable")]
    NotLinearizable { keys: usize, of: usize },
    #[error("undecided within --timeout {timeout:?}: {keys} key(s) left")]
    Undecided {
        keys: usize,
        timeout: std::time::Duration,
    },
}

impl LoadError {
    /// The process's exit status: 2 for a history that cannot be checked
    /// (bad input, or undecided in time), 1 for every other failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::BadHistory { .. } | LoadError::Undecided { .. } => 2,
            _ => 1,
        }
    }
}

fn setup(e: impl std::fmt::Display) -> LoadError {
    LoadError::Setup(e.to_string())
}

/// A note on stderr, unless --quiet.
fn note(run: &RunArgs, text: impl std::fmt::Display) {
    if !run.quiet {
        eprintln!("{text}");
    }
}

/// Runs the workload the command line names.
pub async fn run(cli: Cli) -> Result<(), LoadError> {
    match cli.workload {
        Workload::Plot(args) => draw(&args),
        Workload::Storage(args) => storage(&args).await,
        Workload::Etcd(args) => etcd(&args).await,
        Workload::Bank(args) => bank(&args).await,
        Workload::Deposit(args) => deposit(&args).await,
        Workload::Register(args) => correctness::register(&args).await,
        Workload::Check(args) => correctness::check(&args).await,
    }
}

fn draw(args: &PlotArgs) -> Result<(), LoadError> {
    let (kind, out) = plot::plot(args).map_err(LoadError::Plot)?;
    eprintln!("wrote a {kind:?} chart to {}", out.display());
    Ok(())
}

/// A storage client over the shard map of --shard-map (or a single node),
/// reaching storage with mutual TLS as the operator (certificates beside
/// the shard map, or --tls-dir).
fn storage_client(
    path: Option<&Path>,
    single: &str,
    tls: &ToolTlsArgs,
) -> Result<StorageClient, LoadError> {
    let map = match path {
        Some(path) => ShardMap::load(path).map_err(setup)?,
        None => ShardMap::single(single),
    };
    let transport = tls.transport(path).map_err(setup)?;
    StorageClient::new(map, ClientConfig::default(), &transport).map_err(setup)
}

async fn storage(args: &StorageArgs) -> Result<(), LoadError> {
    let client = storage_client(args.shard_map.as_deref(), &args.storage_addr, &args.tls)?;
    let make = |op, offset| Storage {
        client: client.clone(),
        op,
        value_size: args.kv.value_size,
        keys: args.kv.preload.max(args.kv.keys),
        offset,
        timeout: args.run.deadline,
    };
    kv_runs("storage", &args.kv, &args.run, make).await
}

async fn etcd(args: &EtcdArgs) -> Result<(), LoadError> {
    let etcd = Etcd::new(
        &args.endpoints,
        args.kv.op,
        args.kv.value_size,
        args.kv.preload.max(args.kv.keys),
        args.run.deadline,
    )
    .map_err(setup)?;
    kv_runs("etcd", &args.kv, &args.run, |op, offset| {
        etcd.with(op, offset)
    })
    .await
}

/// Transfers, then (after they settle) the ledger's invariants.
async fn bank(args: &BankArgs) -> Result<(), LoadError> {
    let bank = Arc::new(
        Bank::new(
            &args.gateway,
            &args.api_key,
            args.accounts,
            args.initial,
            args.run.deadline,
        )
        .map_err(setup)?,
    );
    bank.setup().await.map_err(LoadError::Setup)?;
    runs("bank", "transfer", bank.clone(), &args.run).await?;
    note(
        &args.run,
        format!(
            "load done; waiting up to {:?} for every transfer to end, then checking",
            args.settle
        ),
    );
    let verdict = bank.check(args.settle).await;
    for (what, n) in &verdict.summary {
        println!("  {what}: {n}");
    }
    if verdict.violations.is_empty() {
        println!("bank check: every invariant holds");
        return Ok(());
    }
    for v in &verdict.violations {
        println!("  VIOLATION: {v}");
    }
    Err(LoadError::Violations(verdict.violations.len()))
}

async fn deposit(args: &DepositArgs) -> Result<(), LoadError> {
    let target = Deposits::new(
        &args.gateway,
        &args.api_key,
        args.accounts,
        args.run.deadline,
    )
    .map_err(setup)?;
    target.setup().await.map_err(LoadError::Setup)?;
    runs("deposit", "deposit", Arc::new(target), &args.run).await
}

/// Preloads, then one run per concurrency (or rate).
async fn kv_runs<T: Target>(
    system: &str,
    kv: &KvArgs,
    run: &RunArgs,
    make: impl Fn(Op, u64) -> T,
) -> Result<(), LoadError> {
    if kv.preload > 0 {
        preload(system, kv, run, &make).await?;
    }
    let op = format!("{:?}", kv.op).to_lowercase();
    // Puts write keys no earlier run wrote: past the preloaded ones, and a
    // fresh range per run.
    let offset = kv.preload.max(kv.keys) + 1_000_000_000 * (std::process::id() as u64 % 1000 + 1);
    runs(system, &op, Arc::new(make(kv.op, offset)), run).await
}

/// Writes keys 0..--preload, --preload-concurrency at a time.
async fn preload<T: Target>(
    system: &str,
    kv: &KvArgs,
    run: &RunArgs,
    make: &impl Fn(Op, u64) -> T,
) -> Result<(), LoadError> {
    let target = Arc::new(make(Op::Put, 0));
    let next = Arc::new(AtomicU64::new(0));
    note(
        run,
        format!("preloading {} keys into {system} ...", kv.preload),
    );
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..kv.preload_concurrency.max(1))
        .map(|_| tokio::spawn(preload_worker(target.clone(), next.clone(), kv.preload)))
        .collect();
    for w in workers {
        w.await.map_err(setup)?.map_err(LoadError::Setup)?;
    }
    let secs = started.elapsed().as_secs_f64();
    note(
        run,
        format!(
            "preloaded {} keys in {secs:.1}s ({:.0}/s)",
            kv.preload,
            kv.preload as f64 / secs
        ),
    );
    Ok(())
}

/// Takes the next key to preload until there are none left.
async fn preload_worker<T: Target>(
    target: Arc<T>,
    next: Arc<AtomicU64>,
    total: u64,
) -> Result<(), String> {
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return Ok(());
        }
        put_patiently(&*target, n).await?;
    }
}

/// A preload put, retried a few times: gets need every key.
async fn put_patiently<T: Target>(target: &T, n: u64) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..5 {
        match target.call(n).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(format!("preloading key {n}: {last}"))
}

/// Above this p99 lag of open-loop sends behind schedule, a run says so.
const LAG_WARNING_MS: f64 = 10.0;

/// One run per concurrency (closed loop) or per rate (open loop), each
/// reported as it ends; after several rates, a sweep table.
async fn runs<T: Target>(
    system: &str,
    op: &str,
    target: Arc<T>,
    args: &RunArgs,
) -> Result<(), LoadError> {
    let modes = modes(args);
    report::header();
    let mut done: Vec<Row> = Vec::new();
    for (i, &mode) in modes.iter().enumerate() {
        let step = if modes.len() > 1 {
            format!(" ({}/{})", i + 1, modes.len())
        } else {
            String::new()
        };
        let row = one_run(system, op, &step, target.clone(), mode, args).await;
        report::print(&row);
        warn_if_behind(&row, args);
        write_outputs(&row, args)?;
        done.push(Row {
            series: Vec::new(),
            ..row
        });
    }
    if args.rates().len() > 1 {
        report::print_sweep(&done);
    }
    Ok(())
}

/// Closed loop at each concurrency, or open loop at each rate.
fn modes(args: &RunArgs) -> Vec<Mode> {
    let rates = args.rates();
    if rates.is_empty() {
        return args
            .concurrencies()
            .into_iter()
            .map(|workers| Mode::Closed { workers })
            .collect();
    }
    let max_in_flight = args.max_in_flight();
    rates
        .iter()
        .map(|&rate| Mode::Open {
            rate,
            max_in_flight,
        })
        .collect()
}

/// One run, as a report row.
async fn one_run<T: Target>(
    system: &str,
    op: &str,
    step: &str,
    target: Arc<T>,
    mode: Mode,
    args: &RunArgs,
) -> Row {
    let mode_label = report::mode_label(mode);
    let warmup = args.warmup();
    let plan = Plan {
        mode,
        duration: args.duration,
        warmup,
        deadline: args.deadline,
        label: format!("{system} {op} {mode_label}{step}"),
        progress: !args.quiet,
    };
    let outcome = runner::run(target, &plan).await;
    let summary = outcome.summary;
    let offered_rps = match mode {
        Mode::Open { rate, .. } => rate,
        Mode::Closed { .. } => summary.offered as f64 / summary.seconds.max(1e-9),
    };
    Row {
        label: args.label.clone().unwrap_or_else(|| system.to_string()),
        system: system.to_string(),
        op: op.to_string(),
        mode: mode_label,
        offered_rps: Some(offered_rps),
        deadline_ms: Some(args.deadline.as_secs_f64() * 1000.0),
        warmup_s: Some(warmup.as_secs_f64()),
        summary,
        series: outcome.series,
    }
}

/// Says so when open-loop sends fell behind schedule.
fn warn_if_behind(row: &Row, args: &RunArgs) {
    if row.summary.send_lag_p99_ms > LAG_WARNING_MS {
        note(
            args,
            format!(
                "note: loadgen sent 1% of the requests {:.0} ms or more after their \
                 scheduled time (at worst {:.0} ms): it fell behind (short of CPU?), \
                 and those delays are in the latencies",
                row.summary.send_lag_p99_ms, row.summary.send_lag_max_ms
            ),
        );
    }
}

/// Appends the row to the --json, --csv and --summary-csv files asked for.
fn write_outputs(row: &Row, args: &RunArgs) -> Result<(), LoadError> {
    if let Some(path) = &args.json {
        report::append_json(path, row)?;
    }
    if let Some(path) = &args.csv {
        report::append_series_csv(path, row)?;
    }
    if let Some(path) = &args.summary_csv {
        report::append_summary_csv(path, row)?;
    }
    Ok(())
}
