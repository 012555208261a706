//! Fixtures for the HTTPS tests: a hub engine served on 127.0.0.1 with a
//! certificate made in the test, node engines, transports, and a raw HTTPS
//! client for requests the transport would never send.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use sync_conformance::fixtures::{hub_info, node_info, registry, t};
use sync_core::{ConflictStrategy, Engine, EngineConfig, NodeId, SyncError, Transport};
use sync_store_memory::MemoryStore;
use sync_transport_http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, ManualClock, SelfSigned, ServerConfig, Trust,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use sync_conformance::fixtures::{NOTE_SERVER_WINS, hub_id, node_id};
pub use sync_conformance::transport_suite::{NodeEngine, node};

/// The hub engine type served in these tests.
pub type HubEngine = Engine<MemoryStore>;

/// Every test is bounded in time.
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the test finished in time")
}

/// A hub on 127.0.0.1 with nodes `0..nodes` registered.
pub struct Fixture {
    pub server: HubServer<EngineHub<MemoryStore>>,
    pub hub: EngineHub<MemoryStore>,
    pub cert: Arc<SelfSigned>,
    pub clock: ManualClock,
}

/// The hub's clock at the start: a little after the fixture's epoch, so the
/// nodes' packets (stamped `t(0)`, `t(1)`...) are not ahead of it.
pub fn start_time() -> sync_core::Timestamp {
    t(100)
}

pub fn hub_engine(nodes: usize) -> HubEngine {
    let mut engine = Engine::new(
        MemoryStore::new(),
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("a memory store");
    for i in 0..nodes {
        engine.register_peer(node_info(i)).expect("register");
    }
    engine
}

impl Fixture {
    pub async fn start(nodes: usize) -> Self {
        Self::with(nodes, |c| c).await
    }

    pub async fn with(nodes: usize, config: impl FnOnce(ServerConfig) -> ServerConfig) -> Self {
        let clock = ManualClock::new(start_time());
        let cert = Arc::new(SelfSigned::generate(&["127.0.0.1", "localhost"]).expect("a cert"));
        let hub = EngineHub::new(hub_engine(nodes));
        let server = serve(
            &hub,
            &cert,
            // Tests present many bad tokens from 127.0.0.1 on purpose; the
            // per-address limit has its own test.
            config(
                ServerConfig::default()
                    .clock(clock.clock())
                    .auth_failure_limit(1_000_000, 1_000_000),
            ),
        )
        .await;
        Fixture {
            server,
            hub,
            cert,
            clock,
        }
    }

    /// Stops the server and starts another on the same hub (and store).
    pub async fn restart(self, config: ServerConfig) -> Self {
        let Fixture {
            server,
            hub,
            cert,
            clock,
        } = self;
        server.shutdown().await;
        let server = serve(&hub, &cert, config.clock(clock.clock())).await;
        Fixture {
            server,
            hub,
            cert,
            clock,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn token(&self, i: usize) -> String {
        self.server
            .issue_token(node_id(i))
            .await
            .expect("a token")
            .into_string()
    }

    pub fn trust(&self) -> Trust {
        Trust::pinned(&self.cert.fingerprint).expect("a fingerprint")
    }

    pub fn transport_with(&self, token: &str, config: ClientConfig) -> HttpTransport {
        HttpTransport::new(&self.server.url(), token, config.trust(self.trust()))
            .expect("a transport")
    }

    pub fn transport(&self, token: &str) -> HttpTransport {
        self.transport_with(token, ClientConfig::default())
    }

    pub async fn node_transport(&self, i: usize) -> HttpTransport {
        let token = self.token(i).await;
        self.transport(&token)
    }

    pub fn rustls(&self) -> Arc<rustls::ClientConfig> {
        self.trust().client_config().expect("a client config")
    }

    /// A raw HTTPS request on a new connection.
    pub async fn raw(&self, request: Request<Full<Bytes>>) -> Raw {
        raw(self.addr(), self.rustls(), request).await
    }

    pub fn security_events(&self) -> Vec<sync_core::SecurityEvent> {
        self.hub
            .with_engine(|e| e.security_events())
            .expect("events")
    }

    pub async fn metrics(&self) -> String {
        let response = self.raw(get("/metrics", None)).await;
        assert_eq!(response.status, StatusCode::OK);
        String::from_utf8(response.body.to_vec()).expect("utf-8")
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

async fn serve(
    hub: &EngineHub<MemoryStore>,
    cert: &SelfSigned,
    config: ServerConfig,
) -> HubServer<EngineHub<MemoryStore>> {
    let tls = cert.identity.server_config().expect("a TLS config");
    HubServer::bind(
        "127.0.0.1:0".parse().expect("an address"),
        tls,
        hub.clone(),
        config,
    )
    .await
    .expect("the server starts")
}

/// A raw reply.
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Raw {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn raw(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    request: Request<Full<Bytes>>,
) -> Raw {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(tls)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("TLS");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Raw {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn get(path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::get(path).header("host", "127.0.0.1");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Full::new(Bytes::new())).expect("a request")
}

pub fn post(token: Option<&str>) -> hyper::http::request::Builder {
    let mut builder = Request::post("/v1/exchange").header("host", "127.0.0.1");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
}

pub fn exchange_request(token: Option<&str>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    post(token)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(body))
        .expect("a request")
}

/// Runs one sync session of `node` over `transport`, with the engine's
/// retry on transient errors (fired immediately: the clock is the test's).
pub async fn sync<T: Transport>(node: &mut NodeEngine, transport: &T) -> Result<usize, SyncError> {
    sync_at(node, transport, t(1)).await
}

/// [`sync`] with the node's clock at `now`.
pub async fn sync_at<T: Transport>(
    node: &mut NodeEngine,
    transport: &T,
    now: sync_core::Timestamp,
) -> Result<usize, SyncError> {
    node.start_sync(hub_id())?;
    let mut exchanges = 0;
    while let Some(packet) = node.poll_transmit(now)? {
        exchanges += 1;
        assert!(exchanges < 10_000, "a session does not end");
        let replies = transport.exchange(packet.bytes).await.expect("exchange");
        for reply in replies {
            node.handle_incoming(&reply, now)?;
        }
    }
    Ok(exchanges)
}

/// The first packet of a new session of `node`.
pub fn first_packet(node: &mut NodeEngine) -> Bytes {
    node.start_sync(hub_id()).expect("start");
    node.poll_transmit(t(1))
        .expect("poll")
        .expect("a packet")
        .bytes
}

pub fn node_ids(n: usize) -> Vec<NodeId> {
    (0..n).map(node_id).collect()
}
