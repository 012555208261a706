//! What a sync session reports: [`SessionEvent`]s as it runs and a
//! [`SyncReport`] when it ends.

use std::time::Duration;

use sync_core::{ConflictEvent, EntityKey, Event, Incoming, NodeId, RejectedBy, SecurityEvent};

/// Something that happened during a session, in order, for a progress
/// display or a log ([`crate::Node::sync_with`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A packet was handed to the transport.
    Sent {
        /// Its number.
        packet_no: u64,
        /// Entity changes it carries.
        entity_count: u32,
        /// More changes are pending than fit in it.
        more: bool,
    },
    /// A packet from the hub was applied (or recognised as a duplicate).
    Received(Incoming),
    /// The engine reported something: progress, a conflict, an applied
    /// change, a security event, completion.
    Engine(Event),
    /// An exchange failed transiently; the session tries again after
    /// `after`, on the engine's backoff.
    Retrying {
        /// Failed exchanges so far in this session.
        attempt: u32,
        /// Wait before the next try.
        after: Duration,
        /// Why the exchange failed, for a person.
        reason: String,
    },
}

/// A change refused during a session ([`Event::ChangeRejected`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedNote {
    /// The entity.
    pub key: EntityKey,
    /// Which side refused it.
    pub by: RejectedBy,
    /// The store's reason.
    pub reason: String,
}

/// The outcome of one sync session ([`crate::Node::sync`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The hub the session ran against.
    pub peer: NodeId,
    /// Entity changes sent (a change re-sent after a lost reply counts
    /// again).
    pub sent: u64,
    /// Entity changes received in packets applied from the hub.
    pub received: u64,
    /// Received changes that were applied.
    pub applied: usize,
    /// Conflicts detected, each with how it was resolved and where the
    /// losing version was kept.
    pub conflicts: Vec<ConflictEvent>,
    /// Children parked until their parent arrives.
    pub parked: usize,
    /// Changes refused during the session, by this store or by the hub,
    /// each kept whole with the reason ([`sync_core::Engine::rejected`]).
    pub rejected: Vec<RejectedNote>,
    /// Exchanges with the hub (round trips that were attempted).
    pub exchanges: u32,
    /// Exchanges that failed transiently and were retried.
    pub retries: u32,
    /// Replies that were duplicates of packets already applied.
    pub duplicates: u32,
    /// The pair was re-initialized because one side was restored from an
    /// older copy of its store.
    pub reinitialized: bool,
    /// Security events the engine raised during the session.
    pub security: Vec<SecurityEvent>,
    /// Both sides have nothing pending and everything sent is
    /// acknowledged. `false` when the transport took the packet but brought
    /// no reply (a folder of files): the changes stay queued until a reply
    /// acknowledges them.
    pub complete: bool,
    /// How long the session took.
    pub elapsed: Duration,
    /// Schema migrations from the hub applied during the session
    /// ([`crate::NodeBuilder::migrate_with`]), by the version each brought.
    pub migrations: Vec<sync_core::SchemaVersion>,
    /// A migration that failed during the session.
    pub migration_failure: Option<sync_core::MigrationFailure>,
}

impl SyncReport {
    /// One line for a person: sent, received, conflicts, time.
    pub fn summary(&self) -> String {
        let state = if self.complete {
            "in sync"
        } else {
            "sent, awaiting the hub's reply"
        };
        let mut line = format!(
            "{state}: sent {} change(s), received {} ({} applied), {} conflict(s), {} rejected, {} retr{} in {:.2}s",
            self.sent,
            self.received,
            self.applied,
            self.conflicts.len(),
            self.rejected.len(),
            self.retries,
            if self.retries == 1 { "y" } else { "ies" },
            self.elapsed.as_secs_f64()
        );
        if let Some(last) = self.migrations.last() {
            line.push_str(&format!("; migrated to schema {last}"));
        }
        if let Some(failure) = &self.migration_failure {
            line.push_str(&format!("; blocked: {failure}"));
        }
        line
    }

    /// Folds one engine event into the report.
    pub(crate) fn record(&mut self, event: &Event) {
        match event {
            Event::Conflict(c) => self.conflicts.push(c.clone()),
            Event::Progress(p) => {
                self.sent = p.sent;
                self.received = p.received;
            }
            Event::Security(s) => self.security.push(s.clone()),
            Event::PairReinitialized { .. } => self.reinitialized = true,
            Event::MigrationApplied { version } => self.migrations.push(*version),
            Event::MigrationFailed { failure } => self.migration_failure = Some(failure.clone()),
            Event::ChangeRejected {
                key, by, reason, ..
            } => self.rejected.push(RejectedNote {
                key: key.clone(),
                by: *by,
                reason: reason.clone(),
            }),
            _ => {}
        }
    }

    /// Folds one applied packet into the report.
    pub(crate) fn record_incoming(&mut self, incoming: &Incoming) {
        if incoming.duplicate {
            self.duplicates += 1;
        }
        self.applied += incoming.applied;
        self.parked += incoming.parked;
        self.reinitialized |= incoming.reinitialized;
    }
}
