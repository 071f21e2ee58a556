//! `seqctl proof verify --rpc-url` against a real chain: ProtocolState deployed on an anvil
//! spawned here, an epoch released, finalized by `sequencer_core` into three batches and each
//! anchored with `ChainClient::submit_batch`. A genuine proof passes (with the batch document
//! from `--batch` or from an IPFS API served by this test); a self-made tree and document, valid
//! offline, fails the chain check with its reason, as do a wrong epoch, market, batch index and
//! anchor transaction; offline, the output says the proof was not checked against the chain; the
//! RPC URL (which may carry an API key) is never printed. Needs ANVIL_BIN (scripts/env.sh);
//! prints a loud skip line without it, or fails under `SEQ_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use alloy::node_bindings::Anvil;
use sequencer_chain::deploy::{deploy_local, DeployPlan, ANVIL_FIRST_KEY};
use sequencer_chain::{Address, ChainClient, ChainConfig, SubmitOutcome, B256};
use sequencer_core::finalize::{finalize_epoch, Accepted, Batch, FinalizeConfig};
use sequencer_core::proof::{prove_inclusion, EpochBatch, InclusionProof};
use sequencer_core::submission::{Request, SnapshotSubmission};
use sequencer_testsupport::ServedContent;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Stands for an API key in the RPC URL: must never appear in any output.
const SECRET: &str = "sEcReT-api-key-31337";

use common::{fails, out, seqctl, seqctl_env};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn proof_file(dir: &Path, name: &str, p: &InclusionProof) -> String {
    write(dir, name, &serde_json::to_vec_pretty(p).unwrap())
}

/// Two slots per project, all voting `cid`; ids `<prefix>-<n>` as UUIDs.
fn submissions(epoch: u64, projects: &[&str], prefix: u32, cid: &str) -> Vec<Accepted> {
    let mut out = Vec::new();
    for (p, project) in projects.iter().enumerate() {
        for slot in 1..=2u64 {
            let n = p as u64 * 2 + slot;
            out.push(Accepted {
                submission_id: format!("{prefix:08x}-0000-4000-8000-{n:012x}"),
                submission: SnapshotSubmission {
                    request: Request {
                        slot_id: n,
                        deadline: 1,
                        snapshot_cid: cid.into(),
                        epoch_id: epoch,
                        project_id: (*project).into(),
                    },
                    ..Default::default()
                },
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_hold_against_the_chain_and_forgeries_do_not() {
    let Some(bin) = sequencer_testsupport::anvil_bin("seqctl proof chain test") else {
        return;
    };
    let anvil = Anvil::new().path(bin).try_spawn().unwrap();
    let rpc = anvil.endpoint();
    // The URL the CLI is given: anvil ignores the query; the CLI must never print it.
    let rpc_secret = format!("{rpc}/?apikey={SECRET}");
    let client = ChainClient::connect(
        ChainConfig::new(&rpc, Address::ZERO).with_private_key(ANVIL_FIRST_KEY),
    )
    .await
    .unwrap();
    let (c, d) = deploy_local(&client, &DeployPlan::default()).await.unwrap();
    let market = d.data_market;
    let (_, epoch) = c.release_epoch(market, 1, d.epoch_size).await.unwrap();
    // A second released epoch that anchors nothing.
    let (_, empty_epoch) = c
        .release_epoch(market, d.epoch_size + 1, 2 * d.epoch_size)
        .await
        .unwrap();

    // The honest epoch: 5 projects, 2 per batch: 3 batches, each anchored.
    let cid = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
    let projects = ["p-a", "p-b", "p-c", "p-d", "p-e"];
    let subs = submissions(epoch, &projects, 0x0000_00e1, cid);
    let cfg = FinalizeConfig {
        batch_size: 2,
        ..Default::default()
    };
    let batches: Vec<Batch> = finalize_epoch(&subs, &cfg).unwrap().batches;
    assert_eq!(batches.len(), 3);
    let mut refs: Vec<EpochBatch> = Vec::new();
    for b in &batches {
        let sent = c
            .submit_batch(
                market,
                epoch,
                &b.cid.to_string(),
                &b.document.pids,
                &b.document.cids,
                b.finalized_cids_root,
            )
            .await
            .unwrap();
        let SubmitOutcome::Anchored { tx_hash, .. } = sent else {
            panic!("{sent:?}")
        };
        let mut r = EpochBatch::from(b);
        r.anchor_tx = Some(tx_hash);
        refs.push(r);
    }
    let market_s = format!("{market:#x}");
    let prove = |id: &str| prove_inclusion(&market_s, epoch, &refs, id).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = batches
        .iter()
        .map(|b| write(dir.path(), &format!("batch{}.json", b.index), &b.json))
        .collect();
    let stop = CancellationToken::new();
    let served: HashMap<String, Vec<u8>> = batches
        .iter()
        .map(|b| (b.cid.to_string(), b.json.clone()))
        .collect();
    let ipfs = sequencer_runner::content_http::serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(ServedContent(served.into_iter().collect())),
        None,
        None,
        stop.clone(),
    )
    .await
    .unwrap();
    let ipfs = format!("http://{ipfs}");
    let ps = format!("{:#x}", d.protocol_state);

    // An unreachable RPC whose URL carries a key in its path: started now (it retries for a
    // while), looked at the end.
    let unreachable = {
        let first = prove(&batches[0].document.submission_ids[0]);
        let f = proof_file(dir.path(), "unreachable.json", &first);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        tokio::spawn(seqctl(vec![
            "proof".into(),
            "verify".into(),
            f,
            "--batch".into(),
            docs[0].clone(),
            "--rpc-url".into(),
            format!("http://user:{SECRET}@127.0.0.1:{port}/v3/{SECRET}?key={SECRET}"),
            "--protocol-state".into(),
            ps.clone(),
        ]))
    };

    let verify = |file: String, extra: Vec<String>| {
        let mut v: Vec<String> = vec!["proof".into(), "verify".into(), file];
        v.extend(extra);
        seqctl(v)
    };
    let on_chain = |batch: Option<&str>| {
        let mut v: Vec<String> = vec![
            "--rpc-url".into(),
            rpc_secret.clone(),
            "--protocol-state".into(),
            ps.clone(),
        ];
        match batch {
            Some(b) => v.extend(["--batch".into(), b.to_string()]),
            None => v.extend(["--ipfs".into(), ipfs.clone()]),
        }
        v
    };
    let no_secret = |o: &Output| {
        assert!(
            !out(o).contains(SECRET),
            "the RPC URL was printed: {}",
            out(o)
        );
    };

    // 1. Genuine proofs pass: batch 1 with --batch (its roothash recomputed from it alone),
    //    batch 3 from IPFS (recomputed over batches 1..=3), batch 3 with --batch only (said not
    //    recomputed, the anchored document's roothash is used).
    let first_id = batches[0].document.submission_ids[1].clone();
    let genuine = prove(&first_id);
    let gf = proof_file(dir.path(), "genuine.json", &genuine);
    let o = verify(gf.clone(), on_chain(Some(&docs[0]))).await;
    println!("{}", out(&o));
    assert!(o.status.success(), "{}", out(&o));
    assert!(fails(&o).is_empty(), "{}", out(&o));
    for want in [
        "ok   market is registered on chain",
        "ok   epoch is released on chain",
        "ok   batch CID is anchored on chain for this epoch",
        "ok   batch index is its position on chain",
        "ok   anchor transaction matches the chain",
        "ok   finalizedCidsRoot on chain equals the document's cids root",
        "ok   roothash recomputed from this and the earlier batches on chain",
        "checks hold",
    ] {
        assert!(out(&o).contains(want), "{want}: {}", out(&o));
    }
    assert!(!out(&o).contains("not checked against the chain"));
    no_secret(&o);
    // The chain inputs from the environment instead (RPC_URL, PROTOCOL_STATE_ADDRESS,
    // IPFS_API_URL): the same checks, and the URL still never printed.
    let o = seqctl_env(
        vec!["proof".into(), "verify".into(), gf.clone()],
        vec![
            ("RPC_URL", rpc_secret.clone()),
            ("PROTOCOL_STATE_ADDRESS", ps.clone()),
            ("IPFS_API_URL", ipfs.clone()),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("ok   roothash recomputed"), "{}", out(&o));
    no_secret(&o);
    // Half of the pair in the environment is a usage error naming both sources, not a silent
    // offline check; the URL is not echoed.
    let o = seqctl_env(
        vec!["proof".into(), "verify".into(), gf.clone()],
        vec![("RPC_URL", rpc_secret.clone())],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("PROTOCOL_STATE_ADDRESS"), "{}", out(&o));
    no_secret(&o);
    let last_id = batches[2].document.submission_ids[0].clone();
    let last = prove(&last_id);
    assert_eq!(last.batch_index, 3);
    let lf = proof_file(dir.path(), "last.json", &last);
    let o = verify(lf.clone(), on_chain(None)).await;
    println!("{}", out(&o));
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("ok   roothash recomputed"), "{}", out(&o));
    no_secret(&o);
    let o = verify(lf.clone(), on_chain(Some(&docs[2]))).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("roothash not recomputed over batches 1..=2"),
        "{}",
        out(&o)
    );
    let mut args = on_chain(Some(&docs[0]));
    args.push("--json".into());
    let o = verify(gf.clone(), args).await;
    assert!(o.status.success(), "{}", out(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["chain_checked"], true);
    assert!(v["checks"].as_array().unwrap().len() >= 7, "{v}");
    no_secret(&o);

    // 2. Offline, the same proof holds and the output says it was not checked on chain.
    let o = verify(gf.clone(), vec!["--batch".into(), docs[0].clone()]).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("not checked against the chain"),
        "{}",
        out(&o)
    );
    let o = verify(gf.clone(), vec!["--json".into()]).await;
    assert!(o.status.success(), "{}", out(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["chain_checked"], false);
    assert!(v["chain"]
        .as_str()
        .unwrap()
        .contains("not checked against the chain"));

    // 3. A self-made tree and document for the same market, epoch and projects, with the same
    //    finalized CIDs (so even its finalizedCidsRoot equals batch 1's on chain) and the
    //    forger's own submission ids: valid offline, refused by the chain.
    let forged_subs = submissions(epoch, &projects[..2], 0x0000_0f0f, cid);
    let forged = finalize_epoch(&forged_subs, &cfg).unwrap().batches;
    assert_eq!(
        forged[0].finalized_cids_root,
        batches[0].finalized_cids_root
    );
    let forged_refs: Vec<EpochBatch> = forged.iter().map(EpochBatch::from).collect();
    let forged_id = forged[0].document.submission_ids[0].clone();
    let mut fp = prove_inclusion(&market_s, epoch, &forged_refs, &forged_id).unwrap();
    fp.anchor_tx = genuine.anchor_tx;
    let ff = proof_file(dir.path(), "forged.json", &fp);
    let fd = write(dir.path(), "forged-batch.json", &forged[0].json);
    let o = verify(ff.clone(), vec!["--batch".into(), fd.clone()]).await;
    assert!(
        o.status.success(),
        "offline, the forgery holds: {}",
        out(&o)
    );
    assert!(out(&o).contains("not checked against the chain"));
    let o = verify(ff.clone(), on_chain(Some(&fd))).await;
    println!("{}", out(&o));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let f = fails(&o);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("batch CID is anchored on chain for this epoch")
            && f[0].contains(&forged[0].cid.to_string())
            && f[0].contains("is not one of epoch"),
        "{f:?}"
    );
    no_secret(&o);

    // 4. A self-made tree that names the genuine batch CID: offline without the document it
    //    holds; on chain the anchored document (from IPFS) does not carry its roothash.
    let mut fp2 = fp.clone();
    fp2.batch_cid = batches[0].cid.to_string();
    let ff2 = proof_file(dir.path(), "forged-real-cid.json", &fp2);
    let o = verify(ff2.clone(), vec![]).await;
    assert!(o.status.success(), "{}", out(&o));
    let o = verify(ff2.clone(), on_chain(None)).await;
    println!("{}", out(&o));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let f = fails(&o);
    assert!(
        f.iter()
            .any(|l| l.contains("batch document from IPFS matches the proof")),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|l| l.contains("anchored document carries the proof's roothash")),
        "{f:?}"
    );

    // 5. The genuine proof with another epoch, market, batch index or anchor transaction: the
    //    Merkle path still holds offline (none of them is in the leaf), the chain refuses each.
    let mut cases: Vec<(&str, InclusionProof, &str)> = Vec::new();
    let mut p = genuine.clone();
    p.epoch_id = empty_epoch;
    cases.push((
        "released-epoch",
        p,
        "batch CID is anchored on chain for this epoch",
    ));
    let mut p = genuine.clone();
    p.epoch_id = 99;
    cases.push(("unreleased-epoch", p, "was never released"));
    let mut p = genuine.clone();
    p.data_market = format!("{:#x}", Address::repeat_byte(0x42));
    cases.push(("market", p, "market is registered on chain"));
    let mut p = genuine.clone();
    p.batch_index = 2;
    cases.push(("batch-index", p, "batch index is its position on chain"));
    let mut p = genuine.clone();
    p.anchor_tx = Some(B256::repeat_byte(0x77));
    cases.push(("anchor-tx", p, "anchor transaction matches the chain"));
    for (name, p, reason) in cases {
        let f = proof_file(dir.path(), &format!("{name}.json"), &p);
        let o = verify(f.clone(), vec!["--batch".into(), docs[0].clone()]).await;
        assert!(o.status.success(), "{name} offline: {}", out(&o));
        let o = verify(f, on_chain(Some(&docs[0]))).await;
        println!("{name}: {}", out(&o));
        assert_eq!(o.status.code(), Some(1), "{name}: {}", out(&o));
        let f = fails(&o);
        assert_eq!(f.len(), 1, "{name}: {f:?}");
        assert!(f[0].contains(reason), "{name}: {f:?}");
        no_secret(&o);
    }

    // 6. --rpc-url alone cannot tie the roothash to the chain: a usage error that says why.
    let o = verify(
        gf.clone(),
        vec![
            "--rpc-url".into(),
            rpc_secret.clone(),
            "--protocol-state".into(),
            ps.clone(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("needs the batch document"), "{}", out(&o));
    no_secret(&o);

    // 7. The unreachable RPC: an error, and neither the key in the user info, the path nor the
    //    query is printed.
    let o = unreachable.await.unwrap();
    println!("unreachable: {}", out(&o));
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("connect to http://127.0.0.1:"),
        "{}",
        out(&o)
    );
    no_secret(&o);
    stop.cancel();
}
