//! libFuzzer entry point of the `token` target; the logic is in
//! `syncplan_fuzz::token` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::token::run(data));
