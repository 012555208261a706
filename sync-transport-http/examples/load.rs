//! Load benchmark: many nodes exchanging with one hub over HTTPS on
//! loopback, bounded in time, against a ceiling measured in the same run.
//!
//! ```text
//! cargo run --release -p sync-transport-http --example load -- --nodes 200 --secs 10 --rate 2000
//! ```
//!
//! Phases, each reported on its own line:
//! 1. one node, idle exchanges one after another (nothing to send either
//!    way): the latency of an exchange without load;
//! 2. `--nodes` nodes at once, each looping idle exchanges over its own
//!    kept-alive connection for `--secs` (a closed loop: every node always
//!    has one exchange in flight): exchanges/s, latency under load, errors.
//!    The hub is saturated here, so by Little's law the mean latency is
//!    the number of nodes over the rate (200 nodes at 5,000/s: 40 ms);
//! 3. the same nodes paced (an open loop): together they start `--rate`
//!    exchanges per second, each node one every `nodes / rate` seconds,
//!    staggered, for `--secs`. The latency of each is timed to its reply
//!    from when it started, or from when it was due if the node's previous
//!    exchange was still running then (so waiting behind a late one
//!    counts): the latency of an idle exchange at that load;
//! 4. the ceiling: the same clients and TLS against a trivial handler that
//!    answers every request with a fixed body, for `--secs`.
//!
//! Client and server share the machine (and its cores): the figures are a
//! floor for a hub on its own machine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, NodeId,
    NodeInfo, Role, Timestamp, Transport, Uuid,
};
use sync_store_memory::MemoryStore;
use sync_transport_http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, SelfSigned, ServerConfig, Trust,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    nodes: usize,
    secs: u64,
    /// Exchanges per second the nodes start together in the paced phase.
    rate: f64,
}

fn args() -> Result<Args, BoxError> {
    let mut args = Args {
        nodes: 200,
        secs: 10,
        rate: 2000.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--nodes" => args.nodes = value.parse()?,
            "--secs" => args.secs = value.parse()?,
            "--rate" => args.rate = value.parse()?,
            other => {
                return Err(
                    format!("unknown flag {other}; use --nodes N --secs S --rate R").into(),
                );
            }
        }
    }
    if !(args.rate.is_finite() && args.rate > 0.0) || args.nodes == 0 {
        return Err("--rate must be above 0 and --nodes at least 1".into());
    }
    Ok(args)
}

fn registry() -> EntityRegistry {
    EntityRegistry::new().with(
        EntityType::new("Note")
            .field("text", FieldKind::Text)
            .strategy(ConflictStrategy::ServerWins),
    )
}

fn hub_info() -> NodeInfo {
    NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub)
}

fn node_info(i: usize) -> NodeInfo {
    NodeInfo::new(
        NodeId(Uuid::from_u128(0x1000 + i as u128)),
        format!("NODE-{i}"),
        format!("Node {i}"),
        Role::Node,
    )
}

fn now() -> Timestamp {
    sync_transport_http::clock::system_now()
}

/// A node engine with its transport.
struct Node {
    engine: Engine<MemoryStore>,
    transport: HttpTransport,
}

impl Node {
    /// One idle exchange: the session's packet out, the hub's reply in.
    async fn idle_exchange(&mut self) -> Result<Duration, BoxError> {
        let hub = hub_info().id;
        self.engine.start_sync(hub)?;
        let packet = self.engine.poll_transmit(now())?.ok_or("no packet")?;
        let started = Instant::now();
        let replies = self.transport.exchange(packet.bytes).await?;
        let elapsed = started.elapsed();
        for reply in replies {
            self.engine.handle_incoming(&reply, now())?;
        }
        if self.engine.is_syncing(hub) {
            return Err("an idle session did not end after one exchange".into());
        }
        Ok(elapsed)
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, error: BoxError) {
        self.errors += 1;
        self.first_error.get_or_insert(error.to_string());
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let cert = SelfSigned::generate(&["127.0.0.1"])?;
    let trust = Trust::pinned(&cert.fingerprint)?;

    let mut hub_engine = Engine::new(
        MemoryStore::new(),
        registry(),
        EngineConfig::default().applied_events(false),
        hub_info(),
    )?;
    for i in 0..args.nodes {
        hub_engine.register_peer(node_info(i))?;
    }
    let hub = EngineHub::new(hub_engine);
    // The benchmark measures throughput, not the per-node rate limit.
    let config = ServerConfig::default().rate_limit(1_000_000, 1_000_000);
    let server = HubServer::bind(
        "127.0.0.1:0".parse()?,
        cert.identity.server_config()?,
        hub,
        config,
    )
    .await?;
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let token = server.issue_token(node_info(i).id).await?;
        let transport = HttpTransport::new(
            &server.url(),
            token.as_str(),
            ClientConfig::default().trust(trust.clone()),
        )?;
        let mut engine = Engine::new(
            MemoryStore::new(),
            registry(),
            EngineConfig::default().seed(i as u64),
            node_info(i),
        )?;
        engine.register_peer(hub_info())?;
        nodes.push(Node { engine, transport });
    }

    // Phase 1: one node, no load.
    let mut alone = Tally::default();
    let solo = &mut nodes[0];
    for _ in 0..200 {
        solo.idle_exchange().await?;
    }
    let solo_until = Instant::now() + Duration::from_secs(args.secs.clamp(1, 3));
    while Instant::now() < solo_until {
        match solo.idle_exchange().await {
            Ok(d) => alone.latencies_us.push(d.as_micros() as u64),
            Err(e) => alone.error(e),
        }
    }
    let solo_count = alone.latencies_us.len();
    println!(
        "idle exchange, one node, no load: {solo_count} exchanges, p50 {:.3} ms, p99 {:.3} ms, errors {}",
        alone.percentile(0.5),
        alone.percentile(0.99),
        alone.errors
    );

    // Phase 2: every node at once.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut node in nodes {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                match node.idle_exchange().await {
                    Ok(d) => tally.latencies_us.push(d.as_micros() as u64),
                    Err(e) => tally.error(e),
                }
            }
            (node, tally)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut loaded = Tally::default();
    let mut nodes = Vec::with_capacity(args.nodes);
    for task in tasks {
        let (node, tally) = task.await?;
        nodes.push(node);
        loaded.merge(tally);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = loaded.latencies_us.len();
    println!(
        "idle exchanges, {} nodes at once for {:.1} s: {count} exchanges, {:.0} exchanges/s, p50 {:.3} ms, p99 {:.3} ms, errors {}{}",
        args.nodes,
        elapsed,
        count as f64 / elapsed,
        loaded.percentile(0.5),
        loaded.percentile(0.99),
        loaded.errors,
        loaded
            .first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    );

    // Phase 3: the same nodes paced, an open loop.
    let period = Duration::from_secs_f64(args.nodes as f64 / args.rate);
    let started = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = started + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    let count = nodes.len();
    for (i, mut node) in nodes.into_iter().enumerate() {
        let first = started + period.mul_f64(i as f64 / count as f64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut due = first;
            let mut busy_until = first;
            while due < end {
                tokio::time::sleep_until(due).await;
                // Timed from when it was due when the node's previous
                // exchange ran past that; otherwise from when the timer
                // fired (tokio's timer wheel fires up to a millisecond late,
                // which is not the hub's time).
                let start = if busy_until > due {
                    due
                } else {
                    tokio::time::Instant::now()
                };
                match node.idle_exchange().await {
                    Ok(_) => tally.latencies_us.push(start.elapsed().as_micros() as u64),
                    Err(e) => tally.error(e),
                }
                busy_until = tokio::time::Instant::now();
                due += period;
            }
            tally
        }));
    }
    let mut paced = Tally::default();
    for task in tasks {
        paced.merge(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = paced.latencies_us.len();
    println!(
        "idle exchanges, {} nodes paced at {:.0} exchanges/s in all for {:.1} s: {count} exchanges, {:.0} exchanges/s, p50 {:.3} ms, p99 {:.3} ms, errors {}{}",
        args.nodes,
        args.rate,
        elapsed,
        count as f64 / elapsed,
        paced.percentile(0.5),
        paced.percentile(0.99),
        paced.errors,
        paced
            .first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    );
    server.shutdown().await;

    // Phase 4: the ceiling, a trivial handler over the same TLS and client.
    let (addr, requests) = trivial_server(cert.identity.server_config()?).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.nodes {
        let transport = HttpTransport::new(
            &format!("https://{addr}"),
            "st1.none",
            ClientConfig::default().trust(trust.clone()),
        )?;
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            let body = Bytes::from_static(b"ping");
            while !stop.load(Ordering::Relaxed) {
                if transport.exchange(body.clone()).await.is_err() {
                    errors += 1;
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for task in tasks {
        errors += task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let served = requests.load(Ordering::Relaxed);
    println!(
        "ceiling, plain HTTPS keep-alive requests to a trivial handler, {} clients: {:.0} requests/s, errors {errors}",
        args.nodes,
        served as f64 / elapsed
    );
    Ok(())
}

/// A TLS server answering every request with a fixed protobuf-typed body.
async fn trivial_server(
    tls: Arc<rustls::ServerConfig>,
) -> Result<(SocketAddr, Arc<AtomicU64>), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async {
                        let mut reply = Response::new(Full::new(Bytes::from_static(b"pong")));
                        *reply.status_mut() = StatusCode::OK;
                        reply.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static(sync_transport_http::PROTOBUF),
                        );
                        Ok::<_, Infallible>(reply)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((addr, requests))
}
