//! `/readyz` answers from the cached result of a background queue probe: immediately, even
//! while the queue endpoint hangs, and with a reason code only, never the SDK's error text.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::sink::sqs::SqsSink;
use sequencer_ingress::sink::SubmissionSink;

async fn ingress_with(
    sink: Arc<dyn SubmissionSink>,
    dir: &std::path::Path,
) -> sequencer_ingress::Ingress {
    let mut settings = common::settings(dir);
    settings.http_listen = Some(([127, 0, 0, 1], 0).into());
    settings.ready_probe_interval = Duration::from_millis(200);
    common::start(settings, sink).await
}

/// Polls `/readyz` until its body is `want` (or 10 s); returns the last answer and the slowest
/// response time seen.
async fn readyz_until(http: &str, want: &str) -> ((u16, String), Duration) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut slowest = Duration::ZERO;
    loop {
        let t = tokio::time::Instant::now();
        let got = common::http_get(http, "/readyz")
            .await
            .expect("readyz answers");
        slowest = slowest.max(t.elapsed());
        if got.1.trim() == want || tokio::time::Instant::now() > deadline {
            return (got, slowest);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Words of the SDK's and the sinks' error texts that must never reach the answer.
const LEAKS: [&str; 8] = [
    "error", "Error", "dispatch", "connect", "timeout", "http", "sink", "down",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_an_unreachable_queue_by_code_without_sdk_text() {
    let dir = tempfile::tempdir().expect("tmp");
    // Nothing listens on this port: connection refused.
    let refused = format!("http://127.0.0.1:{}", common::free_port());
    let client = SqsSink::client_with_endpoint(Some(&refused)).await;
    let sink = Arc::new(SqsSink::new(client, format!("{refused}/000000000000/q")));
    let ingress = ingress_with(sink, dir.path()).await;
    let http = ingress.http_addr.expect("http").to_string();
    let ((status, body), _) = readyz_until(&http, "queue_transport").await;
    assert_eq!((status, body.trim()), (503, "queue_transport"));
    for w in LEAKS {
        assert!(!body.contains(w), "{w:?} leaked into {body:?}");
    }
    assert_eq!(
        common::scrape_metric(&http, "ingress_queue_ready").await,
        Some(0.0)
    );
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_at_once_while_the_queue_endpoint_hangs() {
    let dir = tempfile::tempdir().expect("tmp");
    // Accepts connections and never answers: every SDK call hangs until its timeout.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", hole.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            conns.push(c);
        }
    });
    let client = SqsSink::client_with_endpoint(Some(&url)).await;
    let sink = Arc::new(SqsSink::new(client, format!("{url}/000000000000/q")));
    let ingress = ingress_with(sink, dir.path()).await;
    let http = ingress.http_addr.expect("http").to_string();
    let ((status, body), slowest) = readyz_until(&http, "queue_timeout").await;
    assert_eq!((status, body.trim()), (503, "queue_timeout"));
    // The probe waits 2 s on the dead endpoint; /readyz never does.
    assert!(
        slowest < Duration::from_millis(500),
        "slowest /readyz took {slowest:?}"
    );
    ingress.shutdown().await;
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_queue_down_and_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = ingress_with(sink.clone(), dir.path()).await;
    let http = ingress.http_addr.expect("http").to_string();
    assert_eq!(readyz_until(&http, "ready").await.0 .0, 200);
    sink.set_down(true);
    let ((status, body), _) = readyz_until(&http, "queue_transport").await;
    assert_eq!((status, body.trim()), (503, "queue_transport"));
    assert!(
        !body.contains("memory sink is down"),
        "sink text leaked: {body:?}"
    );
    sink.set_down(false);
    assert_eq!(readyz_until(&http, "ready").await.0 .0, 200);
    ingress.shutdown().await;
}
