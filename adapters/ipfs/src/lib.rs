//! The IPFS adapter of the sequencer's content store port:
//! [`KuboContent`], [`ContentStore`](sequencer_ports::ContentStore) on the Kubo HTTP RPC
//! (`/api/v0/add`, `/api/v0/cat`; js-ipfs serves the same API). It passes the ports'
//! conformance suite against js-ipfs (`tests/`).
//!
//! [`cat_not_found`] is the one rule for "the node does not have this CID" in a `cat` answer;
//! every reader of a Kubo RPC in this repository (the adapter, `seqctl`) applies it.
//!
//! # Environment ([`Config::from_env`])
//!
//! | variable | default | used for |
//! |---|---|---|
//! | `IPFS_API_URL` | `http://127.0.0.1:5001` | the Kubo RPC base URL |
//! | `IPFS_TIMEOUT_MS` | `30000` | whole-request timeout of an IPFS `add`/`cat` |
//! | `IPFS_CAT_TIMEOUT_MS` | `2000` | how long the node may look for a CID before `get` says `None` |

pub mod kubo;

use std::time::Duration;

pub use kubo::{cat_not_found, KuboConfigError, KuboContent};

/// Default `IPFS_API_URL` (Kubo's default API address).
pub const DEFAULT_IPFS_API_URL: &str = "http://127.0.0.1:5001";
/// Default `IPFS_TIMEOUT_MS`.
pub const DEFAULT_IPFS_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `IPFS_CAT_TIMEOUT_MS`.
pub const DEFAULT_IPFS_CAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
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
            ipfs_api_url: DEFAULT_IPFS_API_URL.to_string(),
            ipfs_timeout: DEFAULT_IPFS_TIMEOUT,
            ipfs_cat_timeout: DEFAULT_IPFS_CAT_TIMEOUT,
        }
    }
}

impl Config {
    /// Reads `IPFS_API_URL`, `IPFS_TIMEOUT_MS`, `IPFS_CAT_TIMEOUT_MS`; unset or empty variables
    /// take the defaults, unparsable numbers too (with a warning).
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
            ipfs_api_url: text("IPFS_API_URL").unwrap_or(d.ipfs_api_url),
            ipfs_timeout: millis("IPFS_TIMEOUT_MS", d.ipfs_timeout),
            ipfs_cat_timeout: millis("IPFS_CAT_TIMEOUT_MS", d.ipfs_cat_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_overrides() {
        assert_eq!(Config::from_lookup(|_| None), Config::default());
        let c = Config::from_lookup(|k| match k {
            "IPFS_API_URL" => Some("http://h:1".into()),
            "IPFS_TIMEOUT_MS" => Some("oops".into()),
            "IPFS_CAT_TIMEOUT_MS" => Some("250".into()),
            _ => None,
        });
        assert_eq!(c.ipfs_api_url, "http://h:1");
        assert_eq!(c.ipfs_timeout, DEFAULT_IPFS_TIMEOUT);
        assert_eq!(c.ipfs_cat_timeout, Duration::from_millis(250));
    }
}
