//! Anatomy's fuzz targets. Each is a plain function over the fuzzer's
//! bytes: it returns quietly for any input, and panics only when a property
//! fails — that panic is the finding.
//!
//! Two runners share them: `fuzz/` (cargo-fuzz, libFuzzer, coverage-guided;
//! `scripts/fuzz.sh`) and `tests/corpus.rs`, which replays every committed
//! corpus file (`fuzz/corpus/<target>/`) under plain `cargo test`, so a
//! finding once committed stays a regression test.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod apply_model;
pub mod edge;
pub mod http_request;
pub mod public_rpc;
pub mod raft_message;
pub mod snapshot_file;
pub mod wal_record;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the cargo-fuzz target and the corpus directory.
    pub name: &'static str,
    /// Runs one input; panics on a finding.
    pub run: fn(&[u8]),
    /// Hand-made starting inputs (written into the corpus by
    /// `scripts/fuzz.sh --seed`).
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "http_request",
        run: http_request::run,
        seeds: http_request::seeds,
    },
    Target {
        name: "public_rpc",
        run: public_rpc::run,
        seeds: public_rpc::seeds,
    },
    Target {
        name: "raft_message",
        run: raft_message::run,
        seeds: raft_message::seeds,
    },
    Target {
        name: "wal_record",
        run: wal_record::run,
        seeds: wal_record::seeds,
    },
    Target {
        name: "snapshot_file",
        run: snapshot_file::run,
        seeds: snapshot_file::seeds,
    },
    Target {
        name: "apply_model",
        run: apply_model::run,
        seeds: apply_model::seeds,
    },
];

/// Where a target's committed corpus lives.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}
