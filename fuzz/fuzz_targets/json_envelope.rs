//! libFuzzer entry point of the `json_envelope` target; the logic is in
//! `syncplan_fuzz::json_envelope` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::json_envelope::run(data));
