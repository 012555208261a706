//! The seed corpora of the token, sealed-file and HTTP targets, generated
//! from real tokens, real sealed files and real requests (node 0's packets
//! to the same hubs the targets build). Part of [`crate::corpus`].

use sync_conformance::fixtures::{self, node_info, t};
use sync_core::token::KeySet;
use sync_core::{Codec, Record, Value};
use sync_transport_http::ContentCoding;

use crate::corpus::{Seed, every_kind, node_sessions, recorded_session, seed_node};
use crate::file_import::{self, DROP_LAST, REVERSE, SEAL, SMALL_FILES};
use crate::http_exchange;
use crate::token::{self, RESIGN};
use crate::{engine_receive, fixup};

/// Seeds of `token`: real tokens of the fixed key set (current key, retired
/// key, expired, issued after its key retired, unknown key, tampered), and
/// a real stored signing key.
pub fn token_seeds() -> Vec<Seed> {
    let keys = token::keys();
    let node = node_info(0).id;
    let hour = 3_600_000_000;
    let current = keys.issue(node, t(550), hour);
    let retired = KeySet::new(1, token::secret(1), t(0)).issue(node, t(100), hour);
    let late = KeySet::new(1, token::secret(1), t(0)).issue(node, t(600), hour);
    let unknown = KeySet::new(9, [9; 32], t(0)).issue(node, t(550), hour);
    let mut tampered = current.as_str().as_bytes().to_vec();
    if let Some(last) = tampered.last_mut() {
        *last = if *last == b'0' { b'1' } else { b'0' };
    }
    let stored = keys.keys().next().map(|k| k.to_bytes()).unwrap_or_default();
    vec![
        (
            "current-key".into(),
            token::frame(0, 600, current.as_str().as_bytes()),
        ),
        (
            "current-key-resigned".into(),
            token::frame(RESIGN, 600, current.as_str().as_bytes()),
        ),
        (
            "retired-key-still-valid".into(),
            token::frame(0, 600, retired.as_str().as_bytes()),
        ),
        (
            "expired".into(),
            token::frame(RESIGN, 5_000, current.as_str().as_bytes()),
        ),
        (
            "signed-after-its-key-retired".into(),
            token::frame(RESIGN, 700, late.as_str().as_bytes()),
        ),
        (
            "unknown-key".into(),
            token::frame(RESIGN, 600, unknown.as_str().as_bytes()),
        ),
        ("tampered-tag".into(), token::frame(0, 600, &tampered)),
        ("stored-signing-key".into(), token::frame(0, 600, &stored)),
    ]
}

/// Node 0's packets to the hub: the inserts and the updates and deletes of
/// two sessions, and a packet large enough to need several parts at the
/// smallest file size.
fn file_envelopes() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let sessions = node_sessions(Codec::Zstd, 5_000);
    let inserts = sessions[0][0].request.clone();
    let updates = sessions[1][0].request.clone();
    let mut hub = engine_receive::new_hub();
    let mut node = seed_node(Codec::None, 5_000);
    for i in 0..40 {
        node.insert(fixtures::NOTE_KEEP_BOTH, every_kind(i), t(1))
            .expect("insert");
    }
    let large = recorded_session(&mut node, &mut hub, t(2))[0]
        .request
        .clone();
    (inserts, updates, large)
}

/// Seeds of `file_import`: real sealed files of node 0's exports (one
/// file; the parts of a split export), and envelopes for the target to
/// seal (one export, two, parts in reverse order, a part missing).
pub fn file_import_seeds() -> Vec<Seed> {
    let (inserts, updates, large) = file_envelopes();
    let parts = file_import::seal(&large, true);
    assert!(parts.len() >= 2, "the large packet splits into parts");
    let sealed = |flags: u8, envelopes: &[&Vec<u8>]| {
        let mut out = vec![flags];
        out.extend(fixup::join_frames(
            &envelopes.iter().map(|e| (*e).clone()).collect::<Vec<_>>(),
        ));
        out
    };
    let raw = |files: Vec<(String, Vec<u8>)>| {
        let mut out = vec![0];
        out.extend(file_import::frame_files(&files));
        out
    };
    vec![
        (
            "real-file-inserts".into(),
            raw(file_import::seal(&inserts, false)),
        ),
        ("real-files-three-parts".into(), raw(parts)),
        ("seal-inserts".into(), sealed(SEAL, &[&inserts])),
        (
            "seal-two-exports".into(),
            sealed(SEAL, &[&inserts, &updates]),
        ),
        (
            "seal-parts-reversed".into(),
            sealed(SEAL | SMALL_FILES | REVERSE, &[&large]),
        ),
        (
            "seal-part-missing".into(),
            sealed(SEAL | SMALL_FILES | DROP_LAST, &[&large]),
        ),
    ]
}

/// One HTTP/1.1 request as a client writes it.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: hub.example\r\n").into_bytes();
    for (name, value) in headers {
        out.extend(format!("{name}: {value}\r\n").into_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend(format!("content-length: {}\r\n", body.len()).into_bytes());
    }
    out.extend(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Seeds of `http_exchange`: real requests of node 0 to the target's hub,
/// with tokens the hub issued: a whole session pipelined (identity, zstd,
/// gzip), a JSON exchange, a long poll, health and metrics, and refusals
/// (a tampered token, a revoked node, no token, a body announced over the
/// limit).
pub fn http_exchange_seeds() -> Vec<Seed> {
    let now = http_exchange::now();
    let (token, revoked) = http_exchange::block_on(async {
        let service = http_exchange::new_service().await;
        let token = service
            .issue_token(node_info(0).id)
            .await
            .expect("issue a token");
        let keys = KeySet::from_keys(vec![http_exchange::signing_key()]).expect("a current key");
        let revoked = keys.issue(http_exchange::revoked_info().id, now, 3_600_000_000);
        (token, revoked)
    });
    let bearer = format!("Bearer {}", token.as_str());
    let mut hub = http_exchange::new_hub_engine();
    let mut node = seed_node(Codec::Zstd, 2);
    let report = node
        .insert(
            fixtures::REPORT,
            Record::from([("date".to_owned(), Value::from("2025-12-12"))]),
            now,
        )
        .expect("insert");
    node.insert(fixtures::NOTE_KEEP_BOTH, every_kind(3), now)
        .expect("insert");
    node.insert(
        fixtures::LINE,
        Record::from([("report_id".to_owned(), Value::Uuid(report))]),
        now,
    )
    .expect("insert");
    let session: Vec<Vec<u8>> = recorded_session(&mut node, &mut hub, now)
        .into_iter()
        .map(|e| e.request)
        .collect();
    let exchange = |coding: ContentCoding, packets: &[Vec<u8>]| {
        let mut out = Vec::new();
        for packet in packets {
            let mut headers = vec![
                ("authorization", bearer.as_str()),
                ("content-type", sync_transport_http::PROTOBUF),
            ];
            if let Some(name) = coding.token() {
                headers.push(("content-encoding", name));
                headers.push(("accept-encoding", name));
            }
            out.extend(request(
                "POST",
                "/v1/exchange",
                &headers,
                &coding.encode(packet),
            ));
        }
        out
    };
    let schema = hub.config().schema.own.to_string();
    let json = format!(
        r#"{{"header":{{"sender_node_id":"{}","recipient_node_id":"{}","packet_no":1,"schema_version":"{schema}"}},"body":{{"entities":[{{"type":"{}","uuid":"{}","operation":"INSERT","data":{{"title":"from curl","n":3}}}}]}}}}"#,
        node_info(0).id,
        fixtures::hub_info().id,
        fixtures::NOTE_SERVER_WINS,
        sync_core::Uuid::from_u128(0x5eed_0001),
    );
    let mut tampered = bearer.clone();
    tampered.pop();
    tampered.push('x');
    let revoked_bearer = format!("Bearer {}", revoked.as_str());
    let first = &session[..1];
    vec![
        (
            "session-identity".into(),
            exchange(ContentCoding::Identity, &session),
        ),
        (
            "session-zstd".into(),
            exchange(ContentCoding::Zstd, &session),
        ),
        (
            "session-gzip".into(),
            exchange(ContentCoding::Gzip, &session),
        ),
        (
            "json-exchange".into(),
            request(
                "POST",
                "/v1/exchange",
                &[
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/json"),
                ],
                json.as_bytes(),
            ),
        ),
        ("wait-health-metrics".into(), {
            let mut out = request(
                "GET",
                "/v1/wait?timeout=0",
                &[("authorization", bearer.as_str())],
                b"",
            );
            out.extend(request("GET", "/v1/health", &[], b""));
            out.extend(request("GET", "/metrics", &[], b""));
            out
        }),
        ("refused-tokens".into(), {
            let mut out = Vec::new();
            for auth in [tampered.as_str(), revoked_bearer.as_str()] {
                out.extend(request(
                    "POST",
                    "/v1/exchange",
                    &[
                        ("authorization", auth),
                        ("content-type", sync_transport_http::PROTOBUF),
                    ],
                    &first[0],
                ));
            }
            out.extend(request(
                "POST",
                "/v1/exchange",
                &[("content-type", sync_transport_http::PROTOBUF)],
                &first[0],
            ));
            out
        }),
        ("announced-256mib-body".into(), {
            let mut out = format!(
                "POST /v1/exchange HTTP/1.1\r\nhost: hub.example\r\nauthorization: {bearer}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
                256u64 << 20
            )
            .into_bytes();
            out.extend_from_slice(&first[0]);
            out
        }),
    ]
}
