//! The async driver through its public API: sessions converge, transient
//! failures are retried on the engine's backoff, permanent ones are not,
//! progress is reported, auto-sync follows live push and backs off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use syncplan::{
    AutoSync, DriverError, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, Event,
    FieldKind, LocalHub, LocalTransport, MemoryStore, Node, NodeConfig, NodeId, NodeInfo, Record,
    RetryPolicy, Role, SessionEvent, SyncError, Transport, TransportError, Uuid, Value,
};

fn registry() -> EntityRegistry {
    EntityRegistry::new().with(EntityType::new("Note").field("text", FieldKind::Text))
}

fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

fn node_info(i: u128) -> NodeInfo {
    NodeInfo::new(
        NodeId(Uuid::from_u128(0x100 + i)),
        format!("NODE-{i}"),
        format!("Node {i}"),
        Role::Node,
    )
}

/// Fast retries, so the tests wait milliseconds, not seconds.
fn config(seed: u64) -> EngineConfig {
    EngineConfig::default().seed(seed).retry(RetryPolicy {
        initial_ms: 10,
        max_ms: 50,
        multiplier: 2.0,
        jitter: 0.0,
    })
}

fn hub_with(nodes: u128) -> LocalHub<MemoryStore> {
    let mut hub = Engine::new(MemoryStore::new(), registry(), config(1), hub_info()).unwrap();
    for i in 1..=nodes {
        hub.register_peer(node_info(i)).unwrap();
    }
    LocalHub::new(hub)
}

fn engine(i: u128) -> Engine<MemoryStore> {
    let mut engine = Engine::new(
        MemoryStore::new(),
        registry(),
        config(10 + i as u64),
        node_info(i),
    )
    .unwrap();
    engine.register_peer(hub_info()).unwrap();
    engine
}

fn node(hub: &LocalHub<MemoryStore>, i: u128) -> Node<MemoryStore> {
    let transport = Arc::new(hub.transport(node_info(i).id));
    Node::builder_shared(engine(i), hub_info().id, transport.clone())
        .push(transport)
        .build()
}

fn note(text: &str) -> Record {
    Record::from([("text".into(), Value::from(text))])
}

async fn write(node: &Node<MemoryStore>, text: &str) -> EntityKey {
    let fields = note(text);
    let id = node
        .with_engine(move |e| e.insert("Note", fields, syncplan::now()))
        .await
        .unwrap()
        .unwrap();
    EntityKey::new("Note", id)
}

async fn text_on(node: &Node<MemoryStore>, key: &EntityKey) -> Option<Value> {
    let key = key.clone();
    node.with_engine(move |e| e.get(&key))
        .await
        .unwrap()
        .unwrap()
        .and_then(|e| e.fields.get("text").cloned())
}

async fn pending(node: &Node<MemoryStore>) -> u64 {
    let hub = node.hub();
    node.with_engine(move |e| e.pending_count(hub))
        .await
        .unwrap()
        .unwrap()
}

/// A transport that fails its first `failures` exchanges as unreachable,
/// then passes them to `inner`.
struct Flaky {
    inner: LocalTransport<MemoryStore>,
    failures: u32,
    calls: AtomicU32,
}

#[async_trait::async_trait]
impl Transport for Flaky {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(TransportError::Unreachable {
                target: "flaky".into(),
                detail: "connection refused".into(),
            });
        }
        self.inner.exchange(outgoing).await
    }
}

fn flaky_node(
    hub: &LocalHub<MemoryStore>,
    i: u128,
    failures: u32,
    attempts: u32,
) -> Node<MemoryStore> {
    let transport = Flaky {
        inner: hub.transport(node_info(i).id),
        failures,
        calls: AtomicU32::new(0),
    };
    Node::builder(engine(i), hub_info().id, transport)
        .config(NodeConfig::default().max_attempts(attempts))
        .build()
}

#[tokio::test]
async fn two_nodes_in_memory_converge() {
    let hub = hub_with(2);
    let (a, b) = (node(&hub, 1), node(&hub, 2));
    let from_a = write(&a, "from a").await;
    let from_b = write(&b, "from b").await;
    let first = a.sync().await.unwrap();
    assert!(first.complete);
    assert_eq!(first.sent, 1);
    let second = b.sync().await.unwrap();
    assert_eq!((second.sent, second.received, second.applied), (1, 1, 1));
    let third = a.sync().await.unwrap();
    assert_eq!((third.sent, third.applied), (0, 1));
    for key in [&from_a, &from_b] {
        assert_eq!(text_on(&a, key).await, text_on(&b, key).await);
        assert!(text_on(&a, key).await.is_some());
    }
    assert_eq!((pending(&a).await, pending(&b).await), (0, 0));
}

#[tokio::test]
async fn a_transient_transport_error_is_retried_on_the_backoff() {
    let hub = hub_with(1);
    let node = flaky_node(&hub, 1, 2, 5);
    let key = write(&node, "survives two failures").await;
    let mut retrying = Vec::new();
    let report = node
        .sync_with(|event| {
            if let SessionEvent::Retrying {
                attempt, reason, ..
            } = event
            {
                retrying.push((*attempt, reason.clone()));
            }
        })
        .await
        .unwrap();
    assert!(report.complete);
    assert_eq!(report.retries, 2);
    assert_eq!(report.exchanges, 3);
    assert_eq!(retrying.len(), 2);
    assert!(
        retrying[0].1.contains("could not be reached"),
        "{retrying:?}"
    );
    assert_eq!(pending(&node).await, 0);
    let key2 = key.clone();
    let on_hub = hub
        .with_engine(move |e| e.get(&key2))
        .await
        .unwrap()
        .unwrap();
    assert!(on_hub.is_some());
}

/// A transport whose first exchange is answered "busy, retry after
/// `wait`" (an HTTP 429 or 503 with `Retry-After`), then passes; it notes
/// when each exchange was sent.
struct Busy {
    inner: LocalTransport<MemoryStore>,
    wait: Duration,
    sent: std::sync::Mutex<Vec<std::time::Instant>>,
}

#[async_trait::async_trait]
impl Transport for Busy {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        let first = {
            let mut sent = self.sent.lock().unwrap();
            sent.push(std::time::Instant::now());
            sent.len() == 1
        };
        if first {
            return Err(TransportError::RetryAfter {
                target: "busy".into(),
                status: 429,
                retry_after_ms: self.wait.as_millis() as u64,
                message: "over the rate".into(),
            });
        }
        self.inner.exchange(outgoing).await
    }
}

#[tokio::test]
async fn a_retry_after_from_the_hub_is_waited_out_before_the_next_exchange() {
    let hub = hub_with(1);
    let wait = Duration::from_millis(300);
    let transport = Arc::new(Busy {
        inner: hub.transport(node_info(1).id),
        wait,
        sent: std::sync::Mutex::new(Vec::new()),
    });
    // The engine's own retry would come after 10 ms.
    let node = Node::builder_shared(engine(1), hub_info().id, transport.clone()).build();
    write(&node, "after the wait").await;
    let mut announced = Vec::new();
    let report = node
        .sync_with(|event| {
            if let SessionEvent::Retrying { after, .. } = event {
                announced.push(*after);
            }
        })
        .await
        .unwrap();
    assert!(report.complete);
    assert_eq!(report.retries, 1);
    assert_eq!(announced.len(), 1);
    assert!(
        announced[0] >= wait,
        "announced a retry after {:?}",
        announced[0]
    );
    let sent = transport.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1] - sent[0] >= wait,
        "sent again after {:?}, the hub asked for {wait:?}",
        sent[1] - sent[0]
    );
    assert_eq!(pending(&node).await, 0);
}

#[tokio::test]
async fn an_unreachable_hub_gives_up_after_the_attempts_and_keeps_the_changes() {
    let hub = hub_with(1);
    let node = flaky_node(&hub, 1, u32::MAX, 3);
    write(&node, "queued").await;
    let error = node.sync().await.unwrap_err();
    assert!(
        matches!(error, DriverError::GaveUp { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(pending(&node).await, 1);
}

#[tokio::test]
async fn a_revoked_node_is_refused_without_retrying() {
    let hub = hub_with(1);
    let node = node(&hub, 1);
    write(&node, "too late").await;
    let id = node_info(1).id;
    hub.with_engine(move |e| e.revoke_peer(id))
        .await
        .unwrap()
        .unwrap();
    let error = node.sync().await.unwrap_err();
    assert!(
        matches!(
            error,
            DriverError::Sync(SyncError::Rejected {
                retryable: false,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(pending(&node).await, 1);
}

#[tokio::test]
async fn progress_is_reported_packet_by_packet() {
    let hub = hub_with(1);
    let engine = {
        let mut e = Engine::new(
            MemoryStore::new(),
            registry(),
            // One packet per message, so each is reported as sent.
            config(11).batch(10, 1 << 20).pipeline(1),
            node_info(1),
        )
        .unwrap();
        e.register_peer(hub_info()).unwrap();
        e
    };
    let node = Node::builder(engine, hub_info().id, hub.transport(node_info(1).id)).build();
    for i in 0..35 {
        write(&node, &format!("note {i}")).await;
    }
    let mut sent_packets = Vec::new();
    let mut progress = Vec::new();
    let report = node
        .sync_with(|event| match event {
            SessionEvent::Sent { entity_count, .. } => sent_packets.push(*entity_count),
            SessionEvent::Engine(Event::Progress(p)) => progress.push((p.sent, p.total_to_send)),
            _ => {}
        })
        .await
        .unwrap();
    assert_eq!(report.sent, 35);
    assert!(report.complete);
    assert_eq!(&sent_packets[..4], &[10, 10, 10, 5]);
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert_eq!(progress.last().map(|p| p.0), Some(35));
    assert!(progress.iter().all(|p| p.1 == 35));
}

#[tokio::test]
async fn auto_sync_follows_live_push() {
    let hub = hub_with(2);
    let (a, b) = (node(&hub, 1), node(&hub, 2));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = b.clone();
    let sessions = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&sessions);
    let task = tokio::spawn(async move {
        let schedule = AutoSync::default().interval(Duration::from_secs(3600));
        watcher
            .auto_sync(
                schedule,
                async {
                    let _ = stopped.await;
                },
                move |_| {
                    counted.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await
    });
    // The first session runs at once; wait for it before writing.
    wait_until(|| sessions.load(Ordering::SeqCst) >= 1).await;
    let key = write(&a, "pushed").await;
    a.sync().await.unwrap();
    let mut arrived = false;
    for _ in 0..200 {
        if text_on(&b, &key).await.is_some() {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(arrived, "the push did not bring the change within 2 s");
    assert!(sessions.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn auto_sync_backs_off_while_the_hub_is_unreachable_then_syncs() {
    let hub = hub_with(1);
    // Each session tries twice; four failures make two failed sessions.
    let node = flaky_node(&hub, 1, 4, 2);
    let key = write(&node, "eventually").await;
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&outcomes);
    let watcher = node.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let schedule = AutoSync::default()
            .interval(Duration::from_secs(3600))
            .backoff_initial(Duration::from_millis(20));
        watcher
            .auto_sync(
                schedule,
                async {
                    let _ = stopped.await;
                },
                move |result| seen.lock().unwrap().push(result.is_ok()),
            )
            .await
    });
    wait_until(|| outcomes.lock().unwrap().contains(&true)).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(*outcomes.lock().unwrap(), vec![false, false, true]);
    let on_hub = hub
        .with_engine(move |e| e.get(&key))
        .await
        .unwrap()
        .unwrap();
    assert!(on_hub.is_some());
}

#[tokio::test]
async fn a_transport_without_replies_leaves_the_changes_pending() {
    struct Outbox;
    #[async_trait::async_trait]
    impl Transport for Outbox {
        async fn exchange(&self, _outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
            Ok(Vec::new())
        }
    }
    let node = Node::builder(engine(1), hub_info().id, Outbox).build();
    write(&node, "carried by hand").await;
    let report = node.sync().await.unwrap();
    assert!(!report.complete);
    assert_eq!((report.sent, report.exchanges), (1, 1));
    assert_eq!(pending(&node).await, 1);
}

#[tokio::test]
async fn subscribers_see_the_sessions_events() {
    let hub = hub_with(2);
    let (a, b) = (node(&hub, 1), node(&hub, 2));
    write(&a, "news").await;
    a.sync().await.unwrap();
    let mut events = b.subscribe();
    b.sync().await.unwrap();
    let mut applied = 0;
    let mut complete = false;
    while let Ok(event) = events.try_recv() {
        match event {
            Event::Applied(_) => applied += 1,
            Event::SyncComplete { .. } => complete = true,
            _ => {}
        }
    }
    assert_eq!(applied, 1);
    assert!(complete);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_node_syncs_through_the_driver() {
    use syncplan::{SqliteOptions, SqliteStore, TrackOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut store =
        SqliteStore::open(dir.path().join("node.db"), SqliteOptions::default()).unwrap();
    store
        .connection()
        .execute_batch("CREATE TABLE note(id INTEGER PRIMARY KEY, text TEXT)")
        .unwrap();
    let ty = store
        .track_table("note", TrackOptions::new().entity_type_name("Note"))
        .unwrap();
    let registry = EntityRegistry::new().with(ty);
    let mut hub = Engine::new(MemoryStore::new(), registry.clone(), config(1), hub_info()).unwrap();
    hub.register_peer(node_info(1)).unwrap();
    let hub = LocalHub::new(hub);
    let mut engine = Engine::new(store, registry, config(2), node_info(1)).unwrap();
    engine.register_peer(hub_info()).unwrap();
    let node = Node::builder(engine, hub_info().id, hub.transport(node_info(1).id)).build();
    node.with_engine(|e| {
        e.store()
            .connection()
            .execute("INSERT INTO note(text) VALUES ('plain SQL')", [])
    })
    .await
    .unwrap()
    .unwrap();
    let report = node.sync().await.unwrap();
    assert_eq!((report.sent, report.complete), (1, true));
    let count = hub.with_engine(|e| e.store().entity_count()).await.unwrap();
    assert_eq!(count, 1);
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition did not hold within 5 s");
}
