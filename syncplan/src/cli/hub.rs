//! `syncplan hub ...` and `syncplan node ...`: the hub's directory and its
//! registry of nodes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use syncplan::file::create_pair_key;
use syncplan::http::{SelfSigned, TlsIdentity, TokenAuthority, TokenPolicy, issue_token};
use syncplan::{Engine, NodeId, NodeInfo, PeerState, Role, Timestamp};

use super::failure::{Context, Failure, Result};
use super::layout::{
    self, Config, DirRole, HubSettings, MIGRATION_META, Opened, StoredMigration, Upstream,
};
use super::output::{Output, ago};

/// What `hub init` sets up.
pub struct HubInit<'a> {
    /// The new directory.
    pub dir: &'a Path,
    /// The hub's code.
    pub code: &'a str,
    /// The hub's display name.
    pub name: &'a str,
    /// Where `hub serve` listens.
    pub listen: &'a str,
    /// The URL nodes use (default: from `listen`).
    pub url: Option<&'a str>,
    /// A certificate chain and key (PEM files) to serve with, instead of a
    /// generated self-signed certificate.
    pub tls: Option<(&'a Path, &'a Path)>,
}

/// `hub init DIR`: the database, the configuration.
pub fn init(args: HubInit<'_>, out: &Output) -> Result<()> {
    let config = create_hub(&args)?;
    let settings = config.hub_settings(args.dir)?;
    out.emit(
        &json!({
            "dir": args.dir.display().to_string(),
            "hub_id": config.id.to_string(),
            "code": config.code,
            "database": config.database(args.dir).display().to_string(),
            "listen": settings.listen,
            "url": settings.url,
            "fingerprint": settings.fingerprint,
            "self_signed": settings.self_signed,
        }),
        || {
            format!(
                "hub {} ({}) created in {}\n  database: {}\n  nodes will reach it at {}\n  TLS certificate: {} ({}), SHA-256 fingerprint\n    {}\nnext: create your tables (syncplan sql), track them (syncplan track), add nodes (syncplan node add), then syncplan hub serve {}",
                config.code,
                config.id,
                args.dir.display(),
                config.database(args.dir).display(),
                settings.url,
                args.dir.join(&settings.tls_cert).display(),
                if settings.self_signed { "self-signed: nodes pin this fingerprint" } else { "from your files" },
                settings.fingerprint,
                args.dir.display()
            )
        },
    )
}

/// Creates a hub's directory: its configuration, its database with the
/// first token signing key, and its TLS certificate.
pub fn create_hub(args: &HubInit<'_>) -> Result<Config> {
    layout::create_dir(args.dir)?;
    let url = args
        .url
        .map_or_else(|| format!("https://{}", args.listen), str::to_owned);
    let (fingerprint, self_signed) = write_tls(args, &url)?;
    let config = Config {
        role: DirRole::Hub,
        id: layout::new_node_id(),
        code: args.code.to_owned(),
        name: args.name.to_owned(),
        strategies: Default::default(),
        hub: Some(HubSettings {
            listen: args.listen.to_owned(),
            url,
            tls_cert: PathBuf::from(TLS_DIR).join("cert.pem"),
            tls_key: PathBuf::from(TLS_DIR).join("key.pem"),
            fingerprint,
            self_signed,
        }),
        upstream: None,
    };
    let store = layout::open_store(&config.database(args.dir))?;
    let info = NodeInfo::new(config.id, &config.code, &config.name, Role::Hub);
    let mut engine = Engine::new(
        store,
        syncplan::EntityRegistry::new(),
        layout::engine_config(),
        info,
    )
    .context("recording the hub's identity in its database")?;
    TokenAuthority::open(&mut engine, TokenPolicy::default(), syncplan::now())
        .context("making the hub's token signing key")?;
    config.save(args.dir)?;
    Ok(config)
}

/// Where a hub keeps its certificate and key.
const TLS_DIR: &str = "tls";

/// Writes `DIR/tls/cert.pem` and `key.pem`: the given files, or a
/// self-signed certificate for the URL's host, 127.0.0.1 and localhost.
/// Returns the fingerprint and whether it is self-signed.
fn write_tls(args: &HubInit<'_>, url: &str) -> Result<(String, bool)> {
    let tls_dir = args.dir.join(TLS_DIR);
    std::fs::create_dir_all(&tls_dir).with_context(|| format!("creating {}", tls_dir.display()))?;
    let (cert, key, self_signed) = match args.tls {
        Some((cert, key)) => (
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
            std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
            false,
        ),
        None => {
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            let host = host_of(url);
            if !names.contains(&host) && !host.is_empty() {
                names.push(host);
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let generated = SelfSigned::generate(&names).context("generating a TLS certificate")?;
            (
                generated.certificate_pem.into_bytes(),
                generated.key_pem.into_bytes(),
                true,
            )
        }
    };
    let identity =
        TlsIdentity::from_pem(&cert, &key).context("reading the TLS certificate and key")?;
    std::fs::write(tls_dir.join("cert.pem"), &cert).context("writing tls/cert.pem")?;
    write_private(&tls_dir.join("key.pem"), &key)?;
    Ok((identity.fingerprint(), self_signed))
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The host of an `https://host:port/...` URL.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_owned();
    }
    authority.split(':').next().unwrap_or("").to_owned()
}

/// What a new node needs to join the hub: printed once by `node add`, read
/// by `init --credentials`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    /// The node's identity, chosen by the hub.
    pub node: NodeIdent,
    /// How to reach the hub.
    pub hub: Upstream,
    /// The node's token, signed by the hub: sent with every request.
    pub token: String,
    /// The key that seals the files this pair exchanges.
    pub file_key: String,
}

/// A node's identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeIdent {
    /// Its id.
    pub id: NodeId,
    /// Its code.
    pub code: String,
    /// Its display name.
    pub name: String,
}

/// `node add CODE --name NAME`: registers a node at the hub and prints its
/// credentials.
pub fn add_node(dir: &Path, code: &str, name: Option<&str>, out: &Output) -> Result<()> {
    let mut hub = Opened::open(dir)?;
    let credentials = register_node(&mut hub, code, name)?;
    let value = serde_json::to_value(&credentials).context("encoding the credentials")?;
    out.emit(&value, || {
        format!(
            "node {} registered\n  id: {}\n  token: {}\n  file key: {}\nsave these credentials (shown once; they are secrets) and set the node up with `syncplan init DIR --credentials FILE`:\n{}",
            credentials.node.code,
            credentials.node.id,
            credentials.token,
            credentials.file_key,
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    })
}

/// Registers a new node at the hub; returns what the node needs to join.
pub fn register_node(hub: &mut Opened, code: &str, name: Option<&str>) -> Result<Credentials> {
    let settings = hub.config.hub_settings(&hub.dir)?.clone();
    let peers = hub.engine.peers().context("reading the registered nodes")?;
    if let Some(existing) = peers.iter().find(|p| p.info.code == code) {
        return Err(Failure::msg(format!(
            "a node with code {code} is already registered ({}); pick another code, or `syncplan node revoke {code}` first",
            existing.id()
        )));
    }
    let ident = NodeIdent {
        id: layout::new_node_id(),
        code: code.to_owned(),
        name: name.unwrap_or(code).to_owned(),
    };
    let info = NodeInfo::new(ident.id, &ident.code, &ident.name, Role::Node);
    hub.engine
        .register_peer(info)
        .context("registering the node")?;
    let token = issue_token(
        &mut hub.engine,
        ident.id,
        &TokenPolicy::default(),
        syncplan::now(),
    )
    .context("issuing the node's token")?;
    let file_key = create_pair_key(&mut hub.engine, ident.id)
        .context("making the node's file key")?
        .expose_printable();
    Ok(Credentials {
        node: ident,
        hub: Upstream {
            id: hub.config.id,
            code: hub.config.code.clone(),
            name: hub.config.name.clone(),
            url: settings.url,
            fingerprint: settings.self_signed.then_some(settings.fingerprint),
            ca_file: None,
        },
        token: token.into_string(),
        file_key,
    })
}

/// `node list`: every node with its counters, pending changes and lag.
pub fn list_nodes(dir: &Path, out: &Output) -> Result<()> {
    let mut hub = Opened::open(dir)?;
    hub.config.hub_settings(dir)?;
    let now = syncplan::now();
    let peers = hub.engine.peers().context("reading the registered nodes")?;
    let mut rows = Vec::new();
    for peer in &peers {
        rows.push(node_row(&mut hub.engine, peer, now)?);
    }
    out.emit(&json!({ "nodes": rows }), || {
        if peers.is_empty() {
            return "no nodes registered; add one with `syncplan node add CODE --name NAME`".into();
        }
        let mut text = format!(
            "{:<16} {:<8} {:>6} {:>6} {:>8} {:<14} {:<14} {}",
            "CODE",
            "STATE",
            "SENT#",
            "RECV#",
            "PENDING",
            "LAST IN",
            "LAST OUT",
            "OLDEST UNACKNOWLEDGED"
        );
        for row in &rows {
            text.push_str(&format!(
                "\n{:<16} {:<8} {:>6} {:>6} {:>8} {:<14} {:<14} {}",
                row["code"].as_str().unwrap_or(""),
                if row["revoked"].as_bool() == Some(true) {
                    "revoked"
                } else {
                    "active"
                },
                row["sent_packet_no"].to_string(),
                row["received_packet_no"].to_string(),
                row["pending"].to_string(),
                ago_cell(&row["last_sync_in_ago_s"]),
                ago_cell(&row["last_sync_out_ago_s"]),
                row["oldest_unacknowledged"]["entity"].as_str().map_or_else(
                    || "-".to_owned(),
                    |e| format!("{e} ({})", ago_cell(&row["oldest_unacknowledged"]["age_s"]))
                ),
            ));
        }
        text
    })
}

fn ago_cell(seconds: &serde_json::Value) -> String {
    seconds.as_i64().map_or_else(|| "never".to_owned(), ago)
}

fn node_row(
    engine: &mut Engine<syncplan::SqliteStore>,
    peer: &PeerState,
    now: Timestamp,
) -> Result<serde_json::Value> {
    let id = peer.id();
    let pending = engine
        .pending_count(id)
        .context("counting pending changes")?;
    let oldest = engine
        .sync_changes(id, 1)
        .context("reading the change queue")?
        .into_iter()
        .next();
    let oldest = match oldest {
        Some(change) => {
            let key = syncplan::EntityKey::new(change.entity_type.clone(), change.entity_uuid);
            let written = engine.get(&key)?.map(|e| e.updated_at);
            json!({
                "entity": key.to_string(),
                "operation": format!("{:?}", change.operation),
                "packet_no": change.packet_no,
                "written_at": written.map(|t| t.to_string()),
                "age_s": written.map(|t| seconds_between(t, now)),
            })
        }
        None => serde_json::Value::Null,
    };
    Ok(json!({
        "id": id.to_string(),
        "code": peer.info.code,
        "name": peer.info.name,
        "revoked": peer.revoked,
        "sent_packet_no": peer.sent_packet_no,
        "received_packet_no": peer.received_packet_no,
        "unacknowledged_packets": peer.in_flight.len(),
        "last_sync_in": peer.last_sync_in.map(|t| t.to_string()),
        "last_sync_out": peer.last_sync_out.map(|t| t.to_string()),
        "last_sync_in_ago_s": peer.last_sync_in.map(|t| seconds_between(t, now)),
        "last_sync_out_ago_s": peer.last_sync_out.map(|t| seconds_between(t, now)),
        "pending": pending,
        "schema_version": peer.schema_version,
        "oldest_unacknowledged": oldest,
    }))
}

/// Whole seconds from `then` to `now`.
pub fn seconds_between(then: Timestamp, now: Timestamp) -> i64 {
    now.as_micros().saturating_sub(then.as_micros()) / 1_000_000
}

/// `node revoke CODE|ID`: the node's packets are refused from now on.
pub fn revoke_node(dir: &Path, which: &str, out: &Output) -> Result<()> {
    let mut hub = Opened::open(dir)?;
    hub.config.hub_settings(dir)?;
    let peer = find_peer(&mut hub.engine, which)?;
    hub.engine
        .revoke_peer(peer.id())
        .context("revoking the node")?;
    out.emit(
        &json!({ "revoked": peer.id().to_string(), "code": peer.info.code }),
        || {
            format!(
                "node {} ({}) revoked: its packets are refused from now on; `syncplan node add` registers a new node",
                peer.info.code,
                peer.id()
            )
        },
    )
}

/// `node token CODE`: a fresh token for a registered node (its old one
/// expired, or was lost).
pub fn token(dir: &Path, which: &str, out: &Output) -> Result<()> {
    let mut hub = Opened::open(dir)?;
    hub.config.hub_settings(dir)?;
    let peer = find_peer(&mut hub.engine, which)?;
    let token = issue_token(
        &mut hub.engine,
        peer.id(),
        &TokenPolicy::default(),
        syncplan::now(),
    )
    .context("issuing the token")?
    .into_string();
    out.emit(&json!({ "code": peer.info.code, "token": token }), || {
        format!(
            "a new token for {} (a secret, shown once); on the node: syncplan set-token TOKEN --dir DIR\n{token}",
            peer.info.code
        )
    })
}

/// What `hub migrate` records.
pub struct MigrateArgs<'a> {
    /// The version it brings.
    pub version: &'a str,
    /// Its SQLite script.
    pub sql: &'a str,
    /// What it changes.
    pub description: Option<&'a str>,
    /// Tables it creates that sync from then on.
    pub track: &'a [String],
}

/// `hub migrate VERSION --sql SQL`: records the migration (so a crash
/// before it is applied here applies it at the next start) and applies it
/// to the hub's database; nodes behind receive it at their next sync.
pub fn migrate(dir: &Path, args: MigrateArgs<'_>, out: &Output) -> Result<()> {
    let mut hub = Opened::open(dir)?;
    hub.config.hub_settings(dir)?;
    let version: syncplan::SchemaVersion = args.version.parse().map_err(|e| {
        Failure::msg(format!(
            "{e}; give the version the migration brings, e.g. 1.1.0"
        ))
    })?;
    let at = hub.engine.schema_version();
    if version <= at || version.major != at.major {
        return Err(Failure::msg(format!(
            "the hub's schema is {at}: a migration must bring a later version of the same major (e.g. {}.{}.0)",
            at.major,
            at.minor + 1
        )));
    }
    let stored = StoredMigration {
        version: version.to_string(),
        sql: args.sql.to_owned(),
        description: args
            .description
            .map_or_else(|| format!("schema {version}"), str::to_owned),
        track: args.track.to_vec(),
    };
    let migration = stored.migration()?;
    let key = format!("{MIGRATION_META}{version}");
    let bytes = serde_json::to_vec(&stored).context("encoding the migration")?;
    hub.engine
        .put_meta(&key, Some(&bytes))
        .context("recording the migration")?;
    if let Err(e) = hub.engine.store_mut().apply_migration(&migration) {
        // Not applied here: not distributed either.
        hub.engine
            .put_meta(&key, None)
            .context("removing the migration that failed")?;
        return Err(Failure::msg(format!(
            "{e}; nothing was changed: fix the script and run `hub migrate` again"
        )));
    }
    out.emit(
        &json!({ "schema_version": version.to_string(), "description": stored.description }),
        || {
            format!(
                "the hub's database is at schema {version} ({}); nodes behind receive the migration at their next sync (restart `hub serve` if it runs)",
                stored.description
            )
        },
    )
}

/// A registered peer by code or id.
pub fn find_peer(engine: &mut Engine<syncplan::SqliteStore>, which: &str) -> Result<PeerState> {
    let peers = engine.peers().context("reading the registered nodes")?;
    peers
        .into_iter()
        .find(|p| p.info.code == which || p.id().to_string() == which)
        .ok_or_else(|| {
            Failure::msg(format!(
                "no node {which:?} is registered at this hub; `syncplan node list` shows the codes"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_between_rounds_down() {
        let now = Timestamp::from_secs(1_000);
        assert_eq!(seconds_between(Timestamp::from_millis(940_500), now), 59);
    }
}
