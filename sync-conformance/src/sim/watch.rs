//! [`Watch`]: follows one entity through a run and prints its history to
//! stderr (writes, packets that carry it, applies, conflicts), along with
//! restores and pair re-initializations, for diagnosing a failing seed.
//! `simulate --seed S --watch <id prefix>` turns it on; with the
//! environment variable `SIM_PACKETS` set, the header of every packet
//! received is printed too (number, acknowledgement, gap question, flags,
//! and whether it was a duplicate, skipped or re-initialized the pair).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use sync_core::codec::{self, Limits};
use sync_core::{Entity, EntityKey, Event, Incoming, PeerState, Value};

use super::scheduler::{SimTime, Who};

/// What to follow: entities whose id starts with a prefix.
#[derive(Clone, Debug)]
pub struct Watch {
    prefix: String,
    /// What each participant's store last held for each watched key seen
    /// so far, so that any change of it shows, whatever caused it.
    held: Rc<RefCell<BTreeMap<EntityKey, BTreeMap<Who, String>>>>,
}

impl Watch {
    /// Follows entities whose id (as text) starts with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Watch {
            prefix: prefix.into(),
            held: Rc::default(),
        }
    }

    /// The watched keys seen so far (in writes and packets).
    pub fn keys(&self) -> Vec<EntityKey> {
        self.held.borrow().keys().cloned().collect()
    }

    fn seen(&self, key: &EntityKey) {
        self.held.borrow_mut().entry(key.clone()).or_default();
    }

    /// What `who`'s store holds now for `key` (`None`: nothing); printed
    /// when it differs from what it held after the previous action.
    pub fn holds(&self, at: SimTime, who: Who, key: &EntityKey, now: Option<&Entity>) {
        let text = now.map(detailed).unwrap_or_else(|| "nothing".into());
        let mut held = self.held.borrow_mut();
        let per_who = held.entry(key.clone()).or_default();
        let before = per_who.get(&who).map(String::as_str).unwrap_or("nothing");
        if before != text {
            eprintln!("{} {who} now HOLDS {key}: {text}", time(at));
            per_who.insert(who, text);
        }
    }

    fn matches(&self, key: &EntityKey) -> bool {
        key.id.to_string().starts_with(&self.prefix)
    }

    /// A committed local write.
    pub fn write(&self, at: SimTime, who: Who, after: &Entity, replaced: &[&Entity]) {
        if self.matches(&after.key) {
            self.seen(&after.key);
            let replaced: Vec<String> = replaced.iter().map(|e| short(e)).collect();
            eprintln!(
                "{} {who} WRITES {} replacing [{}]",
                time(at),
                short(after),
                replaced.join(", ")
            );
        }
    }

    /// Events of one participant.
    pub fn events(&self, at: SimTime, who: Who, events: &[Event]) {
        for event in events {
            match event {
                Event::Applied(c) if self.matches(&c.entity.key) => {
                    eprintln!(
                        "{} {who} applies {:?} {}",
                        time(at),
                        c.kind,
                        short(&c.entity)
                    );
                }
                Event::Conflict(c) if self.matches(&c.key) => {
                    eprintln!(
                        "{} {who} conflict ({}) winner {:?} copy {:?} open {:?}",
                        time(at),
                        c.strategy,
                        c.winner,
                        c.copy,
                        c.open_conflict
                    );
                }
                Event::PairReinitialized { peer, reason } => {
                    eprintln!(
                        "{} {who} re-initializes the pair with {peer}: {reason}",
                        time(at)
                    );
                }
                _ => {}
            }
        }
    }

    /// A received packet (or train) that carries the watched entity.
    pub fn packet(&self, at: SimTime, receiver: Who, incoming: &Incoming, bytes: &[u8]) {
        let limits = Limits::default();
        let Ok(envelope) = codec::decode_envelope(bytes, &limits) else {
            return;
        };
        for packet in envelope.packets() {
            let h = &packet.header;
            let train = match envelope.packets().len() {
                1 => String::new(),
                n => format!(" (of a train of {n}, continues {})", h.continues),
            };
            if std::env::var_os("SIM_PACKETS").is_some() {
                eprintln!(
                    "{} {receiver} <- {} pkt {}{train} ack {} prev {:02x}{:02x} gap {} ents {} more {} resync {}: dup {} skip {} reinit {} applied {}",
                    time(at),
                    incoming.from,
                    h.packet_no,
                    h.ack_packet_no,
                    h.prev_digest[0],
                    h.prev_digest[1],
                    h.gap_check_packet_no,
                    h.entity_count,
                    h.more,
                    h.resync,
                    incoming.duplicate,
                    incoming.skipped,
                    incoming.reinitialized,
                    incoming.applied
                );
            }
            if h.resync {
                eprintln!(
                    "{} {receiver} receives packet {}{train} (ack {}) from {} asking for a resync: duplicate {}, reinitialized {}",
                    time(at),
                    h.packet_no,
                    h.ack_packet_no,
                    incoming.from,
                    incoming.duplicate,
                    incoming.reinitialized
                );
            }
            let changes = codec::decode_body(h, &packet.body, &limits).unwrap_or_default();
            for change in changes.iter().filter(|c| self.matches(&c.entity.key)) {
                self.seen(&change.entity.key);
                eprintln!(
                    "{} {receiver} receives packet {}{train} (ack {}) from {}: duplicate {}, skipped {}, carrying {}",
                    time(at),
                    h.packet_no,
                    h.ack_packet_no,
                    incoming.from,
                    incoming.duplicate,
                    incoming.skipped,
                    short(&change.entity)
                );
            }
        }
    }

    /// A node restored from backup number `pick`, with its counters after
    /// and the hub's view of it.
    pub fn restore(
        &self,
        at: SimTime,
        node: usize,
        pick: usize,
        own: &[PeerState],
        hub: Option<&PeerState>,
    ) {
        let counters = |p: &PeerState| (p.sent_packet_no, p.received_packet_no, p.acked_seq);
        eprintln!(
            "{} node {node} RESTORED from backup {pick}: its (sent, received, acked) {:?}, the hub's view {:?}",
            time(at),
            own.iter().map(counters).collect::<Vec<_>>(),
            hub.map(counters)
        );
    }
}

fn time(at: SimTime) -> String {
    format!("[{:>10.3}s]", at as f64 / 1e6)
}

/// The parts of a version that identify it in a log line.
fn short(entity: &Entity) -> String {
    let rev = entity
        .fields
        .get("rev")
        .and_then(Value::as_text)
        .unwrap_or("-");
    format!(
        "{} {rev}{} by {} at {}",
        entity.key,
        if entity.is_deleted { " (deleted)" } else { "" },
        entity.origin,
        entity.updated_at
    )
}

/// A version in full: its identity, fields, clock and field stamps.
fn detailed(entity: &Entity) -> String {
    format!(
        "{}\n      fields {:?}\n      clock {:?}\n      field stamps {:?}",
        short(entity),
        entity.fields,
        entity.clock,
        entity.field_stamps
    )
}
