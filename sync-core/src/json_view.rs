//! A readable JSON view of an envelope, in the shape of the reference
//! specification's message envelope (header + body.entities with named
//! fields). For inspection and logs; the wire format is protobuf.

use serde_json::{Value as Json, json};

use crate::codec::{self, Limits};
use crate::entity::Operation;
use crate::error::PeerError;
use crate::packet::{Codec, Envelope};
use crate::serde_bridge::to_json;

/// Decodes `bytes` and renders them as JSON. The body is decoded only if its
/// hash matches. A train of packets is `{"packets": [...]}`, each packet in
/// the shape of a single one.
pub fn envelope_to_json(bytes: &[u8], limits: &Limits) -> Result<Json, PeerError> {
    match codec::decode_envelope(bytes, limits)? {
        Envelope::Error(e) => Ok(json!({
            "error": {
                "code": format!("{:?}", e.code),
                "message": e.message,
                "retryable": e.retryable,
                "sender_node_id": e.sender.to_string(),
            }
        })),
        Envelope::Packet(p) => packet_to_json(&p, limits),
        Envelope::Train(packets) => Ok(json!({
            "packets": packets
                .iter()
                .map(|p| packet_to_json(p, limits))
                .collect::<Result<Vec<_>, _>>()?,
        })),
    }
}

fn packet_to_json(p: &crate::packet::Packet, limits: &Limits) -> Result<Json, PeerError> {
    let h = &p.header;
    let body_ok = codec::sha256(&p.body) == h.body_sha256;
    let body = match body_ok {
        true => codec::decode_body_with(h, &p.body, limits)?,
        false => codec::Body::default(),
    };
    let rejections: Vec<Json> = body
        .rejections
        .iter()
        .map(|r| {
            json!({
                "type": r.key.entity_type,
                "uuid": r.key.id.to_string(),
                "reason": r.reason,
                "hub_has_none": r.hub_has_none,
            })
        })
        .collect();
    let evictions: Vec<Json> = body
        .evictions
        .iter()
        .map(|key| json!({ "type": key.entity_type, "uuid": key.id.to_string() }))
        .collect();
    let migrations: Vec<Json> = body
        .migrations
        .iter()
        .map(|m| {
            json!({
                "schema_version": m.version.to_string(),
                "sqlite_sql": m.sqlite_sql,
                "description": m.description,
                "track_tables": m.track_tables,
            })
        })
        .collect();
    let migration_failure = body
        .migration_failure
        .as_ref()
        .map(|f| json!({ "schema_version": f.version.to_string(), "message": f.message }));
    let entities: Vec<Json> = if body_ok {
        body.changes
                    .into_iter()
                    .map(|c| {
                        json!({
                            "type": c.entity.key.entity_type,
                            "uuid": c.entity.key.id.to_string(),
                            "operation": operation_name(c.operation),
                            "updated_at": c.entity.updated_at.to_string(),
                            "origin_node_id": c.entity.origin.to_string(),
                            "data": c.entity.fields.iter().map(|(k, v)| (k.clone(), to_json(v))).collect::<serde_json::Map<_, _>>(),
                        })
                    })
                    .collect()
    } else {
        Vec::new()
    };
    Ok(json!({
        "header": {
            "sender_node_id": h.sender.to_string(),
            "recipient_node_id": h.recipient.to_string(),
            "packet_no": h.packet_no,
            "ack_packet_no": h.ack_packet_no,
            "schema_version": h.schema_version,
            "timestamp": h.timestamp.to_string(),
            "codec": codec_name(h.codec),
            "entity_count": h.entity_count,
            "more": h.more,
            "continues": h.continues,
            "body_hash_ok": body_ok,
        },
        "body": {
            "entities": entities,
            "rejections": rejections,
            "evictions": evictions,
            "migrations": migrations,
            "migration_failure": migration_failure,
        },
    }))
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Insert => "INSERT",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::None => "none",
        Codec::Zstd => "zstd",
        Codec::Gzip => "gzip",
    }
}
