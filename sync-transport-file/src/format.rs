//! The file format: a readable text header, then the sealed body.
//!
//! ```text
//! SYNCPLAN-FILE 1
//! kind: packet
//! sender: 00000000-0000-0000-0000-000000002000
//! recipient: 00000000-0000-0000-0000-000000001000
//! packet-no: 12
//! ack: 7
//! schema-version: 1.0.0
//! entities: 340
//! part: 1/3
//! export-id: 5f0c3a9e1b7d42c6a08e9f1d2c3b4a59
//! created: 2025-12-12T10:30:00.000000Z
//! compression: zstd
//! plain-bytes: 48211
//! sealed-bytes: 16400
//! key-id: 8c1f0e2d3b4a5968
//! nonce: 0123456789abcdef01234567
//!
//! <sealed-bytes of AES-256-GCM ciphertext and tag>
//! ```
//!
//! The header ends at the first empty line. Its exact bytes are the
//! associated data of the seal, so changing any of them makes the file fail
//! verification. Every header field is written in one canonical form and a
//! header that is not canonical is refused. The sealed bytes of all parts of
//! an export, in part order, are the zstd-compressed envelope (the packet as
//! the engine encoded it) of `plain-bytes` bytes.

use std::fmt;

use sync_core::{NodeId, Timestamp, Uuid};

use crate::key::{KeyId, decode_hex, encode_hex};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File names of sealed files end with this.
pub const FILE_EXTENSION: &str = "syncpkt";
/// The first bytes of every sealed file.
pub(crate) const MAGIC: &str = "SYNCPLAN-FILE ";
/// The most bytes a header may take.
pub(crate) const MAX_HEADER_BYTES: usize = 1024;
/// Length of an AES-256-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Most parts one export may be split into.
pub(crate) const MAX_PARTS: u32 = 9_999;
const MAX_SCHEMA_LEN: usize = 64;

/// What a file carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A packet: changes and an acknowledgement.
    Packet,
    /// A refusal: the peer explains why it refused a packet.
    Refusal,
    /// Bytes that are not a valid envelope, carried unchanged (a transport
    /// passes whatever it is given; the receiving engine refuses them).
    Opaque,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Packet => "packet",
            FileKind::Refusal => "refusal",
            FileKind::Opaque => "opaque",
        }
    }

    fn parse(text: &str) -> Option<FileKind> {
        match text {
            "packet" => Some(FileKind::Packet),
            "refusal" => Some(FileKind::Refusal),
            "opaque" => Some(FileKind::Opaque),
            _ => None,
        }
    }
}

/// The readable header of a sealed file. Read it without the key with
/// [`crate::inspect`]; it is authenticated only once the file is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// File format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// What the file carries.
    pub kind: FileKind,
    /// Who wrote it.
    pub sender: NodeId,
    /// For whom.
    pub recipient: NodeId,
    /// The packet's number (0 for a refusal or opaque bytes).
    pub packet_no: u64,
    /// The last packet the sender applied from the recipient.
    pub ack: u64,
    /// The sender's schema version (`-` when the file holds no packet).
    pub schema_version: String,
    /// Entity changes in the packet.
    pub entity_count: u32,
    /// This file's part number, from 1.
    pub part: u32,
    /// How many parts the export has.
    pub parts: u32,
    /// Random id shared by all parts of one export.
    pub export_id: [u8; 16],
    /// When the file was written (sender's clock).
    pub created: Timestamp,
    /// Length of the whole export's envelope before compression.
    pub plain_bytes: u64,
    /// Length of this file's sealed bytes (ciphertext and tag).
    pub sealed_bytes: u64,
    /// Fingerprint of the pair key it was sealed with.
    pub key_id: KeyId,
    /// This part's nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// Why a header could not be read (see [`crate::FileRejection`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderDefect {
    NotASyncFile,
    UnknownVersion(String),
    /// The file ends inside the header.
    Truncated,
    Malformed(String),
}

impl FileHeader {
    /// The header's bytes as written (the seal's associated data), ending in
    /// the empty line.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// The file name for this part: packet number, kind, export id and part,
    /// so that a folder listing sorts in packet order.
    pub fn file_name(&self) -> String {
        format!(
            "{:010}-{}-{}-{:04}of{:04}.{FILE_EXTENSION}",
            self.packet_no,
            self.kind.name(),
            encode_hex(&self.export_id),
            self.part,
            self.parts
        )
    }

    /// The export id as hex.
    pub fn export_id_hex(&self) -> String {
        encode_hex(&self.export_id)
    }

    /// Reads a header from the start of `bytes`; returns it and its length.
    pub(crate) fn parse(bytes: &[u8]) -> Result<(FileHeader, usize), HeaderDefect> {
        let magic = MAGIC.as_bytes();
        let probe = magic.len().min(bytes.len());
        if bytes[..probe] != magic[..probe] {
            return Err(HeaderDefect::NotASyncFile);
        }
        let version_end = bytes.iter().position(|&b| b == b'\n');
        let Some(version_end) = version_end.filter(|&end| end >= magic.len()) else {
            return Err(if bytes.len() < MAX_HEADER_BYTES {
                HeaderDefect::Truncated
            } else {
                HeaderDefect::NotASyncFile
            });
        };
        let version = String::from_utf8_lossy(&bytes[magic.len()..version_end]).into_owned();
        if version != FORMAT_VERSION.to_string() {
            return Err(HeaderDefect::UnknownVersion(version));
        }
        let window = &bytes[..bytes.len().min(MAX_HEADER_BYTES)];
        let Some(end) = window.windows(2).position(|w| w == b"\n\n").map(|i| i + 2) else {
            return Err(if bytes.len() < MAX_HEADER_BYTES {
                HeaderDefect::Truncated
            } else {
                HeaderDefect::Malformed("it has no end within 1024 bytes".into())
            });
        };
        let text = std::str::from_utf8(&bytes[..end])
            .map_err(|_| HeaderDefect::Malformed("it is not UTF-8 text".into()))?;
        let header = parse_fields(text).map_err(HeaderDefect::Malformed)?;
        if header.to_string() != text {
            return Err(HeaderDefect::Malformed(
                "it is not in canonical form".into(),
            ));
        }
        Ok((header, end))
    }
}

impl fmt::Display for FileHeader {
    /// The header exactly as written in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{MAGIC}{}", self.format_version)?;
        writeln!(f, "kind: {}", self.kind.name())?;
        writeln!(f, "sender: {}", self.sender)?;
        writeln!(f, "recipient: {}", self.recipient)?;
        writeln!(f, "packet-no: {}", self.packet_no)?;
        writeln!(f, "ack: {}", self.ack)?;
        writeln!(f, "schema-version: {}", self.schema_version)?;
        writeln!(f, "entities: {}", self.entity_count)?;
        writeln!(f, "part: {}/{}", self.part, self.parts)?;
        writeln!(f, "export-id: {}", encode_hex(&self.export_id))?;
        writeln!(f, "created: {}", self.created)?;
        writeln!(f, "compression: zstd")?;
        writeln!(f, "plain-bytes: {}", self.plain_bytes)?;
        writeln!(f, "sealed-bytes: {}", self.sealed_bytes)?;
        writeln!(f, "key-id: {}", self.key_id)?;
        writeln!(f, "nonce: {}", encode_hex(&self.nonce))?;
        writeln!(f)
    }
}

/// Reads the fields after the magic line, in their fixed order.
fn parse_fields(text: &str) -> Result<FileHeader, String> {
    let mut lines = text.lines().skip(1);
    let mut field = |name: &str| -> Result<&str, String> {
        let line = lines
            .next()
            .ok_or_else(|| format!("the `{name}` line is missing"))?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(": "))
            .ok_or_else(|| format!("the `{name}` line is missing or damaged"))
    };
    let kind = field("kind")?;
    let kind = FileKind::parse(kind).ok_or_else(|| format!("unknown kind `{kind}`"))?;
    let sender = node_id(field("sender")?, "sender")?;
    let recipient = node_id(field("recipient")?, "recipient")?;
    let packet_no = number(field("packet-no")?, "packet-no")?;
    let ack = number(field("ack")?, "ack")?;
    let schema_version = field("schema-version")?.to_owned();
    if schema_version.is_empty() || schema_version.len() > MAX_SCHEMA_LEN {
        return Err("the schema version is empty or too long".into());
    }
    let entity_count = small(number(field("entities")?, "entities")?, "entities")?;
    let (part, parts) = part(field("part")?)?;
    let export_id = hex_array(field("export-id")?, "export-id")?;
    let created = field("created")?;
    let created =
        Timestamp::parse_rfc3339(created).ok_or_else(|| format!("bad created time `{created}`"))?;
    let compression = field("compression")?;
    if compression != "zstd" {
        return Err(format!("unknown compression `{compression}`"));
    }
    let plain_bytes = number(field("plain-bytes")?, "plain-bytes")?;
    let sealed_bytes = number(field("sealed-bytes")?, "sealed-bytes")?;
    let key_id = KeyId(hex_array(field("key-id")?, "key-id")?);
    let nonce = hex_array(field("nonce")?, "nonce")?;
    Ok(FileHeader {
        format_version: FORMAT_VERSION,
        kind,
        sender,
        recipient,
        packet_no,
        ack,
        schema_version,
        entity_count,
        part,
        parts,
        export_id,
        created,
        plain_bytes,
        sealed_bytes,
        key_id,
        nonce,
    })
}

fn node_id(text: &str, name: &str) -> Result<NodeId, String> {
    Uuid::parse_str(text)
        .map(NodeId)
        .map_err(|_| format!("the {name} is not a node id"))
}

fn number(text: &str, name: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("`{name}` is not a number"))
}

fn small(value: u64, name: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("`{name}` is out of range"))
}

fn part(text: &str) -> Result<(u32, u32), String> {
    let (part, parts) = text
        .split_once('/')
        .ok_or_else(|| "the part is not `n/count`".to_owned())?;
    let part = small(number(part, "part")?, "part")?;
    let parts = small(number(parts, "part")?, "part")?;
    if part == 0 || part > parts || parts > MAX_PARTS {
        return Err(format!("part {part} of {parts} is out of range"));
    }
    Ok((part, parts))
}

fn hex_array<const N: usize>(text: &str, name: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    decode_hex(text, &mut out).ok_or_else(|| format!("`{name}` is not {} hex digits", N * 2))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FileHeader {
        FileHeader {
            format_version: FORMAT_VERSION,
            kind: FileKind::Packet,
            sender: NodeId(Uuid::from_u128(1)),
            recipient: NodeId(Uuid::from_u128(2)),
            packet_no: 12,
            ack: 7,
            schema_version: "1.0.0".into(),
            entity_count: 340,
            part: 1,
            parts: 3,
            export_id: [7; 16],
            created: Timestamp::from_secs(1_765_535_400),
            plain_bytes: 1234,
            sealed_bytes: 99,
            key_id: KeyId([9; 8]),
            nonce: [3; NONCE_LEN],
        }
    }

    #[test]
    fn header_round_trips() {
        let bytes = header().to_bytes();
        let (parsed, len) = FileHeader::parse(&bytes).expect("parses");
        assert_eq!(parsed, header());
        assert_eq!(len, bytes.len());
    }

    #[test]
    fn a_cut_header_is_truncated_and_another_version_is_named() {
        let bytes = header().to_bytes();
        assert_eq!(
            FileHeader::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            HeaderDefect::Truncated
        );
        let other = String::from_utf8(bytes)
            .expect("text")
            .replacen("FILE 1", "FILE 2", 1);
        assert_eq!(
            FileHeader::parse(other.as_bytes()).unwrap_err(),
            HeaderDefect::UnknownVersion("2".into())
        );
    }
}
