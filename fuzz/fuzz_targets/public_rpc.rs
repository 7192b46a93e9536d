#![no_main]
//! See `fuzz_targets::public_rpc`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::public_rpc::run(data));
