//! The directory of a hub or a node:
//!
//! ```text
//! DIR/syncplan.json   what this directory is: hub or node, ids, the hub's address,
//!                     conflict strategies per entity type (no secrets)
//! DIR/hub.db          the hub's SQLite database (application tables + _sync_* tables),
//! DIR/node.db           or the node's; tokens and keys live in its _sync_meta table
//! DIR/tls/            the hub's TLS certificate and key
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use syncplan::{
    ConflictStrategy, Engine, EngineConfig, EntityRegistry, NodeId, SqliteOptions, SqliteStore,
};

use super::failure::{Context, Failure, Result};

/// The file that says what a directory is.
pub const CONFIG_FILE: &str = "syncplan.json";

/// What `DIR/syncplan.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Hub or node.
    pub role: DirRole,
    /// This node's (or hub's) id.
    pub id: NodeId,
    /// Its code, e.g. `DESKTOP-1`.
    pub code: String,
    /// Its display name.
    pub name: String,
    /// Conflict strategy per entity type (types not named use server-wins).
    #[serde(default)]
    pub strategies: BTreeMap<String, Strategy>,
    /// The hub's settings (in a hub's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubSettings>,
    /// How a node reaches its hub (in a node's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
}

/// Whether a directory is a hub or a node.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirRole {
    /// The hub.
    Hub,
    /// A node.
    Node,
}

/// A hub's own settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HubSettings {
    /// Address `hub serve` listens on, e.g. `127.0.0.1:8443`.
    pub listen: String,
    /// The URL nodes use, e.g. `https://hub.example:8443`.
    pub url: String,
}

/// How a node reaches its hub.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Upstream {
    /// The hub's id.
    pub id: NodeId,
    /// The hub's code.
    pub code: String,
    /// The hub's name.
    pub name: String,
    /// The hub's URL.
    pub url: String,
    /// SHA-256 fingerprint of the hub's self-signed certificate, pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A conflict strategy that can be named in a config file or on the
/// command line.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The hub's version stands, on the hub and on the node (the default).
    ServerWins,
    /// The later write wins, with a deterministic tie-break.
    LastWriterWins,
    /// The hub's version stands and the other is kept as a copy under a new id.
    KeepBoth,
    /// Both are kept; the hub's version stays current until a person decides
    /// at the hub (`syncplan conflicts resolve`).
    Manual,
}

impl Strategy {
    /// The engine's strategy.
    pub fn engine(self) -> ConflictStrategy {
        match self {
            Strategy::ServerWins => ConflictStrategy::ServerWins,
            Strategy::LastWriterWins => ConflictStrategy::LastWriterWins,
            Strategy::KeepBoth => ConflictStrategy::KeepBoth,
            Strategy::Manual => ConflictStrategy::Manual,
        }
    }
}

impl Config {
    /// Reads `dir/syncplan.json`.
    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::msg(format!(
                    "{} is not a syncplan directory (no {CONFIG_FILE}); create one with `syncplan hub init {}` or `syncplan init {} --credentials FILE`, or pass --dir",
                    dir.display(),
                    dir.display(),
                    dir.display()
                ))
            } else {
                Failure::from(e)
            }
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; fix or recreate it", path.display()))
    }

    /// Writes `dir/syncplan.json` (through a temporary file, so a crash
    /// never leaves half a file).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(self).context("encoding the configuration")?;
        let temporary = dir.join(format!("{CONFIG_FILE}.tmp"));
        std::fs::write(&temporary, text + "\n")
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// The database file of this directory.
    pub fn database(&self, dir: &Path) -> PathBuf {
        dir.join(match self.role {
            DirRole::Hub => "hub.db",
            DirRole::Node => "node.db",
        })
    }

    /// The hub settings, or an error saying this is not a hub.
    pub fn hub_settings(&self, dir: &Path) -> Result<&HubSettings> {
        self.hub.as_ref().filter(|_| self.role == DirRole::Hub).ok_or_else(|| {
            Failure::msg(format!(
                "{} is a node's directory ({}); run this command in the hub's directory (--dir)",
                dir.display(),
                self.code
            ))
        })
    }
}

/// A hub's or node's directory, opened.
pub struct Opened {
    /// Where it is.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: Config,
    /// Its engine, on its SQLite database.
    pub engine: Engine<SqliteStore>,
}

impl Opened {
    /// Opens the directory's database and engine.
    pub fn open(dir: &Path) -> Result<Opened> {
        let config = Config::load(dir)?;
        let store = open_store(&config.database(dir))?;
        let registry = registry(&store, &config);
        let engine = Engine::open(store, registry, engine_config())
            .with_context(|| format!("opening the sync state in {}", dir.display()))?;
        Ok(Opened {
            dir: dir.to_path_buf(),
            config,
            engine,
        })
    }

    /// A peer's code, or its id when it is not registered here.
    pub fn code_of(&mut self, id: NodeId) -> String {
        if id == self.config.id {
            return self.config.code.clone();
        }
        self.engine
            .peer(id)
            .map_or_else(|_| id.to_string(), |p| p.info.code)
    }
}

/// Opens (or creates) a SQLite database with the default options:
/// `synchronous = FULL`, as the hub needs before it acknowledges.
pub fn open_store(path: &Path) -> Result<SqliteStore> {
    SqliteStore::open(path, SqliteOptions::default())
        .with_context(|| format!("opening the database {}", path.display()))
}

/// The tracked tables' entity types, with the configured strategies.
pub fn registry(store: &SqliteStore, config: &Config) -> EntityRegistry {
    let mut registry = EntityRegistry::new();
    for ty in store.registry().types() {
        let strategy = config
            .strategies
            .get(ty.name())
            .copied()
            .unwrap_or(Strategy::ServerWins);
        registry.register(ty.clone().strategy(strategy.engine()));
    }
    registry
}

/// The engine configuration for a CLI process: defaults, with a seed from
/// the operating system so that every run has its own.
pub fn engine_config() -> EngineConfig {
    EngineConfig::default().seed(random_u64())
}

/// Random bits from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    // The system source failing is not something a CLI can work around;
    // it falls back to the clock, which is still unique per run.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let now = syncplan::now().as_micros().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = now[i % now.len()] ^ (i as u8);
        }
    }
    bytes
}

fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

/// A new random node id.
pub fn new_node_id() -> NodeId {
    NodeId(uuid::Builder::from_random_bytes(random_bytes::<16>()).into_uuid())
}

/// Creates `dir` for a new hub or node; refuses one that already holds a
/// syncplan directory.
pub fn create_dir(dir: &Path) -> Result<()> {
    if dir.join(CONFIG_FILE).exists() {
        return Err(Failure::msg(format!(
            "{} already holds a syncplan directory; choose another directory or remove it first",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
