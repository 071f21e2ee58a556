//! One accepted submission on its way to the queue: the exact `/collect` bytes, the metadata that
//! becomes SQS message attributes, the buffer reservation it holds, and the tickets that keep the
//! files it came from (a replayed spill file, a write-ahead-log segment) until it is settled.
//!
//! This module depends on nothing else in the crate but the metric handles, so [`crate::sink`],
//! [`crate::spill`] and [`crate::wal`] can all use it without importing each other.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

/// Fixed bookkeeping per buffered envelope (struct, allocations, channel slot), charged to the
/// buffer bound in addition to the bytes it carries.
pub const ENVELOPE_OVERHEAD: usize = 256;

/// One accepted submission on its way to the queue.
#[derive(Debug)]
pub struct Envelope {
    /// The `/collect` message exactly as received (36-byte UUID + JSON): the queue message body.
    pub raw: Vec<u8>,
    /// Metadata sent as message attributes.
    pub meta: EnvelopeMeta,
    /// When the message was read off the wire (latency metric).
    pub received_at: Instant,
    /// Buffer reservation; released (and gauges updated) when the envelope is dropped.
    pub(crate) hold: Option<Hold>,
    /// Durable copies of this message (replayed spill file, write-ahead-log segment), released
    /// when the envelope is dropped: settled if [`Envelope::settle`] was called, abandoned (the
    /// file is kept for the next start) otherwise.
    pub(crate) tickets: Vec<Ticket>,
}

/// Message attributes of one submission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    /// Submission id (UUID text): the client's on `/collect`, the content id on gossipsub.
    pub submission_id: String,
    /// The peer that sent it: the `/collect` stream's remote, or the gossip message's signed
    /// author.
    pub peer: String,
    /// Data market contract address as sent.
    pub market: String,
    /// Epoch id.
    pub epoch: u64,
    /// Slot id.
    pub slot: u64,
    /// Project id.
    pub project: String,
    /// Content id of the submission (`sequencer_core::gossip::content_id`), the same on both
    /// paths: lets the pipeline tie a submission's two receipts together. Empty in records written
    /// before it existed.
    #[serde(default)]
    pub content_id: String,
    /// The path it arrived by (`collect`, `gossipsub`); empty in older records.
    #[serde(default)]
    pub path: String,
    /// What the message is when it is no submission: `tally` for an ingress tally
    /// ([`crate::tally`]), sent beside the submissions and never buffered, logged or spilled.
    /// Empty for a submission (and never written to spill or WAL records then).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

impl Envelope {
    /// A fresh envelope with no buffer reservation.
    pub fn new(raw: Vec<u8>, meta: EnvelopeMeta) -> Self {
        Self {
            raw,
            meta,
            received_at: Instant::now(),
            hold: None,
            tickets: Vec::new(),
        }
    }

    /// Attaches a ticket for a durable copy of this message.
    pub fn add_ticket(&mut self, ticket: Ticket) {
        self.tickets.push(ticket);
    }

    /// Whether a durable copy (replay file, WAL segment) already covers this message.
    pub fn is_durable(&self) -> bool {
        !self.tickets.is_empty()
    }

    /// Marks the message as handed over for good (the queue acknowledged it, or it was written to
    /// the spill or rejected file): its durable copies may go once every other message in them
    /// is settled too.
    pub fn settle(&mut self) {
        for t in &mut self.tickets {
            t.settled = true;
        }
    }

    /// Memory this envelope holds while buffered: the body, the attribute strings and the
    /// struct itself. The buffer bound is charged this, not just the body, so a flood of tiny
    /// messages (`<uuid>{}` is 38 bytes) cannot hold many times the configured bytes.
    pub fn buffer_cost(&self) -> usize {
        let m = &self.meta;
        self.raw.len()
            + m.submission_id.len()
            + m.peer.len()
            + m.market.len()
            + m.project.len()
            + m.content_id.len()
            + m.path.len()
            + m.kind.len()
            + ENVELOPE_OVERHEAD
    }

    /// Bytes this entry adds to an SQS batch: body plus attribute names, types and values.
    pub fn wire_size(&self) -> usize {
        self.raw.len()
            + self
                .attributes()
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    }

    /// Message attributes; empty values are left out (SQS rejects empty attribute values).
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        self.meta.attributes()
    }
}

impl EnvelopeMeta {
    /// Message attributes; empty values are left out (SQS rejects empty attribute values). A
    /// message that is no submission (`kind` set) carries only its kind and market: it has no
    /// epoch, slot or submission id.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let m = self;
        if !m.kind.is_empty() {
            let all = [("kind", m.kind.clone()), ("market", m.market.clone())];
            return all.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        }
        let all = [
            ("market", m.market.clone()),
            ("epoch", m.epoch.to_string()),
            ("slot", m.slot.to_string()),
            ("project", m.project.clone()),
            ("submission_id", m.submission_id.clone()),
            ("peer", m.peer.clone()),
            ("content_id", m.content_id.clone()),
            ("path", m.path.clone()),
        ];
        all.into_iter().filter(|(_, v)| !v.is_empty()).collect()
    }
}

/// A buffer reservation held by an envelope.
#[derive(Debug)]
pub(crate) struct Hold {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) bytes: i64,
    pub(crate) buffer_messages: Gauge,
    pub(crate) buffer_bytes: Gauge,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.buffer_messages.dec();
        self.buffer_bytes.dec_by(self.bytes);
    }
}

/// Something that holds durable copies of messages (a replayed file, a WAL segment) and may
/// delete them once every message in them is settled.
pub trait Settlement: Send + Sync + fmt::Debug {
    /// One message of this holder was released: `settled` if it was handed over for good,
    /// otherwise abandoned (dropped unsettled, e.g. it could not be spilled), in which case the
    /// holder must keep its files for the next start.
    fn release(&self, settled: bool);
}

/// One message's claim on a [`Settlement`]; reports to it when dropped.
#[derive(Debug)]
pub struct Ticket {
    holder: Arc<dyn Settlement>,
    settled: bool,
}

impl Ticket {
    /// A claim on `holder`, unsettled until [`Envelope::settle`].
    pub fn new(holder: Arc<dyn Settlement>) -> Self {
        Self {
            holder,
            settled: false,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.holder.release(self.settled);
    }
}
