//! One sync session, as a few named steps around the engine:
//! [`step`] (timers, then the next packet), the exchange on the transport,
//! [`receive`] (apply the replies), and a wait for the retry timer when
//! there is nothing to send yet.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sync_core::{
    Engine, Event, Incoming, NodeId, Store, SyncError, Timestamp, Transmit, TransportError,
};
use tracing::{Instrument, debug, info, info_span};

use super::Node;
use crate::driver_error::DriverError;
use crate::report::{SessionEvent, SyncReport};
use crate::time;

/// What the engine wants after its timers fired.
struct Step {
    transmit: Option<Transmit>,
    syncing: bool,
    deadline: Option<Timestamp>,
    events: Vec<Event>,
}

/// What applying the replies of one exchange gave.
struct Received {
    results: Vec<Result<Incoming, SyncError>>,
    events: Vec<Event>,
}

/// What the session does after an exchange.
enum Next {
    Continue,
    /// The transport took the packet and brought no reply.
    AwaitingReply,
    /// A transient failure: wait for the retry timer.
    Retry(String, Failure),
}

enum Failure {
    Transport(TransportError),
    Refusal(SyncError),
}

impl Failure {
    /// How long the hub asked to wait before the next request.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Transport(e) => e.retry_after_ms().map(Duration::from_millis),
            Failure::Refusal(_) => None,
        }
    }
}

/// Runs a session of `node` with its hub; see [`Node::sync`].
pub(super) async fn run<S: Store + Send + 'static>(
    node: &Node<S>,
    mut observer: impl FnMut(&SessionEvent) + Send,
) -> Result<SyncReport, DriverError> {
    let hub = node.inner.hub;
    let (local, hub_code) = node
        .inner
        .engine
        .run(move |engine| -> Result<_, SyncError> {
            let hub_code = engine.peer(hub)?.info.code;
            engine.start_sync(hub)?;
            Ok((engine.local_node().code.clone(), hub_code))
        })
        .await??;
    let span = info_span!("sync_session", node = %local, peer = %hub_code);
    let mut session = Session {
        node,
        report: SyncReport {
            peer: hub,
            ..SyncReport::default()
        },
        failures: 0,
        observer: &mut observer,
    };
    let started = Instant::now();
    let result = session.drive().instrument(span.clone()).await;
    session.report.elapsed = started.elapsed();
    let _entered = span.enter();
    match &result {
        Ok(()) => info!(summary = %session.report.summary(), "session ended"),
        Err(e) => info!(error = %e, "session failed"),
    }
    result.map(|()| session.report)
}

struct Session<'a, S: Store, O: FnMut(&SessionEvent) + Send> {
    node: &'a Node<S>,
    report: SyncReport,
    /// Consecutive failed exchanges.
    failures: u32,
    observer: &'a mut O,
}

impl<S: Store + Send + 'static, O: FnMut(&SessionEvent) + Send> Session<'_, S, O> {
    async fn drive(&mut self) -> Result<(), DriverError> {
        let hub = self.node.inner.hub;
        loop {
            let step = self
                .node
                .inner
                .engine
                .run(move |engine| step(engine, hub, time::now()))
                .await??;
            self.events(&step.events);
            match step.transmit {
                Some(transmit) => match self.exchange(transmit).await? {
                    Next::Continue => {}
                    Next::AwaitingReply => return Ok(()),
                    Next::Retry(reason, failure) => {
                        let asked = failure.retry_after();
                        self.failed(reason, failure, step.deadline)?;
                        // The hub said when to come back (`Retry-After`):
                        // not before, even if the engine's timer fires sooner.
                        if let Some(wait) = asked {
                            tokio::time::sleep(wait).await;
                        }
                    }
                },
                None if !step.syncing => {
                    if self.migrate().await? {
                        continue;
                    }
                    self.report.complete = true;
                    return Ok(());
                }
                None => match step.deadline {
                    Some(deadline) => tokio::time::sleep(time::until(deadline, time::now())).await,
                    // Nothing to send and no timer: nothing more will happen.
                    None => return Ok(()),
                },
            }
        }
    }

    /// Runs the node's migrator when the hub's migrations are pending;
    /// whether the schema version moved on (the session then goes on).
    async fn migrate(&mut self) -> Result<bool, DriverError> {
        let Some(migrator) = self.node.inner.migrator.clone() else {
            return Ok(false);
        };
        let hub = self.node.inner.hub;
        let (moved, events) = self
            .node
            .inner
            .engine
            .run(move |engine| -> Result<_, SyncError> {
                if engine.pending_migrations()?.is_empty() {
                    return Ok((false, Vec::new()));
                }
                let before = engine.schema_version();
                migrator(engine, time::now())?;
                let moved = engine.schema_version() > before;
                if moved {
                    engine.start_sync(hub)?;
                }
                Ok((moved, drain(engine)))
            })
            .await??;
        self.events(&events);
        Ok(moved)
    }

    /// One round trip: the packet out, the replies applied.
    async fn exchange(&mut self, transmit: Transmit) -> Result<Next, DriverError> {
        let span = tracing::debug_span!("exchange", packet_no = transmit.packet_no);
        self.emit(SessionEvent::Sent {
            packet_no: transmit.packet_no,
            entity_count: transmit.entity_count,
            more: transmit.more,
        });
        self.report.exchanges += 1;
        let replies = match self.send(transmit.bytes).instrument(span.clone()).await {
            Ok(replies) => replies,
            Err(e) if e.is_transient() => {
                return Ok(Next::Retry(e.to_string(), Failure::Transport(e)));
            }
            Err(e) => return Err(DriverError::Transport(e)),
        };
        if replies.is_empty() {
            debug!(parent: &span, "no reply: the packet waits for an acknowledgement");
            return Ok(Next::AwaitingReply);
        }
        let received = self
            .node
            .inner
            .engine
            .run(move |engine| receive(engine, &replies, time::now()))
            .await?;
        let mut next = Next::Continue;
        for result in received.results {
            match result {
                Ok(incoming) => {
                    self.failures = 0;
                    self.report.record_incoming(&incoming);
                    self.emit(SessionEvent::Received(incoming));
                }
                Err(e) if e.is_retryable() => {
                    next = Next::Retry(e.to_string(), Failure::Refusal(e))
                }
                Err(e) => {
                    self.events(&received.events);
                    return Err(e.into());
                }
            }
        }
        self.events(&received.events);
        Ok(next)
    }

    /// Hands `bytes` to the transport, bounded by the exchange timeout.
    async fn send(&self, bytes: Bytes) -> Result<Vec<Bytes>, TransportError> {
        let timeout = self.node.inner.config.exchange_timeout;
        match tokio::time::timeout(timeout, self.node.inner.transport.exchange(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                target: "the hub".into(),
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Counts a transient failure: gives up after the configured attempts,
    /// otherwise the next loop waits for the engine's retry timer.
    fn failed(
        &mut self,
        reason: String,
        failure: Failure,
        deadline: Option<Timestamp>,
    ) -> Result<(), DriverError> {
        self.failures += 1;
        let attempts = self.failures;
        if attempts >= self.node.inner.config.max_attempts {
            return Err(match failure {
                Failure::Transport(last) => DriverError::GaveUp { attempts, last },
                Failure::Refusal(last) => DriverError::KeptRefusing { attempts, last },
            });
        }
        self.report.retries += 1;
        let after = deadline
            .map_or(Duration::ZERO, |d| time::until(d, time::now()))
            .max(failure.retry_after().unwrap_or_default());
        info!(attempt = attempts, after_ms = after.as_millis() as u64, %reason, "exchange failed, retrying");
        self.emit(SessionEvent::Retrying {
            attempt: attempts,
            after,
            reason,
        });
        Ok(())
    }

    fn events(&mut self, events: &[Event]) {
        for event in events {
            self.report.record(event);
            if let Event::Conflict(c) = event {
                info!(entity = %c.key, strategy = %c.strategy, winner = ?c.winner, "conflict resolved");
            }
            self.emit(SessionEvent::Engine(event.clone()));
        }
        self.node.publish(events);
    }

    fn emit(&mut self, event: SessionEvent) {
        (self.observer)(&event);
    }
}

/// Fires due timers, then takes the next packet the engine wants sent.
fn step<S: Store>(engine: &mut Engine<S>, hub: NodeId, now: Timestamp) -> Result<Step, SyncError> {
    engine.handle_timeout(now);
    let transmit = engine.poll_transmit(now)?.filter(|t| t.to == hub);
    Ok(Step {
        transmit,
        syncing: engine.is_syncing(hub),
        deadline: engine.poll_timeout(),
        events: drain(engine),
    })
}

/// Applies each reply in order.
fn receive<S: Store>(engine: &mut Engine<S>, replies: &[Bytes], now: Timestamp) -> Received {
    let results = replies
        .iter()
        .map(|reply| engine.handle_incoming(reply, now))
        .collect();
    Received {
        results,
        events: drain(engine),
    }
}

/// Every event the engine has queued.
pub(super) fn drain<S: Store>(engine: &mut Engine<S>) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}
