//! libFuzzer entry point of the `packet_decode` target; the logic is in
//! `syncplan_fuzz::packet_decode` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::packet_decode::run(data));
