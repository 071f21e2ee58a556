//! Helpers shared by the adapter tests: service probes that skip loudly (or fail under
//! `SEQ_REQUIRE_SERVICES=1`), unique names, a tiny scripted HTTP server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether a service-dependent test should run: prints a loud skip (and returns false) when the
/// service is missing, unless SEQ_REQUIRE_SERVICES=1, then panics.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var("SEQ_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{what} is required (SEQ_REQUIRE_SERVICES=1) but missing (run `source scripts/env.sh && localstack/start.sh && scripts/ipfs.sh start`)");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what} is missing; this test did not run (start it with localstack/start.sh or scripts/ipfs.sh start) !!!!!!!!\n");
    false
}

/// A name no other test run uses.
pub fn unique(tag: &str) -> String {
    format!(
        "t{}-{tag}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The SDK configuration from the environment (scripts/env.sh points it at the emulators).
pub async fn aws() -> aws_config::SdkConfig {
    sequencer_adapters::aws_sdk_config().await
}

/// An SDK configuration with every endpoint at `endpoint` and no retries (failure tests).
pub async fn aws_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await
}

/// `http://127.0.0.1:<port>` where nothing listens.
pub async fn dead_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

/// Whether SQS answers at the configured endpoint.
pub async fn sqs_up(conf: &aws_config::SdkConfig) -> bool {
    let c = aws_sdk_sqs::Client::new(conf);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            c.list_queues().max_results(1).send()
        )
        .await,
        Ok(Ok(_))
    )
}

/// Whether DynamoDB answers at the configured endpoint.
pub async fn dynamodb_up(conf: &aws_config::SdkConfig) -> bool {
    let c = aws_sdk_dynamodb::Client::new(conf);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), c.list_tables().limit(1).send()).await,
        Ok(Ok(_))
    )
}

/// `IPFS_API_URL` if an IPFS RPC answers there.
pub async fn ipfs_url() -> Option<String> {
    let url = std::env::var("IPFS_API_URL").ok()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let ok = client
        .post(format!("{}/api/v0/id", url.trim_end_matches('/')))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    ok.then_some(url)
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
