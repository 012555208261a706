//! The node registry: this node (`_sync_local`), its peers with their
//! counters (`_sync_nodes`) and their unacknowledged packets
//! (`_sync_in_flight`).

use rusqlite::{Connection, OptionalExtension, params};
use sync_core::node_registry::{GapCheck, SentDigest};
use sync_core::{InFlight, NodeId, NodeInfo, PeerState, Role, StoreError};

use crate::sql::{n, node_at, opt_node_at, read_error, u64_at};

const PEER_COLUMNS: &str = "id, code, name, role, revoked, sent_packet_no, received_packet_no,
    received_digest, peer_ack_high, acked_seq, resend_own_upto, resync_requested, last_sync_in,
    last_sync_out, schema_version, gap_packet_no, gap_digest, gap_announced_in";

pub(crate) fn local_node(conn: &Connection) -> Result<Option<NodeInfo>, StoreError> {
    conn.prepare_cached("SELECT id, code, name, role, writer FROM _sync_local WHERE slot = 1")
        .and_then(|mut s| {
            s.query_row([], |r| {
                let mut info = NodeInfo::new(
                    node_at(r, 0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    role_from(&r.get::<_, String>(3)?),
                );
                if let Some(writer) = opt_node_at(r, 4)? {
                    info.writer = writer;
                }
                Ok(info)
            })
            .optional()
        })
        .map_err(read_error("reading the local node"))
}

pub(crate) fn set_local_node(conn: &Connection, node: &NodeInfo) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO _sync_local(slot, id, code, name, role, writer) VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(slot) DO UPDATE SET id = excluded.id, code = excluded.code,
             name = excluded.name, role = excluded.role, writer = excluded.writer",
    )?
    .execute(params![
        node.id.as_bytes(),
        node.code,
        node.name,
        role_name(node.role),
        node.writer.as_bytes()
    ])
    .map(drop)
}

pub(crate) fn peer(conn: &Connection, id: NodeId) -> Result<Option<PeerState>, StoreError> {
    let sql = format!("SELECT {PEER_COLUMNS} FROM _sync_nodes WHERE id = ?1");
    let peer = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row([id.as_bytes()], peer_row).optional())
        .map_err(read_error("reading a peer"))?;
    peer.map(|p| with_in_flight(conn, p)).transpose()
}

pub(crate) fn peers(conn: &Connection) -> Result<Vec<PeerState>, StoreError> {
    let sql = format!("SELECT {PEER_COLUMNS} FROM _sync_nodes ORDER BY id");
    let peers = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_map([], peer_row)?.collect::<Result<Vec<_>, _>>())
        .map_err(read_error("reading the peers"))?;
    peers.into_iter().map(|p| with_in_flight(conn, p)).collect()
}

pub(crate) fn put_peer(conn: &Connection, p: &PeerState) -> rusqlite::Result<()> {
    // Destructured so that a field added to `PeerState` fails to compile here
    // instead of silently not being persisted.
    let PeerState {
        info,
        revoked,
        sent_packet_no,
        received_packet_no,
        received_digest,
        peer_ack_high,
        acked_seq,
        resend_own_upto,
        in_flight,
        sent_digests,
        gap_check,
        resync_requested,
        last_sync_in,
        last_sync_out,
        schema_version,
    } = p;
    let sql = format!(
        "INSERT OR REPLACE INTO _sync_nodes({PEER_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    );
    conn.prepare_cached(&sql)?.execute(params![
        info.id.as_bytes(),
        info.code,
        info.name,
        role_name(info.role),
        revoked,
        n(*sent_packet_no),
        n(*received_packet_no),
        &received_digest[..],
        n(*peer_ack_high),
        n(*acked_seq),
        n(*resend_own_upto),
        resync_requested,
        last_sync_in.map(|t| t.as_micros()),
        last_sync_out.map(|t| t.as_micros()),
        schema_version,
        gap_check.map(|g| n(g.packet_no)),
        gap_check.map(|g| g.digest.to_vec()),
        gap_check.map(|g| n(g.announced_in)),
    ])?;
    let node = info.id.as_bytes();
    let stored: Vec<(i64, SentDigest)> = conn
        .prepare_cached(
            "SELECT position, packet_no, digest FROM _sync_sent_digests
             WHERE node_id = ?1 ORDER BY position",
        )?
        .query_map([node], |r| {
            Ok((
                r.get(0)?,
                SentDigest {
                    packet_no: u64_at(r, 1)?,
                    digest: hash_at(r, 2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let plan = Rewrite::plan(&stored, sent_digests, |d| d.packet_no);
    plan.delete(conn, "_sync_sent_digests", node)?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO _sync_sent_digests(node_id, position, packet_no, digest) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (position, sent) in plan.insert {
        let SentDigest { packet_no, digest } = sent;
        insert.execute(params![node, position, n(*packet_no), &digest[..]])?;
    }
    let stored: Vec<(i64, InFlight)> = conn
        .prepare_cached(
            "SELECT position, packet_no, upto_seq, digest, resync FROM _sync_in_flight
             WHERE node_id = ?1 ORDER BY position",
        )?
        .query_map([node], |r| {
            Ok((
                r.get(0)?,
                InFlight {
                    packet_no: u64_at(r, 1)?,
                    upto_seq: u64_at(r, 2)?,
                    digest: hash_at(r, 3)?,
                    resync: r.get(4)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let plan = Rewrite::plan(&stored, in_flight, |f| f.packet_no);
    plan.delete(conn, "_sync_in_flight", node)?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO _sync_in_flight(node_id, position, packet_no, upto_seq, digest, resync)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (position, flight) in plan.insert {
        let InFlight {
            packet_no,
            upto_seq,
            digest,
            resync,
        } = flight;
        insert.execute(params![
            node,
            position,
            n(*packet_no),
            n(*upto_seq),
            &digest[..],
            resync
        ])?;
    }
    Ok(())
}

/// The row writes that turn a peer's stored list (sent digests, packets in
/// flight) into its new value. The lists change at their ends only (new
/// packets appended, acknowledged or old ones dropped from the front), so an
/// exchange usually deletes a row or two and inserts one instead of
/// rewriting every row: rows that stay keep their position and new ones are
/// numbered by their packet number, above every kept position, which keeps
/// `ORDER BY position` in list order. Any other change rewrites the list.
struct Rewrite<'a, E> {
    /// Positions to delete (`None`: every row of the node).
    delete: Option<Vec<i64>>,
    /// Rows to insert, with their positions.
    insert: Vec<(i64, &'a E)>,
}

impl<'a, E: PartialEq> Rewrite<'a, E> {
    fn plan(stored: &[(i64, E)], new: &'a [E], packet_no: impl Fn(&E) -> u64) -> Self {
        let mut delete = Vec::new();
        let mut kept = 0;
        for (position, entry) in stored {
            if new.get(kept) == Some(entry) {
                kept += 1;
            } else {
                delete.push(*position);
            }
        }
        let mut floor = stored
            .iter()
            .filter(|(p, _)| !delete.contains(p))
            .map(|(p, _)| *p)
            .max();
        let mut insert = Vec::new();
        for entry in &new[kept..] {
            let position = i64::try_from(packet_no(entry)).unwrap_or(i64::MAX);
            if floor.is_some_and(|f| position <= f) {
                return Rewrite {
                    delete: None,
                    insert: (0..).zip(new).collect(),
                };
            }
            floor = Some(position);
            insert.push((position, entry));
        }
        Rewrite {
            delete: Some(delete),
            insert,
        }
    }

    fn delete(&self, conn: &Connection, table: &str, node: &[u8]) -> rusqlite::Result<()> {
        match &self.delete {
            None => conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE node_id = ?1"))?
                .execute([node])
                .map(drop),
            Some(positions) => {
                let mut delete = conn.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE node_id = ?1 AND position = ?2"
                ))?;
                for position in positions {
                    delete.execute(params![node, position])?;
                }
                Ok(())
            }
        }
    }
}

fn with_in_flight(conn: &Connection, mut peer: PeerState) -> Result<PeerState, StoreError> {
    peer.sent_digests = conn
        .prepare_cached(
            "SELECT packet_no, digest FROM _sync_sent_digests WHERE node_id = ?1 ORDER BY position",
        )
        .and_then(|mut s| {
            s.query_map([peer.id().as_bytes()], |r| {
                Ok(SentDigest {
                    packet_no: u64_at(r, 0)?,
                    digest: hash_at(r, 1)?,
                })
            })?
            .collect()
        })
        .map_err(read_error("reading sent packet digests"))?;
    peer.in_flight = conn
        .prepare_cached(
            "SELECT packet_no, upto_seq, digest, resync FROM _sync_in_flight
             WHERE node_id = ?1 ORDER BY position",
        )
        .and_then(|mut s| {
            s.query_map([peer.id().as_bytes()], |r| {
                Ok(InFlight {
                    packet_no: u64_at(r, 0)?,
                    upto_seq: u64_at(r, 1)?,
                    digest: hash_at(r, 2)?,
                    resync: r.get(3)?,
                })
            })?
            .collect()
        })
        .map_err(read_error("reading packets in flight"))?;
    Ok(peer)
}

fn peer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PeerState> {
    let info = NodeInfo::new(
        node_at(r, 0)?,
        r.get::<_, String>(1)?,
        r.get::<_, String>(2)?,
        role_from(&r.get::<_, String>(3)?),
    );
    let mut peer = PeerState::new(info);
    peer.revoked = r.get(4)?;
    peer.sent_packet_no = u64_at(r, 5)?;
    peer.received_packet_no = u64_at(r, 6)?;
    peer.received_digest = hash_at(r, 7)?;
    peer.peer_ack_high = u64_at(r, 8)?;
    peer.acked_seq = u64_at(r, 9)?;
    peer.resend_own_upto = u64_at(r, 10)?;
    peer.resync_requested = r.get(11)?;
    peer.last_sync_in = r.get::<_, Option<i64>>(12)?.map(sync_core::Timestamp);
    peer.last_sync_out = r.get::<_, Option<i64>>(13)?.map(sync_core::Timestamp);
    peer.schema_version = r.get(14)?;
    peer.gap_check = match r.get::<_, Option<i64>>(15)? {
        Some(packet_no) => Some(GapCheck {
            packet_no: packet_no as u64,
            digest: hash_at(r, 16)?,
            announced_in: u64_at(r, 17)?,
        }),
        None => None,
    };
    Ok(peer)
}

fn hash_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let bytes: Vec<u8> = r.get(i)?;
    bytes.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "a SHA-256 must be 32 bytes".into(),
        )
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Hub => "hub",
        Role::Node => "node",
    }
}

fn role_from(text: &str) -> Role {
    if text == "hub" { Role::Hub } else { Role::Node }
}
