//! Sneakernet: a node that never sees a network syncs with its hub through
//! sealed files in a folder (a USB stick), both on SQLite. The node runs the
//! ordinary async driver over the folder transport; the hub answers what
//! it finds in the folder.
//!
//! Run with `cargo run -p syncplan --example sneakernet_files`.

use syncplan::file::{self, FolderEndpoint, FolderOptions, FolderPaths, FolderTransport, PairKey};
use syncplan::{
    Engine, EngineConfig, EntityRegistry, Node, NodeId, NodeInfo, Role, SqliteOptions, SqliteStore,
    TrackOptions, Uuid,
};

const SCHEMA: &str =
    "CREATE TABLE reading(id INTEGER PRIMARY KEY, meter TEXT NOT NULL, value REAL NOT NULL)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let stick = dir.path().join("usb-stick");
    let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Office", Role::Hub);
    let node_info = NodeInfo::new(
        NodeId(Uuid::from_u128(2)),
        "FIELD-1",
        "Field laptop",
        Role::Node,
    );

    let (store, registry) = open(&dir.path().join("hub.db"))?;
    let mut hub = Engine::new(
        store,
        registry,
        EngineConfig::default().seed(1),
        hub_info.clone(),
    )?;
    hub.register_peer(node_info.clone())?;
    // Registration makes the pair's key; it travels once, with the credentials.
    let handed_over = file::create_pair_key(&mut hub, node_info.id)?.expose_printable();

    let (store, registry) = open(&dir.path().join("node.db"))?;
    let mut engine = Engine::new(
        store,
        registry,
        EngineConfig::default().seed(2),
        node_info.clone(),
    )?;
    engine.register_peer(hub_info.clone())?;
    file::install_pair_key(&mut engine, hub_info.id, &PairKey::parse(&handed_over)?)?;

    // Both sides see the stick's folders from their own end.
    let node_paths = FolderPaths::shared(&stick, node_info.id, hub_info.id);
    let transport = FolderTransport::for_peer(
        &mut engine,
        hub_info.id,
        node_paths.clone(),
        FolderOptions::default(),
    )?;
    let hub_end = FolderEndpoint::for_peer(
        &mut hub,
        node_info.id,
        node_paths.reversed(),
        FolderOptions::default(),
    )?;
    let node = Node::builder(engine, hub_info.id, transport).build();

    node.with_engine(|e| {
        e.store().connection().execute_batch(
            "INSERT INTO reading(meter, value) VALUES ('M-17', 4211.5);
             INSERT INTO reading(meter, value) VALUES ('M-18', 118.0);",
        )
    })
    .await??;

    let first = node.sync().await?;
    println!(
        "FIELD-1 writes its packet to the stick: {}",
        first.summary()
    );
    let answered = file::serve_folder(&mut hub, &hub_end, syncplan::now())?.answered;
    println!("the stick goes to the office; the hub answers {answered} export(s)");
    let second = node.sync().await?;
    println!(
        "the stick comes back; FIELD-1 imports the reply: {}",
        second.summary()
    );

    let readings: i64 =
        hub.store()
            .connection()
            .query_row("SELECT count(*) FROM reading", [], |r| r.get(0))?;
    let pending = node
        .with_engine(move |e| e.pending_count(hub_info.id))
        .await??;
    println!(
        "the hub holds {readings} reading(s); FIELD-1 has {pending} change(s) still unacknowledged"
    );
    assert_eq!((readings, pending), (2, 0));
    Ok(())
}

/// A SQLite store with the application's table, tracked.
fn open(
    path: &std::path::Path,
) -> Result<(SqliteStore, EntityRegistry), Box<dyn std::error::Error>> {
    let mut store = SqliteStore::open(path, SqliteOptions::default())?;
    store.connection().execute_batch(SCHEMA)?;
    let ty = store.track_table("reading", TrackOptions::new().entity_type_name("Reading"))?;
    Ok((store, EntityRegistry::new().with(ty)))
}
