//! Hub PROCESSES on one database: exchanges/s and changes/s with one, two
//! and three hub processes (children of this binary, each the HTTPS server
//! of sync-transport-http on 127.0.0.1, one engine, one connection) on one
//! PostgreSQL schema, against the same run on one SQLite hub process
//! (`synchronous = FULL`, then `NORMAL`: the throwaway server runs with
//! `fsync = off`).
//! `NODES` (8) nodes (memory stores, threads of this process) each write
//! `PER_SESSION` reports and then sync, `SESSIONS` times, every request to
//! a hub process chosen at random (as behind a load balancer).
//! CPU per process from `/proc/<pid>/stat`: each hub process, the
//! PostgreSQL server (every process named `postgres`), and this process
//! (the nodes and their HTTPS clients).
//!
//! ```sh
//! cargo bench -p sync-store-postgres --bench hub_processes
//! ```
//!
//! One `key=value` line per figure on standard output. A throwaway server,
//! or `SYNCPLAN_PG_URL` (its processes' CPU is then counted only when they
//! run on this machine). `SYNCPLAN_BENCH_SESSIONS` changes the number of
//! sessions per node (default 200), `SYNCPLAN_BENCH_NODES` the number of
//! nodes (default 8).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sync_conformance::fixtures::{REPORT, hub_id, hub_info, key, node_info, record, registry};
use sync_core::{ConflictStrategy, Engine, EngineConfig, Store, Timestamp, Transport, Value};
use sync_store_memory::MemoryStore;
use sync_store_postgres::{PgOptions, PgStore, cluster};
use sync_store_sqlite::{Durability, SqliteOptions, SqliteStore};
use sync_transport_http::clock::system_now;
use sync_transport_http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, SelfSigned, ServerConfig, TlsIdentity,
    TokenPolicy, Trust, issue_token,
};

const CHILD_VAR: &str = "SYNCPLAN_BENCH_HUB_CHILD";
const PG_URL_VAR: &str = "SYNCPLAN_BENCH_PG_URL";
const PG_SCHEMA_VAR: &str = "SYNCPLAN_BENCH_PG_SCHEMA";
const SQLITE_VAR: &str = "SYNCPLAN_BENCH_SQLITE";
/// Set: the SQLite hub commits with `synchronous = NORMAL`.
const SQLITE_NORMAL_VAR: &str = "SYNCPLAN_BENCH_SQLITE_NORMAL";
const CERT_VAR: &str = "SYNCPLAN_BENCH_CERT";
const KEY_VAR: &str = "SYNCPLAN_BENCH_KEY";
const SERVING: &str = "SYNCPLAN_HUB_SERVING ";
/// Nodes, unless `SYNCPLAN_BENCH_NODES` says otherwise.
const NODES: usize = 8;
const PER_SESSION: usize = 20;

fn registry_() -> sync_core::EntityRegistry {
    registry(ConflictStrategy::LastWriterWins)
}

/// The child: serve HTTPS from the store the environment names until
/// standard input closes.
fn child() {
    let env = |name: &str| std::env::var(name).ok();
    let config = EngineConfig::default().seed(u64::from(std::process::id()));
    let identity = TlsIdentity::from_pem(
        &std::fs::read(env(CERT_VAR).expect("a certificate")).expect("the certificate"),
        &std::fs::read(env(KEY_VAR).expect("a key")).expect("the key"),
    )
    .expect("a TLS identity");
    if let Some(url) = env(PG_URL_VAR) {
        let schema = env(PG_SCHEMA_VAR).expect("a schema");
        let store = PgStore::connect(&url, PgOptions::new().schema(schema)).expect("connect");
        serve(
            Engine::open(store, registry_(), config).expect("the hub"),
            identity,
        );
    } else {
        let path = env(SQLITE_VAR).expect("a PostgreSQL or a SQLite hub");
        let options = if env(SQLITE_NORMAL_VAR).is_some() {
            SqliteOptions::default().durability(Durability::Normal)
        } else {
            SqliteOptions::default()
        };
        let store = SqliteStore::open(path, options).expect("open");
        serve(
            Engine::open(store, registry_(), config).expect("the hub"),
            identity,
        );
    }
}

fn serve<S: Store + Send + 'static>(engine: Engine<S>, identity: TlsIdentity) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let server = HubServer::bind(
            "127.0.0.1:0".parse().expect("an address"),
            identity.server_config().expect("TLS"),
            EngineHub::new(engine),
            // Tokens are not rotated: a node keeps the one it was given,
            // whichever process it reaches (rotation counts per process).
            // The per-node rate limit off: it counts per process, so it
            // would throttle one process and not three.
            ServerConfig::default()
                .tokens(TokenPolicy::default().refresh_every(u32::MAX))
                .rate_limit(1_000_000, 1_000_000),
        )
        .await
        .expect("serve");
        println!("{SERVING}{}", server.url());
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .expect("wait for the parent");
        server.shutdown().await;
    });
}

struct HubProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
}

impl HubProcess {
    fn spawn(env: &[(&str, String)]) -> HubProcess {
        let mut command = Command::new(std::env::current_exe().expect("this binary"));
        command
            .env(CHILD_VAR, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn a hub process");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("output")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the hub process ended before serving")
                .expect("its output");
            if let Some(url) = line.strip_prefix(SERVING) {
                break url.trim().to_owned();
            }
        };
        HubProcess { child, stdin, url }
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let started = Instant::now();
        while self.child.try_wait().expect("status").is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// CPU seconds (user + system) process `pid` has used, from
/// `/proc/<pid>/stat` (`None`: gone).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, through `getconf` (100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds of every process named `postgres`, by pid.
fn postgres_cpu() -> Vec<(String, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid = e.ok()?.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "postgres").then(|| Some((pid.clone(), cpu_secs(&pid)?)))?
    })
    .collect()
}

/// The server's CPU between two readings (processes that ended in between
/// are not counted; those that started count from zero).
fn postgres_delta(before: &[(String, f64)], after: &[(String, f64)]) -> f64 {
    after
        .iter()
        .map(|(pid, cpu)| {
            let start = before
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(0.0, |(_, c)| *c);
            cpu - start
        })
        .sum()
}

/// One run: `hubs` processes on the store the environment names; prints
/// the figures under `label`.
fn run(label: &str, hubs: usize, env: &[(&str, String)], tokens: &[String], trust: &Trust) {
    let processes: Vec<HubProcess> = (0..hubs).map(|_| HubProcess::spawn(env)).collect();
    let urls: Vec<String> = processes.iter().map(|p| p.url.clone()).collect();
    let sessions: usize = std::env::var("SYNCPLAN_BENCH_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let client = ClientConfig::default()
        .trust(trust.clone())
        .request_timeout(Duration::from_secs(30));
    let exchanges = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let pids: Vec<String> = processes.iter().map(|p| p.child.id().to_string()).collect();
    let hub_cpu: Vec<f64> = pids.iter().map(|p| cpu_secs(p).unwrap_or(0.0)).collect();
    let server_cpu = postgres_cpu();
    let own_cpu = cpu_secs("self").unwrap_or(0.0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (i, token) in tokens.iter().enumerate() {
            let (urls, client, exchanges, failed) = (&urls, &client, &exchanges, &failed);
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                let transports: Vec<HttpTransport> = urls
                    .iter()
                    .map(|u| HttpTransport::new(u, token, client.clone()).expect("a transport"))
                    .collect();
                let mut node = Engine::new(
                    MemoryStore::new(),
                    registry_(),
                    EngineConfig::default().seed(100 + i as u64),
                    node_info(i),
                )
                .expect("node");
                node.register_peer(hub_info()).expect("register the hub");
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((i as u64 + 1) << 32);
                for s in 0..sessions {
                    let now = system_now();
                    for k in 0..PER_SESSION {
                        let id = (i * 1_000_000 + s * 1_000 + k) as u128;
                        let fields = record([
                            ("date", Value::Text("2025-12-12".into())),
                            ("hours", Value::Int(k as i64)),
                        ]);
                        node.put(key(REPORT, id), fields, now).expect("write");
                    }
                    node.start_sync(hub_id()).expect("start");
                    let session = Instant::now();
                    while session.elapsed() < Duration::from_secs(60) {
                        let now = system_now();
                        let Some(packet) = node.poll_transmit(now).expect("poll") else {
                            if !node.is_syncing(hub_id()) {
                                break;
                            }
                            node.handle_timeout(Timestamp::from_micros(i64::MAX));
                            continue;
                        };
                        // A hub process at random, as a load balancer
                        // would pick (xorshift).
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let transport = &transports[(rng % transports.len() as u64) as usize];
                        let replies = runtime.block_on(transport.exchange(packet.bytes));
                        let mut answered = false;
                        for reply in replies.into_iter().flatten() {
                            answered |= node.handle_incoming(&reply, system_now()).is_ok();
                        }
                        if answered {
                            exchanges.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            node.handle_timeout(Timestamp::from_micros(i64::MAX));
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let own_cpu = cpu_secs("self").unwrap_or(0.0) - own_cpu;
    let server_cpu = postgres_delta(&server_cpu, &postgres_cpu());
    let hub_cpu: Vec<f64> = pids
        .iter()
        .zip(&hub_cpu)
        .map(|(p, before)| cpu_secs(p).unwrap_or(0.0) - before)
        .collect();
    for p in processes {
        p.stop();
    }
    let exchanges = exchanges.into_inner();
    let changes = tokens.len() * sessions * PER_SESSION;
    let put = |name: &str, value: String| println!("{label}.{name}={value}");
    put("hub_processes", hubs.to_string());
    put("nodes", tokens.len().to_string());
    put("changes", changes.to_string());
    put("exchanges", exchanges.to_string());
    put("failed_exchanges", failed.into_inner().to_string());
    put("seconds", format!("{secs:.2}"));
    put("exchanges_per_s", format!("{:.0}", exchanges as f64 / secs));
    put("changes_per_s", format!("{:.0}", changes as f64 / secs));
    for (i, cpu) in hub_cpu.iter().enumerate() {
        put(&format!("hub{i}_cpu_s"), format!("{cpu:.2}"));
        put(
            &format!("hub{i}_cpu_pct"),
            format!("{:.0}", cpu / secs * 100.0),
        );
    }
    if label.starts_with("postgres") {
        put("postgres_server_cpu_s", format!("{server_cpu:.2}"));
        put(
            "postgres_server_cpu_pct",
            format!("{:.0}", server_cpu / secs * 100.0),
        );
    }
    put("nodes_process_cpu_s", format!("{own_cpu:.2}"));
    put(
        "nodes_process_cpu_pct",
        format!("{:.0}", own_cpu / secs * 100.0),
    );
}

/// Registers the nodes on a fresh hub and issues their tokens.
fn set_up<S: Store>(store: S) -> Vec<String> {
    let mut hub = Engine::new(
        store,
        registry_(),
        EngineConfig::default().seed(1),
        hub_info(),
    )
    .expect("hub");
    let policy = TokenPolicy::default();
    let nodes = std::env::var("SYNCPLAN_BENCH_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(NODES);
    (0..nodes)
        .map(|i| {
            hub.register_peer(node_info(i)).expect("register a node");
            issue_token(&mut hub, node_info(i).id, &policy, system_now())
                .expect("a token")
                .as_str()
                .to_owned()
        })
        .collect()
}

fn main() {
    if std::env::var_os(CHILD_VAR).is_some() {
        child();
        return;
    }
    let url = cluster::test_url().unwrap_or_else(|e| panic!("{e}"));
    let cert = SelfSigned::generate(&["127.0.0.1"]).expect("a certificate");
    let dir = tempfile::tempdir().expect("a folder");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert.certificate_pem).expect("write the certificate");
    std::fs::write(&key_path, &cert.key_pem).expect("write the key");
    let trust = Trust::pinned(&cert.fingerprint).expect("pin the certificate");
    let tls = [
        (CERT_VAR, cert_path.to_string_lossy().into_owned()),
        (KEY_VAR, key_path.to_string_lossy().into_owned()),
    ];
    println!(
        "machine.cpus={}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The first run warms the server up (catalog caches, statements).
    for (label, hubs) in [
        ("warmup", 1),
        ("postgres_1", 1),
        ("postgres_2", 2),
        ("postgres_3", 3),
    ] {
        let schema = cluster::unique_schema("bench");
        let store = PgStore::connect(&url, PgOptions::new().schema(&schema)).expect("connect");
        let tokens = set_up(store);
        let mut env = tls.to_vec();
        env.push((PG_URL_VAR, url.clone()));
        env.push((PG_SCHEMA_VAR, schema.clone()));
        run(label, hubs, &env, &tokens, &trust);
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .expect("drop the run's schema");
    }
    // `synchronous = FULL`, the hub's setting, and `NORMAL` (no fsync per
    // commit), the closer match to the throwaway PostgreSQL server, which
    // runs with `fsync = off`.
    for (label, normal) in [("sqlite_1", false), ("sqlite_1_normal", true)] {
        let path = dir.path().join(format!("{label}.db"));
        let tokens =
            set_up(SqliteStore::open(&path, SqliteOptions::default()).expect("sqlite hub"));
        let mut env = tls.to_vec();
        env.push((SQLITE_VAR, path.to_string_lossy().into_owned()));
        if normal {
            env.push((SQLITE_NORMAL_VAR, "1".to_owned()));
        }
        run(label, 1, &env, &tokens, &trust);
    }
}
