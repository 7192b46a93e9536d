//! `loadgen`: see `loadgen --help`.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    loadgen::run(loadgen::cli::Cli::parse()).await?;
    Ok(())
}
