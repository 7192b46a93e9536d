//! Every fuzz target over its committed corpus (`fuzz/corpus/<target>/`)
//! and its hand-made seeds, as an ordinary test: what the fuzzer once found
//! stays fixed. Set ANATOMY_WRITE_SEEDS=1 to (re)write the seeds into the
//! corpus directories (`scripts/fuzz.sh --seed` does).

#![allow(clippy::expect_used)]

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};

use fuzz_targets::{TARGETS, Target, corpus_dir};

fn corpus(target: &Target) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target.name);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = fs::read(e.path()).expect("read corpus file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

fn write_seeds(target: &Target) {
    let dir = corpus_dir(target.name);
    fs::create_dir_all(&dir).expect("corpus dir");
    for (i, seed) in (target.seeds)().into_iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
    }
}

#[test]
fn every_target_passes_its_corpus_and_seeds() {
    let mut failures = Vec::new();
    for target in TARGETS {
        if std::env::var_os("ANATOMY_WRITE_SEEDS").is_some() {
            write_seeds(target);
        }
        let files = corpus(target);
        assert!(
            !files.is_empty(),
            "{}: no corpus in {} (run scripts/fuzz.sh --seed)",
            target.name,
            corpus_dir(target.name).display()
        );
        let seeds = (target.seeds)()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("seeds()[{i}]"), s));
        for (name, input) in files.into_iter().chain(seeds) {
            if catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
                failures.push(format!("{}/{name}", target.name));
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:?}");
}
