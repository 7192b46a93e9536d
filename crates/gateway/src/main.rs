//! `gateway`: the public Ledger API. See `gateway --help`.
#![forbid(unsafe_code)]

use clap::Parser;
use gateway::config::{Cli, Command};

/// mimalloc, not glibc malloc, in all three services: glibc's arena locks
/// and consolidation took a sixth of a busy storage leader's CPU
/// (docs/benchmarks.md, "Where the time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = cli.service.common.clone();
    common.block_on(serve(cli))?
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Healthcheck(check)) = &cli.command {
        let default = cli.service.health_listen.replace("0.0.0.0:", "127.0.0.1:");
        anatomy_runtime::healthcheck::run(check, &default).await?;
        return Ok(());
    }
    let _telemetry = anatomy_runtime::telemetry::init("gateway", cli.service.common.log_format)?;
    anatomy_runtime::tls::install_provider();
    gateway::run(cli.service).await?;
    Ok(())
}
