//! libFuzzer entry point of the `engine_ops` target; the logic is in
//! `syncplan_fuzz::engine_ops` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::engine_ops::run(data));
