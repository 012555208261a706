//! Test harness: a hub and N nodes on memory stores, exchanging packets
//! in-process through the real engine, with simulated time; a faulty link
//! (loss, duplication, reordering) driven by a script; helpers to inspect,
//! corrupt and forge packets through the public codec.

#![allow(dead_code)]

pub mod ops;
pub mod strategies;

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;

use bytes::Bytes;
use sync_core::codec::{self, Limits};
use sync_core::packet::{Change, Codec, Envelope, Packet, PacketHeader};
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, Event,
    FieldKind, NodeId, NodeInfo, Record, Role, SyncError, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;

/// An engine over the memory store.
pub type MemEngine = Engine<MemoryStore>;

/// Most packets one sync session may take before the harness calls it a hang.
pub const MAX_ROUNDS: usize = 1_000;

/// Two related types: a `DailyReport` with `DailyReportLine` children.
pub fn registry(strategy: ConflictStrategy) -> EntityRegistry {
    EntityRegistry::new()
        .with(
            EntityType::new("DailyReport")
                .field("date", FieldKind::Text)
                .field("brigade", FieldKind::Text)
                .field("hours", FieldKind::Int)
                .excluded_field("local_note", FieldKind::Text)
                .strategy(strategy.clone()),
        )
        .with(
            EntityType::new("DailyReportLine")
                .reference("report_id", "DailyReport")
                .field("text", FieldKind::Text)
                .field("qty", FieldKind::Float)
                .strategy(strategy),
        )
}

pub fn hub_id() -> NodeId {
    NodeId(Uuid::from_u128(0x1000))
}

pub fn node_id(i: usize) -> NodeId {
    NodeId(Uuid::from_u128(0x2000 + i as u128))
}

pub fn hub_info() -> NodeInfo {
    NodeInfo::new(hub_id(), "HUB", "Central hub", Role::Hub)
}

pub fn node_info(i: usize) -> NodeInfo {
    NodeInfo::new(
        node_id(i),
        format!("DESKTOP-{i}"),
        format!("Desktop {i}"),
        Role::Node,
    )
}

/// A simulated instant: `secs` after 2025-12-12T10:30:00Z.
pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_secs(1_765_535_400 + secs)
}

pub fn fields(pairs: &[(&str, Value)]) -> Record {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

pub fn report(date: &str, hours: i64) -> Record {
    fields(&[
        ("date", date.into()),
        ("brigade", "B-7".into()),
        ("hours", hours.into()),
    ])
}

pub fn line(report_id: Uuid, text: &str, qty: f64) -> Record {
    fields(&[
        ("report_id", Value::Uuid(report_id)),
        ("text", text.into()),
        ("qty", qty.into()),
    ])
}

pub fn report_key(id: Uuid) -> EntityKey {
    EntityKey::new("DailyReport", id)
}

pub fn line_key(id: Uuid) -> EntityKey {
    EntityKey::new("DailyReportLine", id)
}

/// The default configuration of node `i` in a [`Net`].
pub fn node_config(i: usize) -> EngineConfig {
    EngineConfig::default().seed(100 + i as u64)
}

/// The default configuration of the hub in a [`Net`].
pub fn hub_config() -> EngineConfig {
    EngineConfig::default().seed(1)
}

/// A hub with `n` nodes, all registered with each other.
pub struct Net {
    pub hub: MemEngine,
    pub nodes: Vec<MemEngine>,
    pub registry: EntityRegistry,
    pub hub_config: EngineConfig,
    pub node_configs: Vec<EngineConfig>,
}

impl Net {
    pub fn new(n: usize, registry: EntityRegistry) -> Self {
        Self::with_config(n, registry, |c| c)
    }

    pub fn with_config(
        n: usize,
        registry: EntityRegistry,
        tweak: impl Fn(EngineConfig) -> EngineConfig,
    ) -> Self {
        Self::with_configs(n, registry, tweak(hub_config()), |i| tweak(node_config(i)))
    }

    /// A net where the hub and every node get their own configuration.
    pub fn with_configs(
        n: usize,
        registry: EntityRegistry,
        hub_config: EngineConfig,
        node_config: impl Fn(usize) -> EngineConfig,
    ) -> Self {
        let mut hub = Engine::new(
            MemoryStore::new(),
            registry.clone(),
            hub_config.clone(),
            hub_info(),
        )
        .expect("hub store is empty");
        let mut nodes = Vec::new();
        let mut node_configs = Vec::new();
        for i in 0..n {
            hub.register_peer(node_info(i)).expect("register node");
            let config = node_config(i);
            let mut node = Engine::new(
                MemoryStore::new(),
                registry.clone(),
                config.clone(),
                node_info(i),
            )
            .expect("node store is empty");
            node.register_peer(hub_info()).expect("register hub");
            nodes.push(node);
            node_configs.push(config);
        }
        Net {
            hub,
            nodes,
            registry,
            hub_config,
            node_configs,
        }
    }

    /// Runs one sync session of node `i` with the hub over a perfect network.
    /// Returns the number of round trips.
    pub fn sync(&mut self, i: usize, now: Timestamp) -> Result<usize, SyncError> {
        let node = &mut self.nodes[i];
        node.start_sync(hub_id())?;
        let mut rounds = 0;
        while let Some(packet) = node.poll_transmit(now)? {
            rounds += 1;
            assert!(rounds < MAX_ROUNDS, "sync session does not end");
            let reply = self.hub.respond(&packet.bytes, now)?;
            node.handle_incoming(&reply, now)?;
        }
        Ok(rounds)
    }

    /// Syncs every node, twice around, so changes reach everyone.
    pub fn sync_all(&mut self, now: Timestamp) -> Result<(), SyncError> {
        for _ in 0..2 {
            for i in 0..self.nodes.len() {
                self.sync(i, now)?;
            }
        }
        Ok(())
    }

    /// One sync session of node `i` over `link`: packets may be lost,
    /// duplicated or delayed; time advances to each retry deadline. Held
    /// messages are delivered (late) when the session ends. Returns the time
    /// at the end.
    pub fn sync_faulty(
        &mut self,
        i: usize,
        now: Timestamp,
        link: &mut Link,
    ) -> Result<Timestamp, SyncError> {
        let Net { hub, nodes, .. } = self;
        let node = &mut nodes[i];
        node.start_sync(hub_id())?;
        let mut now = now;
        for _ in 0..MAX_ROUNDS {
            if let Some(packet) = node.poll_transmit(now)? {
                link.log.push(Seen::NodeSent(i, packet.bytes.clone()));
                link.request(i, hub, node, packet.bytes, now)?;
                continue;
            }
            if !node.is_syncing(hub_id()) {
                link.flush(i, hub, node, now)?;
                return Ok(now);
            }
            let deadline = node
                .poll_timeout()
                .expect("a running session without a reply has its retry timer armed");
            now = now.max(deadline);
            node.handle_timeout(now);
        }
        panic!("faulty sync session of node {i} does not end");
    }

    /// A snapshot (backup) of node `i`'s store.
    pub fn snapshot_node(&self, i: usize) -> MemoryStore {
        self.nodes[i].store().clone()
    }

    /// Replaces node `i` by an engine opened on `store` (a restored backup).
    pub fn restore_node(&mut self, i: usize, store: MemoryStore) {
        self.nodes[i] = Engine::open(store, self.registry.clone(), self.node_configs[i].clone())
            .expect("snapshot holds the node identity");
    }

    /// Replaces the hub by an engine opened on `store` (a restored backup).
    pub fn restore_hub(&mut self, store: MemoryStore) {
        self.hub = Engine::open(store, self.registry.clone(), self.hub_config.clone())
            .expect("snapshot holds the hub identity");
    }

    /// Crash and restart of node `i`: volatile session state is gone, the
    /// committed store survives.
    pub fn restart_node(&mut self, i: usize) {
        let store = self.nodes[i].store().clone();
        self.restore_node(i, store);
    }

    /// All entities of an engine, as (key, is_deleted, fields), excluded
    /// `local_note` removed.
    pub fn state(engine: &mut MemEngine) -> Vec<(EntityKey, bool, Record)> {
        engine
            .store()
            .all_entities()
            .map(|s| {
                let mut f = s.entity.fields.clone();
                f.remove("local_note");
                (s.entity.key.clone(), s.entity.is_deleted, f)
            })
            .collect()
    }

    pub fn converged(&mut self) -> bool {
        let hub = Self::state(&mut self.hub);
        self.nodes.iter_mut().all(|n| Self::state(n) == hub)
    }

    /// Nothing is pending in either direction between the hub and any node.
    pub fn quiet(&mut self) -> bool {
        (0..self.nodes.len()).all(|i| {
            self.nodes[i]
                .pending_count(hub_id())
                .expect("hub registered")
                == 0
                && self.hub.pending_count(node_id(i)).expect("node registered") == 0
        })
    }
}

pub fn drain(engine: &mut MemEngine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

// --- faulty link ------------------------------------------------------------

/// What the link does with the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Delivered once.
    Deliver,
    /// Lost.
    Drop,
    /// Delivered twice.
    Duplicate,
    /// Held back and delivered after the next delivered message (reordering).
    Delay,
}

/// A message the harness saw, in order.
#[derive(Clone, Debug)]
pub enum Seen {
    /// Node `i` handed a packet to the link.
    NodeSent(usize, Bytes),
    /// The hub applied a request from node `i` as new (not a duplicate).
    HubApplied(usize, Bytes),
    /// The hub built a reply for node `i`.
    HubSent(usize, Bytes),
    /// Node `i` applied a reply as new (not a duplicate).
    NodeApplied(usize, Bytes),
}

enum Held {
    Request(Bytes),
    Reply(Bytes),
}

/// A link between the hub and one node at a time, following a fault script
/// (every message after the script ends is delivered).
pub struct Link {
    script: VecDeque<Fault>,
    held: Vec<Held>,
    /// Every message seen.
    pub log: Vec<Seen>,
    /// Called on the receiving engine after every message it handled.
    pub check: Option<fn(&mut MemEngine)>,
}

impl Link {
    pub fn new(script: impl IntoIterator<Item = Fault>) -> Self {
        Link {
            script: script.into_iter().collect(),
            held: Vec::new(),
            log: Vec::new(),
            check: None,
        }
    }

    pub fn perfect() -> Self {
        Self::new([])
    }

    /// Appends faults to the script.
    pub fn push(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.script.extend(faults);
    }

    /// Whether the script still has faults to play.
    pub fn faulty(&self) -> bool {
        !self.script.is_empty()
    }

    fn next(&mut self) -> Fault {
        self.script.pop_front().unwrap_or(Fault::Deliver)
    }

    fn request(
        &mut self,
        i: usize,
        hub: &mut MemEngine,
        node: &mut MemEngine,
        bytes: Bytes,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let copies = match self.next() {
            Fault::Drop => 0,
            Fault::Delay => {
                self.held.push(Held::Request(bytes));
                return Ok(());
            }
            Fault::Deliver => 1,
            Fault::Duplicate => 2,
        };
        for _ in 0..copies {
            let reply = self.hub_handles(i, hub, &bytes, now)?;
            self.reply(i, hub, node, reply, now)?;
        }
        Ok(())
    }

    fn reply(
        &mut self,
        i: usize,
        hub: &mut MemEngine,
        node: &mut MemEngine,
        bytes: Bytes,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let copies = match self.next() {
            Fault::Drop => 0,
            Fault::Delay => {
                self.held.push(Held::Reply(bytes));
                return Ok(());
            }
            Fault::Deliver => 1,
            Fault::Duplicate => 2,
        };
        for _ in 0..copies {
            self.node_handles(i, node, &bytes, now)?;
        }
        if copies > 0 {
            self.flush(i, hub, node, now)?;
        }
        Ok(())
    }

    /// Delivers every held message, in the order they were held.
    fn flush(
        &mut self,
        i: usize,
        hub: &mut MemEngine,
        node: &mut MemEngine,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        for held in std::mem::take(&mut self.held) {
            match held {
                Held::Request(bytes) => {
                    let reply = self.hub_handles(i, hub, &bytes, now)?;
                    self.node_handles(i, node, &reply, now)?;
                }
                Held::Reply(bytes) => self.node_handles(i, node, &bytes, now)?,
            }
        }
        Ok(())
    }

    /// What `Engine::respond` does, with the duplicate flag kept for the log.
    fn hub_handles(
        &mut self,
        i: usize,
        hub: &mut MemEngine,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Bytes, SyncError> {
        let incoming = hub.handle_incoming(bytes, now)?;
        if !incoming.duplicate {
            self.log
                .push(Seen::HubApplied(i, Bytes::copy_from_slice(bytes)));
        }
        if let Some(check) = self.check {
            check(hub);
        }
        let reply = hub.build_packet(incoming.from, now)?.bytes;
        self.log.push(Seen::HubSent(i, reply.clone()));
        Ok(reply)
    }

    fn node_handles(
        &mut self,
        i: usize,
        node: &mut MemEngine,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let incoming = node.handle_incoming(bytes, now)?;
        if !incoming.duplicate {
            self.log
                .push(Seen::NodeApplied(i, Bytes::copy_from_slice(bytes)));
        }
        if let Some(check) = self.check {
            check(node);
        }
        Ok(())
    }
}

// --- packet inspection and forging -------------------------------------------

/// Decodes wire bytes that must hold a packet.
pub fn decode(bytes: &[u8]) -> Packet {
    match codec::decode_envelope(bytes, &Limits::default()).expect("envelope decodes") {
        Envelope::Packet(p) => p,
        Envelope::Error(e) => panic!("expected a packet, got a refusal: {e:?}"),
        Envelope::Train(t) => panic!("expected one packet, got a train of {}", t.len()),
    }
}

/// Decodes wire bytes that must hold a packet or a train of packets: the
/// packets, in order.
pub fn packets(bytes: &[u8]) -> Vec<Packet> {
    match codec::decode_envelope(bytes, &Limits::default()).expect("envelope decodes") {
        Envelope::Packet(p) => vec![p],
        Envelope::Train(t) => t,
        Envelope::Error(e) => panic!("expected a packet, got a refusal: {e:?}"),
    }
}

/// The header of wire bytes that must hold one packet.
pub fn header(bytes: &[u8]) -> PacketHeader {
    decode(bytes).header
}

/// The changes one packet carries (its hash is checked first).
pub fn packet_body(p: &Packet) -> Vec<Change> {
    assert_eq!(codec::sha256(&p.body), p.header.body_sha256, "body hash");
    codec::decode_body(&p.header, &p.body, &Limits::default()).expect("body decodes")
}

/// The changes a message carries: those of its packet, or of every packet
/// of its train in order.
pub fn body(bytes: &[u8]) -> Vec<Change> {
    packets(bytes).iter().flat_map(packet_body).collect()
}

/// The keys a packet carries.
pub fn keys_in(bytes: &[u8]) -> BTreeSet<EntityKey> {
    body(bytes).into_iter().map(|c| c.entity.key).collect()
}

/// Where the (compressed) body sits inside the envelope bytes.
pub fn body_range(bytes: &[u8]) -> Range<usize> {
    let body = packets(bytes).swap_remove(0).body;
    assert!(!body.is_empty(), "packet has a body");
    let start = bytes
        .windows(body.len())
        .position(|w| w == body.as_ref())
        .expect("the body appears verbatim in the envelope");
    start..start + body.len()
}

/// A copy of `bytes` with one byte of the body flipped.
pub fn flip_body_byte(bytes: &[u8], which: usize) -> Vec<u8> {
    let range = body_range(bytes);
    let mut out = bytes.to_vec();
    out[range.start + which % range.len()] ^= 0x55;
    out
}

/// Packet bytes as a peer would send them: `changes` in the given order,
/// numbered `packet_no`, acknowledging nothing. Lets tests deliver children
/// before their parents, which a well-behaved engine never sends.
pub fn forge(
    sender: NodeId,
    recipient: NodeId,
    packet_no: u64,
    changes: &[Change],
    registry: &EntityRegistry,
) -> Bytes {
    let (body, body_raw_len) = codec::encode_body(changes, registry, Codec::Zstd);
    let header = PacketHeader {
        sender,
        recipient,
        packet_no,
        ack_packet_no: 0,
        ack_digest: [0; 32],
        prev_digest: forged_digest(sender, recipient, packet_no.wrapping_sub(1)),
        gap_check_packet_no: 0,
        gap_check_digest: [0; 32],
        protocol_version: sync_proto::PROTOCOL_VERSION,
        schema_version: "1.0.0".into(),
        timestamp: t(0),
        codec: Codec::Zstd,
        body_sha256: codec::sha256(&body),
        entity_count: changes.len() as u32,
        more: false,
        resync: false,
        pending_total: changes.len() as u64,
        body_raw_len,
        continues: false,
    };
    FORGED.with(|f| {
        f.borrow_mut().insert(
            (sender, recipient, packet_no),
            codec::packet_digest(&header),
        )
    });
    codec::encode_envelope(&Envelope::Packet(Packet {
        header,
        body: Bytes::from(body),
    }))
}

thread_local! {
    /// Digests of the packets `forge` made in this test, so that a forged
    /// packet chains onto the previous one like a real sender's.
    static FORGED: std::cell::RefCell<std::collections::HashMap<(NodeId, NodeId, u64), [u8; 32]>> =
        Default::default();
}

fn forged_digest(sender: NodeId, recipient: NodeId, packet_no: u64) -> [u8; 32] {
    FORGED.with(|f| {
        f.borrow()
            .get(&(sender, recipient, packet_no))
            .copied()
            .unwrap_or([0; 32])
    })
}

/// Every entity whose reference names a parent that is not in the store.
pub fn dangling_children(engine: &mut MemEngine) -> Vec<EntityKey> {
    let registry = engine.registry().clone();
    let stored: Vec<_> = engine.store().all_entities().cloned().collect();
    let keys: BTreeSet<EntityKey> = stored.iter().map(|s| s.entity.key.clone()).collect();
    stored
        .iter()
        .filter(|s| {
            registry.get(&s.entity.key.entity_type).is_some_and(|ty| {
                ty.references().any(|(field, target)| {
                    s.entity
                        .fields
                        .get(field)
                        .and_then(Value::as_uuid)
                        .is_some_and(|id| !keys.contains(&EntityKey::new(target, id)))
                })
            })
        })
        .map(|s| s.entity.key.clone())
        .collect()
}

/// Panics if a child is stored without its parent.
pub fn assert_no_dangling(engine: &mut MemEngine) {
    let dangling = dangling_children(engine);
    assert!(
        dangling.is_empty(),
        "{} holds children without parents: {dangling:?}",
        engine.local_node().code
    );
}

/// Re-encodes a packet after `edit` changed its header (the body and its
/// hash stay as they were).
pub fn rewrite_header(bytes: &[u8], edit: impl FnOnce(&mut PacketHeader)) -> Bytes {
    let mut packet = decode(bytes);
    edit(&mut packet.header);
    codec::encode_envelope(&Envelope::Packet(packet))
}

/// The changes `hub` would send to node 0 for `writes` made on a fresh hub,
/// in the order the engine sends them (parents first).
pub fn changes_from_hub(
    registry: &EntityRegistry,
    writes: impl FnOnce(&mut MemEngine),
) -> Vec<Change> {
    let mut net = Net::new(1, registry.clone());
    writes(&mut net.hub);
    let packet = net.hub.build_packet(node_id(0), t(0)).expect("hub builds");
    assert!(!packet.more, "one packet holds every change");
    body(&packet.bytes)
}
