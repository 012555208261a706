//! # sync-core
//!
//! The sans-IO engine of syncplan: offline-first sync between a hub and many
//! nodes. It tracks local changes, batches them into numbered packets with
//! piggybacked acknowledgements, applies incoming packets in one store
//! transaction, and resolves conflicts by a per-type strategy, keeping every
//! losing version. It does no IO: time (`now`) and randomness (a seed) come in
//! as arguments, stores implement [`Store`], drivers move the bytes.
//!
//! ```
//! use sync_core::{Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, FieldKind};
//! use sync_core::{NodeId, NodeInfo, Role, Timestamp, Value, Record};
//! use sync_store_memory::MemoryStore;
//! use uuid::Uuid;
//!
//! let registry = EntityRegistry::new()
//!     .with(EntityType::new("Note").field("text", FieldKind::Text));
//! let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
//! let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
//!
//! let mut hub = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default().seed(1), hub_info.clone())?;
//! let mut node = Engine::new(MemoryStore::new(), registry, EngineConfig::default().seed(2), node_info.clone())?;
//! hub.register_peer(node_info)?;
//! node.register_peer(hub_info.clone())?;
//!
//! // Offline: the write succeeds locally and is queued for the hub.
//! let now = Timestamp::from_secs(1_765_535_400);
//! let id = node.insert("Note", Record::from([("text".into(), Value::from("hello"))]), now)?;
//!
//! // Online: exchange packets until the session is complete.
//! node.start_sync(hub_info.id)?;
//! while let Some(packet) = node.poll_transmit(now)? {
//!     let reply = hub.respond(&packet.bytes, now)?;
//!     node.handle_incoming(&reply, now)?;
//! }
//! assert!(hub.get(&EntityKey::new("Note", id))?.is_some());
//! assert_eq!(node.pending_count(hub_info.id)?, 0);
//! # Ok::<(), sync_core::SyncError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod clock;
pub mod codec;
pub mod config;
pub mod conflict;
mod engine;
pub use engine::cascade;
pub mod entity;
pub mod entity_registry;
pub mod error;
pub mod events;
pub mod ids;
pub mod json_view;
pub mod migration;
pub mod node_registry;
pub mod packet;
pub mod rejected;
pub mod rng;
pub mod schema_version;
pub mod scope;
pub mod serde_bridge;
pub mod store;
pub mod store_blob;
pub mod timer;
pub mod token;
pub mod transport;
pub mod value;

pub use clock::{Causality, Dot, Stamp, VersionVector};
pub use codec::{VerifiedRequest, open_request};
pub use config::EngineConfig;
pub use conflict::{
    AuditRecord, ConflictContext, ConflictSide, ConflictStrategy, Decision, FieldFallback,
    OpenConflict, Resolver, VersionRecord,
};
pub use engine::{
    Answer, Engine, Incoming, LocalWrite, ManualChoice, Outcome, Reply, Selection, SyncChange,
    Transmit,
};
pub use entity::{Entity, EntityKey, FieldStamps, Operation, StoredEntity};
pub use entity_registry::{EntityRegistry, EntityType, FieldDef, FieldKind};
pub use error::{
    ErrorCode, PeerError, SchemaError, StoreError, StoreErrorKind, SyncError, WriteError,
};
pub use events::{
    AppliedChange, ApplyHooks, ChangeKind, ConflictEvent, Event, Progress, SecurityEvent,
    SecurityKind,
};
pub use ids::{NodeId, Timestamp};
pub use migration::{Migration, MigrationFailure, MigrationStatus};
pub use node_registry::{InFlight, NodeInfo, PeerState, Role};
pub use packet::Codec;
pub use rejected::{RejectedBy, RejectedChange, Rejection};
pub use schema_version::{SchemaPolicy, SchemaVersion};
pub use store::{ParkedChange, PendingQuery, Store, StoreTxn};
pub use timer::{RetryPolicy, Timer};
pub use token::{Claims, KeySet, SigningKey, Token, TokenError};
pub use transport::{Transport, TransportError};
pub use uuid::Uuid;
pub use value::{Record, Value};
