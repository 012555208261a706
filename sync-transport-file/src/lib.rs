//! # sync-transport-file
//!
//! Sealed packet files for air-gapped syncplan exchange: nodes that never see
//! a network sync by carrying files (a USB stick, a shared folder, e-mail).
//!
//! A file holds one packet the engine built (changes and an
//! acknowledgement) behind a small readable header (format version,
//! sender, recipient, packet number, ack, schema version, entity count; see
//! [`format`](mod@format)). The body is zstd-compressed and sealed with AES-256-GCM under
//! the pair's shared key, with a fresh random nonce per file and the header
//! bound as associated data, so any change to any byte is detected. Large
//! packets are split into numbered parts that import in any order. Files
//! are written atomically: a crash never leaves a file under its final name
//! that fails verification.
//!
//! - Keys: [`create_pair_key`] at the hub when a node is registered (hand
//!   [`PairKey::expose_printable`] over once, with the node's credentials),
//!   [`install_pair_key`] at the node ([`PairKey::parse`]).
//! - Manual exchange: [`export`] writes the next packet for a peer;
//!   [`import`] verifies files and applies them; [`answer`] imports and
//!   writes the reply (the hub's side); [`dry_run`] previews an import
//!   without changing anything; [`inspect`] reads a header without the key.
//! - Folder mode: [`FolderTransport`] implements [`sync_core::Transport`]
//!   over an outbox and an inbox per peer ([`FolderPaths`]);
//!   [`serve_folder`] is the hub's side.
//!
//! Exported changes stay pending until the peer's reply acknowledges them,
//! as over the network; a duplicate or older file is acknowledged again and
//! changes nothing. A file that fails any check (format version, recipient,
//! key, integrity, missing parts) is refused with a [`FileError`] naming the
//! file and a [`FileRejection`] saying why, before the store is touched.
//!
//! ## Example
//!
//! A node exports its change, the hub imports it and answers, the node
//! imports the answer, which acknowledges the change.
//!
//! ```
//! use sync_core::{Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, FieldKind};
//! use sync_core::{NodeId, NodeInfo, Record, Role, Timestamp, Uuid, Value};
//! use sync_store_memory::MemoryStore;
//! use sync_transport_file::{ExportOptions, PairKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = EntityRegistry::new().with(EntityType::new("Note").field("text", FieldKind::Text));
//! let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
//! let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
//! let mut hub = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default().seed(1), hub_info.clone())?;
//! let mut node = Engine::new(MemoryStore::new(), registry, EngineConfig::default().seed(2), node_info.clone())?;
//!
//! // Registration: the hub creates the pair key, the node installs it.
//! hub.register_peer(node_info.clone())?;
//! node.register_peer(hub_info.clone())?;
//! let handed_over = sync_transport_file::create_pair_key(&mut hub, node_info.id)?.expose_printable();
//! sync_transport_file::install_pair_key(&mut node, hub_info.id, &PairKey::parse(&handed_over)?)?;
//!
//! let stick = tempfile::tempdir()?;
//! let now = Timestamp::from_secs(1_765_535_400);
//! let id = node.insert("Note", Record::from([("text".into(), Value::from("hello"))]), now)?;
//!
//! // The node exports; the file is carried to the hub.
//! let options = ExportOptions::default();
//! let exported = sync_transport_file::export(&mut node, hub_info.id, stick.path(), &options, now)?;
//! assert_eq!(exported.header.entity_count, 1);
//!
//! // The hub imports it and writes its answer next to it.
//! let answers = sync_transport_file::answer(&mut hub, &exported.files, stick.path(), &options, now)?;
//! assert_eq!(answers[0].imported.as_ref().map(|i| i.applied), Some(1));
//! assert!(hub.get(&EntityKey::new("Note", id))?.is_some());
//!
//! // The node imports the answer: its change is acknowledged.
//! assert_eq!(node.pending_count(hub_info.id)?, 1);
//! sync_transport_file::import(&mut node, &answers[0].reply_files, now)?;
//! assert_eq!(node.pending_count(hub_info.id)?, 0);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod export;
mod folder;
pub mod format;
mod import;
mod key;
mod preview;
mod seal;

pub use error::{FileError, FileRejection};
pub use export::{
    ExportOptions, Exported, export, export_selected, remove_stale_temp_files, seal_envelope,
    write_atomic, write_files,
};
pub use folder::{
    FolderEndpoint, FolderOptions, FolderPaths, FolderTransport, REJECTED_DIR, Received, Served,
    serve_folder,
};
pub use format::{FORMAT_VERSION, FileHeader, FileKind};
pub use import::{Answer, Imported, Opened, answer, import, inspect, open_files, verify_file};
pub use key::{
    KeyError, KeyId, META_PREFIX, PairKey, create_pair_key, install_pair_key, meta_key, pair_key,
    paired_peers, remove_pair_key,
};
pub use preview::{Preview, PreviewConflict, PreviewRejected, RollbackStore, RollbackTxn, dry_run};
pub use seal::{MIN_FILE_BYTES, SealedFile};
