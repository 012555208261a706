//! The transport suite: exchange semantics every [`Transport`] must have,
//! as public generic async functions.
//!
//! Each case takes `connect`, which returns a transport to the hub behind a
//! [`HubHandle`] (the fixture serves [`HubHandle::respond`] however its
//! transport needs). Cases drive node engines through the transport and
//! check what arrives, byte for byte where it matters. A transport must pass
//! requests and replies through unchanged, carry packets of many MiB, and
//! report an unreachable or failing hub as a transient [`TransportError`](sync_core::TransportError).
//! A refusal from the hub is a reply (an error envelope), not a transport
//! error. [`crate::transport_suite!`] stamps out one `#[test]` per case,
//! each run with `futures_executor::block_on`:
//!
//! ```ignore
//! sync_conformance::transport_suite!(loopback, sync_conformance::loopback::LoopbackTransport::connect);
//! ```

use bytes::Bytes;
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityKey, ErrorCode, Record, SyncError, Transport,
    Value,
};
use sync_store_memory::MemoryStore;

use crate::fixtures::{
    NOTE_SERVER_WINS, hub_id, hub_info, node_id, node_info, record, registry, t,
};
use crate::hub::HubHandle;
use crate::net::synced_state;
use crate::store_suite::values::noise;

/// Stamps out the transport suite: one `#[test]` per case in a module
/// named `$name`, each calling the case with `$connect` (usable as
/// `impl Fn(&HubHandle) -> T`).
#[macro_export]
macro_rules! transport_suite {
    ($name:ident, $connect:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__transport_cases! { $connect;
                exchange_carries_packet_and_reply,
                sessions_over_transport_converge,
                empty_exchange_returns_empty_packet,
                empty_request_gets_refusal,
                garbage_request_gets_refusal,
                refusal_is_a_reply_not_an_error,
                large_request_arrives_whole,
                large_reply_arrives_whole,
                many_exchanges_arrive_in_order,
                trains_carry_several_batches_per_exchange,
                duplicate_request_is_applied_once,
                reply_bytes_are_unchanged,
                concurrent_exchanges_from_threads,
                gone_peer_is_transient_error,
                peer_back_after_gone,
                hub_failure_is_transient_and_applies_nothing,
            }
        }
    };
}

/// Implementation detail of [`transport_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __transport_cases {
    ($connect:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::transport_suite::block_on($crate::transport_suite::$case($connect));
            }
        )*
    };
}

#[doc(hidden)]
pub use futures_executor::block_on;

/// A node engine on a memory store, registered with the hub.
pub type NodeEngine = Engine<MemoryStore>;

/// Node `i` (fixture registry, its hub registered), with `config` tweaks.
pub fn node_with(i: usize, tweak: impl Fn(EngineConfig) -> EngineConfig) -> NodeEngine {
    let mut node = Engine::new(
        MemoryStore::new(),
        registry(ConflictStrategy::ServerWins),
        tweak(EngineConfig::default().seed(100 + i as u64)),
        node_info(i),
    )
    .expect("a memory store cannot fail");
    node.register_peer(hub_info()).expect("register hub");
    node
}

/// Node `i` with the default config.
pub fn node(i: usize) -> NodeEngine {
    node_with(i, |c| c)
}

fn note(title: &str) -> Record {
    record([("title", title.into())])
}

/// Runs one sync session of `node` over `transport`; returns the number of
/// exchanges.
pub async fn sync_over<T: Transport>(
    node: &mut NodeEngine,
    transport: &T,
) -> Result<usize, SyncError> {
    node.start_sync(hub_id())?;
    let mut exchanges = 0;
    while let Some(packet) = node.poll_transmit(t(1))? {
        exchanges += 1;
        assert!(exchanges < 100_000, "a session does not end");
        let replies = transport
            .exchange(packet.bytes)
            .await
            .expect("exchange with a running hub");
        assert!(!replies.is_empty(), "a running hub always answers");
        for reply in replies {
            node.handle_incoming(&reply, t(1))?;
        }
    }
    Ok(exchanges)
}

fn decode(bytes: &[u8]) -> Envelope {
    codec::decode_envelope(bytes, &Limits::default()).expect("a reply decodes")
}

fn hub_entities(hub: &HubHandle) -> usize {
    hub.with_engine(|e| Ok(synced_state(e)?.len()))
}

/// One packet out, the hub's reply back: the hub applies the node's change
/// and the node applies the acknowledgement.
pub async fn exchange_carries_packet_and_reply<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node(0);
    let id = node
        .insert(NOTE_SERVER_WINS, note("hello"), t(0))
        .expect("insert");
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    let replies = transport.exchange(packet.bytes).await.expect("exchange");
    assert_eq!(replies.len(), 1, "one request, one reply");
    let incoming = node
        .handle_incoming(&replies[0], t(0))
        .expect("reply applies");
    assert_eq!(incoming.from, hub_id());
    assert_eq!(
        node.pending_count(hub_id()).expect("pending"),
        0,
        "acknowledged"
    );
    let key = EntityKey::new(NOTE_SERVER_WINS, id);
    let on_hub = hub.with_engine(|e| e.get(&key));
    assert_eq!(
        on_hub.expect("applied").fields["title"],
        Value::from("hello")
    );
}

/// Two nodes sync through their own transports until they agree.
pub async fn sessions_over_transport_converge<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(2);
    let transports = [connect(&hub), connect(&hub)];
    let mut nodes = [node(0), node(1)];
    for (i, n) in nodes.iter_mut().enumerate() {
        for k in 0..5 {
            n.insert(NOTE_SERVER_WINS, note(&format!("{i}-{k}")), t(k))
                .expect("insert");
        }
    }
    for _ in 0..2 {
        for (n, transport) in nodes.iter_mut().zip(&transports) {
            sync_over(n, transport).await.expect("sync");
        }
    }
    let hub_state = hub.with_engine(|e| Ok(synced_state(e)?));
    assert_eq!(hub_state.len(), 10);
    for n in &mut nodes {
        assert_eq!(synced_state(n).expect("state"), hub_state);
    }
}

/// With nothing to send either way, an exchange still returns the hub's
/// (empty) packet.
pub async fn empty_exchange_returns_empty_packet<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node(0);
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    assert_eq!(packet.entity_count, 0);
    let replies = transport.exchange(packet.bytes).await.expect("exchange");
    assert_eq!(replies.len(), 1);
    match decode(&replies[0]) {
        Envelope::Packet(p) => assert_eq!(p.header.entity_count, 0),
        Envelope::Error(e) => panic!("refused: {e:?}"),
        Envelope::Train(t) => panic!("nothing to send, yet a train of {} packets", t.len()),
    }
    let incoming = node.handle_incoming(&replies[0], t(0)).expect("applies");
    assert_eq!(incoming.applied, 0);
    assert!(
        !node.is_syncing(hub_id()),
        "nothing to do: the session ends"
    );
}

fn assert_refusal(replies: &[Bytes], code: ErrorCode) {
    assert!(
        !replies.is_empty(),
        "the hub answers a bad request with a refusal"
    );
    for reply in replies {
        match decode(reply) {
            Envelope::Error(e) => assert_eq!(e.code, code),
            Envelope::Packet(_) | Envelope::Train(_) => {
                panic!("a bad request was answered with a packet")
            }
        }
    }
}

/// Zero bytes are carried like any request: the hub refuses them as
/// corrupt, and that refusal comes back as the reply.
pub async fn empty_request_gets_refusal<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let replies = connect(&hub)
        .exchange(Bytes::new())
        .await
        .expect("exchange");
    assert_refusal(&replies, ErrorCode::Corrupt);
}

/// Random bytes get a corruption refusal; the hub stays usable.
pub async fn garbage_request_gets_refusal<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    for seed in 0..5 {
        let garbage = Bytes::from(noise(1 + 997 * seed as usize, seed));
        let replies = transport.exchange(garbage).await.expect("exchange");
        assert_refusal(&replies, ErrorCode::Corrupt);
    }
    let mut node = node(0);
    node.insert(NOTE_SERVER_WINS, note("after garbage"), t(0))
        .expect("insert");
    sync_over(&mut node, &transport).await.expect("sync");
    assert_eq!(hub_entities(&hub), 1);
}

/// A packet from a node the hub does not know is refused with a reply the
/// node's engine turns into [`SyncError::Rejected`].
pub async fn refusal_is_a_reply_not_an_error<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut stranger = node(7);
    stranger.start_sync(hub_id()).expect("start");
    let packet = stranger.poll_transmit(t(0)).expect("poll").expect("packet");
    let replies = transport
        .exchange(packet.bytes)
        .await
        .expect("a refusal is a reply");
    assert_refusal(&replies, ErrorCode::UnknownNode);
    match stranger.handle_incoming(&replies[0], t(0)) {
        Err(SyncError::Rejected {
            code, retryable, ..
        }) => {
            assert_eq!(code, ErrorCode::UnknownNode);
            assert!(!retryable);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// An 8 MiB entity in a request arrives whole.
pub async fn large_request_arrives_whole<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node(0);
    let data = noise(8 << 20, 11);
    let fields = record([
        ("title", "big".into()),
        ("data", Value::Bytes(data.clone())),
    ]);
    let id = node.insert(NOTE_SERVER_WINS, fields, t(0)).expect("insert");
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    assert!(packet.bytes.len() > 8 << 20, "the request is over 8 MiB");
    let replies = transport.exchange(packet.bytes).await.expect("exchange");
    node.handle_incoming(&replies[0], t(0)).expect("reply");
    let on_hub = hub.with_engine(|e| e.get(&EntityKey::new(NOTE_SERVER_WINS, id)));
    assert!(on_hub.expect("arrived").fields["data"] == Value::Bytes(data));
}

/// An 8 MiB entity in a reply arrives whole.
pub async fn large_reply_arrives_whole<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let data = noise(8 << 20, 12);
    let fields = record([
        ("title", "big".into()),
        ("data", Value::Bytes(data.clone())),
    ]);
    let id = hub.with_engine(|e| e.insert(NOTE_SERVER_WINS, fields, t(0)));
    let mut node = node(0);
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    let replies = transport.exchange(packet.bytes).await.expect("exchange");
    assert!(replies.iter().map(Bytes::len).sum::<usize>() > 8 << 20);
    for reply in &replies {
        node.handle_incoming(reply, t(0)).expect("reply");
    }
    let on_node = node
        .get(&EntityKey::new(NOTE_SERVER_WINS, id))
        .expect("get");
    assert!(on_node.expect("arrived").fields["data"] == Value::Bytes(data));
}

/// Hundreds of changes in batches of five: a long session of exchanges
/// delivers every change, in order.
pub async fn many_exchanges_arrive_in_order<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node_with(0, |c| c.batch(5, 1 << 20).pipeline(1));
    for k in 0..300 {
        node.insert(NOTE_SERVER_WINS, note(&format!("n{k}")), t(k))
            .expect("insert");
    }
    let exchanges = sync_over(&mut node, &transport).await.expect("sync");
    assert!(
        exchanges >= 60,
        "{exchanges} exchanges for 300 changes in fives"
    );
    assert_eq!(hub_entities(&hub), 300);
    assert_eq!(
        hub.with_engine(|e| e.peer(node_id(0))).received_packet_no,
        exchanges as u64
    );
}

/// Hundreds of changes in batches of five, eight packets per message:
/// each exchange carries a train of batches, and every change arrives.
pub async fn trains_carry_several_batches_per_exchange<T: Transport>(
    connect: impl Fn(&HubHandle) -> T,
) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node_with(0, |c| c.batch(5, 1 << 20).pipeline(8));
    for k in 0..300 {
        node.insert(NOTE_SERVER_WINS, note(&format!("n{k}")), t(k))
            .expect("insert");
    }
    let exchanges = sync_over(&mut node, &transport).await.expect("sync");
    // 60 packets in trains of 8: 8 messages, and one more to acknowledge
    // the hub's last reply.
    assert!(
        exchanges <= 10,
        "{exchanges} exchanges for 60 packets in trains of 8"
    );
    assert_eq!(hub_entities(&hub), 300);
    let received = hub.with_engine(|e| e.peer(node_id(0))).received_packet_no;
    assert!(received >= 60, "the hub applied {received} packets");
    assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
}

/// The same request sent twice is applied once and acknowledged twice.
pub async fn duplicate_request_is_applied_once<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node(0);
    node.insert(NOTE_SERVER_WINS, note("once"), t(0))
        .expect("insert");
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    let first = transport
        .exchange(packet.bytes.clone())
        .await
        .expect("exchange");
    let state = hub.with_engine(|e| Ok(synced_state(e)?));
    let second = transport.exchange(packet.bytes).await.expect("exchange");
    assert_eq!(hub.with_engine(|e| Ok(synced_state(e)?)), state);
    for reply in first.iter().chain(&second) {
        node.handle_incoming(reply, t(0)).expect("reply");
    }
    assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
    assert_eq!(hub_entities(&hub), 1);
}

/// Replies come back byte for byte as the hub built them: a twin hub in the
/// same state, asked directly, gives identical bytes.
pub async fn reply_bytes_are_unchanged<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let twin = HubHandle::new(1);
    for h in [&hub, &twin] {
        h.with_engine(|e| e.insert(NOTE_SERVER_WINS, note("from hub"), t(0)));
    }
    let transport = connect(&hub);
    let mut node = node(0);
    node.insert(NOTE_SERVER_WINS, note("from node"), t(0))
        .expect("insert");
    node.start_sync(hub_id()).expect("start");
    while let Some(packet) = node.poll_transmit(t(1)).expect("poll") {
        let expected = twin.respond(&packet.bytes).expect("twin answers");
        let replies = transport.exchange(packet.bytes).await.expect("exchange");
        assert_eq!(replies, vec![expected], "the transport changed the reply");
        node.handle_incoming(&replies[0], t(1)).expect("reply");
    }
}

/// Four threads, each with its own node and transport, sync at once.
pub async fn concurrent_exchanges_from_threads<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(4);
    let transports: Vec<T> = (0..4).map(|_| connect(&hub)).collect();
    std::thread::scope(|scope| {
        for (i, transport) in transports.iter().enumerate() {
            scope.spawn(move || {
                let mut n = node(i);
                for k in 0..20 {
                    n.insert(NOTE_SERVER_WINS, note(&format!("{i}-{k}")), t(k))
                        .expect("insert");
                }
                block_on(sync_over(&mut n, transport)).expect("sync");
                assert_eq!(n.pending_count(hub_id()).expect("pending"), 0);
            });
        }
    });
    assert_eq!(hub_entities(&hub), 80);
}

/// A hub that is gone is a transient error, not a reply.
pub async fn gone_peer_is_transient_error<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    hub.stop();
    let mut node = node(0);
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    let error = transport
        .exchange(packet.bytes)
        .await
        .expect_err("a gone hub cannot answer");
    assert!(error.is_transient(), "{error:?} must be transient");
}

/// After the hub comes back, the same transport works again and the
/// node's unacknowledged change is delivered.
pub async fn peer_back_after_gone<T: Transport>(connect: impl Fn(&HubHandle) -> T) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node(0);
    node.insert(NOTE_SERVER_WINS, note("patient"), t(0))
        .expect("insert");
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    hub.stop();
    assert!(transport.exchange(packet.bytes).await.is_err());
    hub.start();
    sync_over(&mut node, &transport)
        .await
        .expect("sync after the hub is back");
    assert_eq!(hub_entities(&hub), 1);
    assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
}

/// A hub whose store fails answers with a transient error and applies
/// nothing; the retry succeeds.
pub async fn hub_failure_is_transient_and_applies_nothing<T: Transport>(
    connect: impl Fn(&HubHandle) -> T,
) {
    let hub = HubHandle::new(1);
    let transport = connect(&hub);
    let mut node = node(0);
    node.insert(NOTE_SERVER_WINS, note("retry me"), t(0))
        .expect("insert");
    node.start_sync(hub_id()).expect("start");
    let packet = node.poll_transmit(t(0)).expect("poll").expect("packet");
    hub.fail_next_request();
    let error = transport
        .exchange(packet.bytes.clone())
        .await
        .expect_err("the hub failed");
    assert!(error.is_transient(), "{error:?} must be transient");
    assert_eq!(hub_entities(&hub), 0, "a failed request applies nothing");
    let replies = transport.exchange(packet.bytes).await.expect("retry");
    node.handle_incoming(&replies[0], t(0)).expect("reply");
    assert_eq!(hub_entities(&hub), 1);
    assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
}
