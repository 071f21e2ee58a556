//! The chain client against a real anvil node: deploy, assign, release, submit, end; every
//! revert typed; delayed batches; node restarts; exactly-once anchoring across a crash.

mod common;

use std::time::Duration;

use alloy::{
    primitives::{Address, U256},
    providers::{ext::AnvilApi, Provider},
};
use common::*;
use sequencer_chain::{
    bindings::ProtocolState, deploy::sim_snapshotter_key, ChainError, EndOutcome, Revert,
    SubmitOutcome, Windows,
};

const WINDOWS: Windows = Windows {
    snapshot_blocks: 20,
    batch_blocks: 60,
};

fn revert_of<T: std::fmt::Debug>(r: Result<T, ChainError>) -> Revert {
    match r {
        Err(ChainError::Revert(rev)) => rev,
        other => panic!("expected a revert, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_assign_release_submit_end() {
    let Some(env) = setup("deploy_assign_release_submit_end", WINDOWS).await else {
        return;
    };
    let c = &env.client;
    let market = env.market();

    // Slots and windows as deployed.
    for slot in 1..=5 {
        let want = sim_snapshotter_key(slot).expect("key").address();
        assert_eq!(c.slot_owner(slot).await.expect("slot owner"), want);
    }
    assert_eq!(c.slot_owner(6).await.expect("slot owner"), Address::ZERO);
    assert_eq!(c.submission_window(market).await.expect("windows"), WINDOWS);
    let snapshotter = sim_snapshotter_key(1).expect("key").address();
    assert!(!c.is_flagged(market, snapshotter).await.expect("flagged"));
    c.set_flagged(market, &[snapshotter], true)
        .await
        .expect("flag");
    assert!(c.is_flagged(market, snapshotter).await.expect("flagged"));

    // Release: only reported once CONFIRMATIONS (2) blocks deep.
    let cursor = c.head().await.expect("head");
    let (tx, epoch) = c.release_epoch(market, 100, 109).await.expect("release");
    assert_eq!(epoch, 1);
    let page = c.releases_after(market, cursor).await.expect("releases");
    assert!(
        page.releases.is_empty(),
        "release reported at depth < 2: {page:?}"
    );
    c.provider().anvil_mine(Some(2), None).await.expect("mine");
    let page = c
        .releases_after(market, page.next_cursor)
        .await
        .expect("releases");
    assert_eq!(page.releases.len(), 1);
    let r = &page.releases[0];
    assert_eq!(
        (r.epoch_id, r.begin, r.end, r.block_number, r.tx_hash),
        (1, 100, 109, tx.block, tx.tx_hash)
    );
    assert_eq!(
        c.block_number(r.block_hash).await.expect("block"),
        Some(tx.block)
    );
    assert_eq!(c.block_number(root(9)).await.expect("block"), None);
    let again = c
        .releases_after(market, page.next_cursor)
        .await
        .expect("releases");
    assert!(again.releases.is_empty());
    assert_eq!(
        c.epoch_releases(market, 0, page.next_cursor)
            .await
            .expect("range")
            .len(),
        1
    );
    // Same answer when eth_getLogs is cut into one-block ranges.
    let mut cfg = c.config().clone();
    cfg.log_range = 1;
    let chunked = sequencer_chain::ChainClient::connect(cfg)
        .await
        .expect("connect");
    assert_eq!(
        chunked
            .epoch_releases(market, 0, page.next_cursor)
            .await
            .expect("range"),
        page.releases
    );

    // Submit two batches, then end.
    let p1 = strings(&["proj:a", "proj:b"]);
    let out = c
        .submit_batch(
            market,
            1,
            "batch-1",
            &p1,
            &strings(&[CID_A, CID_B]),
            root(1),
        )
        .await
        .expect("submit");
    let SubmitOutcome::Anchored {
        tx_hash,
        delayed: false,
        gas_used,
        ..
    } = out
    else {
        panic!("expected Anchored, got {out:?}")
    };
    assert!(gas_used > 0);
    let out2 = c
        .submit_batch(
            market,
            1,
            "batch-2",
            &strings(&["proj:c"]),
            &strings(&[CID_A]),
            root(2),
        )
        .await
        .expect("submit");
    assert!(matches!(out2, SubmitOutcome::Anchored { .. }));

    let a = c.anchored(market, 1).await.expect("anchored");
    assert_eq!(a.release_block, Some(tx.block));
    assert_eq!((a.begin, a.end, a.ended), (100, 109, false));
    assert_eq!(a.batches.len(), 2);
    assert_eq!(a.batches[0].batch_cid, "batch-1");
    assert_eq!(a.batches[0].root, root(1));
    assert_eq!(a.batches[0].tx_hash, Some(tx_hash));
    assert_eq!(a.batch("batch-2").map(|b| b.root), Some(root(2)));

    let status = ProtocolState::new(c.protocol_state(), c.provider().clone())
        .projectStatus(market, "proj:b".into(), U256::from(1))
        .call()
        .await
        .expect("projectStatus");
    assert!(status.submitted);
    assert_eq!(
        (status.snapshotCid.as_str(), status.batchCid.as_str()),
        (CID_B, "batch-1")
    );

    // A retry of an anchored batch sends nothing.
    let from = c.signer_address().expect("signer");
    let nonce = c
        .provider()
        .get_transaction_count(from)
        .await
        .expect("nonce");
    let retry = c
        .submit_batch(
            market,
            1,
            "batch-1",
            &p1,
            &strings(&[CID_A, CID_B]),
            root(1),
        )
        .await
        .expect("retry");
    assert!(
        matches!(retry, SubmitOutcome::AlreadyAnchored { tx_hash: Some(h), root: r, delayed: false, .. } if h == tx_hash && r == root(1)),
        "{retry:?}"
    );
    assert_eq!(
        c.provider()
            .get_transaction_count(from)
            .await
            .expect("nonce"),
        nonce
    );

    assert!(matches!(
        c.end_batch_submissions(market, 1).await.expect("end"),
        EndOutcome::Ended { .. }
    ));
    assert_eq!(
        c.end_batch_submissions(market, 1).await.expect("end again"),
        EndOutcome::AlreadyEnded
    );
    assert!(c.anchored(market, 1).await.expect("anchored").ended);
    assert_eq!(
        c.provider()
            .get_transaction_count(from)
            .await
            .expect("nonce"),
        nonce + 1
    );

    // Unreleased epochs show as such.
    let none = c.anchored(market, 7).await.expect("anchored");
    assert_eq!(
        (none.release_block, none.batches.len(), none.ended),
        (None, 0, false)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_revert_is_typed() {
    let Some(env) = setup("every_revert_is_typed", WINDOWS).await else {
        return;
    };
    let c = &env.client;
    let market = env.market();
    let stranger = env.client_with_key(Some(3)).await;
    let stranger_addr = stranger.signer_address().expect("signer");
    let one = strings(&["p"]);
    let cid = strings(&[CID_A]);

    // Before any release.
    assert_eq!(
        revert_of(c.submit_batch(market, 1, "b", &one, &cid, root(1)).await),
        Revert::EpochNotReleased(U256::from(1))
    );
    assert_eq!(
        revert_of(c.end_batch_submissions(market, 1).await),
        Revert::EpochNotReleased(U256::from(1))
    );
    assert_eq!(
        revert_of(stranger.release_epoch(market, 1, 10).await),
        Revert::NotEpochManager(stranger_addr)
    );
    assert_eq!(
        revert_of(c.release_epoch(market, 1, 5).await),
        Revert::InvalidEpochRange {
            begin: U256::from(1),
            end: U256::from(5),
            expected_begin: U256::from(1)
        }
    );
    c.release_epoch(market, 1, 10).await.expect("release");
    assert_eq!(
        revert_of(c.release_epoch(market, 12, 21).await),
        Revert::InvalidEpochRange {
            begin: U256::from(12),
            end: U256::from(21),
            expected_begin: U256::from(11)
        }
    );

    // Sequencer-side reverts.
    assert_eq!(
        revert_of(
            stranger
                .submit_batch(market, 1, "b", &one, &cid, root(1))
                .await
        ),
        Revert::NotSequencer(stranger_addr)
    );
    assert_eq!(
        revert_of(stranger.end_batch_submissions(market, 1).await),
        Revert::NotSequencer(stranger_addr)
    );
    let other_market = Address::repeat_byte(0x42);
    assert_eq!(
        revert_of(
            c.submit_batch(other_market, 1, "b", &one, &cid, root(1))
                .await
        ),
        Revert::UnknownMarket(other_market)
    );
    assert_eq!(
        revert_of(
            c.submit_batch(market, 1, "b", &strings(&["p", "q"]), &cid, root(1))
                .await
        ),
        Revert::LengthMismatch {
            project_ids: U256::from(2),
            snapshot_cids: U256::from(1)
        }
    );
    assert_eq!(
        revert_of(c.submit_batch(market, 1, "b", &[], &[], root(1)).await),
        Revert::EmptyBatch
    );
    assert_eq!(
        revert_of(c.submit_batch(market, 1, "", &one, &cid, root(1)).await),
        Revert::EmptyBatchCid
    );
    c.submit_batch(market, 1, "b1", &one, &cid, root(1))
        .await
        .expect("submit");
    assert_eq!(
        revert_of(
            c.submit_batch(
                market,
                1,
                "b2",
                &strings(&["q", "p"]),
                &strings(&[CID_A, CID_B]),
                root(2)
            )
            .await
        ),
        Revert::ProjectAlreadySubmitted {
            project_id: "p".into(),
            epoch: U256::from(1)
        }
    );
    // The client never resends an anchored CID; the contract's own guard, sent raw:
    let raw = ProtocolState::submitSubmissionBatchCall {
        dataMarket: market,
        batchCid: "b1".into(),
        epochId: U256::from(1),
        projectIds: strings(&["z"]),
        snapshotCids: cid.clone(),
        finalizedCidsRootHash: root(1),
    };
    assert_eq!(
        revert_of(c.send_call(&raw).await),
        Revert::BatchAlreadySubmitted("b1".into())
    );
    // A CID anchored under epoch 1 asked for under epoch 2.
    c.release_epoch(market, 11, 20).await.expect("release 2");
    assert!(matches!(
        c.submit_batch(market, 2, "b1", &one, &cid, root(1)).await,
        Err(ChainError::BatchInOtherEpoch {
            anchored_epoch: 1,
            epoch: 2,
            ..
        })
    ));
    c.end_batch_submissions(market, 1).await.expect("end");
    assert_eq!(
        revert_of(
            c.submit_batch(market, 1, "b3", &strings(&["r"]), &cid, root(3))
                .await
        ),
        Revert::EpochEnded(U256::from(1))
    );
    let end_raw = ProtocolState::endBatchSubmissionsCall {
        dataMarket: market,
        epochId: U256::from(1),
    };
    assert_eq!(
        revert_of(c.send_call(&end_raw).await),
        Revert::EpochEnded(U256::from(1))
    );

    // Owner-side reverts.
    let who = Address::repeat_byte(7);
    assert_eq!(
        revert_of(stranger.register_market(who, 10, 1, 1).await),
        Revert::NotOwner(stranger_addr)
    );
    assert_eq!(
        revert_of(stranger.assign_slots(&[(1, who)]).await),
        Revert::NotOwner(stranger_addr)
    );
    assert_eq!(
        revert_of(stranger.set_sequencer(market, who, true).await),
        Revert::NotOwner(stranger_addr)
    );
    assert_eq!(
        revert_of(c.register_market(market, 10, 1, 1).await),
        Revert::MarketAlreadyRegistered(market)
    );
    assert_eq!(
        revert_of(c.register_market(who, 0, 1, 1).await),
        Revert::InvalidEpochSize(U256::ZERO)
    );
    assert_eq!(
        revert_of(c.register_market(Address::ZERO, 10, 1, 1).await),
        Revert::ZeroAddress
    );
    assert_eq!(
        revert_of(c.set_sequencer(who, who, true).await),
        Revert::UnknownMarket(who)
    );
    let bulk = ProtocolState::assignSnapshotterToSlotBulkCall {
        slotIds: vec![U256::from(1)],
        snapshotters: vec![],
    };
    assert_eq!(
        revert_of(c.send_call(&bulk).await),
        Revert::LengthMismatch {
            project_ids: U256::from(1),
            snapshot_cids: U256::ZERO
        }
    );

    // Nothing retryable about a revert.
    let e = c
        .submit_batch(market, 1, "b4", &one, &cid, root(1))
        .await
        .expect_err("ended");
    assert!(!e.is_retryable());

    // Gas ceiling: not sent.
    let mut cfg = c.config().clone();
    cfg.gas_limit_ceiling = 30_000;
    let tight = sequencer_chain::ChainClient::connect(cfg)
        .await
        .expect("connect");
    assert!(matches!(
        tight
            .submit_batch(market, 2, "b5", &one, &cid, root(5))
            .await,
        Err(ChainError::GasAboveCeiling {
            ceiling: 30_000,
            ..
        })
    ));

    // Writes without a signer.
    let ro = env.client_with_key(None).await;
    assert!(matches!(
        ro.end_batch_submissions(market, 2).await,
        Err(ChainError::NoSigner)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn delayed_batch_past_the_batch_window() {
    let windows = Windows {
        snapshot_blocks: 1,
        batch_blocks: 3,
    };
    let Some(env) = setup("delayed_batch_past_the_batch_window", windows).await else {
        return;
    };
    let c = &env.client;
    let market = env.market();
    c.release_epoch(market, 1, 10).await.expect("release");
    c.submit_batch(
        market,
        1,
        "in-time",
        &strings(&["p"]),
        &strings(&[CID_A]),
        root(1),
    )
    .await
    .expect("submit");
    c.provider().anvil_mine(Some(5), None).await.expect("mine");
    let out = c
        .submit_batch(
            market,
            1,
            "late",
            &strings(&["q"]),
            &strings(&[CID_B]),
            root(2),
        )
        .await
        .expect("submit late");
    assert!(
        matches!(out, SubmitOutcome::Anchored { delayed: true, .. }),
        "{out:?}"
    );
    let a = c.anchored(market, 1).await.expect("anchored");
    let late = a.batch("late").expect("late batch listed");
    assert!(late.delayed && late.tx_hash.is_some());
    assert!(!a.batch("in-time").expect("listed").delayed);
    // Delayed batches do not mark their projects.
    let status = ProtocolState::new(c.protocol_state(), c.provider().clone())
        .projectStatus(market, "q".into(), U256::from(1))
        .call()
        .await
        .expect("status");
    assert!(!status.submitted);
    // Retrying the delayed one is idempotent too.
    let again = c
        .submit_batch(
            market,
            1,
            "late",
            &strings(&["q"]),
            &strings(&[CID_B]),
            root(2),
        )
        .await
        .expect("retry");
    assert!(
        matches!(again, SubmitOutcome::AlreadyAnchored { delayed: true, .. }),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_survives_node_restart() {
    let test = "client_survives_node_restart";
    let Some(bin) = anvil_bin(test) else { return };
    let anvil = spawn_anvil(&bin, None);
    let port = anvil.port();
    let plan = sequencer_chain::deploy::DeployPlan {
        slots: 2,
        ..Default::default()
    };
    let (client, first) = deploy(&anvil, &plan).await;
    assert!(client.head().await.expect("head") > 0);

    // Node goes away; it comes back on the same port 1.5 s later, with a fresh chain that the
    // same deployer key redeploys to the same address (nonce 0 again).
    drop(anvil);
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let anvil = spawn_anvil(&bin, Some(port));
        let (_, second) = deploy(&anvil, &plan).await;
        (anvil, second)
    });
    // Calls made while the node is down retry with backoff and succeed once it is back.
    let head = client.head().await.expect("head after restart");
    assert!(head < 50, "fresh chain expected, head {head}");
    let (anvil, second) = restart.await.expect("restart task");
    assert_eq!(second.protocol_state, first.protocol_state);
    let market = second.data_market;
    client.release_epoch(market, 1, 10).await.expect("release");
    let out = client
        .submit_batch(
            market,
            1,
            "after-restart",
            &strings(&["p"]),
            &strings(&[CID_A]),
            root(1),
        )
        .await
        .expect("submit after restart");
    assert!(matches!(out, SubmitOutcome::Anchored { .. }));
    drop(anvil);
    // Down for good: a transient error, reported as retryable after the retry budget.
    let mut cfg = client.config().clone();
    cfg.max_retries = 1;
    let err = sequencer_chain::ChainClient::connect(cfg)
        .await
        .expect_err("node is down");
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_across_a_crash_before_the_receipt() {
    let Some(env) = setup("exactly_once_across_a_crash_before_the_receipt", WINDOWS).await else {
        return;
    };
    let market = env.market();
    env.client
        .release_epoch(market, 1, 10)
        .await
        .expect("release");
    let provider = env.client.provider().clone();
    let from = env.client.signer_address().expect("signer");
    let nonce_before = provider.get_transaction_count(from).await.expect("nonce");
    provider
        .anvil_set_auto_mine(false)
        .await
        .expect("automine off");

    let projects = strings(&["p1", "p2", "p3"]);
    let cids = strings(&[CID_A, CID_B, CID_A]);
    // Writer A sends, then "crashes" (its task is dropped) before any receipt exists.
    let a = env.client_with_key(Some(0)).await;
    let (pa, ca) = (projects.clone(), cids.clone());
    let task = tokio::spawn(async move {
        a.submit_batch(market, 1, "batch-x", &pa, &ca, root(7))
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while provider
        .get_transaction_count(from)
        .pending()
        .await
        .expect("pending")
        == nonce_before
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writer A never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));

    // Writer B (a restarted process, same key) retries the same batch. It must wait for A's
    // pending transaction, find the batch anchored, and send nothing.
    let miner = {
        let provider = provider.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            provider.evm_mine(None).await.expect("evm_mine");
        })
    };
    let b = env.client_with_key(Some(0)).await;
    let out = b
        .submit_batch(market, 1, "batch-x", &projects, &cids, root(7))
        .await
        .expect("retry");
    miner.await.expect("miner");
    let SubmitOutcome::AlreadyAnchored {
        tx_hash: Some(tx),
        root: r,
        ..
    } = out
    else {
        panic!("expected AlreadyAnchored with the first transaction, got {out:?}")
    };
    assert_eq!(r, root(7));
    provider
        .anvil_set_auto_mine(true)
        .await
        .expect("automine on");

    // Exactly one transaction from our key, and it is the anchoring one.
    assert_eq!(
        provider.get_transaction_count(from).await.expect("nonce"),
        nonce_before + 1
    );
    let a = b.anchored(market, 1).await.expect("anchored");
    assert_eq!(a.batches.len(), 1);
    assert_eq!(a.batches[0].tx_hash, Some(tx));
    let receipt = provider
        .get_transaction_receipt(tx)
        .await
        .expect("receipt")
        .expect("mined");
    assert!(receipt.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_cache_ttl_and_reassignment() {
    let Some(env) = setup("slot_cache_ttl_and_reassignment", WINDOWS).await else {
        return;
    };
    let reader = env.client_with_key(None).await; // default TTL 60 s
    let before = reader.slot_owner(1).await.expect("owner");
    let new_owner = Address::repeat_byte(0x11);
    env.client
        .assign_slots(&[(1, new_owner)])
        .await
        .expect("reassign");
    // The writer's own cache is invalidated by the reassignment; the reader's is still warm.
    assert_eq!(env.client.slot_owner(1).await.expect("owner"), new_owner);
    assert_eq!(reader.slot_owner(1).await.expect("cached"), before);
    reader.invalidate_slots(Some(1));
    assert_eq!(reader.slot_owner(1).await.expect("fresh"), new_owner);

    // SnapshotterAddressChanged is emitted on a change only (the bulk call above changed one
    // slot; assigning the same owner again changes nothing).
    let again = env
        .client
        .assign_slots(&[(1, new_owner)])
        .await
        .expect("same owner");
    let filter = alloy::rpc::types::Filter::new()
        .address(env.client.protocol_state())
        .event_signature(<ProtocolState::SnapshotterAddressChanged as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
        .topic1(alloy::primitives::B256::from(U256::from(1)))
        .from_block(0)
        .to_block(again.block);
    let logs = env.client.provider().get_logs(&filter).await.expect("logs");
    assert_eq!(logs.len(), 2, "deploy assignment + one change"); // 0 -> sim key -> new_owner
    let last = logs[1]
        .log_decode::<ProtocolState::SnapshotterAddressChanged>()
        .expect("decode");
    assert_eq!(last.inner.data.snapshotterAddress, new_owner);
    assert_eq!(last.inner.data.oldSnapshotterAddress, before);
}
