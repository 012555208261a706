//! libFuzzer entry point of the `engine_receive` target; the logic is in
//! `syncplan_fuzz::engine_receive` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::engine_receive::run(data));
