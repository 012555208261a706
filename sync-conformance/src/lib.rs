//! # sync-conformance
//!
//! What every syncplan [`Store`](sync_core::Store) and
//! [`Transport`](sync_core::Transport) implementation must pass, and the
//! deterministic network simulator that checks the engine under faults.
//!
//! - [`store_suite`]: the store contract as public generic functions, plus
//!   engine-level cases on the store; [`store_suite!`] stamps out one
//!   `#[test]` per case:
//!   `sync_conformance::store_suite!(memory, sync_store_memory::MemoryStore::new);`
//! - [`transport_suite`]: exchange semantics over any transport, against a
//!   hub behind a [`HubHandle`](hub::HubHandle); [`transport_suite!`] stamps
//!   it out. [`loopback::LoopbackTransport`] is the in-memory transport that
//!   passes it.
//! - [`sim`]: a hub and nodes on a seeded, IO-free network with simulated
//!   time, loss, duplication, reordering, delay, corruption, partitions,
//!   crashes, restores from old snapshots and skewed clocks; it checks
//!   convergence, that no acknowledged change is lost, that no packet is
//!   applied twice, counter monotonicity, and determinism. Run it with
//!   `cargo run --release -p sync-conformance --bin simulate -- --seeds 1000`.
//!
//! The suites panic (through `assert!`) on a contract violation; the
//! simulator reports violations with the seed and the command to replay it.

pub mod crash;
pub mod fixtures;
pub mod harness;
pub mod hub;
pub mod loopback;
pub mod sim;
pub mod store_suite;
pub mod transport_suite;
