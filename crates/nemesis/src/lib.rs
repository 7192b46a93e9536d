//! The nemesis: what breaks a local cluster while a workload runs, so that
//! the workload's history can show whether the promises held.
//!
//! - `links`: a fault-injecting TCP proxy on every peer link of every
//!   shard (replica A dialling replica B), as etcd's robustness tests put
//!   one on each member link; `maps` writes each replica a shard map that
//!   routes its peers through those links (clients keep the real
//!   addresses, so a replica cut off from its peers is still reachable by
//!   clients: the stale-leader case).
//! - `cluster`: the replicas' processes (pid files written by
//!   `scripts/up.sh`): kill -9 and restart, SIGSTOP and SIGCONT, the
//!   current leader of a shard (from its metrics).
//! - `plan`: the seeded schedule of faults; `inject` applies and heals one;
//!   `journal` records each in `faults.jsonl`.
//! - `report`: `report.md` and a chart from the history and the faults.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod inject;
pub mod journal;
pub mod links;
pub mod maps;
pub mod plan;
pub mod report;
mod run;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Why the nemesis could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    #[error("{0}")]
    Setup(String),
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        source: std::io::Error,
    },
}

impl NemesisError {
    /// An I/O error while `doing` something.
    pub fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let doing = doing.into();
        move |source| Self::Io { doing, source }
    }
}

/// Runs a subcommand; the exit code says how it ended.
pub async fn run(cli: Cli) -> Result<ExitCode, NemesisError> {
    match cli.command {
        Command::Run(args) => run::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Report(args) => report::write(&args),
        Command::Now => {
            println!("{}", loadgen::history::monotonic_ns());
            Ok(ExitCode::SUCCESS)
        }
    }
}
