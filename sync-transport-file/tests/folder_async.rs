//! `FolderTransport::exchange` waiting for a reply never blocks the async
//! thread it is awaited on: on a single-threaded tokio runtime, the hub's
//! side of the folder runs on that same thread while the node waits.

mod common;

use std::time::Duration;

use common::*;
use sync_conformance::fixtures::hub_id;
use sync_core::{Transport, TransportError};
use sync_transport_file::{
    FolderEndpoint, FolderOptions, FolderPaths, FolderTransport, serve_folder,
};

#[tokio::test(flavor = "current_thread")]
async fn waiting_for_a_reply_leaves_the_async_thread_free() {
    let mut w = World::new(1);
    let shared = tempfile::tempdir().unwrap();
    let paths = FolderPaths::shared(shared.path(), node_id(0), hub_id());
    let options = FolderOptions::default()
        .wait_for_reply(Duration::from_secs(20))
        .poll_interval(Duration::from_millis(10));
    let transport =
        FolderTransport::for_peer(&mut w.nodes[0], hub_id(), paths.clone(), options).unwrap();
    let hub_side = FolderEndpoint::for_peer(
        &mut w.hub,
        node_id(0),
        paths.reversed(),
        FolderOptions::default(),
    )
    .unwrap();
    insert_note(&mut w.nodes[0], "through the folder", t(0));
    w.nodes[0].start_sync(hub_id()).unwrap();
    let packet = w.nodes[0].poll_transmit(t(1)).unwrap().expect("a packet");

    // The hub serves the folder on this same (only) thread once the node's
    // file is there. If the exchange blocked the thread, the hub would
    // never run and the exchange would time out.
    let mut hub = w.hub;
    let serve = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if serve_folder(&mut hub, &hub_side, t(1)).unwrap().answered > 0 {
                return hub;
            }
        }
    };
    let (replies, hub) = tokio::join!(transport.exchange(packet.bytes), serve);
    let replies = replies.expect("the reply arrived while the node waited");
    assert_eq!(replies.len(), 1);
    w.nodes[0].handle_incoming(&replies[0], t(1)).unwrap();
    assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), 0);
    assert_eq!(hub.store().entity_count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_wait_with_no_reply_times_out_without_blocking_the_thread() {
    let mut w = World::new(1);
    let shared = tempfile::tempdir().unwrap();
    let paths = FolderPaths::shared(shared.path(), node_id(0), hub_id());
    let options = FolderOptions::default()
        .wait_for_reply(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(10));
    let transport = FolderTransport::for_peer(&mut w.nodes[0], hub_id(), paths, options).unwrap();
    w.nodes[0].start_sync(hub_id()).unwrap();
    let packet = w.nodes[0].poll_transmit(t(1)).unwrap().expect("a packet");
    // A timer on the same thread keeps ticking while the exchange waits.
    let ticks = async {
        let mut ticks = 0u32;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticks += 1;
        }
        ticks
    };
    let (result, ticks) = tokio::join!(transport.exchange(packet.bytes), ticks);
    assert_eq!(ticks, 5);
    assert!(
        matches!(result, Err(TransportError::Timeout { after_ms: 300, .. })),
        "{result:?}"
    );
}
