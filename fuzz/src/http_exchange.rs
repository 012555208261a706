//! Target `http_exchange`: the HTTPS hub's request handling fed raw bytes,
//! without a network: [`HubService::respond_raw`] parses them with the same
//! HTTP/1.1 parser (hyper) and serves them with the same routes, limits,
//! token checks and hub engine as `HubServer`, over an in-memory pipe.
//!
//! Input: the bytes a client sends on one connection (one request or
//! several pipelined). The hub runs on a memory store with a fixed signing
//! key and a fixed clock, so the seeds carry tokens that verify: node 0 is
//! registered, node 1 is registered and then revoked. After the input it
//! checks that
//! - serving never panics and never hangs (the fuzzer's timeout);
//! - serving holds at most [`ALLOC_SLACK`] bytes plus [`ALLOC_FACTOR`]
//!   times the input at its peak, counted on the target's thread and on
//!   its runtime's blocking pool (an [`alloc_track::Group`]): a header
//!   announcing 256 MiB (HTTP `content-length`, a zstd frame's content
//!   size, a packet's `body_raw_len`) must not make the hub reserve it;
//! - the server's answer starts with an HTTP/1.1 status line and holds no
//!   5xx (a memory store does not fail: every refusal is a 4xx or an error
//!   reply);
//! - the hub still serves: `GET /v1/health` answers 200, and a real probe
//!   node then runs a whole session with the hub engine, its write reaches
//!   the hub, and it ends holding exactly the hub's entities.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use sync_conformance::fixtures::{self, hub_info, node_info, t};
use sync_conformance::net::{self, synced_state};
use sync_core::token::SigningKey;
use sync_core::{Engine, EngineConfig, Entity, EntityKey, NodeInfo, Record, Timestamp, Value};
use sync_store_memory::MemoryStore;
use sync_transport_http::auth::KEY_PREFIX;
use sync_transport_http::{Clock, EngineHub, HubService, ServerConfig};

use crate::alloc_track::{self, Group};
use crate::engine_receive::{probe_info, registry};

/// Bytes serving one input may hold at its peak whatever the input: the
/// hub reads at most [`ServerConfig::max_body_bytes`] (10 MiB) of body and
/// decodes at most as much, and may hold that body a few times over while
/// it opens, answers and encodes it (compressed, decoded, the envelope,
/// the reply), plus the parser's and the engine's buffers. Far below the
/// 256 MiB a fuzzed header can announce.
pub const ALLOC_SLACK: usize = 4 * (10 << 20) + (8 << 20);
/// Bytes serving may hold per input byte on top of [`ALLOC_SLACK`].
pub const ALLOC_FACTOR: usize = 64;

/// The hub's clock: every request is served at this time.
pub fn now() -> Timestamp {
    t(1_000)
}

/// The hub's fixed signing key (id 1), so seeds carry tokens that verify.
pub fn signing_key() -> SigningKey {
    SigningKey::new(1, [0x5a; 32], t(0))
}

/// The node registered and then revoked.
pub fn revoked_info() -> NodeInfo {
    node_info(1)
}

/// The address the requests come from (only logged).
pub fn peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 40_000))
}

/// The server's limits: the defaults, with a short long poll (a fuzzed
/// `GET /v1/wait` must not wait 30 s) and one blocking worker.
pub fn config() -> ServerConfig {
    ServerConfig::default()
        .max_wait(Duration::ZERO)
        .header_timeout(Duration::from_secs(2))
        .body_timeout(Duration::from_secs(2))
        .blocking_workers(1)
        .clock(Clock::from_fn(now))
}

/// The hub engine every input meets: a memory store with node 0, the
/// probe and the revoked node registered, and the fixed signing key
/// stored where the server loads it from.
///
/// # Panics
///
/// When a memory store fails (it does not).
pub fn new_hub_engine() -> Engine<MemoryStore> {
    let mut hub = crate::engine_receive::new_hub();
    hub.register_peer(revoked_info()).expect("register node 1");
    hub.revoke_peer(revoked_info().id).expect("revoke node 1");
    let key = signing_key();
    hub.put_meta(
        &format!("{KEY_PREFIX}{:010}", key.id()),
        Some(&key.to_bytes()),
    )
    .expect("store the signing key");
    hub
}

thread_local! {
    static RUNTIME: RefCell<Option<(tokio::runtime::Runtime, &'static Group)>> =
        const { RefCell::new(None) };
}

/// Runs `f` on this thread's tokio runtime (made once per thread), whose
/// threads (the blocking pool) count their allocations in this thread's
/// group, [`runtime_group`].
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.with(|cell| {
        let mut runtime = cell.borrow_mut();
        let (runtime, _) = runtime.get_or_insert_with(|| {
            let group = Group::leak();
            alloc_track::join(group);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(move || alloc_track::join(group))
                .build()
                .expect("a tokio runtime");
            (runtime, group)
        });
        runtime.block_on(f)
    })
}

/// The allocation group of this thread's runtime (see [`block_on`]): this
/// thread and the runtime's blocking pool.
pub fn runtime_group() -> &'static Group {
    block_on(async {});
    RUNTIME
        .with(|cell| cell.borrow().as_ref().map(|(_, group)| *group))
        .expect("block_on made the runtime")
}

/// Panics when serving `input_len` bytes held `peak` bytes, over the bound
/// (see [`ALLOC_SLACK`]).
pub fn check_alloc(input_len: usize, peak: usize) {
    let allowed = ALLOC_SLACK + ALLOC_FACTOR * input_len;
    assert!(
        peak <= allowed,
        "serving {input_len} input bytes held {peak} bytes at its peak (this thread and the blocking pool), over the bound of {allowed}"
    );
}

/// A service on a fresh hub (see [`new_hub_engine`]).
///
/// # Panics
///
/// When the server cannot load its keys from a memory store.
pub async fn new_service() -> HubService<EngineHub<MemoryStore>> {
    HubService::new(EngineHub::new(new_hub_engine()), config())
        .await
        .expect("the service loads its signing key")
}

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let group = runtime_group();
    block_on(async {
        let service = new_service().await;
        let mark = group.start();
        let answer = service.respond_raw(data, peer()).await;
        check_alloc(data.len(), group.peak_since(mark));
        check_statuses(&answer);
        let health = service
            .respond_raw(b"GET /v1/health HTTP/1.1\r\nhost: hub\r\n\r\n", peer())
            .await;
        assert!(
            health.starts_with(b"HTTP/1.1 200 "),
            "the hub does not answer GET /v1/health with 200 after the input: {:?}",
            String::from_utf8_lossy(&health[..health.len().min(200)])
        );
        service.hub().with_engine(probe_session);
    });
}

/// The server's answer starts with an HTTP/1.1 (or 1.0) status line, and no
/// response in it is a 5xx. Responses are followed by their
/// `content-length` (a 1xx has no body); the walk stops where that cannot
/// be followed (the answer to a `HEAD` has no body however long it says it
/// is).
fn check_statuses(answer: &[u8]) {
    let show = |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    // An HTTP/1.0 request is answered in HTTP/1.0.
    let status_line =
        |bytes: &[u8]| bytes.starts_with(b"HTTP/1.1 ") || bytes.starts_with(b"HTTP/1.0 ");
    if !answer.is_empty() {
        assert!(
            status_line(answer),
            "the server's answer does not start with a status line: {:?}",
            show(answer)
        );
    }
    let mut rest = answer;
    while status_line(rest) {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("a response without the end of its header: {:?}", show(rest));
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let Some(status) = head.get(9..12).and_then(|s| s.parse::<u16>().ok()) else {
            panic!("a response without a status code: {:?}", show(rest));
        };
        assert!(
            status < 500,
            "the server answered {status}: {:?}",
            show(rest)
        );
        let length = if status < 200 {
            Some(0)
        } else {
            head.lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let Some(body_end) = length.map(|l| (end + 4).saturating_add(l)) else {
            break;
        };
        rest = rest.get(body_end..).unwrap_or_default();
    }
}

/// A real node writes, syncs with the hub engine and must end holding the
/// hub's entities, its own write included.
fn probe_session(hub: &mut Engine<MemoryStore>) {
    let mut probe = Engine::new(
        MemoryStore::new(),
        registry(),
        EngineConfig::default().seed(77),
        probe_info(),
    )
    .expect("create probe");
    probe.register_peer(hub_info()).expect("register hub");
    let fields = Record::from([("title".to_owned(), Value::from("probe"))]);
    let id = probe
        .insert(fixtures::NOTE_SERVER_WINS, fields, t(2_000))
        .expect("probe write");
    for round in 0..2 {
        if let Err(e) = net::session(&mut probe, hub, t(2_001 + round)) {
            panic!("the probe's session with the hub failed after the input: {e}");
        }
    }
    let key = EntityKey::new(fixtures::NOTE_SERVER_WINS, id);
    assert!(
        hub.get(&key).expect("read hub").is_some(),
        "the probe's write did not reach the hub"
    );
    let hub_state = digests(&synced_state(hub).expect("read hub"));
    let probe_state = digests(&synced_state(&mut probe).expect("read probe"));
    assert!(
        hub_state == probe_state,
        "the probe holds {} entities after syncing, the hub {}",
        probe_state.len(),
        hub_state.len()
    );
}

fn digests(entities: &[Entity]) -> Vec<(EntityKey, [u8; 32])> {
    entities
        .iter()
        .map(|e| (e.key.clone(), e.content_digest()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_catches_a_256_mib_reservation_on_the_blocking_pool() {
        let group = runtime_group();
        // The largest committed input of the target is a few KiB.
        let input_len = 64 << 10;
        let (reserved, peak) = block_on(async {
            let mark = group.start();
            let reserved = tokio::task::spawn_blocking(|| Vec::<u8>::with_capacity(256 << 20))
                .await
                .expect("the blocking task");
            (reserved, group.peak_since(mark))
        });
        assert!(reserved.capacity() >= 256 << 20);
        drop(reserved);
        assert!(peak >= 256 << 20, "the group measured {peak} bytes");
        let checked = std::panic::catch_unwind(|| check_alloc(input_len, peak));
        assert!(
            checked.is_err(),
            "a 256 MiB reservation for {input_len} input bytes passed the bound"
        );
        // What serving a whole real session holds passes it.
        let session = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("seeds/http_exchange/session-zstd"),
        )
        .expect("read the seed");
        let peak = block_on(async {
            let service = new_service().await;
            let mark = group.start();
            let answer = service.respond_raw(&session, peer()).await;
            assert!(answer.starts_with(b"HTTP/1.1 200 "));
            group.peak_since(mark)
        });
        check_alloc(session.len(), peak);
        assert!(peak > 0);
    }
}
