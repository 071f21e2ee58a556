//! `seqctl epochs failed | reanchor` against the operational faults that used to lose an epoch
//! (issue 16 item 5), on a real anvil with the real chain client: the local runner deploys and
//! anchors one epoch; this test then releases another, has it verified and finalized, and
//! anchors it under each fault. The sequencer's account drained (`anvil_setBalance` 0): the
//! node's "insufficient funds" is retried and counted on every delivery, and on the job's last
//! one the epoch is `ANCHOR_FAILED`, which `seqctl epochs failed` lists with the reason. Funded
//! again but with the sequencer role revoked: `seqctl epochs reanchor` queues it, the revert
//! (`NotSequencer`) fails it at once. The role granted again: `seqctl epochs reanchor` anchors
//! it, every batch once and the end once (the sequencer's nonce says three transactions for two
//! batches). Needs ANVIL_BIN (scripts/env.sh); prints a loud skip line without it, or fails
//! under `SEQ_REQUIRE_SERVICES=1`.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::node_bindings::Anvil;
use clap::Parser;
use sequencer_core::eip712::Domain;
use sequencer_core::Address;
use sequencer_embedded::poller::{drain, poll_once, PollerConfig};
use sequencer_handlers::jobs::EpochJob;
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::{anchor, finalize, tick, verify, Pipeline, PipelineConfig};
use sequencer_runner::chain::{client, Saved, OWNER_KEY, SEQUENCER_KEY};

use common::{out, seqctl};

const CID: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";

async fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let r: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

async fn nonce(url: &str, who: Address) -> u64 {
    let n = rpc(
        url,
        "eth_getTransactionCount",
        serde_json::json!([format!("{who:#x}"), "latest"]),
    )
    .await;
    u64::from_str_radix(n.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn set_balance(url: &str, who: Address, wei: &str) {
    rpc(
        url,
        "anvil_setBalance",
        serde_json::json!([format!("{who:#x}"), wei]),
    )
    .await;
}

async fn state(p: &Pipeline, epoch: u64) -> EpochState {
    p.records().epoch(epoch).await.unwrap().unwrap().state
}

fn cfg() -> PollerConfig {
    PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funds_and_a_revoked_role_fail_an_epoch_visibly_and_seqctl_reanchors_it_once() {
    let Some(bin) = sequencer_testsupport::anvil_bin("seqctl reanchor test") else {
        return;
    };
    let anvil = Anvil::new()
        .path(bin)
        .block_time_f64(0.25)
        .try_spawn()
        .unwrap();
    let url = anvil.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let args = sequencer_runner::Args::parse_from([
        "sequencer-local",
        "--epochs",
        "1",
        "--slots",
        "4",
        "--projects",
        "3",
        "--batch-size",
        "2",
        "--rpc-url",
        &url,
        "--data-dir",
        &data_dir,
    ]);
    assert_eq!(sequencer_runner::run(args).await.expect("runs"), 0);
    let saved: Saved =
        serde_json::from_slice(&std::fs::read(dir.path().join("deployment.json")).unwrap())
            .unwrap();
    let d = saved.deployment;
    let market = d.data_market;
    let seq = Arc::new(client(&url, d.protocol_state, SEQUENCER_KEY).await.unwrap());
    let owner = client(&url, d.protocol_state, OWNER_KEY).await.unwrap();
    let mut config = PipelineConfig::new(market, d.protocol_state, d.chain_id);
    config.finalize.batch_size = 2;
    let (p, queues) =
        sequencer_runner::services::embedded(dir.path(), seq.clone(), config).unwrap();
    let (probe, recorder) = sequencer_testsupport::MetricsProbe::new(market);
    let p = p.with_recorder(recorder);
    // What the runner's ingress left in the queue as it stopped (its last tally, sent after
    // its drain), verified as the runner's poller would: the tick then waits for no boot.
    drain(queues.submissions.as_ref(), &cfg(), 20, |e| {
        sequencer_handlers::verify::handle(&p, e)
    })
    .await
    .unwrap();

    // A new epoch, released, verified (three projects: two batches) and finalized.
    let info = owner.market_info(market).await.unwrap();
    let begin = info.last_epoch_end + 1;
    let (_, epoch) = owner
        .release_epoch(market, begin, begin + info.epoch_size - 1)
        .await
        .unwrap();
    for _ in 0..80 {
        tick::step(&p).await.unwrap();
        if p.records().epoch(epoch).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = p
        .records()
        .epoch(epoch)
        .await
        .unwrap()
        .expect("opened")
        .record;
    let header = loop {
        if let Some(h) = seq.block_hash(r.release_block + 1).await.unwrap() {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let domain = Domain {
        chain_id: d.chain_id,
        verifying_contract: d.protocol_state,
    };
    for (slot, project) in [(1, "reanchor-a"), (1, "reanchor-b"), (2, "reanchor-c")] {
        let (body, _) = sequencer_testsupport::signed_message(
            &domain,
            market,
            &uuid::Uuid::new_v4(),
            slot,
            slot,
            epoch,
            project,
            CID,
            header,
        );
        assert_eq!(
            verify::verify_body(&p, &body).await.unwrap(),
            verify::Verdict::Accepted,
            "{project}"
        );
    }
    for _ in 0..120 {
        if tick::step(&p).await.unwrap().closed.contains(&epoch) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let f = finalize::run(&p, EpochJob { market, epoch }).await.unwrap();
    assert_eq!(f.batches, 2);
    assert_eq!(state(&p, epoch).await, EpochState::Finalized);

    // The sequencer's account drained: every delivery is refused, counted and retried; the
    // last one (the queue's maxReceiveCount, 5) records the epoch ANCHOR_FAILED.
    set_balance(&url, d.sequencer, "0x0").await;
    let first = poll_once(queues.anchor.as_ref(), &cfg(), |ev| anchor::handle(&p, ev))
        .await
        .unwrap();
    // (Jobs the runner left for its own later epochs may be in the queue too: each refused.)
    assert!(first.failed >= 1, "{first:?}");
    assert_eq!(
        probe.counter(&m::ANCHOR_OPERATIONAL_ERRORS, ["funds"]),
        first.failed as u64,
        "{:?}",
        probe.all_series()
    );
    assert_eq!(state(&p, epoch).await, EpochState::Finalized);
    drain(queues.anchor.as_ref(), &cfg(), 10, |ev| {
        anchor::handle(&p, ev)
    })
    .await
    .unwrap();
    assert_eq!(
        probe.counter(&m::ANCHOR_OPERATIONAL_ERRORS, ["funds"]),
        5 * first.failed as u64,
        "five deliveries of each job"
    );
    assert_eq!(state(&p, epoch).await, EpochState::Failed);
    assert!(seq
        .anchored(market, epoch)
        .await
        .unwrap()
        .batches
        .is_empty());

    let listed = seqctl(vec![
        "--json".into(),
        "epochs".into(),
        "failed".into(),
        "--data-dir".into(),
        data_dir.clone(),
    ])
    .await;
    assert!(listed.status.success(), "{}", out(&listed));
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let ours = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["epoch"] == epoch)
        .unwrap_or_else(|| panic!("epoch {epoch} not listed: {v}"));
    assert!(
        ours["failure"]
            .as_str()
            .is_some_and(|f| f.contains("insufficient funds")),
        "{v}"
    );
    let reanchor = || {
        seqctl(vec![
            "epochs".into(),
            "reanchor".into(),
            "--data-dir".into(),
            data_dir.clone(),
            epoch.to_string(),
        ])
    };

    // Funded, but the sequencer role revoked: the re-anchored job fails at once, for good.
    set_balance(&url, d.sequencer, "0x56bc75e2d63100000").await;
    owner
        .set_sequencer(market, d.sequencer, false)
        .await
        .unwrap();
    let o = reanchor().await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("insufficient funds"), "{}", out(&o));
    drain(queues.anchor.as_ref(), &cfg(), 10, |ev| {
        anchor::handle(&p, ev)
    })
    .await
    .unwrap();
    assert_eq!(state(&p, epoch).await, EpochState::Failed);
    assert_eq!(
        probe.counter(&m::ANCHOR_OPERATIONAL_ERRORS, ["permission"]),
        1,
        "{:?}",
        probe.all_series()
    );
    let failure = p
        .records()
        .epoch(epoch)
        .await
        .unwrap()
        .unwrap()
        .record
        .failure;
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.contains("NotSequencer")),
        "{failure:?}"
    );

    // The role granted again: one re-anchor sends each batch once and the end once.
    owner
        .set_sequencer(market, d.sequencer, true)
        .await
        .unwrap();
    let before = nonce(&url, d.sequencer).await;
    let o = reanchor().await;
    assert!(o.status.success(), "{}", out(&o));
    drain(queues.anchor.as_ref(), &cfg(), 10, |ev| {
        anchor::handle(&p, ev)
    })
    .await
    .unwrap();
    assert_eq!(state(&p, epoch).await, EpochState::Anchored);
    let on_chain = seq.anchored(market, epoch).await.unwrap();
    assert_eq!(on_chain.batches.len(), 2);
    assert!(on_chain.ended);
    assert_eq!(
        nonce(&url, d.sequencer).await - before,
        3,
        "2 batches + end"
    );
    for b in p.records().batches(epoch).await.unwrap() {
        assert!(b.record.tx_hash.is_some(), "{:?}", b.record);
    }
    let listed = seqctl(vec![
        "epochs".into(),
        "failed".into(),
        "--data-dir".into(),
        data_dir.clone(),
    ])
    .await;
    assert!(
        !out(&listed).contains(&format!("epoch {epoch} ")),
        "{}",
        out(&listed)
    );
    // Only a failed epoch is re-anchored.
    let o = reanchor().await;
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("ANCHORED"), "{}", out(&o));
}
