//! libFuzzer entry point of the `http_exchange` target; the logic is in
//! `syncplan_fuzz::http_exchange` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::http_exchange::run(data));
