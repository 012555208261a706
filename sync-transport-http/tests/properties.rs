//! The specification's properties 7, 22, 26, 27, 28, 29 and 30 as property
//! tests against the real server and client on 127.0.0.1 (100 cases each).

mod common;

use std::io::Read as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sync_conformance::fixtures::{record, t};
use sync_conformance::net::synced_state;
use sync_conformance::transport_suite::node_with;
use sync_core::codec::{self, Limits};
use sync_core::packet::{Codec, Envelope};
use sync_core::token::KeySet;
use sync_core::{NodeId, SecurityKind, Timestamp, Transport, TransportError};
use sync_store_memory::MemoryStore;
use sync_transport_http::{
    ClientConfig, ContentCoding, EngineHub, HttpTransport, Hub, HubAnswer, HubError, HubInfo,
    HubServer, ManualClock, NodeLag, NodeStatus, SelfSigned, ServerConfig, TokenPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use common::*;

const SECOND: i64 = 1_000_000;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 100,
        failure_persistence: None,
        ..Config::default()
    })
}

fn note(title: &str) -> sync_core::Record {
    record([("title", title.into())])
}

fn hub_entities(hub: &EngineHub<MemoryStore>) -> usize {
    hub.with_engine(synced_state).expect("state").len()
}

/// How a hub fails a request in property 7.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// Answers after the client gave up.
    Slow,
    /// Its store fails (503).
    Unavailable,
}

/// A hub that fails its next requests as told, then answers.
struct Flaky {
    inner: EngineHub<MemoryStore>,
    failures: Mutex<Vec<Failure>>,
    served: AtomicU32,
}

impl Hub for Flaky {
    fn exchange(
        &self,
        node: NodeId,
        request: &[u8],
        now: Timestamp,
    ) -> Result<HubAnswer, HubError> {
        self.served.fetch_add(1, Ordering::SeqCst);
        let failure = self.failures.lock().expect("lock").pop();
        match failure {
            Some(Failure::Slow) => std::thread::sleep(Duration::from_millis(80)),
            Some(Failure::Unavailable) => return Err(HubError::Unavailable("injected".into())),
            None => {}
        }
        self.inner.exchange(node, request, now)
    }
    fn node_status(&self, node: NodeId) -> Result<NodeStatus, HubError> {
        self.inner.node_status(node)
    }
    fn pending(&self, node: NodeId) -> Result<u64, HubError> {
        self.inner.pending(node)
    }
    fn lag(&self) -> Result<Vec<NodeLag>, HubError> {
        self.inner.lag()
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, HubError> {
        self.inner.meta(key)
    }
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, HubError> {
        self.inner.meta_with_prefix(prefix)
    }
    fn put_meta(&self, key: &str, value: Option<&[u8]>) -> Result<(), HubError> {
        self.inner.put_meta(key, value)
    }
    fn record_security_event(
        &self,
        node: Option<NodeId>,
        kind: SecurityKind,
        detail: String,
        now: Timestamp,
    ) -> Result<(), HubError> {
        self.inner.record_security_event(node, kind, detail, now)
    }
    fn check_store(&self) -> Result<(), HubError> {
        self.inner.check_store()
    }
    fn info(&self) -> HubInfo {
        self.inner.info()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }
}

// Feature: sync-system, Property 7: Retry on timeout
#[test]
fn failed_transmissions_are_retried_until_delivered_once() {
    let rt = runtime();
    let cert = Arc::new(SelfSigned::generate(&["127.0.0.1"]).expect("cert"));
    let failures = prop::collection::vec(
        prop_oneof![Just(Failure::Slow), Just(Failure::Unavailable)],
        0..3,
    );
    runner()
        .run(&(failures, 1..5usize), |(failures, changes)| {
            rt.block_on(bounded(async {
                let inner = EngineHub::new(hub_engine(1));
                let flaky = Flaky {
                    inner: inner.clone(),
                    failures: Mutex::new(failures.clone()),
                    served: AtomicU32::new(0),
                };
                let clock = ManualClock::new(start_time());
                let server = HubServer::bind(
                    "127.0.0.1:0".parse().expect("addr"),
                    cert.identity.server_config().expect("tls"),
                    flaky,
                    ServerConfig::default().clock(clock.clock()),
                )
                .await
                .expect("server");
                let token = server.issue_token(node_id(0)).await.expect("token");
                let transport = HttpTransport::new(
                    &server.url(),
                    token.as_str(),
                    ClientConfig::default()
                        .trust(sync_transport_http::Trust::pinned(&cert.fingerprint).expect("pin"))
                        .request_timeout(Duration::from_millis(40)),
                )
                .expect("transport");
                let mut n = node(0);
                for k in 0..changes {
                    n.insert(NOTE_SERVER_WINS, note(&format!("c{k}")), t(0))
                        .expect("insert");
                }
                let mut now = start_time();
                let mut retries = 0;
                n.start_sync(hub_id()).expect("start");
                while let Some(packet) = n.poll_transmit(now).expect("poll") {
                    match transport.exchange(packet.bytes).await {
                        Ok(replies) => {
                            for reply in replies {
                                n.handle_incoming(&reply, now).expect("reply");
                            }
                        }
                        Err(error) => {
                            assert!(error.is_transient(), "{error:?}");
                            retries += 1;
                            now = n.poll_timeout().expect("a retry is armed after a failure");
                            n.handle_timeout(now);
                        }
                    }
                    assert!(retries <= failures.len(), "more retries than failures");
                }
                assert_eq!(retries, failures.len(), "each failure was retried once");
                assert_eq!(hub_entities(&inner), changes, "delivered");
                assert_eq!(n.pending_count(hub_id()).expect("pending"), 0);
                server.shutdown().await;
            }));
            Ok(())
        })
        .expect("property 7");
}

// Feature: sync-system, Property 22: GZIP compression
#[test]
fn a_peer_that_asks_for_gzip_gets_gzip_and_the_data_arrives() {
    let rt = runtime();
    let titles = prop::collection::vec("[a-zA-Z0-9 ]{0,40}", 1..12);
    let coding = prop_oneof![Just(ContentCoding::Gzip), Just(ContentCoding::Zstd)];
    runner()
        .run(&(titles, coding), |(titles, coding)| {
            rt.block_on(bounded(async {
                let fx = Fixture::start(2).await;
                // A raw request that asks for `coding` and sends with it.
                let token = fx.token(0).await;
                let mut n0 = node(0);
                for title in &titles {
                    n0.insert(NOTE_SERVER_WINS, note(title), t(0))
                        .expect("insert");
                }
                let packet = first_packet(&mut n0);
                let name = coding.token().expect("a coding");
                let request = post(Some(&token))
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", name)
                    .header("accept-encoding", name)
                    .body(Full::new(Bytes::from(coding.encode(&packet))))
                    .expect("request");
                let reply = fx.raw(request).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
                assert_eq!(reply.headers["content-encoding"], name);
                let decoded = match coding {
                    ContentCoding::Gzip => {
                        assert_eq!(&reply.body[..2], &[0x1f, 0x8b], "gzip magic");
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&reply.body[..])
                            .read_to_end(&mut out)
                            .expect("gzip");
                        out
                    }
                    _ => zstd::stream::decode_all(&reply.body[..]).expect("zstd"),
                };
                // Not only the HTTP body: the reply packet's own body is
                // compressed with the coding asked for.
                let packet = match codec::decode_envelope(&decoded, &Limits::default()) {
                    Ok(Envelope::Packet(packet)) => packet,
                    other => panic!("expected a packet, got {other:?}"),
                };
                let expected = match coding {
                    ContentCoding::Gzip => Codec::Gzip,
                    _ => Codec::Zstd,
                };
                assert_eq!(packet.header.codec, expected);
                if coding == ContentCoding::Gzip {
                    assert_eq!(&packet.body[..2], &[0x1f, 0x8b], "gzip packet body");
                }
                assert_eq!(hub_entities(&fx.hub), titles.len());
                // The transport configured for `coding` syncs node 1 to the hub.
                let transport = fx.transport_with(
                    &fx.token(1).await,
                    ClientConfig::default().compression(coding),
                );
                let mut n1 = node(1);
                sync(&mut n1, &transport).await.expect("sync");
                assert_eq!(synced_state(&mut n1).expect("state").len(), titles.len());
                fx.shutdown().await;
            }));
            Ok(())
        })
        .expect("property 22");
}

/// Ways to present something other than this hub's valid token.
#[derive(Clone, Debug)]
enum BadToken {
    Garbage(String),
    Altered(usize, char),
    Truncated(usize),
    OtherHub([u8; 32]),
}

fn bad_token() -> impl Strategy<Value = BadToken> {
    prop_oneof![
        "[ -~]{0,80}".prop_map(BadToken::Garbage),
        (0..200usize, prop::char::range('0', 'z')).prop_map(|(i, c)| BadToken::Altered(i, c)),
        (0..200usize).prop_map(BadToken::Truncated),
        any::<[u8; 32]>().prop_map(BadToken::OtherHub),
    ]
}

fn present(bad: &BadToken, valid: &str) -> String {
    match bad {
        BadToken::Garbage(text) => text.clone(),
        BadToken::Altered(i, c) => {
            let mut chars: Vec<char> = valid.chars().collect();
            let i = i % chars.len();
            chars[i] = if chars[i] == *c { '#' } else { *c };
            chars.into_iter().collect()
        }
        BadToken::Truncated(n) => valid[..n % valid.len()].to_owned(),
        BadToken::OtherHub(secret) => KeySet::new(1, *secret, start_time())
            .issue(node_id(0), start_time(), 3600 * SECOND)
            .into_string(),
    }
}

// Feature: sync-system, Property 26: Token-based authentication
#[test]
fn only_a_valid_token_gets_a_sync_through() {
    let rt = runtime();
    let fx = rt.block_on(Fixture::with(1, |c| c.security_events_per_second(100_000)));
    let valid = rt.block_on(fx.token(0));
    let mut n = node(0);
    n.insert(NOTE_SERVER_WINS, note("guarded"), t(0))
        .expect("insert");
    let packet = first_packet(&mut n);
    runner()
        .run(&bad_token(), |bad| {
            let token = present(&bad, &valid);
            rt.block_on(bounded(async {
                let refused = fx.raw(exchange_request(Some(&token), packet.clone())).await;
                if token != valid {
                    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{token:?}");
                    let received = fx
                        .hub
                        .with_engine(|e| e.peer(node_id(0)))
                        .expect("peer")
                        .received_packet_no;
                    assert!(received <= 1, "a refused request applied packet {received}");
                }
                let accepted = fx.raw(exchange_request(Some(&valid), packet.clone())).await;
                assert_eq!(accepted.status, StatusCode::OK);
            }));
            Ok(())
        })
        .expect("property 26");
    assert_eq!(hub_entities(&fx.hub), 1, "applied once, by the valid token");
    rt.block_on(fx.shutdown());
}

// Feature: sync-system, Property 27: HTTPS-only transmission
#[test]
fn nothing_travels_without_tls() {
    let rt = runtime();
    let fx = rt.block_on(Fixture::start(1));
    let scheme = "[a-z][a-z0-9+.-]{0,7}".prop_filter("not https", |s| s != "https");
    let request_line = ("(GET|POST|PUT|HEAD)", "/[a-z0-9/]{0,20}");
    runner()
        .run(&(scheme, request_line), |(scheme, (method, path))| {
            let url = format!("{scheme}://{}", fx.addr());
            assert!(
                HttpTransport::new(&url, "token", ClientConfig::default()).is_err(),
                "{url}"
            );
            rt.block_on(bounded(async {
                let mut tcp = TcpStream::connect(fx.addr()).await.expect("connect");
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n"
                );
                tcp.write_all(request.as_bytes()).await.expect("write");
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
                    .await;
                assert!(
                    !answer.windows(5).any(|w| w == b"HTTP/"),
                    "answered in plain text"
                );
            }));
            Ok(())
        })
        .expect("property 27");
    assert_eq!(hub_entities(&fx.hub), 0);
    rt.block_on(fx.shutdown());
}

/// Every kind of authentication failure.
#[derive(Clone, Debug)]
enum AuthCase {
    Missing,
    NotBearer(String),
    Tampered(usize),
    Expired(i64),
    UnknownKey(u32),
    Revoked,
    UnknownNode(u128),
}

// Feature: sync-system, Property 28: Authentication failure handling
#[test]
fn every_authentication_failure_is_refused_logged_and_counted() {
    let rt = runtime();
    let ttl: i64 = 60;
    let fx = rt.block_on(Fixture::with(2, |c| {
        c.security_events_per_second(100_000)
            .tokens(TokenPolicy::default().ttl(Duration::from_secs(ttl as u64)))
    }));
    let valid = rt.block_on(fx.token(0));
    let revoked = rt.block_on(fx.token(1));
    fx.hub
        .with_engine(|e| e.revoke_peer(node_id(1)))
        .expect("revoke");
    let cases = prop_oneof![
        Just(AuthCase::Missing),
        "[A-Za-z]{1,10}".prop_map(AuthCase::NotBearer),
        (0..130usize).prop_map(AuthCase::Tampered),
        (0..1_000_000i64).prop_map(AuthCase::Expired),
        (2..u32::MAX).prop_map(AuthCase::UnknownKey),
        Just(AuthCase::Revoked),
        (0x5000..u128::MAX).prop_map(AuthCase::UnknownNode),
    ];
    let mut n = node(0);
    let packet = first_packet(&mut n);
    runner()
        .run(&cases, |case| {
            fx.clock.set(start_time().add_micros(SECOND));
            let (header, reason, kind, claimed) = match &case {
                AuthCase::Missing => (None, "missing", SecurityKind::AuthFailed, None),
                AuthCase::NotBearer(scheme) => (
                    Some(format!("{scheme}x {valid}")),
                    "not_bearer",
                    SecurityKind::AuthFailed,
                    None,
                ),
                AuthCase::Tampered(i) => {
                    let sig_start = valid.rfind('.').expect("a tag") + 1;
                    let mut bytes = valid.clone().into_bytes();
                    let at = sig_start + i % (bytes.len() - sig_start);
                    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
                    let token = String::from_utf8(bytes).expect("ascii");
                    (
                        Some(format!("Bearer {token}")),
                        "bad_signature",
                        SecurityKind::AuthFailed,
                        Some(node_id(0)),
                    )
                }
                AuthCase::Expired(extra) => {
                    fx.clock.set(start_time().add_micros(ttl * SECOND + extra));
                    (
                        Some(format!("Bearer {valid}")),
                        "expired",
                        SecurityKind::AuthFailed,
                        Some(node_id(0)),
                    )
                }
                AuthCase::UnknownKey(id) => {
                    let token = KeySet::new(*id, [9; 32], start_time()).issue(
                        node_id(0),
                        start_time(),
                        ttl * SECOND,
                    );
                    (
                        Some(format!("Bearer {}", token.as_str())),
                        "unknown_key",
                        SecurityKind::AuthFailed,
                        Some(node_id(0)),
                    )
                }
                AuthCase::Revoked => (
                    Some(format!("Bearer {revoked}")),
                    "revoked_node",
                    SecurityKind::RevokedSender,
                    Some(node_id(1)),
                ),
                AuthCase::UnknownNode(id) => {
                    let node = NodeId(sync_core::Uuid::from_u128(*id));
                    let token = fx.server.tokens().issue(node, start_time());
                    (
                        Some(format!("Bearer {}", token.as_str())),
                        "unknown_node",
                        SecurityKind::UnknownSender,
                        Some(node),
                    )
                }
            };
            rt.block_on(bounded(async {
                let before = fx.security_events().len();
                let counted = |text: &str| {
                    let prefix = format!("syncplan_auth_failures_total{{reason=\"{reason}\"}} ");
                    text.lines()
                        .find_map(|l| l.strip_prefix(&prefix))
                        .map_or(0, |v| v.parse::<u64>().expect("a count"))
                };
                let count_before = counted(&fx.metrics().await);
                let mut request = post(None).header("content-type", "application/x-protobuf");
                if let Some(header) = &header {
                    request = request.header("authorization", header.as_str());
                }
                let reply = fx
                    .raw(request.body(Full::new(packet.clone())).expect("request"))
                    .await;
                assert_eq!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{case:?}: {}",
                    reply.text()
                );
                let events = fx.security_events();
                assert_eq!(events.len(), before + 1, "{case:?}: one security event");
                let event = events.last().expect("an event");
                assert_eq!(event.kind, kind, "{case:?}");
                assert_eq!(event.peer, claimed, "{case:?}");
                assert!(
                    event.detail.contains(reason) && event.detail.contains("127.0.0.1"),
                    "{}",
                    event.detail
                );
                assert!(
                    !event.detail.contains(&valid[valid.len() - 20..]),
                    "a token reached the log"
                );
                assert_eq!(
                    counted(&fx.metrics().await),
                    count_before + 1,
                    "{case:?}: counted"
                );
            }));
            Ok(())
        })
        .expect("property 28");
    assert_eq!(
        fx.hub
            .with_engine(|e| e.peer(node_id(0)))
            .expect("peer")
            .received_packet_no,
        0
    );
    rt.block_on(fx.shutdown());
}

// Feature: sync-system, Property 29: Per-session validation
#[test]
fn every_request_of_a_session_is_validated() {
    let rt = runtime();
    let ttl: i64 = 60;
    let fx = rt.block_on(Fixture::with(1, |c| {
        c.security_events_per_second(100_000)
            .rate_limit(100_000, 100_000)
            .tokens(
                TokenPolicy::default()
                    .ttl(Duration::from_secs(ttl as u64))
                    .refresh_every(0),
            )
    }));
    let mut n = node(0);
    let packet = first_packet(&mut n);
    let session = (2..8usize).prop_flat_map(|len| (Just(len), 0..len, any::<bool>()));
    runner()
        .run(&session, |(len, invalid_from, revoke)| {
            fx.clock.set(start_time());
            fx.hub
                .with_engine(|e| e.register_peer(sync_conformance::fixtures::node_info(0)))
                .expect("register");
            rt.block_on(bounded(async {
                // One transport: its requests share a kept-alive connection.
                let transport = fx.node_transport(0).await;
                for i in 0..len {
                    if i == invalid_from {
                        if revoke {
                            fx.hub
                                .with_engine(|e| e.revoke_peer(node_id(0)))
                                .expect("revoke");
                        } else {
                            fx.clock.advance_micros(ttl * SECOND);
                        }
                    }
                    let result = transport.exchange(packet.clone()).await;
                    if i < invalid_from {
                        assert!(result.is_ok(), "request {i} of {len}: {result:?}");
                    } else {
                        assert!(
                            matches!(result, Err(TransportError::Refused { status: 401, .. })),
                            "request {i} of {len} after invalidation: {result:?}"
                        );
                    }
                }
            }));
            Ok(())
        })
        .expect("property 29");
    rt.block_on(fx.shutdown());
}

// Feature: sync-system, Property 30: Data encryption during transmission
#[test]
fn data_on_the_wire_is_never_in_the_clear() {
    let rt = runtime();
    let fx = rt.block_on(Fixture::start(1));
    let (relay, captured) = rt.block_on(recording_relay(fx.addr()));
    runner()
        .run(&"[A-Za-z0-9]{16,48}", |secret| {
            rt.block_on(bounded(async {
                captured.lock().expect("lock").clear();
                // No compression anywhere: only TLS stands between the
                // secret and the wire.
                let mut n = node_with(0, |c| c.codec(Codec::None));
                n.insert(NOTE_SERVER_WINS, note(&secret), t(0))
                    .expect("insert");
                let packet = first_packet(&mut n);
                assert!(
                    packet.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "the envelope holds the secret"
                );
                let token = fx.token(0).await;
                let transport = HttpTransport::new(
                    &format!("https://{relay}"),
                    &token,
                    ClientConfig::default()
                        .trust(fx.trust())
                        .compression(ContentCoding::Identity),
                )
                .expect("transport");
                let replies = transport.exchange(packet).await.expect("through the relay");
                n.handle_incoming(&replies[0], t(1)).expect("reply");
                let wire = captured.lock().expect("lock").clone();
                assert!(wire.len() > secret.len(), "bytes crossed the relay");
                assert!(
                    !wire.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "the secret crossed in the clear"
                );
                assert!(
                    !wire.windows(token.len()).any(|w| w == token.as_bytes()),
                    "the token crossed in the clear"
                );
            }));
            Ok(())
        })
        .expect("property 30");
    rt.block_on(fx.shutdown());
}

/// A TCP relay to `target` on 127.0.0.1 that keeps every byte it carries.
async fn recording_relay(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let captured = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&captured);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(target).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(client_read, server_write, Arc::clone(&log)));
            tokio::spawn(pipe(server_read, client_write, Arc::clone(&log)));
        }
    });
    (addr, captured)
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        log.lock().expect("lock").extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
