//! libFuzzer entry point of the `file_import` target; the logic is in
//! `syncplan_fuzz::file_import` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::file_import::run(data));
