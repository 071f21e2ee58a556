//! The AWS and IPFS adapters of the sequencer's ports (ARCHITECTURE.md, layer 3):
//!
//! - [`SqsQueue`]: [`Queue`](sequencer_functions::ports::Queue) on Amazon SQS (standard and FIFO).
//! - [`DynamoStore`]: [`StateStore`](sequencer_functions::ports::StateStore) on DynamoDB.
//! - [`KuboContent`]: [`ContentStore`](sequencer_functions::ports::ContentStore) on the Kubo HTTP
//!   RPC (`/api/v0/add`, `/api/v0/cat`; js-ipfs serves the same API).
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
//! | `IPFS_API_URL` | `http://127.0.0.1:5001` | the Kubo RPC base URL |
//! | `IPFS_TIMEOUT_MS` | `30000` | whole-request timeout of an IPFS `add`/`cat` |
//! | `IPFS_CAT_TIMEOUT_MS` | `2000` | how long the node may look for a CID before `get` says `None` |
//! | `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS` | unset (AWS) | read by the AWS SDK itself |
//! | `AWS_REGION`, credentials | SDK chain | read by the AWS SDK itself |
//!
//! Nothing here logs credentials; [`aws_sdk_config`] logs only endpoints and the region.

pub mod dynamo;
mod error;
pub mod kubo;
pub mod sqs;

use std::time::Duration;

pub use dynamo::DynamoStore;
pub use kubo::KuboContent;
pub use sqs::{QueueKind, SqsQueue};

/// Default `SEQ_PREFIX`.
pub const DEFAULT_PREFIX: &str = "seq";
/// Default `IPFS_API_URL` (Kubo's default API address).
pub const DEFAULT_IPFS_API_URL: &str = "http://127.0.0.1:5001";
/// Default `IPFS_TIMEOUT_MS`.
pub const DEFAULT_IPFS_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `IPFS_CAT_TIMEOUT_MS`.
pub const DEFAULT_IPFS_CAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Adapter settings read from the environment (AWS endpoints, region and credentials are read by
/// the SDK itself, see [`aws_sdk_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Prefix of queue and table names (`SEQ_PREFIX`).
    pub prefix: String,
    /// Kubo RPC base URL, without `/api/v0` (`IPFS_API_URL`).
    pub ipfs_api_url: String,
    /// Whole-request timeout of IPFS calls (`IPFS_TIMEOUT_MS`).
    pub ipfs_timeout: Duration,
    /// How long a `cat` may search for a CID (`IPFS_CAT_TIMEOUT_MS`).
    pub ipfs_cat_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
            ipfs_api_url: DEFAULT_IPFS_API_URL.to_string(),
            ipfs_timeout: DEFAULT_IPFS_TIMEOUT,
            ipfs_cat_timeout: DEFAULT_IPFS_CAT_TIMEOUT,
        }
    }
}

impl Config {
    /// Reads `SEQ_PREFIX`, `IPFS_API_URL`, `IPFS_TIMEOUT_MS`, `IPFS_CAT_TIMEOUT_MS`; unset or
    /// empty variables take the defaults, unparsable numbers too (with a warning).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Config::from_env`] over any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let text = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let millis = |k: &str, default: Duration| match text(k) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    tracing::warn!(variable = k, value = %v, "not a positive number of milliseconds; using the default");
                    default
                }
            },
        };
        Self {
            prefix: text("SEQ_PREFIX").unwrap_or(d.prefix),
            ipfs_api_url: text("IPFS_API_URL").unwrap_or(d.ipfs_api_url),
            ipfs_timeout: millis("IPFS_TIMEOUT_MS", d.ipfs_timeout),
            ipfs_cat_timeout: millis("IPFS_CAT_TIMEOUT_MS", d.ipfs_cat_timeout),
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
        let c = Config::from_lookup(|k| match k {
            "SEQ_PREFIX" => Some("t1".into()),
            "IPFS_API_URL" => Some("http://h:1".into()),
            "IPFS_TIMEOUT_MS" => Some("oops".into()),
            "IPFS_CAT_TIMEOUT_MS" => Some("250".into()),
            _ => None,
        });
        assert_eq!(c.prefix, "t1");
        assert_eq!(c.ipfs_api_url, "http://h:1");
        assert_eq!(c.ipfs_timeout, DEFAULT_IPFS_TIMEOUT);
        assert_eq!(c.ipfs_cat_timeout, Duration::from_millis(250));
    }
}
