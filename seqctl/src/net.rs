//! What the commands that ask others share: one current-thread runtime per command, the HTTP
//! client with its timeout and response cap, the Kubo RPC `cat`, URL arguments, the chain
//! connection, and the redaction of RPC URLs (which may carry an API key) from every message.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use sequencer_chain::{Address, ChainClient, ChainConfig};

use crate::CheckFailed;

/// Per HTTP request; a batch document is at most 256 KiB.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response read (a batch document fits one 256 KiB chunk; a proof is a few KiB).
const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

pub(crate) fn url_arg(what: &str, s: &str) -> Result<reqwest::Url> {
    let u: reqwest::Url = s
        .parse()
        .with_context(|| format!("{what} {s:?} is not a URL"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        bail!("{what} {s:?} is not an http(s) URL");
    }
    Ok(u)
}

pub(crate) fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .context("HTTP client")
}

pub(crate) async fn read_body(r: reqwest::Response, what: &str) -> Result<Vec<u8>> {
    if r.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        bail!("{what}: response is larger than {MAX_BODY} bytes");
    }
    let bytes = r
        .bytes()
        .await
        .with_context(|| format!("{what}: reading"))?;
    if bytes.len() > MAX_BODY {
        bail!("{what}: response is larger than {MAX_BODY} bytes");
    }
    Ok(bytes.to_vec())
}

/// The exact bytes of `cid` from a Kubo RPC (`POST /api/v0/cat?arg=`); `None` when not found.
pub(crate) async fn ipfs_cat(
    http: &reqwest::Client,
    base: &reqwest::Url,
    cid: &str,
) -> Result<Option<Vec<u8>>> {
    let mut url = base.join("api/v0/cat").context("IPFS URL")?;
    url.query_pairs_mut().append_pair("arg", cid);
    let r = http
        .post(url.clone())
        .send()
        .await
        .with_context(|| format!("IPFS {url}"))?;
    let status = r.status();
    if sequencer_ipfs::cat_not_found(status.as_u16(), "") {
        return Ok(None);
    }
    let body = read_body(r, "IPFS cat").await?;
    if !status.is_success() {
        // The adapter's rule for "the node does not have it" (Kubo and js-ipfs answer 500).
        let text = String::from_utf8_lossy(&body);
        if sequencer_ipfs::cat_not_found(status.as_u16(), &text) {
            return Ok(None);
        }
        bail!(
            "IPFS cat {cid}: HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
    }
    Ok(Some(body))
}

pub(crate) fn base_url(u: &reqwest::Url) -> reqwest::Url {
    let mut b = u.clone();
    if !b.path().ends_with('/') {
        let p = format!("{}/", b.path());
        b.set_path(&p);
    }
    b
}

pub(crate) async fn chain(rpc_url: &str, protocol_state: Address) -> Result<ChainClient> {
    rpc_arg(rpc_url)?;
    ChainClient::connect(ChainConfig::new(rpc_url, protocol_state))
        .await
        .with_context(|| format!("connect to {}", redact_url(rpc_url)))
}

/// `--rpc-url`, checked without echoing it: an RPC URL may carry an API key (in its path, query
/// or user info), so it is never printed.
pub(crate) fn rpc_arg(s: &str) -> Result<reqwest::Url> {
    let u: reqwest::Url = s.parse().map_err(|_| {
        anyhow::anyhow!("--rpc-url is not a URL (not shown: it may hold an API key)")
    })?;
    if !matches!(u.scheme(), "http" | "https" | "ws" | "wss") || u.host_str().is_none() {
        bail!("--rpc-url is not an http(s) or ws(s) URL (not shown: it may hold an API key)");
    }
    Ok(u)
}

/// What may be shown of an RPC URL: scheme, host and port (the chain client's rule).
pub(crate) fn redact_url(s: &str) -> String {
    sequencer_chain::redact_url(s)
}

/// `e` with every trace of `url` (as given, as normalized, its path, query and user info)
/// replaced, by the chain client's [`sequencer_chain::Redactor`]; errors of the HTTP and RPC
/// clients quote their URL. Keeps a [`CheckFailed`] a check failure.
pub(crate) fn scrub(e: anyhow::Error, url: &str) -> anyhow::Error {
    let msg = format!("{e:#}");
    let clean = sequencer_chain::Redactor::new(url).scrub(&msg);
    if clean == msg {
        return e;
    }
    if e.downcast_ref::<CheckFailed>().is_some() {
        CheckFailed(clean).into()
    } else {
        anyhow::anyhow!(clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3y-0123456789";

    #[test]
    fn an_rpc_url_shows_only_scheme_host_and_port() {
        for (url, shown) in [
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
            (
                &format!("https://mainnet.example/v3/{KEY}"),
                "https://mainnet.example",
            ),
            (
                &format!("https://rpc.example/?apikey={KEY}"),
                "https://rpc.example",
            ),
            (
                &format!("https://user:{KEY}@rpc.example:8443"),
                "https://rpc.example:8443",
            ),
            (&format!("not a url {KEY}"), "<unparseable url>"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn scrub_removes_the_url_and_its_parts_and_keeps_check_failures() {
        let url = format!("https://user:{KEY}@rpc.example/v3/{KEY}?key={KEY}");
        let plain = format!("https://rpc.example/v3/{KEY}?key={KEY}");
        let e = scrub(
            anyhow::anyhow!("error sending request for url ({plain}): path /v3/{KEY}"),
            &url,
        );
        let msg = format!("{e:#}");
        assert!(!msg.contains(KEY), "{msg}");
        assert!(msg.contains("https://rpc.example"), "{msg}");
        let e = scrub(CheckFailed(format!("seen {url}")).into(), &url);
        assert!(e.downcast_ref::<CheckFailed>().is_some());
        assert!(!e.to_string().contains(KEY));
        // Nothing to hide: the error is returned as it was.
        let e = scrub(CheckFailed("no url here".into()).into(), &url);
        assert_eq!(e.to_string(), "no url here");
    }
}
