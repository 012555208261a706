//! Every rejection: what status, what message, what is logged, and that
//! nothing was applied.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use rustls::pki_types::ServerName;
use sync_conformance::fixtures::{record, t};
use sync_conformance::net::synced_state;
use sync_conformance::transport_suite::node_with;
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{
    ErrorCode, NodeId, NodeInfo, Role, SchemaVersion, SecurityKind, Transport, TransportError, Uuid,
};
use sync_transport_http::{ClientConfig, ClientError, HttpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::common::*;

fn note(title: &str) -> sync_core::Record {
    record([("title", title.into())])
}

fn hub_entities(fx: &Fixture) -> usize {
    fx.hub.with_engine(synced_state).expect("state").len()
}

fn refusal(body: &[u8]) -> sync_core::packet::ErrorMessage {
    match codec::decode_envelope(body, &Limits::default()).expect("an envelope") {
        Envelope::Error(e) => e,
        Envelope::Packet(_) | Envelope::Train(_) => {
            panic!("a packet where a refusal was expected")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_in_another_nodes_name_is_403_and_changes_nothing() {
    bounded(async {
        let fx = Fixture::start(2).await;
        let token0 = fx.token(0).await;
        let mut n1 = node(1);
        n1.insert(NOTE_SERVER_WINS, note("forged"), t(0))
            .expect("insert");
        let peers_before = fx.hub.with_engine(|e| e.peers()).expect("peers");
        let reply = fx
            .raw(exchange_request(Some(&token0), first_packet(&mut n1)))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        let e = refusal(&reply.body);
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        assert!(e.message.contains(&node_id(1).to_string()), "{}", e.message);
        assert_eq!(hub_entities(&fx), 0);
        assert_eq!(
            fx.hub.with_engine(|e| e.peers()).expect("peers"),
            peers_before
        );
        let event = fx.security_events().pop().expect("an event");
        assert_eq!(event.kind, SecurityKind::AuthFailed);
        assert!(
            fx.metrics()
                .await
                .contains("syncplan_auth_failures_total{reason=\"sender_mismatch\"} 1")
        );
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_only_in_the_url_is_not_accepted() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let token = fx.token(0).await;
        let mut n = node(0);
        let request = hyper::Request::post(format!("/v1/exchange?token={token}"))
            .header("host", "127.0.0.1")
            .body(Full::new(first_packet(&mut n)))
            .expect("request");
        let reply = fx.raw(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(reply.text().contains("Authorization"), "{}", reply.text());
        assert_eq!(
            fx.hub
                .with_engine(|e| e.peer(node_id(0)))
                .expect("peer")
                .received_packet_no,
            0
        );
        let event = fx.security_events().pop().expect("an event");
        assert!(
            !event.detail.contains(&token),
            "the token reached the security log"
        );
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_unknown_nodes_are_401_logged_and_counted() {
    bounded(async {
        let fx = Fixture::start(2).await;
        let token1 = fx.token(1).await;
        fx.hub
            .with_engine(|e| e.revoke_peer(node_id(1)))
            .expect("revoke");
        let mut n1 = node(1);
        let logged = fx.security_events().len();
        let reply = fx
            .raw(exchange_request(Some(&token1), first_packet(&mut n1)))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(reply.text().contains("revoked"), "{}", reply.text());
        // One event, the server's (with the peer address): the engine logs
        // none of its own for it.
        assert_eq!(fx.security_events().len(), logged + 1);
        let event = fx.security_events().pop().expect("an event");
        assert_eq!(event.kind, SecurityKind::RevokedSender);
        assert_eq!(event.peer, Some(node_id(1)));
        assert!(
            event.detail.contains("127.0.0.1"),
            "no peer address in {}",
            event.detail
        );

        // A token for a node the hub never registered (issued by this hub's
        // key through the offline API).
        let stranger = fx.server.tokens().issue(node_id(9), start_time());
        let mut n9 = node(9);
        let reply = fx
            .raw(exchange_request(
                Some(stranger.as_str()),
                first_packet(&mut n9),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(fx.security_events().len(), logged + 2);
        assert_eq!(
            fx.security_events().pop().expect("event").kind,
            SecurityKind::UnknownSender
        );
        let metrics = fx.metrics().await;
        assert!(
            metrics.contains("syncplan_auth_failures_total{reason=\"revoked_node\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("syncplan_auth_failures_total{reason=\"unknown_node\"} 1"),
            "{metrics}"
        );
        assert!(
            fx.server.issue_token(node_id(1)).await.is_err(),
            "no token for a revoked node"
        );
        assert_eq!(hub_entities(&fx), 0);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_whatever_content_length_says() {
    bounded(async {
        let limit = 64 << 10;
        let fx = Fixture::with(1, |c| c.max_body_bytes(limit)).await;
        let token = fx.token(0).await;
        let header = |length: &str| {
            format!(
                "POST /v1/exchange HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\ncontent-type: application/x-protobuf\r\n{length}\r\n"
            )
        };
        // Declared over the limit: refused before a byte of body is read.
        let answer = send_raw(&fx, header("content-length: 100000000\r\n").as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

        // Not declared (chunked) and larger than the limit.
        let mut chunked = header("transfer-encoding: chunked\r\n").into_bytes();
        let chunk = vec![b'x'; 16 << 10];
        for _ in 0..6 {
            write!(chunked, "{:x}\r\n", chunk.len()).expect("write");
            chunked.extend(&chunk);
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        let answer = send_raw(&fx, &chunked, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

        // Small on the wire, over the limit once decompressed.
        let bomb = zstd::bulk::compress(&vec![0u8; 4 << 20], 3).expect("compress");
        let request = post(Some(&token))
            .header("content-encoding", "zstd")
            .body(Full::new(Bytes::from(bomb)))
            .expect("request");
        let reply = fx.raw(request).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text());
        assert_eq!(hub_entities(&fx), 0);
        assert!(fx.metrics().await.contains("syncplan_limited_requests_total{limit=\"body_size\"} 3"));
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_its_rate_is_429_with_retry_after_and_the_transport_waits() {
    bounded(async {
        let fx = Fixture::with(1, |c| c.rate_limit(1, 2)).await;
        let transport = fx.node_transport(0).await;
        let mut n = node(0);
        let packet = first_packet(&mut n);
        for _ in 0..2 {
            transport
                .exchange(packet.clone())
                .await
                .expect("within the burst");
        }
        let error = transport
            .exchange(packet.clone())
            .await
            .expect_err("over the rate");
        match &error {
            TransportError::RetryAfter {
                status: 429,
                retry_after_ms,
                message,
                ..
            } => {
                assert!(message.contains("retry after"), "{message}");
                assert!((1_000..=2_000).contains(retry_after_ms), "{retry_after_ms}");
            }
            other => panic!("expected a 429 with Retry-After, got {other:?}"),
        }
        assert!(error.is_transient());
        assert!(transport.retry_after().is_some());
        let limited = |text: &str| {
            text.lines()
                .any(|l| l == "syncplan_limited_requests_total{limit=\"rate\"} 1")
        };
        // Before Retry-After has passed, the transport does not send at all.
        let again = transport
            .exchange(packet.clone())
            .await
            .expect_err("still waiting");
        assert!(again.is_transient());
        assert!(
            again.retry_after_ms().is_some_and(|ms| ms <= 2_000),
            "{again:?}"
        );
        assert!(
            limited(&fx.metrics().await),
            "the second refusal came from the transport"
        );
        let token = fx.token(0).await;
        let raw = fx.raw(exchange_request(Some(&token), packet)).await;
        assert_eq!(raw.status, StatusCode::TOO_MANY_REQUESTS);
        let after: u64 = raw.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=2).contains(&after), "Retry-After {after}");
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_authentication_gets_429_but_good_nodes_behind_it_sync() {
    bounded(async {
        let fx = Fixture::with(1, |c| c.auth_failure_limit(1, 3)).await;
        let mut n0 = node(0);
        let packet = first_packet(&mut n0);
        // Within the burst: plain 401s, each logged.
        let logged = fx.security_events().len();
        for _ in 0..3 {
            let reply = fx
                .raw(exchange_request(Some("st1.not-a-token"), packet.clone()))
                .await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
        }
        assert_eq!(fx.security_events().len(), logged + 3);
        // Over it: 429 with Retry-After, counted, not written to the log.
        let reply = fx
            .raw(exchange_request(Some("st1.not-a-token"), packet.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.text()
        );
        let after: u64 = reply.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&after), "Retry-After {after}");
        assert!(
            reply.text().contains("failed authentications"),
            "{}",
            reply.text()
        );
        assert_eq!(fx.security_events().len(), logged + 3);
        let metrics = fx.metrics().await;
        assert!(
            metrics
                .lines()
                .any(|l| l == "syncplan_limited_requests_total{limit=\"auth_failures\"} 1"),
            "{metrics}"
        );
        // A node with a valid token from the same address is served.
        let transport = fx.node_transport(0).await;
        let mut n0 = node(0);
        n0.insert(NOTE_SERVER_WINS, note("from behind the same address"), t(0))
            .expect("insert");
        sync(&mut n0, &transport).await.expect("a good node syncs");
        assert_eq!(hub_entities(&fx), 1);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_envelope_is_400_with_a_message() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let token = fx.token(0).await;
        let reply = fx
            .raw(exchange_request(
                Some(&token),
                &b"\x0a\x05hello, not an envelope"[..],
            ))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let e = refusal(&reply.body);
        assert_eq!(e.code, ErrorCode::Corrupt);
        assert!(
            e.message.contains("could not decode") || e.message.contains("malformed"),
            "{}",
            e.message
        );
        let wrong_type = post(Some(&token))
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from_static(b"<html>")))
            .expect("request");
        assert_eq!(
            fx.raw(wrong_type).await.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let wrong_coding = post(Some(&token))
            .header("content-encoding", "br")
            .body(Full::new(Bytes::from_static(b"x")))
            .expect("request");
        assert_eq!(
            fx.raw(wrong_coding).await.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(hub_entities(&fx), 0);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_mismatch_is_409_naming_both_versions() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let transport = fx.node_transport(0).await;
        let mut n = node_with(0, |c| c.schema_version(SchemaVersion::new(2, 3, 0)));
        n.insert(NOTE_SERVER_WINS, note("new schema"), t(0))
            .expect("insert");
        let token = transport.token();
        let reply = fx
            .raw(exchange_request(Some(&token), first_packet(&mut n)))
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT);
        let e = refusal(&reply.body);
        assert_eq!(e.code, ErrorCode::SchemaMismatch);
        assert!(
            e.message.contains("2.3.0") && e.message.contains("1.0.0"),
            "{}",
            e.message
        );
        // Through the transport the refusal is a reply the engine reads.
        let replies = transport
            .exchange(first_packet(&mut n))
            .await
            .expect("a reply");
        assert!(matches!(
            n.handle_incoming(&replies[0], t(1)),
            Err(sync_core::SyncError::Rejected {
                code: ErrorCode::SchemaMismatch,
                ..
            })
        ));
        assert_eq!(hub_entities(&fx), 0);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_for_another_recipient_is_400() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let token = fx.token(0).await;
        let elsewhere = NodeInfo::new(
            NodeId(Uuid::from_u128(0xdead)),
            "OTHER-HUB",
            "Other",
            Role::Hub,
        );
        let mut n = node(0);
        n.register_peer(elsewhere.clone()).expect("register");
        n.insert(NOTE_SERVER_WINS, note("misaddressed"), t(0))
            .expect("insert");
        n.start_sync(elsewhere.id).expect("start");
        let packet = n.poll_transmit(t(1)).expect("poll").expect("packet");
        let reply = fx.raw(exchange_request(Some(&token), packet.bytes)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(&reply.body).code, ErrorCode::WrongRecipient);
        assert_eq!(hub_entities(&fx), 0);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_header_and_body_timeouts() {
    bounded(async {
        let fx = Fixture::with(1, |c| {
            c.header_timeout(Duration::from_millis(300))
                .body_timeout(Duration::from_millis(300))
                .handshake_timeout(Duration::from_millis(300))
        })
        .await;
        let token = fx.token(0).await;
        // A connection that never starts its TLS handshake: closed.
        let mut silent = TcpStream::connect(fx.addr()).await.expect("connect");
        let started = std::time::Instant::now();
        let mut nothing = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut nothing)).await;
        assert!(closed.is_ok() && nothing.is_empty(), "the silent connection was not closed");
        assert!(started.elapsed() < Duration::from_secs(3), "held for {:?}", started.elapsed());
        // A header that never ends: the connection is closed.
        let started = std::time::Instant::now();
        let answer = send_raw(&fx, b"POST /v1/exchange HTTP/1.1\r\nhost: 127", Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(3), "held for {:?}", started.elapsed());
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        // A body that never arrives: 408.
        let head = format!(
            "POST /v1/exchange HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\ncontent-length: 1000\r\n\r\npartial"
        );
        let answer = send_raw(&fx, head.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_gets_no_service_and_the_client_refuses_http_urls() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let mut tcp = TcpStream::connect(fx.addr()).await.expect("connect");
        tcp.write_all(b"GET /v1/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP was answered: {:?}",
            String::from_utf8_lossy(&answer)
        );
        let url = format!("http://{}", fx.addr());
        assert!(matches!(
            HttpTransport::new(&url, "token", ClientConfig::default()),
            Err(ClientError::NotHttps { .. })
        ));
        let message = HttpTransport::new(&url, "token", ClientConfig::default())
            .expect_err("refused")
            .to_string();
        assert!(message.contains("https://"), "{message}");
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_is_gone_is_a_transient_error() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let transport = fx.transport_with(
            &fx.token(0).await,
            ClientConfig::default().connect_timeout(Duration::from_secs(2)),
        );
        fx.shutdown().await;
        let mut n = node(0);
        let error = transport
            .exchange(first_packet(&mut n))
            .await
            .expect_err("gone");
        assert!(error.is_transient(), "{error:?}");
    })
    .await;
}

/// Writes `bytes` on a new TLS connection and reads what comes back until
/// the server closes it or `wait` passes.
async fn send_raw(fx: &Fixture, bytes: &[u8], wait: Duration) -> String {
    let tcp = TcpStream::connect(fx.addr()).await.expect("connect");
    let mut tls = TlsConnector::from(fx.rustls())
        .connect(ServerName::IpAddress(fx.addr().ip().into()), tcp)
        .await
        .expect("TLS");
    // The server may answer and close before all is written.
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}
