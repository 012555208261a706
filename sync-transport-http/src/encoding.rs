//! HTTP content codings: `Content-Encoding` / `Accept-Encoding` with zstd
//! and gzip. Decoding is bounded: a small body that inflates past the limit
//! is refused, not allocated.

use std::cell::RefCell;
use std::io::{Read, Write};

thread_local! {
    /// zstd contexts kept per thread: making one per message costs more than
    /// compressing a small envelope.
    static ZSTD_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(1).ok());
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
}

fn zstd_compress(raw: &[u8]) -> Vec<u8> {
    let reused =
        ZSTD_COMPRESSOR.with(|c| c.borrow_mut().as_mut().and_then(|c| c.compress(raw).ok()));
    // Compressing an in-memory buffer fails only when allocation does.
    reused.unwrap_or_else(|| zstd::bulk::compress(raw, 1).unwrap_or_else(|_| raw.to_vec()))
}

/// Decodes a zstd body whose frame names its size (what this crate and
/// most encoders write) with a kept context; `None` to take the streaming
/// path (no size, several frames, damage: it reports the error).
fn zstd_decompress_sized(body: &[u8], limit: usize) -> Option<Result<Vec<u8>, CodingError>> {
    let size = zstd::zstd_safe::get_frame_content_size(body).ok()??;
    if size > limit as u64 {
        return Some(Err(CodingError::TooLarge { limit }));
    }
    let size = usize::try_from(size).ok()?;
    ZSTD_DECOMPRESSOR
        .with(|d| {
            d.borrow_mut()
                .as_mut()
                .and_then(|d| d.decompress(body, size).ok())
        })
        .map(Ok)
}

/// A content coding this crate speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContentCoding {
    /// No coding.
    #[default]
    Identity,
    /// zstd (fast; the default a client asks for).
    Zstd,
    /// gzip, for peers that cannot speak zstd.
    Gzip,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodingError {
    /// A coding other than identity, zstd or gzip.
    #[error(
        "the body is encoded as {0:?}, which this hub does not speak; send it uncompressed, zstd or gzip"
    )]
    Unsupported(String),
    /// The decoded body would exceed the limit.
    #[error(
        "the body decompresses to more than {limit} bytes, over the limit; send smaller packets"
    )]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The compressed stream is damaged.
    #[error("the {coding} body could not be decompressed ({detail}); it was damaged in transit")]
    Damaged {
        /// Which coding.
        coding: &'static str,
        /// Decoder detail.
        detail: String,
    },
}

impl ContentCoding {
    /// The header token (`None` for identity: no header is sent).
    pub fn token(self) -> Option<&'static str> {
        match self {
            ContentCoding::Identity => None,
            ContentCoding::Zstd => Some("zstd"),
            ContentCoding::Gzip => Some("gzip"),
        }
    }

    /// Reads a `Content-Encoding` header value (absent: identity).
    pub fn from_content_encoding(value: Option<&str>) -> Result<Self, CodingError> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(ContentCoding::Identity),
            Some(v) if v.is_empty() || v == "identity" => Ok(ContentCoding::Identity),
            Some(v) if v == "zstd" => Ok(ContentCoding::Zstd),
            Some(v) if v == "gzip" || v == "x-gzip" => Ok(ContentCoding::Gzip),
            Some(other) => Err(CodingError::Unsupported(other)),
        }
    }

    /// The coding to answer with for an `Accept-Encoding` header: zstd
    /// when accepted, else gzip when accepted, else identity. Codings with
    /// `q=0` are not accepted.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return ContentCoding::Identity;
        };
        let mut zstd = false;
        let mut gzip = false;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            match name.as_str() {
                "zstd" => zstd = true,
                "gzip" | "x-gzip" => gzip = true,
                "*" => {
                    zstd = true;
                    gzip = true;
                }
                _ => {}
            }
        }
        if zstd {
            ContentCoding::Zstd
        } else if gzip {
            ContentCoding::Gzip
        } else {
            ContentCoding::Identity
        }
    }

    /// Encodes `raw`.
    pub fn encode(self, raw: &[u8]) -> Vec<u8> {
        match self {
            ContentCoding::Identity => raw.to_vec(),
            ContentCoding::Zstd => zstd_compress(raw),
            ContentCoding::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(raw.len() / 2 + 64),
                    flate2::Compression::fast(),
                );
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(raw);
                encoder.finish().unwrap_or_default()
            }
        }
    }

    /// How long `body` is once decoded, when that is known without
    /// decoding: its own length for identity, the frame's declared size for
    /// zstd (what this crate's encoder writes); `None` for gzip or a zstd
    /// frame that does not say.
    pub fn decoded_size_hint(self, body: &[u8]) -> Option<u64> {
        match self {
            ContentCoding::Identity => Some(body.len() as u64),
            ContentCoding::Zstd => zstd::zstd_safe::get_frame_content_size(body).ok()?,
            ContentCoding::Gzip => None,
        }
    }

    /// Decodes `body`, refusing output longer than `limit`.
    pub fn decode(self, body: &[u8], limit: usize) -> Result<Vec<u8>, CodingError> {
        match self {
            ContentCoding::Identity => Ok(body.to_vec()),
            ContentCoding::Zstd => {
                if let Some(decoded) = zstd_decompress_sized(body, limit) {
                    return decoded;
                }
                let decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(|e| {
                    CodingError::Damaged {
                        coding: "zstd",
                        detail: e.to_string(),
                    }
                })?;
                read_bounded(decoder, limit, "zstd")
            }
            ContentCoding::Gzip => read_bounded(flate2::read::GzDecoder::new(body), limit, "gzip"),
        }
    }
}

fn read_bounded(
    reader: impl Read,
    limit: usize,
    coding: &'static str,
) -> Result<Vec<u8>, CodingError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| CodingError::Damaged {
            coding,
            detail: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CodingError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_zstd_and_honours_q_zero() {
        use ContentCoding::*;
        assert_eq!(ContentCoding::negotiate(None), Identity);
        assert_eq!(ContentCoding::negotiate(Some("gzip")), Gzip);
        assert_eq!(ContentCoding::negotiate(Some("gzip, zstd")), Zstd);
        assert_eq!(ContentCoding::negotiate(Some("zstd;q=0, gzip;q=0.5")), Gzip);
        assert_eq!(ContentCoding::negotiate(Some("br")), Identity);
        assert_eq!(ContentCoding::negotiate(Some("*")), Zstd);
    }

    #[test]
    fn decoding_is_bounded() {
        for coding in [ContentCoding::Zstd, ContentCoding::Gzip] {
            let raw = vec![7u8; 100_000];
            let encoded = coding.encode(&raw);
            assert_eq!(coding.decode(&encoded, 100_000).unwrap(), raw);
            assert!(matches!(
                coding.decode(&encoded, 99_999),
                Err(CodingError::TooLarge { .. })
            ));
            assert!(
                coding
                    .decode(&encoded[..encoded.len() / 2], 1 << 20)
                    .is_err()
            );
        }
    }
}
