//! `nemesis`: see `nemesis --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match nemesis::run(nemesis::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nemesis: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
