//! [`LoopbackTransport`]: an in-memory [`Transport`] that hands each
//! request to a responder in the same process (a [`HubHandle`] or any
//! closure) and returns its reply.

use bytes::Bytes;
use sync_core::{Transport, TransportError};

use crate::hub::{HubFailure, HubHandle};

/// The name loopback transports report in their errors.
pub const LOOPBACK_TARGET: &str = "loopback hub";

type Responder = dyn Fn(&[u8]) -> Result<Vec<Bytes>, TransportError> + Send + Sync;

/// A transport whose "network" is a function call.
pub struct LoopbackTransport {
    responder: Box<Responder>,
}

impl LoopbackTransport {
    /// A transport that answers every exchange with `responder`.
    pub fn new(
        responder: impl Fn(&[u8]) -> Result<Vec<Bytes>, TransportError> + Send + Sync + 'static,
    ) -> Self {
        LoopbackTransport {
            responder: Box::new(responder),
        }
    }

    /// A transport to `hub`: a stopped hub is
    /// [`TransportError::Unreachable`], an internal failure is
    /// [`TransportError::Refused`] with status 503 (both transient).
    pub fn connect(hub: &HubHandle) -> Self {
        let hub = hub.clone();
        Self::new(move |request| match hub.respond(request) {
            Ok(reply) => Ok(vec![reply]),
            Err(HubFailure::Gone) => Err(TransportError::Unreachable {
                target: LOOPBACK_TARGET.into(),
                detail: "the hub is not running".into(),
            }),
            Err(HubFailure::Internal(message)) => Err(TransportError::Refused {
                target: LOOPBACK_TARGET.into(),
                status: 503,
                message,
            }),
        })
    }
}

#[async_trait::async_trait]
impl Transport for LoopbackTransport {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        (self.responder)(&outgoing)
    }
}
