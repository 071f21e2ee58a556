//! Running a handler over the records of an SQS event the way Lambda's event source mapping
//! expects: every record in its own span, and only the records that failed in
//! `batchItemFailures`, so only those come back.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use tracing::Instrument;

use crate::pipeline::PipelineError;

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
