//! Pair keys: the 256-bit secret that a hub and one node share to seal the
//! files they exchange.
//!
//! The hub creates a node's key when it registers the node
//! ([`create_pair_key`]) and hands it over once, in printable form
//! ([`PairKey::expose_printable`]), with the node's credentials; the node
//! installs it ([`install_pair_key`]). Both keep it in their store's driver
//! metadata under `file/pair-key/<peer uuid>`. The key never appears in a
//! file (files carry only its [`KeyId`]), a `Debug` output or an error
//! message.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use sync_core::{Engine, NodeId, Store, SyncError};

/// Prefix of the driver metadata keys that hold pair keys.
pub const META_PREFIX: &str = "file/pair-key/";

/// Prefix of a printable pair key (format version 1).
const PRINTABLE_PREFIX: &str = "sfk1-";
/// Tag of the stored form (format version 1), before the 32 key bytes.
const STORED_TAG: u8 = 1;
const KEY_LEN: usize = 32;

/// A pair's shared file key. `Debug` shows only its [`KeyId`].
#[derive(Clone)]
pub struct PairKey {
    bytes: [u8; KEY_LEN],
}

/// A public fingerprint of a [`PairKey`] (an HMAC of a fixed label under the
/// key): written in every file header so that a file sealed with another key
/// is reported as such. It reveals nothing about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

/// Why a pair key could not be created, read, installed or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The peer is not registered on this engine.
    #[error(
        "no peer {peer} is registered here; register the node before creating or installing its file key"
    )]
    UnknownPeer {
        /// The peer asked for.
        peer: NodeId,
    },
    /// A different key is already installed for the peer.
    #[error(
        "a file key (id {existing}) is already installed for peer {peer}; remove it first (remove_pair_key) if it is to be replaced"
    )]
    Exists {
        /// The peer.
        peer: NodeId,
        /// Fingerprint of the installed key.
        existing: KeyId,
    },
    /// The text is not a printable pair key.
    #[error(
        "this is not a valid file key: {reason}; copy the whole key (it starts with `sfk1-`) exactly as it was handed over"
    )]
    Invalid {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stored key is damaged.
    #[error(
        "the file key stored for peer {peer} is damaged; remove it and install the key handed over with the node's credentials again"
    )]
    Damaged {
        /// The peer.
        peer: NodeId,
    },
    /// The operating system's random source failed.
    #[error("the system random source failed; no key was created, try again")]
    Random,
    /// The store failed.
    #[error("the store failed while handling a file key: {0}")]
    Store(#[source] SyncError),
}

impl PairKey {
    /// A fresh random key from the operating system's random source.
    pub fn generate() -> Result<PairKey, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Ok(PairKey { bytes })
    }

    /// Parses the printable form made by [`PairKey::expose_printable`]
    /// (surrounding whitespace is ignored; a checksum catches typos).
    pub fn parse(text: &str) -> Result<PairKey, KeyError> {
        let invalid = |reason| KeyError::Invalid { reason };
        let rest = text
            .trim()
            .strip_prefix(PRINTABLE_PREFIX)
            .ok_or(invalid("it does not start with `sfk1-`"))?;
        let (hex_key, hex_check) = rest
            .split_once('-')
            .ok_or(invalid("its checksum is missing"))?;
        let mut bytes = [0u8; KEY_LEN];
        decode_hex(hex_key, &mut bytes).ok_or(invalid("its key part is not 64 hex digits"))?;
        let key = PairKey { bytes };
        let mut check = [0u8; 4];
        decode_hex(hex_check, &mut check).ok_or(invalid("its checksum is not 8 hex digits"))?;
        if check != key.checksum() {
            return Err(invalid(
                "its checksum does not match (a character was mistyped)",
            ));
        }
        Ok(key)
    }

    /// The key as text, for handing over with a node's credentials. This is
    /// the secret itself: show it once, never log it.
    pub fn expose_printable(&self) -> String {
        format!(
            "{PRINTABLE_PREFIX}{}-{}",
            encode_hex(&self.bytes),
            encode_hex(&self.checksum())
        )
    }

    /// The key's public fingerprint.
    pub fn key_id(&self) -> KeyId {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.bytes);
        let tag = ring::hmac::sign(&key, b"syncplan file key id v1");
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag.as_ref()[..8]);
        KeyId(id)
    }

    /// The raw key, for the sealing code only.
    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    fn checksum(&self) -> [u8; 4] {
        let mut input = b"syncplan pair key".to_vec();
        input.extend(self.bytes);
        let digest = sync_core::codec::sha256(&input);
        [digest[0], digest[1], digest[2], digest[3]]
    }

    fn stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + KEY_LEN);
        out.push(STORED_TAG);
        out.extend(self.bytes);
        out
    }

    fn from_stored(peer: NodeId, stored: &[u8]) -> Result<PairKey, KeyError> {
        match stored.split_first() {
            Some((&STORED_TAG, rest)) if rest.len() == KEY_LEN => {
                let mut bytes = [0u8; KEY_LEN];
                bytes.copy_from_slice(rest);
                Ok(PairKey { bytes })
            }
            _ => Err(KeyError::Damaged { peer }),
        }
    }
}

impl fmt::Debug for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairKey(id {}, secret redacted)", self.key_id())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl KeyId {
    /// Parses 16 hex digits.
    pub fn parse_hex(text: &str) -> Option<KeyId> {
        let mut id = [0u8; 8];
        decode_hex(text, &mut id)?;
        Some(KeyId(id))
    }
}

/// The metadata key under which the pair key for `peer` is stored.
pub fn meta_key(peer: NodeId) -> String {
    format!("{META_PREFIX}{peer}")
}

/// Creates the file key for `peer` (call it at the hub when the node is
/// registered), stores it and returns it: hand
/// [`PairKey::expose_printable`] over with the node's credentials, once.
///
/// Fails with [`KeyError::Exists`] when the peer already has a key.
pub fn create_pair_key<S: Store>(
    engine: &mut Engine<S>,
    peer: NodeId,
) -> Result<PairKey, KeyError> {
    require_peer(engine, peer)?;
    if let Some(existing) = pair_key(engine, peer)? {
        return Err(KeyError::Exists {
            peer,
            existing: existing.key_id(),
        });
    }
    let key = PairKey::generate()?;
    store_key(engine, peer, &key)?;
    Ok(key)
}

/// Installs the key handed over for `peer` (at a node: the hub's id).
/// Installing the same key again does nothing; a different one fails with
/// [`KeyError::Exists`].
pub fn install_pair_key<S: Store>(
    engine: &mut Engine<S>,
    peer: NodeId,
    key: &PairKey,
) -> Result<(), KeyError> {
    require_peer(engine, peer)?;
    match pair_key(engine, peer)? {
        Some(existing) if existing.bytes == key.bytes => Ok(()),
        Some(existing) => Err(KeyError::Exists {
            peer,
            existing: existing.key_id(),
        }),
        None => store_key(engine, peer, key),
    }
}

/// Removes the key for `peer`; returns whether there was one.
pub fn remove_pair_key<S: Store>(engine: &mut Engine<S>, peer: NodeId) -> Result<bool, KeyError> {
    let had = engine
        .meta(&meta_key(peer))
        .map_err(KeyError::Store)?
        .is_some();
    engine
        .put_meta(&meta_key(peer), None)
        .map_err(KeyError::Store)?;
    Ok(had)
}

/// The key installed for `peer`, if any.
pub fn pair_key<S: Store>(
    engine: &mut Engine<S>,
    peer: NodeId,
) -> Result<Option<PairKey>, KeyError> {
    engine
        .meta(&meta_key(peer))
        .map_err(KeyError::Store)?
        .map(|stored| PairKey::from_stored(peer, &stored))
        .transpose()
}

/// Every peer with an installed key, with the key's fingerprint, in id
/// order. Entries whose key part is not a node id are skipped.
pub fn paired_peers<S: Store>(engine: &mut Engine<S>) -> Result<Vec<(NodeId, KeyId)>, KeyError> {
    let entries = engine
        .meta_with_prefix(META_PREFIX)
        .map_err(KeyError::Store)?;
    let mut out = Vec::with_capacity(entries.len());
    for (name, stored) in entries {
        let Some(peer) = name
            .strip_prefix(META_PREFIX)
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .map(NodeId)
        else {
            continue;
        };
        out.push((peer, PairKey::from_stored(peer, &stored)?.key_id()));
    }
    Ok(out)
}

fn require_peer<S: Store>(engine: &mut Engine<S>, peer: NodeId) -> Result<(), KeyError> {
    match engine.peer(peer) {
        Ok(_) => Ok(()),
        Err(SyncError::UnknownPeer(_)) => Err(KeyError::UnknownPeer { peer }),
        Err(other) => Err(KeyError::Store(other)),
    }
}

fn store_key<S: Store>(
    engine: &mut Engine<S>,
    peer: NodeId,
    key: &PairKey,
) -> Result<(), KeyError> {
    engine
        .put_meta(&meta_key(peer), Some(&key.stored()))
        .map_err(KeyError::Store)
}

/// Lowercase hex.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes exactly `out.len()` bytes of lowercase hex.
pub(crate) fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let digits = text.as_bytes();
    if digits.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_round_trips_and_catches_typos() {
        let key = PairKey::generate().expect("random");
        let text = key.expose_printable();
        assert_eq!(PairKey::parse(&text).expect("parses").bytes, key.bytes);
        let mut typo = text.into_bytes();
        let i = PRINTABLE_PREFIX.len() + 3;
        typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(matches!(
            PairKey::parse(&typo),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = PairKey::generate().expect("random");
        let debug = format!("{key:?}");
        assert!(!debug.contains(&encode_hex(&key.bytes)));
        assert!(debug.contains(&key.key_id().to_string()));
    }
}
