//! An independent client: js-libp2p 3.x (TCP + Noise + yamux) from npm, under Node 22
//! (`NODE22_BIN`, see scripts/env.sh), writing `/collect` messages one write each over long-lived
//! streams, as deployed Go collectors do. Everything must arrive byte-exact, in memory and in the
//! emulator's SQS queue.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::sink::sqs::SqsSink;
use sequencer_ingress::sink::SubmissionSink;
use snapshotter_sim::SubmissionFactory;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Node 22 and the pinned js-libp2p packages (installed from the lock file on first use).
fn js_ready() -> Option<PathBuf> {
    common::js_ready(&js_dir())
}

async fn run_js(
    node: &Path,
    ingress: &sequencer_ingress::Ingress,
    messages: &[Vec<u8>],
    streams: usize,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("messages.json");
    let texts: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8(m.clone()).expect("utf8"))
        .collect();
    std::fs::write(&file, serde_json::to_vec(&texts).expect("json")).expect("write");
    let addr = common::tcp_addr(ingress).with(Protocol::P2p(ingress.peer_id));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(node)
            .arg(js_dir().join("collector.mjs"))
            .arg(addr.to_string())
            .arg(&file)
            .arg(streams.to_string())
            .output(),
    )
    .await
    .expect("js client finishes")
    .expect("js client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "js client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("sent {}", messages.len())),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_libp2p_collector_into_memory_byte_exact() {
    let Some(node) = js_ready() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(3).expect("factory");
    let msgs: Vec<Vec<u8>> = (0..3)
        .flat_map(|s| common::messages(&factory, s, 100))
        .collect();
    run_js(&node, &ingress, &msgs, 3).await;
    assert_eq!(
        sink.wait_for(msgs.len(), Duration::from_secs(20)).await,
        msgs.len()
    );
    let got: Vec<Vec<u8>> = sink.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(got.len(), msgs.len());
    common::assert_same(got, msgs, "js client into memory");
    assert_eq!(
        ingress
            .metrics
            .rejects
            .get_or_create(&[("reason", "truncated")])
            .get(),
        0
    );
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_libp2p_collector_into_sqs_byte_exact() {
    let Some(node) = js_ready() else { return };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let reachable = match &endpoint {
        Some(e) => {
            tokio::net::TcpStream::connect(e.trim_start_matches("http://").trim_end_matches('/'))
                .await
                .is_ok()
        }
        None => false,
    };
    if !common::require("the SQS emulator (AWS_ENDPOINT_URL)", reachable) {
        return;
    }
    let client = SqsSink::client_from_env().await;
    let name = format!("ingress-js-{}", uuid::Uuid::new_v4().simple());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create")
        .queue_url()
        .expect("url")
        .to_owned();
    let dir = tempfile::tempdir().expect("tmp");
    let sink: Arc<dyn SubmissionSink> = Arc::new(SqsSink::new(client.clone(), url.clone()));
    let ingress = common::start(common::settings(dir.path()), sink).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let msgs: Vec<Vec<u8>> = (0..2)
        .flat_map(|s| common::messages(&factory, s, 60))
        .collect();
    run_js(&node, &ingress, &msgs, 2).await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < msgs.len() && tokio::time::Instant::now() < deadline {
        let r = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in r.messages() {
            got.push(m.body().unwrap_or("").as_bytes().to_vec());
        }
    }
    assert_eq!(got.len(), msgs.len());
    common::assert_same(got, msgs, "queue holds the js client's bytes exactly");
    ingress.shutdown().await;
    let _ = client.delete_queue().queue_url(&url).send().await;
}
