//! A hub and a node over real HTTPS on 127.0.0.1, both on SQLite, through
//! the async driver: the hub's server with a self-signed certificate the
//! node pins, a token the hub issues, a plain-SQL write on the node, one
//! sync session, and the row on the hub.
//!
//! Run with `cargo run -p syncplan --example hub_and_node_https`.

use std::sync::Arc;

use syncplan::http::{
    ClientConfig, EngineHub, HttpTransport, HubServer, SelfSigned, ServerConfig, Trust,
};
use syncplan::{
    Engine, EngineConfig, EntityRegistry, Node, NodeId, NodeInfo, Role, SqliteOptions, SqliteStore,
    TrackOptions, Uuid,
};

const SCHEMA: &str = "CREATE TABLE task(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Office", Role::Hub);
    let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "LAPTOP-1", "Laptop", Role::Node);

    // The hub: its SQLite database tracks the same table as the node.
    let (hub_store, registry) = open(&dir.path().join("hub.db"))?;
    let mut hub = Engine::new(
        hub_store,
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info.clone(),
    )?;
    hub.register_peer(node_info.clone())?;
    let cert = SelfSigned::generate(&["127.0.0.1"])?;
    let server = HubServer::bind(
        "127.0.0.1:0".parse()?,
        cert.identity.server_config()?,
        EngineHub::new(hub),
        ServerConfig::default(),
    )
    .await?;
    let token = server.issue_token(node_info.id).await?;
    println!(
        "hub serving on {} (certificate {})",
        server.url(),
        cert.fingerprint
    );

    // The node: its database, a transport pinning the hub's certificate.
    let (node_store, registry) = open(&dir.path().join("node.db"))?;
    let mut engine = Engine::new(
        node_store,
        registry,
        EngineConfig::default().seed(2),
        node_info,
    )?;
    engine.register_peer(hub_info.clone())?;
    let config = ClientConfig::default().trust(Trust::pinned(&cert.fingerprint)?);
    let transport = Arc::new(HttpTransport::new(&server.url(), token.as_str(), config)?);
    let node = Node::builder_shared(engine, hub_info.id, transport.clone())
        .push(transport)
        .build();

    // The application writes plain SQL; the node syncs it.
    node.with_engine(|e| {
        e.store()
            .connection()
            .execute("INSERT INTO task(title) VALUES ('order cable')", [])
    })
    .await??;
    let report = node.sync().await?;
    println!("LAPTOP-1: {}", report.summary());

    let on_hub: String = tokio::task::spawn_blocking({
        let hub = server.hub().clone();
        move || {
            hub.with_engine(|e| {
                e.store()
                    .connection()
                    .query_row("SELECT title FROM task", [], |r| r.get(0))
            })
        }
    })
    .await??;
    println!("the hub's task table now holds: {on_hub}");
    server.shutdown().await;
    assert_eq!(on_hub, "order cable");
    Ok(())
}

/// A SQLite store with the application's table, tracked.
fn open(
    path: &std::path::Path,
) -> Result<(SqliteStore, EntityRegistry), Box<dyn std::error::Error>> {
    let mut store = SqliteStore::open(path, SqliteOptions::default())?;
    store.connection().execute_batch(SCHEMA)?;
    let ty = store.track_table("task", TrackOptions::new().entity_type_name("Task"))?;
    Ok((store, EntityRegistry::new().with(ty)))
}
