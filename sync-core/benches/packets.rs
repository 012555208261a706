//! Packet codec and apply benchmarks.
//!
//! - `codec/encode` and `codec/decode`: a body of N `DailyReport` changes
//!   encoded (positional fields, zstd) and decoded (hash check, zstd, prost).
//! - `apply/memory`: a hub applying one packet of N changes to a memory store
//!   in one transaction (conflict detection, change registry, ack).
//!
//! Throughput is in records (entity changes) per second.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sync_core::codec::{self, Limits};
use sync_core::packet::{Envelope, Packet};
use sync_core::{
    Codec, Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, NodeId, NodeInfo, Record,
    Role, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;

const SIZES: [usize; 2] = [1_000, 10_000];

fn registry() -> EntityRegistry {
    EntityRegistry::new().with(
        EntityType::new("DailyReport")
            .field("date", FieldKind::Text)
            .field("brigade", FieldKind::Text)
            .field("hours", FieldKind::Int)
            .field("rate", FieldKind::Float)
            .field("approved", FieldKind::Bool)
            .field("foreman", FieldKind::Uuid),
    )
}

fn fields(i: usize) -> Record {
    Record::from([
        (
            "date".to_owned(),
            Value::from(format!("2025-12-{:02}", i % 28 + 1)),
        ),
        ("brigade".to_owned(), Value::from(format!("B-{}", i % 97))),
        ("hours".to_owned(), Value::Int((i % 12) as i64)),
        ("rate".to_owned(), Value::Float(i as f64 * 0.25)),
        ("approved".to_owned(), Value::Bool(i % 2 == 0)),
        (
            "foreman".to_owned(),
            Value::Uuid(Uuid::from_u128(i as u128 % 50)),
        ),
    ])
}

fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

fn node_info() -> NodeInfo {
    NodeInfo::new(
        NodeId(Uuid::from_u128(2)),
        "DESKTOP-1",
        "Desktop",
        Role::Node,
    )
}

fn config() -> EngineConfig {
    EngineConfig::default()
        .batch(usize::MAX, usize::MAX)
        .applied_events(false)
}

/// One packet of `n` inserts from a node to the hub, as wire bytes.
fn packet_bytes(n: usize) -> Vec<u8> {
    let now = Timestamp::from_secs(1_765_535_400);
    let mut node = Engine::new(
        MemoryStore::new(),
        registry(),
        config().seed(2),
        node_info(),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("register");
    for i in 0..n {
        node.insert("DailyReport", fields(i), now).expect("insert");
    }
    node.build_packet(hub_info().id, now)
        .expect("build")
        .bytes
        .to_vec()
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let limits = Limits::default();
    for n in SIZES {
        let bytes = packet_bytes(n);
        let Ok(Envelope::Packet(packet)) = codec::decode_envelope(&bytes, &limits) else {
            panic!("benchmark packet does not decode");
        };
        let changes = codec::decode_body(&packet.header, &packet.body, &limits).expect("body");
        let registry = registry();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("encode", n), &changes, |b, changes| {
            b.iter(|| {
                let (body, raw_len) = codec::encode_body(changes, &registry, Codec::Zstd);
                let header = sync_core::packet::PacketHeader {
                    body_sha256: codec::sha256(&body),
                    body_raw_len: raw_len,
                    ..packet.header.clone()
                };
                codec::encode_envelope(&Envelope::Packet(Packet {
                    header,
                    body: body.into(),
                }))
            })
        });
        group.bench_with_input(BenchmarkId::new("decode", n), &bytes, |b, bytes| {
            b.iter(|| {
                let Ok(Envelope::Packet(p)) = codec::decode_envelope(bytes, &limits) else {
                    panic!("decode failed");
                };
                assert_eq!(codec::sha256(&p.body), p.header.body_sha256);
                codec::decode_body(&p.header, &p.body, &limits).expect("body")
            })
        });
    }
    group.finish();
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.sample_size(20);
    let now = Timestamp::from_secs(1_765_535_400);
    for n in SIZES {
        let bytes = packet_bytes(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("memory", n), &bytes, |b, bytes| {
            b.iter_batched(
                || {
                    let mut hub =
                        Engine::new(MemoryStore::new(), registry(), config().seed(1), hub_info())
                            .expect("hub");
                    hub.register_peer(node_info()).expect("register");
                    hub
                },
                |mut hub| {
                    let incoming = hub.handle_incoming(bytes, now).expect("apply");
                    assert_eq!(incoming.applied, n);
                    hub
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_codec, bench_apply);
criterion_main!(benches);
