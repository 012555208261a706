//! Conflicts: detection rule, strategies, and the records every resolution
//! leaves behind (audit, object version history, open manual conflicts).
//!
//! An incoming version conflicts when it is concurrent with the version the
//! receiver holds: neither version's clock ([`crate::clock`]) includes the
//! other's. A late copy of an older version is old news, a version built on
//! the held one applies plainly, and two concurrent deletions merge without a
//! conflict. The entity type's [`ConflictStrategy`] picks
//! the outcome. Every resolution writes an [`AuditRecord`]; with versioning on,
//! each losing version is kept whole as a [`VersionRecord`]. Nothing a node
//! wrote is silently dropped.

pub mod fields;
mod records;
mod strategies;

pub use records::{AuditRecord, ConflictSide, OpenConflict, VersionRecord};
pub use strategies::{ConflictContext, ConflictStrategy, Decision, FieldFallback, Resolver};

pub(crate) use strategies::{keep_both_copy_id, last_writer, merged_version};
