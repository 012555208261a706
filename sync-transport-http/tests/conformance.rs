//! The `sync-conformance` transport suite against the real HTTPS server and
//! client on 127.0.0.1: one `#[test]` per case.
//!
//! The suite's hub is a [`HubHandle`] (its trusted `respond`, with its own
//! stop and failure switches); [`SuiteHub`] puts it behind the [`Hub`]
//! trait so the server serves it. Each transport gets its own server over
//! the shared hub, stopped when the transport is dropped. Tokens are real
//! (node 0's, checked on every request); which node a packet names is the
//! suite's business, as `HubHandle::respond` trusts its caller.

use std::sync::OnceLock;

use bytes::Bytes;
use sync_conformance::fixtures::{hub_id, node_id, registry};
use sync_conformance::hub::{HubFailure, HubHandle};
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{
    ConflictStrategy, NodeId, Outcome, SecurityKind, Timestamp, Transport, TransportError,
};
use sync_transport_http::{
    ClientConfig, HttpTransport, Hub, HubAnswer, HubError, HubInfo, HubReply, HubServer, NodeLag,
    NodeStatus, SelfSigned, ServerConfig, Trust,
};
use tokio::sync::watch;

/// The runtime every suite server runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a test runtime")
    })
}

struct SuiteHub {
    handle: HubHandle,
    changes: watch::Sender<u64>,
}

impl Hub for SuiteHub {
    fn exchange(
        &self,
        _node: NodeId,
        request: &[u8],
        _now: Timestamp,
    ) -> Result<HubAnswer, HubError> {
        let bytes = self.handle.respond(request).map_err(|e| match e {
            HubFailure::Gone => HubError::Unavailable("the suite's hub is stopped".into()),
            HubFailure::Internal(detail) => HubError::Unavailable(detail),
        })?;
        let mut outcome = Outcome::default();
        if let Ok(Envelope::Error(e)) = codec::decode_envelope(&bytes, &Limits::default()) {
            outcome.error = Some(e.code);
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(HubAnswer::Reply(HubReply {
            bytes,
            outcome,
            conflict_strategies: Vec::new(),
        }))
    }

    fn node_status(&self, _node: NodeId) -> Result<NodeStatus, HubError> {
        Ok(NodeStatus::Active)
    }

    fn pending(&self, node: NodeId) -> Result<u64, HubError> {
        Ok(self.handle.with_engine(|e| e.pending_count(node)))
    }

    fn lag(&self) -> Result<Vec<NodeLag>, HubError> {
        Ok(Vec::new())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, HubError> {
        Ok(self.handle.with_engine(|e| e.meta(key)))
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HubError> {
        Ok(self.handle.with_engine(|e| e.meta_with_prefix(prefix)))
    }

    fn put_meta(&self, key: &str, value: Option<&[u8]>) -> Result<(), HubError> {
        self.handle.with_engine(|e| e.put_meta(key, value));
        Ok(())
    }

    fn record_security_event(
        &self,
        node: Option<NodeId>,
        kind: SecurityKind,
        detail: String,
        now: Timestamp,
    ) -> Result<(), HubError> {
        self.handle
            .with_engine(|e| e.record_security_event(node, kind, detail, now));
        Ok(())
    }

    fn check_store(&self) -> Result<(), HubError> {
        Ok(())
    }

    fn info(&self) -> HubInfo {
        HubInfo {
            id: hub_id(),
            schema_version: "1.0.0".into(),
            registry: registry(ConflictStrategy::ServerWins),
            limits: Limits::default(),
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// A client transport and the server it talks to (stopped on drop).
struct Served {
    transport: HttpTransport,
    _server: HubServer<SuiteHub>,
}

#[async_trait::async_trait]
impl Transport for Served {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        self.transport.exchange(outgoing).await
    }
}

fn connect(hub: &HubHandle) -> Served {
    let cert = SelfSigned::generate(&["127.0.0.1"]).expect("a certificate");
    let suite_hub = SuiteHub {
        handle: hub.clone(),
        changes: watch::channel(0).0,
    };
    let tls = cert.identity.server_config().expect("a TLS config");
    let server = runtime()
        .block_on(HubServer::bind(
            "127.0.0.1:0".parse().expect("an address"),
            tls,
            suite_hub,
            ServerConfig::default().rate_limit(10_000, 10_000),
        ))
        .expect("the server starts");
    let token = runtime()
        .block_on(server.issue_token(node_id(0)))
        .expect("a token");
    // Made outside any runtime: the transport runs on one of its own.
    let config = ClientConfig::default()
        .trust(Trust::pinned(&cert.fingerprint).expect("a fingerprint"))
        .request_timeout(std::time::Duration::from_secs(20));
    let transport = HttpTransport::new(&server.url(), token.as_str(), config).expect("a transport");
    Served {
        transport,
        _server: server,
    }
}

sync_conformance::transport_suite!(https, super::connect);
