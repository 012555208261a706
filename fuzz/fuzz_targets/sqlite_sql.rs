//! libFuzzer entry point of the `sqlite_sql` target; the logic is in
//! `syncplan_fuzz::sqlite_sql` so the replay test runs the same code.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| syncplan_fuzz::sqlite_sql::run(data));
