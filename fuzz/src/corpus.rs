//! The seed corpora, generated from real engines: packets that real hubs and
//! nodes exchange (inserts, updates, deletes, conflicts, references, every
//! codec, error envelopes), records rendered by the serde bridge, and
//! serialized operation sequences for the structure-aware targets.
//!
//! [`generate`] rewrites `seeds/<target>/` (and the regressions crafted from
//! real packets, see [`crafted_regressions`]); run it with
//! `cargo run --manifest-path fuzz/Cargo.toml --bin gen_corpus` after any
//! wire format change.

use std::io;
use std::path::Path;

use arbitrary::Arbitrary;
use prost::Message;
use sync_conformance::fixtures::{self, hub_info, node_info, t};
use sync_conformance::net::Net;
use sync_core::codec::sha256;
use sync_core::serde_bridge;
use sync_core::{
    Codec, ConflictStrategy, Engine, EngineConfig, EntityKey, Record, Timestamp, Uuid, Value,
};
use sync_proto::v1 as pb;
use sync_store_memory::MemoryStore;

use crate::engine_ops::{Actor, Choice, Kind, Op, Scenario};
use crate::fixup::{self, FIX_ALL};
use crate::sqlite_sql::{self, Script, SqlOp, Unique};
use crate::{corpus_transport, engine_receive};

/// One seed: a file name and its bytes.
pub type Seed = (String, Vec<u8>);

/// Writes every target's seeds under `root/seeds/<target>/` (replacing the
/// old ones) and the crafted regressions under `root/regressions/`; returns
/// the number of files written per target.
pub fn generate(root: &Path) -> io::Result<Vec<(&'static str, usize)>> {
    let sets: [(&'static str, Vec<Seed>); 8] = [
        ("packet_decode", packet_decode_seeds()),
        ("engine_receive", engine_receive_seeds()),
        ("json_envelope", json_envelope_seeds()),
        ("engine_ops", engine_ops_seeds()),
        ("sqlite_sql", sqlite_sql_seeds()),
        ("token", corpus_transport::token_seeds()),
        ("file_import", corpus_transport::file_import_seeds()),
        ("http_exchange", corpus_transport::http_exchange_seeds()),
    ];
    let mut written = Vec::new();
    for (target, seeds) in sets {
        let dir = root.join("seeds").join(target);
        // A sealed file differs on every run (nonces): keep a committed
        // one that is the same seed otherwise.
        let mut keep = Vec::new();
        if target == "file_import" {
            for (name, bytes) in &seeds {
                if let Ok(old) = std::fs::read(dir.join(name)) {
                    if crate::file_import::same_seed(&old, bytes) {
                        keep.push((name.clone(), old));
                    }
                }
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            let kept = keep.iter().find(|(n, _)| n == name).map(|(_, b)| b);
            std::fs::write(dir.join(name), kept.unwrap_or(bytes))?;
        }
        written.push((target, seeds.len()));
    }
    for (target, name, bytes) in crafted_regressions() {
        let dir = root.join("regressions").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(written)
}

// --- real packets ------------------------------------------------------------

/// A request a node sent and the reply it got.
pub(crate) struct Exchange {
    pub(crate) request: Vec<u8>,
    pub(crate) reply: Vec<u8>,
}

/// One session of `node` with `hub`, recording every exchange.
pub(crate) fn recorded_session(
    node: &mut Engine<MemoryStore>,
    hub: &mut Engine<MemoryStore>,
    now: Timestamp,
) -> Vec<Exchange> {
    node.start_sync(hub_info().id).expect("start sync");
    let mut out = Vec::new();
    while let Some(packet) = node.poll_transmit(now).expect("poll_transmit") {
        let reply = hub.respond(&packet.bytes, now).expect("respond");
        // A refusal ends the session as an error; the seeds keep it anyway.
        let _ = node.handle_incoming(&reply, now);
        out.push(Exchange {
            request: packet.bytes.to_vec(),
            reply: reply.to_vec(),
        });
        assert!(out.len() < 100, "a seed session does not end");
    }
    out
}

/// Node 0 as `engine_receive`'s seed node, with `codec`.
pub(crate) fn seed_node(codec: Codec, batch: usize) -> Engine<MemoryStore> {
    let mut node = Engine::new(
        MemoryStore::new(),
        engine_receive::registry(),
        EngineConfig::default()
            .seed(100)
            .codec(codec)
            .batch(batch, 4 << 20),
        node_info(0),
    )
    .expect("create node");
    node.register_peer(hub_info()).expect("register hub");
    node
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// A note with a value of every kind.
pub(crate) fn every_kind(n: i64) -> Record {
    Record::from([
        ("title".to_owned(), text("every kind")),
        ("body".to_owned(), text("ünïcödé ✓")),
        ("rev".to_owned(), text(&format!("r{n}"))),
        ("n".to_owned(), Value::Int(-n)),
        ("x".to_owned(), Value::Float(2.5)),
        ("flag".to_owned(), Value::Bool(true)),
        ("data".to_owned(), Value::Bytes(vec![0, 1, 254, 255])),
        ("at".to_owned(), Value::Timestamp(t(n))),
        ("other".to_owned(), Value::Uuid(Uuid::from_u128(0xabc))),
        (
            "tags".to_owned(),
            Value::List(vec![text("a"), Value::Int(1), Value::Null]),
        ),
        (
            "meta".to_owned(),
            Value::Record(Record::from([("k".to_owned(), text("v"))])),
        ),
    ])
}

fn report(hours: i64) -> Record {
    Record::from([
        ("date".to_owned(), text("2025-12-12")),
        ("brigade".to_owned(), text("B-7")),
        ("hours".to_owned(), Value::Int(hours)),
    ])
}

fn line(report: Uuid, qty: f64) -> Record {
    Record::from([
        ("report_id".to_owned(), Value::Uuid(report)),
        ("text".to_owned(), text("dig")),
        ("qty".to_owned(), Value::Float(qty)),
    ])
}

/// Node 0's sessions with a fresh `engine_receive` hub: inserts (a report,
/// lines referencing it, a note with every value kind), then updates and
/// deletes. Returns the sessions' exchanges.
pub(crate) fn node_sessions(codec: Codec, batch: usize) -> Vec<Vec<Exchange>> {
    let mut hub = engine_receive::new_hub();
    let mut node = seed_node(codec, batch);
    let r = node
        .insert(fixtures::REPORT, report(8), t(1))
        .expect("insert");
    let l1 = node
        .insert(fixtures::LINE, line(r, 1.5), t(1))
        .expect("insert");
    node.insert(fixtures::LINE, line(r, 2.0), t(1))
        .expect("insert");
    node.insert(fixtures::NOTE_KEEP_BOTH, every_kind(1), t(1))
        .expect("insert");
    let first = recorded_session(&mut node, &mut hub, t(2));
    node.put(EntityKey::new(fixtures::REPORT, r), report(9), t(3))
        .expect("update");
    node.delete(EntityKey::new(fixtures::LINE, l1), t(3))
        .expect("delete");
    let second = recorded_session(&mut node, &mut hub, t(4));
    vec![first, second]
}

/// Hub replies that carry a conflicting version: two nodes edit the same
/// report; the second one's session brings the hub's version back.
fn conflict_replies() -> Vec<Vec<u8>> {
    let registry = fixtures::registry(ConflictStrategy::ServerWins);
    let mut net = Net::<MemoryStore>::new(2, registry);
    let r = net.nodes[0]
        .insert(fixtures::REPORT, report(1), t(1))
        .expect("insert");
    net.sync_all(t(2)).expect("sync");
    let key = EntityKey::new(fixtures::REPORT, r);
    net.nodes[0].put(key.clone(), report(2), t(3)).expect("put");
    net.nodes[1].put(key, report(3), t(3)).expect("put");
    let (hub, nodes) = (&mut net.hub, &mut net.nodes);
    recorded_session(&mut nodes[0], hub, t(4));
    let exchanges = recorded_session(&mut nodes[1], hub, t(5));
    exchanges.into_iter().map(|e| e.reply).collect()
}

/// Error envelopes real hubs send: garbage, an unknown sender.
fn error_replies() -> Vec<Vec<u8>> {
    let mut hub = engine_receive::new_hub();
    let garbage = hub.respond(b"\x0a\x03abc", t(1)).expect("respond");
    let mut stranger = Engine::new(
        MemoryStore::new(),
        engine_receive::registry(),
        EngineConfig::default().seed(9),
        node_info(5),
    )
    .expect("create stranger");
    stranger.register_peer(hub_info()).expect("register hub");
    stranger.start_sync(hub_info().id).expect("start");
    let packet = stranger.poll_transmit(t(1)).expect("poll").expect("packet");
    let unknown = hub.respond(&packet.bytes, t(1)).expect("respond");
    vec![garbage.to_vec(), unknown.to_vec()]
}

/// Seeds of `packet_decode`: single real envelopes, repaired by [`FIX_ALL`]
/// (a no-op on real packets), plus one unrepaired.
pub fn packet_decode_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (codec, name) in [
        (Codec::Zstd, "zstd"),
        (Codec::None, "none"),
        (Codec::Gzip, "gzip"),
    ] {
        let sessions = node_sessions(codec, 5_000);
        seeds.push((format!("inserts-{name}"), sessions[0][0].request.clone()));
        seeds.push((
            format!("updates-deletes-{name}"),
            sessions[1][0].request.clone(),
        ));
        seeds.push((format!("hub-ack-{name}"), sessions[0][0].reply.clone()));
    }
    for (i, reply) in conflict_replies().into_iter().enumerate() {
        seeds.push((format!("conflicting-version-{i}"), reply));
    }
    for (i, reply) in error_replies().into_iter().enumerate() {
        seeds.push((format!("error-envelope-{i}"), reply));
    }
    let mut framed: Vec<Seed> = seeds
        .into_iter()
        .map(|(name, bytes)| (name, fixup::frame(FIX_ALL, &bytes)))
        .collect();
    let raw = node_sessions(Codec::Zstd, 5_000)[0][0].request.clone();
    framed.push(("inserts-zstd-unrepaired".into(), fixup::frame(0, &raw)));
    framed
}

/// Seeds of `engine_receive`: node 0's real packet sequences to the hub.
pub fn engine_receive_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (codec, name) in [
        (Codec::Zstd, "zstd"),
        (Codec::None, "none"),
        (Codec::Gzip, "gzip"),
    ] {
        let sessions = node_sessions(codec, 2);
        let all: Vec<Vec<u8>> = sessions
            .iter()
            .flatten()
            .map(|e| e.request.clone())
            .collect();
        seeds.push((format!("two-sessions-{name}"), frames(&all)));
        if codec == Codec::Zstd {
            let mut shuffled = all.clone();
            shuffled.reverse();
            seeds.push(("two-sessions-reversed".into(), frames(&shuffled)));
            let doubled: Vec<Vec<u8>> = all.iter().flat_map(|p| [p.clone(), p.clone()]).collect();
            seeds.push(("two-sessions-duplicated".into(), frames(&doubled)));
            let mut gap = all.clone();
            gap.remove(1);
            seeds.push(("two-sessions-lost-packet".into(), frames(&gap)));
        }
    }
    let errors = error_replies();
    seeds.push(("an-error-envelope".into(), frames(&errors[..1])));
    seeds
}

fn frames(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![FIX_ALL];
    out.extend(fixup::join_frames(packets));
    out
}

/// Regressions built from real packets: headers that announce the largest
/// body the default limits accept (256 MiB) over a small real body, in zstd
/// and gzip. `packet_decode` must not reserve the announced size;
/// `engine_receive` feeds the same packet to the hub.
pub fn crafted_regressions() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (codec, name) in [(Codec::Zstd, "zstd"), (Codec::Gzip, "gzip")] {
        let real = node_sessions(codec, 5_000)[0][0].request.clone();
        let inflated = announce_body_len(&real, 256 << 20);
        out.push((
            "packet_decode",
            format!("announced-256mib-{name}"),
            fixup::frame(FIX_ALL, &inflated),
        ));
        out.push((
            "engine_receive",
            format!("announced-256mib-{name}"),
            frames(&[inflated]),
        ));
    }
    out
}

/// `envelope` with its header's `body_raw_len` replaced (hashes repaired).
fn announce_body_len(envelope: &[u8], len: u64) -> Vec<u8> {
    let mut env = pb::Envelope::decode(envelope).expect("a real envelope decodes");
    if let Some(pb::envelope::Kind::Packet(p)) = env.kind.as_mut() {
        let mut header = pb::PacketHeader::decode(p.header.as_slice()).expect("header");
        header.body_raw_len = len;
        p.header = header.encode_to_vec();
        p.header_sha256 = sha256(&p.header).to_vec();
    }
    env.encode_to_vec()
}

// --- JSON --------------------------------------------------------------------

/// Seeds of `json_envelope`: records of real entities rendered by the serde
/// bridge, each after the byte choosing its type.
pub fn json_envelope_seeds() -> Vec<Seed> {
    let registry = engine_receive::registry();
    let index_of = |name: &str| {
        registry
            .types()
            .position(|t| t.name() == name)
            .and_then(|i| u8::try_from(i).ok())
            .expect("registered type")
    };
    let render = |name: &str, record: &Record| {
        let ty = registry.get(name).expect("registered type");
        let json: serde_json::Value = serde_bridge::from_record(ty, record).expect("renders");
        let mut bytes = vec![index_of(name)];
        bytes.extend(serde_json::to_vec(&json).expect("serializes"));
        bytes
    };
    let mut seeds = vec![
        (
            "note-every-kind".to_owned(),
            render(fixtures::NOTE_MERGE, &every_kind(3)),
        ),
        ("report".to_owned(), render(fixtures::REPORT, &report(7))),
        (
            "line-reference".to_owned(),
            render(fixtures::LINE, &line(Uuid::from_u128(0x77), 0.25)),
        ),
    ];
    let note = index_of(fixtures::NOTE_SERVER_WINS);
    let by_hand = [
        ("timestamp-micros", r#"{"at": 1765535400000000, "n": null}"#),
        (
            "timestamp-rfc3339-offset",
            r#"{"at": "2025-12-12T10:30:00.123456789+02:00", "uuid": "x"}"#,
        ),
        (
            "nested",
            r#"{"tags": [[1, 2.5, "x"], {"a": null}], "meta": {"b": {"c": [true]}}}"#,
        ),
        (
            "uuid-forms",
            r#"{"other": "{00000000-0000-0000-0000-000000000abc}"}"#,
        ),
    ];
    for (name, json) in by_hand {
        let mut bytes = vec![note];
        bytes.extend(json.as_bytes());
        seeds.push((name.to_owned(), bytes));
    }
    seeds
}

// --- operation sequences -------------------------------------------------------

/// Seeds of `engine_ops`: serialized scenarios.
pub fn engine_ops_seeds() -> Vec<Seed> {
    scenarios()
        .into_iter()
        .map(|(name, scenario)| {
            let bytes = encode_scenario(&scenario);
            (name.to_owned(), bytes)
        })
        .collect()
}

/// The hand-written scenarios behind the `engine_ops` seeds.
pub fn scenarios() -> Vec<(&'static str, Scenario)> {
    use Actor::{Hub, Node0, Node1};
    let ins = |who, kind, value| Op::Insert {
        who,
        kind,
        parent: 0,
        value,
    };
    let exchange = |node| {
        [
            Op::Send { node },
            Op::Deliver {
                node,
                pick: 0,
                duplicate: false,
            },
            Op::Receive {
                node,
                pick: 0,
                duplicate: false,
            },
        ]
    };
    let session = |node| {
        let mut ops = vec![Op::StartSync { node }];
        for _ in 0..3 {
            ops.extend(exchange(node));
        }
        ops
    };
    let mut concurrent = Vec::new();
    for kind in [
        Kind::NoteServerWins,
        Kind::NoteLastWriterWins,
        Kind::NoteKeepBoth,
        Kind::NoteManual,
        Kind::NoteMerge,
        Kind::NoteUnversioned,
    ] {
        concurrent.push(ins(Node0, kind, 1));
    }
    concurrent.extend(session(false));
    concurrent.extend(session(true));
    for pick in 0..6 {
        concurrent.push(Op::Put {
            who: Node0,
            pick,
            value: 10,
        });
        concurrent.push(Op::Put {
            who: Node1,
            pick,
            value: 20,
        });
        concurrent.push(Op::Put {
            who: Hub,
            pick,
            value: 30,
        });
    }
    concurrent.extend(session(false));
    concurrent.extend(session(true));
    concurrent.push(Op::Resolve {
        who: Hub,
        pick: 0,
        choice: Choice::Merge,
    });
    concurrent.push(Op::Resolve {
        who: Node1,
        pick: 0,
        choice: Choice::TakeIncoming,
    });

    let mut references = vec![
        ins(Node0, Kind::Report, 1),
        Op::Insert {
            who: Node0,
            kind: Kind::Line,
            parent: 0,
            value: 2,
        },
        Op::Insert {
            who: Node0,
            kind: Kind::Line,
            parent: 0,
            value: 3,
        },
    ];
    references.extend(session(false));
    references.extend(session(true));
    references.push(Op::Delete {
        who: Node1,
        pick: 0,
    });
    references.push(Op::Put {
        who: Node0,
        pick: 1,
        value: 9,
    });
    references.extend(session(true));
    references.extend(session(false));

    let mut faulty = vec![
        ins(Node0, Kind::NoteKeepBoth, 1),
        ins(Node1, Kind::Report, 2),
    ];
    faulty.push(Op::StartSync { node: false });
    faulty.push(Op::Send { node: false });
    faulty.push(Op::Deliver {
        node: false,
        pick: 0,
        duplicate: true,
    });
    faulty.push(Op::Deliver {
        node: false,
        pick: 0,
        duplicate: false,
    });
    faulty.push(Op::Lose {
        node: false,
        to_hub: false,
        pick: 0,
    });
    faulty.push(Op::Receive {
        node: false,
        pick: 0,
        duplicate: true,
    });
    faulty.push(Op::Receive {
        node: false,
        pick: 0,
        duplicate: false,
    });
    faulty.push(Op::Tick { millis: 60_000 });
    faulty.push(Op::Timeout { node: false });
    faulty.extend(exchange(false));
    faulty.extend(session(true));

    let mut crashes = vec![ins(Node0, Kind::NoteLastWriterWins, 1)];
    crashes.push(Op::StartSync { node: false });
    crashes.push(Op::Send { node: false });
    crashes.push(Op::Crash { who: Hub });
    crashes.push(Op::Deliver {
        node: false,
        pick: 0,
        duplicate: false,
    });
    crashes.push(Op::Crash { who: Node0 });
    crashes.push(Op::Receive {
        node: false,
        pick: 0,
        duplicate: false,
    });
    crashes.push(Op::Put {
        who: Node1,
        pick: 0,
        value: 5,
    });
    crashes.extend(session(true));
    crashes.push(Op::Crash { who: Node1 });
    crashes.extend(session(false));

    let mut reordered = vec![
        ins(Node0, Kind::Report, 1),
        ins(Node0, Kind::NoteMerge, 2),
        Op::StartSync { node: false },
        Op::Send { node: false },
        Op::Put {
            who: Node0,
            pick: 1,
            value: 3,
        },
        Op::Tick { millis: 30_000 },
        Op::Timeout { node: false },
        Op::Send { node: false },
        Op::Deliver {
            node: false,
            pick: 1,
            duplicate: false,
        },
        Op::Deliver {
            node: false,
            pick: 0,
            duplicate: false,
        },
        Op::Receive {
            node: false,
            pick: 1,
            duplicate: false,
        },
        Op::Receive {
            node: false,
            pick: 0,
            duplicate: false,
        },
    ];
    reordered.extend(session(true));

    vec![
        (
            "concurrent-edits-every-strategy",
            Scenario {
                report_strategy: 3,
                ops: concurrent,
            },
        ),
        (
            "references-and-deletes",
            Scenario {
                report_strategy: 0,
                ops: references,
            },
        ),
        (
            "loss-duplication-timeout",
            Scenario {
                report_strategy: 2,
                ops: faulty,
            },
        ),
        (
            "crashes-mid-session",
            Scenario {
                report_strategy: 1,
                ops: crashes,
            },
        ),
        (
            "reordered-packets",
            Scenario {
                report_strategy: 4,
                ops: reordered,
            },
        ),
    ]
}

/// Seeds of `sqlite_sql`: serialized scripts.
pub fn sqlite_sql_seeds() -> Vec<Seed> {
    scripts()
        .into_iter()
        .map(|(name, script)| (name.to_owned(), encode_script(&script)))
        .collect()
}

/// The hand-written scripts behind the `sqlite_sql` seeds.
pub fn scripts() -> Vec<(&'static str, Script)> {
    use sqlite_sql::Actor::{Hub, Node0, Node1};
    let u = |owner, index| Unique { owner, index };
    let sync_all = [SqlOp::Sync { node: false }, SqlOp::Sync { node: true }];
    let base = vec![
        SqlOp::InsertParent {
            who: Node0,
            code: 0,
            n: 1,
        },
        SqlOp::InsertParent {
            who: Node0,
            code: 1,
            n: 2,
        },
        SqlOp::InsertChild {
            who: Node0,
            parent: u(Node0, 0),
            label: 0,
            qty: 4,
        },
        SqlOp::InsertChild {
            who: Node0,
            parent: u(Node0, 0),
            label: 1,
            qty: 8,
        },
        SqlOp::Sync { node: false },
        SqlOp::Sync { node: true },
    ];
    let with = |extra: &[SqlOp]| {
        let mut ops = base.clone();
        ops.extend_from_slice(extra);
        ops.extend_from_slice(&sync_all);
        Script { ops }
    };
    vec![
        (
            "inserts-updates",
            with(&[
                SqlOp::UpdateParent {
                    who: Node1,
                    code: u(Node0, 1),
                    n: 5,
                },
                SqlOp::UpdateChild {
                    who: Hub,
                    label: u(Node0, 1),
                    parent: u(Node0, 1),
                    qty: 3,
                },
                SqlOp::InsertParent {
                    who: Node1,
                    code: 2,
                    n: 7,
                },
            ]),
        ),
        (
            "concurrent-updates",
            with(&[
                SqlOp::UpdateParent {
                    who: Node0,
                    code: u(Node0, 0),
                    n: 10,
                },
                SqlOp::UpdateParent {
                    who: Node1,
                    code: u(Node0, 0),
                    n: 20,
                },
                SqlOp::Recode {
                    who: Node1,
                    code: u(Node0, 1),
                    to: 3,
                },
            ]),
        ),
        (
            "upserts",
            with(&[
                SqlOp::UpsertParent {
                    who: Node0,
                    code: 0,
                    n: 9,
                },
                SqlOp::UpsertParent {
                    who: Node1,
                    code: 0,
                    n: 3,
                },
                SqlOp::UpsertChild {
                    who: Node0,
                    parent: u(Node0, 1),
                    label: 0,
                    qty: 1,
                },
            ]),
        ),
        (
            "hard-delete-cascade",
            with(&[
                SqlOp::DeleteParent {
                    who: Node1,
                    code: u(Node0, 0),
                },
                SqlOp::DeleteChild {
                    who: Node0,
                    label: u(Node0, 1),
                },
            ]),
        ),
        (
            "replace",
            with(&[SqlOp::ReplaceParent {
                who: Node0,
                code: 0,
                n: 42,
            }]),
        ),
        (
            "hub-application-writes",
            with(&[
                SqlOp::InsertParent {
                    who: Hub,
                    code: 0,
                    n: 3,
                },
                SqlOp::InsertChild {
                    who: Hub,
                    parent: u(Hub, 0),
                    label: 0,
                    qty: 2,
                },
                SqlOp::UpdateParent {
                    who: Hub,
                    code: u(Node0, 0),
                    n: 6,
                },
            ]),
        ),
        (
            "move-child",
            with(&[
                SqlOp::UpdateChild {
                    who: Node1,
                    label: u(Node0, 0),
                    parent: u(Node0, 1),
                    qty: 6,
                },
                SqlOp::UpdateChild {
                    who: Node0,
                    label: u(Node0, 1),
                    parent: u(Node0, 1),
                    qty: 7,
                },
            ]),
        ),
        (
            "child-under-concurrently-deleted-parent",
            with(&[
                SqlOp::DeleteParent {
                    who: Node0,
                    code: u(Node0, 1),
                },
                SqlOp::InsertChild {
                    who: Node1,
                    parent: u(Node0, 1),
                    label: 2,
                    qty: 1,
                },
            ]),
        ),
    ]
}

// --- serializing Arbitrary inputs ----------------------------------------------

/// The bytes `arbitrary` (1.x) decodes into a value: the inverse of the
/// derived `Arbitrary` impls of the targets' input types. Enum variants are
/// a little-endian `u32` scaled onto the variant count, integers
/// little-endian, `bool` the low bit of a byte, and a trailing `Vec` one
/// byte with the low bit set before each element. The round trip is
/// checked by the tests and by the generator.
trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

/// The `u32` that `arbitrary` maps onto variant `index` of `count`.
fn variant(index: u32, count: u32, out: &mut Vec<u8>) {
    let v = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    out.extend(v.to_le_bytes());
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Encode for Actor {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(*self as u32, 3, out);
    }
}

impl Encode for Kind {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(*self as u32, 8, out);
    }
}

impl Encode for Choice {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(*self as u32, 3, out);
    }
}

macro_rules! encode_fields {
    ($out:expr; $($field:expr),*) => {{ $( Encode::encode($field, $out); )* }};
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const COUNT: u32 = 12;
        match self {
            Op::Insert {
                who,
                kind,
                parent,
                value,
            } => {
                variant(0, COUNT, out);
                encode_fields!(out; who, kind, parent, value);
            }
            Op::Put { who, pick, value } => {
                variant(1, COUNT, out);
                encode_fields!(out; who, pick, value);
            }
            Op::Delete { who, pick } => {
                variant(2, COUNT, out);
                encode_fields!(out; who, pick);
            }
            Op::StartSync { node } => {
                variant(3, COUNT, out);
                encode_fields!(out; node);
            }
            Op::Send { node } => {
                variant(4, COUNT, out);
                encode_fields!(out; node);
            }
            Op::Deliver {
                node,
                pick,
                duplicate,
            } => {
                variant(5, COUNT, out);
                encode_fields!(out; node, pick, duplicate);
            }
            Op::Receive {
                node,
                pick,
                duplicate,
            } => {
                variant(6, COUNT, out);
                encode_fields!(out; node, pick, duplicate);
            }
            Op::Lose { node, to_hub, pick } => {
                variant(7, COUNT, out);
                encode_fields!(out; node, to_hub, pick);
            }
            Op::Timeout { node } => {
                variant(8, COUNT, out);
                encode_fields!(out; node);
            }
            Op::Crash { who } => {
                variant(9, COUNT, out);
                encode_fields!(out; who);
            }
            Op::Resolve { who, pick, choice } => {
                variant(10, COUNT, out);
                encode_fields!(out; who, pick, choice);
            }
            Op::Tick { millis } => {
                variant(11, COUNT, out);
                encode_fields!(out; millis);
            }
        }
    }
}

impl Encode for sqlite_sql::Actor {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(*self as u32, 3, out);
    }
}

impl Encode for Unique {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_fields!(out; &self.owner, &self.index);
    }
}

impl Encode for SqlOp {
    fn encode(&self, out: &mut Vec<u8>) {
        const COUNT: u32 = 11;
        match self {
            SqlOp::InsertParent { who, code, n } => {
                variant(0, COUNT, out);
                encode_fields!(out; who, code, n);
            }
            SqlOp::InsertChild {
                who,
                parent,
                label,
                qty,
            } => {
                variant(1, COUNT, out);
                encode_fields!(out; who, parent, label, qty);
            }
            SqlOp::UpdateParent { who, code, n } => {
                variant(2, COUNT, out);
                encode_fields!(out; who, code, n);
            }
            SqlOp::Recode { who, code, to } => {
                variant(3, COUNT, out);
                encode_fields!(out; who, code, to);
            }
            SqlOp::UpdateChild {
                who,
                label,
                parent,
                qty,
            } => {
                variant(4, COUNT, out);
                encode_fields!(out; who, label, parent, qty);
            }
            SqlOp::DeleteParent { who, code } => {
                variant(5, COUNT, out);
                encode_fields!(out; who, code);
            }
            SqlOp::DeleteChild { who, label } => {
                variant(6, COUNT, out);
                encode_fields!(out; who, label);
            }
            SqlOp::ReplaceParent { who, code, n } => {
                variant(7, COUNT, out);
                encode_fields!(out; who, code, n);
            }
            SqlOp::UpsertParent { who, code, n } => {
                variant(8, COUNT, out);
                encode_fields!(out; who, code, n);
            }
            SqlOp::UpsertChild {
                who,
                parent,
                label,
                qty,
            } => {
                variant(9, COUNT, out);
                encode_fields!(out; who, parent, label, qty);
            }
            SqlOp::Sync { node } => {
                variant(10, COUNT, out);
                encode_fields!(out; node);
            }
        }
    }
}

fn encode_list<T: Encode>(items: &[T], out: &mut Vec<u8>) {
    for item in items {
        out.push(1);
        item.encode(out);
    }
}

/// The bytes that decode to `scenario`.
///
/// # Panics
///
/// When they do not (the `arbitrary` format changed: update [`Encode`]).
pub fn encode_scenario(scenario: &Scenario) -> Vec<u8> {
    let mut out = vec![scenario.report_strategy];
    encode_list(&scenario.ops, &mut out);
    let decoded = Scenario::arbitrary_take_rest(arbitrary::Unstructured::new(&out));
    assert_eq!(decoded.ok().as_ref(), Some(scenario), "scenario round trip");
    out
}

/// The bytes that decode to `script`.
///
/// # Panics
///
/// When they do not (the `arbitrary` format changed: update [`Encode`]).
pub fn encode_script(script: &Script) -> Vec<u8> {
    let mut out = Vec::new();
    encode_list(&script.ops, &mut out);
    let decoded = Script::arbitrary_take_rest(arbitrary::Unstructured::new(&out));
    assert_eq!(decoded.ok().as_ref(), Some(script), "script round trip");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips() {
        for (_, scenario) in scenarios() {
            encode_scenario(&scenario);
        }
        for (_, script) in scripts() {
            encode_script(&script);
        }
        let all_ops = Scenario {
            report_strategy: 9,
            ops: vec![
                Op::Lose {
                    node: true,
                    to_hub: true,
                    pick: 3,
                },
                Op::Tick { millis: 65_535 },
                Op::Resolve {
                    who: Actor::Node1,
                    pick: 1,
                    choice: Choice::KeepCurrent,
                },
                Op::Insert {
                    who: Actor::Hub,
                    kind: Kind::NoteUnversioned,
                    parent: 2,
                    value: 255,
                },
            ],
        };
        encode_scenario(&all_ops);
    }
}
