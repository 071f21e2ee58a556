//! An unmodified node's path, end to end: a Python gRPC client built from the proto
//! (`tests/collector/node_client.py`: grpcio, eth-account) signs like snapshotter-lite-v2 (the
//! EIP-712 domain of §3 with the EIP-55 ProtocolState, the latest block's hash as header) and
//! calls `SubmitSnapshot` on the collector, which forwards over `/collect` to the local runner's
//! ingress (`--no-sim`, slots assigned to the client's keys); the epoch is finalized and anchored,
//! and `seqctl proof get --rpc-url` verifies the submission's inclusion proof against IPFS and
//! the chain. Needs ANVIL_BIN and COLLECTOR_PYTHON (`bash tests/collector/setup.sh`; both set by
//! scripts/env.sh): a loud skip without them, a failure under SEQ_REQUIRE_SERVICES=1.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use sequencer_chain::{Address, ChainClient, ChainConfig};
use sequencer_core::finalize::BatchDocument;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

// Two snapshotter keys of the client (test keys, local chain only).
const KEY1: &str = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";
const KEY2: &str = "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_signed_submission_travels_grpc_collector_ingress_to_a_verified_proof() {
    let test = "a_node_signed_submission_travels_grpc_collector_ingress_to_a_verified_proof";
    let missing = sequencer_testsupport::missing(&[], &["ANVIL_BIN", "COLLECTOR_PYTHON"]).await;
    if !sequencer_testsupport::require(test, &missing) {
        return;
    }
    let python = std::env::var("COLLECTOR_PYTHON").unwrap();
    let addr = |k: &str| sequencer_chain::deploy::address_of_key(k).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = sequencer_runner::Args::parse_from([
        "sequencer-local".to_string(),
        "--no-sim".into(),
        "--slots".into(),
        "0".into(),
        "--block-ms".into(),
        "250".into(),
        "--epoch-size".into(),
        "4".into(),
        // 40 × 250 ms = 10 s: the client here sends at once, not 20 s after the release.
        "--window".into(),
        "40".into(),
        "--assign".into(),
        format!("1={:#x}", addr(KEY1)),
        "--assign".into(),
        format!("2={:#x}", addr(KEY2)),
        "--data-dir".into(),
        dir.path().to_str().unwrap().into(),
    ]);
    let stop = CancellationToken::new();
    let runner = tokio::spawn(sequencer_runner::run_until(args, stop.clone()));
    let kit_path = dir.path().join("snapshotter-kit.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let kit: Value = loop {
        if let Ok(b) = std::fs::read(&kit_path) {
            break serde_json::from_slice(&b).unwrap();
        }
        assert!(Instant::now() < deadline, "runner never printed its kit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let env = &kit["snapshotter_kit"]["env"];
    let s = |k: &str| {
        env[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in {kit}"))
            .to_string()
    };
    let (rpc, ps, market, seq) = (
        s("POWERLOOM_RPC_URL"),
        s("PROTOCOL_STATE_CONTRACT"),
        s("DATA_MARKET_CONTRACT"),
        s("SEQUENCER_MULTIADDR"),
    );
    // The kit's addresses are EIP-55 and its sequencers.json entry names the same market.
    let ps_addr: Address = ps.parse().unwrap();
    assert_eq!(ps, ps_addr.to_checksum(None));
    assert_eq!(
        kit["snapshotter_kit"]["sequencers_json"][0]["dataMarketAddress"],
        market.as_str()
    );
    let content = kit["ipfs_api"].as_str().unwrap().to_string();

    let collector = sequencer_collector::Collector::start(sequencer_collector::Config {
        port: free_port(),
        bind: [127, 0, 0, 1].into(),
        health_port: free_port(),
        sequencer: seq.parse().unwrap(),
        data_market: Some(market.parse().unwrap()),
        buffer: 100,
        max_age_secs: 600,
        streams: 2,
        write_timeout_ms: 5_000,
        backoff_ms: 100,
        drain_secs: 5,
    })
    .await
    .unwrap();

    // Like the node: wait for an EpochReleased of the market, then sign and send.
    let chain = ChainClient::connect(ChainConfig::new(&rpc, ps_addr))
        .await
        .unwrap();
    let m: Address = market.parse().unwrap();
    let from = chain.head().await.unwrap();
    let release = loop {
        let head = chain.head().await.unwrap();
        if let Some(r) = chain
            .epoch_releases(m, from, head)
            .await
            .unwrap()
            .into_iter()
            .last()
        {
            break r;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "no epoch released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let epoch = release.epoch_id;
    let out = tokio::task::spawn_blocking({
        let (python, rpc, ps, market) = (python.clone(), rpc.clone(), ps.clone(), market.clone());
        let grpc = collector.grpc_addr.to_string();
        move || {
            std::process::Command::new(python)
                .arg(sequencer_testsupport::repo_root().join("tests/collector/node_client.py"))
                .args([
                    "--collector",
                    &grpc,
                    "--rpc-url",
                    &rpc,
                    "--protocol-state",
                    &ps,
                ])
                .args(["--data-market", &market, "--epoch", &epoch.to_string()])
                .args([
                    "--submission",
                    &format!("1:{KEY1}:collector-p-one:same-bytes"),
                ])
                .args([
                    "--submission",
                    &format!("2:{KEY2}:collector-p-one:same-bytes"),
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", common::out(&out));
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in sent["sent"].as_array().unwrap() {
        assert_eq!(s["answer"], "Success", "{sent}");
    }
    let sig = sent["sent"][0]["signature"].as_str().unwrap().to_string();

    // Anchored on chain.
    let anchored = loop {
        let a = chain.anchored(m, epoch).await.unwrap();
        if a.ended && !a.batches.is_empty() {
            break a;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(90),
            "epoch {epoch} never anchored: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Both submissions in the batch document; the collector chose the ids.
    let cid = &anchored.batches[0].batch_cid;
    let doc: BatchDocument = serde_json::from_slice(
        &reqwest::get(format!("{content}/ipfs/{cid}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let i = doc
        .submissions
        .iter()
        .position(|s| s.contains(&sig))
        .unwrap_or_else(|| panic!("our submission is not in batch {cid}: {doc:?}"));
    assert_eq!(doc.submission_ids.len(), 2, "{doc:?}");
    let id = doc.submission_ids[i].clone();
    // The node-facing views agree: the project's finalized CID is the one signed.
    let st = chain
        .snapshot_status(m, "collector-p-one", epoch)
        .await
        .unwrap();
    assert!(st.finalized, "{st:?}");
    assert_eq!(
        st.snapshot_cid,
        sent["sent"][0]["snapshot_cid"].as_str().unwrap()
    );

    let proof = common::seqctl(vec![
        "--json".into(),
        "proof".into(),
        "get".into(),
        "--url".into(),
        content.clone(),
        market.clone(),
        epoch.to_string(),
        id.clone(),
        "--ipfs".into(),
        content.clone(),
        "--rpc-url".into(),
        rpc.clone(),
        "--protocol-state".into(),
        ps.clone(),
    ])
    .await;
    assert!(proof.status.success(), "{}", common::out(&proof));
    let v: Value = serde_json::from_slice(&proof.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");

    let counts = collector.shutdown().await;
    assert_eq!((counts.received, counts.forwarded), (2, 2), "{counts:?}");
    assert!(
        counts.dropped.is_empty() && counts.rejected.is_empty(),
        "{counts:?}"
    );
    stop.cancel();
    assert_eq!(runner.await.unwrap().unwrap(), 0);
}
