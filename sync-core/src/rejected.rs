//! Rejected changes: the quarantine that keeps one refused row from
//! blocking a node.
//!
//! A store may refuse a version it is asked to apply (a UNIQUE value that
//! another row holds, a NOT NULL or CHECK constraint of the application's
//! schema): [`StoreError::Refused`](crate::StoreError::Refused). The engine
//! then applies the rest of the packet without it, acknowledges the packet,
//! and keeps the refused version whole as a [`RejectedChange`] with the
//! store's reason. The peer it came from is told over the wire (a
//! [`Rejection`] notice in the bodies of the packets it is sent, until one of
//! them is acknowledged), and records the notice on its side.
//!
//! The hub is the authority: a node told that the hub refused its version
//! puts the hub's version of that entity back in place (or removes the entity
//! locally when the hub has none), as Firestore and PowerSync revert a
//! rejected write, so that every node agrees with the hub again; the refused
//! version stays in the node's list of rejected changes. A hub told that a
//! node refused one of its versions only records it (the node is behind the
//! hub on that entity until the cause is fixed and the change is retried).
//!
//! Both sides list rejected changes ([`crate::Engine::rejected`]), retry one
//! ([`crate::Engine::retry_rejected`]: a version this store refused is applied
//! again, one a peer refused is written again as a local change and sent) or
//! discard it ([`crate::Engine::discard_rejected`]: it moves to the version
//! history, never silently dropped).

use uuid::Uuid;

use crate::entity::{Entity, EntityKey};
use crate::ids::{NodeId, Timestamp};

/// Which side refused the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectedBy {
    /// This store refused a version that `peer` sent.
    Here,
    /// `peer` refused a version that this node sent.
    Peer,
}

impl RejectedBy {
    /// The stable name used in stores and JSON (`here`, `peer`).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectedBy::Here => "here",
            RejectedBy::Peer => "peer",
        }
    }

    /// Parses [`RejectedBy::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "here" => Some(RejectedBy::Here),
            "peer" => Some(RejectedBy::Peer),
            _ => None,
        }
    }
}

/// A refused version, kept whole with its reason.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedChange {
    /// Record id. A notice about it carries the same id, so each side keeps
    /// one record per refusal however often the notice arrives.
    pub id: Uuid,
    /// The version that was refused.
    pub entity: Entity,
    /// The peer involved: the one that sent the version ([`RejectedBy::Here`])
    /// or the one that refused it ([`RejectedBy::Peer`]).
    pub peer: NodeId,
    /// Which side refused it.
    pub by: RejectedBy,
    /// The store's reason, for a person (names the table, column and value
    /// where the store knows them).
    pub reason: String,
    /// When it was refused (clock of the side keeping this record).
    pub at: Timestamp,
    /// For [`RejectedBy::Here`]: the peer still to be told, until a packet
    /// carrying the notice is acknowledged; `None` once it was.
    pub notify: Option<NodeId>,
    /// The number of the first packet to `notify` that carried the notice.
    pub notified_in: Option<u64>,
}

/// A notice, in a packet body, that the sender refused one of the
/// recipient's versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The id of the sender's [`RejectedChange`].
    pub id: Uuid,
    /// The entity.
    pub key: EntityKey,
    /// The sync digest of the refused version.
    pub version_digest: [u8; 32],
    /// The store's reason.
    pub reason: String,
    /// From the hub: it holds no version of the entity (the node removes its
    /// refused one locally); otherwise the hub's version travels in the same
    /// packet.
    pub hub_has_none: bool,
}
