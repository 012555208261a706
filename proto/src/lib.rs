//! The syncplan wire format.
//!
//! `syncplan/v1/sync.proto` is the contract; this crate compiles it (with
//! [protox](https://docs.rs/protox), so no `protoc` is needed) into prost types.
//! These types are the edge of the system: `sync-core` converts them to its own
//! domain types and never exposes them in its API.
//!
//! ```
//! use prost::Message;
//! use sync_proto::v1::{Envelope, ErrorCode, ErrorMessage, envelope::Kind};
//!
//! let envelope = Envelope {
//!     kind: Some(Kind::Error(ErrorMessage {
//!         code: ErrorCode::Corrupt as i32,
//!         message: "body hash mismatch; send the packet again".into(),
//!         retryable: true,
//!         ..Default::default()
//!     })),
//! };
//! let bytes = envelope.encode_to_vec();
//! assert_eq!(Envelope::decode(bytes.as_slice()).unwrap(), envelope);
//! ```

/// Version 1 of the wire format (`syncplan.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/syncplan.v1.rs"));
}

/// The wire protocol version carried in every `PacketHeader`.
pub const PROTOCOL_VERSION: u32 = 1;
