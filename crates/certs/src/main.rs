//! `anatomy-certs`: the cluster CA and every identity's certificate. See
//! `anatomy-certs --help`.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = anatomy_certs::cli::Cli::parse();
    println!("{}", anatomy_certs::cli::run(&cli)?);
    Ok(())
}
