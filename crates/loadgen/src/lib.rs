//! Anatomy's load generator. `runner` drives a `Target` closed- or
//! open-loop, `stats` and `series` measure with HDR histograms (per run and
//! per second), `report` writes the table, JSON and CSV, `plot` draws
//! charts, and `targets` holds what can be driven: storage, etcd (for
//! comparison), the ledger.
#![forbid(unsafe_code)]

pub mod cli;
pub mod plot;
pub mod report;
pub mod runner;
pub mod series;
pub mod stats;
pub mod targets;

use std::sync::Arc;

use cli::{Cli, KvArgs, RunArgs, Workload};
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
        Workload::Plot(args) => {
            let (kind, out) = plot::plot(&args).map_err(LoadError::Plot)?;
            eprintln!("wrote a {kind:?} chart to {}", out.display());
            Ok(())
        }
        Workload::Storage(args) => {
            let map = match &args.shard_map {
                Some(path) => ShardMap::load(path).map_err(setup)?,
                None => ShardMap::single(&args.storage_addr),
            };
            let client = StorageClient::new(map, ClientConfig::default()).map_err(setup)?;
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
        Workload::Etcd(args) => {
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
        Workload::Bank(args) => {
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
                Ok(())
            } else {
                for v in &verdict.violations {
                    println!("  VIOLATION: {v}");
                }
                Err(LoadError::Violations(verdict.violations.len()))
            }
        }
        Workload::Deposit(args) => {
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
    }
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

async fn preload<T: Target>(
    system: &str,
    kv: &KvArgs,
    run: &RunArgs,
    make: &impl Fn(Op, u64) -> T,
) -> Result<(), LoadError> {
    let target = Arc::new(make(Op::Put, 0));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    note(
        run,
        format!("preloading {} keys into {system} ...", kv.preload),
    );
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..kv.preload_concurrency.max(1))
        .map(|_| {
            let (target, next, total) = (target.clone(), next.clone(), kv.preload);
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= total {
                        return Ok(());
                    }
                    // Retry a failed preload put a few times: gets need every key.
                    let mut last = String::new();
                    let mut done = false;
                    for _ in 0..5 {
                        match target.call(n).await {
                            Ok(()) => {
                                done = true;
                                break;
                            }
                            Err(e) => last = e,
                        }
                    }
                    if !done {
                        return Err(format!("preloading key {n}: {last}"));
                    }
                }
            })
        })
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
    let rates = args.rates();
    let modes: Vec<Mode> = if rates.is_empty() {
        args.concurrencies()
            .into_iter()
            .map(|workers| Mode::Closed { workers })
            .collect()
    } else {
        let max_in_flight = args.max_in_flight();
        rates
            .iter()
            .map(|&rate| Mode::Open {
                rate,
                max_in_flight,
            })
            .collect()
    };
    let label = args.label.clone().unwrap_or_else(|| system.to_string());
    let warmup = args.warmup();
    report::header();
    let mut done: Vec<Row> = Vec::new();
    for (i, &mode) in modes.iter().enumerate() {
        let mode_label = report::mode_label(mode);
        let step = if modes.len() > 1 {
            format!(" ({}/{})", i + 1, modes.len())
        } else {
            String::new()
        };
        let plan = Plan {
            mode,
            duration: args.duration,
            warmup,
            deadline: args.deadline,
            label: format!("{system} {op} {mode_label}{step}"),
            progress: !args.quiet,
        };
        let outcome = runner::run(target.clone(), &plan).await;
        let summary = outcome.summary;
        let offered_rps = match mode {
            Mode::Open { rate, .. } => rate,
            Mode::Closed { .. } => summary.offered as f64 / summary.seconds.max(1e-9),
        };
        let row = Row {
            label: label.clone(),
            system: system.to_string(),
            op: op.to_string(),
            mode: mode_label,
            offered_rps: Some(offered_rps),
            deadline_ms: Some(args.deadline.as_secs_f64() * 1000.0),
            warmup_s: Some(warmup.as_secs_f64()),
            summary,
            series: outcome.series,
        };
        report::print(&row);
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
        if let Some(path) = &args.json {
            report::append_json(path, &row)?;
        }
        if let Some(path) = &args.csv {
            report::append_series_csv(path, &row)?;
        }
        if let Some(path) = &args.summary_csv {
            report::append_summary_csv(path, &row)?;
        }
        done.push(Row {
            series: Vec::new(),
            ..row
        });
    }
    if rates.len() > 1 {
        report::print_sweep(&done);
    }
    Ok(())
}
