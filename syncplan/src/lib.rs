//! # syncplan
//!
//! Offline-first sync for Rust applications, in one dependency: the
//! sans-IO engine of [`sync_core`] (re-exported here whole), its stores,
//! and [`Node`], the async driver that owns a node's engine, its store and
//! a [`Transport`] to the hub.
//!
//! A [`Node`] runs sync sessions: it starts a session in the engine, hands
//! each packet the engine builds to the transport, applies the replies,
//! and keeps going until both sides have nothing pending and everything is
//! acknowledged. Failed exchanges are retried on the engine's backoff
//! timers; [`Node::auto_sync`] adds an interval (every 5 minutes by
//! default), a growing backoff while the hub is unreachable, and live push
//! where the transport offers it ([`Push`]). Store work runs on tokio's
//! blocking threads, one call at a time, so a store need not be `Sync`;
//! every session runs in a `tracing` span naming the node and its peer.
//! The driver reads the system clock and passes `now` into the engine,
//! which never reads one.
//!
//! Features (all on by default): `sqlite`, the SQLite store
//! (`SqliteStore`) that tracks the application's own tables with
//! triggers; `http`, the HTTPS hub server and client transport
//! (`syncplan::http`); `file`, sealed packet files and the folder
//! transport (`syncplan::file`). The `syncplan` command-line tool needs
//! all three.
//!
//! ```
//! use syncplan::{Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, LocalHub};
//! use syncplan::{MemoryStore, Node, NodeId, NodeInfo, Record, Role, Uuid, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = EntityRegistry::new().with(EntityType::new("Note").field("text", FieldKind::Text));
//! let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
//! let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
//!
//! // The hub, here in the same process (over HTTPS in real life).
//! let mut hub = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default().seed(1), hub_info.clone())?;
//! hub.register_peer(node_info.clone())?;
//! let hub = LocalHub::new(hub);
//!
//! // The node: an engine on its store, and a transport to the hub.
//! let mut engine = Engine::new(MemoryStore::new(), registry, EngineConfig::default().seed(2), node_info.clone())?;
//! engine.register_peer(hub_info.clone())?;
//! let node = Node::builder(engine, hub_info.id, hub.transport(node_info.id)).build();
//!
//! // Offline: write locally. Online: one session sends it and takes the hub's news.
//! let note = Record::from([("text".into(), Value::from("hello"))]);
//! node.with_engine(move |e| e.insert("Note", note, syncplan::now())).await??;
//! let report = node.sync().await?;
//! println!("{}", report.summary());
//! assert_eq!((report.sent, report.complete), (1, true));
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
// The README's examples compile and run as doc tests.
#![cfg_attr(doctest, doc = include_str!("../../README.md"))]

mod driver_error;
#[cfg(feature = "http")]
mod http_push;
mod local_hub;
mod node;
mod push;
mod report;
mod shared;
mod time;

pub use driver_error::DriverError;
pub use local_hub::{LOCAL_TARGET, LocalHub, LocalTransport};
pub use node::{AutoSync, Migrator, Node, NodeBuilder, NodeConfig};
pub use push::Push;
pub use report::{RejectedNote, SessionEvent, SyncReport};
pub use time::now;

/// The engine's whole public API: entities, registry, engine, errors,
/// events, the `Store` and `Transport` traits.
pub use sync_core::*;

/// The engine crate itself, for paths like `syncplan::sync_core::codec`.
pub use sync_core;

pub use sync_store_memory::MemoryStore;

#[cfg(feature = "sqlite")]
pub use sync_store_sqlite::{self as sqlite, Durability, SqliteOptions, SqliteStore, TrackOptions};

/// The HTTPS transport: [`http::HubServer`] serves a hub engine,
/// [`http::HttpTransport`] is a node's [`Transport`] (and [`Push`]).
#[cfg(feature = "http")]
pub use sync_transport_http as http;

/// Sealed packet files: export and import, pair keys, and
/// [`file::FolderTransport`] for syncing through a folder.
#[cfg(feature = "file")]
pub use sync_transport_file as file;

/// The PostgreSQL hub store: several hub processes on one database.
#[cfg(feature = "postgres")]
pub use sync_store_postgres as postgres;
