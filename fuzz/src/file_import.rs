//! Target `file_import`: sealed packet files (`sync-transport-file`) fed
//! arbitrary bytes as files, at a hub that holds node 0's pair key.
//!
//! Input: a flags byte, then up to [`MAX_FILES`] frames in the
//! [`fixup::split_frames`] format. Without [`SEAL`] each frame is written
//! as a file exactly as it is (the header parser, the checks before the
//! key, the seal's tag). With [`SEAL`] each frame is an envelope that the
//! target seals from node 0 for the hub under the pair key (the fuzzer
//! cannot forge the AES-GCM tag), so the fuzzer reaches what lies behind
//! it: decompression, the header cross-check, joining parts, the engine;
//! [`SMALL_FILES`] splits every export into parts of the smallest size,
//! [`REVERSE`] hands the files over in reverse order, [`DROP_LAST`] leaves
//! the last file out (an incomplete export). The files go through
//! `inspect` (each), `dry_run` and `import` (all at once), and the target
//! checks that
//! - none of them panics; a refusal is a `FileError`, never a store failure
//!   (a memory store does not fail);
//! - `dry_run` changes nothing: the hub's entities, pending changes and
//!   packet counters are the same after it;
//! - `dry_run` and `import` verify alike: both refuse the files, or
//!   neither does for a verification reason;
//! - importing holds at most [`ALLOC_SLACK`] bytes plus [`ALLOC_FACTOR`]
//!   times the files and the envelopes they carry (decompressed bodies
//!   included): a header announcing a huge export does not make the hub
//!   reserve it;
//! - the hub stays consistent: a real probe node then syncs with it, as in
//!   `engine_receive`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sync_conformance::fixtures::{hub_info, node_info, t};
use sync_conformance::net::synced_state;
use sync_core::codec::{Limits, sha256};
use sync_core::{Engine, SyncError};
use sync_store_memory::MemoryStore;
use sync_transport_file::{ExportOptions, FileError, FileHeader, MIN_FILE_BYTES, PairKey};

use crate::engine_receive::{ALLOC_SLACK, new_hub, probe_session};
use crate::packet_decode::{ALLOC_FACTOR, decoded_body_len};
use crate::{alloc_track, fixup};

/// Flag: seal each frame (an envelope) into files.
pub const SEAL: u8 = 1;
/// Flag: seal into parts of [`MIN_FILE_BYTES`].
pub const SMALL_FILES: u8 = 2;
/// Flag: hand the files over in reverse order.
pub const REVERSE: u8 = 4;
/// Flag: leave the last file out.
pub const DROP_LAST: u8 = 8;

/// Most frames per input.
pub const MAX_FILES: usize = 4;

/// The pair key of node 0 and the hub: fixed, so seeds are reproducible.
pub fn pair_key() -> PairKey {
    let bytes = [0x3c_u8; 32];
    // The printable form: `sfk1-`, the key in hex, a checksum over
    // "syncplan pair key" and the key (the format `PairKey::parse` reads).
    let mut input = b"syncplan pair key".to_vec();
    input.extend(bytes);
    let check = sha256(&input);
    let printable = format!("sfk1-{}-{}", hex(&bytes), hex(&check[..4]));
    // The text is built in the printable format just above.
    PairKey::parse(&printable).expect("a well-formed printable pair key")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hub every input meets: `engine_receive`'s hub with node 0's pair
/// key installed.
///
/// # Panics
///
/// When a memory store fails (it does not).
pub fn new_file_hub() -> Engine<MemoryStore> {
    let mut hub = new_hub();
    sync_transport_file::install_pair_key(&mut hub, node_info(0).id, &pair_key())
        .expect("install the pair key");
    hub
}

/// Seals `envelope` from node 0 for the hub, as node 0's export does.
///
/// # Panics
///
/// When the system's random source fails.
pub fn seal(envelope: &[u8], small: bool) -> Vec<(String, Vec<u8>)> {
    let mut options = ExportOptions::default();
    if small {
        options = options.max_file_bytes(MIN_FILE_BYTES);
    }
    match sync_transport_file::seal_envelope(
        envelope,
        node_info(0).id,
        hub_info().id,
        &pair_key(),
        &options,
        t(10),
    ) {
        Ok(files) => files
            .into_iter()
            .map(|f| (f.header.file_name(), f.bytes))
            .collect(),
        // Too many parts for the smallest files: nothing to hand over.
        Err(FileError::TooManyParts { .. }) => Vec::new(),
        Err(e) => panic!("sealing failed: {e}"),
    }
}

/// A fresh directory of this process for one input's files.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("syncplan-fuzz-file-{}-{n}", std::process::id()));
        // A leftover of a crashed run under the same pid is replaced.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Files by name and bytes.
type Files = Vec<(String, Vec<u8>)>;

/// Per peer: pending changes, packets sent and received, sequence acked.
type PeerCounters = (u64, u64, u64, u64);

/// The files of one input: names and bytes, in hand-over order, and the
/// bytes the allocation bound allows for beyond the files themselves.
fn files_of(data: &[u8]) -> Option<(Files, usize)> {
    let (&flags, rest) = data.split_first()?;
    let limits = Limits::default();
    let mut files = Vec::new();
    let mut carried = 0;
    for (i, frame) in fixup::split_frames(rest, MAX_FILES).into_iter().enumerate() {
        if flags & SEAL != 0 {
            carried += frame.len() + decoded_body_len(frame, &limits);
            files.extend(seal(frame, flags & SMALL_FILES != 0));
        } else {
            files.push((format!("raw-{i}.syncplan"), frame.to_vec()));
        }
    }
    if flags & REVERSE != 0 {
        files.reverse();
    }
    if flags & DROP_LAST != 0 {
        files.pop();
    }
    Some((files, carried))
}

/// Runs one input; panics on a failed check.
pub fn run(data: &[u8]) {
    let Some((files, carried)) = files_of(data) else {
        return;
    };
    let dir = Dir::new();
    let mut paths = Vec::new();
    let mut total = 0;
    for (i, (name, bytes)) in files.iter().enumerate() {
        // Two exports may share a name only if equal: keep both anyway.
        let path = dir.0.join(format!("{i:02}-{name}"));
        std::fs::write(&path, bytes).expect("write a temporary file");
        total += bytes.len();
        paths.push(path);
    }
    let mut hub = new_file_hub();
    for path in &paths {
        let _ = sync_transport_file::inspect(path);
    }
    let now = t(20);
    let before = hub_state(&mut hub);
    let preview = sync_transport_file::dry_run(&mut hub, &paths, now);
    assert!(
        hub_state(&mut hub) == before,
        "dry_run changed the hub's store"
    );
    let (imported, peak) =
        alloc_track::peak_during(|| sync_transport_file::import(&mut hub, &paths, now));
    let allowed = ALLOC_SLACK + ALLOC_FACTOR * (total + carried);
    assert!(
        peak <= allowed,
        "importing {} files ({total} bytes) held {peak} bytes at its peak, over the bound of {allowed}",
        paths.len()
    );
    check_store_errors(&preview.as_ref().err(), "dry_run");
    check_store_errors(&imported.as_ref().err(), "import");
    let refused = |e: &FileError| e.rejection().is_some();
    assert_eq!(
        preview.as_ref().err().is_some_and(refused),
        imported.as_ref().err().is_some_and(refused),
        "dry_run and import disagree on verifying the files: {:?} / {:?}",
        preview.as_ref().err(),
        imported.as_ref().err()
    );
    sync_conformance::net::drain(&mut hub);
    probe_session(&mut hub);
}

/// A store failure is a finding on a memory store.
fn check_store_errors(error: &Option<&FileError>, what: &str) {
    let Some(error) = error else { return };
    if let FileError::NotApplied { source, .. } = error {
        assert!(
            !matches!(**source, SyncError::Store(_)),
            "{what} failed in the hub's memory store: {error}"
        );
    }
}

/// What `dry_run` must leave alone: entities (by content), pending changes
/// and packet counters per peer.
fn hub_state(hub: &mut Engine<MemoryStore>) -> (Vec<[u8; 32]>, Vec<PeerCounters>) {
    let entities = synced_state(hub)
        .expect("read hub")
        .iter()
        .map(|e| e.content_digest())
        .collect();
    let mut peers = Vec::new();
    for info in [node_info(0), crate::engine_receive::probe_info()] {
        let pending = hub.pending_count(info.id).expect("pending");
        let p = hub.peer(info.id).expect("peer");
        peers.push((pending, p.sent_packet_no, p.received_packet_no, p.acked_seq));
    }
    (entities, peers)
}

/// Whether two `file_import` seeds are the same but for what sealing draws
/// at random (nonces, export ids, hence the sealed bytes): the same flags
/// and the same frames, or frames that open at the hub, as files, to the
/// same exports (headers with nonce and export id aside, envelopes). The
/// generator's raw files are real sealed files, different on every run.
pub fn same_seed(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (Some((fa, ra)), Some((fb, rb))) = (a.split_first(), b.split_first()) else {
        return false;
    };
    let (frames_a, frames_b) = (
        fixup::split_frames(ra, MAX_FILES),
        fixup::split_frames(rb, MAX_FILES),
    );
    fa == fb
        && frames_a.len() == frames_b.len()
        && opened(&frames_a).is_some_and(|o| opened(&frames_b) == Some(o))
}

/// The exports `files` open to at the hub (headers with nonce and export
/// id zeroed, envelopes), when they all open.
fn opened(files: &[&[u8]]) -> Option<Vec<(FileHeader, Vec<u8>)>> {
    let dir = Dir::new();
    let mut paths = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let path = dir.0.join(format!("{i:02}.syncplan"));
        std::fs::write(&path, file).ok()?;
        paths.push(path);
    }
    let mut hub = new_file_hub();
    let exports = sync_transport_file::open_files(&mut hub, &paths).ok()?;
    Some(
        exports
            .into_iter()
            .map(|mut export| {
                export.header.nonce = Default::default();
                export.header.export_id = [0; 16];
                (export.header, export.envelope.to_vec())
            })
            .collect(),
    )
}

/// Joins files into the frames of a seed (the generator's helper).
pub fn frame_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = files.iter().map(|(_, b)| b.clone()).collect();
    fixup::join_frames(&bytes)
}
