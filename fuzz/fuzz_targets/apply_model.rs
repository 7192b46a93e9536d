#![no_main]
//! See `fuzz_targets::apply_model`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::apply_model::run(data));
