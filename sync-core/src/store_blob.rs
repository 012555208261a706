//! The encoding stores use for the versions they keep whole (entities of
//! types without a table, version history, parked changes, open conflicts,
//! rejected changes): a compact, self-describing binary form of values,
//! records and entities, shared by the SQLite and PostgreSQL stores so that a
//! version moves between them unchanged. Pure: no IO.
//!
//! Layout: one tag byte per value, little-endian fixed-width numbers, lengths
//! as LEB128 varints. Decoding checks every length against the bytes left and
//! nesting depth, so damaged bytes give [`StoreError::Corrupt`], never a panic.
//!
//! ```
//! use sync_core::store_blob::{decode_entity, encode_entity};
//! use sync_core::{Entity, EntityKey, NodeId, Record, Timestamp, Uuid};
//!
//! let writer = NodeId(Uuid::from_u128(7));
//! let entity = Entity::new_version(
//!     EntityKey::new("note", Uuid::from_u128(1)),
//!     Timestamp::from_micros(1_000),
//!     false,
//!     writer,
//!     Record::new(),
//! );
//! assert_eq!(decode_entity(&encode_entity(&entity)).unwrap(), entity);
//! ```

use crate::{
    Dot, Entity, EntityKey, FieldStamps, NodeId, Record, Stamp, StoreError, Timestamp, Uuid, Value,
    VersionVector,
};

/// Deepest nesting of lists and records accepted when decoding.
const MAX_DEPTH: usize = 256;

/// Encoding format version, the first byte of every encoded record.
const FORMAT: u8 = 1;

/// Encoding format of entities: 2 appends the version's clock (length, then
/// 24 bytes per entry); entities of format 1 predate clocks and include only
/// their own write.
const ENTITY_FORMAT: u8 = 2;

/// Entity format 3: format 2 followed by the version's field stamps (count,
/// then per stamp: field name, a dot as in [`put_dot`]). Written only for a
/// version that has stamps, so every other version keeps format 2.
const STAMPED_FORMAT: u8 = 3;

/// Encodes a whole entity.
pub fn encode_entity(entity: &Entity) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let stamped = !entity.field_stamps.is_empty();
    out.push(if stamped {
        STAMPED_FORMAT
    } else {
        ENTITY_FORMAT
    });
    put_str(&mut out, &entity.key.entity_type);
    out.extend(entity.key.id.as_bytes());
    out.extend(entity.updated_at.as_micros().to_le_bytes());
    out.push(u8::from(entity.is_deleted));
    out.extend(entity.origin.as_bytes());
    put_record(&mut out, &entity.fields);
    let clock = entity.clock.to_bytes();
    put_varint(&mut out, clock.len() as u64);
    out.extend(clock);
    if stamped {
        put_varint(&mut out, entity.field_stamps.len() as u64);
        for (name, dot) in &entity.field_stamps {
            put_str(&mut out, name);
            put_dot(&mut out, dot);
        }
    }
    out
}

/// A dot: 16 bytes of writer id, the time as little-endian i64, the tag as
/// little-endian u32.
fn put_dot(out: &mut Vec<u8>, dot: &Dot) {
    out.extend(dot.node.as_bytes());
    out.extend(dot.stamp.at.as_micros().to_le_bytes());
    out.extend(dot.stamp.tag.to_le_bytes());
}

/// What a row-backed version of a type merged per field recorded of each
/// field when the store last stored it: a digest of its value and the dot
/// of the write that last changed it (`None`: unknown).
pub type Baseline = Vec<(String, [u8; 8], Option<Dot>)>;

/// Encodes a [`Baseline`]: format byte, count, then per field: name, the
/// 8-byte digest, a flag byte and (when set) a dot.
pub fn encode_baseline(baseline: &Baseline) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_varint(&mut out, baseline.len() as u64);
    for (name, digest, dot) in baseline {
        put_str(&mut out, name);
        out.extend(digest);
        match dot {
            Some(dot) => {
                out.push(1);
                put_dot(&mut out, dot);
            }
            None => out.push(0),
        }
    }
    out
}

/// Decodes what [`encode_baseline`] wrote.
pub fn decode_baseline(bytes: &[u8]) -> Result<Baseline, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.byte()? != FORMAT {
        return Err(corrupt("unknown field stamp encoding".into()));
    }
    let n = r.len()?;
    let mut out = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let name = r.string()?;
        let digest = r.array()?;
        let dot = match r.byte()? {
            0 => None,
            _ => Some(r.dot()?),
        };
        out.push((name, digest, dot));
    }
    r.finish()?;
    Ok(out)
}

/// Decodes what [`encode_entity`] wrote.
pub fn decode_entity(bytes: &[u8]) -> Result<Entity, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    let format = r.byte()?;
    if ![FORMAT, ENTITY_FORMAT, STAMPED_FORMAT].contains(&format) {
        return Err(corrupt(format!("unknown entity encoding version {format}")));
    }
    let entity_type = r.string()?;
    let id = Uuid::from_bytes(r.array()?);
    let updated_at = Timestamp::from_micros(i64::from_le_bytes(r.array()?));
    let is_deleted = r.byte()? != 0;
    let origin = NodeId(Uuid::from_bytes(r.array()?));
    let fields = r.record(0)?;
    let clock = if format == FORMAT {
        VersionVector::single(origin, updated_at)
    } else {
        let len = r.len()?;
        let bytes = r.take(len)?;
        VersionVector::from_bytes(bytes).ok_or_else(|| corrupt("a damaged clock".into()))?
    };
    let mut field_stamps = FieldStamps::new();
    if format == STAMPED_FORMAT {
        for _ in 0..r.len()? {
            let name = r.string()?;
            field_stamps.insert(name, r.dot()?);
        }
    }
    r.finish()?;
    Ok(Entity {
        key: EntityKey::new(entity_type, id),
        updated_at,
        is_deleted,
        origin,
        fields,
        clock,
        field_stamps,
    })
}

/// Encodes a record on its own.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_record(&mut out, record);
    out
}

/// Decodes what [`encode_record`] wrote.
pub fn decode_record(bytes: &[u8]) -> Result<Record, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    let format = r.byte()?;
    if format != FORMAT {
        return Err(corrupt(format!("unknown record encoding version {format}")));
    }
    let record = r.record(0)?;
    r.finish()?;
    Ok(record)
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        detail: format!("an encoded entity in the sync tables is damaged: {detail}"),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend(b);
}

fn put_record(out: &mut Vec<u8>, record: &Record) {
    put_varint(out, record.len() as u64);
    for (name, value) in record {
        put_str(out, name);
        put_value(out, value);
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend([1, u8::from(*b)]),
        Value::Int(i) => {
            out.push(2);
            out.extend(i.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(3);
            out.extend(x.to_bits().to_le_bytes());
        }
        Value::Text(s) => {
            out.push(4);
            put_str(out, s);
        }
        Value::Bytes(b) => {
            out.push(5);
            put_bytes(out, b);
        }
        Value::Timestamp(t) => {
            out.push(6);
            out.extend(t.as_micros().to_le_bytes());
        }
        Value::Uuid(u) => {
            out.push(7);
            out.extend(u.as_bytes());
        }
        Value::List(items) => {
            out.push(8);
            put_varint(out, items.len() as u64);
            items.iter().for_each(|v| put_value(out, v));
        }
        Value::Record(record) => {
            out.push(9);
            put_record(out, record);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated".into()))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn dot(&mut self) -> Result<Dot, StoreError> {
        let node = NodeId(Uuid::from_bytes(self.array()?));
        let at = Timestamp::from_micros(i64::from_le_bytes(self.array()?));
        let tag = u32::from_le_bytes(self.array()?);
        Ok(Dot {
            node,
            stamp: Stamp { at, tag },
        })
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt("length too long".into()))
    }

    fn len(&mut self) -> Result<usize, StoreError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.bytes.len() - self.pos)
            .ok_or_else(|| corrupt("length past the end".into()))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| corrupt("text is not UTF-8".into()))
    }

    fn record(&mut self, depth: usize) -> Result<Record, StoreError> {
        let n = self.len()?;
        let mut record = Record::new();
        for _ in 0..n {
            let name = self.string()?;
            let value = self.value(depth)?;
            record.insert(name, value);
        }
        Ok(record)
    }

    fn value(&mut self, depth: usize) -> Result<Value, StoreError> {
        if depth > MAX_DEPTH {
            return Err(corrupt("nested too deeply".into()));
        }
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(self.byte()? != 0),
            2 => Value::Int(i64::from_le_bytes(self.array()?)),
            3 => Value::Float(f64::from_bits(u64::from_le_bytes(self.array()?))),
            4 => Value::Text(self.string()?),
            5 => {
                let n = self.len()?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            6 => Value::Timestamp(Timestamp::from_micros(i64::from_le_bytes(self.array()?))),
            7 => Value::Uuid(Uuid::from_bytes(self.array()?)),
            8 => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            9 => Value::Record(self.record(depth + 1)?),
            tag => return Err(corrupt(format!("unknown value tag {tag}"))),
        })
    }

    fn finish(&self) -> Result<(), StoreError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entity {
        let nested = Record::from([(
            "k".to_owned(),
            Value::List(vec![Value::Int(-1), Value::Null]),
        )]);
        Entity {
            key: EntityKey::new("Note", Uuid::from_u128(7)),
            updated_at: Timestamp::from_micros(-5),
            is_deleted: true,
            origin: NodeId(Uuid::from_u128(9)),
            fields: Record::from([
                ("a".to_owned(), Value::Float(1.5)),
                ("b".to_owned(), Value::Bytes(vec![0, 255])),
                ("c".to_owned(), Value::Record(nested)),
                ("d".to_owned(), Value::Timestamp(Timestamp::from_secs(3))),
                ("e".to_owned(), Value::Uuid(Uuid::from_u128(3))),
                ("f".to_owned(), Value::Text("héllo".into())),
                ("g".to_owned(), Value::Bool(true)),
            ]),
            clock: VersionVector::from_entries([
                (NodeId(Uuid::from_u128(9)), Timestamp::from_micros(-5)),
                (NodeId(Uuid::from_u128(1)), Timestamp::from_micros(-9)),
            ]),
            field_stamps: FieldStamps::new(),
        }
    }

    #[test]
    fn stamped_entity_and_baseline_round_trip() {
        let dot = Dot {
            node: NodeId(Uuid::from_u128(1)),
            stamp: Stamp {
                at: Timestamp::from_micros(-9),
                tag: 7,
            },
        };
        let mut e = sample();
        e.field_stamps.insert("a".into(), dot);
        let bytes = encode_entity(&e);
        assert_eq!(bytes[0], STAMPED_FORMAT);
        assert_eq!(decode_entity(&bytes).unwrap(), e);
        for n in 0..bytes.len() {
            assert!(decode_entity(&bytes[..n]).is_err());
        }
        let baseline: Baseline = vec![("a".into(), [3; 8], Some(dot)), ("b".into(), [4; 8], None)];
        assert_eq!(
            decode_baseline(&encode_baseline(&baseline)).unwrap(),
            baseline
        );
        assert_eq!(encode_entity(&sample())[0], ENTITY_FORMAT);
    }

    #[test]
    fn entity_round_trips() {
        let e = sample();
        assert_eq!(decode_entity(&encode_entity(&e)).unwrap(), e);
    }

    #[test]
    fn truncated_bytes_are_corrupt_not_a_panic() {
        let bytes = encode_entity(&sample());
        for n in 0..bytes.len() {
            assert!(decode_entity(&bytes[..n]).is_err());
        }
    }
}
