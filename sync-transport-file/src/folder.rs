//! Folder mode: an outbox and an inbox per peer, and a [`Transport`] over
//! them, so a driver syncs through a shared (or hand-carried) folder with
//! no other change.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sync_core::codec::Limits;
use sync_core::{Engine, NodeId, Store, SyncError, Timestamp, Transport, TransportError};

use crate::error::FileError;
use crate::export::{ExportOptions, is_final_name, seal_envelope, write_files};
use crate::format::{FileHeader, FileKind};
use crate::import::{Opened, assemble_groups, inspect, open_one, read_file};
use crate::key::{PairKey, pair_key};
use crate::seal::OpenedPart;

/// Name of the folder inside an inbox where refused files are moved.
pub const REJECTED_DIR: &str = "rejected";

/// Where one side of a pair writes and reads its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderPaths {
    /// Files for the peer are written here.
    pub outbox: PathBuf,
    /// Files from the peer are read (and removed) here.
    pub inbox: PathBuf,
}

impl FolderPaths {
    /// Explicit folders.
    pub fn new(outbox: impl Into<PathBuf>, inbox: impl Into<PathBuf>) -> Self {
        FolderPaths {
            outbox: outbox.into(),
            inbox: inbox.into(),
        }
    }

    /// One side's own folders for `peer` under `root`:
    /// `root/outbox/<peer>` and `root/inbox/<peer>`. Files are carried by
    /// hand from one side's outbox to the other side's inbox.
    pub fn per_peer(root: &Path, peer: NodeId) -> Self {
        FolderPaths::new(
            root.join("outbox").join(peer.to_string()),
            root.join("inbox").join(peer.to_string()),
        )
    }

    /// Folders in one folder shared by `local` and `peer` (a network share,
    /// a synced folder): `dir/<local>-to-<peer>` and `dir/<peer>-to-<local>`.
    /// Both sides compute matching paths.
    pub fn shared(dir: &Path, local: NodeId, peer: NodeId) -> Self {
        FolderPaths::new(
            dir.join(format!("{local}-to-{peer}")),
            dir.join(format!("{peer}-to-{local}")),
        )
    }

    /// The other side's view: outbox and inbox swapped.
    pub fn reversed(&self) -> Self {
        FolderPaths::new(self.inbox.clone(), self.outbox.clone())
    }
}

/// How a folder endpoint behaves. `FolderOptions::default()` suits carrying
/// files by hand: no waiting, 64 MiB files, the default decoding limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderOptions {
    /// After writing, wait up to this long for a reply to arrive (a hub
    /// serving the shared folder); `None` (default): return what is there.
    pub wait_for_reply: Option<Duration>,
    /// How often the inbox is looked at while waiting (default 5 ms).
    pub poll_interval: Duration,
    /// How files are written (part size).
    pub export: ExportOptions,
    /// Limits for what is read (default: [`Limits::default`]).
    pub limits: Limits,
    /// When a packet is sent, remove older packets to the same peer that
    /// are still in the outbox (default true). The newer packet carries the
    /// newest acknowledgement and every change the older ones carried that
    /// is still unacknowledged, so nothing is lost, and a driver retrying
    /// while nobody collects the files does not pile them up.
    pub supersede_unsent: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            wait_for_reply: None,
            poll_interval: Duration::from_millis(5),
            export: ExportOptions::default(),
            limits: Limits::default(),
            supersede_unsent: true,
        }
    }
}

impl FolderOptions {
    /// Waits up to `timeout` for a reply after each exchange.
    pub fn wait_for_reply(mut self, timeout: Duration) -> Self {
        self.wait_for_reply = Some(timeout);
        self
    }

    /// Sets how often the inbox is looked at while waiting.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets how files are written.
    pub fn export(mut self, export: ExportOptions) -> Self {
        self.export = export;
        self
    }

    /// Sets the limits for what is read.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets whether a sent packet removes older unsent ones.
    pub fn supersede_unsent(mut self, on: bool) -> Self {
        self.supersede_unsent = on;
        self
    }
}

/// One received export: its verified envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The header (of part 1).
    pub header: FileHeader,
    /// The envelope, as the peer's engine encoded it.
    pub envelope: Bytes,
}

/// One side of a pair's folders, with the pair key: sends envelopes as
/// sealed files, receives verified envelopes. The engine-free half of
/// folder mode (the hub's folder server and [`FolderTransport`] use it).
pub struct FolderEndpoint {
    paths: FolderPaths,
    local: NodeId,
    peer: NodeId,
    key: PairKey,
    options: FolderOptions,
    rejected: Mutex<Vec<FileError>>,
}

impl std::fmt::Debug for FolderEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderEndpoint")
            .field("paths", &self.paths)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl FolderEndpoint {
    /// An endpoint for `local` talking to `peer` with their pair key;
    /// creates the folders.
    pub fn new(
        paths: FolderPaths,
        local: NodeId,
        peer: NodeId,
        key: PairKey,
        options: FolderOptions,
    ) -> Result<Self, FileError> {
        for dir in [&paths.outbox, &paths.inbox] {
            fs::create_dir_all(dir).map_err(|e| FileError::io("create the folder", dir, e))?;
        }
        Ok(FolderEndpoint {
            paths,
            local,
            peer,
            key,
            options,
            rejected: Mutex::new(Vec::new()),
        })
    }

    /// An endpoint for `engine`'s node talking to `peer`, with the pair key
    /// installed in the engine's store.
    pub fn for_peer<S: Store>(
        engine: &mut Engine<S>,
        peer: NodeId,
        paths: FolderPaths,
        options: FolderOptions,
    ) -> Result<Self, FileError> {
        let key = pair_key(engine, peer)?.ok_or(FileError::NoPairKey { peer })?;
        let local = engine.local_node().id;
        FolderEndpoint::new(paths, local, peer, key, options)
    }

    /// The folders.
    pub fn paths(&self) -> &FolderPaths {
        &self.paths
    }

    /// Seals `envelope` for the peer into the outbox (atomically); returns
    /// the files written. With [`FolderOptions::supersede_unsent`], older
    /// packets still in the outbox are then removed.
    pub fn send(&self, envelope: &[u8]) -> Result<Vec<PathBuf>, FileError> {
        let created = system_now();
        let files = seal_envelope(
            envelope,
            self.local,
            self.peer,
            &self.key,
            &self.options.export,
            created,
        )?;
        let written = write_files(&self.paths.outbox, &files)?;
        let sent = &files[0].header;
        if self.options.supersede_unsent && sent.kind == FileKind::Packet {
            self.remove_older_packets(sent.packet_no)?;
        }
        Ok(written)
    }

    /// Removes this side's packets to the peer numbered below `packet_no`
    /// that nobody has collected yet.
    fn remove_older_packets(&self, packet_no: u64) -> Result<(), FileError> {
        for path in final_files(&self.paths.outbox)? {
            let Ok(header) = inspect(&path) else {
                continue;
            };
            let ours = header.sender == self.local && header.recipient == self.peer;
            if ours && header.kind == FileKind::Packet && header.packet_no < packet_no {
                remove_if_present(&path)?;
            }
        }
        Ok(())
    }

    /// Takes every complete export from the inbox, in packet order: each is
    /// verified, then its files are removed. A file that fails verification
    /// is moved to the inbox's `rejected` folder and its error kept for
    /// [`FolderEndpoint::take_rejections`]; parts of an export whose other
    /// parts have not arrived stay until they do.
    ///
    /// The files are gone once this returns: a caller that crashes before
    /// handing the envelopes to its engine loses them, which the protocol
    /// absorbs like a lost packet (the peer sends its unacknowledged changes
    /// again).
    pub fn receive(&self) -> Result<Vec<Received>, FileError> {
        let mut parts: Vec<(PathBuf, OpenedPart)> = Vec::new();
        for path in self.inbox_files()? {
            match self.open(&path) {
                Ok(part) => parts.push((path, part)),
                // Collected by someone else since the listing.
                Err(FileError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                // Not the file's fault (permissions, a failing disk): the
                // file stays, the exchange fails and is retried.
                Err(error @ FileError::Io { .. }) => return Err(error),
                Err(error) => self.reject(&path, error)?,
            }
        }
        let mut opened = Vec::new();
        for group in assemble_groups(complete_exports(parts)) {
            match group {
                Ok(export) => opened.push(export),
                // Parts that verify one by one but do not join are set
                // aside, so that they are not retried forever.
                Err(broken) => {
                    let (files, error) = *broken;
                    for file in &files {
                        self.move_aside(file)?;
                    }
                    self.lock_rejected().push(error);
                }
            }
        }
        opened.sort_by_key(|o| (o.header.packet_no, o.header.created, o.header.export_id));
        let mut out = Vec::with_capacity(opened.len());
        for Opened {
            header,
            files,
            envelope,
        } in opened
        {
            for file in &files {
                remove_if_present(file)?;
            }
            out.push(Received { header, envelope });
        }
        Ok(out)
    }

    /// The files refused since the last call, with why.
    pub fn take_rejections(&self) -> Vec<FileError> {
        std::mem::take(&mut *self.lock_rejected())
    }

    fn open(&self, path: &Path) -> Result<OpenedPart, FileError> {
        let bytes = read_file(path, &self.options.limits)?;
        let peer = self.peer;
        let key = self.key.clone();
        let mut key_for = move |sender: NodeId| -> Result<Option<PairKey>, FileError> {
            Ok((sender == peer).then(|| key.clone()))
        };
        open_one(path, &bytes, self.local, &mut key_for, &self.options.limits)
    }

    fn inbox_files(&self) -> Result<Vec<PathBuf>, FileError> {
        final_files(&self.paths.inbox)
    }

    fn reject(&self, path: &Path, error: FileError) -> Result<(), FileError> {
        self.move_aside(path)?;
        self.lock_rejected().push(error);
        Ok(())
    }

    fn move_aside(&self, path: &Path) -> Result<(), FileError> {
        let dir = self.paths.inbox.join(REJECTED_DIR);
        fs::create_dir_all(&dir).map_err(|e| FileError::io("create the folder", &dir, e))?;
        let Some(name) = path.file_name() else {
            return Ok(());
        };
        match fs::rename(path, dir.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileError::io("move aside", path, e)),
        }
    }

    fn lock_rejected(&self) -> std::sync::MutexGuard<'_, Vec<FileError>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.rejected.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sealed files under their final names in `dir`, sorted by name.
fn final_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let entries = fs::read_dir(dir).map_err(|e| FileError::io("list", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FileError::io("list", dir, e))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_final_name(&entry.file_name().to_string_lossy()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Keeps only the parts of exports whose every part is present.
fn complete_exports(parts: Vec<(PathBuf, OpenedPart)>) -> Vec<(PathBuf, OpenedPart)> {
    let mut present: std::collections::BTreeMap<[u8; 16], std::collections::BTreeSet<u32>> =
        std::collections::BTreeMap::new();
    for (_, part) in &parts {
        present
            .entry(part.header.export_id)
            .or_default()
            .insert(part.header.part);
    }
    parts
        .into_iter()
        .filter(|(_, part)| {
            present
                .get(&part.header.export_id)
                .is_some_and(|set| set.len() as u64 == u64::from(part.header.parts))
        })
        .collect()
}

/// [`Transport`] over a pair's folders: `exchange` writes the outgoing
/// envelope into the outbox and returns the envelopes found in the inbox,
/// in packet order (waiting for one when [`FolderOptions::wait_for_reply`]
/// is set).
///
/// The file work and the wait run off the caller's thread: on tokio's
/// blocking pool inside a tokio runtime, else on a thread of their own, so
/// `exchange` never blocks an async thread and can be awaited from any
/// executor. Dropping the `exchange` future (a driver's timeout) ends the
/// wait before the next look at the inbox, so replies that arrive later
/// stay there for the next exchange.
///
/// ```
/// use sync_core::{Engine, EngineConfig, EntityRegistry, EntityType, FieldKind, NodeId, NodeInfo};
/// use sync_core::{Record, Role, Timestamp, Transport, Uuid, Value};
/// use sync_store_memory::MemoryStore;
/// use sync_transport_file::{FolderEndpoint, FolderOptions, FolderPaths, FolderTransport, PairKey};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let registry = EntityRegistry::new().with(EntityType::new("Note").field("text", FieldKind::Text));
/// # let hub_info = NodeInfo::new(NodeId(Uuid::from_u128(1)), "HUB", "Hub", Role::Hub);
/// # let node_info = NodeInfo::new(NodeId(Uuid::from_u128(2)), "DESKTOP-1", "Desktop", Role::Node);
/// # let mut hub = Engine::new(MemoryStore::new(), registry.clone(), EngineConfig::default().seed(1), hub_info.clone())?;
/// # let mut node = Engine::new(MemoryStore::new(), registry, EngineConfig::default().seed(2), node_info.clone())?;
/// # hub.register_peer(node_info.clone())?;
/// # node.register_peer(hub_info.clone())?;
/// # let key = sync_transport_file::create_pair_key(&mut hub, node_info.id)?;
/// # sync_transport_file::install_pair_key(&mut node, hub_info.id, &key)?;
/// let now = Timestamp::from_secs(1_765_535_400);
/// let shared = tempfile::tempdir()?;
/// // The node's side of the shared folder, and the hub's.
/// let paths = FolderPaths::shared(shared.path(), node_info.id, hub_info.id);
/// let transport = FolderTransport::for_peer(&mut node, hub_info.id, paths.clone(), FolderOptions::default())?;
/// let hub_side = FolderEndpoint::for_peer(&mut hub, node_info.id, paths.reversed(), FolderOptions::default())?;
///
/// node.insert("Note", Record::from([("text".into(), Value::from("hi"))]), now)?;
/// node.start_sync(hub_info.id)?;
/// let packet = node.poll_transmit(now)?.expect("a session starts with a packet");
/// // Air-gapped: the exchange writes the file and finds no reply yet.
/// assert!(futures_executor::block_on(transport.exchange(packet.bytes))?.is_empty());
/// // The hub serves the folder (later, elsewhere); the reply is then there.
/// assert_eq!(sync_transport_file::serve_folder(&mut hub, &hub_side, now)?.answered, 1);
/// for reply in transport.endpoint().receive()? {
///     node.handle_incoming(&reply.envelope, now)?;
/// }
/// assert_eq!(node.pending_count(hub_info.id)?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FolderTransport {
    endpoint: Arc<FolderEndpoint>,
}

impl FolderTransport {
    /// A transport over `endpoint`.
    pub fn new(endpoint: FolderEndpoint) -> Self {
        FolderTransport {
            endpoint: Arc::new(endpoint),
        }
    }

    /// A transport for `engine`'s node to `peer` (its hub) over `paths`, with
    /// the installed pair key.
    pub fn for_peer<S: Store>(
        engine: &mut Engine<S>,
        peer: NodeId,
        paths: FolderPaths,
        options: FolderOptions,
    ) -> Result<Self, FileError> {
        FolderEndpoint::for_peer(engine, peer, paths, options).map(FolderTransport::new)
    }

    /// The endpoint (folders, refused files).
    pub fn endpoint(&self) -> &FolderEndpoint {
        &self.endpoint
    }
}

/// Writes `outgoing` and collects the replies, polling the inbox until one
/// arrives when the options say to wait. Blocking: runs off the async
/// threads ([`off_thread`]). Stops early when `cancelled` says the caller
/// went away.
fn exchange_blocking(
    endpoint: &FolderEndpoint,
    outgoing: &[u8],
    cancelled: impl Fn() -> bool,
) -> Result<Vec<Bytes>, TransportError> {
    endpoint.send(outgoing).map_err(io_error)?;
    let deadline = endpoint
        .options
        .wait_for_reply
        .map(|w| (w, Instant::now() + w));
    loop {
        let received = endpoint.receive().map_err(io_error)?;
        if !received.is_empty() {
            return Ok(received.into_iter().map(|r| r.envelope).collect());
        }
        match deadline {
            None => return Ok(Vec::new()),
            Some((wait, deadline)) if Instant::now() >= deadline => {
                return Err(TransportError::Timeout {
                    target: endpoint.paths.inbox.display().to_string(),
                    after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
            }
            Some(_) => std::thread::sleep(endpoint.options.poll_interval),
        }
        if cancelled() {
            // Nobody awaits the replies: leave them in the inbox for the
            // next exchange.
            return Ok(Vec::new());
        }
    }
}

/// Runs `work` off the caller's thread (tokio's blocking pool inside a
/// tokio runtime, else a thread of its own) and awaits its result from
/// any executor. `work` is told when the awaiting future was dropped.
async fn off_thread<T, F>(target: String, work: F) -> Result<T, TransportError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Fn() -> bool) -> Result<T, TransportError> + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let job = move || {
        let result = work(&|| done.is_closed());
        // The caller went away: nobody wants the result.
        let _ = done.send(result);
    };
    let spawned = match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            drop(handle.spawn_blocking(job));
            Ok(())
        }
        Err(_) => std::thread::Builder::new()
            .name("syncplan-folder".into())
            .spawn(job)
            .map(drop),
    };
    spawned.map_err(|source| TransportError::Io {
        context: format!("starting a thread for the folder exchange with {target}"),
        source,
    })?;
    result
        .await
        .unwrap_or(Err(TransportError::Closed { target }))
}

#[async_trait::async_trait]
impl Transport for FolderTransport {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        let endpoint = Arc::clone(&self.endpoint);
        let target = endpoint.paths.inbox.display().to_string();
        off_thread(target, move |cancelled| {
            exchange_blocking(&endpoint, &outgoing, cancelled)
        })
        .await
    }
}

/// What one [`serve_folder`] pass did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Served {
    /// Exports answered with the next packet (or the engine's refusal).
    pub answered: usize,
    /// Files that failed verification: each was moved to the inbox's
    /// `rejected` folder, recorded as a security event and answered with a
    /// refusal asking the node to send again.
    pub rejected: Vec<FileError>,
}

/// The hub's side of folder mode for one node: answers every complete
/// export in the node's folder (as [`crate::answer`] does) with a reply in
/// the node's inbox, and answers a file that fails verification with a
/// refusal asking the node to send again.
pub fn serve_folder<S: Store>(
    engine: &mut Engine<S>,
    endpoint: &FolderEndpoint,
    now: Timestamp,
) -> Result<Served, FileError> {
    let received = endpoint.receive()?;
    let rejected = endpoint.take_rejections();
    for error in &rejected {
        refuse_file(engine, endpoint, error, now)?;
    }
    for export in &received {
        answer_export(engine, endpoint, export, now)?;
    }
    Ok(Served {
        answered: received.len(),
        rejected,
    })
}

/// Logs a refused file and tells the node to send again.
fn refuse_file<S: Store>(
    engine: &mut Engine<S>,
    endpoint: &FolderEndpoint,
    error: &FileError,
    now: Timestamp,
) -> Result<(), FileError> {
    let detail = error.to_string();
    // The refusal is what matters; a store too broken to log it fails the
    // next call anyway.
    let _ = engine.record_security_event(
        Some(endpoint.peer),
        sync_core::SecurityKind::Corrupt,
        detail.clone(),
        now,
    );
    let refusal = SyncError::Peer(sync_core::PeerError::Decode {
        what: "sealed file",
        detail,
    });
    endpoint.send(&engine.error_envelope(&refusal)).map(drop)
}

/// Applies one received export and sends the reply: the next packet, or
/// the engine's refusal (a refusal itself is not answered).
fn answer_export<S: Store>(
    engine: &mut Engine<S>,
    endpoint: &FolderEndpoint,
    export: &Received,
    now: Timestamp,
) -> Result<(), FileError> {
    let reply = match engine.handle_incoming(&export.envelope, now) {
        Ok(incoming) => engine
            .build_packet(incoming.from, now)
            .map(|t| Some(t.bytes)),
        Err(SyncError::Store(e)) => Err(SyncError::Store(e)),
        // A refusal from the node is not answered.
        Err(_) if export.header.kind == FileKind::Refusal => Ok(None),
        Err(refusal) => Ok(Some(engine.error_envelope(&refusal))),
    };
    let reply = reply.map_err(|source| FileError::NotApplied {
        file: endpoint.paths.inbox.join(export.header.file_name()),
        source: Box::new(source),
    })?;
    match reply {
        Some(reply) => endpoint.send(&reply).map(drop),
        None => Ok(()),
    }
}

fn io_error(error: FileError) -> TransportError {
    match error {
        FileError::Io {
            action,
            path,
            source,
        } => TransportError::Io {
            context: format!("trying to {action} {}", path.display()),
            source,
        },
        other => TransportError::Io {
            context: "writing or reading a sealed file".into(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

fn remove_if_present(path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::io("remove", path, e)),
    }
}

fn system_now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_micros(micros)
}
