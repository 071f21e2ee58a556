//! Classifying AWS SDK errors: transient (throttling, 5xx, transport, timeouts) or not.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What an SDK error means to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Class {
    /// Throttling, a 5xx, a transport failure or a timeout: retry later.
    Transient(String),
    /// The request was refused (validation, missing resource, credentials).
    Refused(String),
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "LimitExceededException",
    "SlowDown",
    "KMS.ThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// Classifies an SDK error; the message never contains credentials (the SDK does not put them
/// in errors), only the code, message and the error chain.
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> Class
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let status = se.raw().status().as_u16();
            let msg = format!(
                "{code} (HTTP {status}): {}",
                se.err().message().unwrap_or("no message")
            );
            if status >= 500 || status == 429 || THROTTLING.contains(&code) {
                Class::Transient(msg)
            } else {
                Class::Refused(msg)
            }
        }
        SdkError::ConstructionFailure(_) => Class::Refused(DisplayErrorContext(err).to_string()),
        // Timeouts, dispatch (connect, I/O) failures, unparsable responses.
        _ => Class::Transient(DisplayErrorContext(err).to_string()),
    }
}

impl Class {
    /// The message.
    pub(crate) fn message(self) -> String {
        match self {
            Class::Transient(m) | Class::Refused(m) => m,
        }
    }
}
