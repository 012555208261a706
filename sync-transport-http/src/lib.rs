//! # sync-transport-http
//!
//! syncplan over HTTPS: an embeddable hub server ([`HubServer`]) and the
//! node's [`Transport`](sync_core::Transport) ([`HttpTransport`]), on tokio,
//! hyper 1 and rustls (ring).
//!
//! - `POST /v1/exchange`: a node's envelope in (`application/x-protobuf`,
//!   or JSON in the specification's envelope shape: see [`json`](mod@json)),
//!   the hub's reply out.
//! - `GET /v1/wait?timeout=<s>`: returns as soon as the hub holds something
//!   for the node, or after the timeout (`{"pending": n}`).
//! - `GET /v1/health` and `GET /metrics` (Prometheus text format).
//!
//! Nodes authenticate with tokens the hub issues ([`HubServer::issue_token`],
//! or [`issue_token`] on the hub's store while no server runs), sent in the
//! `Authorization: Bearer` header only. The node id comes from the token: a
//! packet in another node's name is refused with 403. Every
//! [`TokenPolicy::refresh_every`] requests the hub returns a fresh token in
//! the `syncplan-token` header; the transport switches to it.
//!
//! HTTP statuses: 200 reply packet; 400 malformed, wrong recipient or clock
//! ahead, 403 sender mismatch, 409 schema mismatch (each with an error
//! envelope the engine reads); 401 not authenticated; 413 body over the
//! limit; 415 unknown content type or coding; 429 rate limited (with
//! `Retry-After`); 503 the hub's store failed (nothing applied).
//!
//! A hub and a node, on 127.0.0.1 with a self-signed certificate the node
//! pins:
//!
//! ```
//! use sync_core::{Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, NodeId, NodeInfo};
//! use sync_core::{Record, Role, Transport, Value, Uuid};
//! use sync_store_memory::MemoryStore;
//! use sync_transport_http::{ClientConfig, EngineHub, HttpTransport, HubServer, SelfSigned};
//! use sync_transport_http::{ServerConfig, Trust};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = EntityRegistry::new().with(EntityType::new("Note").field("text", FieldKind::Text));
//! let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
//! let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
//!
//! // The hub: an engine over any store, served over TLS.
//! let mut engine = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default(), hub_info.clone())?;
//! engine.register_peer(node_info.clone())?;
//! let cert = SelfSigned::generate(&["127.0.0.1"])?;
//! let tls = cert.identity.server_config()?;
//! let server = HubServer::bind("127.0.0.1:0".parse()?, tls, EngineHub::new(engine), ServerConfig::default()).await?;
//! let token = server.issue_token(node_info.id).await?;
//!
//! // The node: its engine, and a transport that pins the hub's certificate.
//! let config = ClientConfig::default().trust(Trust::pinned(&cert.fingerprint)?);
//! let transport = HttpTransport::new(&server.url(), token.as_str(), config)?;
//! let mut node = Engine::new(MemoryStore::new(), registry, EngineConfig::default(), node_info)?;
//! node.register_peer(hub_info.clone())?;
//! let now = sync_transport_http::clock::system_now();
//! node.insert("Note", Record::from([("text".into(), Value::from("hello"))]), now)?;
//!
//! node.start_sync(hub_info.id)?;
//! while let Some(packet) = node.poll_transmit(now)? {
//!     for reply in transport.exchange(packet.bytes).await? {
//!         node.handle_incoming(&reply, now)?;
//!     }
//! }
//! assert_eq!(node.pending_count(hub_info.id)?, 0);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod client;
pub mod clock;
pub mod encoding;
pub mod hub;
pub mod json;
mod metrics;
pub mod server;
pub mod tls;

pub use auth::{AuthError, AuthFailure, KeyStore, TokenAuthority, TokenPolicy, issue_token};
pub use client::{ClientConfig, ClientError, HttpTransport};
pub use clock::{Clock, ManualClock};
pub use encoding::ContentCoding;
pub use hub::{
    EngineHub, Hub, HubAnswer, HubError, HubInfo, HubReply, HubRequest, NodeLag, NodeStatus,
};
pub use server::{HubServer, HubService, ServerConfig, ServerError};
#[cfg(feature = "self-signed")]
pub use tls::SelfSigned;
pub use tls::{TlsError, TlsIdentity, Trust, fingerprint};

/// The media type of protobuf envelopes.
pub const PROTOBUF: &str = "application/x-protobuf";

/// The response header carrying a fresh token for the node.
pub const TOKEN_HEADER: &str = "syncplan-token";
