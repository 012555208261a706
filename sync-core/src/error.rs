//! Typed errors. Each message says what happened and what to do about it.

use std::error::Error as StdError;

use uuid::Uuid;

use crate::entity::EntityKey;
use crate::ids::{NodeId, Timestamp};
use crate::schema_version::SchemaVersion;

/// Any error from an engine call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The store failed; see the inner error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A peer sent bytes that were refused; nothing was applied.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// Schema versions are incompatible; nothing was applied.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A local write was refused; nothing was written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The peer refused our packet and said why.
    #[error("{peer} refused our packet ({code:?}): {message}")]
    Rejected {
        /// The refusing peer, when it named itself.
        peer: NodeId,
        /// What kind of refusal.
        code: ErrorCode,
        /// The peer's explanation, for a person.
        message: String,
        /// Whether sending again later may succeed.
        retryable: bool,
    },
    /// No peer with this id is registered here.
    #[error("no peer {0} is registered on this node; register it before syncing with it")]
    UnknownPeer(NodeId),
    /// The peer was revoked.
    #[error("peer {0} was revoked; register it again to sync with it")]
    RevokedPeer(NodeId),
    /// The store belongs to another node.
    #[error(
        "this store belongs to node {stored}, not {requested}; open the right store or start from an empty one"
    )]
    WrongStore {
        /// Node id recorded in the store.
        stored: NodeId,
        /// Node id the caller asked for.
        requested: NodeId,
    },
    /// The store has no local node yet.
    #[error("this store has no local node; create the engine with Engine::new first")]
    NotInitialized,
    /// No open manual conflict has this id.
    #[error(
        "conflict {0} is not open (already resolved, or never existed); list open conflicts to pick one"
    )]
    ConflictNotFound(Uuid),
    /// A setting that only the hub keeps was asked of a node.
    #[error("{0} are kept and decided at the hub; call this on the hub's engine")]
    HubOnly(&'static str),
}

impl SyncError {
    /// Whether retrying the same call later may succeed (transient failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Rejected { retryable, .. } => *retryable,
            SyncError::Peer(e) => e.is_corruption(),
            _ => false,
        }
    }
}

/// Why a peer refused a packet (mirrors the wire `ErrorCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Damaged bytes: send again.
    Corrupt,
    /// Incompatible schema versions.
    SchemaMismatch,
    /// Sender not registered or revoked.
    UnknownNode,
    /// Addressed to another node.
    WrongRecipient,
    /// Over the recipient's limits.
    TooLarge,
    /// Unsupported protocol version or codec.
    Unsupported,
    /// The recipient failed internally.
    Internal,
    /// Authentication failed.
    Unauthenticated,
    /// The sender's clock is too far ahead of the recipient's.
    ClockAhead,
    /// A code this version does not know.
    Unknown,
}

/// Misbehaviour or damage in bytes received from a peer. Nothing is applied
/// when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The bytes are not a valid message.
    #[error(
        "could not decode the {what}: {detail}; the bytes were damaged in transit or the sender speaks another protocol version"
    )]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Decoder detail.
        detail: String,
    },
    /// Larger than the configured limit.
    #[error(
        "the {what} is {size} bytes, over the limit of {limit}; raise the limit or send smaller batches"
    )]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The header does not match its SHA-256.
    #[error(
        "a packet header does not match its hash; it was damaged in transit and must be sent again"
    )]
    HeaderHashMismatch,
    /// The body does not match its SHA-256.
    #[error(
        "packet {packet_no} from {sender} does not match its body hash; it was damaged in transit and must be sent again"
    )]
    BodyHashMismatch {
        /// Claimed sender.
        sender: NodeId,
        /// Its packet number.
        packet_no: u64,
    },
    /// The packet is for another node.
    #[error(
        "packet addressed to {recipient} arrived at {local}; check the peer's hub address and node id"
    )]
    WrongRecipient {
        /// This node.
        local: NodeId,
        /// The addressee.
        recipient: NodeId,
    },
    /// The sender is not registered here.
    #[error("node {sender} is not registered here; register it on the hub before it syncs")]
    UnknownSender {
        /// Claimed sender.
        sender: NodeId,
    },
    /// The sender was revoked.
    #[error("node {sender} was revoked and may not sync; register it again if that was a mistake")]
    RevokedSender {
        /// Claimed sender.
        sender: NodeId,
    },
    /// Another wire protocol version.
    #[error(
        "the peer speaks wire protocol {version}, this node speaks {supported}; upgrade the older side"
    )]
    UnsupportedProtocol {
        /// Peer's version.
        version: u32,
        /// Ours.
        supported: u32,
    },
    /// Unknown compression codec.
    #[error(
        "the packet uses compression codec {codec}, which this node does not know; configure the peer for zstd or gzip"
    )]
    UnsupportedCodec {
        /// Raw codec number.
        codec: i32,
    },
    /// Structurally valid protobuf with invalid content.
    #[error("malformed packet from {sender}: {detail}")]
    Malformed {
        /// Claimed sender (nil when unknown).
        sender: NodeId,
        /// What is wrong.
        detail: String,
    },
    /// An entity type this node has not registered.
    #[error(
        "the peer sent entities of type {entity_type}, which is not registered on this node; upgrade this node's schema"
    )]
    UnknownEntityType {
        /// The type name.
        entity_type: String,
    },
    /// The sender's clock runs further ahead of this node's than the
    /// configured maximum offset: its timestamps would win every
    /// last-writer-wins conflict.
    #[error(
        "{sender}'s clock reads {peer_clock}, {ahead_ms} ms ahead of this node's {local_clock}, over the maximum offset of {max_ms} ms; fix the clock on {sender}, then sync again"
    )]
    ClockAhead {
        /// The sender.
        sender: NodeId,
        /// The sender's clock (the packet's timestamp).
        peer_clock: Timestamp,
        /// This node's clock when the packet arrived.
        local_clock: Timestamp,
        /// How far ahead, in milliseconds.
        ahead_ms: i64,
        /// The configured maximum, in milliseconds.
        max_ms: i64,
    },
    /// The packet's header names a sender other than the one the transport
    /// authenticated: nothing was applied.
    #[error(
        "the transport authenticated node {authenticated}, but the packet's header names {claimed} as its sender; a node may only send its own packets: check that {authenticated} is configured with its own node id and credentials"
    )]
    SenderMismatch {
        /// The sender the transport authenticated.
        authenticated: NodeId,
        /// The sender the header names.
        claimed: NodeId,
    },
}

impl PeerError {
    /// Whether the error suggests damage in transit (resending may help).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            PeerError::Decode { .. }
                | PeerError::HeaderHashMismatch
                | PeerError::BodyHashMismatch { .. }
        )
    }

    /// The wire code that tells the sender about this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PeerError::Decode { .. }
            | PeerError::HeaderHashMismatch
            | PeerError::BodyHashMismatch { .. } => ErrorCode::Corrupt,
            PeerError::TooLarge { .. } => ErrorCode::TooLarge,
            PeerError::WrongRecipient { .. } => ErrorCode::WrongRecipient,
            PeerError::UnknownSender { .. } | PeerError::RevokedSender { .. } => {
                ErrorCode::UnknownNode
            }
            PeerError::UnsupportedProtocol { .. } | PeerError::UnsupportedCodec { .. } => {
                ErrorCode::Unsupported
            }
            PeerError::Malformed { .. } => ErrorCode::Corrupt,
            PeerError::UnknownEntityType { .. } => ErrorCode::SchemaMismatch,
            PeerError::ClockAhead { .. } => ErrorCode::ClockAhead,
            PeerError::SenderMismatch { .. } => ErrorCode::Unauthenticated,
        }
    }
}

/// Incompatible or invalid schema versions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The node's schema is older than the hub accepts.
    #[error(
        "node {node}'s schema {node_version} is older than the hub's minimum {minimum}; upgrade the node"
    )]
    Outdated {
        /// Node code.
        node: String,
        /// Its version.
        node_version: SchemaVersion,
        /// The hub's minimum.
        minimum: SchemaVersion,
    },
    /// Different major versions.
    #[error(
        "{peer}'s schema {peer_version} has a different major version than {this}'s {own}; upgrade the older side to the same major version"
    )]
    MajorMismatch {
        /// Which peer.
        peer: String,
        /// Its version.
        peer_version: SchemaVersion,
        /// This side, in words.
        this: String,
        /// Our version.
        own: SchemaVersion,
    },
    /// Not `major.minor.patch`.
    #[error("schema version {text:?} is not of the form major.minor.patch (e.g. 1.2.0)")]
    Invalid {
        /// The offending text (truncated).
        text: String,
    },
}

/// A local write that was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The type is not registered.
    #[error("entity type {entity_type} is not registered; register it in the EntityRegistry first")]
    UnknownType {
        /// The type name.
        entity_type: String,
    },
    /// The field is not declared for the type.
    #[error("{entity_type} has no field {field}; declare it in the type's registration")]
    UnknownField {
        /// Type.
        entity_type: String,
        /// Field.
        field: String,
    },
    /// The value's kind does not match the declaration.
    #[error("{entity_type}.{field} expects {expected} but got {found}")]
    FieldKind {
        /// Type.
        entity_type: String,
        /// Field.
        field: String,
        /// Declared kind.
        expected: String,
        /// Supplied kind.
        found: &'static str,
    },
    /// A reference names a parent that does not exist.
    #[error(
        "{child}.{field} references {parent}, which does not exist here; write the parent first"
    )]
    MissingParent {
        /// The child being written.
        child: EntityKey,
        /// The reference field.
        field: String,
        /// The missing parent.
        parent: EntityKey,
    },
    /// No such entity.
    #[error("{0} does not exist")]
    NotFound(EntityKey),
    /// No rejected change has this id (retried or discarded already?).
    #[error("there is no rejected change {0}; list them with Engine::rejected")]
    NoSuchRejected(Uuid),
    /// The value could not be converted to or from a typed struct.
    #[error("{entity_type} could not be converted with serde: {detail}")]
    Serde {
        /// Type.
        entity_type: String,
        /// serde's message.
        detail: String,
    },
}

/// What kind of store failure, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// A record that must exist does not.
    NotFound,
    /// Stored data is inconsistent.
    Corrupt,
    /// The store refused writes after an earlier failure.
    Poisoned,
    /// The backend (database, disk) failed.
    Backend,
    /// The store's schema refused one version (a constraint).
    Refused,
}

/// A store failure. Shared by all stores; backend detail is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record that must exist does not.
    #[error("{what} is not in the store")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// Stored data is inconsistent.
    #[error("the store's data is corrupt: {detail}; restore it from a backup")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// An earlier write failed; the store refuses further writes.
    #[error(
        "the store refuses writes since an earlier write failed ({reason}); reopen it to recover"
    )]
    Poisoned {
        /// The original failure.
        reason: String,
    },
    /// The backend failed.
    #[error("the store's backend failed while {context}: {source}")]
    Backend {
        /// What the store was doing.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The store's own schema refuses this one version (a UNIQUE value held
    /// by another row, a NOT NULL or CHECK constraint). The engine keeps the
    /// version as a rejected change and applies the rest of the packet; the
    /// transaction that returned this must be dropped.
    #[error("{key} was refused: {reason}")]
    Refused {
        /// The entity whose version was refused.
        key: EntityKey,
        /// Why, naming the table, column and value where known.
        reason: String,
    },
}

impl StoreError {
    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NotFound { .. } => StoreErrorKind::NotFound,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::Poisoned { .. } => StoreErrorKind::Poisoned,
            StoreError::Backend { .. } => StoreErrorKind::Backend,
            StoreError::Refused { .. } => StoreErrorKind::Refused,
        }
    }

    /// Wraps a backend error with what the store was doing.
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}
