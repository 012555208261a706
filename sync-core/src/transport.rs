//! The `Transport` trait: moves packets between a node and its hub.

use bytes::Bytes;

/// Moves encoded envelopes to a peer and brings back what the peer has for us.
///
/// `exchange` fits both an HTTP round trip (one request, one response) and a
/// folder of files (write the outgoing file, read whatever arrived). The
/// engine never sees the transport: a driver passes the bytes between them.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// Sends `outgoing` and returns the envelopes received in reply (possibly
    /// none).
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError>;
}

/// Why an exchange failed. The driver retries the transient ones on the
/// engine's backoff timer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer could not be reached.
    #[error(
        "the hub at {target} could not be reached: {detail}; check the address and the network, syncing will retry"
    )]
    Unreachable {
        /// Address tried.
        target: String,
        /// Detail.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer from {target} within {after_ms} ms; syncing will retry")]
    Timeout {
        /// Address tried.
        target: String,
        /// The deadline.
        after_ms: u64,
    },
    /// The peer refused the request at the transport level.
    #[error("{target} refused the request (status {status}): {message}")]
    Refused {
        /// Address tried.
        target: String,
        /// Transport status (e.g. HTTP code).
        status: u16,
        /// Explanation.
        message: String,
    },
    /// The peer is overloaded or rate limited this node and said how long
    /// to wait (HTTP 429 or 503 with `Retry-After`). A driver sends nothing
    /// to it before `retry_after_ms` has passed.
    #[error(
        "{target} asked to wait {retry_after_ms} ms before the next request (status {status}): {message}; syncing will retry then"
    )]
    RetryAfter {
        /// Address tried.
        target: String,
        /// Transport status (e.g. HTTP 429 or 503).
        status: u16,
        /// How long to wait before the next request, in milliseconds.
        retry_after_ms: u64,
        /// Explanation.
        message: String,
    },
    /// The peer went away mid-exchange.
    #[error("the connection to {target} closed mid-exchange; syncing will retry")]
    Closed {
        /// Address tried.
        target: String,
    },
    /// Local I/O failed.
    #[error("local I/O failed while {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Unreachable { .. }
            | TransportError::Timeout { .. }
            | TransportError::Closed { .. }
            | TransportError::Io { .. }
            | TransportError::RetryAfter { .. } => true,
            TransportError::Refused { status, .. } => *status >= 500 || *status == 429,
        }
    }

    /// How long the peer asked to wait before the next request
    /// ([`TransportError::RetryAfter`]), in milliseconds; `None` when it
    /// did not say.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            TransportError::RetryAfter { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }
}
