//! Export: the next packet for a peer, sealed into one file (or numbered
//! parts), written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use sync_core::{Engine, NodeId, Selection, Store, Timestamp};

use crate::error::FileError;
use crate::format::{FILE_EXTENSION, FileHeader};
use crate::key::{PairKey, encode_hex, pair_key};
use crate::seal::{MIN_FILE_BYTES, SealFailure, SealRequest, SealedFile, seal};

/// How files are written. `ExportOptions::default()` writes files of up to
/// 64 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Largest file written, in bytes (default 64 MiB, at least 2,048): a
    /// packet whose sealed form is larger is split into numbered parts.
    pub max_file_bytes: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            max_file_bytes: 64 << 20,
        }
    }
}

impl ExportOptions {
    /// Sets the largest file written (at least 2,048 bytes).
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(MIN_FILE_BYTES);
        self
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exported {
    /// The files, in part order (one unless the packet was split).
    pub files: Vec<PathBuf>,
    /// The first file's header.
    pub header: FileHeader,
    /// More changes are pending than one packet holds: import the peer's
    /// reply (which acknowledges this one) and export again.
    pub more: bool,
}

/// Exports the next packet for `peer` into `dir` (created if missing): its
/// acknowledgement of the peer's last packet and the batch of changes
/// pending for it, sealed with the pair key.
///
/// Exported changes stay pending until a packet from the peer acknowledges
/// this one, as over the network: exporting again before that resends
/// them in a new packet. A packet holds at most the engine's batch
/// ([`sync_core::EngineConfig::batch`]); [`Exported::more`] says when more
/// is waiting.
///
/// Every pending change goes into the packet (up to the batch); to export
/// only some entity types, or only changes since a time, use
/// [`export_selected`].
///
/// The key is checked before the packet is built, so a missing key
/// ([`FileError::NoPairKey`]) leaves the engine untouched. A failed write
/// leaves no file under a final name; the packet's number is then used up
/// and the next export carries the same changes under the next number.
pub fn export<S: Store>(
    engine: &mut Engine<S>,
    peer: NodeId,
    dir: &Path,
    options: &ExportOptions,
    now: Timestamp,
) -> Result<Exported, FileError> {
    export_selected(engine, peer, dir, options, &Selection::all(), now)
}

/// [`export`] of only the pending changes `selection` picks (some entity
/// types, changes stored since a time: [`Selection`]). The file holds
/// every selected change (up to the batch) and nothing else; the
/// unselected ones stay pending, and the packet is recorded as covering
/// only the changes before the first one it skipped, so its
/// acknowledgement never acknowledges a change it did not carry
/// ([`Engine::build_packet_with`]).
pub fn export_selected<S: Store>(
    engine: &mut Engine<S>,
    peer: NodeId,
    dir: &Path,
    options: &ExportOptions,
    selection: &Selection,
    now: Timestamp,
) -> Result<Exported, FileError> {
    let key = pair_key(engine, peer)?.ok_or(FileError::NoPairKey { peer })?;
    fs::create_dir_all(dir).map_err(|e| FileError::io("create the folder", dir, e))?;
    let transmit = engine
        .build_packet_with(peer, now, selection)
        .map_err(|source| FileError::Export {
            peer,
            source: Box::new(source),
        })?;
    let sender = engine.local_node().id;
    let request = SealRequest {
        envelope: &transmit.bytes,
        sender,
        recipient: peer,
        key: &key,
        max_file_bytes: options.max_file_bytes,
        created: now,
    };
    let files = seal_files(&request)?;
    let header = files[0].header.clone();
    let paths = write_files(dir, &files)?;
    Ok(Exported {
        files: paths,
        header,
        more: transmit.more,
    })
}

/// Seals envelope bytes from `sender` for `recipient` into files without
/// writing them (the engine-free half of [`export`], for transports and
/// tools that already hold a packet).
pub fn seal_envelope(
    envelope: &[u8],
    sender: NodeId,
    recipient: NodeId,
    key: &PairKey,
    options: &ExportOptions,
    created: Timestamp,
) -> Result<Vec<SealedFile>, FileError> {
    seal_files(&SealRequest {
        envelope,
        sender,
        recipient,
        key,
        max_file_bytes: options.max_file_bytes,
        created,
    })
}

fn seal_files(request: &SealRequest<'_>) -> Result<Vec<SealedFile>, FileError> {
    seal(request).map_err(|failure| match failure {
        SealFailure::TooManyParts => FileError::TooManyParts {
            max_file_bytes: request.max_file_bytes,
        },
        SealFailure::Random => FileError::Random,
    })
}

/// Writes sealed files into `dir`, each atomically ([`write_atomic`]), in
/// part order; returns their paths.
pub fn write_files(dir: &Path, files: &[SealedFile]) -> Result<Vec<PathBuf>, FileError> {
    files
        .iter()
        .map(|file| write_atomic(dir, &file.header.file_name(), &file.bytes))
        .collect()
}

/// Writes `bytes` to `dir/name` so that a crash never leaves a partial file
/// under that name: a temporary file in the same folder (named
/// `.<name>.<random>.tmp`, which readers skip), written and fsynced, renamed
/// to `name`, then the folder fsynced so the rename itself is durable.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, FileError> {
    let target = dir.join(name);
    let temp = dir.join(temp_name(name)?);
    let written = write_synced(&temp, bytes)
        .map_err(|e| FileError::io("write the temporary file", &temp, e))
        .and_then(|()| {
            fs::rename(&temp, &target).map_err(|e| FileError::io("rename into place", &target, e))
        });
    if let Err(error) = written {
        // Best effort: the temporary file is skipped by readers anyway.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    sync_dir(dir)?;
    Ok(target)
}

/// Removes temporary files that an interrupted export left in `dir`;
/// returns how many. Run it only while no export writes into `dir`.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize, FileError> {
    let entries = fs::read_dir(dir).map_err(|e| FileError::io("list", dir, e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| FileError::io("list", dir, e))?;
        let name = entry.file_name();
        if is_temp_name(&name.to_string_lossy()) {
            fs::remove_file(entry.path()).map_err(|e| FileError::io("remove", entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a file name is one of [`write_atomic`]'s temporary files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Whether a file name is a sealed file's final name.
pub(crate) fn is_final_name(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(&format!(".{FILE_EXTENSION}"))
}

fn temp_name(name: &str) -> Result<String, FileError> {
    let mut salt = [0u8; 8];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| FileError::Random)?;
    Ok(format!(".{name}.{}.tmp", encode_hex(&salt)))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::io("sync the folder", dir, e))
}
