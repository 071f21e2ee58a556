//! Errors as the API sends them: `{"error":{"code","message"}}` with a stable [`codes`] entry and
//! the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sequencer_handlers::query::QueryError;
use serde_json::json;

/// Stable error codes.
pub mod codes {
    /// The market is not a 20-byte hex address.
    pub const BAD_MARKET_ADDRESS: &str = "bad_market_address";
    /// A well-formed market this deployment does not sequence.
    pub const UNKNOWN_MARKET: &str = "unknown_market";
    /// The epoch is not a positive integer.
    pub const BAD_EPOCH: &str = "bad_epoch";
    /// No such epoch recorded.
    pub const UNKNOWN_EPOCH: &str = "unknown_epoch";
    /// The epoch is past the retention (`RECORD_TTL_DAYS`): its records expired.
    pub const EXPIRED_EPOCH: &str = "expired_epoch";
    /// The submission id is not a UUID.
    pub const BAD_SUBMISSION_ID: &str = "bad_submission_id";
    /// No receipt for this id in this epoch.
    pub const UNKNOWN_SUBMISSION: &str = "unknown_submission";
    /// The batch index is not a positive integer.
    pub const BAD_BATCH_INDEX: &str = "bad_batch_index";
    /// No batch of this index in this epoch (not finalized yet, or fewer batches).
    pub const UNKNOWN_BATCH: &str = "unknown_batch";
    /// The day is not a positive integer.
    pub const BAD_DAY: &str = "bad_day";
    /// No rewards computed for that day yet.
    pub const UNKNOWN_DAY: &str = "unknown_day";
    /// A query parameter is malformed or unknown.
    pub const BAD_QUERY: &str = "bad_query";
    /// No such route.
    pub const NOT_FOUND: &str = "not_found";
    /// Only GET (and HEAD) are served.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// A store or the chain failed, or the request took too long; retry.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Stored data is inconsistent (a bug or tampering).
    pub const INTERNAL: &str = "internal";
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// One of [`codes`].
    pub code: &'static str,
    /// In words (untrusted input in it is clipped).
    pub message: String,
}

impl ApiError {
    /// An error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with this code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with this code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::UnknownEpoch(_) => Self::not_found(codes::UNKNOWN_EPOCH, e.to_string()),
            QueryError::ExpiredEpoch { .. } => {
                Self::new(StatusCode::GONE, codes::EXPIRED_EPOCH, e.to_string())
            }
            QueryError::UnknownDay(_) => Self::not_found(codes::UNKNOWN_DAY, e.to_string()),
            QueryError::UnknownSubmission { .. } => {
                Self::not_found(codes::UNKNOWN_SUBMISSION, e.to_string())
            }
            QueryError::UnknownBatch { .. } => Self::not_found(codes::UNKNOWN_BATCH, e.to_string()),
            QueryError::Failed(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "proof API: a port failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::UNAVAILABLE,
                    e.to_string(),
                )
            }
            QueryError::Failed(e) => {
                tracing::error!(error = %e, "proof API: inconsistent data");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    codes::INTERNAL,
                    e.to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (
            self.status,
            [(axum::http::header::CACHE_CONTROL, crate::NO_STORE)],
            axum::Json(body),
        )
            .into_response()
    }
}

/// At most 80 characters of untrusted input, for messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}
