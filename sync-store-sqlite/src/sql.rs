//! Small conversions shared by every module: ids and times to and from SQL
//! values, and reading errors.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use sync_core::{NodeId, StoreError, Timestamp, Uuid};

/// A 16-byte UUID column value.
pub(crate) struct UuidCol(pub Uuid);

impl FromSql for UuidCol {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Blob(b) => Uuid::from_slice(b)
                .map(UuidCol)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .ok()
                .and_then(|s| Uuid::parse_str(s).ok())
                .map(UuidCol)
                .ok_or(FromSqlError::InvalidType),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// Reads a UUID column.
pub(crate) fn uuid_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    Ok(row.get::<_, UuidCol>(i)?.0)
}

/// Reads a node id column.
pub(crate) fn node_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<NodeId> {
    uuid_at(row, i).map(NodeId)
}

/// Reads a nullable node id column.
pub(crate) fn opt_node_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<NodeId>> {
    Ok(row.get::<_, Option<UuidCol>>(i)?.map(|u| NodeId(u.0)))
}

/// Reads a timestamp column (microseconds).
pub(crate) fn time_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(i).map(Timestamp::from_micros)
}

/// Reads a sequence or packet number column.
pub(crate) fn u64_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    row.get::<_, i64>(i).map(|v| v as u64)
}

/// A sequence or packet number as SQLite stores it (bit for bit, so that
/// every `u64` round-trips).
pub(crate) fn n(v: u64) -> i64 {
    v as i64
}

/// A sequence bound for comparisons in SQL (saturating: sequences this
/// store assigns never reach 2^63).
pub(crate) fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reading failed: conversion failures mean the stored data is damaged;
/// anything else is the backend.
pub(crate) fn read_error(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt {
            detail: format!("a value read while {context} has the wrong type or size ({e})"),
        },
        other => StoreError::backend(context.to_owned(), other),
    }
}
