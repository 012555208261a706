//! `HubService`: the hub's request handling on raw HTTP/1.1 bytes, without
//! sockets or TLS (what the `http_exchange` fuzz target drives).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sync_conformance::fixtures::{hub_info, node_info, record, registry, t};
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{ConflictStrategy, Engine, EngineConfig, EntityKey, Store, StoreError};
use sync_store_memory::MemoryStore;
use sync_transport_http::{
    EngineHub, Hub, HubAnswer, HubService, ManualClock, PROTOBUF, ServerConfig,
};

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

/// A memory store that counts the transactions begun on it.
struct Counting {
    inner: MemoryStore,
    begun: Arc<AtomicUsize>,
}

impl Store for Counting {
    type Txn<'a> = <MemoryStore as Store>::Txn<'a>;

    fn begin(&mut self) -> Result<Self::Txn<'_>, StoreError> {
        self.begun.fetch_add(1, Ordering::SeqCst);
        self.inner.begin()
    }
}

#[test]
fn an_exchange_costs_the_hub_one_store_transaction() {
    let begun = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: MemoryStore::new(),
        begun: Arc::clone(&begun),
    };
    let mut engine = Engine::new(
        store,
        registry(ConflictStrategy::ServerWins),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("a memory store");
    engine.register_peer(node_info(0)).expect("register");
    engine.register_peer(node_info(1)).expect("register");
    let hub = EngineHub::new(engine);
    hub.with_engine(|e| e.revoke_peer(node_id(1)))
        .expect("revoke");
    let mut n0 = node(0);
    n0.insert(NOTE_SERVER_WINS, record([("title", "one".into())]), t(0))
        .expect("insert");
    // The first exchange applies a change; the others are idle.
    for round in 0..3 {
        let request = first_packet(&mut n0);
        let before = begun.load(Ordering::SeqCst);
        let answer = hub
            .exchange(node_id(0), &request, start_time())
            .expect("the hub answers");
        assert_eq!(
            begun.load(Ordering::SeqCst) - before,
            1,
            "store transactions of exchange {round}"
        );
        let HubAnswer::Reply(reply) = answer else {
            panic!("node 0 is registered: {answer:?}");
        };
        assert_eq!(reply.outcome.error, None);
        assert_eq!(reply.outcome.applied, usize::from(round == 0));
        n0.handle_incoming(&reply.bytes, t(1))
            .expect("the reply applies");
        assert!(!n0.is_syncing(hub_id()), "one exchange ends the session");
    }
    // A revoked node's packet is refused in that one transaction too.
    let mut n1 = node(1);
    let request = first_packet(&mut n1);
    let before = begun.load(Ordering::SeqCst);
    let answer = hub
        .exchange(node_id(1), &request, start_time())
        .expect("the hub answers");
    assert!(matches!(answer, HubAnswer::RevokedNode), "{answer:?}");
    assert_eq!(begun.load(Ordering::SeqCst) - before, 1);
    assert_eq!(hub.with_engine(|e| e.store().inner.entity_count()), 1);
}
