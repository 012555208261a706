//! Golden wire files: packets produced by this version of the engine are kept
//! in `tests/golden/`. Every build must still decode them to the same content
//! (old peers keep working) and still produce the same bytes from the same
//! inputs (deterministic encoding). After an intentional format change, run
//! with `SYNCPLAN_BLESS=1` to rewrite the current files, and say why in the
//! commit.
//!
//! `v1_packet_*.bin` are from before version clocks (`EntityChange.clock`):
//! they are never rewritten, and must keep decoding, each version then
//! including only its own write. `v1_clock_packet_*.bin` are today's.

use std::path::PathBuf;

use sync_core::codec::{self, Limits};
use sync_core::packet::{Change, Envelope};
use sync_core::{
    Codec, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, FieldKind, NodeId,
    NodeInfo, Operation, Record, Role, Timestamp, Uuid, Value, VersionVector,
};
use sync_store_memory::MemoryStore;

fn registry() -> EntityRegistry {
    EntityRegistry::new()
        .with(
            EntityType::new("DailyReport")
                .field("date", FieldKind::Text)
                .field("hours", FieldKind::Int)
                .field("rate", FieldKind::Float)
                .field("approved", FieldKind::Bool)
                .field("signed_at", FieldKind::Timestamp)
                .field("photo", FieldKind::Bytes)
                .field("tags", FieldKind::List)
                .field("meta", FieldKind::Record)
                .excluded_field("password", FieldKind::Text),
        )
        .with(
            EntityType::new("DailyReportLine")
                .reference("report_id", "DailyReport")
                .field("task", FieldKind::Text),
        )
}

fn report_fields() -> Record {
    Record::from([
        ("date".to_owned(), Value::from("2025-12-12")),
        ("hours".to_owned(), Value::Int(-8)),
        ("rate".to_owned(), Value::Float(12.75)),
        ("approved".to_owned(), Value::Bool(true)),
        (
            "signed_at".to_owned(),
            Value::Timestamp(Timestamp::from_secs(1_765_535_400)),
        ),
        ("photo".to_owned(), Value::Bytes(vec![0, 1, 2, 255])),
        (
            "tags".to_owned(),
            Value::List(vec![Value::from("night"), Value::Null, Value::Int(3)]),
        ),
        (
            "meta".to_owned(),
            Value::Record(Record::from([(
                "k".to_owned(),
                Value::Uuid(Uuid::from_u128(7)),
            )])),
        ),
        ("password".to_owned(), Value::from("never travels")),
    ])
}

/// The packet a node sends with one report, one line and one deletion.
fn golden_packet(codec: Codec) -> Vec<u8> {
    let hub = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
    let me = NodeInfo::new(
        NodeId(Uuid::from_u128(2)),
        "DESKTOP-1",
        "Desktop",
        Role::Node,
    );
    let config = EngineConfig::default().seed(42).codec(codec);
    let mut node = Engine::new(MemoryStore::new(), registry(), config, me).expect("node");
    node.register_peer(hub.clone()).expect("register");
    let now = Timestamp::from_secs(1_765_535_400);
    let report = node
        .insert("DailyReport", report_fields(), now)
        .expect("report");
    let line = Record::from([
        ("report_id".to_owned(), Value::Uuid(report)),
        ("task".to_owned(), Value::from("trench")),
    ]);
    node.insert("DailyReportLine", line, now).expect("line");
    let gone = node
        .insert(
            "DailyReportLine",
            Record::from([("report_id".to_owned(), Value::Uuid(report))]),
            now,
        )
        .expect("line");
    node.delete(EntityKey::new("DailyReportLine", gone), now.add_millis(1))
        .expect("delete");
    node.build_packet(hub.id, now.add_millis(2))
        .expect("build")
        .bytes
        .to_vec()
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check(name: &str, codec: Codec) {
    let produced = golden_packet(codec);
    let path = golden_path(name);
    if std::env::var_os("SYNCPLAN_BLESS").is_some() {
        std::fs::write(&path, &produced).expect("write golden file");
    }
    let stored = std::fs::read(&path).expect("golden file (run with SYNCPLAN_BLESS=1 to create)");
    let changes = decode_golden(&stored, codec);
    let node = NodeId(Uuid::from_u128(2));
    for change in &changes {
        let own = change
            .entity
            .clock
            .get(node)
            .expect("the writer's own entry");
        assert_eq!(own.at, change.entity.updated_at);
        assert_ne!(own.tag, 0, "today's writes carry a content tag");
    }
    assert_eq!(
        produced, stored,
        "encoding of the same inputs changed: bless only if intended"
    );
}

/// A packet from before version clocks still decodes; each version includes
/// only its own write, untagged.
fn check_pre_clock(name: &str, codec: Codec) {
    let stored = std::fs::read(golden_path(name)).expect("pre-clock golden file");
    for change in decode_golden(&stored, codec) {
        let entity = &change.entity;
        assert_eq!(
            entity.clock,
            VersionVector::single(entity.origin, entity.updated_at)
        );
    }
}

/// Decodes a golden packet and checks what every version of it holds.
fn decode_golden(stored: &[u8], codec: Codec) -> Vec<Change> {
    let Envelope::Packet(packet) =
        codec::decode_envelope(stored, &Limits::default()).expect("golden decodes")
    else {
        panic!("golden file is not a packet");
    };
    assert_eq!(codec::sha256(&packet.body), packet.header.body_sha256);
    assert_eq!(packet.header.codec, codec);
    assert_eq!(packet.header.packet_no, 1);
    assert_eq!(packet.header.schema_version, "1.0.0");
    let changes =
        codec::decode_body(&packet.header, &packet.body, &Limits::default()).expect("body decodes");
    assert_eq!(changes.len(), 3);
    assert_eq!(
        changes[0].entity.key.entity_type, "DailyReport",
        "parents first"
    );
    assert_eq!(changes[0].operation, Operation::Insert);
    let mut expected = report_fields();
    expected.remove("password");
    assert_eq!(changes[0].entity.fields, expected);
    assert!(
        changes
            .iter()
            .any(|c| c.operation == Operation::Delete && c.entity.is_deleted)
    );
    changes
}

#[test]
fn zstd_packet_matches_golden_file() {
    check("v1_clock_packet_zstd.bin", Codec::Zstd);
}

#[test]
fn gzip_packet_matches_golden_file() {
    check("v1_clock_packet_gzip.bin", Codec::Gzip);
}

#[test]
fn uncompressed_packet_matches_golden_file() {
    check("v1_clock_packet_none.bin", Codec::None);
}

#[test]
fn packets_from_before_version_clocks_still_decode() {
    check_pre_clock("v1_packet_zstd.bin", Codec::Zstd);
    check_pre_clock("v1_packet_gzip.bin", Codec::Gzip);
    check_pre_clock("v1_packet_none.bin", Codec::None);
}

#[test]
fn compression_with_kept_contexts_gives_the_bytes_of_a_fresh_context() {
    // Small and large bodies, repeated and interleaved: a context kept from
    // one packet to the next must not change the next one's bytes.
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"x".to_vec(),
        big.clone(),
        b"an idle body".to_vec(),
        big[..70_000].to_vec(),
        Vec::new(),
        big,
        b"x".to_vec(),
    ];
    for (i, raw) in inputs.iter().enumerate() {
        let packed = codec::compress(Codec::Zstd, raw);
        assert_eq!(
            packed,
            zstd::bulk::compress(raw, 1).unwrap(),
            "input {i}: the bytes of a fresh level-1 context"
        );
        let len = raw.len() as u64;
        assert_eq!(&codec::decompress(Codec::Zstd, &packed, len).unwrap(), raw);
        // A header announcing another length is refused either way.
        assert!(codec::decompress(Codec::Zstd, &packed, len + 1).is_err());
        if len > 0 {
            assert!(codec::decompress(Codec::Zstd, &packed, len - 1).is_err());
        }
    }
}
