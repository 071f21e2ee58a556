//! `seqctl audit epoch` and `seqctl proof get` against a real anchored epoch: the local runner
//! (`sequencer_runner::run`, small sizes) on an anvil spawned here, then the runner's data
//! directory served over HTTP (the proof API and the batch documents) by this test. The honest
//! epoch passes every check; copies of its documents tampered with (bytes changed, a wrong
//! roothash, a wrong `cids` entry, a forged signature) and served by a server of this test are
//! each caught; an epoch that was never released says so. Then the status page in headless
//! Chromium (when installed: `apt-get install chromium` or CHROMIUM_BIN) shows the epoch, its
//! batches and a looked-up submission's fate; the screenshot is kept in
//! `target/artifacts/status-page.png`. Needs ANVIL_BIN (scripts/env.sh);
//! prints a loud skip line without it, or fails under `SEQ_REQUIRE_SERVICES=1`.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use alloy::node_bindings::Anvil;
use clap::Parser;
use sequencer_chain::{ChainClient, ChainConfig};
use sequencer_core::devkeys;
use sequencer_core::eip712::{sign_request, Domain};
use sequencer_core::finalize::BatchDocument;
use sequencer_core::submission::SnapshotSubmission;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::PipelineConfig;
use sequencer_testsupport::ServedContent;
use tokio_util::sync::CancellationToken;

async fn serve(docs: HashMap<String, Vec<u8>>, stop: &CancellationToken) -> String {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let bound = sequencer_runner::content_http::serve(
        addr,
        Arc::new(ServedContent(docs.into_iter().collect())),
        None,
        stop.clone(),
    )
    .await
    .unwrap();
    format!("http://{bound}")
}

use common::{fails, out, seqctl, seqctl_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_holds_on_a_real_epoch_and_catches_tampering() {
    let Some(bin) = sequencer_testsupport::anvil_bin("seqctl audit test") else {
        return;
    };
    let anvil = Anvil::new()
        .path(bin)
        .block_time_f64(0.25)
        .try_spawn()
        .unwrap();
    let rpc = anvil.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let args = sequencer_runner::Args::parse_from([
        "sequencer-local",
        "--epochs",
        "1",
        "--slots",
        "10",
        "--projects",
        "5",
        "--batch-size",
        "2",
        "--rpc-url",
        &rpc,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(sequencer_runner::run(args).await.expect("runs"), 0);

    // The finished run's state, served like the runner serves it.
    let saved: sequencer_runner::chain::Saved =
        serde_json::from_slice(&std::fs::read(dir.path().join("deployment.json")).unwrap())
            .unwrap();
    let d = saved.deployment;
    let chain = Arc::new(
        ChainClient::connect(ChainConfig::new(&rpc, d.protocol_state))
            .await
            .unwrap(),
    );
    let config = PipelineConfig::new(d.data_market, d.protocol_state, d.chain_id);
    let (p, _queues) = sequencer_runner::services::embedded(dir.path(), chain, config).unwrap();
    let stop = CancellationToken::new();
    let honest = sequencer_runner::content_http::serve(
        "127.0.0.1:0".parse().unwrap(),
        p.ports.content.clone(),
        Some(sequencer_api::ApiState::new(p.clone())),
        stop.clone(),
    )
    .await
    .unwrap();
    let honest = format!("http://{honest}");
    let epoch = p
        .records()
        .epochs()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.state == EpochState::Anchored && e.record.batches.unwrap_or(0) >= 2)
        .expect("an anchored epoch with two batches")
        .record
        .epoch;
    let mut docs: Vec<(String, Vec<u8>, BatchDocument)> = Vec::new();
    for b in p.records().batches(epoch).await.unwrap() {
        let b = b.record;
        let bytes = p.ports.content.get(&b.cid).await.unwrap().unwrap();
        let doc: BatchDocument = serde_json::from_slice(&bytes).unwrap();
        docs.push((b.cid, bytes, doc));
    }
    let originals: HashMap<String, Vec<u8>> = docs
        .iter()
        .map(|(c, b, _)| (c.clone(), b.clone()))
        .collect();
    let market = format!("{:#x}", d.data_market);
    let ps = format!("{:#x}", d.protocol_state);
    let audit = |ipfs: String, e: u64| {
        let v = vec![
            "audit".into(),
            "epoch".into(),
            market.clone(),
            e.to_string(),
            "--rpc-url".into(),
            rpc.clone(),
            "--protocol-state".into(),
            ps.clone(),
            "--ipfs".into(),
            ipfs,
        ];
        seqctl(v)
    };

    // Honest: every check holds.
    let o = audit(honest.clone(), epoch).await;
    println!("{}", out(&o));
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("checks hold"));
    assert!(fails(&o).is_empty());

    // A proof from the API, checked against IPFS and the chain: a submission of the last
    // batch, so the roothash is recomputed over the earlier batch too.
    let last = docs.last().unwrap();
    let id = last.2.submission_ids[0].clone();
    let proof_get = |ipfs: String| {
        seqctl(vec![
            "proof".into(),
            "get".into(),
            "--url".into(),
            honest.clone(),
            market.clone(),
            epoch.to_string(),
            id.clone(),
            "--ipfs".into(),
            ipfs,
            "--rpc-url".into(),
            rpc.clone(),
            "--protocol-state".into(),
            ps.clone(),
        ])
    };
    let o = proof_get(honest.clone()).await;
    println!("{}", out(&o));
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("roothash recomputed"));
    // The same two commands with every URL, contract and market from the environment
    // (`seqctl --help`'s list), the market left out of the arguments: the same checks.
    let env = vec![
        ("PROOF_API_URL", honest.clone()),
        ("IPFS_API_URL", honest.clone()),
        ("RPC_URL", rpc.clone()),
        ("PROTOCOL_STATE_ADDRESS", ps.clone()),
        ("DATA_MARKET_ADDRESS", market.clone()),
    ];
    let o = seqctl_env(
        vec!["proof".into(), "get".into(), epoch.to_string(), id.clone()],
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", out(&o));
    for want in [
        "batch document: CID of its bytes",
        "anchored on chain",
        "roothash recomputed",
    ] {
        assert!(out(&o).contains(want), "{want}: {}", out(&o));
    }
    let o = seqctl_env(vec!["audit".into(), "epoch".into(), epoch.to_string()], env).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("checks hold"), "{}", out(&o));

    // 1. Tampered bytes (same JSON meaning, one byte more): only the CID check fails, and the
    //    proof check refuses the document.
    let mut t = originals.clone();
    t.get_mut(&docs[0].0).unwrap().push(b' ');
    t.get_mut(&last.0).unwrap().push(b' ');
    let lying = serve(t, &stop).await;
    let o = audit(lying.clone(), epoch).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let f = fails(&o);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f.iter().all(|l| l.contains("CID of its bytes")), "{f:?}");
    let o = proof_get(lying).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("FAIL batch document"), "{}", out(&o));

    // 2. A wrong roothash in the last batch.
    let mut t = originals.clone();
    let mut doc = last.2.clone();
    doc.roothash = format!("0x{}", "11".repeat(32));
    t.insert(last.0.clone(), doc.to_canonical_json());
    let o = audit(serve(t, &stop).await, epoch).await;
    assert_eq!(o.status.code(), Some(1));
    let f = fails(&o);
    assert!(
        f.iter().any(|l| l.contains("roothash over the ids")),
        "{f:?}"
    );

    // 3. A wrong finalized CID in the first batch: the chain's root and the plurality disagree.
    let mut t = originals.clone();
    let mut doc = docs[0].2.clone();
    doc.cids[0] = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4".into();
    t.insert(docs[0].0.clone(), doc.to_canonical_json());
    let o = audit(serve(t, &stop).await, epoch).await;
    assert_eq!(o.status.code(), Some(1));
    let f = fails(&o);
    assert!(
        f.iter().any(|l| l.contains("finalizedCidsRoot on chain")),
        "{f:?}"
    );
    assert!(f.iter().any(|l| l.contains("plurality")), "{f:?}");

    // 4. A forged signature: the same request signed by another slot's key.
    let mut t = originals.clone();
    let mut doc = docs[0].2.clone();
    let mut sub: SnapshotSubmission = serde_json::from_str(&doc.submissions[0]).unwrap();
    let other = sub.request.slot_id % 10 + 1;
    let domain = Domain {
        chain_id: d.chain_id,
        verifying_contract: d.protocol_state,
    };
    sub.signature = sign_request(
        &domain,
        &sub.request,
        &devkeys::sim_snapshotter_key(other).unwrap(),
    )
    .unwrap();
    doc.submissions[0] = sub.to_canonical_json();
    t.insert(docs[0].0.clone(), doc.to_canonical_json());
    let o = audit(serve(t, &stop).await, epoch).await;
    assert_eq!(o.status.code(), Some(1));
    let f = fails(&o);
    assert!(
        f.iter()
            .any(|l| l.contains("EIP-712 signer") && l.contains(&doc.submission_ids[0])),
        "{f:?}"
    );

    // 5. An epoch that was never released, and bad input.
    let o = audit(honest.clone(), 9999).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("never released"), "{}", out(&o));
    let o = seqctl(vec![
        "audit".into(),
        "epoch".into(),
        "0x12".into(),
        "1".into(),
        "--rpc-url".into(),
        rpc.clone(),
        "--protocol-state".into(),
        ps.clone(),
        "--ipfs".into(),
        honest.clone(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("not an address"));
    // A rejected or unknown submission has no proof, and says so.
    let o = seqctl(vec![
        "proof".into(),
        "get".into(),
        "--url".into(),
        honest.clone(),
        market.clone(),
        epoch.to_string(),
        "00000000-0000-4000-8000-000000000000".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("unknown_submission"), "{}", out(&o));

    // The status page in a real headless browser: the epochs, one epoch's batches and the
    // looked-up submission's fate, as the page's JavaScript renders them from the API.
    status_page_in_chromium(&honest, epoch, &id, &docs[0].0).await;
    stop.cancel();
}

fn chromium() -> Option<PathBuf> {
    let from_env = std::env::var_os("CHROMIUM_BIN").map(PathBuf::from);
    let found = from_env.into_iter().chain(
        [
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ]
        .into_iter()
        .map(PathBuf::from),
    );
    let bin = found.into_iter().find(|p| p.is_file());
    if bin.is_none() && std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("no Chromium for the status page check and SEQ_REQUIRE_SERVICES=1 (scripts/tools.sh chromium)");
    }
    if bin.is_none() {
        eprintln!("\n!!!!! SKIPPED the status page browser check: no Chromium (apt-get install chromium, or set CHROMIUM_BIN) !!!!!\n");
    }
    bin
}

async fn browser(bin: &std::path::Path, args: Vec<String>) -> Output {
    let bin = bin.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=15000",
                "--window-size=1280,1100",
            ])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn status_page_in_chromium(base: &str, epoch: u64, id: &str, batch_cid: &str) {
    let Some(bin) = chromium() else { return };
    let url = format!("{base}/status?epoch={epoch}&id={id}");
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let o = browser(
        &bin,
        vec![profile_arg.clone(), "--dump-dom".into(), url.clone()],
    )
    .await;
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.contains("data-ready=\"1\""),
        "page did not finish: {dom}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        dom.contains("id=\"fate-word\">included<"),
        "fate not shown: {dom}"
    );
    assert!(
        dom.contains(batch_cid),
        "the epoch's batches are listed: {dom}"
    );
    assert!(
        dom.contains(&format!("data-epoch=\"{epoch}\"")),
        "the epoch row: {dom}"
    );
    assert!(dom.contains("ANCHORED"));
    // The screenshot is kept as the test's artifact.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let o = browser(
        &bin,
        vec![profile_arg, format!("--screenshot={}", shot.display()), url],
    )
    .await;
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    println!("status page screenshot: {}", shot.display());
}
