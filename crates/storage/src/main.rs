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
        let map = storage::load_map(&cli.node)?;
        let default = probe_addr(&storage::listen_addr(&cli.node, &map));
        anatomy_runtime::healthcheck::run(check, &default).await?;
        return Ok(());
    }
    let _telemetry = anatomy_runtime::telemetry::init("storage", cli.node.common.log_format)?;
    storage::run(cli.node).await?;
    Ok(())
}
