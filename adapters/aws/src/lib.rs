//! The AWS adapters of the sequencer's ports:
//!
//! - [`SqsQueue`]: [`Queue`](sequencer_ports::Queue) on Amazon SQS (standard and FIFO).
//! - [`DynamoStore`]: [`StateStore`](sequencer_ports::StateStore) on DynamoDB.
//!
//! Both pass the ports' conformance suite against LocalStack and DynamoDB Local (`tests/`).
//! SDK failures are classified once (`error.rs`): throttling, 5xx, transport failures and
//! timeouts are [`ErrorKind::Unavailable`](sequencer_ports::ErrorKind::Unavailable), other
//! refusals [`ErrorKind::Refused`](sequencer_ports::ErrorKind::Refused).
//!
//! Names are the ones `localstack/resources.py` creates: queues `<prefix>-submissions`,
//! `<prefix>-finalize`, `<prefix>-anchor.fifo` with `-dlq` dead-letter queues, tables
//! `<prefix>-<Table::name()>`.
//!
//! # Environment ([`Config::from_env`])
//!
//! | variable | default | used for |
//! |---|---|---|
//! | `SEQ_PREFIX` | `seq` | queue and table names |
//! | `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS` | unset (AWS) | read by the AWS SDK itself |
//! | `AWS_REGION`, credentials | SDK chain | read by the AWS SDK itself |
//!
//! Nothing here logs credentials; [`aws_sdk_config`] logs only endpoints and the region.

pub mod dynamo;
mod error;
pub mod sqs;

use std::time::Duration;

pub use dynamo::{DynamoStore, RequestCounts};
pub use sqs::{QueueKind, SqsQueue};

/// Default `SEQ_PREFIX`.
pub const DEFAULT_PREFIX: &str = "seq";

/// Adapter settings read from the environment (AWS endpoints, region and credentials are read by
/// the SDK itself, see [`aws_sdk_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Prefix of queue and table names (`SEQ_PREFIX`).
    pub prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Config {
    /// Reads `SEQ_PREFIX`; unset or empty takes the default.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Config::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            prefix: get("SEQ_PREFIX")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        }
    }
}

/// Loads the AWS SDK configuration from the standard environment (`AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_<SERVICE>`, region, credentials chain), with bounded connect and attempt
/// timeouts. The attempt timeout leaves room for a 20 s SQS long poll. Logs the endpoints and
/// region only.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    tracing::debug!(
        region = ?conf.region().map(|r| r.as_ref().to_string()),
        endpoint = ?std::env::var("AWS_ENDPOINT_URL").ok(),
        dynamodb_endpoint = ?std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok(),
        "AWS SDK configuration loaded"
    );
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_overrides() {
        assert_eq!(Config::from_lookup(|_| None), Config::default());
        assert_eq!(Config::from_lookup(|_| Some(" ".into())), Config::default());
        let c = Config::from_lookup(|k| (k == "SEQ_PREFIX").then(|| "t1".into()));
        assert_eq!(c.prefix, "t1");
    }
}
