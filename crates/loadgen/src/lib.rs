//! Anatomy's load generator. `runner` drives a `Target` closed- or
//! open-loop, `stats` measures with HDR histograms, `targets` holds what
//! can be driven: storage, etcd (for comparison), the ledger.
#![forbid(unsafe_code)]

pub mod cli;
pub mod report;
pub mod runner;
pub mod stats;
pub mod targets;

use std::sync::Arc;

use cli::{Cli, KvArgs, RunArgs, Workload};
use runner::{Mode, Target};
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
}

fn setup(e: impl std::fmt::Display) -> LoadError {
    LoadError::Setup(e.to_string())
}

/// Runs the workload the command line names.
pub async fn run(cli: Cli) -> Result<(), LoadError> {
    match cli.workload {
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
                timeout: args.run.timeout,
            };
            kv_runs("storage", &args.kv, &args.run, make).await
        }
        Workload::Etcd(args) => {
            let etcd = Etcd::new(
                &args.endpoints,
                args.kv.op,
                args.kv.value_size,
                args.kv.preload.max(args.kv.keys),
                args.run.timeout,
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
                    args.run.timeout,
                )
                .map_err(setup)?,
            );
            bank.setup().await.map_err(LoadError::Setup)?;
            runs("bank", "transfer", bank.clone(), &args.run).await?;
            eprintln!(
                "load done; waiting up to {:?} for every transfer to end, then checking",
                args.settle
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
                args.run.timeout,
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
    eprintln!("preloading {} keys into {system} ...", kv.preload);
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
    eprintln!(
        "preloaded {} keys in {secs:.1}s ({:.0}/s)",
        kv.preload,
        kv.preload as f64 / secs
    );
    let _ = run;
    Ok(())
}

async fn runs<T: Target>(
    system: &str,
    op: &str,
    target: Arc<T>,
    args: &RunArgs,
) -> Result<(), LoadError> {
    let modes: Vec<Mode> = if args.rate.is_empty() {
        args.concurrency
            .iter()
            .map(|&workers| Mode::Closed { workers })
            .collect()
    } else {
        let cap = args
            .concurrency
            .iter()
            .copied()
            .max()
            .unwrap_or(1024)
            .max(1);
        args.rate
            .iter()
            .map(|&rate| Mode::Open {
                rate,
                max_in_flight: cap,
            })
            .collect()
    };
    report::header();
    for mode in modes {
        let label = report::mode_label(mode);
        let summary = runner::run(
            target.clone(),
            mode,
            args.duration,
            &format!("{system} {op} {label}"),
        )
        .await;
        let row = report::Row {
            label: args.label.clone().unwrap_or_else(|| system.to_string()),
            system: system.to_string(),
            op: op.to_string(),
            mode: label,
            summary,
        };
        report::print(&row);
        if let Some(path) = &args.json {
            report::append_json(path, &row)?;
        }
    }
    Ok(())
}
