//! Network helpers for failure tests: unique names, an endpoint where nothing listens, and an
//! HTTP server that answers every request with one scripted status and body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A name no other test run uses.
pub fn unique(tag: &str) -> String {
    format!(
        "t{}-{tag}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// `http://127.0.0.1:<port>` where nothing listens.
pub async fn dead_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}
/// An HTTP server on loopback answering every request with `status` and `body` (JSON); returns
/// its base URL. Requests are read (headers and a Content-Length body) before answering.
pub async fn scripted_http(status: u16, body: &'static str) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let mut need: Option<usize> = None;
                loop {
                    if let Some(n) = need {
                        if buf.len() >= n {
                            break;
                        }
                    }
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if need.is_none() {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            need = Some(end + 4 + len);
                        }
                    }
                }
                let reason = if status == 200 { "OK" } else { "Error" };
                let resp = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    url
}
