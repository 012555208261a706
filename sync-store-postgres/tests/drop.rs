//! A store (or the engine holding it) may end on a thread of an async
//! runtime: its blocking client closes on a thread of its own.

mod common;

use sync_conformance::fixtures::hub_info;
use sync_core::{Engine, EngineConfig, EntityRegistry};
use sync_store_postgres::{PgOptions, PgStore, cluster};

/// Whether schema `name` exists, asked on a connection of its own.
async fn schema_exists(url: String, name: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&name],
            )
            .expect("look for the schema")
            .get::<_, i64>(0)
            == 1
    })
    .await
    .expect("the lookup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_and_an_engine_dropped_on_tokio_worker_threads_close_their_connections() {
    // Starting the throwaway server blocks: off the async threads.
    let url = tokio::task::spawn_blocking(common::url)
        .await
        .expect("the server");
    let schema = cluster::unique_schema("drop");
    let (u, s) = (url.clone(), schema.clone());
    let store = tokio::task::spawn_blocking(move || {
        PgStore::connect(&u, PgOptions::new().schema(s).temporary(true)).expect("connect")
    })
    .await
    .expect("connecting");
    assert!(schema_exists(url.clone(), schema.clone()).await);
    // Dropped on a worker thread (this used to panic: a runtime dropped
    // where blocking is not allowed); the temporary schema goes with it.
    tokio::spawn(async move { drop(store) })
        .await
        .expect("the store drops without a panic");
    assert!(!schema_exists(url.clone(), schema).await);

    // An engine on the store, as a hub server holds it, ending in a task.
    let schema = cluster::unique_schema("drop");
    let (u, s) = (url.clone(), schema.clone());
    let engine = tokio::task::spawn_blocking(move || {
        let store =
            PgStore::connect(&u, PgOptions::new().schema(s).temporary(true)).expect("connect");
        Engine::new(
            store,
            EntityRegistry::new(),
            EngineConfig::default().seed(1),
            hub_info(),
        )
        .expect("a hub")
    })
    .await
    .expect("opening the hub");
    tokio::spawn(async move { drop(engine) })
        .await
        .expect("the engine drops without a panic");
    assert!(!schema_exists(url, schema).await);
    // And in the test's own runtime context, outside any task.
    let store = tokio::task::spawn_blocking(common::fresh)
        .await
        .expect("connecting");
    drop(store);
}
