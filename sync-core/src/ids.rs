//! Identifiers and time: [`NodeId`] and [`Timestamp`].

use std::fmt;

use uuid::Uuid;

/// A node's UUID: the hub's or a device's. Stable for the life of its store.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub Uuid);

impl NodeId {
    /// The nil id, used where no node applies (never a real node).
    pub const NIL: NodeId = NodeId(Uuid::nil());

    /// Wraps a UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        NodeId(uuid)
    }

    /// The 16 bytes that travel on the wire.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// A UTC instant in microseconds since the UNIX epoch.
///
/// The engine never reads a clock: every entry point takes `now: Timestamp`
/// from its driver, which is what makes runs reproducible.
///
/// With serde it serializes as an integer of microseconds and deserializes
/// from either that or an RFC 3339 string, so typed structs round-trip through
/// the serde bridge and JSON views.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Parses an RFC 3339 instant (e.g. `2025-12-12T10:30:00Z`).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let format = time::format_description::well_known::Rfc3339;
        let parsed = time::OffsetDateTime::parse(text, &format).ok()?;
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000)
            .ok()
            .map(Timestamp)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("microseconds since the UNIX epoch or an RFC 3339 timestamp")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v).map(Timestamp).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v)
                    .ok_or_else(|| E::custom(format!("{v:?} is not an RFC 3339 timestamp")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Timestamp {
    /// The UNIX epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From microseconds since the UNIX epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// From milliseconds since the UNIX epoch (saturating).
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis.saturating_mul(1_000))
    }

    /// From whole seconds since the UNIX epoch (saturating).
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the UNIX epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Milliseconds since the UNIX epoch (rounded down).
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000)
    }

    /// This instant plus `micros` microseconds (saturating).
    pub const fn add_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }

    /// This instant plus `millis` milliseconds (saturating).
    pub const fn add_millis(self, millis: i64) -> Self {
        self.add_micros(millis.saturating_mul(1_000))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, e.g. `2025-12-12T10:30:00.000000Z`; raw micros when out
    /// of the representable range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let format = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                );
                match t.format(&format) {
                    Ok(s) => f.write_str(&s),
                    Err(_) => write!(f, "{}us", self.0),
                }
            }
            Err(_) => write!(f, "{}us", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_displays_as_rfc3339() {
        let t = Timestamp::from_secs(1_765_535_400);
        assert_eq!(t.to_string(), "2025-12-12T10:30:00.000000Z");
    }
}
