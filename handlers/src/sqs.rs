//! Running a handler over the records of an SQS event the way Lambda's event source mapping
//! expects: every record in its own span, and only the records that failed in
//! `batchItemFailures`, so only those come back; [`each_record_held`] also holds the messages
//! while it works and gives a failed one back after a short, growing delay ([`Redelivery`]).

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::{join_all, select, Either};
use sequencer_ports::Queue;
use tracing::Instrument;

use crate::pipeline::{Pipeline, PipelineError};

/// The Lambda event types the handlers take and return (`aws_lambda_events`), for callers that
/// do not depend on that crate themselves.
pub mod events {
    pub use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
}

/// Runs `f` on every record of an SQS batch, concurrently, each in a span with its message id;
/// returns the ids of the records that failed (`batchItemFailures`), so only those come back.
pub async fn each_record<'a, F, Fut>(
    event: &'a SqsEvent,
    stage: &'static str,
    f: F,
) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: std::future::Future<Output = Result<(), PipelineError>> + 'a,
{
    let runs = event.records.iter().map(|m| {
        let id = m.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("record", stage, message_id = %id);
        let fut = f(m);
        async move { (id, fut.await) }.instrument(span)
    });
    let mut response = SqsBatchResponse::default();
    for (id, result) in join_all(runs).await {
        if let Err(e) = result {
            tracing::warn!(stage, message_id = %id, error = %e, retryable = e.is_retryable(), "record failed; it will be redelivered");
            response.batch_item_failures.push(failure(id));
        }
    }
    response
}

/// The `batchItemFailures` entry of the record with this message id.
pub fn failure(message_id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id;
    f
}

/// The body of a record (`""` when absent).
pub fn body(m: &SqsMessage) -> &str {
    m.body.as_deref().unwrap_or("")
}

/// When a job a handler failed comes back, and how long a message is held while it is worked
/// on: the queue's visibility timeout (6 × the function's timeout in the Terraform module) is
/// only the last resort.
///
/// While a handler works on a batch it keeps every message of it invisible for [`hold`]
/// (`ChangeMessageVisibility`, renewed every third of it), so an invocation that crashes or
/// times out gives its messages back within `hold`, not after the visibility timeout. A message
/// that failed gets the visibility [`Redelivery::delay`] for its receive count: `first`, times
/// `factor` per receive, at most `max`. On a FIFO queue this is also what unblocks the group: a
/// group is blocked while any of its messages is in flight.
///
/// [`hold`]: Redelivery::hold
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redelivery {
    /// Visibility a message is held at while the handler works on it.
    pub hold: Duration,
    /// Delay after the first failed delivery.
    pub first: Duration,
    /// Growth per further delivery.
    pub factor: u32,
    /// Longest delay.
    pub max: Duration,
}

impl Redelivery {
    /// The visibility a message gets after failing its `receives`-th delivery (1-based).
    pub fn delay(&self, receives: u32) -> Duration {
        let mut d = self.first;
        for _ in 1..receives.max(1) {
            d = d.saturating_mul(self.factor.max(1));
            if d >= self.max {
                break;
            }
        }
        d.min(self.max)
    }
}

/// The record's `ApproximateReceiveCount` (1 when absent).
pub fn receives(m: &SqsMessage) -> u32 {
    m.attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Runs `work` while holding `records` invisible for `hold` (set at once, renewed every third
/// of it on the pipeline's clock); a renewal that fails is logged and tried again next time.
pub async fn holding<T>(
    p: &Pipeline,
    queue: &dyn Queue,
    records: &[SqsMessage],
    hold: Duration,
    work: impl Future<Output = T>,
) -> T {
    let receipts: Vec<&str> = records
        .iter()
        .filter_map(|m| m.receipt_handle.as_deref())
        .collect();
    let renew = || async {
        for r in &receipts {
            if let Err(e) = queue.nack(r, hold).await {
                tracing::warn!(error = %e, "could not hold a message while working on it");
            }
        }
    };
    // Held before the work's first call: a crash there gives the messages back within `hold`.
    renew().await;
    let heartbeat = async {
        #[allow(clippy::infinite_loop)]
        loop {
            p.clock.sleep(hold / 3).await;
            renew().await;
        }
    };
    let (work, heartbeat) = (std::pin::pin!(work), std::pin::pin!(heartbeat));
    match select(work, heartbeat).await {
        Either::Left((t, _)) => t,
        // The heartbeat never ends; were it to, the work still is awaited.
        Either::Right(((), work)) => work.await,
    }
}

/// Gives a failed record back to `queue` after `redelivery`'s delay for its receive count
/// (logged when the queue refuses: it then comes back after what it was held at).
pub async fn retry_later(queue: &dyn Queue, m: &SqsMessage, redelivery: &Redelivery) -> Duration {
    let delay = redelivery.delay(receives(m));
    if let Some(r) = m.receipt_handle.as_deref() {
        if let Err(e) = queue.nack(r, delay).await {
            tracing::warn!(error = %e, "could not set the retry delay of a failed message");
        }
    }
    delay
}

/// [`each_record`] for a handler that holds its messages and gives failed ones back after
/// `redelivery`'s short, growing delay ([`holding`], [`retry_later`]).
pub async fn each_record_held<'a, F, Fut>(
    p: &Pipeline,
    queue: &dyn Queue,
    redelivery: &Redelivery,
    event: &'a SqsEvent,
    stage: &'static str,
    f: F,
) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: std::future::Future<Output = Result<(), PipelineError>> + 'a,
{
    let runs = event.records.iter().map(|m| {
        let id = m.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("record", stage, message_id = %id);
        let fut = f(m);
        async move { (m, fut.await) }.instrument(span)
    });
    let results = holding(p, queue, &event.records, redelivery.hold, join_all(runs)).await;
    let mut response = SqsBatchResponse::default();
    for (m, result) in results {
        if let Err(e) = result {
            let delay = retry_later(queue, m, redelivery).await;
            let id = m.message_id.clone().unwrap_or_default();
            tracing::warn!(stage, message_id = %id, error = %e, retryable = e.is_retryable(), receives = receives(m), delay_s = delay.as_secs(), "record failed; it will be redelivered after the delay");
            response.batch_item_failures.push(failure(id));
        }
    }
    response
}
