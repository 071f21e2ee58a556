//! What Lambda's SQS event source mapping does, for places where no Lambda runs (the local
//! runner, tests): receive up to 10 messages, build the `SqsEvent`, call the handler, delete what
//! succeeded, and leave each `batchItemFailures` entry for redelivery (made visible again after
//! `retry_delay`, standing in for the visibility timeout). Redrive to the dead-letter queue after
//! `maxReceiveCount` is the queue's own behaviour.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};

use sequencer_ports::{PortError, Queue, Received};

/// Poller settings (the event source mapping's).
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// Messages per batch (1..=10).
    pub batch_size: usize,
    /// Long-poll wait for the first message.
    pub wait: Duration,
    /// Delay before a failed message is visible again.
    pub retry_delay: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            batch_size: 10,
            wait: Duration::from_millis(100),
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Messages received.
    pub received: usize,
    /// Deleted after success.
    pub succeeded: usize,
    /// Left for redelivery.
    pub failed: usize,
}

/// The `SqsEvent` Lambda would pass for these messages.
pub fn sqs_event(queue_arn: &str, messages: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|r| {
            let mut m = SqsMessage::default();
            m.message_id = Some(r.message_id.clone());
            m.receipt_handle = Some(r.receipt.clone());
            m.body = Some(r.body.clone());
            let mut attrs = HashMap::new();
            attrs.insert(
                "ApproximateReceiveCount".to_string(),
                r.receive_count.to_string(),
            );
            if let Some(g) = &r.group_id {
                attrs.insert("MessageGroupId".to_string(), g.clone());
            }
            m.attributes = attrs;
            m.message_attributes = r
                .attributes
                .iter()
                .map(|(k, v)| {
                    let mut a = SqsMessageAttribute::default();
                    a.string_value = Some(v.clone());
                    a.data_type = Some("String".to_string());
                    (k.clone(), a)
                })
                .collect();
            m.event_source = Some("aws:sqs".to_string());
            m.event_source_arn = Some(queue_arn.to_string());
            m
        })
        .collect();
    event
}

/// One receive → handle → delete cycle.
pub async fn poll_once<F, Fut>(
    queue: &dyn Queue,
    cfg: &PollerConfig,
    handler: F,
) -> Result<PollReport, PortError>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let messages = queue.receive(cfg.batch_size.clamp(1, 10), cfg.wait).await?;
    if messages.is_empty() {
        return Ok(PollReport::default());
    }
    let arn = format!("arn:aws:sqs:local:000000000000:{}", queue.name());
    let response = handler(sqs_event(&arn, &messages)).await;
    let failed: std::collections::HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let mut done = Vec::new();
    let mut report = PollReport {
        received: messages.len(),
        ..PollReport::default()
    };
    for m in &messages {
        if failed.contains(m.message_id.as_str()) {
            queue.nack(&m.receipt, cfg.retry_delay).await?;
            report.failed += 1;
        } else {
            done.push(m.receipt.clone());
            report.succeeded += 1;
        }
    }
    queue.ack(&done).await?;
    Ok(report)
}

/// Polls until `queue` has been empty for one wait, or `max_polls` cycles ran (tests).
pub async fn drain<F, Fut>(
    queue: &dyn Queue,
    cfg: &PollerConfig,
    max_polls: usize,
    handler: F,
) -> Result<PollReport, PortError>
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    let mut total = PollReport::default();
    for _ in 0..max_polls {
        let r = poll_once(queue, cfg, &handler).await?;
        total.received += r.received;
        total.succeeded += r.succeeded;
        total.failed += r.failed;
        if r.received == 0 {
            break;
        }
    }
    Ok(total)
}
