//! The in-process phases: a node and a hub engine, each on its own SQLite
//! file, exchanging the real encoded bytes by function call.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use syncplan::{Engine, EngineConfig, SqliteStore};

use super::workload::{self, engine, hub_info, node_info};
use super::{Idle, Progress, Transported, quantile, timed};
use crate::cli::failure::{Context, Result};

/// What the in-process run measured.
pub struct Local {
    /// The transport-dependent figures.
    pub transported: Transported,
    /// The node's `n` tracked inserts.
    pub capture_insert: Duration,
    /// The node's `n` tracked updates.
    pub capture_update: Duration,
    /// Writing the update stamps into the rows (at the next store
    /// transaction).
    pub stamp: Duration,
    /// Time the hub spent in `respond` during the end-to-end sync.
    pub hub_respond: Duration,
    /// Bytes the node sent during the end-to-end sync.
    pub wire_bytes: u64,
    /// The same changes as gzip-compressed JSON, in batches of the same
    /// size as the packets.
    pub gzip_json_bytes: u64,
}

/// Byte and time counters of one sync.
#[derive(Default)]
struct Exchanged {
    wire_bytes: u64,
    hub_respond: Duration,
}

/// Runs the in-process phases with `n` rows.
pub fn run(dir: &Path, n: usize, idle_exchanges: usize, progress: &Progress) -> Result<Local> {
    let hub_info = hub_info();
    let mut hub = engine(
        &dir.join("hub.db"),
        hub_info.clone(),
        1,
        &[node_info(1), node_info(2)],
    )?;
    let mut node = engine(
        &dir.join("node-1.db"),
        node_info(1),
        11,
        std::slice::from_ref(&hub_info),
    )?;

    progress.phase("e2e: plain SQL inserts", None);
    let start = Instant::now();
    let capture_insert = workload::insert_rows(node.store().connection(), n, progress)?;
    progress.phase("e2e: sync to the hub", None);
    let sent = sync(&mut node, &mut hub, progress)?;
    let e2e = start.elapsed();
    let gzip_json_bytes = gzip_json(node.store(), node.config())?;

    progress.phase("capture: plain SQL updates", None);
    let capture_update = workload::update_rows(node.store().connection(), n, progress)?;
    let (_, stamp) = timed(|| {
        node.pending_count(hub_info.id)
            .context("folding the captured updates")
    })?;
    progress.phase("sync the updates", None);
    sync(&mut node, &mut hub, progress)?;

    progress.phase("first sync of a fresh node", None);
    let mut fresh = engine(
        &dir.join("node-2.db"),
        node_info(2),
        12,
        std::slice::from_ref(&hub_info),
    )?;
    let (_, first_sync) = timed(|| sync(&mut fresh, &mut hub, progress))?;
    let idle = idle(&mut node, &mut hub, idle_exchanges, progress)?;
    Ok(Local {
        transported: Transported {
            e2e,
            first_sync,
            idle,
        },
        capture_insert,
        capture_update,
        stamp,
        hub_respond: sent.hub_respond,
        wire_bytes: sent.wire_bytes,
        gzip_json_bytes,
    })
}

/// One sync session of `node` with the hub, until nothing is left to send
/// either way and everything is acknowledged.
fn sync(
    node: &mut Engine<SqliteStore>,
    hub: &mut Engine<SqliteStore>,
    progress: &Progress,
) -> Result<Exchanged> {
    let mut counters = Exchanged::default();
    let hub_id = hub.local_node().id;
    node.start_sync(hub_id).context("starting a sync session")?;
    while let Some(packet) = node
        .poll_transmit(syncplan::now())
        .context("building a packet")?
    {
        counters.wire_bytes += packet.bytes.len() as u64;
        let start = Instant::now();
        let reply = hub
            .respond(&packet.bytes, syncplan::now())
            .context("the hub applying a packet")?;
        counters.hub_respond += start.elapsed();
        let incoming = node
            .handle_incoming(&reply, syncplan::now())
            .context("the node applying the hub's reply")?;
        progress.inc(u64::from(packet.entity_count) + incoming.applied as u64);
        drain(node);
        drain(hub);
    }
    Ok(counters)
}

/// Events are not looked at here; they are drained so none pile up.
fn drain(engine: &mut Engine<SqliteStore>) {
    while engine.poll_event().is_some() {}
}

/// `count` sessions with nothing to send: the hub's time per request, and
/// the whole exchange.
fn idle(
    node: &mut Engine<SqliteStore>,
    hub: &mut Engine<SqliteStore>,
    count: usize,
    progress: &Progress,
) -> Result<Idle> {
    progress.phase("idle exchanges", Some(count as u64));
    let mut at_hub = Vec::with_capacity(count);
    let mut whole = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let counters = sync(node, hub, &Progress::hidden())?;
        whole.push(start.elapsed());
        at_hub.push(counters.hub_respond);
        progress.inc(1);
    }
    Ok(Idle {
        p50: quantile(&mut at_hub, 0.5),
        p99: quantile(&mut at_hub, 0.99),
        roundtrip_p99: quantile(&mut whole, 0.99),
    })
}

/// The node's rows as the JSON a JSON sync protocol would send (type, key,
/// time, writer, deleted flag, fields by name), gzip-compressed (level 6)
/// in batches of the engine's packet size; the total compressed size.
fn gzip_json(store: &SqliteStore, config: &EngineConfig) -> Result<u64> {
    let origin = node_info(1).id.0.to_string();
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT sync_uuid, updated_at, is_deleted, date, brigade, hours, qty
             FROM daily_report ORDER BY id",
        )
        .context("reading the node's rows")?;
    let mut rows = stmt.query([]).context("reading the node's rows")?;
    let mut total = 0u64;
    let mut batch = Vec::new();
    let mut in_batch = 0usize;
    while let Some(r) = rows.next().context("reading the node's rows")? {
        let change = json!({
            "type": "DailyReport",
            "id": r.get::<_, String>(0).context("reading a key")?,
            "updated_at": r.get::<_, i64>(1).context("reading a time")?,
            "origin": origin,
            "is_deleted": r.get::<_, bool>(2).context("reading a flag")?,
            "fields": {
                "date": r.get::<_, String>(3).context("reading a value")?,
                "brigade": r.get::<_, String>(4).context("reading a value")?,
                "hours": r.get::<_, i64>(5).context("reading a value")?,
                "qty": r.get::<_, f64>(6).context("reading a value")?,
            }
        });
        batch.push(change);
        in_batch += 1;
        if in_batch == config.batch_entities {
            total += gzip_len(&batch)?;
            batch.clear();
            in_batch = 0;
        }
    }
    if !batch.is_empty() {
        total += gzip_len(&batch)?;
    }
    Ok(total)
}

fn gzip_len(batch: &[serde_json::Value]) -> Result<u64> {
    let text = serde_json::to_vec(batch).context("encoding JSON")?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
    gz.write_all(&text).context("compressing JSON")?;
    Ok(gz.finish().context("compressing JSON")?.len() as u64)
}
