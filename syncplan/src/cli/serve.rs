//! `hub serve` (the hub over HTTPS until Ctrl-C) and `hub rotate-key`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::json;
use syncplan::http::{
    EngineHub, HubServer, ServerConfig, TlsIdentity, TokenAuthority, TokenPolicy,
};

use super::failure::{Context, Failure, Result};
use super::layout::Opened;
use super::output::Output;

/// Serves the hub in `dir` on `listen` (default: its configured address)
/// until Ctrl-C or SIGTERM.
pub async fn serve(dir: &Path, listen: Option<&str>, out: &Output) -> Result<()> {
    let opened = Opened::open(dir)?;
    let code = opened.config.code.clone();
    let settings = opened.config.hub_settings(dir)?.clone();
    run_server(dir, &settings, listen, &code, opened.engine, out).await
}

/// Serves the hub in `dir` as [`serve`] does, its sync state in schema
/// `schema` of the PostgreSQL database at `conninfo`. The directory keeps
/// the hub's identity, certificate and nodes: the nodes and token signing
/// keys it holds that PostgreSQL lacks are copied there first (so `node
/// add` and `hub rotate-key` on the directory take effect at the next
/// start of every process).
#[cfg(feature = "postgres")]
pub async fn serve_postgres(
    dir: &Path,
    listen: Option<&str>,
    conninfo: String,
    schema: String,
    out: &Output,
) -> Result<()> {
    let opened = Opened::open(dir)?;
    let code = opened.config.code.clone();
    let settings = opened.config.hub_settings(dir)?.clone();
    // The PostgreSQL client blocks: off the async threads.
    let engine = tokio::task::spawn_blocking(move || open_postgres(opened, &conninfo, &schema))
        .await
        .map_err(|e| Failure::msg(format!("opening the PostgreSQL hub failed: {e}")))??;
    run_server(dir, &settings, listen, &code, engine, out).await
}

/// The hub of `opened` on PostgreSQL, with the directory's nodes and
/// signing keys.
#[cfg(feature = "postgres")]
fn open_postgres(
    mut opened: Opened,
    conninfo: &str,
    schema: &str,
) -> Result<syncplan::Engine<syncplan::postgres::PgStore>> {
    use syncplan::postgres::{PgOptions, PgStore};
    let store = PgStore::connect(conninfo, PgOptions::new().schema(schema))
        .with_context(|| format!("connecting to PostgreSQL (schema {schema})"))?;
    let mut engine = syncplan::Engine::new(
        store,
        opened.engine.registry().clone(),
        super::layout::engine_config(),
        opened.engine.local_node().clone(),
    )
    .context("opening the hub's sync state in PostgreSQL")?;
    let peers = opened.engine.peers().context("reading the hub's nodes")?;
    for peer in peers {
        let id = peer.info.id;
        let known = engine.peer(id).ok();
        if known.is_none() {
            engine
                .register_peer(peer.info.clone())
                .with_context(|| format!("registering node {} in PostgreSQL", peer.info.code))?;
        }
        if peer.revoked && !known.is_some_and(|k| k.revoked) {
            engine
                .revoke_peer(id)
                .with_context(|| format!("revoking node {} in PostgreSQL", peer.info.code))?;
        }
    }
    let meta = opened
        .engine
        .meta_with_prefix("http/")
        .context("reading the hub's signing keys")?;
    for (key, value) in meta {
        if engine
            .meta(&key)
            .context("reading PostgreSQL's signing keys")?
            .is_none()
        {
            engine
                .put_meta(&key, Some(&value))
                .context("copying a signing key to PostgreSQL")?;
        }
    }
    Ok(engine)
}

/// Serves `engine` with the directory's TLS identity until Ctrl-C or
/// SIGTERM.
async fn run_server<S: syncplan::Store + Send + 'static>(
    dir: &Path,
    settings: &super::layout::HubSettings,
    listen: Option<&str>,
    code: &str,
    engine: syncplan::Engine<S>,
    out: &Output,
) -> Result<()> {
    let identity = read_identity(dir, &settings.tls_cert, &settings.tls_key)?;
    let tls = identity.server_config().context("setting up TLS")?;
    let listen = listen.unwrap_or(&settings.listen);
    let address: SocketAddr = listen.parse().map_err(|_| {
        Failure::msg(format!(
            "{listen:?} is not an address to listen on; write IP:PORT, e.g. 127.0.0.1:8443 or 0.0.0.0:8443"
        ))
    })?;
    let hub = EngineHub::new(engine);
    let server = HubServer::bind(address, tls, hub, ServerConfig::default())
        .await
        .with_context(|| format!("starting the hub server on {address}"))?;
    out.emit(
        &json!({ "url": server.url(), "fingerprint": settings.fingerprint, "hub": code }),
        || {
            format!(
                "hub {code} serving on {} (TLS certificate fingerprint {}); Ctrl-C stops it",
                server.url(),
                settings.fingerprint
            )
        },
    )?;
    // A script waiting for the line above must see it now.
    std::io::stdout()
        .flush()
        .context("writing to standard output")?;
    stopped().await?;
    tracing::info!("stopping the hub server");
    server.shutdown().await;
    Ok(())
}

pub fn read_identity(dir: &Path, cert: &Path, key: &Path) -> Result<TlsIdentity> {
    let cert_path = dir.join(cert);
    let key_path = dir.join(key);
    let cert = std::fs::read(&cert_path)
        .with_context(|| format!("reading the TLS certificate {}", cert_path.display()))?;
    let key = std::fs::read(&key_path)
        .with_context(|| format!("reading the TLS key {}", key_path.display()))?;
    TlsIdentity::from_pem(&cert, &key).context("reading the hub's TLS certificate and key")
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn stopped() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for Ctrl-C")
    }
}

/// `hub rotate-key`: a new signing key signs new tokens; tokens signed with
/// the previous keys stay valid until they expire.
pub fn rotate_key(dir: &Path, out: &Output) -> Result<()> {
    let mut opened = Opened::open(dir)?;
    opened.config.hub_settings(dir)?;
    let now = syncplan::now();
    let authority = TokenAuthority::open(&mut opened.engine, TokenPolicy::default(), now)
        .context("reading the hub's signing keys")?;
    let previous = authority.current_key_id();
    let id = authority
        .rotate(&mut opened.engine, now)
        .context("rotating the signing key")?;
    out.emit(&json!({ "key_id": id, "previous_key_id": previous }), || {
        format!(
            "signing key {id} made; it signs every token from now on (nodes receive one as they sync). Tokens signed with key {previous} stay valid until they expire.\nA running `syncplan hub serve` picks the new key up when restarted."
        )
    })
}
