//! The queue port: SQS semantics (at-least-once delivery, visibility timeout, receive count,
//! dead-letter queue; FIFO queues deliver one message group in order).
//!
//! Failures are [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (the service could not
//! be reached or failed) or [`ErrorKind::Refused`](crate::ErrorKind::Refused) (bad parameters, a
//! missing queue, credentials); both are retryable from the caller's point of view: the message
//! stays queued.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::PortError;

/// Most messages one `send` or `receive` call handles (an SQS limit).
pub const MAX_MESSAGES_PER_CALL: usize = 10;

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutMessage {
    /// Body text.
    pub body: String,
    /// String message attributes (no empty values).
    pub attributes: BTreeMap<String, String>,
    /// FIFO message group (required on FIFO queues, ignored elsewhere).
    pub group_id: Option<String>,
    /// FIFO deduplication id (a repeat within the dedup interval is dropped by the queue).
    pub dedup_id: Option<String>,
}

impl OutMessage {
    /// A plain message with a body.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Adds an attribute.
    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Self {
        self.attributes.insert(k.to_string(), v.into());
        self
    }

    /// Sets the FIFO group and deduplication ids.
    pub fn fifo(mut self, group: impl Into<String>, dedup: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self.dedup_id = Some(dedup.into());
        self
    }
}

/// A received message, invisible to other receivers until acknowledged or its visibility
/// timeout passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Queue-assigned message id (stable across redeliveries).
    pub message_id: String,
    /// Handle for ack/nack of this delivery.
    pub receipt: String,
    /// Body text.
    pub body: String,
    /// String message attributes.
    pub attributes: BTreeMap<String, String>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// FIFO message group, if any.
    pub group_id: Option<String>,
}

/// A message queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Name for logs and metrics.
    fn name(&self) -> &str;

    /// Sends at most [`MAX_MESSAGES_PER_CALL`] messages; all or an error.
    async fn send(&self, messages: &[OutMessage]) -> Result<(), PortError>;

    /// Receives at most `max` messages, waiting up to `wait` for the first one. Each becomes
    /// invisible for the queue's visibility timeout.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError>;

    /// Deletes delivered messages (processing succeeded).
    async fn ack(&self, receipts: &[String]) -> Result<(), PortError>;

    /// Makes a delivered message visible again after `delay` (processing failed; retry).
    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), PortError>;

    /// Moves a delivered message to the dead-letter queue with a reason (it can never succeed),
    /// and deletes it here.
    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), PortError>;

    /// Messages waiting (visible or in flight), approximately.
    async fn depth(&self) -> Result<u64, PortError>;
}

/// Sends any number of messages in calls of at most [`MAX_MESSAGES_PER_CALL`].
pub async fn send_all(queue: &dyn Queue, messages: &[OutMessage]) -> Result<(), PortError> {
    for chunk in messages.chunks(MAX_MESSAGES_PER_CALL) {
        queue.send(chunk).await?;
    }
    Ok(())
}
