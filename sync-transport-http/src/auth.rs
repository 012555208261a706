//! Node authentication: the hub's signing keys kept in its store, tokens
//! issued and checked, and credential rotation.
//!
//! The token format and its checks are sans-IO in [`sync_core::token`];
//! this module adds what needs IO: key material from the OS random source,
//! keys kept as driver metadata in the hub's store (under
//! [`KEY_PREFIX`]), and the refresh schedule (a fresh token every
//! [`TokenPolicy::refresh_every`] requests, the previous one accepted for
//! [`TokenPolicy::refresh_grace`] more).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use sync_core::token::{Claims, KeySet, SigningKey, Token, TokenError};
use sync_core::{Engine, NodeId, SecurityKind, Store, SyncError, Timestamp, Uuid};

use crate::hub::{Hub, HubError, NodeStatus};

/// Where signing keys are kept in the hub's driver metadata: one entry per
/// key, `http/signing-key/<id>`.
pub const KEY_PREFIX: &str = "http/signing-key/";
/// Where refresh floors are kept: `http/token-floor/<node>`.
pub const FLOOR_PREFIX: &str = "http/token-floor/";

/// How long tokens live and when they are refreshed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Lifetime of an issued token (default 30 days).
    pub ttl: Duration,
    /// A fresh token is returned every this many requests of a node
    /// (default 100; 0 turns refreshing off).
    pub refresh_every: u32,
    /// How long a token stays accepted after a fresh one replaced it
    /// (default 15 minutes), so requests in flight never fail.
    pub refresh_grace: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_every: 100,
            refresh_grace: Duration::from_secs(15 * 60),
        }
    }
}

impl TokenPolicy {
    /// Sets the token lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how many requests a token serves before it is refreshed.
    pub fn refresh_every(mut self, requests: u32) -> Self {
        self.refresh_every = requests;
        self
    }

    /// Sets how long a replaced token stays accepted.
    pub fn refresh_grace(mut self, grace: Duration) -> Self {
        self.refresh_grace = grace;
        self
    }

    fn ttl_micros(&self) -> i64 {
        micros(self.ttl)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Why a request was not authenticated (answered 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No `Authorization` header.
    #[error(
        "the request has no Authorization header; send `Authorization: Bearer <token>` with the token the hub issued for this node"
    )]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error(
        "the Authorization header is not of the form `Bearer <token>`; send the token the hub issued for this node"
    )]
    NotBearer,
    /// The token itself was refused.
    #[error(transparent)]
    Token(TokenError),
    /// A fresh token replaced this one and the grace window is over.
    #[error(
        "this token was replaced by a fresh one more than the grace window ago; use the newest token the hub returned, or issue the node a new one"
    )]
    Superseded {
        /// The node.
        node: NodeId,
    },
    /// The node is not registered on the hub.
    #[error("node {0} is not registered on this hub; register it before it syncs")]
    UnknownNode(NodeId),
    /// The node was revoked.
    #[error("node {0} was revoked and may not sync; register it again if that was a mistake")]
    RevokedNode(NodeId),
}

impl AuthFailure {
    /// A short stable name, the `reason` label of the auth-failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::NotBearer => "not_bearer",
            AuthFailure::Token(e) => e.reason(),
            AuthFailure::Superseded { .. } => "superseded",
            AuthFailure::UnknownNode(_) => "unknown_node",
            AuthFailure::RevokedNode(_) => "revoked_node",
        }
    }

    /// The kind of security event it is recorded as.
    pub fn security_kind(&self) -> SecurityKind {
        match self {
            AuthFailure::UnknownNode(_) => SecurityKind::UnknownSender,
            AuthFailure::RevokedNode(_) => SecurityKind::RevokedSender,
            _ => SecurityKind::AuthFailed,
        }
    }
}

/// Why keys could not be loaded, made or saved, or a token not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The hub's store failed.
    #[error("could not read or write the hub's signing keys: {0}")]
    Hub(#[from] HubError),
    /// A stored key is damaged.
    #[error(
        "the stored signing key {key} is damaged; remove it (tokens it signed stop working) or restore the store from a backup"
    )]
    DamagedKey {
        /// The metadata key.
        key: String,
    },
    /// The OS random source failed.
    #[error(
        "the operating system's random source failed while making a signing key; check the system and try again"
    )]
    Random,
    /// A token was asked for a node the hub does not know.
    #[error("node {0} is not registered on this hub; register it before issuing it a token")]
    UnknownNode(NodeId),
    /// A token was asked for a revoked node.
    #[error("node {0} is revoked; register it again before issuing it a token")]
    RevokedNode(NodeId),
}

impl From<SyncError> for AuthError {
    fn from(e: SyncError) -> Self {
        AuthError::Hub(HubError::Engine(e))
    }
}

/// Where the keys live: the hub's driver metadata, reached through a
/// running [`Hub`] or directly through an [`Engine`] (for a CLI that issues
/// tokens while no server runs).
pub trait KeyStore {
    /// Every value under `prefix`.
    fn load(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, AuthError>;
    /// Stores or removes a value.
    fn save(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), AuthError>;
    /// Whether `node` may be issued a token.
    fn node_status(&mut self, node: NodeId) -> Result<NodeStatus, AuthError>;
}

impl<S: Store> KeyStore for Engine<S> {
    fn load(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, AuthError> {
        Ok(self.meta_with_prefix(prefix)?)
    }

    fn save(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), AuthError> {
        Ok(self.put_meta(key, value)?)
    }

    fn node_status(&mut self, node: NodeId) -> Result<NodeStatus, AuthError> {
        match self.peer(node) {
            Ok(peer) if peer.revoked => Ok(NodeStatus::Revoked),
            Ok(_) => Ok(NodeStatus::Active),
            Err(SyncError::UnknownPeer(_)) => Ok(NodeStatus::Unknown),
            Err(e) => Err(e.into()),
        }
    }
}

/// A [`KeyStore`] over a [`Hub`].
pub struct HubKeys<'a, H: Hub + ?Sized>(pub &'a H);

impl<H: Hub + ?Sized> KeyStore for HubKeys<'_, H> {
    fn load(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, AuthError> {
        Ok(self.0.meta_with_prefix(prefix)?)
    }

    fn save(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), AuthError> {
        Ok(self.0.put_meta(key, value)?)
    }

    fn node_status(&mut self, node: NodeId) -> Result<NodeStatus, AuthError> {
        Ok(self.0.node_status(node)?)
    }
}

/// Issues a token for `node` from the keys in `engine`'s store, making the
/// first key if there is none: what `syncplan node token` calls on a hub's
/// store. A running server must be told of keys made here only by a
/// restart; issue tokens through [`crate::HubServer::issue_token`]
/// while it runs.
pub fn issue_token<S: Store>(
    engine: &mut Engine<S>,
    node: NodeId,
    policy: &TokenPolicy,
    now: Timestamp,
) -> Result<Token, AuthError> {
    TokenAuthority::open(engine, policy.clone(), now)?.issue_checked(engine, node, now)
}

/// The server's view of a token after a request: a fresh token to hand
/// back, and the floor to keep (old tokens expire at its grace end).
pub(crate) struct Refresh {
    pub token: Token,
    pub floor: Floor,
}

/// Tokens of a node issued before `issued_at` are accepted until
/// `grace_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Floor {
    pub issued_at: Timestamp,
    pub grace_until: Timestamp,
}

impl Floor {
    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.issued_at.as_micros().to_be_bytes());
        out[8..].copy_from_slice(&self.grace_until.as_micros().to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Floor> {
        let issued: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let grace: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        Some(Floor {
            issued_at: Timestamp::from_micros(i64::from_be_bytes(issued)),
            grace_until: Timestamp::from_micros(i64::from_be_bytes(grace)),
        })
    }
}

#[derive(Default)]
struct NodeTokens {
    requests: u32,
    floor: Option<Floor>,
}

/// The hub's token authority: its key set (cached, kept in the store), and
/// per-node refresh state.
pub struct TokenAuthority {
    keys: RwLock<KeySet>,
    policy: TokenPolicy,
    nodes: Mutex<HashMap<NodeId, NodeTokens>>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("policy", &self.policy)
            .field("current_key", &self.current_key_id())
            .finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// Loads the keys from `store`, making and saving the first one when
    /// there is none (a hub's first start).
    pub fn open(
        store: &mut impl KeyStore,
        policy: TokenPolicy,
        now: Timestamp,
    ) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        for (name, bytes) in store.load(KEY_PREFIX)? {
            let key =
                SigningKey::from_bytes(&bytes).map_err(|_| AuthError::DamagedKey { key: name })?;
            keys.push(key);
        }
        let keys = match KeySet::from_keys(keys) {
            Some(keys) => keys,
            None => {
                let keys = KeySet::new(1, random_secret()?, now);
                save_key(store, keys.current())?;
                tracing::info!(key_id = 1, "made the hub's first token signing key");
                keys
            }
        };
        let mut nodes = HashMap::new();
        for (name, bytes) in store.load(FLOOR_PREFIX)? {
            let node = name
                .strip_prefix(FLOOR_PREFIX)
                .and_then(|id| Uuid::try_parse(id).ok());
            if let (Some(node), Some(floor)) = (node, Floor::from_bytes(&bytes)) {
                nodes.insert(
                    NodeId(node),
                    NodeTokens {
                        requests: 0,
                        floor: Some(floor),
                    },
                );
            }
        }
        Ok(TokenAuthority {
            keys: RwLock::new(keys),
            policy,
            nodes: Mutex::new(nodes),
        })
    }

    /// The token policy.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// The id of the key that signs new tokens.
    pub fn current_key_id(&self) -> u32 {
        self.read_keys().current().id()
    }

    /// Issues a token for `node` (not checking that it is registered: see
    /// [`TokenAuthority::issue_checked`]).
    pub fn issue(&self, node: NodeId, now: Timestamp) -> Token {
        self.read_keys().issue(node, now, self.policy.ttl_micros())
    }

    /// Issues a token for `node` if `store` has it registered and not
    /// revoked.
    pub fn issue_checked(
        &self,
        store: &mut impl KeyStore,
        node: NodeId,
        now: Timestamp,
    ) -> Result<Token, AuthError> {
        match store.node_status(node)? {
            NodeStatus::Active => Ok(self.issue(node, now)),
            NodeStatus::Unknown => Err(AuthError::UnknownNode(node)),
            NodeStatus::Revoked => Err(AuthError::RevokedNode(node)),
        }
    }

    /// Rotates the signing key: a new key signs from now on and is saved;
    /// the previous keys keep verifying the tokens they signed until those
    /// expire, then are dropped from the store. Returns the new key id.
    pub fn rotate(&self, store: &mut impl KeyStore, now: Timestamp) -> Result<u32, AuthError> {
        let secret = random_secret()?;
        let mut next = self.read_keys().clone();
        let id = next.rotate(secret, now);
        let pruned = next.prune(now, self.policy.ttl_micros());
        // Saved before it is used: a crash leaves the old set, never a
        // token signed by a key the store lacks.
        for key in next.keys() {
            save_key(store, key)?;
        }
        for old in pruned {
            store.save(&key_name(old), None)?;
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = next;
        tracing::info!(key_id = id, "rotated the hub's token signing key");
        Ok(id)
    }

    /// Checks a token at `now` (signature, key, expiry, refresh floor). It
    /// does not check that the node is registered: the hub does, under its
    /// lock.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, AuthFailure> {
        let claims = self
            .read_keys()
            .verify(token, now)
            .map_err(AuthFailure::Token)?;
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let floor = nodes.get(&claims.node).and_then(|n| n.floor);
        if floor.is_some_and(|f| claims.issued_at < f.issued_at && now >= f.grace_until) {
            return Err(AuthFailure::Superseded { node: claims.node });
        }
        Ok(claims)
    }

    /// Counts a served request; every `refresh_every` requests of a node
    /// presenting its newest token, returns a fresh token and the floor
    /// that retires the presented one after the grace window.
    pub(crate) fn note_request(&self, claims: &Claims, now: Timestamp) -> Option<Refresh> {
        if self.policy.refresh_every == 0 {
            return None;
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let state = nodes.entry(claims.node).or_default();
        state.requests = state.requests.saturating_add(1);
        let superseded = state.floor.is_some_and(|f| claims.issued_at < f.issued_at);
        if state.requests < self.policy.refresh_every || superseded {
            return None;
        }
        state.requests = 0;
        let token = self.issue(claims.node, now);
        let floor = Floor {
            issued_at: now,
            grace_until: now.add_micros(micros(self.policy.refresh_grace)),
        };
        state.floor = Some(floor);
        Some(Refresh { token, floor })
    }

    /// Keeps a refresh floor in the store, so a restart does not bring
    /// replaced tokens back.
    pub(crate) fn save_floor(
        store: &mut impl KeyStore,
        node: NodeId,
        floor: Floor,
    ) -> Result<(), AuthError> {
        store.save(
            &format!("{FLOOR_PREFIX}{}", node.0),
            Some(&floor.to_bytes()),
        )
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key_name(id: u32) -> String {
    format!("{KEY_PREFIX}{id:010}")
}

fn save_key(store: &mut impl KeyStore, key: &SigningKey) -> Result<(), AuthError> {
    store.save(&key_name(key.id()), Some(&key.to_bytes()))
}

fn random_secret() -> Result<[u8; 32], AuthError> {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| AuthError::Random)?;
    Ok(secret)
}

/// Reads the token from an `Authorization` header value.
pub(crate) fn bearer(header: Option<&[u8]>) -> Result<&str, AuthFailure> {
    let value = header.ok_or(AuthFailure::Missing)?;
    let text = std::str::from_utf8(value).map_err(|_| AuthFailure::NotBearer)?;
    let (scheme, token) = text.trim().split_once(' ').ok_or(AuthFailure::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::NotBearer);
    }
    Ok(token.trim())
}
