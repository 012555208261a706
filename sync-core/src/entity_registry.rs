//! The entity registry: which types sync, their fields, references to parent
//! types, fields that never leave the node, and per-type conflict settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::conflict::{ConflictStrategy, Resolver};
use crate::entity::Entity;
use crate::error::WriteError;
use crate::value::{Record, Value};

/// The kind of value a field holds. Any field may also be `Null`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// `Value::Bool`.
    Bool,
    /// `Value::Int`.
    Int,
    /// `Value::Float` (an `Int` is accepted and widened).
    Float,
    /// `Value::Text`.
    Text,
    /// `Value::Bytes`.
    Bytes,
    /// `Value::Timestamp`.
    Timestamp,
    /// `Value::Uuid` that is not a reference.
    Uuid,
    /// `Value::Uuid` naming an entity of `target` type: the parent. A child is
    /// never applied where its parent is missing.
    Reference {
        /// Registered name of the parent type.
        target: String,
    },
    /// `Value::List` of any values.
    List,
    /// `Value::Record`, a nested record.
    Record,
}

impl FieldKind {
    /// Whether `value` fits this kind (null always fits).
    pub fn accepts(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (_, Value::Null)
                | (FieldKind::Bool, Value::Bool(_))
                | (FieldKind::Int, Value::Int(_))
                | (FieldKind::Float, Value::Float(_) | Value::Int(_))
                | (FieldKind::Text, Value::Text(_))
                | (FieldKind::Bytes, Value::Bytes(_))
                | (FieldKind::Timestamp, Value::Timestamp(_))
                | (
                    FieldKind::Uuid | FieldKind::Reference { .. },
                    Value::Uuid(_)
                )
                | (FieldKind::List, Value::List(_))
                | (FieldKind::Record, Value::Record(_))
        )
    }
}

/// One declared field of an entity type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// Field name.
    pub name: String,
    /// Value kind.
    pub kind: FieldKind,
    /// Excluded fields (passwords, local caches) are stored locally but never
    /// sent; an incoming version keeps the local value.
    pub excluded: bool,
}

/// A registered entity type.
#[derive(Clone)]
pub struct EntityType {
    name: String,
    fields: Vec<FieldDef>,
    strategy: ConflictStrategy,
    versioning: bool,
}

impl std::fmt::Debug for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityType")
            .field("name", &self.name)
            .field("fields", &self.fields)
            .field("strategy", &self.strategy)
            .field("versioning", &self.versioning)
            .finish()
    }
}

impl EntityType {
    /// A type named `name` with no fields yet, server-wins conflicts and
    /// versioning on.
    pub fn new(name: impl Into<String>) -> Self {
        EntityType {
            name: name.into(),
            fields: Vec::new(),
            strategy: ConflictStrategy::ServerWins,
            versioning: true,
        }
    }

    /// Adds a synced field.
    pub fn field(mut self, name: impl Into<String>, kind: FieldKind) -> Self {
        self.fields.push(FieldDef {
            name: name.into(),
            kind,
            excluded: false,
        });
        self
    }

    /// Adds a reference to a parent entity of type `target`.
    pub fn reference(self, name: impl Into<String>, target: impl Into<String>) -> Self {
        self.field(
            name,
            FieldKind::Reference {
                target: target.into(),
            },
        )
    }

    /// Adds a field that is stored locally but never synced.
    pub fn excluded_field(mut self, name: impl Into<String>, kind: FieldKind) -> Self {
        self.fields.push(FieldDef {
            name: name.into(),
            kind,
            excluded: true,
        });
        self
    }

    /// Sets the conflict strategy for this type.
    pub fn strategy(mut self, strategy: ConflictStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets a custom resolver as this type's strategy.
    pub fn resolver(self, resolver: Arc<dyn Resolver>) -> Self {
        self.strategy(ConflictStrategy::Custom(resolver))
    }

    /// Turns object version history on or off (on by default): with it on, a
    /// conflict's losing version is kept whole.
    pub fn versioning(mut self, on: bool) -> Self {
        self.versioning = on;
        self
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// All declared fields, in declaration order.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// The conflict strategy.
    pub fn conflict_strategy(&self) -> &ConflictStrategy {
        &self.strategy
    }

    /// Whether losing versions are kept in the object version history.
    pub fn versioning_enabled(&self) -> bool {
        self.versioning
    }

    /// The declared field named `name`.
    pub fn field_def(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Reference fields and their parent types.
    pub fn references(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().filter_map(|f| match &f.kind {
            FieldKind::Reference { target } => Some((f.name.as_str(), target.as_str())),
            _ => None,
        })
    }

    /// Whether the field named `name` is excluded from sync.
    pub fn is_excluded(&self, name: &str) -> bool {
        self.field_def(name).is_some_and(|f| f.excluded)
    }

    /// Digest of a version as it travels: [`Entity::content_digest`] with the
    /// excluded fields left out, so local-only values do not make two copies
    /// of the same synced version look different.
    pub fn sync_digest(&self, entity: &Entity) -> [u8; 32] {
        if self.fields.iter().any(|f| f.excluded) {
            let mut synced = entity.clone();
            synced.fields.retain(|name, _| !self.is_excluded(name));
            synced.content_digest()
        } else {
            entity.content_digest()
        }
    }

    /// The content tag of `entity` as a write ([`crate::clock::Stamp`]):
    /// from [`EntityType::sync_digest`], so local-only values do not change
    /// it.
    pub fn write_tag(&self, entity: &Entity) -> u32 {
        crate::entity::tag_of(&self.sync_digest(entity))
    }

    /// Checks a record against the declared fields: every field must be
    /// declared and hold a value of its kind.
    pub fn validate(&self, record: &Record) -> Result<(), WriteError> {
        for (name, value) in record {
            let Some(def) = self.field_def(name) else {
                return Err(WriteError::UnknownField {
                    entity_type: self.name.clone(),
                    field: name.clone(),
                });
            };
            if !def.kind.accepts(value) {
                return Err(WriteError::FieldKind {
                    entity_type: self.name.clone(),
                    field: name.clone(),
                    expected: format!("{:?}", def.kind),
                    found: value.kind_name(),
                });
            }
        }
        Ok(())
    }
}

/// All registered entity types, plus their parent-before-child order.
#[derive(Clone, Debug, Default)]
pub struct EntityRegistry {
    types: BTreeMap<String, EntityType>,
}

impl EntityRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`EntityType::sync_digest`] of a version of any type (the plain
    /// content digest for a type not registered here).
    pub fn sync_digest_of(&self, entity: &Entity) -> [u8; 32] {
        match self.get(&entity.key.entity_type) {
            Some(ty) => ty.sync_digest(entity),
            None => entity.content_digest(),
        }
    }

    /// Registers (or replaces) a type. Registration is all a new type needs to
    /// sync.
    pub fn register(&mut self, entity_type: EntityType) -> &mut Self {
        self.types.insert(entity_type.name.clone(), entity_type);
        self
    }

    /// Registers a type, builder style.
    pub fn with(mut self, entity_type: EntityType) -> Self {
        self.register(entity_type);
        self
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<&EntityType> {
        self.types.get(name)
    }

    /// The type named `name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&EntityType, WriteError> {
        self.get(name).ok_or_else(|| WriteError::UnknownType {
            entity_type: name.to_owned(),
        })
    }

    /// All types, in name order.
    pub fn types(&self) -> impl Iterator<Item = &EntityType> {
        self.types.values()
    }

    /// Depth of a type in the parent chain: 0 for a type with no parents, one
    /// more than its deepest parent otherwise. Packets carry changes in
    /// ascending depth, so parents come before children. Cycles are cut.
    pub fn depth(&self, name: &str) -> usize {
        self.depth_guarded(name, 0)
    }

    fn depth_guarded(&self, name: &str, guard: usize) -> usize {
        if guard > self.types.len() {
            return guard;
        }
        self.get(name)
            .map(|t| {
                t.references()
                    .filter(|(_, target)| *target != name)
                    .map(|(_, target)| 1 + self.depth_guarded(target, guard + 1))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }
}
