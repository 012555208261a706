//! Three hub processes (children of this test binary, each running
//! `https_hub_child`: the HTTPS server of sync-transport-http on 127.0.0.1,
//! an ephemeral port and a test certificate) on one Postgres schema, and six
//! nodes (threads of this process) syncing through them: every exchange goes
//! to a hub chosen at random, as behind a load balancer. Midway one hub
//! process is killed with SIGKILL while the nodes are exchanging, and later
//! started again. In the end every node holds the hub's state, every report
//! a node wrote is on the hub with its last value, and no packet was applied
//! twice on either side.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sync_conformance::fixtures::{REPORT, hub_id, key, node_info, record, registry};
use sync_conformance::net::synced_state;
use sync_core::{ConflictStrategy, Engine, EngineConfig, Timestamp, Transport, Value};
use sync_store_memory::MemoryStore;
use sync_store_postgres::{PgOptions, PgStore, cluster};
use sync_transport_http::clock::system_now;
use sync_transport_http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, SelfSigned, ServerConfig, TlsIdentity,
    TokenPolicy, Trust, issue_token,
};

const URL_VAR: &str = "SYNCPLAN_PG_HTTPS_URL";
const SCHEMA_VAR: &str = "SYNCPLAN_PG_HTTPS_SCHEMA";
const CERT_VAR: &str = "SYNCPLAN_PG_HTTPS_CERT";
const KEY_VAR: &str = "SYNCPLAN_PG_HTTPS_KEY";
/// What a child prints, followed by its URL, once it serves.
const SERVING: &str = "SYNCPLAN_HUB_SERVING ";
const HUBS: usize = 3;
const NODES: usize = 6;
const ROUNDS: usize = 20;
/// Own reports a node writes per round (besides one shared report).
const PER_ROUND: usize = 3;
/// Shared reports, edited by every node (conflicts across hub processes).
const SHARED: usize = 3;
/// A node's pause between rounds.
const PACE: Duration = Duration::from_millis(150);
/// Exchanges (all nodes together) after which one hub process is killed.
const KILL_AFTER: usize = 60;

/// The child: a hub process serving HTTPS on 127.0.0.1 from the schema the
/// parent names, until its standard input closes (or SIGKILL).
#[test]
#[ignore = "the child of three_https_hub_processes_on_one_database_survive_a_sigkill"]
fn https_hub_child() {
    let (Ok(url), Ok(schema), Ok(cert), Ok(key)) = (
        std::env::var(URL_VAR),
        std::env::var(SCHEMA_VAR),
        std::env::var(CERT_VAR),
        std::env::var(KEY_VAR),
    ) else {
        panic!("run by three_https_hub_processes_on_one_database_survive_a_sigkill only");
    };
    let store = PgStore::connect(&url, PgOptions::new().schema(schema)).expect("connect");
    let engine = Engine::open(
        store,
        registry(ConflictStrategy::LastWriterWins),
        EngineConfig::default().seed(u64::from(std::process::id())),
    )
    .expect("open the hub");
    let identity = TlsIdentity::from_pem(
        &std::fs::read(cert).expect("the certificate"),
        &std::fs::read(key).expect("the key"),
    )
    .expect("a TLS identity");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // The engine ends inside the runtime, with the server: the store closes
    // its connection off the async threads itself.
    let serving = EngineHub::new(engine);
    runtime.block_on(async {
        let server = HubServer::bind(
            "127.0.0.1:0".parse().expect("an address"),
            identity.server_config().expect("TLS"),
            serving,
            // Tokens are not refreshed: a node keeps the one it was given,
            // whichever process it reaches.
            ServerConfig::default().tokens(TokenPolicy::default().refresh_every(u32::MAX)),
        )
        .await
        .expect("serve");
        println!("{SERVING}{}", server.url());
        // Serve until the parent closes our standard input.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("wait for the parent");
        server.shutdown().await;
    });
}

/// A running hub process.
struct HubProcess {
    child: Child,
    /// Closing it stops the child.
    stdin: Option<ChildStdin>,
    url: String,
}

impl HubProcess {
    fn spawn(env: &[(&str, String)]) -> HubProcess {
        let exe = std::env::current_exe().expect("test binary");
        let mut command = Command::new(exe);
        command
            .args([
                "--ignored",
                "--exact",
                "https_hub_child",
                "--test-threads=1",
                "--nocapture",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn a hub process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the child's output");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // The test harness may print the test's name first.
                if let Some(at) = line.find(SERVING) {
                    let _ = tx.send(line[at + SERVING.len()..].trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the hub process never served");
        HubProcess { child, stdin, url }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL a hub process");
        self.child.wait().expect("reap a hub process");
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let started = Instant::now();
        while self.child.try_wait().expect("status").is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                self.kill();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A small deterministic generator (xorshift).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What the nodes' exchanges did, all together.
#[derive(Default)]
struct Counts {
    exchanges: AtomicUsize,
    failed: AtomicUsize,
    served: [AtomicUsize; HUBS],
    /// Requests on their way to each hub process right now.
    in_flight: [AtomicUsize; HUBS],
}

/// Runs one sync session of `node` to its end, each request to a hub
/// process chosen at random among those up (`urls`). A request without an
/// answer (a hub killed, a hub's store error) is retried at once on another
/// choice. Returns the packet numbers of the hub packets applied (not
/// duplicates), in order.
#[allow(clippy::too_many_arguments)]
fn session(
    node: &mut Engine<MemoryStore>,
    runtime: &tokio::runtime::Runtime,
    urls: &Mutex<Vec<Option<String>>>,
    token: &str,
    config: &ClientConfig,
    rng: &mut u64,
    counts: &Counts,
    applied: &mut Vec<u64>,
) {
    node.start_sync(hub_id()).expect("start a session");
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a session did not end within 30 s"
        );
        let now = system_now();
        let Some(packet) = node.poll_transmit(now).expect("build a request") else {
            if !node.is_syncing(hub_id()) {
                return;
            }
            // Waiting for an answer that will not come: retry now.
            node.handle_timeout(Timestamp::from_micros(i64::MAX));
            continue;
        };
        let (which, url) = {
            let urls = urls.lock().expect("the hub list");
            let up: Vec<(usize, &String)> = urls
                .iter()
                .enumerate()
                .filter_map(|(i, u)| u.as_ref().map(|u| (i, u)))
                .collect();
            let (which, url) = up[(next(rng) % up.len() as u64) as usize];
            (which, url.clone())
        };
        counts.in_flight[which].fetch_add(1, Ordering::SeqCst);
        let replies = runtime.block_on(async {
            let transport = HttpTransport::new(&url, token, config.clone()).expect("a transport");
            transport.exchange(packet.bytes).await
        });
        counts.in_flight[which].fetch_sub(1, Ordering::SeqCst);
        let mut answered = false;
        if let Ok(replies) = replies {
            for reply in replies {
                if let Ok(incoming) = node.handle_incoming(&reply, system_now()) {
                    answered = true;
                    if !incoming.duplicate {
                        applied.push(incoming.packet_no);
                    }
                }
            }
        }
        if answered {
            counts.exchanges.fetch_add(1, Ordering::Relaxed);
            counts.served[which].fetch_add(1, Ordering::Relaxed);
        } else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            node.handle_timeout(Timestamp::from_micros(i64::MAX));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn three_https_hub_processes_on_one_database_survive_a_sigkill() {
    let started = Instant::now();
    let url = common::url();
    let schema = cluster::unique_schema("https");
    let registry = registry(ConflictStrategy::LastWriterWins);
    // This process's store: it sets the hub up, reads the end state, and
    // drops the schema at the end.
    let store =
        PgStore::connect(&url, PgOptions::new().schema(&schema).temporary(true)).expect("connect");
    let mut hub = common::hub_on(store, &registry);
    let policy = TokenPolicy::default();
    let tokens: Vec<String> = (0..NODES)
        .map(|i| {
            hub.register_peer(node_info(i)).expect("register a node");
            issue_token(&mut hub, node_info(i).id, &policy, system_now())
                .expect("a token")
                .as_str()
                .to_owned()
        })
        .collect();
    let cert = SelfSigned::generate(&["127.0.0.1"]).expect("a certificate");
    let dir = tempfile::tempdir().expect("a folder for the certificate");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert.certificate_pem).expect("write the certificate");
    std::fs::write(&key_path, &cert.key_pem).expect("write the key");
    let env = [
        (URL_VAR, url.clone()),
        (SCHEMA_VAR, schema.clone()),
        (CERT_VAR, cert_path.to_string_lossy().into_owned()),
        (KEY_VAR, key_path.to_string_lossy().into_owned()),
    ];
    let mut processes: Vec<HubProcess> = (0..HUBS).map(|_| HubProcess::spawn(&env)).collect();
    let urls = Mutex::new(processes.iter().map(|p| Some(p.url.clone())).collect());
    let client = ClientConfig::default()
        .trust(Trust::pinned(&cert.fingerprint).expect("pin the certificate"))
        .request_timeout(Duration::from_secs(10));
    let counts = Counts::default();
    let killed = AtomicBool::new(false);
    let victim = 1;
    let mut kill_report = None;

    let results: Vec<(Engine<MemoryStore>, Vec<u64>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..NODES)
            .map(|i| {
                let (urls, counts, registry, client) = (&urls, &counts, &registry, &client);
                let token = tokens[i].clone();
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    let mut node = common::memory_node(registry, i);
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((i as u64 + 1) << 32);
                    let mut applied = Vec::new();
                    for round in 0..ROUNDS {
                        // Paced, so that the run outlasts a hub process's
                        // restart (about a second) by far.
                        std::thread::sleep(PACE);
                        let now = system_now();
                        for k in 0..PER_ROUND {
                            node.put(own_key(i, round, k), report(i, round), now)
                                .expect("write own");
                        }
                        let shared = key(REPORT, (round % SHARED) as u128 + 1);
                        node.put(shared, report(i, round), now)
                            .expect("write shared");
                        session(
                            &mut node,
                            &runtime,
                            urls,
                            &token,
                            client,
                            &mut rng,
                            counts,
                            &mut applied,
                        );
                    }
                    (node, applied)
                })
            })
            .collect();
        // The kill: once the nodes are well under way, SIGKILL one hub
        // process while they exchange, leave it down a while, start it again.
        while counts.exchanges.load(Ordering::Relaxed) < KILL_AFTER
            && !workers.iter().all(|w| w.is_finished())
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Mid-exchange if it can be had within a second: a request to the
        // victim is on its way.
        let waiting = Instant::now();
        while counts.in_flight[victim].load(Ordering::SeqCst) == 0
            && waiting.elapsed() < Duration::from_secs(1)
        {
            std::hint::spin_loop();
        }
        let mid_exchange = counts.in_flight[victim].load(Ordering::SeqCst);
        let before = counts.exchanges.load(Ordering::Relaxed);
        processes[victim].kill();
        killed.store(true, Ordering::SeqCst);
        urls.lock().expect("the hub list")[victim] = None;
        std::thread::sleep(Duration::from_millis(300));
        let restarted = HubProcess::spawn(&env);
        urls.lock().expect("the hub list")[victim] = Some(restarted.url.clone());
        processes[victim] = restarted;
        let restarted_at = counts.served[victim].load(Ordering::Relaxed);
        let after = counts.exchanges.load(Ordering::Relaxed);
        let joined = workers
            .into_iter()
            .map(|w| w.join().expect("a node thread"))
            .collect();
        let by_restarted = counts.served[victim].load(Ordering::Relaxed) - restarted_at;
        kill_report = Some((before, after, by_restarted, mid_exchange));
        joined
    });
    let (mut nodes, applied): (Vec<_>, Vec<_>) = results.into_iter().unzip();

    // Quiet sessions, one node at a time, through every hub in turn: all
    // catch up with what the others wrote last.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut applied = applied;
    for pass in 0..2 {
        for (i, node) in nodes.iter_mut().enumerate() {
            let only = Mutex::new(
                (0..HUBS)
                    .map(|h| (h == (i + pass) % HUBS).then(|| processes[h].url.clone()))
                    .collect(),
            );
            let mut rng = 1 + i as u64;
            session(
                node,
                &runtime,
                &only,
                &tokens[i],
                &client,
                &mut rng,
                &counts,
                &mut applied[i],
            );
        }
    }
    for process in processes {
        process.stop();
    }

    let on_hub = synced_state(&mut hub).expect("read the hub");
    assert_eq!(on_hub.len(), NODES * ROUNDS * PER_ROUND + SHARED);
    for (i, node) in nodes.iter_mut().enumerate() {
        assert_eq!(synced_state(node).expect("read a node"), on_hub, "node {i}");
        for round in 0..ROUNDS {
            for k in 0..PER_ROUND {
                let kept = hub
                    .get(&own_key(i, round, k))
                    .expect("read")
                    .expect("an acknowledged report is kept");
                assert_eq!(kept.fields["hours"], Value::Int((100 * i + round) as i64));
            }
        }
        // Nothing applied twice: on the node, every hub packet it applied
        // has a number above the one before; on the hub, the last packet
        // the node sent is the last one the hub applied, and the reverse.
        let numbers = &applied[i];
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "node {i} applied a hub packet number twice or out of order: {numbers:?}"
        );
        let on_node = node.peer(hub_id()).expect("the hub on the node");
        let of_node = hub.peer(node_info(i).id).expect("the node on the hub");
        assert_eq!(
            of_node.received_packet_no, on_node.sent_packet_no,
            "node {i}"
        );
        assert_eq!(
            on_node.received_packet_no, of_node.sent_packet_no,
            "node {i}"
        );
        assert_eq!(node.pending_count(hub_id()).expect("pending"), 0);
        assert_eq!(hub.pending_count(node_info(i).id).expect("pending"), 0);
    }
    let served = counts.served.each_ref().map(|s| s.load(Ordering::Relaxed));
    let (before, after, by_restarted, mid_exchange) = kill_report.expect("the kill happened");
    eprintln!(
        "{HUBS} hub processes, {NODES} nodes, {ROUNDS} rounds: {} exchanges answered \
         (per process {served:?}), {} unanswered and retried; SIGKILL after {before} \
         exchanges ({mid_exchange} requests to it in flight), restarted after {after}, then \
         answered {by_restarted}; {:.1} s",
        counts.exchanges.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(killed.load(Ordering::SeqCst));
    assert!(
        after > before,
        "the nodes were exchanging while a hub was down"
    );
    assert!(
        by_restarted > 0,
        "the restarted hub process served nodes before they were done"
    );
    assert!(
        served.iter().all(|&s| s > 0),
        "every hub process served: {served:?}"
    );
}

fn own_key(node: usize, round: usize, k: usize) -> sync_core::EntityKey {
    key(REPORT, (10_000 * (node + 1) + 10 * round + k) as u128)
}

fn report(node: usize, round: usize) -> sync_core::Record {
    record([
        (
            "date",
            Value::Text(format!("2025-12-{:02}", round % 28 + 1)),
        ),
        ("brigade", Value::Text(format!("B{node}"))),
        ("hours", Value::Int((100 * node + round) as i64)),
    ])
}
