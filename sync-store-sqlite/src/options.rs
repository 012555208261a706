//! Options for opening a store and for tracking a table: plain structs with
//! documented defaults and chained setters.

use std::time::Duration;

use sync_core::{ConflictStrategy, EntityType};

/// How hard a commit pushes data to disk before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `PRAGMA synchronous = FULL` (default): a commit survives power loss
    /// once it returns. The hub must use this: it acknowledges packets right
    /// after committing them.
    #[default]
    Full,
    /// `PRAGMA synchronous = NORMAL`: in WAL mode a commit survives a crash of
    /// the process but the last commits may be lost on power loss. A device
    /// node may choose it for speed: what it loses, the hub resends.
    Normal,
}

/// Options for [`crate::SqliteStore::open`].
#[derive(Clone, Debug, PartialEq)]
pub struct SqliteOptions {
    /// Commit durability (default [`Durability::Full`]).
    pub durability: Durability,
    /// How long a statement waits for another connection's lock before it
    /// fails (default 5 s).
    pub busy_timeout: Duration,
    /// Prepared statements kept per connection (default 256).
    pub statement_cache: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            statement_cache: 256,
        }
    }
}

impl SqliteOptions {
    /// Sets commit durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the busy timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

/// Default name of the sync key column added to tracked tables.
pub const DEFAULT_KEY_COLUMN: &str = "sync_uuid";
/// Default name of the modification time column (microseconds since the
/// UNIX epoch, UTC).
pub const DEFAULT_UPDATED_AT_COLUMN: &str = "updated_at";
/// Default name of the soft-delete flag column (0 or 1).
pub const DEFAULT_IS_DELETED_COLUMN: &str = "is_deleted";

/// How [`crate::SqliteStore::track_table`] maps a table to an entity type.
///
/// By default the entity type is named after the table and derived from its
/// columns (see the crate docs for the rules); the sync key column is
/// `sync_uuid`, the time column `updated_at` and the delete flag
/// `is_deleted`, each added when missing.
#[derive(Clone, Debug, Default)]
pub struct TrackOptions {
    /// Entity type name (default: the table name).
    pub entity_type_name: Option<String>,
    /// Sync key column (default [`DEFAULT_KEY_COLUMN`]).
    pub key_column: Option<String>,
    /// Modification time column (default [`DEFAULT_UPDATED_AT_COLUMN`]).
    pub updated_at_column: Option<String>,
    /// Soft-delete flag column (default [`DEFAULT_IS_DELETED_COLUMN`]).
    pub is_deleted_column: Option<String>,
    /// Columns stored locally but never sent.
    pub excluded: Vec<String>,
    /// Conflict strategy of the derived type (default server-wins).
    pub strategy: Option<ConflictStrategy>,
    /// Object version history on or off for the derived type (default on).
    pub versioning: Option<bool>,
    /// The caller's own entity type, used instead of deriving one: each of
    /// its fields must name a column; columns it does not declare stay local.
    pub entity_type: Option<EntityType>,
}

impl TrackOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the entity type (e.g. `DailyReport` for table `daily_report`).
    pub fn entity_type_name(mut self, name: impl Into<String>) -> Self {
        self.entity_type_name = Some(name.into());
        self
    }

    /// Names the sync key column.
    pub fn key_column(mut self, name: impl Into<String>) -> Self {
        self.key_column = Some(name.into());
        self
    }

    /// Names the modification time column.
    pub fn updated_at_column(mut self, name: impl Into<String>) -> Self {
        self.updated_at_column = Some(name.into());
        self
    }

    /// Names the soft-delete flag column.
    pub fn is_deleted_column(mut self, name: impl Into<String>) -> Self {
        self.is_deleted_column = Some(name.into());
        self
    }

    /// Keeps a column local: stored here, never sent.
    pub fn exclude(mut self, column: impl Into<String>) -> Self {
        self.excluded.push(column.into());
        self
    }

    /// Sets the derived type's conflict strategy.
    pub fn strategy(mut self, strategy: ConflictStrategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Turns the derived type's version history on or off.
    pub fn versioning(mut self, on: bool) -> Self {
        self.versioning = Some(on);
        self
    }

    /// Uses the caller's entity type instead of deriving one.
    pub fn with_entity_type(mut self, entity_type: EntityType) -> Self {
        self.entity_type = Some(entity_type);
        self
    }

    pub(crate) fn key(&self) -> &str {
        self.key_column.as_deref().unwrap_or(DEFAULT_KEY_COLUMN)
    }

    pub(crate) fn updated_at(&self) -> &str {
        self.updated_at_column
            .as_deref()
            .unwrap_or(DEFAULT_UPDATED_AT_COLUMN)
    }

    pub(crate) fn is_deleted(&self) -> &str {
        self.is_deleted_column
            .as_deref()
            .unwrap_or(DEFAULT_IS_DELETED_COLUMN)
    }
}
