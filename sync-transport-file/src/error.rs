//! Errors: [`FileError`] for every operation, [`FileRejection`] for why a file
//! was refused. Messages name the file and say what to do; none holds key
//! material.

use std::path::PathBuf;

use sync_core::{NodeId, SyncError};

use crate::key::KeyError;

/// Why an export, import, dry run or folder exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file was refused before anything was applied.
    #[error("{}: {reason}", file.display())]
    Rejected {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: FileRejection,
    },
    /// No pair key is installed for the peer.
    #[error(
        "no file key is installed for peer {peer}; install the key handed over with the node's credentials (install_pair_key), or create it at the hub (create_pair_key)"
    )]
    NoPairKey {
        /// The peer.
        peer: NodeId,
    },
    /// Reading or writing a file or folder failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused a verified file's packet (schema, unknown or
    /// revoked sender, clock) or its store failed; nothing of that packet
    /// was applied.
    #[error("{}: the packet in it was not applied: {source}", file.display())]
    NotApplied {
        /// The (first) file of the export.
        file: PathBuf,
        /// What the engine said.
        #[source]
        source: Box<SyncError>,
    },
    /// The engine could not build the packet to export.
    #[error("could not build the packet for {peer}: {source}")]
    Export {
        /// The peer.
        peer: NodeId,
        /// What the engine said.
        #[source]
        source: Box<SyncError>,
    },
    /// A pair key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The system random source failed while sealing; nothing was written.
    #[error("the system random source failed while sealing a file; nothing was written, try again")]
    Random,
    /// The export is too large to split into at most 9,999 parts.
    #[error(
        "the packet is too large for 9,999 parts of at most {max_file_bytes} bytes; raise the part size"
    )]
    TooManyParts {
        /// The configured part size.
        max_file_bytes: u64,
    },
}

impl FileError {
    /// Why the file was refused, when it was.
    pub fn rejection(&self) -> Option<&FileRejection> {
        match self {
            FileError::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn rejected(file: impl Into<PathBuf>, reason: FileRejection) -> FileError {
        FileError::Rejected {
            file: file.into(),
            reason,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        FileError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Why a file was refused. Nothing of a refused file is applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileRejection {
    /// It does not start like a sealed file.
    #[error(
        "it is not a syncplan packet file (it does not start with `SYNCPLAN-FILE`); import only files written by a syncplan export"
    )]
    NotASyncFile,
    /// Another format version.
    #[error(
        "it is written in file format version {found}, and this build reads version {supported}; update syncplan here, or export it again with the version this node runs"
    )]
    UnknownVersion {
        /// The version it names.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// The header cannot be read.
    #[error("its header is damaged ({detail}); ask the sender to export it again")]
    MalformedHeader {
        /// What is wrong.
        detail: String,
    },
    /// The file ends early.
    #[error("{}", truncated_message(*expected, *found))]
    Truncated {
        /// The length its header announces, when the header was readable.
        expected: Option<u64>,
        /// The length found.
        found: u64,
    },
    /// Larger than the configured limit.
    #[error(
        "it holds {size} bytes of packet, over this node's limit of {limit}; raise the limit or export smaller packets"
    )]
    TooLarge {
        /// Size announced.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Addressed to another node.
    #[error(
        "it is addressed to node {recipient}, but this is node {local}; deliver it to its recipient"
    )]
    WrongRecipient {
        /// The recipient it names.
        recipient: NodeId,
        /// This node.
        local: NodeId,
    },
    /// No key is installed for its sender.
    #[error(
        "no file key is installed here for its sender {sender}; install the key handed over with the node's credentials, or check that the file comes from a registered peer"
    )]
    UnknownSender {
        /// The sender it names.
        sender: NodeId,
    },
    /// Sealed with another key.
    #[error(
        "it was sealed with a different key than the one installed here for {sender}; check that the key handed over at registration was installed, or ask the sender to export it again"
    )]
    WrongKey {
        /// The sender it names.
        sender: NodeId,
    },
    /// It fails verification: altered or damaged after it was written.
    #[error(
        "it fails its integrity check ({detail}): it was altered or damaged after it was written; do not use it, copy it again or ask the sender to export again"
    )]
    Tampered {
        /// What failed.
        detail: String,
    },
    /// Parts of a split export are missing.
    #[error("{}", missing_message(missing, *parts))]
    MissingParts {
        /// The missing part numbers.
        missing: Vec<u32>,
        /// How many parts the export has.
        parts: u32,
    },
}

fn missing_message(missing: &[u32], parts: u32) -> String {
    let mut listed: Vec<String> = missing.iter().take(10).map(u32::to_string).collect();
    if missing.len() > listed.len() {
        listed.push(format!("and {} more", missing.len() - listed.len()));
    }
    format!(
        "it is one of {parts} parts and {} of them are missing (part {}); copy every part of the export",
        missing.len(),
        listed.join(", ")
    )
}

fn truncated_message(expected: Option<u64>, found: u64) -> String {
    let length = match expected {
        Some(expected) => format!("it holds {found} of its {expected} bytes"),
        None => format!("it ends inside its header after {found} bytes"),
    };
    format!("it is truncated: {length}; copy it again from its source (it was cut short)")
}
