//! The transport suite of sync-conformance against folder mode: each node's
//! `FolderTransport` writes into a shared folder, and a server thread plays
//! the hub's side of the folder, answering through the suite's `HubHandle`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use sync_conformance::fixtures::{hub_id, node_id};
use sync_conformance::hub::{HubFailure, HubHandle};
use sync_core::codec::{self, Limits};
use sync_core::packet::Envelope;
use sync_core::{NodeId, Transport, TransportError};
use sync_transport_file::{FolderEndpoint, FolderOptions, FolderPaths, FolderTransport, PairKey};

/// How long a node waits for the hub's reply before the exchange fails as a
/// timeout (the suite's "gone" and "failing" hub cases wait this long).
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// A node's folder transport plus the hub's folder server, started on the
/// first exchange (when the node's id is known from its packet).
struct FolderFixture {
    hub: HubHandle,
    dir: tempfile::TempDir,
    key: PairKey,
    started: OnceLock<Started>,
}

struct Started {
    transport: FolderTransport,
    stop: Arc<AtomicBool>,
    server: Mutex<Option<JoinHandle<()>>>,
}

fn connect(hub: &HubHandle) -> FolderFixture {
    FolderFixture {
        hub: hub.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
        key: PairKey::generate().expect("random key"),
        started: OnceLock::new(),
    }
}

/// The sender a request names (node 0 for bytes that do not decode).
fn sender_of(bytes: &[u8]) -> NodeId {
    match codec::decode_envelope(bytes, &Limits::default()) {
        Ok(Envelope::Packet(p)) => p.header.sender,
        Ok(Envelope::Train(t)) => t[0].header.sender,
        Ok(Envelope::Error(e)) => e.sender,
        Err(_) => node_id(0),
    }
}

impl FolderFixture {
    fn start(&self, node: NodeId) -> Started {
        let paths = FolderPaths::shared(self.dir.path(), node, hub_id());
        let options = FolderOptions::default()
            .wait_for_reply(REPLY_TIMEOUT)
            .poll_interval(Duration::from_millis(2));
        let transport = FolderTransport::new(
            FolderEndpoint::new(paths.clone(), node, hub_id(), self.key.clone(), options)
                .expect("node endpoint"),
        );
        let hub_side = FolderEndpoint::new(
            paths.reversed(),
            hub_id(),
            node,
            self.key.clone(),
            FolderOptions::default(),
        )
        .expect("hub endpoint");
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&stop);
            let hub = self.hub.clone();
            std::thread::spawn(move || serve(&hub, &hub_side, &stop))
        };
        Started {
            transport,
            stop,
            server: Mutex::new(Some(server)),
        }
    }
}

/// The hub's side of the folder: while the hub is up, answer every request
/// that arrived; a failed request is consumed without an answer (the node
/// times out and retries, as after an HTTP 503). While the hub is down,
/// requests wait in the folder.
fn serve(hub: &HubHandle, endpoint: &FolderEndpoint, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if hub.is_up() {
            for request in endpoint.receive().expect("hub folder readable") {
                match hub.respond(&request.envelope) {
                    Ok(reply) => {
                        endpoint.send(&reply).expect("hub folder writable");
                    }
                    Err(HubFailure::Internal(_) | HubFailure::Gone) => {}
                }
            }
            assert!(
                endpoint.take_rejections().is_empty(),
                "a request was refused"
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let server = self.server.lock().map(|mut s| s.take());
        if let Ok(Some(server)) = server {
            let _ = server.join();
        }
    }
}

#[async_trait::async_trait]
impl Transport for FolderFixture {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        let node = sender_of(&outgoing);
        let started = self.started.get_or_init(|| self.start(node));
        started.transport.exchange(outgoing).await
    }
}

sync_conformance::transport_suite!(folder, connect);
