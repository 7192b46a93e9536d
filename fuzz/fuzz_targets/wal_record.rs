#![no_main]
//! See `fuzz_targets::wal_record`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::wal_record::run(data));
