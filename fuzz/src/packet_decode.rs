//! Target `packet_decode`: the packet codec on outside bytes.
//!
//! Input: a [`crate::fixup`] flags byte, then an envelope. Runs
//! [`codec::decode_envelope`] with the default limits, [`codec::decode_body`]
//! when the body hash matches, and [`json_view::envelope_to_json`], and
//! checks that
//! - nothing panics;
//! - a decoded envelope encodes and decodes back to itself;
//! - a decoded body encodes (every codec) and decodes back to the same
//!   changes;
//! - decoding never holds more than [`ALLOC_SLACK`] bytes plus
//!   [`ALLOC_FACTOR`] times the input and the decompressed body it really
//!   produced: a header that announces a huge `body_raw_len` must not make
//!   the decoder reserve it.

use sync_core::codec::{self, Limits};
use sync_core::json_view;
use sync_core::packet::{Change, Envelope, PacketHeader};
use sync_core::{Codec, EntityRegistry};

use crate::alloc_track;
use crate::fixup;

/// Bytes a decode may hold whatever its input (buffers, tables of zstd and
/// flate2, the JSON view).
pub const ALLOC_SLACK: usize = 2 << 20;
/// How many times the input (plus the decompressed body produced) a decode
/// may hold on top of [`ALLOC_SLACK`].
pub const ALLOC_FACTOR: usize = 16;

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let bytes = fixup::prepare(data);
    let limits = Limits::default();
    let (produced, peak) = alloc_track::peak_during(|| decode(&bytes, &limits));
    let allowed = ALLOC_SLACK + ALLOC_FACTOR * (bytes.len() + produced);
    assert!(
        peak <= allowed,
        "decoding {} input bytes (decompressed body produced: {produced} bytes) held {peak} bytes at its peak, over the bound of {allowed}",
        bytes.len()
    );
    if let Ok(Envelope::Packet(p)) = codec::decode_envelope(&bytes, &limits) {
        if codec::sha256(&p.body) == p.header.body_sha256 {
            if let Ok(changes) = codec::decode_body(&p.header, &p.body, &limits) {
                body_round_trip(&p.header, &changes, &limits);
            }
        }
    }
}

/// Decodes everything decodable; returns the decompressed body length
/// produced (0 when the body was refused).
fn decode(bytes: &[u8], limits: &Limits) -> usize {
    if let Ok(envelope) = codec::decode_envelope(bytes, limits) {
        envelope_round_trip(&envelope, limits);
    }
    let produced = decoded_body_len(bytes, limits);
    if let Ok(json) = json_view::envelope_to_json(bytes, limits) {
        assert!(
            serde_json::to_string(&json).is_ok(),
            "the JSON view renders"
        );
    }
    produced
}

/// The decompressed length of `bytes`' body if the codec accepts the whole
/// packet (hash included), else 0: what a receiver may legitimately hold
/// on top of the input.
pub fn decoded_body_len(bytes: &[u8], limits: &Limits) -> usize {
    match codec::decode_envelope(bytes, limits) {
        Ok(Envelope::Packet(p))
            if codec::sha256(&p.body) == p.header.body_sha256
                && codec::decode_body(&p.header, &p.body, limits).is_ok() =>
        {
            usize::try_from(p.header.body_raw_len).unwrap_or(usize::MAX)
        }
        _ => 0,
    }
}

fn envelope_round_trip(envelope: &Envelope, limits: &Limits) {
    let encoded = codec::encode_envelope(envelope);
    let again = codec::decode_envelope(&encoded, limits)
        .unwrap_or_else(|e| panic!("a decoded envelope re-encodes to bytes that fail: {e}"));
    assert_eq!(
        &again, envelope,
        "a decoded envelope does not survive encode and decode"
    );
}

fn body_round_trip(header: &PacketHeader, changes: &[Change], limits: &Limits) {
    let registry = EntityRegistry::new();
    for codec_choice in [Codec::None, Codec::Zstd, Codec::Gzip] {
        let (body, raw_len) = codec::encode_body(changes, &registry, codec_choice);
        let rebuilt = PacketHeader {
            codec: codec_choice,
            body_sha256: codec::sha256(&body),
            body_raw_len: raw_len,
            ..header.clone()
        };
        let again = codec::decode_body(&rebuilt, &body, limits).unwrap_or_else(|e| {
            panic!("decoded changes re-encode ({codec_choice:?}) to a body that fails: {e}")
        });
        // Debug, not PartialEq: a NaN float must compare equal to itself.
        assert_eq!(
            format!("{again:?}"),
            format!("{changes:?}"),
            "decoded changes do not survive encode and decode ({codec_choice:?}); header {header:?}"
        );
    }
}
