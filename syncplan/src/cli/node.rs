//! A node's directory (`init`), tracking tables (`track`), plain SQL
//! (`sql`) and `status`, for a node or the hub.

use std::path::Path;

use serde_json::{Value as Json, json};
use syncplan::file::{PairKey, install_pair_key};
use syncplan::{Engine, EntityRegistry, NodeInfo, Role, TrackOptions};

use super::failure::{Context, Failure, Result};
use super::hub::{Credentials, seconds_between};
use super::layout::{self, Config, DirRole, Opened, Strategy};
use super::output::{Output, ago};

/// `init DIR --credentials FILE`: a node's database and configuration,
/// with the hub registered as its peer.
pub fn init(dir: &Path, credentials_file: &Path, ca: Option<&Path>, out: &Output) -> Result<()> {
    let text = std::fs::read_to_string(credentials_file)
        .with_context(|| format!("reading the credentials {}", credentials_file.display()))?;
    let credentials: Credentials = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} does not hold the credentials `syncplan node add --json` prints",
            credentials_file.display()
        )
    })?;
    let mut credentials = credentials;
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        syncplan::http::Trust::roots_from_pem(&pem).context("reading the hub's CA certificate")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(CA_FILE), pem).context("keeping the hub's CA certificate")?;
        credentials.hub.ca_file = Some(CA_FILE.into());
        credentials.hub.fingerprint = None;
    }
    init_from(dir, &credentials)?;
    out.emit(
        &json!({
            "dir": dir.display().to_string(),
            "node_id": credentials.node.id.to_string(),
            "code": credentials.node.code,
            "hub": credentials.hub.url,
        }),
        || {
            format!(
                "node {} ({}) set up in {}, syncing with hub {} at {}\nnext: create your tables (syncplan sql), track them (syncplan track), then syncplan sync",
                credentials.node.code,
                credentials.node.id,
                dir.display(),
                credentials.hub.code,
                credentials.hub.url
            )
        },
    )
}

/// Where a node keeps its hub's CA certificate.
const CA_FILE: &str = "hub-ca.pem";

/// Sets up a node's directory from its credentials.
pub fn init_from(dir: &Path, credentials: &Credentials) -> Result<()> {
    layout::create_dir(dir)?;
    let key =
        PairKey::parse(&credentials.file_key).context("reading the file key in the credentials")?;
    let config = Config {
        role: DirRole::Node,
        id: credentials.node.id,
        code: credentials.node.code.clone(),
        name: credentials.node.name.clone(),
        strategies: Default::default(),
        hub: None,
        upstream: Some(credentials.hub.clone()),
    };
    let store = layout::open_store(&config.database(dir))?;
    let info = NodeInfo::new(config.id, &config.code, &config.name, Role::Node);
    let mut engine = Engine::new(store, EntityRegistry::new(), layout::engine_config(), info)
        .context("recording the node's identity in its database")?;
    let hub = &credentials.hub;
    engine
        .register_peer(NodeInfo::new(hub.id, &hub.code, &hub.name, Role::Hub))
        .context("registering the hub as the node's peer")?;
    install_pair_key(&mut engine, hub.id, &key).context("keeping the file key")?;
    engine
        .put_meta(layout::TOKEN_META, Some(credentials.token.as_bytes()))
        .context("keeping the token")?;
    config.save(dir)
}

/// `set-token TOKEN`: the node uses this token from now on.
pub fn set_token(dir: &Path, token: &str, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    opened.config.upstream(dir)?;
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Failure::msg(
            "that is not a token; paste the one `syncplan node token CODE` printed at the hub",
        ));
    }
    opened
        .engine
        .put_meta(layout::TOKEN_META, Some(token.as_bytes()))
        .context("keeping the token")?;
    out.emit(&json!({ "ok": true }), || {
        "token kept; the next sync uses it".to_owned()
    })
}

/// What `track` is asked to do.
pub struct Track<'a> {
    /// The directory.
    pub dir: &'a Path,
    /// The application's table.
    pub table: &'a str,
    /// Entity type name (default: the table's name).
    pub type_name: Option<&'a str>,
    /// Columns that stay local.
    pub exclude: &'a [String],
    /// Conflict strategy for the type.
    pub strategy: Option<Strategy>,
}

/// `track TABLE`: captures the table's writes with triggers; its rows sync.
pub fn track(args: Track<'_>, out: &Output) -> Result<()> {
    let (ty, strategy) = track_table(&args)?;
    let fields: Vec<Json> = ty
        .fields()
        .iter()
        .map(|f| json!({ "name": f.name, "kind": format!("{:?}", f.kind), "excluded": f.excluded }))
        .collect();
    out.emit(
        &json!({ "table": args.table, "entity_type": ty.name(), "strategy": strategy, "fields": fields }),
        || {
            let names: Vec<String> = ty
                .fields()
                .iter()
                .map(|f| {
                    if f.excluded {
                        format!("{} (local only)", f.name)
                    } else {
                        f.name.clone()
                    }
                })
                .collect();
            format!(
                "table {} syncs as {} ({}): {}\nevery INSERT, UPDATE and DELETE on it is captured from now on, from any connection",
                args.table,
                ty.name(),
                strategy.name(),
                names.join(", ")
            )
        },
    )
}

/// Tracks a table and records its strategy; returns its entity type.
pub fn track_table(args: &Track<'_>) -> Result<(syncplan::EntityType, Strategy)> {
    let mut config = Config::load(args.dir)?;
    let mut store = layout::open_store(&config.database(args.dir))?;
    let mut options = TrackOptions::new();
    if let Some(name) = args.type_name {
        options = options.entity_type_name(name);
    }
    for column in args.exclude {
        options = options.exclude(column.clone());
    }
    let ty = store
        .track_table(args.table, options)
        .with_context(|| format!("tracking the table {}", args.table))?;
    if let Some(strategy) = args.strategy {
        config.strategies.insert(ty.name().to_owned(), strategy);
        config.save(args.dir)?;
    }
    let strategy = config
        .strategies
        .get(ty.name())
        .copied()
        .unwrap_or(Strategy::ServerWins);
    Ok((ty, strategy))
}

/// `sql STATEMENTS`: runs plain SQL on the directory's database; a query
/// prints its rows.
pub fn sql(dir: &Path, statements: &str, out: &Output) -> Result<()> {
    let config = Config::load(dir)?;
    let store = layout::open_store(&config.database(dir))?;
    let conn = store.connection();
    let rows = match conn.prepare(statements) {
        Ok(mut statement) if statement.column_count() > 0 => Some(query(&mut statement)?),
        Ok(mut statement) => {
            statement.raw_execute().context("running the SQL")?;
            None
        }
        Err(rusqlite::Error::MultipleStatement) => {
            conn.execute_batch(statements).context("running the SQL")?;
            None
        }
        Err(e) => return Err(Failure::from(e)),
    };
    match rows {
        Some((columns, rows)) => out.emit(&json!({ "columns": columns, "rows": rows }), || {
            table_text(&columns, &rows)
        }),
        None => out.emit(&json!({ "ok": true, "changes": conn.changes() }), || {
            format!("ok ({} row(s) changed)", conn.changes())
        }),
    }
}

type Rows = (Vec<String>, Vec<Vec<Json>>);

fn query(statement: &mut rusqlite::Statement<'_>) -> Result<Rows> {
    let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
    let count = columns.len();
    let mut rows = Vec::new();
    let mut cursor = statement.query([]).context("running the query")?;
    while let Some(row) = cursor.next().context("reading the query's rows")? {
        let mut values = Vec::with_capacity(count);
        for i in 0..count {
            values.push(sql_json(row.get_ref(i)?));
        }
        rows.push(values);
    }
    Ok((columns, rows))
}

fn sql_json(value: rusqlite::types::ValueRef<'_>) -> Json {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Json::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn table_text(columns: &[String], rows: &[Vec<Json>]) -> String {
    let cell = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Null => "NULL".into(),
        other => other.to_string(),
    };
    let mut widths: Vec<usize> = columns.iter().map(String::len).collect();
    for row in rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell(v).len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut text = line(columns.to_vec());
    for row in rows {
        text.push('\n');
        text.push_str(&line(row.iter().map(cell).collect()));
    }
    text.push_str(&format!("\n({} row(s))", rows.len()));
    text
}

/// `status`: what this directory is, what waits, when it last synced.
pub fn status(dir: &Path, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    let now = syncplan::now();
    let types: Vec<String> = opened
        .engine
        .registry()
        .types()
        .map(|t| t.name().to_owned())
        .collect();
    let open_conflicts = opened.engine.open_conflicts()?.len();
    let parked = opened.engine.parked()?.len();
    let security = opened.engine.security_events()?.len();
    let audit = opened.engine.audit_log()?.len();
    let peers = opened.engine.peers()?;
    let mut peer_rows = Vec::new();
    for peer in &peers {
        let pending = opened.engine.pending_count(peer.id())?;
        peer_rows.push(json!({
            "code": peer.info.code,
            "id": peer.id().to_string(),
            "revoked": peer.revoked,
            "pending": pending,
            "last_sync_in": peer.last_sync_in.map(|t| t.to_string()),
            "last_sync_out": peer.last_sync_out.map(|t| t.to_string()),
            "last_sync_in_ago_s": peer.last_sync_in.map(|t| seconds_between(t, now)),
        }));
    }
    let schema = opened.engine.schema_version().to_string();
    let migration = opened.engine.migration_status()?;
    let pending_migrations: Vec<String> = migration
        .pending
        .iter()
        .map(|m| m.version.to_string())
        .collect();
    let migration_failure = migration.failure.as_ref().map(ToString::to_string);
    let mut node_failures = Vec::new();
    for (id, failure) in opened.engine.migration_failures()? {
        node_failures.push(json!({ "node": opened.code_of(id), "failure": failure.to_string() }));
    }
    let config = &opened.config;
    let value = json!({
        "role": config.role,
        "id": config.id.to_string(),
        "code": config.code,
        "name": config.name,
        "database": config.database(dir).display().to_string(),
        "hub_url": config.upstream.as_ref().map(|u| u.url.clone()).or_else(|| config.hub.as_ref().map(|h| h.url.clone())),
        "entity_types": types,
        "peers": peer_rows,
        "open_conflicts": open_conflicts,
        "parked": parked,
        "conflicts_resolved": audit,
        "security_events": security,
        "schema_version": schema,
        "migrations_pending": pending_migrations,
        "migration_failure": migration_failure,
        "node_migration_failures": node_failures,
    });
    out.emit(&value, || {
        let mut text = format!(
            "{} {} ({}), database {}\n  tracked types: {}",
            match config.role {
                DirRole::Hub => "hub",
                DirRole::Node => "node",
            },
            config.code,
            config.id,
            config.database(dir).display(),
            if types.is_empty() {
                "none yet (syncplan track TABLE)".to_owned()
            } else {
                types.join(", ")
            }
        );
        for row in &peer_rows {
            text.push_str(&format!(
                "\n  {} {}: {} change(s) waiting to be sent, last received {}",
                if config.role == DirRole::Hub { "node" } else { "hub" },
                row["code"].as_str().unwrap_or(""),
                row["pending"],
                row["last_sync_in_ago_s"]
                    .as_i64()
                    .map_or_else(|| "never".to_owned(), ago)
            ));
        }
        text.push_str(&format!(
            "\n  conflicts resolved: {audit}, waiting for a person: {open_conflicts}; parked children: {parked}; security events: {security}"
        ));
        text.push_str(&format!("\n  schema {schema}"));
        if !pending_migrations.is_empty() {
            text.push_str(&format!(
                "; migrations from the hub waiting: {} (the next `syncplan sync` applies them)",
                pending_migrations.join(", ")
            ));
        }
        if let Some(failure) = &migration_failure {
            text.push_str(&format!("\n  blocked: {failure}"));
        }
        for row in &node_failures {
            text.push_str(&format!(
                "\n  node {} is blocked: {}",
                row["node"].as_str().unwrap_or(""),
                row["failure"].as_str().unwrap_or("")
            ));
        }
        text
    })
}
