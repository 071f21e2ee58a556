//! [`Queue`] on Amazon SQS.
//!
//! - `send`: one `SendMessageBatch` (string message attributes; FIFO group and deduplication
//!   ids). Entries the service failed for a transient reason are resent (up to 3 tries in all);
//!   then the call fails as a whole, so a caller's retry may duplicate messages of a standard
//!   queue (at-least-once, as SQS itself).
//! - `receive`: `ReceiveMessage` long-polling `wait` (rounded up to whole seconds, at most 20),
//!   with the `ApproximateReceiveCount` and `MessageGroupId` system attributes and every message
//!   attribute.
//! - `ack`: `DeleteMessageBatch`; `nack`: `ChangeMessageVisibility`; `depth`:
//!   `GetQueueAttributes` (visible + in flight + delayed).
//! - `dead_letter`: sends the body with the original attributes plus `dead_letter_reason` to the
//!   dead-letter queue (on a FIFO DLQ with the message's group and its message id as
//!   deduplication id, so a retried dead-lettering does not duplicate), then deletes it here.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use sequencer_ports::{ErrorKind, OutMessage, PortError, Queue, Received, MAX_MESSAGES_PER_CALL};

use crate::error::{classify, Class};

/// Attribute added by [`Queue::dead_letter`].
pub const DEAD_LETTER_REASON: &str = "dead_letter_reason";
/// SQS's longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest message attribute value kept from a dead-letter reason (SQS limits the whole message,
/// attributes included, to 256 KiB; a reason is a short text).
const MAX_REASON_LEN: usize = 1024;
const SEND_TRIES: usize = 3;

/// The sequencer's queues (`localstack/resources.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// `<prefix>-submissions` (standard): the ingress writes, verify reads.
    Submissions,
    /// `<prefix>-finalize` (standard): tick writes, finalize reads.
    Finalize,
    /// `<prefix>-anchor.fifo` (FIFO, one group per signing key): finalize writes, anchor reads.
    Anchor,
}

impl QueueKind {
    /// Every queue.
    pub const ALL: [QueueKind; 3] = [
        QueueKind::Submissions,
        QueueKind::Finalize,
        QueueKind::Anchor,
    ];

    /// Base name.
    pub fn base(self) -> &'static str {
        match self {
            QueueKind::Submissions => "submissions",
            QueueKind::Finalize => "finalize",
            QueueKind::Anchor => "anchor",
        }
    }

    /// Whether the queue is FIFO.
    pub fn fifo(self) -> bool {
        matches!(self, QueueKind::Anchor)
    }

    /// The queue's name: `<prefix>-<base>[-dlq][.fifo]`, as `resources.py` names it.
    pub fn queue_name(self, prefix: &str, dlq: bool) -> String {
        format!(
            "{prefix}-{}{}{}",
            self.base(),
            if dlq { "-dlq" } else { "" },
            if self.fifo() { ".fifo" } else { "" }
        )
    }
}

/// One SQS queue (and, for [`Queue::dead_letter`], its dead-letter queue).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    name: String,
    fifo: bool,
    dlq_url: Option<String>,
}

fn refused(e: impl std::fmt::Display) -> PortError {
    PortError::queue(ErrorKind::Refused, e.to_string())
}

fn to_queue_error(c: Class) -> PortError {
    match c {
        Class::Transient(m) => PortError::queue(ErrorKind::Unavailable, m),
        Class::Refused(m) => PortError::queue(ErrorKind::Refused, m),
    }
}

fn string_attr(v: &str) -> Result<MessageAttributeValue, PortError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(refused)
}

/// Whole seconds for a long poll, rounded up, at most 20.
fn wait_seconds(wait: Duration) -> i32 {
    let w = wait.min(MAX_WAIT);
    let secs = w.as_secs() + u64::from(w.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(20)
}

impl SqsQueue {
    /// The queue at `url` (its name is the URL's last path segment; a `.fifo` name is FIFO). No
    /// dead-letter queue: add one with [`SqsQueue::with_dlq`].
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        let name = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Self {
            client,
            fifo: name.ends_with(".fifo"),
            name,
            url,
            dlq_url: None,
        }
    }

    /// Sets the dead-letter queue [`Queue::dead_letter`] sends to.
    pub fn with_dlq(mut self, dlq_url: impl Into<String>) -> Self {
        self.dlq_url = Some(dlq_url.into());
        self
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The dead-letter queue's URL, if set.
    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    /// Whether this is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The URL of the queue called `name` (`GetQueueUrl`).
    pub async fn queue_url(client: &Client, name: &str) -> Result<String, PortError> {
        let out = client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| to_queue_error(classify(&e)))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| PortError::queue(ErrorKind::Refused, format!("no URL for queue {name}")))
    }

    /// The queue called `name`, with the dead-letter queue of its redrive policy (none when it
    /// has no policy).
    pub async fn resolve(client: &Client, name: &str) -> Result<Self, PortError> {
        let url = Self::queue_url(client, name).await?;
        let attrs = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| to_queue_error(classify(&e)))?;
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .cloned();
        let mut q = Self::new(client.clone(), url);
        if let Some(policy) = policy {
            let v: serde_json::Value = serde_json::from_str(&policy).map_err(|e| {
                PortError::queue(
                    ErrorKind::Refused,
                    format!("queue {name}: redrive policy: {e}"),
                )
            })?;
            let arn = v
                .get("deadLetterTargetArn")
                .and_then(|a| a.as_str())
                .ok_or_else(|| {
                    PortError::queue(
                        ErrorKind::Refused,
                        format!("queue {name}: redrive policy without target"),
                    )
                })?;
            // arn:aws:sqs:<region>:<account>:<name>
            let dlq_name = arn.rsplit(':').next().unwrap_or_default();
            q = q.with_dlq(Self::queue_url(client, dlq_name).await?);
        }
        Ok(q)
    }

    /// One of the sequencer's queues, `kind.queue_name(prefix, false)`, with its DLQ.
    pub async fn for_kind(
        client: &Client,
        prefix: &str,
        kind: QueueKind,
    ) -> Result<Self, PortError> {
        let q = Self::resolve(client, &kind.queue_name(prefix, false)).await?;
        if q.dlq_url.is_some() {
            return Ok(q);
        }
        let dlq = Self::queue_url(client, &kind.queue_name(prefix, true)).await?;
        Ok(q.with_dlq(dlq))
    }

    fn entry(&self, id: usize, m: &OutMessage) -> Result<SendMessageBatchRequestEntry, PortError> {
        let mut b = SendMessageBatchRequestEntry::builder()
            .id(id.to_string())
            .message_body(&m.body);
        for (k, v) in &m.attributes {
            if v.is_empty() {
                return Err(PortError::queue(
                    ErrorKind::Refused,
                    format!(
                        "{}: attribute {k} is empty (SQS refuses empty values)",
                        self.name
                    ),
                ));
            }
            b = b.message_attributes(k, string_attr(v)?);
        }
        if self.fifo {
            let group = m.group_id.as_deref().ok_or_else(|| {
                PortError::queue(
                    ErrorKind::Refused,
                    format!("{}: FIFO message without a group id", self.name),
                )
            })?;
            b = b.message_group_id(group);
            if let Some(d) = &m.dedup_id {
                b = b.message_deduplication_id(d);
            }
        }
        b.build().map_err(refused)
    }

    async fn send_entries(
        &self,
        url: &str,
        mut entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<(), PortError> {
        let mut last = String::new();
        for attempt in 0..SEND_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| to_queue_error(classify(&e)))?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                return Err(PortError::queue(
                    ErrorKind::Refused,
                    format!(
                        "{}: entry {} refused: {} {}",
                        self.name,
                        f.id(),
                        f.code(),
                        f.message().unwrap_or("")
                    ),
                ));
            }
            last = failed
                .iter()
                .map(|f| format!("{}: {}", f.id(), f.code()))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(queue = %self.name, failed = %last, attempt, "SendMessageBatch entries failed; resending them");
            let retry: std::collections::HashSet<&str> = failed.iter().map(|f| f.id()).collect();
            entries.retain(|e| retry.contains(e.id()));
        }
        Err(PortError::queue(
            ErrorKind::Unavailable,
            format!(
                "{}: entries still failing after {SEND_TRIES} tries: {last}",
                self.name
            ),
        ))
    }

    fn received(&self, m: &Message) -> Result<Received, PortError> {
        let sys = m.attributes();
        let sys_attr = |n: &MessageSystemAttributeName| sys.and_then(|a| a.get(n)).cloned();
        let receive_count = match sys_attr(&MessageSystemAttributeName::ApproximateReceiveCount) {
            Some(c) => c.parse::<u32>().map_err(|e| {
                PortError::queue(
                    ErrorKind::Unavailable,
                    format!("{}: ApproximateReceiveCount {c:?}: {e}", self.name),
                )
            })?,
            None => {
                tracing::warn!(queue = %self.name, "message without ApproximateReceiveCount; assuming 1");
                1
            }
        };
        let mut attributes = BTreeMap::new();
        for (k, v) in m.message_attributes().into_iter().flatten() {
            match v.string_value() {
                Some(s) => {
                    attributes.insert(k.clone(), s.to_string());
                }
                None => {
                    tracing::warn!(queue = %self.name, attribute = %k, data_type = %v.data_type(), "non-string message attribute ignored")
                }
            }
        }
        let missing = |what: &str| {
            PortError::queue(
                ErrorKind::Unavailable,
                format!("{}: message without {what}", self.name),
            )
        };
        Ok(Received {
            message_id: m
                .message_id()
                .ok_or_else(|| missing("MessageId"))?
                .to_string(),
            receipt: m
                .receipt_handle()
                .ok_or_else(|| missing("ReceiptHandle"))?
                .to_string(),
            body: m.body().unwrap_or_default().to_string(),
            attributes,
            receive_count,
            group_id: sys_attr(&MessageSystemAttributeName::MessageGroupId),
        })
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: &[OutMessage]) -> Result<(), PortError> {
        if messages.is_empty() {
            return Ok(());
        }
        if messages.len() > MAX_MESSAGES_PER_CALL {
            return Err(PortError::queue(
                ErrorKind::Refused,
                format!(
                    "{}: {} messages in one send (at most {MAX_MESSAGES_PER_CALL})",
                    self.name,
                    messages.len()
                ),
            ));
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| self.entry(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        self.send_entries(&self.url, entries).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        let max = max.clamp(1, MAX_MESSAGES_PER_CALL);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(wait_seconds(wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| to_queue_error(classify(&e)))?;
        out.messages().iter().map(|m| self.received(m)).collect()
    }

    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        for chunk in receipts.chunks(MAX_MESSAGES_PER_CALL) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(refused)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| to_queue_error(classify(&e)))?;
            if let Some(f) = out.failed().first() {
                let msg = format!(
                    "{}: delete of entry {} failed: {} {}",
                    self.name,
                    f.id(),
                    f.code(),
                    f.message().unwrap_or("")
                );
                return Err(if f.sender_fault() {
                    PortError::queue(ErrorKind::Refused, msg)
                } else {
                    PortError::queue(ErrorKind::Unavailable, msg)
                });
            }
        }
        Ok(())
    }

    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        // SQS's visibility timeout is at most 12 hours.
        let secs = i32::try_from(delay.as_secs().min(43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| to_queue_error(classify(&e)))?;
        Ok(())
    }

    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), PortError> {
        let dlq = self.dlq_url.as_deref().ok_or_else(|| {
            PortError::queue(
                ErrorKind::Refused,
                format!("{}: no dead-letter queue configured", self.name),
            )
        })?;
        let mut attrs: HashMap<String, MessageAttributeValue> = HashMap::new();
        for (k, v) in &message.attributes {
            if !v.is_empty() {
                attrs.insert(k.clone(), string_attr(v)?);
            }
        }
        let mut reason: String = reason.chars().take(MAX_REASON_LEN).collect();
        if reason.is_empty() {
            reason = "unspecified".to_string();
        }
        attrs.insert(DEAD_LETTER_REASON.to_string(), string_attr(&reason)?);
        let mut b = SendMessageBatchRequestEntry::builder()
            .id("0")
            .message_body(&message.body)
            .set_message_attributes(Some(attrs));
        if dlq.ends_with(".fifo") {
            b = b
                .message_group_id(message.group_id.as_deref().unwrap_or("dead-letter"))
                .message_deduplication_id(&message.message_id);
        }
        self.send_entries(dlq, vec![b.build().map_err(refused)?])
            .await?;
        tracing::warn!(queue = %self.name, message_id = %message.message_id, reason = %reason, "message dead-lettered");
        self.ack(std::slice::from_ref(&message.receipt)).await
    }

    async fn depth(&self) -> Result<u64, PortError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| to_queue_error(classify(&e)))?;
        let mut total = 0u64;
        for (k, v) in out.attributes().into_iter().flatten() {
            total += v.parse::<u64>().map_err(|e| {
                PortError::queue(
                    ErrorKind::Unavailable,
                    format!("{}: {k:?} = {v:?}: {e}", self.name),
                )
            })?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_resources_py() {
        assert_eq!(
            QueueKind::Submissions.queue_name("seq", false),
            "seq-submissions"
        );
        assert_eq!(
            QueueKind::Finalize.queue_name("seq", true),
            "seq-finalize-dlq"
        );
        assert_eq!(
            QueueKind::Anchor.queue_name("seq", false),
            "seq-anchor.fifo"
        );
        assert_eq!(QueueKind::Anchor.queue_name("x", true), "x-anchor-dlq.fifo");
    }

    #[test]
    fn long_poll_rounds_up_and_caps() {
        assert_eq!(wait_seconds(Duration::ZERO), 0);
        assert_eq!(wait_seconds(Duration::from_millis(200)), 1);
        assert_eq!(wait_seconds(Duration::from_secs(2)), 2);
        assert_eq!(wait_seconds(Duration::from_secs(90)), 20);
    }
}
