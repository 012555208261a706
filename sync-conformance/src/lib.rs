//! # sync-conformance
//!
//! What every syncplan [`Store`](sync_core::Store) and
//! [`Transport`](sync_core::Transport) implementation must pass, and the
//! deterministic network simulator that checks the engine under faults.
//!
//! - [`store_suite`](mod@store_suite): the store contract as public generic functions, plus
//!   engine-level cases on the store; [`store_suite!`] stamps out one
//!   `#[test]` per case:
//!   `sync_conformance::store_suite!(memory, sync_store_memory::MemoryStore::new);`
//! - [`transport_suite`](mod@transport_suite): exchange semantics over any transport, against a
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
//! - The test harness the engine's and the stores' integration tests share:
//!   [`fixtures`] (identities, registries, records, fixture time), [`net`]
//!   (a hub and nodes on any store in one process, on a perfect network, a
//!   scripted faulty [`net::Link`] or a seeded [`net::lossy`] exchange),
//!   [`wire`] (decoding, corrupting and forging packets), [`integrity`]
//!   (children without parents), and with the `proptest` feature `ops`
//!   (random writes and multi-node runs) and `strategies` (random values).
//!
//! The suites panic (through `assert!`) on a contract violation; the
//! simulator reports violations with the seed and the command to replay it.
//!
//! ## Features
//!
//! - `memory` (default): everything that needs a concrete store, on
//!   `sync-store-memory`: `sim::run` and the `simulate` binary, the
//!   transport suite with its hub fixture and the loopback transport. A
//!   store implementation takes the crate with `default-features = false`;
//!   then it depends on `sync-core` only, and [`sim::run_with`] runs the
//!   simulator on the implementation's own stores.
//! - `proptest`: the `ops` and `strategies` modules for property tests.
//!
//! ## Example
//!
//! One simulated seed: a hub and three nodes, 100 operations under the
//! faults drawn for seed 7, then the checks.
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use sync_conformance::sim::{self, SimConfig};
//!
//! let report = sim::run(SimConfig::new(7).nodes(3).ops(100));
//! assert!(report.passed(), "{}", report.failure());
//! assert!(report.stats.exchanges > 0);
//! # }
//! ```

// The crate docs above link to the `memory` items; without the feature those
// links have nothing to point at.
#![cfg_attr(not(feature = "memory"), allow(rustdoc::broken_intra_doc_links))]

pub mod crash;
pub mod fixtures;
#[cfg(feature = "memory")]
pub mod hub;
pub mod integrity;
#[cfg(feature = "memory")]
pub mod loopback;
pub mod net;
#[cfg(feature = "proptest")]
pub mod ops;
pub mod sim;
pub mod store_suite;
#[cfg(feature = "proptest")]
pub mod strategies;
#[cfg(feature = "memory")]
pub mod transport_suite;
pub mod wire;
