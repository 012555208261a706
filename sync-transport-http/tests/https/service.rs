//! `HubService`: the hub's request handling on raw HTTP/1.1 bytes, without
//! sockets or TLS (what the `http_exchange` fuzz target drives).

use sync_conformance::fixtures::{record, t};
use sync_core::EntityKey;
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_transport_http::{EngineHub, HubService, ManualClock, PROTOBUF, ServerConfig};

use crate::common::*;

/// The status codes of every response in `answer`, and the body of the
/// first one (by its `content-length`).
fn statuses_and_first_body(answer: &[u8]) -> (Vec<u16>, Vec<u8>) {
    let text = String::from_utf8_lossy(answer);
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect();
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response header");
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    (statuses, answer[end + 4..end + 4 + len].to_vec())
}

#[tokio::test]
async fn raw_pipelined_requests_are_answered_without_a_network() {
    bounded(async {
        let clock = ManualClock::new(start_time());
        let config = ServerConfig::default().clock(clock.clock());
        let service = HubService::new(EngineHub::new(hub_engine(1)), config)
            .await
            .expect("keys load");
        let token = service.issue_token(node_id(0)).await.expect("a token");
        let mut n = node(0);
        let id = n
            .insert(NOTE_SERVER_WINS, record([("title", "raw".into())]), t(0))
            .expect("insert");
        let packet = first_packet(&mut n);
        let mut request = format!(
            "POST /v1/exchange HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {}\r\ncontent-type: {PROTOBUF}\r\ncontent-length: {}\r\n\r\n",
            token.as_str(),
            packet.len()
        )
        .into_bytes();
        request.extend_from_slice(&packet);
        request.extend(b"POST /v1/exchange HTTP/1.1\r\nhost: hub\r\ncontent-length: 0\r\n\r\n");
        request.extend(b"GET /v1/health HTTP/1.1\r\nhost: hub\r\n\r\n");
        let peer = "192.0.2.1:4000".parse().expect("an address");
        let answer = service.respond_raw(&request, peer).await;
        let (statuses, body) = statuses_and_first_body(&answer);
        assert_eq!(statuses, vec![200, 401, 200]);
        let reply = codec::decode_envelope(&body, &Limits::default()).expect("the reply decodes");
        assert!(matches!(reply, Envelope::Packet(_)));
        n.handle_incoming(&body, t(2)).expect("the node applies the reply");
        assert_eq!(n.pending_count(hub_id()).expect("pending"), 0);
        let key = EntityKey::new(NOTE_SERVER_WINS, id);
        let held = service
            .hub()
            .with_engine(|hub| hub.get(&key).expect("read").is_some());
        assert!(held, "the node's write reached the hub");
    })
    .await;
}
