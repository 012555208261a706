//! Schema versions (semver) and the hub's acceptance rule.

use std::fmt;
use std::str::FromStr;

use crate::error::SchemaError;

/// A semantic version of the entity schema, e.g. `1.2.0`. Carried in every
/// packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    /// Incompatible changes bump this.
    pub major: u32,
    /// Backward-compatible additions bump this.
    pub minor: u32,
    /// Fixes bump this.
    pub patch: u32,
}

impl SchemaVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        SchemaVersion {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for SchemaVersion {
    type Err = SchemaError;

    /// Parses `major.minor.patch` (pre-release and build suffixes are not
    /// part of a schema version).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || SchemaError::Invalid {
            text: s.chars().take(64).collect(),
        };
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, SchemaError> {
            let part = parts.next().ok_or_else(invalid)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        let version = SchemaVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(version)
    }
}

/// Which peer schema versions this node accepts.
///
/// The hub accepts nodes with the same major version at or above its minimum;
/// a node accepts a hub with the same major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaPolicy {
    /// This node's own schema version.
    pub own: SchemaVersion,
    /// Lowest peer version accepted (same major as `own`).
    pub minimum: SchemaVersion,
}

impl SchemaPolicy {
    /// Accepts peers of `own`'s major version from `minimum` up.
    pub fn new(own: SchemaVersion, minimum: SchemaVersion) -> Self {
        SchemaPolicy { own, minimum }
    }

    /// Accepts every peer of `own`'s major version.
    pub fn same_major(own: SchemaVersion) -> Self {
        Self::new(own, SchemaVersion::new(own.major, 0, 0))
    }

    /// Checks a peer's version. `peer_code` names the peer in the error.
    pub fn check(&self, peer_code: &str, peer: &str, i_am_hub: bool) -> Result<(), SchemaError> {
        let version: SchemaVersion = peer.parse()?;
        let (this, that) = if i_am_hub {
            ("the hub", format!("node {peer_code}"))
        } else {
            ("this node", format!("the hub {peer_code}"))
        };
        if version.major != self.own.major {
            return Err(SchemaError::MajorMismatch {
                peer: that,
                peer_version: version,
                this: this.to_owned(),
                own: self.own,
            });
        }
        if i_am_hub && version < self.minimum {
            return Err(SchemaError::Outdated {
                node: peer_code.to_owned(),
                node_version: version,
                minimum: self.minimum,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let a: SchemaVersion = "1.2.0".parse().unwrap();
        let b: SchemaVersion = "1.10.0".parse().unwrap();
        assert!(a < b);
        assert!("1.2".parse::<SchemaVersion>().is_err());
        assert!("1.2.x".parse::<SchemaVersion>().is_err());
        assert!("1.2.3.4".parse::<SchemaVersion>().is_err());
    }

    #[test]
    fn outdated_message_names_both_versions() {
        let policy = SchemaPolicy::new(SchemaVersion::new(1, 3, 0), SchemaVersion::new(1, 2, 0));
        let err = policy.check("DESKTOP-3", "1.1.0", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node DESKTOP-3's schema 1.1.0 is older than the hub's minimum 1.2.0; upgrade the node"
        );
    }
}
