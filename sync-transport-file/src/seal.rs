//! Sealing an envelope into files and opening them again: zstd, AES-256-GCM
//! with a fresh random nonce per file and the header as associated data,
//! parts, and every check an opened file must pass.

use std::io::Read;

use bytes::Bytes;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{NodeId, Timestamp};

use crate::error::FileRejection;
use crate::format::{FORMAT_VERSION, FileHeader, FileKind, HeaderDefect, MAX_PARTS, NONCE_LEN};
use crate::key::PairKey;

/// Length of the AES-GCM tag.
const TAG_LEN: usize = 16;
/// Room kept for the header when a file's size is capped.
pub(crate) const HEADER_ROOM: u64 = 1024;
/// The smallest cap on a file's size.
pub const MIN_FILE_BYTES: u64 = 2048;

/// One sealed file, ready to write.
#[derive(Clone, Debug)]
pub struct SealedFile {
    /// Its header.
    pub header: FileHeader,
    /// Its whole content: header and sealed bytes.
    pub bytes: Vec<u8>,
}

/// Why sealing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SealFailure {
    /// The system random source (or the cipher) failed.
    Random,
    /// More than [`MAX_PARTS`] parts would be needed.
    TooManyParts,
}

impl From<ring::error::Unspecified> for SealFailure {
    fn from(_: ring::error::Unspecified) -> Self {
        SealFailure::Random
    }
}

/// What to seal and for whom.
pub(crate) struct SealRequest<'a> {
    pub envelope: &'a [u8],
    pub sender: NodeId,
    pub recipient: NodeId,
    pub key: &'a PairKey,
    pub max_file_bytes: u64,
    pub created: Timestamp,
}

/// Seals an envelope into one file, or into numbered parts when the sealed
/// bytes would make a file larger than `max_file_bytes`.
pub(crate) fn seal(request: &SealRequest<'_>) -> Result<Vec<SealedFile>, SealFailure> {
    let rng = SystemRandom::new();
    let compressed = compress(request.envelope);
    let chunk = usize::try_from(
        request
            .max_file_bytes
            .max(MIN_FILE_BYTES)
            .saturating_sub(HEADER_ROOM + TAG_LEN as u64),
    )
    .unwrap_or(usize::MAX);
    let chunks: Vec<&[u8]> = if compressed.is_empty() {
        vec![&[][..]]
    } else {
        compressed.chunks(chunk).collect()
    };
    let parts = u32::try_from(chunks.len())
        .ok()
        .filter(|&n| n <= MAX_PARTS)
        .ok_or(SealFailure::TooManyParts)?;
    let mut export_id = [0u8; 16];
    rng.fill(&mut export_id)?;
    let template = header_template(request, export_id, parts);
    let key = aead_key(request.key)?;
    let mut files = Vec::with_capacity(chunks.len());
    for (part, plain) in (1..).zip(chunks) {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce)?;
        let header = FileHeader {
            part,
            nonce,
            sealed_bytes: (plain.len() + TAG_LEN) as u64,
            ..template.clone()
        };
        let header_bytes = header.to_bytes();
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&header_bytes),
            &mut sealed,
        )?;
        let mut bytes = header_bytes;
        bytes.extend(sealed);
        files.push(SealedFile { header, bytes });
    }
    Ok(files)
}

/// The header fields shared by every part, read from the envelope when it
/// decodes (a packet or a refusal), else marked opaque.
fn header_template(request: &SealRequest<'_>, export_id: [u8; 16], parts: u32) -> FileHeader {
    let mut header = FileHeader {
        format_version: FORMAT_VERSION,
        kind: FileKind::Opaque,
        sender: request.sender,
        recipient: request.recipient,
        packet_no: 0,
        ack: 0,
        schema_version: "-".into(),
        entity_count: 0,
        part: 1,
        parts,
        export_id,
        created: request.created,
        plain_bytes: request.envelope.len() as u64,
        sealed_bytes: 0,
        key_id: request.key.key_id(),
        nonce: [0; NONCE_LEN],
    };
    let limits = Limits {
        max_envelope_bytes: u64::MAX,
        ..Limits::default()
    };
    match codec::decode_envelope(request.envelope, &limits) {
        Ok(Envelope::Error(_)) => header.kind = FileKind::Refusal,
        Ok(envelope) => {
            if let Some(summary) = PacketSummary::of(&envelope) {
                header.kind = FileKind::Packet;
                header.packet_no = summary.packet_no;
                header.ack = summary.ack;
                header.entity_count = summary.entity_count;
                if !summary.schema_version.is_empty() {
                    header.schema_version = summary.schema_version.to_owned();
                }
            }
        }
        Err(_) => {}
    }
    header
}

/// What a file header repeats of the packets it seals: for a train, the
/// first packet's pair, acknowledgement and schema, the last one's number,
/// and the changes of all.
struct PacketSummary<'a> {
    sender: sync_core::NodeId,
    recipient: sync_core::NodeId,
    packet_no: u64,
    ack: u64,
    entity_count: u32,
    schema_version: &'a str,
}

impl<'a> PacketSummary<'a> {
    /// `None` for a refusal, or a schema version too long for a header.
    fn of(envelope: &'a Envelope) -> Option<Self> {
        let packets = envelope.packets();
        let (first, last) = (packets.first()?, packets.last()?);
        let h = &first.header;
        (h.schema_version.len() <= 64).then(|| PacketSummary {
            sender: h.sender,
            recipient: h.recipient,
            packet_no: last.header.packet_no,
            ack: h.ack_packet_no,
            entity_count: packets
                .iter()
                .fold(0u32, |sum, p| sum.saturating_add(p.header.entity_count)),
            schema_version: &h.schema_version,
        })
    }
}

/// One verified part of an export.
#[derive(Clone, Debug)]
pub(crate) struct OpenedPart {
    pub header: FileHeader,
    pub plain: Vec<u8>,
}

/// Reads a header and maps its defects to rejections.
pub(crate) fn read_header(bytes: &[u8]) -> Result<(FileHeader, usize), FileRejection> {
    FileHeader::parse(bytes).map_err(|defect| match defect {
        HeaderDefect::NotASyncFile => FileRejection::NotASyncFile,
        HeaderDefect::UnknownVersion(found) => FileRejection::UnknownVersion {
            found,
            supported: FORMAT_VERSION,
        },
        HeaderDefect::Truncated => FileRejection::Truncated {
            expected: None,
            found: bytes.len() as u64,
        },
        HeaderDefect::Malformed(detail) => FileRejection::MalformedHeader { detail },
    })
}

/// Checks everything that can be checked without the key: format, size,
/// recipient.
pub(crate) fn check_unsealed(
    bytes: &[u8],
    local: NodeId,
    limits: &Limits,
) -> Result<(FileHeader, usize), FileRejection> {
    let (header, header_len) = read_header(bytes)?;
    if header.recipient != local {
        return Err(FileRejection::WrongRecipient {
            recipient: header.recipient,
            local,
        });
    }
    if header.plain_bytes > limits.max_envelope_bytes {
        return Err(FileRejection::TooLarge {
            size: header.plain_bytes,
            limit: limits.max_envelope_bytes,
        });
    }
    let expected = header_len as u64 + header.sealed_bytes;
    let found = bytes.len() as u64;
    if found < expected {
        return Err(FileRejection::Truncated {
            expected: Some(expected),
            found,
        });
    }
    if found > expected {
        return Err(FileRejection::Tampered {
            detail: format!("{} bytes follow its sealed body", found - expected),
        });
    }
    if header.sealed_bytes < TAG_LEN as u64 {
        return Err(FileRejection::MalformedHeader {
            detail: "its sealed body is shorter than an authentication tag".into(),
        });
    }
    Ok((header, header_len))
}

/// Opens one file's bytes with `key`: every check of [`check_unsealed`],
/// then the key's fingerprint, then the seal (which authenticates the
/// header).
pub(crate) fn open_part(
    bytes: &[u8],
    local: NodeId,
    key: &PairKey,
    limits: &Limits,
) -> Result<OpenedPart, FileRejection> {
    let (header, header_len) = check_unsealed(bytes, local, limits)?;
    if header.key_id != key.key_id() {
        return Err(FileRejection::WrongKey {
            sender: header.sender,
        });
    }
    let tampered = || FileRejection::Tampered {
        detail: "its seal does not verify".into(),
    };
    let key = aead_key(key).map_err(|_| tampered())?;
    let mut sealed = bytes[header_len..].to_vec();
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(header.nonce),
            Aad::from(&bytes[..header_len]),
            &mut sealed,
        )
        .map_err(|_| tampered())?
        .len();
    sealed.truncate(plain_len);
    Ok(OpenedPart {
        header,
        plain: sealed,
    })
}

/// Joins the verified parts of one export (all present, in any order),
/// decompresses and cross-checks the envelope against the header.
pub(crate) fn assemble(mut parts: Vec<OpenedPart>) -> Result<(FileHeader, Bytes), FileRejection> {
    parts.sort_by_key(|p| p.header.part);
    let first = parts
        .first()
        .map(|p| p.header.clone())
        .ok_or(FileRejection::MissingParts {
            missing: vec![1],
            parts: 1,
        })?;
    let missing: Vec<u32> = (1..=first.parts)
        .filter(|n| parts.binary_search_by_key(n, |p| p.header.part).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(FileRejection::MissingParts {
            missing,
            parts: first.parts,
        });
    }
    for part in &parts {
        if !same_export(&part.header, &first) {
            return Err(FileRejection::Tampered {
                detail: format!("its part {} disagrees with part 1", part.header.part),
            });
        }
    }
    let compressed: Vec<u8> = parts.into_iter().flat_map(|p| p.plain).collect();
    let envelope = decompress(&compressed, first.plain_bytes)?;
    cross_check(&first, &envelope)?;
    Ok((first, Bytes::from(envelope)))
}

/// Parts of one export agree on everything but their number, nonce and size.
fn same_export(a: &FileHeader, b: &FileHeader) -> bool {
    let normal = |h: &FileHeader| FileHeader {
        part: 1,
        nonce: [0; NONCE_LEN],
        sealed_bytes: 0,
        ..h.clone()
    };
    normal(a) == normal(b)
}

/// The envelope must say what the header says. Only a holder of the key
/// could write a file where it does not.
fn cross_check(header: &FileHeader, envelope: &[u8]) -> Result<(), FileRejection> {
    let limits = Limits {
        max_envelope_bytes: u64::MAX,
        ..Limits::default()
    };
    let decoded = codec::decode_envelope(envelope, &limits);
    let consistent = match (header.kind, &decoded) {
        (FileKind::Packet, Ok(envelope)) => PacketSummary::of(envelope).is_some_and(|h| {
            h.sender == header.sender
                && h.recipient == header.recipient
                && h.packet_no == header.packet_no
                && h.ack == header.ack
                && h.entity_count == header.entity_count
                && (h.schema_version == header.schema_version
                    || (h.schema_version.is_empty() && header.schema_version == "-"))
        }),
        (FileKind::Refusal, Ok(Envelope::Error(_))) => true,
        (FileKind::Opaque, _) => true,
        _ => false,
    };
    if consistent {
        Ok(())
    } else {
        Err(FileRejection::Tampered {
            detail: "its sealed packet does not match its header".into(),
        })
    }
}

fn aead_key(key: &PairKey) -> Result<LessSafeKey, ring::error::Unspecified> {
    Ok(LessSafeKey::new(UnboundKey::new(
        &AES_256_GCM,
        key.secret(),
    )?))
}

fn compress(raw: &[u8]) -> Vec<u8> {
    // Compressing an in-memory buffer fails only when allocation fails; the
    // raw bytes are then kept, which the reader refuses as undecodable
    // rather than misreading them.
    zstd::bulk::compress(raw, 1).unwrap_or_else(|_| raw.to_vec())
}

/// Decompresses exactly `expected` bytes, reserving memory only as output
/// arrives.
fn decompress(compressed: &[u8], expected: u64) -> Result<Vec<u8>, FileRejection> {
    let damaged = |detail: String| FileRejection::Tampered { detail };
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|e| damaged(format!("its content does not decompress: {e}")))?;
    let mut out = Vec::with_capacity(usize::try_from(expected.min(1 << 20)).unwrap_or(0));
    decoder
        .take(expected.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| damaged(format!("its content does not decompress: {e}")))?;
    if out.len() as u64 != expected {
        return Err(damaged(format!(
            "its content decompresses to {} bytes, its header says {expected}",
            out.len()
        )));
    }
    Ok(out)
}
