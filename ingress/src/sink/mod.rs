//! Where accepted submissions go: the `SubmissionSink` port with an SQS adapter for production
//! and an in-memory adapter for tests, local runs and benchmarks (docs/architecture.md, "The layers").
//!
//! A sink only knows how to send one batch; batching, retries, backpressure, drain and spill live
//! in [`crate::dispatcher`] so both adapters get the same behaviour.

use futures::future::BoxFuture;

pub use crate::envelope::{Envelope, EnvelopeMeta};

pub mod memory;
pub mod sqs;

/// Most entries in one SQS `SendMessageBatch` call (an SQS limit).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Most payload bytes (bodies + attributes) in one `SendMessageBatch` call (an SQS limit).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

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
