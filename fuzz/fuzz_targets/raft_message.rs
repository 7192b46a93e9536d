#![no_main]
//! See `fuzz_targets::raft_message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::raft_message::run(data));
