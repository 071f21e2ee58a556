//! An independent gossipsub peer: js-libp2p 2.x with `@chainsafe/libp2p-gossipsub` 14.1.2 from npm
//! (`tests/js-gossip/`, pinned with a lock file) under Node 22, configured and publishing like the
//! deployed Go collectors: envelopes on `<prefix>/all`, heartbeats on both topics, and every
//! submission also on `/collect` with its own UUID. What must hold: each valid submission is
//! queued once per path (the gossip copy under its content id), heartbeats never, invalid
//! messages are rejected and never reach a second js peer subscribed only through the ingress,
//! and a mesh of several js peers forms and keeps the ingress with the deployed parameters.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use sequencer_core::collect::{CollectMessage, UUID_LEN};
use sequencer_core::gossip::content_id;
use sequencer_ingress::edge::EdgePolicy;
use sequencer_ingress::gossip::health::MeshHealth;
use sequencer_ingress::metrics::Path as MetricPath;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::Ingress;
use serde_json::{json, Value};
use snapshotter_sim::SubmissionFactory;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js-gossip")
}

/// Runs the js collectors with `config` (the ingress address is filled in); returns their report.
async fn run_js(node: &Path, ingress: &Ingress, mut config: Value) -> Value {
    let dir = tempfile::tempdir().expect("tmp");
    let addr = common::tcp_addr(ingress).with(Protocol::P2p(ingress.peer_id));
    config["ingress"] = json!(addr.to_string());
    let file = dir.path().join("config.json");
    std::fs::write(&file, serde_json::to_vec(&config).expect("json")).expect("write");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(node)
            .arg(js_dir().join("collector.mjs"))
            .arg(&file)
            .output(),
    )
    .await
    .expect("js collectors finish")
    .expect("js collectors run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "js collectors failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a report line");
    serde_json::from_str(line).expect("report is JSON")
}

fn served_ingress_settings(dir: &Path) -> sequencer_ingress::Settings {
    let mut s = common::gossip_settings(dir);
    s.host.edge = EdgePolicy::markets([sequencer_core::devkeys::local_market_address()]);
    if let Some(g) = s.host.gossip.as_mut() {
        // The deployed heartbeat, as the js peers use.
        g.heartbeat = Duration::from_millis(700);
    }
    s
}

fn received(report: &Value, node: usize) -> Vec<String> {
    report["nodes"][node]["received"]
        .as_array()
        .expect("received")
        .iter()
        .map(|r| r["data"].as_str().expect("data").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_collector_submissions_are_queued_once_per_path_heartbeats_never_and_invalid_ones_stop_at_the_ingress(
) {
    let Some(node) = common::js_ready(&js_dir()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(served_ingress_settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(3).expect("factory");
    let valid: Vec<String> = (0..6)
        .map(|i| {
            let (_, m) = factory
                .message(i % 3, 40 + i as u64, &format!("js_{i}:0xabc:UNISWAPV2"))
                .expect("sign");
            String::from_utf8(m[UUID_LEN..].to_vec()).expect("utf-8")
        })
        .collect();
    let (_, bad) = factory.message(0, 50, "bad").expect("sign");
    let bad = String::from_utf8(bad[UUID_LEN..].to_vec()).expect("utf-8");
    let invalid = [
        (
            common::replace(
                bad.as_bytes(),
                "\"signature\":\"",
                "\"signature\":\"0x1234\",\"x\":\"",
            ),
            "bad_length",
        ),
        (
            common::replace(
                bad.as_bytes(),
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
                "not-a-cid",
            ),
            "bad_snapshot_cid",
        ),
    ];
    let mut submissions: Vec<Value> = valid
        .iter()
        .enumerate()
        .map(|(i, j)| json!({"node": 0, "epoch": 40 + i, "json": j, "collect": true}))
        .collect();
    for (j, _) in &invalid {
        submissions.push(json!({"node": 0, "epoch": 50, "json": String::from_utf8(j.clone()).expect("utf-8"), "collect": false}));
    }
    let report = run_js(
        &node,
        &ingress,
        json!({
            "nodes": 2,
            "watchers": [1],
            // Heartbeats every 200 ms instead of 10 s (the only shortened period).
            "heartbeatMs": 200,
            "gossipHeartbeatMs": 700,
            "meshWaitMs": 15000,
            "settleMs": 2000,
            "submissions": submissions,
        }),
    )
    .await;
    assert_eq!(
        report["ingressMeshedAtStart"],
        json!([true, true]),
        "both js peers have the ingress in their mesh of both topics"
    );
    assert!(
        report["beats"].as_u64().unwrap_or(0) >= 2,
        "heartbeats were sent"
    );

    assert_eq!(sink.wait_for(12, Duration::from_secs(10)).await, 12);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sink.messages();
    assert_eq!(
        got.len(),
        12,
        "six submissions, once per path; no heartbeat, no invalid one"
    );
    let uuids: HashMap<String, String> = report["published"]
        .as_array()
        .expect("published")
        .iter()
        .filter_map(|p| {
            let env = p["envelope"].as_str()?;
            Some((env.to_owned(), p["uuid"].as_str()?.to_owned()))
        })
        .collect();
    for j in &valid {
        let sub = CollectMessage::parse(format!("{}{j}", uuid::Uuid::nil()).as_bytes())
            .expect("parse")
            .submission;
        let cid = content_id(&sub).hyphenated().to_string();
        let gossip: Vec<_> = got
            .iter()
            .filter(|m| m.meta.path == "gossipsub" && m.body[UUID_LEN..] == *j.as_bytes())
            .collect();
        let collect: Vec<_> = got
            .iter()
            .filter(|m| m.meta.path == "collect" && m.body[UUID_LEN..] == *j.as_bytes())
            .collect();
        assert_eq!((gossip.len(), collect.len()), (1, 1), "once per path");
        assert_eq!(
            &gossip[0].body[..UUID_LEN],
            cid.as_bytes(),
            "the gossip copy's id is its content id"
        );
        // The /collect copy is what js wrote: its own UUID v4 and the JSON.
        let written = uuids
            .iter()
            .find(|(env, _)| env.contains(j.as_str()))
            .map(|(_, u)| u.clone())
            .expect("js wrote it on /collect");
        assert_eq!(&collect[0].body[..UUID_LEN], written.as_bytes());
        assert_eq!(gossip[0].meta.content_id, cid);
        assert_eq!(
            collect[0].meta.content_id, cid,
            "both paths carry the content id"
        );
    }
    let m = &ingress.metrics;
    for (_, reason) in &invalid {
        assert_eq!(m.reject_count(reason), 1, "{reason}");
    }
    assert!(m.path.ignored_count("heartbeat") >= 2);
    assert!(m.path.ignored_count("mesh_formation") >= 2);
    let cross: u64 = [MetricPath::Collect, MetricPath::Gossipsub]
        .iter()
        .map(|p| {
            let other = if *p == MetricPath::Collect {
                MetricPath::Gossipsub
            } else {
                MetricPath::Collect
            };
            m.path
                .duplicates
                .get_or_create(&[("path", p.as_str()), ("first_seen", other.as_str())])
                .get()
        })
        .sum();
    assert_eq!(cross, 6, "each submission seen on both paths");

    // The watcher is subscribed only through the ingress: it got every valid envelope (the
    // ingress forwards what it accepts) and none of the invalid ones (rejected, not forwarded).
    let seen = received(&report, 1);
    for j in &valid {
        assert!(
            seen.iter().any(|d| d.contains(j.as_str())),
            "a valid envelope was not forwarded"
        );
    }
    for (j, reason) in &invalid {
        let j = std::str::from_utf8(j).expect("utf-8");
        assert!(
            !seen.iter().any(|d| d.contains(j)),
            "an envelope rejected for {reason} was forwarded"
        );
    }
    assert!(
        report["nodes"][0]["ingressScore"].as_f64().unwrap_or(-1.0) > 0.0,
        "the js peer scores the ingress positively: {}",
        report["nodes"][0]["ingressScore"]
    );
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_of_js_collectors_forms_with_the_deployed_parameters_and_keeps_the_ingress() {
    let Some(node) = common::js_ready(&js_dir()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(served_ingress_settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(5).expect("factory");
    let n = 5;
    let subs: Vec<String> = (0..n)
        .map(|i| {
            let (_, m) = factory
                .message(i, 60, &format!("mesh_{i}:0xabc:UNISWAPV2"))
                .expect("sign");
            String::from_utf8(m[UUID_LEN..].to_vec()).expect("utf-8")
        })
        .collect();
    // The ingress's mesh, sampled while the js peers run: read once they have exited, it may
    // already show them gone (its health is refreshed as connections close).
    let health = ingress.gossip_health.clone();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn({
        let stop = sampling.clone();
        async move {
            let mut most: Option<MeshHealth> = None;
            while !stop.is_cancelled() {
                if let Some(h) = health.get() {
                    if most
                        .as_ref()
                        .is_none_or(|m| (h.all.1, h.zero.1) > (m.all.1, m.zero.1))
                    {
                        most = Some(h);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            most
        }
    });
    let report = run_js(
        &node,
        &ingress,
        json!({
            "nodes": n,
            "interconnect": true,
            "heartbeatMs": 1000,
            "gossipHeartbeatMs": 700,
            "meshWaitMs": 15000,
            "settleMs": 1500,
            // About five gossipsub heartbeats: long enough for a prune or a score-out to show.
            "observeMs": 3500,
            "submissions": subs.iter().enumerate().map(|(i, j)| json!({"node": i, "epoch": 60, "json": j})).collect::<Vec<_>>(),
        }),
    )
    .await;
    for i in 0..n {
        let node = &report["nodes"][i];
        // Four js peers and the ingress, all below D_lo = 8: every one is grafted.
        assert_eq!(node["mesh"]["all"], json!(n), "node {i}: {node}");
        assert_eq!(node["mesh"]["0"], json!(n), "node {i}: {node}");
        assert_eq!(
            node["ingressInMesh"],
            json!(true),
            "node {i} pruned the ingress"
        );
        let seen = received(&report, i);
        for (k, j) in subs.iter().enumerate() {
            if k != i {
                assert!(
                    seen.iter().any(|d| d.contains(j.as_str())),
                    "node {i} missed node {k}'s envelope"
                );
            }
        }
    }
    sampling.cancel();
    let h = sampler.await.expect("sampler").expect("health");
    assert_eq!(
        (h.all.1, h.zero.1),
        (n, n),
        "the ingress meshes with every js peer: {h:?}"
    );
    // Each submission queued once, however many peers forwarded it.
    assert_eq!(sink.wait_for(n, Duration::from_secs(10)).await, n);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.len(), n);
    ingress.shutdown().await;
}
