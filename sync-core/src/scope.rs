//! Per-node scopes (partial replication): which entities each node
//! receives, decided at the hub.
//!
//! A [`ScopeRule`] per entity type says which of its entities a node gets:
//! all of them (the default), those whose field equals one of the node's
//! attributes ([`ScopeRule::Attribute`], e.g. `user_id = node.user`), or
//! those whose field holds one of a fixed set of values
//! ([`ScopeRule::Values`]). A type without a rule of its own that references
//! a scoped type follows its parents: a line is in a node's scope when its
//! report is. Attributes are per node ([`NodeAttributes`]).
//!
//! The hub keeps rules and attributes in its store, so that they survive a
//! restart and every hub process on one database sees the same ones, and
//! reads them in each transaction that needs them: a change takes effect at
//! the next exchange. Scopes cost nothing per write: they are evaluated when
//! a packet is built for a node (each pending change is checked, a child
//! through its parents) and when a node's change arrives.
//!
//! - Out of a node's scope, a change is never sent to it; it still counts as
//!   delivered, so the node's acknowledgements move past it.
//! - A node's write outside its scope (a version outside it, or an entity the
//!   hub holds outside it) is rejected, per change, with a message naming the
//!   rule (see [`crate::rejected`]); the rest of its packet applies. The hub
//!   tells the node, which removes its copy locally; the hub's version of an
//!   entity outside the node's scope is never sent to it in the notice.
//!
//! ```
//! use sync_core::scope::{NodeAttributes, ScopeRule, Scopes};
//! use sync_core::{Record, Value};
//!
//! let scopes = Scopes::default().with("Note", ScopeRule::attribute("owner", "user"));
//! let alice = NodeAttributes::default().with("user", ["alice"]);
//! let note = Record::from([("owner".to_string(), Value::from("alice"))]);
//! let rule = scopes.rule("Note").expect("Note has a rule");
//! assert!(rule.admits(&note, &alice));
//! assert!(!rule.admits(&note, &NodeAttributes::default().with("user", ["bob"])));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::entity::{Entity, EntityKey};
use crate::entity_registry::EntityRegistry;
use crate::error::{StoreError, SyncError};
use crate::ids::NodeId;
use crate::store::StoreTxn;
use crate::value::{Record, Value};

/// Meta key of the scope rules.
const RULES_KEY: &str = "scope/rules";
/// Meta key prefix of each node's attributes.
const ATTRIBUTES_PREFIX: &str = "scope/node/";

/// Longest chain of parents followed to decide a child's scope; a longer
/// one (a damaged store, a reference cycle without a rule) is out of scope.
pub(crate) const MAX_DEPTH: usize = 16;

/// Which entities of one type a node receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScopeRule {
    /// Every entity reaches every node (what a type without a rule gets,
    /// unless it references a scoped type).
    All,
    /// Entities whose `field` equals one of the node's values of
    /// `attribute` (compared as text: a UUID in its hyphenated form, a
    /// number in decimal). A node without that attribute receives none.
    Attribute {
        /// The entity's field.
        field: String,
        /// The node attribute it is compared with.
        attribute: String,
    },
    /// Entities whose `field` (as text) is one of `values`, for every node.
    Values {
        /// The entity's field.
        field: String,
        /// The admitted values.
        values: BTreeSet<String>,
    },
}

impl ScopeRule {
    /// [`ScopeRule::Attribute`]: `field` equals the node's `attribute`.
    pub fn attribute(field: impl Into<String>, attribute: impl Into<String>) -> Self {
        ScopeRule::Attribute {
            field: field.into(),
            attribute: attribute.into(),
        }
    }

    /// [`ScopeRule::Values`]: `field` is one of `values`.
    pub fn values<I, V>(field: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        ScopeRule::Values {
            field: field.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether an entity with `fields` is in the scope of a node with
    /// `attributes`.
    pub fn admits(&self, fields: &Record, attributes: &NodeAttributes) -> bool {
        match self {
            ScopeRule::All => true,
            ScopeRule::Attribute { field, attribute } => {
                let Some(value) = fields.get(field).and_then(scope_text) else {
                    return false;
                };
                attributes
                    .values(attribute)
                    .is_some_and(|values| values.contains(&value))
            }
            ScopeRule::Values { field, values } => fields
                .get(field)
                .and_then(scope_text)
                .is_some_and(|value| values.contains(&value)),
        }
    }

    /// The field the rule reads, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ScopeRule::All => None,
            ScopeRule::Attribute { field, .. } | ScopeRule::Values { field, .. } => Some(field),
        }
    }

    fn describe(&self) -> String {
        match self {
            ScopeRule::All => "every entity".into(),
            ScopeRule::Attribute { field, attribute } => {
                format!("{field} equal to the node's attribute {attribute}")
            }
            ScopeRule::Values { field, values } => {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                format!("{field} one of [{}]", values.join(", "))
            }
        }
    }
}

/// A field's value as a scope compares it: text as is, a UUID hyphenated,
/// numbers and booleans in their plain form; other kinds never match.
fn scope_text(value: &Value) -> Option<String> {
    match value {
        Value::Text(text) => Some(text.clone()),
        Value::Uuid(id) => Some(id.to_string()),
        Value::Int(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The scope rules of a hub, per entity type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes {
    rules: BTreeMap<String, ScopeRule>,
}

impl Scopes {
    /// These rules with `rule` for `entity_type` (replacing its rule).
    pub fn with(mut self, entity_type: impl Into<String>, rule: ScopeRule) -> Self {
        self.set(entity_type, rule);
        self
    }

    /// Sets the rule of `entity_type`; [`ScopeRule::All`] removes it.
    pub fn set(&mut self, entity_type: impl Into<String>, rule: ScopeRule) {
        let entity_type = entity_type.into();
        match rule {
            ScopeRule::All => self.rules.remove(&entity_type),
            rule => self.rules.insert(entity_type, rule),
        };
    }

    /// The rule of `entity_type`, if it has one of its own.
    pub fn rule(&self, entity_type: &str) -> Option<&ScopeRule> {
        self.rules.get(entity_type)
    }

    /// Every rule, by type.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &ScopeRule)> {
        self.rules.iter().map(|(t, r)| (t.as_str(), r))
    }

    /// Whether no type is scoped: every entity reaches every node.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether entities of `entity_type` are scoped: it has a rule, or it
    /// references (through any chain) a type that has one.
    pub fn governs(&self, registry: &EntityRegistry, entity_type: &str) -> bool {
        self.governs_within(registry, entity_type, 0)
    }

    fn governs_within(&self, registry: &EntityRegistry, entity_type: &str, depth: usize) -> bool {
        if self.rules.contains_key(entity_type) {
            return true;
        }
        if depth >= MAX_DEPTH {
            return false;
        }
        registry.get(entity_type).is_some_and(|ty| {
            ty.references()
                .any(|(_, target)| self.governs_within(registry, target, depth + 1))
        })
    }

    /// Reads the rules stored at this hub (none: every entity everywhere).
    pub fn load<T: StoreTxn + ?Sized>(txn: &T) -> Result<Self, StoreError> {
        match txn.meta(RULES_KEY)? {
            None => Ok(Scopes::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                detail: format!(
                    "the stored scope rules do not parse ({e}); set them again with Engine::set_scope_rule"
                ),
            }),
        }
    }

    /// Stores these rules.
    pub fn save<T: StoreTxn + ?Sized>(&self, txn: &mut T) -> Result<(), StoreError> {
        // Serializing maps of strings cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        txn.put_meta(RULES_KEY, Some(&bytes))
    }
}

/// A node's attributes, each with one or more values (`user = alice`,
/// `region = north, east`), which [`ScopeRule::Attribute`] compares with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAttributes {
    values: BTreeMap<String, BTreeSet<String>>,
}

impl NodeAttributes {
    /// These attributes with `name` set to `values` (replacing it).
    pub fn with<I, V>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.values
            .insert(name.into(), values.into_iter().map(Into::into).collect());
        self
    }

    /// The values of attribute `name`.
    pub fn values(&self, name: &str) -> Option<&BTreeSet<String>> {
        self.values.get(name)
    }

    /// Reads the attributes of `node` stored at this hub (none if unset).
    pub fn load<T: StoreTxn + ?Sized>(txn: &T, node: NodeId) -> Result<Self, StoreError> {
        match txn.meta(&attributes_key(node))? {
            None => Ok(NodeAttributes::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                detail: format!(
                    "the stored attributes of node {node} do not parse ({e}); set them again with Engine::set_node_attributes"
                ),
            }),
        }
    }

    /// Stores these as the attributes of `node`.
    pub fn save<T: StoreTxn + ?Sized>(&self, txn: &mut T, node: NodeId) -> Result<(), StoreError> {
        // Serializing maps of strings cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        txn.put_meta(&attributes_key(node), Some(&bytes))
    }
}

fn attributes_key(node: NodeId) -> String {
    format!("{ATTRIBUTES_PREFIX}{node}")
}

/// Meta key prefix of what the hub sent each node of scoped types.
const HOLDINGS_PREFIX: &str = "scope/held/";

/// What the hub remembers of one entity of a scoped type and one node: it
/// was sent (or written by the node), so the node may hold it, or it was
/// evicted from the node. Each mark names the hub's sequence of the change
/// that set it; once the node has acknowledged that far, the mark is
/// confirmed. Nothing is kept for entities a node never had, so the node is
/// never told of them; an entry is written only when a packet is built for
/// the node or its change arrives, never per write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Sent with (or written by the node before) the change at this
    /// sequence; 0 for the node's own write.
    Sent(u64),
    /// Evicted with the change at this sequence.
    Evicted(u64),
}

impl Holding {
    /// The mark of `node` for `key`, if any.
    pub(crate) fn load<T: StoreTxn + ?Sized>(
        txn: &T,
        node: NodeId,
        key: &EntityKey,
    ) -> Result<Option<Self>, StoreError> {
        let Some(bytes) = txn.meta(&holding_key(node, key))? else {
            return Ok(None);
        };
        let seq = bytes
            .get(1..9)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes);
        match (bytes.first(), seq) {
            (Some(b's'), Some(seq)) => Ok(Some(Holding::Sent(seq))),
            (Some(b'e'), Some(seq)) => Ok(Some(Holding::Evicted(seq))),
            _ => Err(StoreError::Corrupt {
                detail: format!(
                    "the hub's scope mark of {key} for node {node} does not parse; re-initialize the node"
                ),
            }),
        }
    }

    /// Stores `mark` (`None` forgets it) for `node` and `key`.
    pub(crate) fn save<T: StoreTxn + ?Sized>(
        txn: &mut T,
        node: NodeId,
        key: &EntityKey,
        mark: Option<Holding>,
    ) -> Result<(), StoreError> {
        let bytes = mark.map(|mark| {
            let (tag, seq) = match mark {
                Holding::Sent(seq) => (b's', seq),
                Holding::Evicted(seq) => (b'e', seq),
            };
            let mut bytes = vec![tag];
            bytes.extend(seq.to_le_bytes());
            bytes
        });
        txn.put_meta(&holding_key(node, key), bytes.as_deref())
    }
}

fn holding_key(node: NodeId, key: &EntityKey) -> String {
    format!("{HOLDINGS_PREFIX}{node}/{}/{}", key.entity_type, key.id)
}

/// Scope decisions for one node inside one transaction: the hub's rules and
/// the node's attributes, read once.
#[derive(Clone, Debug)]
pub struct NodeScope {
    scopes: Scopes,
    attributes: NodeAttributes,
}

impl NodeScope {
    /// The scope of `node` as stored at this hub.
    pub fn load<T: StoreTxn + ?Sized>(txn: &T, node: NodeId) -> Result<Self, StoreError> {
        Ok(NodeScope {
            scopes: Scopes::load(txn)?,
            attributes: NodeAttributes::load(txn, node)?,
        })
    }

    /// Whether every entity reaches this node.
    pub fn is_everything(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether entities of `entity_type` are scoped (see
    /// [`Scopes::governs`]).
    pub fn governs(&self, registry: &EntityRegistry, entity_type: &str) -> bool {
        self.scopes.governs(registry, entity_type)
    }

    /// The types whose scope follows their parents of `parent_type`, each
    /// with its reference field: they have no rule of their own and
    /// reference `parent_type`.
    pub fn followers<'r>(
        &self,
        registry: &'r EntityRegistry,
        parent_type: &str,
    ) -> Vec<(&'r str, &'r str)> {
        let mut followers = Vec::new();
        for ty in registry.types() {
            if self.scopes.rule(ty.name()).is_some() {
                continue;
            }
            for (field, target) in ty.references() {
                if target == parent_type {
                    followers.push((ty.name(), field));
                }
            }
        }
        followers
    }

    /// Whether `entity` (a version held or arriving at the hub) is in this
    /// node's scope. A child follows its parents as the hub holds them; a
    /// child whose scoped parent the hub does not hold is out of scope.
    pub fn admits<T: StoreTxn + ?Sized>(
        &self,
        txn: &T,
        registry: &EntityRegistry,
        entity: &Entity,
    ) -> Result<bool, SyncError> {
        Ok(self.refusal(txn, registry, entity, 0)?.is_none())
    }

    /// Why `entity` is out of this node's scope, as a sentence naming the
    /// rule, or `None` when it is in scope.
    pub fn why_not<T: StoreTxn + ?Sized>(
        &self,
        txn: &T,
        registry: &EntityRegistry,
        entity: &Entity,
    ) -> Result<Option<String>, SyncError> {
        self.refusal(txn, registry, entity, 0)
    }

    fn refusal<T: StoreTxn + ?Sized>(
        &self,
        txn: &T,
        registry: &EntityRegistry,
        entity: &Entity,
        depth: usize,
    ) -> Result<Option<String>, SyncError> {
        if self.scopes.is_empty() {
            return Ok(None);
        }
        let key = &entity.key;
        if let Some(rule) = self.scopes.rule(&key.entity_type) {
            return Ok((!rule.admits(&entity.fields, &self.attributes)).then(|| {
                format!(
                    "{key} is outside this node's scope: {} admits only {}",
                    key.entity_type,
                    rule.describe()
                )
            }));
        }
        let Some(ty) = registry.get(&key.entity_type) else {
            return Ok(None);
        };
        for (field, target) in ty.references() {
            if !self.scopes.governs(registry, target) {
                continue;
            }
            let Some(parent_id) = entity.fields.get(field).and_then(Value::as_uuid) else {
                continue;
            };
            let parent_key = EntityKey::new(target, parent_id);
            if depth >= MAX_DEPTH {
                return Ok(Some(format!(
                    "{key} is outside this node's scope: its chain of parents is longer than {MAX_DEPTH}"
                )));
            }
            let Some(parent) = txn.entity(&parent_key)? else {
                return Ok(Some(format!(
                    "{key} is outside this node's scope: its parent {parent_key} is not held here"
                )));
            };
            if let Some(why) = self.refusal(txn, registry, &parent.entity, depth + 1)? {
                return Ok(Some(format!(
                    "{key} follows its parent {parent_key}, and {why}"
                )));
            }
        }
        Ok(None)
    }
}
