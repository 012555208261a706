//! Import: read and verify every file before the store is touched, join
//! parts, then hand each packet to the engine in packet order (one store
//! transaction per packet).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sync_core::codec::Limits;
use sync_core::{Engine, NodeId, SecurityKind, Store, SyncError, Timestamp};

use crate::error::{FileError, FileRejection};
use crate::export::{ExportOptions, seal_envelope, write_files};
use crate::format::{FileHeader, FileKind};
use crate::key::{PairKey, pair_key};
use crate::seal::{self, HEADER_ROOM, OpenedPart};

/// One complete, verified export: its header, its files and the packet
/// (envelope bytes) it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The header (of part 1).
    pub header: FileHeader,
    /// Its files, in part order.
    pub files: Vec<PathBuf>,
    /// The envelope, exactly as the sender's engine encoded it.
    pub envelope: Bytes,
}

/// What importing one export did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// The header (of part 1).
    pub header: FileHeader,
    /// Its files, in part order.
    pub files: Vec<PathBuf>,
    /// Applied before (its number is not above the last one received):
    /// nothing changed; the next packet to the sender acknowledges it again.
    pub duplicate: bool,
    /// Changes applied.
    pub applied: usize,
    /// Conflicts resolved or queued for a person.
    pub conflicts: usize,
    /// Children parked until their parent arrives.
    pub parked: usize,
    /// Versions this store refused, kept as rejected changes (the rest of
    /// the packet applied; see [`sync_core::rejected`]).
    pub rejected: usize,
    /// The sender has more for this node.
    pub more: bool,
    /// One side was found restored from an older copy of its store and the
    /// pair was re-initialized.
    pub reinitialized: bool,
}

/// What [`answer`] did with one export.
#[derive(Debug)]
#[non_exhaustive]
pub struct Answer {
    /// The export that was answered.
    pub header: FileHeader,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// What importing it did, when the engine accepted it.
    pub imported: Option<Imported>,
    /// Why the engine refused it (the reply then tells the sender).
    pub refusal: Option<SyncError>,
    /// The reply files written.
    pub reply_files: Vec<PathBuf>,
}

/// Reads and verifies `files` for this engine without changing anything:
/// format, recipient, the sender's pair key, integrity, and that split
/// exports are complete. Returns each export once, in packet order.
///
/// Every file must pass; the first that does not is returned as
/// [`FileError::Rejected`] naming the file and the reason.
pub fn open_files<S: Store>(
    engine: &mut Engine<S>,
    files: &[PathBuf],
) -> Result<Vec<Opened>, FileError> {
    let local = engine.local_node().id;
    let limits = engine.config().limits;
    let mut keys: BTreeMap<NodeId, Option<PairKey>> = BTreeMap::new();
    let mut key_for = |sender: NodeId| -> Result<Option<PairKey>, FileError> {
        if let Some(key) = keys.get(&sender) {
            return Ok(key.clone());
        }
        let key = pair_key(engine, sender)?;
        keys.insert(sender, key.clone());
        Ok(key)
    };
    let mut parts = Vec::with_capacity(files.len());
    for path in files {
        let bytes = read_file(path, &limits)?;
        parts.push((
            path.clone(),
            open_one(path, &bytes, local, &mut key_for, &limits)?,
        ));
    }
    assemble_all(parts)
}

/// Imports `files`: verifies all of them first ([`open_files`]; if one
/// fails nothing is applied), then applies each export in packet order, each
/// in one store transaction. A duplicate or older packet changes nothing and
/// is acknowledged again by the next packet to its sender.
///
/// A file that fails verification is recorded as a security event. When
/// the engine refuses a verified packet (schema, revoked sender, clock) the
/// error names its file; exports before it in packet order stay applied.
pub fn import<S: Store>(
    engine: &mut Engine<S>,
    files: &[PathBuf],
    now: Timestamp,
) -> Result<Vec<Imported>, FileError> {
    let opened = verified(engine, files, now)?;
    let mut out = Vec::with_capacity(opened.len());
    for export in opened {
        let incoming = engine
            .handle_incoming(&export.envelope, now)
            .map_err(|source| FileError::NotApplied {
                file: export.files[0].clone(),
                source: Box::new(source),
            })?;
        out.push(imported(export, &incoming));
    }
    Ok(out)
}

/// Imports `files` like [`import`] and answers each export with a sealed
/// reply file in `reply_dir`: the next packet for its sender (which
/// acknowledges it and carries what is pending for the sender), or, when
/// the engine refused the packet, a refusal telling the sender why. This
/// is the hub's side of a file exchange.
///
/// Verification failures and store failures are returned as errors; a
/// refused packet is reported in [`Answer::refusal`].
pub fn answer<S: Store>(
    engine: &mut Engine<S>,
    files: &[PathBuf],
    reply_dir: &Path,
    options: &ExportOptions,
    now: Timestamp,
) -> Result<Vec<Answer>, FileError> {
    let opened = verified(engine, files, now)?;
    fs::create_dir_all(reply_dir).map_err(|e| FileError::io("create the folder", reply_dir, e))?;
    let mut out = Vec::with_capacity(opened.len());
    for export in opened {
        let (imported, refusal, reply) = respond(engine, &export, now)?;
        let reply_files = match reply {
            Some(reply) => {
                let sender = export.header.sender;
                let key = pair_key(engine, sender)?.ok_or(FileError::NoPairKey { peer: sender })?;
                let local = engine.local_node().id;
                let sealed = seal_envelope(&reply, local, sender, &key, options, now)?;
                write_files(reply_dir, &sealed)?
            }
            None => Vec::new(),
        };
        out.push(Answer {
            header: export.header,
            files: export.files,
            imported,
            refusal,
            reply_files,
        });
    }
    Ok(out)
}

/// What answering one export produced: the import, the engine's refusal,
/// and the reply to send (none to a refusal: refusals are not answered).
type Response = (Option<Imported>, Option<SyncError>, Option<Bytes>);

/// Hands one export to the engine and builds the reply.
fn respond<S: Store>(
    engine: &mut Engine<S>,
    export: &Opened,
    now: Timestamp,
) -> Result<Response, FileError> {
    let not_applied = |source| FileError::NotApplied {
        file: export.files[0].clone(),
        source: Box::new(source),
    };
    match engine.handle_incoming(&export.envelope, now) {
        Ok(incoming) => {
            let reply = engine
                .build_packet(export.header.sender, now)
                .map_err(not_applied)?;
            let imported = imported(export.clone(), &incoming);
            Ok((Some(imported), None, Some(reply.bytes)))
        }
        Err(SyncError::Store(e)) => Err(not_applied(SyncError::Store(e))),
        Err(refusal) if export.header.kind == FileKind::Refusal => Ok((None, Some(refusal), None)),
        Err(refusal) => {
            let reply = engine.error_envelope(&refusal);
            Ok((None, Some(refusal), Some(reply)))
        }
    }
}

/// Verifies one file on its own (format, recipient, the sender's key,
/// integrity) without joining it to the other parts of its export or
/// changing anything; returns its authenticated header.
pub fn verify_file<S: Store>(engine: &mut Engine<S>, path: &Path) -> Result<FileHeader, FileError> {
    let local = engine.local_node().id;
    let limits = engine.config().limits;
    let bytes = read_file(path, &limits)?;
    let mut key_for = |sender: NodeId| pair_key(engine, sender).map_err(FileError::from);
    open_one(path, &bytes, local, &mut key_for, &limits).map(|part| part.header)
}

/// Reads only the readable header of a file (no key needed, nothing
/// verified: the header is authenticated when the file is opened).
pub fn inspect(path: &Path) -> Result<FileHeader, FileError> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(|e| FileError::io("open", path, e))?;
    let mut start = Vec::with_capacity(crate::format::MAX_HEADER_BYTES);
    file.take(crate::format::MAX_HEADER_BYTES as u64)
        .read_to_end(&mut start)
        .map_err(|e| FileError::io("read", path, e))?;
    seal::read_header(&start)
        .map(|(header, _)| header)
        .map_err(|reason| FileError::rejected(path, reason))
}

/// [`open_files`], recording a refused file as a security event.
fn verified<S: Store>(
    engine: &mut Engine<S>,
    files: &[PathBuf],
    now: Timestamp,
) -> Result<Vec<Opened>, FileError> {
    open_files(engine, files).inspect_err(|error| record_rejection(engine, error, now))
}

fn record_rejection<S: Store>(engine: &mut Engine<S>, error: &FileError, now: Timestamp) {
    let Some(reason) = error.rejection() else {
        return;
    };
    let (kind, peer) = match reason {
        FileRejection::WrongRecipient { .. } => (SecurityKind::WrongRecipient, None),
        FileRejection::UnknownSender { sender } => (SecurityKind::UnknownSender, Some(*sender)),
        FileRejection::WrongKey { sender } => (SecurityKind::AuthFailed, Some(*sender)),
        FileRejection::MissingParts { .. } => return,
        _ => (SecurityKind::Corrupt, None),
    };
    // The refusal is what the caller needs; a store too broken to log it
    // fails the caller's next call anyway.
    let _ = engine.record_security_event(peer, kind, error.to_string(), now);
}

fn imported(export: Opened, incoming: &sync_core::Incoming) -> Imported {
    Imported {
        header: export.header,
        files: export.files,
        duplicate: incoming.duplicate,
        applied: incoming.applied,
        conflicts: incoming.conflicts,
        parked: incoming.parked,
        rejected: incoming.rejected,
        more: incoming.more,
        reinitialized: incoming.reinitialized,
    }
}

/// Reads a whole file, refusing one larger than any valid part can be.
pub(crate) fn read_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, FileError> {
    let len = fs::metadata(path)
        .map_err(|e| FileError::io("read", path, e))?
        .len();
    let limit = limits.max_envelope_bytes.saturating_add(HEADER_ROOM + 64);
    if len > limit {
        return Err(FileError::rejected(
            path,
            FileRejection::TooLarge { size: len, limit },
        ));
    }
    fs::read(path).map_err(|e| FileError::io("read", path, e))
}

/// Verifies one file's bytes: checks that need no key, then the sender's
/// key, then the seal.
pub(crate) fn open_one(
    path: &Path,
    bytes: &[u8],
    local: NodeId,
    key_for: &mut dyn FnMut(NodeId) -> Result<Option<PairKey>, FileError>,
    limits: &Limits,
) -> Result<OpenedPart, FileError> {
    let reject = |reason| FileError::rejected(path, reason);
    let (header, _) = seal::check_unsealed(bytes, local, limits).map_err(reject)?;
    let key = key_for(header.sender)?.ok_or_else(|| {
        reject(FileRejection::UnknownSender {
            sender: header.sender,
        })
    })?;
    seal::open_part(bytes, local, &key, limits).map_err(reject)
}

/// Groups verified parts by export, joins each export and sorts them in
/// packet order; the first export that does not join is the error.
pub(crate) fn assemble_all(parts: Vec<(PathBuf, OpenedPart)>) -> Result<Vec<Opened>, FileError> {
    let mut out = assemble_groups(parts)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|broken| broken.1)?;
    out.sort_by_key(|o| (o.header.packet_no, o.header.created, o.header.export_id));
    Ok(out)
}

/// An export whose parts do not join: its files and why.
pub(crate) type Broken = (Vec<PathBuf>, FileError);

/// Groups verified parts by export and joins each one: the export, or its
/// files and why it does not join.
pub(crate) fn assemble_groups(
    parts: Vec<(PathBuf, OpenedPart)>,
) -> Vec<Result<Opened, Box<Broken>>> {
    let mut groups: BTreeMap<[u8; 16], Vec<(PathBuf, OpenedPart)>> = BTreeMap::new();
    for (path, part) in parts {
        let group = groups.entry(part.header.export_id).or_default();
        // A second copy of a part already read (the same file given twice,
        // or copied twice) is authentic too: keep one.
        if !group.iter().any(|(_, p)| p.header.part == part.header.part) {
            group.push((path, part));
        }
    }
    groups
        .into_values()
        .map(|mut group| {
            group.sort_by_key(|(_, p)| p.header.part);
            let files: Vec<PathBuf> = group.iter().map(|(path, _)| path.clone()).collect();
            match seal::assemble(group.into_iter().map(|(_, p)| p).collect()) {
                Ok((header, envelope)) => Ok(Opened {
                    header,
                    files,
                    envelope,
                }),
                Err(reason) => {
                    let error = FileError::rejected(files[0].clone(), reason);
                    Err(Box::new((files, error)))
                }
            }
        })
        .collect()
}
