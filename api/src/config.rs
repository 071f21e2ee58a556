//! The status page's settings, from environment variables with documented defaults. Read once
//! at start (the `proof` Lambda's cold start, the runner); a malformed value stops the start
//! with a message naming the variable, like the pipeline's settings.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `STATUS_EXPLORER_TX_URL` | (none: hashes are shown without a link) | link of a transaction on a block explorer of the protocol chain; `{tx}` is replaced by the `0x…` hash, e.g. `https://explorer.example/tx/{tx}` |
//! | `STATUS_IPFS_GATEWAY_URL` | `https://ipfs.io/ipfs/{cid}` | link of a batch document on an IPFS gateway; `{cid}` is replaced by the batch CID. A relative path (`/ipfs/{cid}`) stays on the page's own origin (the local runner serves one) |
//! | `STATUS_POLL_SECS` | 5 | how often an open (visible) status page asks for the live summary, 1..=300 |
//!
//! The page fetches batch bytes for its in-browser proof check from the API's own content route
//! (same origin, no CORS), and checks them against the CID, so the gateway is only a link.

use serde::Serialize;

/// Default gateway link.
pub const DEFAULT_IPFS_GATEWAY_URL: &str = "https://ipfs.io/ipfs/{cid}";
/// Default poll interval, seconds.
pub const DEFAULT_POLL_SECS: u64 = 5;

/// A setting that is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status page configuration: {0}")]
pub struct ApiConfigError(pub String);

/// What the status page is told besides the data: where links go and how often to poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiConfig {
    /// Transaction link template (`{tx}`), if any.
    pub explorer_tx_url: Option<String>,
    /// Batch document link template (`{cid}`).
    pub ipfs_gateway_url: String,
    /// Poll interval of an open page, ms.
    pub poll_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            explorer_tx_url: None,
            ipfs_gateway_url: DEFAULT_IPFS_GATEWAY_URL.to_string(),
            poll_ms: DEFAULT_POLL_SECS * 1000,
        }
    }
}

/// A link template: `http(s)://…` or a path from the origin (`/…`), holding `placeholder`, with
/// nothing a page could be tricked by (quotes, angle brackets, spaces, `javascript:`).
fn template(var: &str, value: &str, placeholder: &str) -> Result<String, ApiConfigError> {
    let v = value.trim();
    let scheme_ok = v.starts_with("https://")
        || v.starts_with("http://")
        || (v.starts_with('/') && !v.starts_with("//"));
    let clean = !v
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'<>`\\".contains(c));
    if !scheme_ok || !clean || !v.contains(placeholder) {
        return Err(ApiConfigError(format!(
            "{var} must be an http(s) URL or a /path holding {placeholder}, got {:?}",
            v.chars().take(120).collect::<String>()
        )));
    }
    Ok(v.to_string())
}

impl ApiConfig {
    /// From the process environment (see the module table).
    pub fn from_env() -> Result<Self, ApiConfigError> {
        Self::default().with_env()
    }

    /// These settings, overridden by the variables set in the process environment (a process
    /// with defaults of its own, e.g. the runner's gateway on its own origin).
    pub fn with_env(self) -> Result<Self, ApiConfigError> {
        self.with_lookup(|k| std::env::var(k).ok())
    }

    /// From `get` (a variable's value, if set); empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiConfigError> {
        Self::default().with_lookup(get)
    }

    /// These settings, overridden by what `get` has (empty values count as unset).
    pub fn with_lookup(self, get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut c = self;
        if let Some(v) = get("STATUS_EXPLORER_TX_URL") {
            c.explorer_tx_url = Some(template("STATUS_EXPLORER_TX_URL", &v, "{tx}")?);
        }
        if let Some(v) = get("STATUS_IPFS_GATEWAY_URL") {
            c.ipfs_gateway_url = template("STATUS_IPFS_GATEWAY_URL", &v, "{cid}")?;
        }
        if let Some(v) = get("STATUS_POLL_SECS") {
            match v.trim().parse::<u64>() {
                Ok(s) if (1..=300).contains(&s) => c.poll_ms = s * 1000,
                _ => {
                    return Err(ApiConfigError(format!(
                        "STATUS_POLL_SECS must be 1..=300 seconds, got {v:?}"
                    )))
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<ApiConfig, ApiConfigError> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApiConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(with(&[]), Ok(ApiConfig::default()));
        let c = with(&[
            ("STATUS_EXPLORER_TX_URL", "https://scan.example/tx/{tx}"),
            ("STATUS_IPFS_GATEWAY_URL", "/ipfs/{cid}"),
            ("STATUS_POLL_SECS", "2"),
        ]);
        assert_eq!(
            c,
            Ok(ApiConfig {
                explorer_tx_url: Some("https://scan.example/tx/{tx}".into()),
                ipfs_gateway_url: "/ipfs/{cid}".into(),
                poll_ms: 2000,
            })
        );
        // Empty is unset.
        assert_eq!(
            with(&[("STATUS_EXPLORER_TX_URL", " ")]),
            Ok(ApiConfig::default())
        );
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (k, v) in [
            ("STATUS_EXPLORER_TX_URL", "https://scan.example/tx/"),
            ("STATUS_EXPLORER_TX_URL", "javascript:alert(1)//{tx}"),
            ("STATUS_EXPLORER_TX_URL", "https://x/\"><script>{tx}"),
            ("STATUS_IPFS_GATEWAY_URL", "//evil.example/{cid}"),
            ("STATUS_IPFS_GATEWAY_URL", "ftp://gw/{cid}"),
            ("STATUS_POLL_SECS", "0"),
            ("STATUS_POLL_SECS", "301"),
            ("STATUS_POLL_SECS", "x"),
        ] {
            let e = with(&[(k, v)]).expect_err(v);
            assert!(e.0.contains(k), "{e}");
        }
    }
}
