//! The HTTP transport of [`crate::ChainClient`]: alloy's reqwest transport minus the one thing
//! it must not do here. alloy's own transport opens a `DEBUG` tracing span with the full
//! request URL (`ReqwestTransport{url=…}`), so any subscriber at debug level would write the
//! node's API key into every log line of every request. This one sends the same JSON-RPC
//! POSTs and maps responses the same way, opens no span with the URL, and strips it from
//! reqwest's errors ([`reqwest::Error::without_url`]).

use std::{sync::Arc, task, time::Duration};

use alloy::{
    rpc::json_rpc::{RequestPacket, ResponsePacket},
    transports::{
        http::reqwest::{self, header::RETRY_AFTER, Url},
        TransportError, TransportErrorKind, TransportFut,
    },
};
use tower::Service;

use crate::redact::{full_text, redact_url, Scrubbed};
use tracing::debug;

/// JSON-RPC over HTTP(S) POST with a URL that is never logged.
#[derive(Clone)]
pub(crate) struct QuietHttp {
    client: reqwest::Client,
    url: Url,
    /// What errors say instead: scheme and host.
    shown: Arc<str>,
}

impl QuietHttp {
    pub(crate) fn new(client: reqwest::Client, url: Url) -> Self {
        let shown = redact_url(url.as_str()).into();
        Self { client, url, shown }
    }

    /// A reqwest failure as a (transient) custom transport error naming only scheme and host.
    fn failed(&self, e: reqwest::Error) -> TransportError {
        let e = e.without_url();
        TransportErrorKind::custom(Scrubbed(format!("{}: {}", self.shown, full_text(&e))))
    }

    async fn post(self, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let resp = self
            .client
            .post(self.url.clone())
            .json(&req)
            .headers(req.headers())
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        debug!(%status, "rpc response");
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) if !status.is_success() => {
                return Err(TransportErrorKind::http_error_with_retry_after(
                    status.as_u16(),
                    format!("<failed to read response body: {}>", e.without_url()),
                    retry_after,
                ))
            }
            Err(e) => return Err(self.failed(e)),
        };
        if !status.is_success() {
            // A JSON-RPC error in a non-2xx body (rate limits often come so) is still one.
            if let Some(r) = serde_json::from_slice::<ResponsePacket>(&body)
                .ok()
                .filter(ResponsePacket::is_error)
            {
                return Ok(r);
            }
            return Err(TransportErrorKind::http_error_with_retry_after(
                status.as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
                retry_after,
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&body)))
    }
}

impl Service<RequestPacket> for QuietHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        Box::pin(self.clone().post(req))
    }
}
