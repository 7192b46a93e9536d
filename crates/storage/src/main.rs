//! `storage`: one replica of one shard. See `storage --help`.
#![forbid(unsafe_code)]

use clap::Parser;
use storage::config::{Cli, Command, probe_addr};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let common = cli.node.common.clone();
    common.block_on(serve(cli))?
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
