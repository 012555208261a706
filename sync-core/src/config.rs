//! Engine configuration: a plain struct with a documented `Default` and
//! chained setters.

use crate::codec::Limits;
use crate::migration::Migration;
use crate::packet::Codec;
use crate::schema_version::{SchemaPolicy, SchemaVersion};
use crate::timer::RetryPolicy;

/// How an engine behaves. `EngineConfig::default()` is a sensible start.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Seed of the engine's only random source (UUIDv7 bits, jitter, record
    /// ids). Same seed and inputs, same bytes. Default 0; give each node its
    /// own.
    pub seed: u64,
    /// This node's schema version and the versions it accepts (default 1.0.0,
    /// accepting any 1.x).
    pub schema: SchemaPolicy,
    /// Compression for outgoing bodies (default zstd).
    pub codec: Codec,
    /// Limits for decoding incoming bytes.
    pub limits: Limits,
    /// Most entity changes per outgoing packet (default 5,000).
    pub batch_entities: usize,
    /// Target encoded size of an outgoing body before compression, in bytes
    /// (default 4 MiB). A single larger entity is still sent, alone.
    pub batch_bytes: usize,
    /// Unacknowledged packets remembered per peer (default 64; at least 2
    /// are kept whatever is set).
    pub max_in_flight: usize,
    /// Most packets sent in one message (a train, [`crate::packet::Envelope::Train`])
    /// when more changes are pending than fit in one packet (default 8;
    /// 1 sends one packet per message). Each packet of a train is a batch
    /// of its own, applied and acknowledged on its own, so a catch-up moves
    /// several batches per round trip. A train stops growing once its
    /// encoded packets reach [`EngineConfig::batch_bytes`] together, and
    /// holds fewer packets than [`EngineConfig::max_in_flight`], so that an
    /// acknowledgement of its last packet is always understood.
    pub pipeline: usize,
    /// Retry backoff.
    pub retry: RetryPolicy,
    /// Emit an [`crate::Event::Applied`] per applied remote change (default
    /// true).
    pub applied_events: bool,
    /// How far ahead of this node's clock a peer's clock may run, in
    /// milliseconds (default 30 minutes). A packet stamped further ahead is
    /// refused ([`crate::PeerError::ClockAhead`]) and a security event is
    /// recorded: a fast clock would win every last-writer-wins conflict.
    pub max_clock_offset_ms: i64,
    /// How long a change may wait for its parent, in milliseconds (default
    /// 24 hours). A change parked longer is applied without its parent at
    /// the next packet from its sender, and [`crate::Event::ParkExpired`] is
    /// emitted: its reference then names an entity this node does not hold
    /// (a store that enforces references keeps the row's reference empty,
    /// or keeps the version whole until the parent arrives). Nothing waits
    /// forever unseen.
    pub max_park_ms: i64,
    /// Most events kept waiting for [`crate::Engine::poll_event`] (default
    /// 10,000; at least 1 is kept whatever is set). When the queue is full
    /// the oldest event is dropped and [`crate::Engine::dropped_events`]
    /// counts it, so an application that never drains the queue (a server
    /// that only calls [`crate::Engine::respond_as`]) keeps bounded memory.
    pub max_events: usize,
    /// At the hub: the schema migrations it distributes to nodes whose
    /// schema is older, in version order (default none; see
    /// [`crate::migration`]).
    pub migrations: Vec<Migration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seed: 0,
            schema: SchemaPolicy::same_major(SchemaVersion::new(1, 0, 0)),
            codec: Codec::Zstd,
            limits: Limits::default(),
            batch_entities: 5_000,
            batch_bytes: 4 << 20,
            max_in_flight: 64,
            pipeline: 8,
            retry: RetryPolicy::default(),
            applied_events: true,
            max_clock_offset_ms: 30 * 60 * 1000,
            max_park_ms: 24 * 60 * 60 * 1000,
            max_events: 10_000,
            migrations: Vec::new(),
        }
    }
}

impl EngineConfig {
    /// Sets how long a change may wait for its parent, in milliseconds.
    pub fn max_park_ms(mut self, ms: i64) -> Self {
        self.max_park_ms = ms;
        self
    }

    /// Sets how far ahead of this node's clock a peer's may run, in
    /// milliseconds.
    pub fn max_clock_offset_ms(mut self, ms: i64) -> Self {
        self.max_clock_offset_ms = ms;
        self
    }

    /// Sets the random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets this node's schema version, accepting peers of the same major.
    pub fn schema_version(mut self, own: SchemaVersion) -> Self {
        self.schema = SchemaPolicy::same_major(own);
        self
    }

    /// Sets the lowest node schema version the hub accepts.
    pub fn min_peer_schema(mut self, minimum: SchemaVersion) -> Self {
        self.schema.minimum = minimum;
        self
    }

    /// Sets the outgoing codec.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets the decoding limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the batch limits: entities and encoded bytes per packet.
    pub fn batch(mut self, entities: usize, bytes: usize) -> Self {
        self.batch_entities = entities.max(1);
        self.batch_bytes = bytes.max(1);
        self
    }

    /// Sets how many packets one message may carry (see
    /// [`EngineConfig::pipeline`]; at least 1).
    pub fn pipeline(mut self, packets: usize) -> Self {
        self.pipeline = packets.max(1);
        self
    }

    /// Sets the retry backoff.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many events the queue keeps before the oldest are dropped
    /// (at least 1).
    pub fn max_events(mut self, max: usize) -> Self {
        self.max_events = max.max(1);
        self
    }

    /// Adds a migration the hub distributes (see [`crate::migration`]).
    /// Kept in version order; a migration to a version already held
    /// replaces it (a fixed script for a migration that failed somewhere).
    pub fn migration(mut self, migration: Migration) -> Self {
        self.migrations.retain(|m| m.version != migration.version);
        self.migrations.push(migration);
        self.migrations.sort_by_key(|m| m.version);
        self
    }

    /// The migrations a node at `version` still needs, oldest first: those
    /// to a later version of the same major, up to this node's own.
    pub fn migrations_after(&self, version: SchemaVersion) -> Vec<Migration> {
        self.migrations
            .iter()
            .filter(|m| {
                m.version > version
                    && m.version.major == version.major
                    && m.version <= self.schema.own
            })
            .cloned()
            .collect()
    }

    /// Turns per-change `Applied` events on or off.
    pub fn applied_events(mut self, on: bool) -> Self {
        self.applied_events = on;
        self
    }
}
