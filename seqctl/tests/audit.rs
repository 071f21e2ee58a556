//! `seqctl audit epoch` and `seqctl proof get` against a real anchored epoch: the local runner
//! (`sequencer_runner::run`, small sizes) on an anvil spawned here, then the runner's data
//! directory served over HTTP (the proof API and the batch documents) by this test. The honest
//! epoch passes every check; copies of its documents tampered with (bytes changed, a wrong
//! roothash, a wrong `cids` entry, a forged signature) and served by a server of this test are
//! each caught; an epoch that was never released says so. Needs ANVIL_BIN (scripts/env.sh);
//! prints a loud skip line without it, or fails under `SEQ_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use alloy::node_bindings::Anvil;
use async_trait::async_trait;
use clap::Parser;
use sequencer_chain::{ChainClient, ChainConfig};
use sequencer_core::devkeys;
use sequencer_core::eip712::{sign_request, Domain};
use sequencer_core::finalize::BatchDocument;
use sequencer_core::submission::SnapshotSubmission;
use sequencer_functions::handlers::finalize::batches;
use sequencer_functions::handlers::tick;
use sequencer_functions::ports::{ContentError, ContentStore};
use sequencer_functions::records::state;
use sequencer_functions::PipelineConfig;
use tokio_util::sync::CancellationToken;

fn anvil_bin() -> Option<PathBuf> {
    match std::env::var_os("ANVIL_BIN").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            if std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("seqctl audit test: ANVIL_BIN is not set and SEQ_REQUIRE_SERVICES=1");
            }
            eprintln!("\n!!!!! SKIPPED seqctl audit test: ANVIL_BIN is not set (source scripts/env.sh) !!!!!\n");
            None
        }
    }
}

/// Documents by CID, whatever their bytes: what a lying IPFS node serves.
struct Served(HashMap<String, Vec<u8>>);

#[async_trait]
impl ContentStore for Served {
    async fn put(&self, _bytes: &[u8]) -> Result<String, ContentError> {
        Err(ContentError::Unavailable("read-only".into()))
    }
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, ContentError> {
        Ok(self.0.get(cid).cloned())
    }
}

async fn serve(docs: HashMap<String, Vec<u8>>, stop: &CancellationToken) -> String {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let bound =
        sequencer_runner::content_http::serve(addr, Arc::new(Served(docs)), None, stop.clone())
            .await
            .unwrap();
    format!("http://{bound}")
}

async fn seqctl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_seqctl"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fails(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_holds_on_a_real_epoch_and_catches_tampering() {
    let Some(bin) = anvil_bin() else { return };
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
        Some(p.clone()),
        stop.clone(),
    )
    .await
    .unwrap();
    let honest = format!("http://{honest}");
    let (epoch, _, _) = tick::epochs(&p)
        .await
        .unwrap()
        .into_iter()
        .find(|(_, st, rec)| st == state::ANCHORED && rec.batches.unwrap_or(0) >= 2)
        .expect("an anchored epoch with two batches");
    let mut docs: Vec<(String, Vec<u8>, BatchDocument)> = Vec::new();
    for (_, b) in batches(&p, epoch).await.unwrap() {
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
    stop.cancel();
}
