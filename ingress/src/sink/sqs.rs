//! SQS adapter: one `SendMessageBatch` call per batch. The body of each message is the exact
//! `/collect` bytes; market, epoch, slot, project, submission id and peer go in attributes.
//!
//! The SDK's own retries are disabled: the dispatcher retries with jittered backoff and knows
//! about the drain deadline, which the SDK does not.

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::{EntryResult, Envelope, SinkError, SubmissionSink};

/// Connect timeout to the SQS endpoint: a fresh TCP+TLS connect in-region takes milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Timeout of one SQS call: a batch normally takes 10–50 ms; past this we treat the call as lost
/// and retry (at-least-once: the verifier is idempotent on submission records).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// SQS sink bound to one queue.
#[derive(Clone)]
pub struct SqsSink {
    client: Client,
    queue_url: String,
}

impl SqsSink {
    /// A sink for `queue_url` using `client`.
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Builds a client from the standard AWS environment (`AWS_ENDPOINT_URL`, region, credentials)
    /// with SDK retries off and bounded timeouts.
    pub async fn client_from_env() -> Client {
        Self::client_with_endpoint(None).await
    }

    /// Like [`Self::client_from_env`], with the endpoint overridden (tests put a proxy in front).
    pub async fn client_with_endpoint(endpoint: Option<&str>) -> Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(e) = endpoint {
            loader = loader.endpoint_url(e);
        }
        let conf = loader.load().await;
        Client::new(&conf)
    }

    /// Looks up a queue's URL by name.
    pub async fn resolve_queue_url(client: &Client, name: &str) -> Result<String, SinkError> {
        let out = client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(classify)?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| SinkError::Client(format!("no URL for queue {name}")))
    }

    /// The queue URL this sink writes to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    fn entry(index: usize, env: &Envelope) -> Result<SendMessageBatchRequestEntry, String> {
        let body = std::str::from_utf8(&env.raw).map_err(|e| format!("body is not UTF-8: {e}"))?;
        let mut b = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body);
        for (name, value) in env.attributes() {
            let v = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| e.to_string())?;
            b = b.message_attributes(name, v);
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// Entry error codes that blame the message whatever `SenderFault` says: LocalStack reports an
/// entry with characters SQS refuses as `InvalidMessageContents` with `SenderFault: false`, and
/// retrying it would resend a poison message until the drain deadline, every start.
fn is_message_fault(code: &str) -> bool {
    matches!(
        code,
        "InvalidMessageContents"
            | "InvalidParameterValue"
            | "InvalidAttributeValue"
            | "InvalidAttributeName"
    )
}

/// Maps an SDK error to a retry class.
fn classify<E, R>(err: SdkError<E, R>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_owned();
            let msg = format!("{code}: {}", se.err().message().unwrap_or(""));
            let status = format!("{:?}", se.raw());
            if code.contains("Throttl")
                || code.contains("RequestThrottled")
                || status.contains("StatusCode(429)")
            {
                SinkError::Throttled(msg)
            } else if code.contains("ServiceUnavailable")
                || code.contains("InternalError")
                || code.contains("InternalFailure")
            {
                SinkError::Server(msg)
            } else {
                SinkError::Client(msg)
            }
        }
        SdkError::ConstructionFailure(_) => SinkError::Client(format!("{err:?}")),
        SdkError::ResponseError(_) => SinkError::Server(format!("{err:?}")),
        _ => SinkError::Transport(format!("{err:?}")),
    }
}

impl SubmissionSink for SqsSink {
    fn name(&self) -> &'static str {
        "sqs"
    }

    fn send_batch<'a>(
        &'a self,
        batch: &'a [Envelope],
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, SinkError>> {
        async move {
            let mut results = vec![EntryResult::Ok; batch.len()];
            let mut entries = Vec::with_capacity(batch.len());
            for (i, env) in batch.iter().enumerate() {
                match Self::entry(i, env) {
                    Ok(e) => entries.push(e),
                    Err(reason) => results[i] = EntryResult::Reject(reason),
                }
            }
            if entries.is_empty() {
                return Ok(results);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(classify)?;
            for failed in out.failed() {
                let Some(slot) = failed
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| results.get_mut(i))
                else {
                    continue;
                };
                *slot = if failed.sender_fault() || is_message_fault(failed.code()) {
                    EntryResult::Reject(format!(
                        "{}: {}",
                        failed.code(),
                        failed.message().unwrap_or("")
                    ))
                } else {
                    EntryResult::Retry("entry_server_fault")
                };
            }
            Ok(results)
        }
        .boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        async move {
            self.client
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        }
        .boxed()
    }
}
