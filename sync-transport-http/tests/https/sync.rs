//! Hub and nodes syncing through the server; JSON; long-poll; health;
//! metrics; keep-alive; CA roots.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use sync_conformance::fixtures::{record, t};
use sync_conformance::net::synced_state;
use sync_core::{EntityKey, Transport, Uuid, Value};
use sync_transport_http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, ManualClock, ServerConfig, TlsIdentity,
    Trust,
};

use crate::common::*;

fn note(title: &str) -> sync_core::Record {
    record([("title", title.into())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_three_nodes_sync_through_the_server() {
    bounded(async {
        let fx = Fixture::start(3).await;
        let mut nodes = [node(0), node(1), node(2)];
        let mut transports = Vec::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            transports.push(fx.node_transport(i).await);
            for k in 0..10 {
                n.insert(NOTE_SERVER_WINS, note(&format!("{i}-{k}")), t(k))
                    .expect("insert");
            }
        }
        fx.hub
            .with_engine(|e| e.insert(NOTE_SERVER_WINS, note("from the hub"), t(0)))
            .expect("hub write");
        for _ in 0..2 {
            for (n, transport) in nodes.iter_mut().zip(&transports) {
                sync(n, transport).await.expect("sync");
            }
        }
        let hub_state = fx.hub.with_engine(synced_state).expect("state");
        assert_eq!(hub_state.len(), 31);
        for n in &mut nodes {
            assert_eq!(synced_state(n).expect("state"), hub_state);
            assert_eq!(n.pending_count(hub_id()).expect("pending"), 0);
        }
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_trusting_the_hubs_own_ca_syncs_and_one_trusting_another_ca_does_not() {
    bounded(async {
        let (ca_pem, identity) = ca_and_leaf();
        let (other_ca_pem, _) = ca_and_leaf();
        let hub = EngineHub::new(hub_engine(1));
        let server = HubServer::bind(
            "127.0.0.1:0".parse().expect("addr"),
            identity.server_config().expect("tls"),
            hub.clone(),
            ServerConfig::default().clock(ManualClock::new(start_time()).clock()),
        )
        .await
        .expect("server");
        let token = server.issue_token(node_id(0)).await.expect("token");
        let trusted = HttpTransport::new(
            &server.url(),
            token.as_str(),
            ClientConfig::default().trust(Trust::roots_from_pem(ca_pem.as_bytes()).expect("ca")),
        )
        .expect("transport");
        let mut n = node(0);
        n.insert(NOTE_SERVER_WINS, note("via CA"), t(0))
            .expect("insert");

        let stranger = HttpTransport::new(
            &server.url(),
            token.as_str(),
            ClientConfig::default()
                .trust(Trust::roots_from_pem(other_ca_pem.as_bytes()).expect("ca")),
        )
        .expect("transport");
        let error = stranger
            .exchange(first_packet(&mut n))
            .await
            .expect_err("another CA's hub is not trusted");
        assert!(error.to_string().contains("certificate"), "{error}");
        assert_eq!(hub.with_engine(synced_state).expect("state").len(), 0);

        sync(&mut n, &trusted).await.expect("sync");
        assert_eq!(hub.with_engine(synced_state).expect("state").len(), 1);
        server.shutdown().await;
    })
    .await;
}

/// A CA certificate (PEM) and a leaf for 127.0.0.1 signed by it.
fn ca_and_leaf() -> (String, TlsIdentity) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let identity =
        TlsIdentity::from_pem(leaf.pem().as_bytes(), leaf_key.serialize_pem().as_bytes())
            .expect("identity");
    (ca.pem(), identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_when_the_hub_has_something_and_is_bounded() {
    bounded(async {
        let fx = Fixture::start(2).await;
        let waiter = fx.node_transport(0).await;
        let writer = fx.node_transport(1).await;

        let started = Instant::now();
        assert_eq!(
            waiter.wait(Duration::from_millis(300)).await.expect("wait"),
            0
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{waited:?}"
        );

        let waiting = tokio::spawn({
            let waiter = waiter.clone();
            async move {
                let started = Instant::now();
                (
                    waiter.wait(Duration::from_secs(20)).await,
                    started.elapsed(),
                )
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut n1 = node(1);
        n1.insert(NOTE_SERVER_WINS, note("wake up"), t(0))
            .expect("insert");
        sync(&mut n1, &writer).await.expect("sync");
        let (pending, waited) = waiting.await.expect("task");
        assert_eq!(pending.expect("wait"), 1);
        assert!(waited < Duration::from_secs(10), "woken late: {waited:?}");
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_status_versions_and_store() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let health = fx.node_transport(0).await.health().await.expect("health");
        assert_eq!(health["status"], "ok");
        assert_eq!(health["store"], "reachable");
        assert_eq!(health["schema_version"], "1.0.0");
        assert_eq!(health["protocol_version"], 1);
        assert_eq!(health["hub_node_id"], hub_id().to_string());
        assert!(health["server_version"].is_string());
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exchanges_changes_failures_connections_and_lag() {
    bounded(async {
        let fx = Fixture::start(2).await;
        let transport = fx.node_transport(0).await;
        let mut n = node(0);
        for k in 0..3 {
            n.insert(NOTE_SERVER_WINS, note(&format!("m{k}")), t(k))
                .expect("insert");
        }
        let exchanges = sync(&mut n, &transport).await.expect("sync");
        let bad = fx.raw(get("/v1/wait", Some("st1.nonsense"))).await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        let text = fx.metrics().await;
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a value")
        };
        assert_eq!(
            line("syncplan_exchanges_total{result=\"ok\"}"),
            exchanges as f64
        );
        assert_eq!(line("syncplan_entities_applied_total"), 3.0);
        assert_eq!(line("syncplan_rejected_changes_total"), 0.0);
        assert_eq!(
            line("syncplan_packets_total{direction=\"in\"}"),
            exchanges as f64
        );
        assert_eq!(
            line("syncplan_auth_failures_total{reason=\"malformed\"}"),
            1.0
        );
        assert_eq!(
            line("syncplan_exchange_duration_seconds_count"),
            exchanges as f64
        );
        // Node 1 is owed the three changes, written at t(0)..t(2); node 0 nothing.
        let owed = format!("syncplan_node_pending_changes{{node=\"{}\"}}", node_id(1));
        assert_eq!(line(&owed), 3.0);
        let age = format!(
            "syncplan_node_oldest_unacknowledged_age_seconds{{node=\"{}\"}}",
            node_id(1)
        );
        let age = line(&age);
        assert!(
            (97.0..=100.0).contains(&age),
            "oldest change is {age} s old"
        );
        // One kept-alive connection for the whole session, plus the raw ones.
        assert_eq!(line("syncplan_connections_total"), 3.0);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_requests_are_applied_and_answered_in_the_envelope_shape() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let token = fx.token(0).await;
        let id = Uuid::from_u128(0xfeed);
        let request = |body: serde_json::Value| {
            post(Some(&token))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request")
        };
        let first = fx
            .raw(request(serde_json::json!({
                "header": {
                    "sender_node_id": node_id(0).to_string(),
                    "recipient_node_id": hub_id().to_string(),
                    "packet_no": 1,
                    "ack_packet_no": 0,
                    "schema_version": "1.0.0",
                    "timestamp": "2025-12-12T10:30:00Z"
                },
                "body": { "entities": [ {
                    "type": NOTE_SERVER_WINS, "uuid": id.to_string(), "operation": "INSERT",
                    "data": { "title": "from curl" }
                } ] }
            })))
            .await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        let reply: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
        assert_eq!(reply["header"]["sender_node_id"], hub_id().to_string());
        assert_eq!(reply["header"]["ack_packet_no"], 1);
        let on_hub = fx
            .hub
            .with_engine(|e| e.get(&EntityKey::new(NOTE_SERVER_WINS, id)))
            .expect("get")
            .expect("applied");
        assert_eq!(on_hub.fields["title"], Value::from("from curl"));

        // The next request acknowledges the hub's packet with the digests
        // the reply gave: no restore is detected, nothing is resent.
        let second = fx
            .raw(request(serde_json::json!({
                "header": {
                    "sender_node_id": node_id(0).to_string(),
                    "recipient_node_id": hub_id().to_string(),
                    "packet_no": 2,
                    "ack_packet_no": reply["header"]["packet_no"],
                    "ack_digest": reply["header"]["packet_digest"],
                    "prev_digest": reply["header"]["request_digest"],
                    "schema_version": "1.0.0",
                    "timestamp": "2025-12-12T10:30:01Z"
                },
                "body": { "entities": [] }
            })))
            .await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text());
        let peer = fx.hub.with_engine(|e| e.peer(node_id(0))).expect("peer");
        assert_eq!(peer.received_packet_no, 2);
        assert!(
            fx.security_events()
                .iter()
                .all(|e| e.kind != sync_core::SecurityKind::RestoreDetected)
        );

        let broken = fx.raw(request(serde_json::json!({ "header": {} }))).await;
        assert_eq!(broken.status, StatusCode::BAD_REQUEST);
        assert!(broken.text().contains("envelope"), "{}", broken.text());
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restarted_on_its_store_serves_the_same_nodes() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let token = fx.token(0).await;
        let mut n = node(0);
        n.insert(NOTE_SERVER_WINS, note("before"), t(0))
            .expect("insert");
        sync(&mut n, &fx.transport(&token)).await.expect("sync");
        let fx = fx.restart(ServerConfig::default()).await;
        n.insert(NOTE_SERVER_WINS, note("after"), t(1))
            .expect("insert");
        sync(&mut n, &fx.transport(&token))
            .await
            .expect("the old token still works");
        assert_eq!(fx.hub.with_engine(synced_state).expect("state").len(), 2);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_are_answered_plainly() {
    bounded(async {
        let fx = Fixture::start(1).await;
        assert_eq!(
            fx.raw(get("/nope", None)).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            fx.raw(get("/v1/exchange", None)).await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let request = Request::put("/v1/health")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .expect("request");
        assert_eq!(fx.raw(request).await.status, StatusCode::METHOD_NOT_ALLOWED);
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_counted_by_strategy() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let transport = fx.node_transport(0).await;
        let id = fx
            .hub
            .with_engine(|e| e.insert(NOTE_SERVER_WINS, note("original"), t(0)))
            .expect("hub write");
        let key = EntityKey::new(NOTE_SERVER_WINS, id);
        let mut n = node(0);
        sync(&mut n, &transport).await.expect("sync");
        // Both sides edit the same note while apart.
        fx.hub
            .with_engine(|e| e.put(key.clone(), note("hub's edit"), t(2)))
            .expect("hub edit");
        n.put(key.clone(), note("node's edit"), t(3))
            .expect("node edit");
        sync(&mut n, &transport).await.expect("sync");
        let on_node = n.get(&key).expect("get").expect("kept");
        assert_eq!(
            on_node.fields["title"],
            Value::from("hub's edit"),
            "server wins"
        );
        let metrics = fx.metrics().await;
        assert!(
            metrics.contains("syncplan_conflicts_total{strategy=\"server-wins\"} 1"),
            "{metrics}"
        );
        fx.shutdown().await;
    })
    .await;
}
