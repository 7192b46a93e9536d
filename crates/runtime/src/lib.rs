//! What every Anatomy service shares: CLI conventions, telemetry, the gRPC
//! server bootstrap (health, reflection, graceful shutdown) and the
//! `healthcheck` subcommand containers use as their probe.
#![forbid(unsafe_code)]

pub mod cli;
pub mod grpc;
pub mod grpc_timeout;
pub mod healthcheck;
pub mod layers;
pub mod prometheus;
pub mod retry;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use cli::{CommonArgs, LogFormat, parse_duration};
pub use healthcheck::HealthcheckArgs;
pub use server::{Health, Shutdown};
