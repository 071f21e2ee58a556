//! Keeping the RPC URL out of logs, errors and `Debug` prints.
//!
//! A hosted node's URL usually carries its API key, in the path (`/v3/<key>`), the query
//! (`?apikey=<key>`) or the userinfo (`https://user:<key>@host`). The client shows such a URL
//! only as `scheme://host[:port]` ([`redact_url`]), and every error it returns has been passed
//! through [`Redactor::scrub`], which replaces the URL and each of its secret-bearing parts
//! wherever they occur (alloy's transport errors embed the request URL, reqwest's as
//! `error sending request for url (…)`).

use alloy::transports::http::reqwest::Url;

/// What is shown instead of a secret part of the URL.
pub(crate) const REDACTED: &str = "<redacted>";

/// `scheme://host[:port]` of `url`: never its path, query, fragment or userinfo. A string that
/// does not parse as a URL is not shown at all.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(u) => shown(&u),
        Err(_) => "<unparseable url>".to_string(),
    }
}

fn shown(u: &Url) -> String {
    let host = u.host_str().unwrap_or("");
    match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

/// Replaces the configured RPC URL and its secret parts in free text.
#[derive(Clone)]
pub struct Redactor {
    /// (needle, replacement), longest needle first so a whole URL goes before its parts.
    needles: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor for `rpc_url` (the raw configured string).
    pub fn new(rpc_url: &str) -> Self {
        let raw = rpc_url.trim();
        let mut needles: Vec<(String, String)> = Vec::new();
        let parsed = Url::parse(raw).ok();
        let show = parsed.as_ref().map_or_else(|| REDACTED.to_string(), shown);
        for whole in [
            Some(raw.to_string()),
            parsed.as_ref().map(|u| u.as_str().to_string()),
        ]
        .into_iter()
        .flatten()
        {
            needles.push((whole, show.clone()));
        }
        if let Some(u) = &parsed {
            let path = u.path();
            if path.len() > 1 {
                needles.push((path.to_string(), format!("/{REDACTED}")));
                // Also without the leading slash: some messages quote path segments.
                needles.push((path[1..].to_string(), REDACTED.to_string()));
            }
            for secret in [u.query(), u.fragment(), u.password()]
                .into_iter()
                .flatten()
                .chain((!u.username().is_empty()).then(|| u.username()))
            {
                needles.push((secret.to_string(), REDACTED.to_string()));
            }
        }
        needles.retain(|(n, _)| !n.is_empty());
        needles.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
        needles.dedup_by(|a, b| a.0 == b.0);
        Self { needles }
    }

    /// `text` with every occurrence of the URL or one of its secret parts replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (needle, with) in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), with);
            }
        }
        out
    }
}

/// An error message that has been scrubbed; stands in for the original error (whose source
/// chain could still hold the URL).
#[derive(Debug)]
pub(crate) struct Scrubbed(pub(crate) String);

impl std::fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Scrubbed {}

/// `e` and all its sources, joined with `": "`.
pub(crate) fn full_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str =
        "https://alice:pw-s3cret@rpc.example.com:8443/v3/KEY-IN-PATH?apikey=KEY-IN-QUERY#frag";

    #[test]
    fn shows_only_scheme_host_and_port() {
        assert_eq!(redact_url(URL), "https://rpc.example.com:8443");
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(redact_url("not a url KEY"), "<unparseable url>");
    }

    #[test]
    fn scrubs_the_url_and_each_secret_part() {
        let r = Redactor::new(URL);
        let text = format!(
            "error sending request for url ({URL}): also /v3/KEY-IN-PATH and apikey=KEY-IN-QUERY by alice pw-s3cret"
        );
        let out = r.scrub(&text);
        for secret in ["KEY-IN-PATH", "KEY-IN-QUERY", "pw-s3cret", "alice", "frag"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("https://rpc.example.com:8443"), "{out}");
        // reqwest prints the normalised URL; that form goes too.
        let normalised = Url::parse(URL).expect("url").to_string();
        assert!(!r.scrub(&normalised).contains("KEY"));
    }

    #[test]
    fn a_plain_url_leaves_text_alone() {
        let r = Redactor::new("http://127.0.0.1:8545");
        assert_eq!(
            r.scrub("nonce too low / at 127.0.0.1"),
            "nonce too low / at 127.0.0.1"
        );
    }
}
