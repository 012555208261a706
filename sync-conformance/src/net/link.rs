//! A faulty link between the hub and one node at a time: every message
//! follows a fault script (delivered, lost, duplicated, or held back and
//! delivered late), and the link logs what it saw.

use std::collections::VecDeque;

use bytes::Bytes;
use sync_core::{Engine, Store, SyncError, Timestamp};

use super::MAX_ROUNDS;
use crate::fixtures::hub_id;

/// What the link does with the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Delivered once.
    Deliver,
    /// Lost.
    Drop,
    /// Delivered twice.
    Duplicate,
    /// Held back and delivered after the next delivered message (reordering).
    Delay,
}

/// A message the link saw, in order.
#[derive(Clone, Debug)]
pub enum Seen {
    /// Node `i` handed a packet to the link.
    NodeSent(usize, Bytes),
    /// The hub applied a request from node `i` as new (not a duplicate).
    HubApplied(usize, Bytes),
    /// The hub built a reply for node `i`.
    HubSent(usize, Bytes),
    /// Node `i` applied a reply as new (not a duplicate).
    NodeApplied(usize, Bytes),
}

enum Held {
    Request(Bytes),
    Reply(Bytes),
}

/// A link between the hub and one node at a time, following a fault script
/// (every message after the script ends is delivered).
pub struct Link<S: Store> {
    script: VecDeque<Fault>,
    held: Vec<Held>,
    /// Every message seen.
    pub log: Vec<Seen>,
    /// Called on the receiving engine after every message it handled.
    pub check: Option<fn(&mut Engine<S>)>,
}

impl<S: Store> Link<S> {
    /// A link playing `script`, then delivering everything.
    pub fn new(script: impl IntoIterator<Item = Fault>) -> Self {
        Link {
            script: script.into_iter().collect(),
            held: Vec::new(),
            log: Vec::new(),
            check: None,
        }
    }

    /// A link that delivers every message once, in order.
    pub fn perfect() -> Self {
        Self::new([])
    }

    /// Appends faults to the script.
    pub fn push(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.script.extend(faults);
    }

    /// Whether the script still has faults to play.
    pub fn faulty(&self) -> bool {
        !self.script.is_empty()
    }

    /// One sync session of `node` (node `i`) with `hub` over this link,
    /// advancing time to each retry deadline; see
    /// [`Net::sync_faulty`](super::Net::sync_faulty).
    ///
    /// # Panics
    ///
    /// When the session takes more than [`MAX_ROUNDS`] steps (a hang), or a
    /// running session without a reply has no retry timer armed.
    pub fn session(
        &mut self,
        i: usize,
        hub: &mut Engine<S>,
        node: &mut Engine<S>,
        now: Timestamp,
    ) -> Result<Timestamp, SyncError> {
        node.start_sync(hub_id())?;
        let mut now = now;
        for _ in 0..MAX_ROUNDS {
            if let Some(packet) = node.poll_transmit(now)? {
                self.log.push(Seen::NodeSent(i, packet.bytes.clone()));
                self.request(i, hub, node, packet.bytes, now)?;
                continue;
            }
            if !node.is_syncing(hub_id()) {
                self.flush(i, hub, node, now)?;
                return Ok(now);
            }
            let deadline = node
                .poll_timeout()
                .expect("a running session without a reply has its retry timer armed");
            now = now.max(deadline);
            node.handle_timeout(now);
        }
        panic!("faulty sync session of node {i} does not end");
    }

    fn next(&mut self) -> Fault {
        self.script.pop_front().unwrap_or(Fault::Deliver)
    }

    /// How many copies of `message` arrive now, and its bytes; `None` when
    /// the script holds it back for later.
    fn arrive(&mut self, message: Held) -> Option<(usize, Bytes)> {
        let copies = match self.next() {
            Fault::Drop => 0,
            Fault::Deliver => 1,
            Fault::Duplicate => 2,
            Fault::Delay => {
                self.held.push(message);
                return None;
            }
        };
        let (Held::Request(bytes) | Held::Reply(bytes)) = message;
        Some((copies, bytes))
    }

    fn request(
        &mut self,
        i: usize,
        hub: &mut Engine<S>,
        node: &mut Engine<S>,
        bytes: Bytes,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some((copies, bytes)) = self.arrive(Held::Request(bytes)) else {
            return Ok(());
        };
        for _ in 0..copies {
            let reply = self.hub_handles(i, hub, &bytes, now)?;
            self.reply(i, hub, node, reply, now)?;
        }
        Ok(())
    }

    fn reply(
        &mut self,
        i: usize,
        hub: &mut Engine<S>,
        node: &mut Engine<S>,
        bytes: Bytes,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some((copies, bytes)) = self.arrive(Held::Reply(bytes)) else {
            return Ok(());
        };
        for _ in 0..copies {
            self.node_handles(i, node, &bytes, now)?;
        }
        if copies > 0 {
            self.flush(i, hub, node, now)?;
        }
        Ok(())
    }

    /// Delivers every held message, in the order they were held.
    fn flush(
        &mut self,
        i: usize,
        hub: &mut Engine<S>,
        node: &mut Engine<S>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        for held in std::mem::take(&mut self.held) {
            match held {
                Held::Request(bytes) => {
                    let reply = self.hub_handles(i, hub, &bytes, now)?;
                    self.node_handles(i, node, &reply, now)?;
                }
                Held::Reply(bytes) => self.node_handles(i, node, &bytes, now)?,
            }
        }
        Ok(())
    }

    /// What `Engine::respond` does, with the duplicate flag kept for the log.
    fn hub_handles(
        &mut self,
        i: usize,
        hub: &mut Engine<S>,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Bytes, SyncError> {
        let incoming = hub.handle_incoming(bytes, now)?;
        if !incoming.duplicate {
            self.log
                .push(Seen::HubApplied(i, Bytes::copy_from_slice(bytes)));
        }
        if let Some(check) = self.check {
            check(hub);
        }
        let reply = hub.build_packet(incoming.from, now)?.bytes;
        self.log.push(Seen::HubSent(i, reply.clone()));
        Ok(reply)
    }

    fn node_handles(
        &mut self,
        i: usize,
        node: &mut Engine<S>,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let incoming = node.handle_incoming(bytes, now)?;
        if !incoming.duplicate {
            self.log
                .push(Seen::NodeApplied(i, Bytes::copy_from_slice(bytes)));
        }
        if let Some(check) = self.check {
            check(node);
        }
        Ok(())
    }
}
