//! Two nodes and a hub in one process, on memory stores, through the async
//! driver: each node writes offline, both sync, a conflicting edit is
//! resolved by the default strategy (server-wins), and live push brings a
//! change from one node to the other without waiting for the interval.
//!
//! Run with `cargo run -p syncplan --example two_nodes_memory`.

use std::time::Duration;

use syncplan::{
    AutoSync, DriverError, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, FieldKind,
    LocalHub, MemoryStore, Node, NodeId, NodeInfo, Record, Role, Uuid, Value,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = EntityRegistry::new().with(
        EntityType::new("Note")
            .field("title", FieldKind::Text)
            .field("body", FieldKind::Text),
    );
    let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Office", Role::Hub);
    let mut hub = Engine::new(
        MemoryStore::new(),
        registry.clone(),
        EngineConfig::default().seed(1),
        hub_info.clone(),
    )?;
    let mut nodes = Vec::new();
    for i in 1..=2u64 {
        let info = NodeInfo::new(
            NodeId(Uuid::from_u128(0x100 + u128::from(i))),
            format!("LAPTOP-{i}"),
            format!("Laptop {i}"),
            Role::Node,
        );
        hub.register_peer(info.clone())?;
        let mut engine = Engine::new(
            MemoryStore::new(),
            registry.clone(),
            EngineConfig::default().seed(10 + i),
            info.clone(),
        )?;
        engine.register_peer(hub_info.clone())?;
        nodes.push((info, engine));
    }
    let hub = LocalHub::new(hub);
    let nodes: Vec<Node<MemoryStore>> = nodes
        .into_iter()
        .map(|(info, engine)| {
            let transport = std::sync::Arc::new(hub.transport(info.id));
            Node::builder_shared(engine, hub_info.id, transport.clone())
                .push(transport)
                .build()
        })
        .collect();

    println!("LAPTOP-1 writes a note offline and syncs it");
    let fields = note("Groceries", "milk, eggs");
    let id = nodes[0]
        .with_engine(move |e| e.insert("Note", fields, syncplan::now()))
        .await??;
    let key = EntityKey::new("Note", id);
    println!("  {}", nodes[0].sync().await?.summary());
    println!("LAPTOP-2 syncs and receives it");
    println!("  {}", nodes[1].sync().await?.summary());

    println!("Both edit the same note while offline; LAPTOP-1 syncs first");
    for (node, body) in nodes
        .iter()
        .zip(["milk, eggs, bread", "milk, eggs, coffee"])
    {
        let (key, fields) = (key.clone(), note("Groceries", body));
        node.with_engine(move |e| e.put(key, fields, syncplan::now()))
            .await??;
    }
    println!("  LAPTOP-1: {}", nodes[0].sync().await?.summary());
    println!("  LAPTOP-2: {}", nodes[1].sync().await?.summary());
    // The hub detects the conflict (the nodes only receive its outcome):
    // its audit log says how it was resolved, its version history keeps
    // the losing version whole.
    let (audit, history) = {
        let key = key.clone();
        hub.with_engine(move |e| Ok::<_, syncplan::SyncError>((e.audit_log()?, e.versions(&key)?)))
            .await??
    };
    for record in &audit {
        println!(
            "  hub audit: {} on {}: {}",
            record.strategy, record.key, record.detail
        );
    }
    for version in &history {
        println!(
            "  hub version history keeps {:?} (resolution \"{}\")",
            version.data.fields.get("body"),
            version.resolution
        );
    }

    println!("LAPTOP-2 runs auto-sync; LAPTOP-1 writes, and live push brings it over");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = nodes[1].clone();
    let auto = tokio::spawn(async move {
        let schedule = AutoSync::default().interval(Duration::from_secs(3600));
        watcher
            .auto_sync(
                schedule,
                async {
                    let _ = stopped.await;
                },
                |result| match result {
                    Ok(report) => println!("  LAPTOP-2 auto-sync: {}", report.summary()),
                    Err(e) => println!("  LAPTOP-2 auto-sync failed: {e}"),
                },
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fields = note("Call the plumber", "tomorrow 9:00");
    let second = nodes[0]
        .with_engine(move |e| e.insert("Note", fields, syncplan::now()))
        .await??;
    nodes[0].sync().await?;
    let second_key = EntityKey::new("Note", second);
    let arrived = wait_for(&nodes[1], second_key).await?;
    let _ = stop.send(());
    auto.await??;
    println!("  arrived on LAPTOP-2 by push: {arrived}");

    let mut contents = Vec::new();
    for node in &nodes {
        let key = key.clone();
        contents.push(node.with_engine(move |e| e.get(&key)).await??);
    }
    let hub_copy = {
        let key = key.clone();
        hub.with_engine(move |e| e.get(&key)).await??
    };
    let agree = contents
        .iter()
        .all(|c| c.as_ref().map(|e| &e.fields) == hub_copy.as_ref().map(|e| &e.fields));
    println!(
        "The note now reads {:?} on the hub and both laptops: {}",
        hub_copy.and_then(|e| e.fields.get("body").cloned()),
        if agree { "all agree" } else { "THEY DISAGREE" }
    );
    if !agree || !arrived {
        std::process::exit(1);
    }
    Ok(())
}

fn note(title: &str, body: &str) -> Record {
    Record::from([
        ("title".into(), Value::from(title)),
        ("body".into(), Value::from(body)),
    ])
}

/// Waits up to 5 s for `key` to arrive on `node`.
async fn wait_for(node: &Node<MemoryStore>, key: EntityKey) -> Result<bool, DriverError> {
    for _ in 0..100 {
        let key = key.clone();
        if node.with_engine(move |e| e.get(&key)).await??.is_some() {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
