#![no_main]
//! See `fuzz_targets::http_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::http_request::run(data));
