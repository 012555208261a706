//! # syncplan-fuzz
//!
//! The fuzz targets of syncplan, one module per target, each with
//! `pub fn run(data: &[u8])`. The files in `fuzz_targets/` hand libFuzzer's
//! input to these functions, and `tests/replay.rs` runs every committed seed
//! (`seeds/<target>/`) and every regression (`regressions/<target>/`)
//! through the same functions on the stable toolchain.
//!
//! A target fails by panicking: on a crash of the code under test, or when
//! an invariant it checks does not hold (the message says which).
//!
//! - [`packet_decode`]: the packet codec and the JSON view on raw bytes,
//!   with round trips and an allocation bound.
//! - [`engine_receive`]: a hub engine on a memory store fed raw bytes
//!   through `respond`, then checked with a real node's session.
//! - [`json_envelope`]: the serde bridge's JSON to record conversion (there
//!   is no JSON parser of envelopes yet).
//! - [`engine_ops`]: an `Arbitrary` sequence of operations across a hub and
//!   two nodes under loss, duplication, reordering and crashes, then the
//!   simulator's invariants.
//! - [`sqlite_sql`]: plain-SQL writes on SQLite stores interleaved with
//!   syncs, then every node's tables compared.
//!
//! - [`token`]: node token parsing and verification (`sync_core::token`)
//!   and the signing key's stored form, against a model of the rules.
//! - [`file_import`]: sealed packet files (`sync-transport-file`) as raw
//!   bytes or sealed from fuzzed envelopes, through inspect, dry run and
//!   import at a hub.
//! - [`http_exchange`]: raw HTTP/1.1 request bytes to the HTTPS hub's
//!   request handling (`HubService::respond_raw`: parser, routes, tokens,
//!   limits, hub), without a network.
//!
//! [`corpus`] builds the seed corpora from real engines
//! (`cargo run --manifest-path fuzz/Cargo.toml --bin gen_corpus`).

pub mod alloc_track;
pub mod corpus;
pub mod corpus_transport;
pub mod engine_ops;
pub mod engine_receive;
pub mod file_import;
pub mod fixup;
pub mod http_exchange;
pub mod json_envelope;
pub mod packet_decode;
pub mod sqlite_sql;
pub mod token;

/// A target's entry point.
pub type Run = fn(&[u8]);

/// Every target, by name, with its entry point (for the replay test).
pub const TARGETS: &[(&str, Run)] = &[
    ("packet_decode", packet_decode::run),
    ("engine_receive", engine_receive::run),
    ("json_envelope", json_envelope::run),
    ("engine_ops", engine_ops::run),
    ("sqlite_sql", sqlite_sql::run),
    ("token", token::run),
    ("file_import", file_import::run),
    ("http_exchange", http_exchange::run),
];
