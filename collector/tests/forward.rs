//! The real `sequencer-collector` binary between a gRPC client (the node's call, generated from
//! the same proto) and a real ingress (libp2p `/collect` into an in-memory sink):
//!
//! - submissions sent while the sequencer is down are held (health 503, `connected: false`, the
//!   depth counted), delivered byte-exact once it is up, and again across a sequencer restart;
//! - a full buffer refuses with `RESOURCE_EXHAUSTED` and counts `buffer_full`; an oversized
//!   submission, one without a request and one for another market are refused and counted;
//! - a host answering with another peer id than the pinned one is never used;
//! - `/metrics` carries the same counts in Prometheus text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use sequencer_collector::grpc::pb::submission_client::SubmissionClient;
use sequencer_core::collect::CollectMessage;
use sequencer_core::submission::{proto, Request, SnapshotSubmission};
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::{Ingress, Settings};
use serde_json::Value;

const MARKET: &str = "0x0C2E22fe7526fAeF28E7A58c84f8723dEFcE200c";
const WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn submission(i: u64, project: &str) -> SnapshotSubmission {
    SnapshotSubmission {
        request: Request {
            slot_id: i,
            deadline: 100 + i,
            snapshot_cid: "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4".into(),
            epoch_id: 7,
            project_id: project.into(),
        },
        // Right shape (r ‖ s ‖ v, low s, v 27), not a valid signer: the ingress's edge checks the
        // shape only, signers are the verifier's business.
        signature: format!("{}{}1b", "11".repeat(32), "22".repeat(32)),
        header: format!("0x{}", "cd".repeat(32)),
        data_market: MARKET.into(),
        node_version: Some("v2.0.0".into()),
        protocol_state: Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
    }
}

struct Bin {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collector(sequencer: &Multiaddr, extra: &[(&str, &str)]) -> Bin {
    let (grpc, http) = (free_port(), free_port());
    let mut c = Command::new(env!("CARGO_BIN_EXE_sequencer-collector"));
    c.env("LOCAL_COLLECTOR_PORT", grpc.to_string())
        .env("HEALTH_CHECK_PORT", http.to_string())
        .env("COLLECTOR_BIND", "127.0.0.1")
        .env("SEQUENCER_MULTIADDR", sequencer.to_string())
        .env("DATA_MARKET_CONTRACT", MARKET)
        .env("COLLECTOR_BACKOFF_MS", "100")
        .env(
            "RUST_LOG",
            std::env::var("COLLECTOR_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        c.env(k, v);
    }
    Bin {
        child: c.spawn().expect("spawn collector"),
        grpc: ([127, 0, 0, 1], grpc).into(),
        http: ([127, 0, 0, 1], http).into(),
    }
}

async fn health(b: &Bin) -> Option<(u16, Value)> {
    let r = reqwest::get(format!("http://{}/health", b.http))
        .await
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().await.ok()?))
}

async fn wait_health(b: &Bin, what: &str, f: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((code, v)) = health(b).await {
            if f(code, &v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last health {code} {v}");
        }
        assert!(Instant::now() < deadline, "{what}: no health answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn grpc(b: &Bin) -> SubmissionClient<tonic::transport::Channel> {
    let deadline = Instant::now() + WAIT;
    loop {
        match SubmissionClient::connect(format!("http://{}", b.grpc)).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "gRPC never up: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ingress(port: u16, key: Keypair, sink: Arc<MemorySink>, dir: &std::path::Path) -> Ingress {
    let mut s = Settings::default();
    s.limits = s.limits.one_host_fleet();
    s.host.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()];
    s.spill_path = dir.join("spill.jsonl");
    s.drain_timeout = Duration::from_secs(5);
    Ingress::start(s, key, sink, Metrics::new(), None)
        .await
        .expect("ingress")
}

fn addr(port: u16, peer: PeerId) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}")
        .parse::<Multiaddr>()
        .unwrap()
        .with(Protocol::P2p(peer))
}

fn received(sink: &MemorySink) -> Vec<SnapshotSubmission> {
    sink.messages()
        .iter()
        .map(|m| {
            CollectMessage::parse(&m.body)
                .expect("a /collect message")
                .submission
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_while_the_sequencer_is_down_and_delivers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let bin = collector(&addr(port, peer), &[]);

    // Sequencer down: the health check says so, and submissions are held, not lost.
    wait_health(&bin, "down at start", |code, v| {
        code == 503 && v["upstream"]["connected"] == false
    })
    .await;
    let mut c = grpc(&bin).await;
    let sent: Vec<SnapshotSubmission> = (1..=5).map(|i| submission(i, &format!("p:{i}"))).collect();
    for s in &sent {
        let r = c
            .submit_snapshot(proto::SnapshotSubmission::from(s))
            .await
            .expect("accepted");
        assert_eq!(r.into_inner().message, "Success");
    }
    wait_health(&bin, "held", |_, v| v["buffer"]["depth"] == 5).await;

    // Up: everything arrives, byte-for-byte the node's fields, each with its own id.
    let sink = Arc::new(MemorySink::new());
    let ing = ingress(port, key.clone(), sink.clone(), dir.path()).await;
    let n = sink.wait_for(5, WAIT).await;
    assert_eq!(n, 5, "delivered; health {:?}", health(&bin).await);
    let mut got = received(&sink);
    got.sort_by_key(|s| s.request.slot_id);
    assert_eq!(got, sent);
    let ids: std::collections::HashSet<_> = sink
        .messages()
        .iter()
        .map(|m| CollectMessage::parse(&m.body).unwrap().submission_id)
        .collect();
    assert_eq!(ids.len(), 5);
    let v = wait_health(&bin, "up", |code, v| {
        code == 200 && v["buffer"]["depth"] == 0
    })
    .await;
    assert_eq!(v["counts"]["forwarded"], 5, "{v}");

    // The sequencer restarts (same key, same port): held again, delivered again.
    ing.shutdown().await;
    wait_health(&bin, "down again", |code, _| code == 503).await;
    for i in 6..=8 {
        c.submit_snapshot(proto::SnapshotSubmission::from(&submission(i, "p:again")))
            .await
            .expect("accepted while down");
    }
    let sink2 = Arc::new(MemorySink::new());
    let _ing2 = ingress(port, key, sink2.clone(), dir.path()).await;
    assert_eq!(sink2.wait_for(3, WAIT).await, 3);
    let v = wait_health(&bin, "up again", |code, v| {
        code == 200 && v["counts"]["forwarded"] == 8
    })
    .await;
    assert_eq!(v["counts"]["dropped"], serde_json::json!({}), "{v}");
    assert!(v["counts"]["connects"].as_u64().unwrap() >= 2, "{v}");

    let text = reqwest::get(format!("http://{}/metrics", bin.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("collector_forwarded_total 8"), "{text}");
    assert!(text.contains("collector_upstream_connected 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_answered_and_counted_and_a_wrong_peer_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The host on this port has another key than the pinned peer id.
    let impostor = Keypair::generate_ed25519();
    let sink = Arc::new(MemorySink::new());
    let _ing = ingress(port, impostor, sink.clone(), dir.path()).await;
    let pinned = Keypair::generate_ed25519().public().to_peer_id();
    let bin = collector(&addr(port, pinned), &[("COLLECTOR_BUFFER_SIZE", "2")]);
    let mut c = grpc(&bin).await;

    for i in 1..=2 {
        c.submit_snapshot(proto::SnapshotSubmission::from(&submission(i, "p:x")))
            .await
            .expect("room for two");
    }
    let full = c
        .submit_snapshot(proto::SnapshotSubmission::from(&submission(3, "p:x")))
        .await
        .expect_err("buffer full");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");

    let big = submission(4, &"x".repeat(20 * 1024));
    let e = c
        .submit_snapshot(proto::SnapshotSubmission::from(&big))
        .await
        .expect_err("oversize");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut other = submission(5, "p:x");
    other.data_market = "0x1111111111111111111111111111111111111111".into();
    let e = c
        .submit_snapshot(proto::SnapshotSubmission::from(&other))
        .await
        .expect_err("wrong market");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .submit_snapshot(proto::SnapshotSubmission::default())
        .await
        .expect_err("no request");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, v) = health(&bin).await.expect("health");
    assert_eq!(code, 503, "the impostor is not the sequencer: {v}");
    assert_eq!(v["upstream"]["connected"], false);
    assert_eq!(v["buffer"]["depth"], 2);
    assert_eq!(
        v["counts"]["rejected"],
        serde_json::json!({"buffer_full": 1, "oversize": 1, "wrong_market": 1, "no_request": 1}),
        "{v}"
    );
    assert!(sink.is_empty(), "nothing reached the impostor");
    let text = reqwest::get(format!("http://{}/metrics", bin.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("collector_rejected_total{reason=\"buffer_full\"} 1"),
        "{text}"
    );
    assert!(text.contains("collector_buffer_depth 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_address_without_its_peer_id_is_refused_at_start() {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sequencer-collector"))
        .env("SEQUENCER_MULTIADDR", "/ip4/127.0.0.1/tcp/9100")
        .env("LOCAL_COLLECTOR_PORT", free_port().to_string())
        .env("HEALTH_CHECK_PORT", free_port().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || c.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success());
}
