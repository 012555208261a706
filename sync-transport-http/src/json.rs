//! The JSON form of an exchange, in the envelope shape of the reference
//! specification, for curl and browsers.
//!
//! A JSON request carries `header` (sender, recipient, packet number, the
//! acknowledgement, schema version, timestamp) and `body.entities` (type,
//! uuid, operation, fields in `data`). The server turns it into a packet
//! and answers with the reply's readable view
//! ([`sync_core::json_view::envelope_to_json`]) plus two digests a JSON
//! client echoes in its next request: `header.packet_digest` (send it as
//! `ack_digest` when acknowledging that packet) and `header.request_digest`
//! (the digest of the request just applied: send it as `prev_digest` in
//! the next one). A JSON entity carries no causal history: it is a new
//! version by its sender, so an update of an entity someone else changed
//! meanwhile goes through the type's conflict strategy.

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use sync_core::codec::{self, Limits};
use sync_core::packet::{Change, Codec, Envelope, Packet, PacketHeader};
use sync_core::{Entity, EntityKey, NodeId, Operation, Timestamp, Uuid};

use crate::hub::HubInfo;

/// Why a JSON request could not be turned into a packet (answered 400).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON of the envelope shape.
    #[error(
        "the JSON request is not an envelope ({0}); send {{\"header\": {{...}}, \"body\": {{\"entities\": [...]}}}}"
    )]
    Shape(String),
    /// A field's value is not usable.
    #[error("the JSON request's {field} is invalid: {detail}")]
    Field {
        /// Which field.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Deserialize)]
struct JsonEnvelope {
    header: JsonHeader,
    #[serde(default)]
    body: JsonBody,
}

#[derive(Deserialize)]
struct JsonHeader {
    sender_node_id: Uuid,
    recipient_node_id: Uuid,
    packet_no: u64,
    #[serde(default)]
    ack_packet_no: u64,
    #[serde(default)]
    ack_digest: Option<String>,
    #[serde(default)]
    prev_digest: Option<String>,
    schema_version: String,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
struct JsonBody {
    #[serde(default)]
    entities: Vec<JsonEntity>,
}

#[derive(Deserialize)]
struct JsonEntity {
    #[serde(rename = "type")]
    entity_type: String,
    uuid: Uuid,
    operation: String,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    data: Map<String, Json>,
}

/// A JSON request as envelope bytes, with the digest of the packet built.
pub(crate) fn request_from_json(
    json: &[u8],
    hub: &HubInfo,
    now: Timestamp,
) -> Result<(Vec<u8>, [u8; 32]), JsonError> {
    let envelope: JsonEnvelope =
        serde_json::from_slice(json).map_err(|e| JsonError::Shape(e.to_string()))?;
    let h = envelope.header;
    let sender = NodeId(h.sender_node_id);
    let timestamp = match &h.timestamp {
        Some(text) => time_field("header.timestamp", text)?,
        None => now,
    };
    let changes = envelope
        .body
        .entities
        .into_iter()
        .enumerate()
        .map(|(i, e)| change_from_json(i, e, hub, sender, timestamp))
        .collect::<Result<Vec<_>, _>>()?;
    let entity_count = u32::try_from(changes.len()).map_err(|_| JsonError::Field {
        field: "body.entities".into(),
        detail: "too many entities".into(),
    })?;
    let (body, body_raw_len) = codec::encode_body(&changes, &hub.registry, Codec::Zstd);
    let header = PacketHeader {
        sender,
        recipient: NodeId(h.recipient_node_id),
        packet_no: h.packet_no,
        ack_packet_no: h.ack_packet_no,
        ack_digest: digest_field("header.ack_digest", h.ack_digest.as_deref())?,
        prev_digest: digest_field("header.prev_digest", h.prev_digest.as_deref())?,
        gap_check_packet_no: 0,
        gap_check_digest: [0; 32],
        protocol_version: sync_proto::PROTOCOL_VERSION,
        schema_version: h.schema_version,
        timestamp,
        codec: Codec::Zstd,
        body_sha256: codec::sha256(&body),
        entity_count,
        more: false,
        resync: false,
        pending_total: u64::from(entity_count),
        body_raw_len,
        continues: false,
    };
    let digest = codec::packet_digest(&header);
    let bytes = codec::encode_envelope(&Envelope::Packet(Packet {
        header,
        body: body.into(),
    }));
    Ok((bytes.to_vec(), digest))
}

fn change_from_json(
    index: usize,
    e: JsonEntity,
    hub: &HubInfo,
    sender: NodeId,
    default_time: Timestamp,
) -> Result<Change, JsonError> {
    let field = |name: &str| format!("body.entities[{index}].{name}");
    let ty = hub
        .registry
        .get(&e.entity_type)
        .ok_or_else(|| JsonError::Field {
            field: field("type"),
            detail: format!("{} is not a type registered on this hub", e.entity_type),
        })?;
    let operation = match e.operation.to_ascii_uppercase().as_str() {
        "INSERT" => Operation::Insert,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        other => {
            return Err(JsonError::Field {
                field: field("operation"),
                detail: format!("{other:?} is not INSERT, UPDATE or DELETE"),
            });
        }
    };
    let fields =
        sync_core::serde_bridge::to_record(ty, &e.data).map_err(|err| JsonError::Field {
            field: field("data"),
            detail: err.to_string(),
        })?;
    let updated_at = match &e.updated_at {
        Some(text) => time_field(&field("updated_at"), text)?,
        None => default_time,
    };
    let entity = Entity::new_version(
        EntityKey::new(e.entity_type, e.uuid),
        updated_at,
        operation == Operation::Delete,
        sender,
        fields,
    );
    Ok(Change { operation, entity })
}

fn time_field(field: &str, text: &str) -> Result<Timestamp, JsonError> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| JsonError::Field {
        field: field.to_owned(),
        detail: format!("{text:?} is not an RFC 3339 time such as 2025-12-12T10:30:00Z"),
    })
}

fn digest_field(field: &str, text: Option<&str>) -> Result<[u8; 32], JsonError> {
    let Some(text) = text else {
        return Ok([0; 32]);
    };
    let bad = || JsonError::Field {
        field: field.to_owned(),
        detail: "expected 64 hex digits, as the hub returned it".into(),
    };
    if text.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The reply envelope as JSON bytes, with the digests a JSON client needs.
pub(crate) fn reply_to_json(reply: &[u8], request_digest: [u8; 32], limits: &Limits) -> Vec<u8> {
    let mut json = match sync_core::json_view::envelope_to_json(reply, limits) {
        Ok(json) => json,
        Err(e) => serde_json::json!({ "error": { "code": "Internal", "message": e.to_string() } }),
    };
    if let Ok(Envelope::Packet(packet)) = codec::decode_envelope(reply, limits) {
        if let Some(header) = json.get_mut("header").and_then(Json::as_object_mut) {
            header.insert(
                "packet_digest".into(),
                hex(&codec::packet_digest(&packet.header)).into(),
            );
            header.insert("request_digest".into(), hex(&request_digest).into());
        }
    }
    serde_json::to_vec(&json).unwrap_or_default()
}
