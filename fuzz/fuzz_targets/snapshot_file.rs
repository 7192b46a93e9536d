#![no_main]
//! See `fuzz_targets::snapshot_file`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::snapshot_file::run(data));
