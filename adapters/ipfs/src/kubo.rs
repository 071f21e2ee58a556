//! [`ContentStore`] over the Kubo HTTP RPC (js-ipfs serves the same endpoints).
//!
//! - `put`: `POST {base}/api/v0/add?cid-version=1&raw-leaves=true&pin=true&cid-base=base32`
//!   with a one-file multipart body (built here). `cid-base=base32` because js-ipfs otherwise
//!   answers CIDv1 in base58btc (`zb2…`); the CIDs are compared parsed, not as text. The node's
//!   CID must be the one computed here, `sequencer_core::cids::document_cid` (docs/protocol.md §6):
//!   the raw CID of a document of one 256 KiB chunk, the root of the balanced UnixFS DAG of
//!   256 KiB raw leaves above that. Any other `Hash` (a node configured with another chunker,
//!   layout or hash) is refused with [`ErrorKind::CidMismatch`].
//! - `get`: `POST {base}/api/v0/cat?arg=CID&offline=true&timeout=<cat timeout>`; the node
//!   reassembles a chunked file; the bytes must give the CID again (`document_cid`), else
//!   [`PortError::Corrupt`].
//!
//! **Unknown CIDs.** A node asked to `cat` a CID it lacks may search the network for it for a
//! long time (js-ipfs does, without end). `offline=true` asks the node to answer from its own
//! blockstore (Kubo answers at once "block was not found locally (offline)"; js-ipfs 0.66
//! ignores it and keeps looking), and `timeout=` bounds the search (js-ipfs 0.66 honours it:
//! HTTP 500 `Failed to cat file: request timed out` after that time; Kubo has the same global
//! option). Both kinds of answer mean "the node does not have it" and
//! give `Ok(None)`. A node that stops answering altogether is caught by the client's own
//! timeout, `cat timeout + 5 s`, and gives [`PortError::Unavailable`] (it may be down or
//! overloaded: the caller retries); so do connection failures and every other error status.

use std::time::Duration;

use async_trait::async_trait;
use sequencer_core::cids::{document_cid, parse_cid, raw_cid};
use sequencer_ports::{ContentStore, ErrorKind, PortError};

use crate::Config;

/// How much longer than the node's own `cat` timeout the client waits for an answer.
const CLIENT_GRACE: Duration = Duration::from_secs(5);
/// Longest error body kept in a message.
const MAX_ERROR_TEXT: usize = 300;

/// Errors of building a [`KuboContent`].
#[derive(Debug, thiserror::Error)]
pub enum KuboConfigError {
    /// The base URL is not `http://` or `https://`.
    #[error("IPFS API URL {0:?} must start with http:// or https://")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// The Kubo RPC content store.
#[derive(Debug, Clone)]
pub struct KuboContent {
    http: reqwest::Client,
    base: String,
    request_timeout: Duration,
    cat_timeout: Duration,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::content(ErrorKind::Unavailable, format!("{what}: {e}"))
}

fn short(text: &str) -> String {
    let t = text.trim();
    let mut s: String = t.chars().take(MAX_ERROR_TEXT).collect();
    if s.len() < t.len() {
        s.push('…');
    }
    s
}

/// Whether an answer of `cat` with HTTP `status` and `body` means "the node does not have this
/// CID" (as opposed to a failure to retry): a 404, or an error whose text says the block was not
/// found or the node's search for it timed out or was aborted (Kubo and js-ipfs answer HTTP 500
/// with such a message). The one rule for every reader of a Kubo RPC.
pub fn cat_not_found(status: u16, body: &str) -> bool {
    status == 404 || (!(200..300).contains(&status) && means_not_found(body))
}

/// Whether an error answer's text means "the node does not have this block".
fn means_not_found(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    [
        "not found",
        "notfound",
        "timeout",
        "timed out",
        "deadline exceeded",
        "aborted",
        "no link named",
    ]
    .iter()
    .any(|p| b.contains(p))
}

/// `Hash` of the last JSON line of an `add` answer (one line per file; progress lines have no
/// `Hash`).
fn added_hash(body: &str) -> Option<String> {
    body.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find_map(|v| v.get("Hash").and_then(|h| h.as_str()).map(str::to_owned))
}

/// A `multipart/form-data` body with one file part holding `bytes`; returns (boundary, body).
fn multipart(bytes: &[u8]) -> (String, Vec<u8>) {
    // A boundary from the content's own hash cannot be guessed by whoever chose the content; a
    // collision with the content would need the hash's hex to occur in it, which we check.
    let mut boundary = format!(
        "----seq{}",
        raw_cid(bytes)
            .hash()
            .digest()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    while bytes
        .windows(boundary.len())
        .any(|w| w == boundary.as_bytes())
    {
        boundary.push('x');
    }
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(
        b"Content-Disposition: form-data; name=\"file\"; filename=\"batch\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

impl KuboContent {
    /// A store on the Kubo RPC at `base_url` (e.g. `http://127.0.0.1:5001`, without `/api/v0`).
    /// `request_timeout` bounds an `add`; `cat_timeout` is how long the node may look for a CID.
    pub fn new(
        base_url: &str,
        request_timeout: Duration,
        cat_timeout: Duration,
    ) -> Result<Self, KuboConfigError> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(KuboConfigError::Url(base_url.to_string()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| KuboConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base,
            request_timeout,
            cat_timeout,
        })
    }

    /// A store from [`Config`] (`IPFS_API_URL`, `IPFS_TIMEOUT_MS`, `IPFS_CAT_TIMEOUT_MS`).
    pub fn from_config(config: &Config) -> Result<Self, KuboConfigError> {
        Self::new(
            &config.ipfs_api_url,
            config.ipfs_timeout,
            config.ipfs_cat_timeout,
        )
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn post(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), PortError> {
        let resp = req.send().await.map_err(|e| unavailable(what, e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| unavailable(what, e))?;
        Ok((status, body.to_vec()))
    }
}

#[async_trait]
impl ContentStore for KuboContent {
    async fn put(&self, bytes: &[u8]) -> Result<String, PortError> {
        let expected = document_cid(bytes).to_string();
        let (boundary, body) = multipart(bytes);
        let url = format!(
            "{}/api/v0/add?cid-version=1&raw-leaves=true&pin=true&progress=false&cid-base=base32",
            self.base
        );
        let req = self
            .http
            .post(&url)
            .timeout(self.request_timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let (status, body) = self.post("IPFS add", req).await?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(PortError::content(
                ErrorKind::Unavailable,
                format!("IPFS add: HTTP {status}: {}", short(&text)),
            ));
        }
        let got = added_hash(&text).ok_or_else(|| {
            PortError::content(
                ErrorKind::Unavailable,
                format!("IPFS add: no Hash in answer {:?}", short(&text)),
            )
        })?;
        // js-ipfs prints CIDv1 in base58btc unless asked for base32 (`cid-base`); compare the
        // CIDs, not their spelling, and return the canonical base32 text.
        if parse_cid(&got).map(|c| c.to_string()).as_deref() != Ok(expected.as_str()) {
            tracing::error!(expected = %expected, got = %got, len = bytes.len(), "IPFS returned another CID; upload refused");
            return Err(PortError::content(
                ErrorKind::CidMismatch { expected, got },
                format!("IPFS add of {} bytes", bytes.len()),
            ));
        }
        tracing::debug!(cid = %expected, len = bytes.len(), "stored in IPFS");
        Ok(expected)
    }

    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError> {
        // Only a well-formed CID goes into the URL; a malformed one cannot be stored anywhere.
        let parsed = match parse_cid(cid) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(cid = %cid, error = %e, "not a CID; nothing to get");
                return Ok(None);
            }
        };
        let ms = self.cat_timeout.as_millis().max(1);
        let url = format!(
            "{}/api/v0/cat?arg={parsed}&offline=true&timeout={ms}ms",
            self.base
        );
        let req = self
            .http
            .post(&url)
            .timeout(self.cat_timeout + CLIENT_GRACE);
        let (status, body) = self.post("IPFS cat", req).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            if cat_not_found(status.as_u16(), &text) {
                tracing::debug!(cid = %cid, answer = %short(&text), "not in IPFS");
                return Ok(None);
            }
            return Err(PortError::content(
                ErrorKind::Unavailable,
                format!("IPFS cat {cid}: HTTP {status}: {}", short(&text)),
            ));
        }
        if document_cid(&body) != parsed {
            tracing::error!(cid = %cid, len = body.len(), "IPFS returned bytes that do not hash to their CID");
            return Err(PortError::content(ErrorKind::Corrupt, cid.to_string()));
        }
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_answer_parsing() {
        assert_eq!(
            added_hash("{\"Name\":\"batch\",\"Hash\":\"bafkabc\",\"Size\":\"12\"}\n").as_deref(),
            Some("bafkabc")
        );
        assert_eq!(
            added_hash("{\"Bytes\":12}\n{\"Name\":\"b\",\"Hash\":\"h2\"}").as_deref(),
            Some("h2")
        );
        assert_eq!(added_hash("oops"), None);
    }

    #[test]
    fn multipart_body_frames_the_bytes() {
        let (b, body) = multipart(b"hello");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{b}\r\n")));
        assert!(text.contains("\r\n\r\nhello\r\n"));
        assert!(text.ends_with(&format!("--{b}--\r\n")));
    }

    #[test]
    fn not_found_answers() {
        assert!(means_not_found(
            r#"{"Message":"block was not found locally (offline): ipld: could not find bafk","Code":0}"#
        ));
        assert!(means_not_found(
            r#"{"Message":"context deadline exceeded"}"#
        ));
        assert!(!means_not_found(r#"{"Message":"internal error"}"#));
        assert!(cat_not_found(404, ""));
        assert!(cat_not_found(500, r#"{"Message":"block not found"}"#));
        assert!(!cat_not_found(500, r#"{"Message":"internal error"}"#));
        assert!(
            !cat_not_found(200, "not found"),
            "a success is the content, whatever it says"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(KuboContent::new("127.0.0.1:5001", Duration::ZERO, Duration::ZERO).is_err());
        let k = KuboContent::new("http://h:1/", Duration::ZERO, Duration::ZERO);
        assert_eq!(
            k.ok().map(|k| k.base_url().to_string()).as_deref(),
            Some("http://h:1")
        );
    }
}
