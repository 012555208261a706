//! Target `token`: node token parsing and verification
//! (`sync_core::token`) on arbitrary strings, and the stored form of a
//! signing key on arbitrary bytes.
//!
//! Input: a flags byte, two bytes of `now` (seconds after the fixtures'
//! epoch, little-endian), then the token text (the signing-key reader gets
//! the same bytes). The [`keys`] are fixed: key 1 signed from `t(0)` and
//! retired at `t(500)`, key 2 current since then. With [`RESIGN`] in the
//! flags the target signs the claims it reads from the text with the key
//! they name (when it is one of the set), so the fuzzer reaches the time
//! and key checks behind the tag. It checks that
//! - `Claims::peek`, `KeySet::verify` and `SigningKey::from_bytes` never
//!   panic;
//! - a token that verifies has the claims `peek` reads, is exactly the
//!   canonical token its key issues for those claims, and is not expired;
//! - a re-signed token verifies exactly when the model says: its key is
//!   known, it was issued while that key signed, and it has not expired
//!   (else the error names the first rule broken);
//! - a signing key that reads back writes the same bytes.

use sync_conformance::fixtures::t;
use sync_core::Timestamp;
use sync_core::token::{Claims, KeySet, SigningKey, TokenError};

/// Flag: sign the claims read from the text before verifying.
pub const RESIGN: u8 = 1;

/// Key 1's secret.
const SECRET_1: [u8; 32] = [0x11; 32];
/// Key 2's secret.
const SECRET_2: [u8; 32] = [0x22; 32];

/// When key 1 was retired and key 2 made.
pub fn rotated_at() -> Timestamp {
    t(500)
}

/// The fixed key set: key 1 (from `t(0)`, retired at [`rotated_at`]) and key
/// 2 (current).
pub fn keys() -> KeySet {
    let mut keys = KeySet::new(1, SECRET_1, t(0));
    keys.rotate(SECRET_2, rotated_at());
    keys
}

/// The secret of key `id` of [`keys`] (zeros for any other id).
pub fn secret(id: u32) -> [u8; 32] {
    match id {
        1 => SECRET_1,
        2 => SECRET_2,
        _ => [0; 32],
    }
}

/// A key set holding only key `id` of [`keys`], as it signed (for issuing
/// with it).
fn signer(id: u32) -> Option<KeySet> {
    match id {
        1 => Some(KeySet::new(1, SECRET_1, t(0))),
        2 => Some(KeySet::new(2, SECRET_2, rotated_at())),
        _ => None,
    }
}

/// Frames a seed: flags, `now` (seconds after the epoch), the token text.
pub fn frame(flags: u8, now_secs: u16, text: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend(now_secs.to_le_bytes());
    out.extend_from_slice(text);
    out
}

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let [flags, lo, hi, text @ ..] = data else {
        return;
    };
    let now = t(i64::from(u16::from_le_bytes([*lo, *hi])));
    let keys = keys();
    signing_key_round_trip(text);
    let Ok(text) = std::str::from_utf8(text) else {
        // Not text: it must be refused, never read.
        let lossy = String::from_utf8_lossy(text);
        check_verify(&keys, &lossy, now);
        return;
    };
    check_verify(&keys, text, now);
    if flags & RESIGN != 0 {
        check_resigned(&keys, text, now);
    }
}

/// What a verified token must satisfy.
fn check_verify(keys: &KeySet, text: &str, now: Timestamp) {
    let peeked = Claims::peek(text);
    let Ok(claims) = keys.verify(text, now) else {
        return;
    };
    assert_eq!(
        peeked,
        Ok(claims),
        "a token verified but peek reads other claims"
    );
    assert!(now < claims.expires_at, "an expired token verified");
    let signer = signer(claims.key_id)
        .unwrap_or_else(|| panic!("a token of unknown key {} verified", claims.key_id));
    let ttl = claims
        .expires_at
        .as_micros()
        .checked_sub(claims.issued_at.as_micros());
    if let Some(ttl) = ttl.filter(|ttl| *ttl >= 0) {
        let canonical = signer.issue(claims.node, claims.issued_at, ttl);
        assert_eq!(
            canonical.as_str(),
            text,
            "a token verified that is not the canonical token of its claims"
        );
    }
}

/// Signs the claims of `text` with the key they name and checks `verify`
/// against the model.
fn check_resigned(keys: &KeySet, text: &str, now: Timestamp) {
    let Ok(claims) = Claims::peek(text) else {
        return;
    };
    let Some(signer) = signer(claims.key_id) else {
        assert!(
            matches!(keys.verify(text, now), Err(TokenError::UnknownKey { key_id }) if key_id == claims.key_id),
            "a token of unknown key {} was not refused as such",
            claims.key_id
        );
        return;
    };
    let ttl = claims
        .expires_at
        .as_micros()
        .checked_sub(claims.issued_at.as_micros());
    let Some(ttl) = ttl.filter(|ttl| *ttl >= 0) else {
        return;
    };
    let token = signer.issue(claims.node, claims.issued_at, ttl);
    assert_eq!(
        Claims::peek(token.as_str()),
        Ok(claims),
        "an issued token does not read back as its claims"
    );
    let (created, retired) = match claims.key_id {
        1 => (t(0), Some(rotated_at())),
        _ => (rotated_at(), None),
    };
    let expected = if claims.issued_at < created || retired.is_some_and(|r| claims.issued_at > r) {
        Err("not_yet_valid")
    } else if now >= claims.expires_at {
        Err("expired")
    } else {
        Ok(claims)
    };
    let got = keys.verify(token.as_str(), now).map_err(|e| e.reason());
    assert_eq!(
        got, expected,
        "verify of a token signed by key {} (issued {}, expires {}) at {now}",
        claims.key_id, claims.issued_at, claims.expires_at
    );
}

/// A stored signing key that reads back writes the same bytes.
fn signing_key_round_trip(bytes: &[u8]) {
    if let Ok(key) = SigningKey::from_bytes(bytes) {
        assert_eq!(
            key.to_bytes(),
            bytes,
            "a signing key read from bytes writes other bytes"
        );
    }
}
