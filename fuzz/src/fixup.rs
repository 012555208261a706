//! Input framing for the byte-level targets: a flags byte, then the
//! envelope. The flags ask the target to repair the SHA-256 fields a mutated
//! envelope no longer matches, so the fuzzer reaches the code behind the hash
//! checks (header fields, decompression, body decoding, apply) instead of
//! stopping at `HeaderHashMismatch` every time, and can inflate the
//! announced body length ([`SCALE_RAW_LEN`]). With no flags the bytes go
//! through unchanged, which keeps the hash checks themselves fuzzed.

use prost::Message;
use sync_core::codec::sha256;
use sync_proto::v1 as pb;

/// Recompute `header_sha256` over the (possibly mutated) header bytes.
pub const FIX_HEADER_HASH: u8 = 1;
/// Recompute the header's `body_sha256` over the body (re-encodes the
/// header when it decodes).
pub const FIX_BODY_HASH: u8 = 2;
/// Both repairs: what the generated seeds use.
pub const FIX_ALL: u8 = FIX_HEADER_HASH | FIX_BODY_HASH;
/// Multiply the header's `body_raw_len` by `4^(flags >> 4)` before the
/// repairs: one flipped bit announces a body up to 2^30 times larger, which
/// byte mutations of a varint inside a length-delimited header rarely
/// reach.
pub const SCALE_RAW_LEN: u8 = 4;

/// Splits `data` into its flags and envelope, and applies the repairs the
/// flags ask for. Bytes that are not a protobuf envelope stay as they are.
pub fn prepare(data: &[u8]) -> Vec<u8> {
    let Some((&flags, envelope)) = data.split_first() else {
        return Vec::new();
    };
    repair(flags, envelope).unwrap_or_else(|| envelope.to_vec())
}

/// Frames an envelope as a seed: the flags byte, then the bytes.
pub fn frame(flags: u8, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.len() + 1);
    out.push(flags);
    out.extend_from_slice(envelope);
    out
}

fn repair(flags: u8, bytes: &[u8]) -> Option<Vec<u8>> {
    if flags & (FIX_ALL | SCALE_RAW_LEN) == 0 {
        return None;
    }
    let mut envelope = pb::Envelope::decode(bytes).ok()?;
    let Some(pb::envelope::Kind::Packet(packet)) = envelope.kind.as_mut() else {
        return None;
    };
    if flags & (FIX_BODY_HASH | SCALE_RAW_LEN) != 0 {
        if let Ok(mut header) = pb::PacketHeader::decode(packet.header.as_slice()) {
            if flags & SCALE_RAW_LEN != 0 {
                let shift = 2 * u32::from(flags >> 4);
                header.body_raw_len = header.body_raw_len.saturating_mul(1 << shift);
            }
            if flags & FIX_BODY_HASH != 0 {
                header.body_sha256 = sha256(&packet.body).to_vec();
            }
            packet.header = header.encode_to_vec();
        }
    }
    if flags & FIX_HEADER_HASH != 0 {
        packet.header_sha256 = sha256(&packet.header).to_vec();
    }
    Some(envelope.encode_to_vec())
}

/// Splits the input of a multi-packet target into packets: each packet is
/// a little-endian `u16` length and that many bytes; a length past the end
/// takes what is left. At most `max` packets.
pub fn split_frames(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < max {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// Joins packets in the [`split_frames`] format.
///
/// # Panics
///
/// When a packet is longer than `u16::MAX` bytes (seeds are small).
pub fn join_frames(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        let len = u16::try_from(p.len()).expect("a seed packet fits in 64 KiB");
        out.extend(len.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncate() {
        let packets = vec![b"abc".to_vec(), Vec::new(), b"z".to_vec()];
        let joined = join_frames(&packets);
        assert_eq!(split_frames(&joined, 10), vec![&b"abc"[..], b"", b"z"]);
        assert_eq!(split_frames(&[5, 0, 1, 2], 10), vec![&[1u8, 2][..]]);
        assert_eq!(split_frames(&joined, 1).len(), 1);
    }

    #[test]
    fn garbage_passes_through_unchanged() {
        assert_eq!(prepare(&[FIX_ALL, 0xff, 0xff]), vec![0xff, 0xff]);
        assert_eq!(prepare(&[0, 1, 2]), vec![1, 2]);
        assert!(prepare(&[]).is_empty());
    }
}
