//! A hub process killed with SIGKILL mid-exchange loses nothing it
//! acknowledged: a child process (this test binary, running `hub_child`)
//! serves nodes from the same database as a hub in this process; requests go
//! to both in turn, and one in three requests to the child is cut short by
//! SIGKILL after a random delay. The node gets no reply, retries, and its
//! retry lands on the other process. In the end every node holds the hub's
//! state, and every report a node wrote is on the hub with its last value.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sync_conformance::fixtures::{REPORT, hub_info, key, node_info, record, registry, t};
use sync_conformance::net::synced_state;
use sync_core::{ConflictStrategy, Engine, EngineConfig, Timestamp, Value};
use sync_store_memory::MemoryStore;
use sync_store_postgres::{PgOptions, PgStore, cluster};

const URL_VAR: &str = "SYNCPLAN_PG_CHILD_URL";
const SCHEMA_VAR: &str = "SYNCPLAN_PG_CHILD_SCHEMA";
const SOCKET_VAR: &str = "SYNCPLAN_PG_CHILD_SOCKET";
const NODES: usize = 3;
const STEPS: usize = 45;

/// One request: the time (i64 LE micros), the length (u32 LE), the bytes.
fn write_request(stream: &mut UnixStream, now: Timestamp, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&now.as_micros().to_le_bytes())?;
    stream.write_all(&(bytes.len() as u32).to_le_bytes())?;
    stream.write_all(bytes)
}

/// One reply: 1 for an answer (0 for a hub error), the length, the bytes.
fn read_frame(stream: &mut UnixStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0; len];
    stream.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// The child: a hub on the schema the parent names, answering requests on
/// the parent's socket until it closes (or SIGKILL).
#[test]
#[ignore = "the child of a_hub_process_killed_mid_exchange_loses_nothing_acknowledged"]
fn hub_child() {
    let (Ok(url), Ok(schema), Ok(socket)) = (
        std::env::var(URL_VAR),
        std::env::var(SCHEMA_VAR),
        std::env::var(SOCKET_VAR),
    ) else {
        panic!("run by a_hub_process_killed_mid_exchange_loses_nothing_acknowledged only");
    };
    let store = PgStore::connect(&url, PgOptions::new().schema(schema)).expect("connect");
    let seed = u64::from(std::process::id());
    let mut hub = Engine::open(
        store,
        registry(ConflictStrategy::LastWriterWins),
        EngineConfig::default().seed(seed),
    )
    .expect("open the hub");
    let mut stream = UnixStream::connect(socket).expect("connect to the parent");
    loop {
        let mut head = [0u8; 12];
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let now = Timestamp::from_micros(i64::from_le_bytes(head[..8].try_into().expect("8")));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4")) as usize;
        let mut request = vec![0; len];
        stream.read_exact(&mut request).expect("a request");
        let (ok, reply) = match hub.respond(&request, now) {
            Ok(reply) => (1u8, reply.to_vec()),
            Err(e) => (0u8, e.to_string().into_bytes()),
        };
        stream.write_all(&[ok]).expect("reply");
        stream
            .write_all(&(reply.len() as u32).to_le_bytes())
            .expect("reply");
        stream.write_all(&reply).expect("reply");
    }
}

struct ChildHub {
    child: Child,
    stream: UnixStream,
}

fn spawn_child(listener: &UnixListener, socket: &str, url: &str, schema: &str) -> ChildHub {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "hub_child", "--test-threads=1"])
        .env(URL_VAR, url)
        .env(SCHEMA_VAR, schema)
        .env(SOCKET_VAR, socket)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the hub child");
    listener.set_nonblocking(true).expect("nonblocking");
    let started = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the child never connected"
                );
                assert!(
                    child.try_wait().expect("status").is_none(),
                    "the child died"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    ChildHub { child, stream }
}

/// A small deterministic generator for kill decisions and delays.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_hub_process_killed_mid_exchange_loses_nothing_acknowledged() {
    let url = common::url();
    let schema = cluster::unique_schema("crash");
    let registry = registry(ConflictStrategy::LastWriterWins);
    let store =
        PgStore::connect(&url, PgOptions::new().schema(&schema).temporary(true)).expect("connect");
    let mut hub = common::hub_on(store, &registry);
    let mut nodes: Vec<_> = (0..NODES)
        .map(|i| {
            hub.register_peer(node_info(i)).expect("register a node");
            let mut node = Engine::new(
                MemoryStore::new(),
                registry.clone(),
                EngineConfig::default().seed(100 + i as u64),
                node_info(i),
            )
            .expect("node");
            node.register_peer(hub_info()).expect("register the hub");
            node
        })
        .collect();
    let dir = tempfile::tempdir().expect("socket directory");
    let socket = dir.path().join("hub.sock").to_string_lossy().into_owned();
    let listener = UnixListener::bind(&socket).expect("bind");
    let mut child = spawn_child(&listener, &socket, &url, &schema);

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut kills, mut committed_then_killed, mut to_child, mut to_parent) = (0, 0, 0, 0);
    let mut turn = 0usize;
    let mut now = t(0);
    let mut written = vec![Vec::new(); NODES];
    for step in 0..STEPS {
        let i = step % NODES;
        now = now.add_millis(1_000);
        for k in 0..4 {
            let own = key(REPORT, (10_000 * (i + 1) + 10 * step + k) as u128);
            nodes[i]
                .put(own.clone(), report(i, step), now)
                .expect("write");
            written[i].push((own, step));
        }
        let shared = key(REPORT, (step % 2) as u128 + 1);
        nodes[i]
            .put(shared, report(i, step), now)
            .expect("write shared");
        common::drive(&mut nodes[i], &mut now, 400, |request, now| {
            turn += 1;
            if turn % 2 == 0 {
                to_parent += 1;
                return hub.respond(request, now).ok().map(|r| r.to_vec());
            }
            to_child += 1;
            let kill = next(&mut rng) % 3 == 0;
            let received_before = hub.peer(node_info(i).id).expect("peer").received_packet_no;
            write_request(&mut child.stream, now, request).expect("send to the child");
            if kill {
                std::thread::sleep(Duration::from_micros(next(&mut rng) % 8_000));
                child.child.kill().expect("SIGKILL the hub child");
                child.child.wait().expect("reap the hub child");
                kills += 1;
                let received_after = hub.peer(node_info(i).id).expect("peer").received_packet_no;
                if received_after != received_before {
                    committed_then_killed += 1;
                }
                child = spawn_child(&listener, &socket, &url, &schema);
                return None;
            }
            match read_frame(&mut child.stream).expect("the child's reply") {
                (1, reply) => Some(reply),
                _ => None,
            }
        });
    }
    drop(child.stream);
    let _ = child.child.wait();

    for node in nodes.iter_mut() {
        for _ in 0..2 {
            common::drive(node, &mut now, 500, |request, now| {
                hub.respond(request, now).ok().map(|r| r.to_vec())
            });
        }
    }
    let on_hub = synced_state(&mut hub).expect("read the hub");
    for (i, node) in nodes.iter_mut().enumerate() {
        assert_eq!(synced_state(node).expect("read a node"), on_hub, "node {i}");
        for (own, step) in &written[i] {
            let kept = hub
                .get(own)
                .expect("read")
                .expect("an acknowledged report is kept");
            assert_eq!(kept.fields["hours"], Value::Int((100 * i + step) as i64));
        }
    }
    assert_eq!(on_hub.len(), STEPS * 4 + 2);
    eprintln!(
        "{STEPS} sessions: {to_child} requests to the child hub, {to_parent} to this process's hub, \
         {kills} SIGKILLs ({committed_then_killed} after the child had committed the packet, \
         the rest before)"
    );
    assert!(kills >= 5, "too few kills to prove anything: {kills}");
}

fn report(node: usize, step: usize) -> sync_core::Record {
    record([
        ("date", Value::Text(format!("2025-12-{:02}", step % 28 + 1))),
        ("brigade", Value::Text(format!("B{node}"))),
        ("hours", Value::Int((100 * node + step) as i64)),
    ])
}
