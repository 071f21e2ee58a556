//! Where accepted submissions go: the `SubmissionSink` port with an SQS adapter for production
//! and an in-memory adapter for tests, local runs and benchmarks (ARCHITECTURE.md "ports").
//!
//! A sink only knows how to send one batch; batching, retries, backpressure, drain and spill live
//! in [`crate::dispatcher`] so both adapters get the same behaviour.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

pub mod memory;
pub mod sqs;

/// Most entries in one SQS `SendMessageBatch` call (an SQS limit).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Most payload bytes (bodies + attributes) in one `SendMessageBatch` call (an SQS limit).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

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
    /// Keeps a replayed spill file alive until every record of it is acknowledged or re-spilled.
    pub(crate) replay: Option<Arc<crate::spill::ReplayGuard>>,
}

/// Message attributes of one submission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    /// Client-chosen submission id (UUID text).
    pub submission_id: String,
    /// Remote libp2p peer id.
    pub peer: String,
    /// Data market contract address as sent.
    pub market: String,
    /// Epoch id.
    pub epoch: u64,
    /// Slot id.
    pub slot: u64,
    /// Project id.
    pub project: String,
}

impl Envelope {
    /// A fresh envelope with no buffer reservation.
    pub fn new(raw: Vec<u8>, meta: EnvelopeMeta) -> Self {
        Self {
            raw,
            meta,
            received_at: Instant::now(),
            hold: None,
            replay: None,
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
        let m = &self.meta;
        let all = [
            ("market", m.market.clone()),
            ("epoch", m.epoch.to_string()),
            ("slot", m.slot.to_string()),
            ("project", m.project.clone()),
            ("submission_id", m.submission_id.clone()),
            ("peer", m.peer.clone()),
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

/// Outcome of one entry of a batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    /// Stored by the queue.
    Ok,
    /// Not stored, worth retrying (throttled or a server fault for this entry).
    Retry(&'static str),
    /// Not stored and never will be (the queue blames the message); recorded to the rejected file.
    Reject(String),
}

/// A whole batch call failed. Every kind is retried: a queue that is down or misconfigured must
/// hold messages (and push back on peers), never drop them; `/readyz` turns false meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The queue asked us to slow down.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The queue had a server-side fault (5xx).
    #[error("server error: {0}")]
    Server(String),
    /// No response: connection refused, reset, timeout.
    #[error("transport error: {0}")]
    Transport(String),
    /// The queue refused the request itself (credentials, missing queue, bad request).
    #[error("client error: {0}")]
    Client(String),
}

impl SinkError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Throttled(_) => "throttled",
            SinkError::Server(_) => "server",
            SinkError::Transport(_) => "transport",
            SinkError::Client(_) => "client",
        }
    }
}

/// A queue that takes batches of submissions.
pub trait SubmissionSink: Send + Sync + 'static {
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// Sends at most [`MAX_BATCH_ENTRIES`] envelopes totalling at most [`MAX_BATCH_BYTES`];
    /// returns one result per envelope, in order.
    fn send_batch<'a>(
        &'a self,
        batch: &'a [Envelope],
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, SinkError>>;

    /// Whether the queue is reachable (for `/readyz`).
    fn ready(&self) -> BoxFuture<'_, Result<(), SinkError>>;
}
