//! `storage`: one replica of one shard. See `storage --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use storage::config::{Cli, Command, probe_addr};

/// mimalloc, not glibc malloc, in all three services: glibc's arena locks
/// and consolidation took a sixth of a busy storage leader's CPU
/// (docs/benchmarks.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// On failure, the cause comes first and whole, on one line starting
/// `storage: error:` (scripts/up.sh shows that line), not as a backtrace.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.node.common.clone();
    let outcome = common
        .block_on(serve(cli))
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Healthcheck(check)) = &cli.command {
        anatomy_runtime::healthcheck::run(check, &probe_addr(&cli.node.health_listen)).await?;
        return Ok(());
    }
    let _telemetry = anatomy_runtime::telemetry::init("storage", cli.node.common.log_format)?;
    anatomy_runtime::tls::install_provider();
    storage::run(cli.node).await?;
    Ok(())
}
