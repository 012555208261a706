//! `syncplan demo`: the main job, end to end, in a temporary folder.
//!
//! A hub and two nodes on SQLite with the application's own
//! `daily_report` / `daily_report_line` tables; offline edits in plain SQL
//! on both nodes, one of them conflicting; sync; what happened, in words;
//! and a check that the three databases hold the same rows.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use syncplan::http::{EngineHub, HubServer, ServerConfig};
use syncplan::{
    ConflictSide, Engine, EntityKey, Node, SessionEvent, SqliteStore, SyncReport, Uuid,
};

use super::failure::{Context, Failure, Result};
use super::hub::{self, HubInit};
use super::layout::Opened;
use super::node::{self, Track};
use super::serve::read_identity;
use super::sync::connect;

/// The application's tables, as it created them before it knew syncplan.
pub const SCHEMA: &str = "
CREATE TABLE daily_report(
    id INTEGER PRIMARY KEY,
    date TEXT NOT NULL,
    brigade TEXT NOT NULL,
    hours INTEGER NOT NULL
);
CREATE TABLE daily_report_line(
    id INTEGER PRIMARY KEY,
    report_id INTEGER NOT NULL REFERENCES daily_report(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    qty REAL NOT NULL
);";

/// What each database must agree on: every application column, the
/// parent of a line by its sync key (local row ids differ per database).
const REPORTS: &str =
    "SELECT sync_uuid, date, brigade, hours, is_deleted FROM daily_report ORDER BY sync_uuid";
const LINES: &str = "SELECT l.sync_uuid, r.sync_uuid, l.task, l.qty, l.is_deleted
    FROM daily_report_line l JOIN daily_report r ON r.id = l.report_id ORDER BY l.sync_uuid";

type DemoNode = Node<SqliteStore>;

/// Runs the demo in a fresh temporary folder (kept at `keep` if given).
pub async fn run(keep: Option<&Path>) -> Result<()> {
    let temporary = tempfile::Builder::new()
        .prefix("syncplan-demo-")
        .tempdir()
        .context("creating a temporary folder")?;
    let root = keep.unwrap_or(temporary.path());
    println!("== Setting up a hub and two nodes in {}", root.display());
    let (hub_dir, node_dirs) = set_up(root)?;
    let outcome = serve_and_tell(&hub_dir, &node_dirs).await;
    match keep {
        Some(dir) => println!("\n== The databases are kept in {}", dir.display()),
        None => {
            let shown = temporary.path().display().to_string();
            temporary.close().context("removing the temporary folder")?;
            println!("\n== Cleaned up: removed {shown}");
        }
    }
    outcome
}

/// A hub and two nodes, each database with the application's tables
/// tracked. Returns their directories.
fn set_up(root: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let hub_dir = root.join("hub");
    let config = hub::create_hub(&HubInit {
        dir: &hub_dir,
        code: "HUB",
        name: "Central office",
        listen: "127.0.0.1:0",
        url: None,
        tls: None,
    })?;
    prepare_tables(&hub_dir)?;
    let mut hub_opened = Opened::open(&hub_dir)?;
    println!(
        "   hub {} ({}): {}",
        config.code,
        config.name,
        config.database(&hub_dir).display()
    );
    let mut node_dirs = Vec::new();
    for (code, name) in [
        ("DESKTOP-1", "Site office"),
        ("DESKTOP-2", "Foreman's laptop"),
    ] {
        let credentials = hub::register_node(&mut hub_opened, code, Some(name))?;
        let dir = root.join(code.to_lowercase());
        node::init_from(&dir, &credentials)?;
        prepare_tables(&dir)?;
        println!("   node {code} ({name}): {}", dir.join("node.db").display());
        node_dirs.push(dir);
    }
    println!(
        "   every database has the application's own tables daily_report and daily_report_line\n   (a line references its report by a foreign key), tracked so plain SQL writes sync"
    );
    Ok((hub_dir, node_dirs))
}

/// Serves the hub over HTTPS on 127.0.0.1 (any free port) and tells the
/// story through it.
async fn serve_and_tell(hub_dir: &Path, node_dirs: &[PathBuf]) -> Result<()> {
    let opened = Opened::open(hub_dir)?;
    let settings = opened.config.hub_settings(hub_dir)?.clone();
    let tls = read_identity(hub_dir, &settings.tls_cert, &settings.tls_key)?
        .server_config()
        .context("setting up TLS")?;
    let server = HubServer::bind(
        "127.0.0.1:0"
            .parse()
            .map_err(|_| Failure::msg("127.0.0.1:0 is an address"))?,
        tls,
        EngineHub::new(opened.engine),
        ServerConfig::default(),
    )
    .await
    .context("starting the hub's HTTPS server")?;
    println!(
        "   the hub serves HTTPS on {} with a self-signed certificate the nodes pin ({}...)",
        server.url(),
        &settings.fingerprint[..16]
    );
    let mut desktops = Vec::new();
    for dir in node_dirs {
        let mut opened = Opened::open(dir)?;
        let (transport, hub_id) = connect(&mut opened, Some(&server.url()))?;
        let transport = Arc::new(transport);
        desktops.push(Node::builder_shared(opened.engine, hub_id, transport).build());
    }
    let hub = server.hub().clone();
    let outcome = story(&hub, &desktops).await;
    drop(desktops);
    server.shutdown().await;
    outcome
}

/// Runs `f` on the hub's engine, off the async threads.
async fn on_hub<R: Send + 'static>(
    hub: &EngineHub<SqliteStore>,
    f: impl FnOnce(&mut Engine<SqliteStore>) -> Result<R> + Send + 'static,
) -> Result<R> {
    let hub = hub.clone();
    tokio::task::spawn_blocking(move || hub.with_engine(f))
        .await
        .context("reading the hub's database")?
}

fn prepare_tables(dir: &Path) -> Result<()> {
    let opened = Opened::open(dir)?;
    opened
        .engine
        .store()
        .connection()
        .execute_batch(SCHEMA)
        .context("creating the application's tables")?;
    drop(opened);
    for (table, type_name) in [
        ("daily_report", "DailyReport"),
        ("daily_report_line", "DailyReportLine"),
    ] {
        node::track_table(&Track {
            dir,
            table,
            type_name: Some(type_name),
            exclude: &[],
            strategy: None,
        })?;
    }
    Ok(())
}

async fn story(hub: &EngineHub<SqliteStore>, desktops: &[DemoNode]) -> Result<()> {
    let (one, two) = (&desktops[0], &desktops[1]);
    println!("\n== Morning: DESKTOP-1 writes today's report in plain SQL, then syncs");
    sql(
        one,
        "DESKTOP-1",
        &[
            "INSERT INTO daily_report(date, brigade, hours) VALUES ('2025-12-12', 'B-7', 8)",
            "INSERT INTO daily_report_line(report_id, task, qty) SELECT id, 'trench digging', 12.5 FROM daily_report WHERE date = '2025-12-12'",
            "INSERT INTO daily_report_line(report_id, task, qty) SELECT id, 'cable laying', 40 FROM daily_report WHERE date = '2025-12-12'",
            "INSERT INTO daily_report_line(report_id, task, qty) SELECT id, 'site cleanup', 1 FROM daily_report WHERE date = '2025-12-12'",
        ],
    )
    .await?;
    sync(one, "DESKTOP-1").await?;
    println!("\n== DESKTOP-2 comes online and receives it");
    sync(two, "DESKTOP-2").await?;

    println!("\n== Afternoon, both offline, both edit the same report");
    sql(
        one,
        "DESKTOP-1",
        &[
            "UPDATE daily_report SET hours = 9 WHERE date = '2025-12-12'",
            "DELETE FROM daily_report_line WHERE task = 'site cleanup'",
        ],
    )
    .await?;
    sql(
        two,
        "DESKTOP-2",
        &[
            "UPDATE daily_report SET hours = 10 WHERE date = '2025-12-12'",
            "INSERT INTO daily_report_line(report_id, task, qty) SELECT id, 'backfill', 6 FROM daily_report WHERE date = '2025-12-12'",
        ],
    )
    .await?;

    println!(
        "\n== Evening: DESKTOP-1 syncs, then DESKTOP-2, then DESKTOP-1 again for DESKTOP-2's news"
    );
    sync(one, "DESKTOP-1").await?;
    let report = sync(two, "DESKTOP-2").await?;
    sync(one, "DESKTOP-1").await?;
    explain_conflict(hub, two, &report).await?;
    agree(hub, desktops).await
}

/// Runs plain SQL on a node's database, as the application would.
async fn sql(node: &DemoNode, who: &str, statements: &[&str]) -> Result<()> {
    for statement in statements {
        println!("   {who} SQL> {statement}");
    }
    let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    node.with_engine(move |e| -> rusqlite::Result<()> {
        for statement in &statements {
            e.store().connection().execute(statement, [])?;
        }
        Ok(())
    })
    .await?
    .context("running the application's SQL")
}

/// One session, told as it happens.
async fn sync(node: &DemoNode, who: &str) -> Result<SyncReport> {
    let report = node
        .sync_with(|event| match event {
            SessionEvent::Sent {
                packet_no,
                entity_count,
                ..
            } => println!("   {who} -> hub: packet #{packet_no} with {entity_count} change(s)"),
            SessionEvent::Received(incoming) => println!(
                "   hub -> {who}: packet #{} with {} change(s) applied{}",
                incoming.packet_no,
                incoming.applied,
                if incoming.duplicate {
                    " (a duplicate, ignored)"
                } else {
                    ""
                }
            ),
            SessionEvent::Retrying { reason, .. } => println!("   {who}: retrying: {reason}"),
            _ => {}
        })
        .await?;
    println!("   {who}: {}", report.summary());
    Ok(report)
}

/// What the hub decided about the report both nodes edited, and where the
/// losing version is.
async fn explain_conflict(
    hub: &EngineHub<SqliteStore>,
    loser: &DemoNode,
    report: &SyncReport,
) -> Result<()> {
    println!("\n== The conflict");
    let key_text = loser
        .with_engine(|e| -> rusqlite::Result<String> {
            e.store().connection().query_row(
                "SELECT sync_uuid FROM daily_report WHERE date = '2025-12-12'",
                [],
                |r| r.get(0),
            )
        })
        .await?
        .context("finding the report")?;
    let id: Uuid = key_text
        .parse()
        .map_err(|_| Failure::msg("the report's sync key is not a UUID"))?;
    let key = EntityKey::new("DailyReport", id);
    let (audit, versions, codes) = on_hub(hub, move |e| {
        let audit: Vec<_> = e
            .audit_log()?
            .into_iter()
            .filter(|a| a.key == key)
            .collect();
        let versions = e.versions(&key)?;
        Ok((audit, versions, codes_of(e)?))
    })
    .await?;
    let code = |id: syncplan::NodeId| {
        codes
            .iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| id.to_string(), |(_, c)| c.clone())
    };
    let Some(resolution) = audit.first() else {
        return Err(Failure::msg(
            "the hub recorded no conflict for the report both nodes edited; the demo expected one",
        ));
    };
    println!(
        "   DESKTOP-1 (hours = 9) and DESKTOP-2 (hours = 10) changed report 2025-12-12 without seeing each other's edit."
    );
    println!(
        "   The hub detected it when {}'s version arrived and resolved it with {}, the default strategy:",
        code(resolution.peer),
        resolution.strategy
    );
    println!(
        "   {} stands on the hub and on every node ({}).",
        match resolution.winner {
            ConflictSide::Local => "the version the hub already had",
            ConflictSide::Incoming => "the arriving version",
            ConflictSide::Merged => "a merge of both versions",
        },
        resolution.detail
    );
    for version in &versions {
        println!(
            "   The losing version (hours = {}) is not lost: the hub keeps it whole in its version history,\n   record {}, written by {}, arrived {}, marked \"{}\".",
            version.data.fields.get("hours").map_or_else(
                || "?".into(),
                |v| syncplan::serde_bridge::to_json(v).to_string()
            ),
            version.id,
            code(version.source_node),
            version.arrival_time,
            version.resolution
        );
    }
    println!(
        "   DESKTOP-2's session saw {} conflict(s) of its own: it simply received the hub's decision.\n   Its new line 'backfill' and DESKTOP-1's deletion did not conflict: they changed other rows.",
        report.conflicts.len()
    );
    println!(
        "   (to look for yourself, keep the folders with `syncplan demo --keep DIR`, then\n   `syncplan audit --dir DIR/hub` and `syncplan history DailyReport/{id} --dir DIR/hub`)"
    );
    Ok(())
}

fn codes_of(engine: &mut Engine<SqliteStore>) -> Result<Vec<(syncplan::NodeId, String)>> {
    let mut codes: Vec<_> = engine
        .peers()?
        .into_iter()
        .map(|p| (p.id(), p.info.code))
        .collect();
    let local = engine.local_node();
    codes.push((local.id, local.code.clone()));
    Ok(codes)
}

/// Compares the application's tables of the three databases.
async fn agree(hub: &EngineHub<SqliteStore>, desktops: &[DemoNode]) -> Result<()> {
    println!("\n== Do all three databases agree?");
    let reference = on_hub(hub, |e| snapshot(e.store())).await?;
    println!(
        "   hub: {} report(s) and {} line(s):",
        reference.0.len(),
        reference.1.len()
    );
    for row in reference.0.iter().chain(&reference.1) {
        println!("     {row}");
    }
    let mut all = true;
    for (i, desktop) in desktops.iter().enumerate() {
        let tables = desktop.with_engine(|e| snapshot(e.store())).await??;
        let same = tables == reference;
        all &= same;
        println!(
            "   DESKTOP-{}: {}",
            i + 1,
            if same {
                "the same rows as the hub"
            } else {
                "DIFFERENT from the hub"
            }
        );
    }
    if !all {
        return Err(Failure::msg(
            "the databases disagree after syncing; this is a bug, please report it with the output above",
        ));
    }
    println!("   all three databases agree");
    Ok(())
}

type Snapshot = (Vec<String>, Vec<String>);

/// The rows every database must agree on, as text.
fn snapshot(store: &SqliteStore) -> Result<Snapshot> {
    let rows = |sql: &str| -> rusqlite::Result<Vec<String>> {
        let mut statement = store.connection().prepare(sql)?;
        let count = statement.column_count();
        let rows = statement.query_map([], |row| {
            let mut cells = Vec::with_capacity(count);
            for i in 0..count {
                cells.push(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                });
            }
            Ok(cells.join(" | "))
        })?;
        rows.collect()
    };
    Ok((
        rows(REPORTS).context("reading daily_report")?,
        rows(LINES).context("reading daily_report_line")?,
    ))
}
