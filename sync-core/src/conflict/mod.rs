//! Conflicts: detection rule, strategies, and the records every resolution
//! leaves behind (audit, object version history, open manual conflicts).
//!
//! An incoming change from peer P conflicts when the receiver holds a version
//! of the same entity that is still pending for P (P has not acknowledged it)
//! and the two versions differ. The entity type's [`ConflictStrategy`] picks
//! the outcome. Every resolution writes an [`AuditRecord`]; with versioning on,
//! each losing version is kept whole as a [`VersionRecord`]. Nothing a node
//! wrote is silently dropped.

mod records;
mod strategies;

pub use records::{AuditRecord, ConflictSide, OpenConflict, VersionRecord};
pub use strategies::{ConflictContext, ConflictStrategy, Decision, Resolver};

pub(crate) use strategies::{Plan, keep_both_copy_id, plan};
