//! The contract's rules against the loopholes they close, each mounted on a real anvil node:
//! a delayed batch re-anchoring a project already anchored for the epoch, `endBatchSubmissions`
//! on an epoch with no batch, ownership taken without the new owner's acceptance (or by a third
//! party), and a window change reaching back into an epoch released before it.

mod common;

use alloy::{
    primitives::{Address, U256},
    providers::{ext::AnvilApi, Provider},
};
use common::*;
use sequencer_chain::{
    bindings::ProtocolState, ChainClient, ChainError, EndOutcome, Revert, SubmitOutcome, Windows,
};

fn revert_of<T: std::fmt::Debug>(r: Result<T, ChainError>) -> Revert {
    match r {
        Err(ChainError::Revert(rev)) => rev,
        other => panic!("expected a revert, got {other:?}"),
    }
}

fn contract(
    c: &ChainClient,
) -> ProtocolState::ProtocolStateInstance<alloy::providers::RootProvider> {
    ProtocolState::new(c.protocol_state(), c.provider().clone())
}

async fn nonce(c: &ChainClient) -> u64 {
    let from = c.signer_address().expect("signer");
    c.provider()
        .get_transaction_count(from)
        .await
        .expect("nonce")
}

/// Mines until the next transaction lands past `release + batch_window` (delayed).
async fn mine_past(c: &ChainClient, release: u64, batch_window: u64) {
    let head = c.head().await.expect("head");
    let need = (release + batch_window).saturating_sub(head);
    if need > 0 {
        c.provider()
            .anvil_mine(Some(need), None)
            .await
            .expect("mine");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delayed_batch_cannot_reanchor_a_project_of_the_epoch() {
    let windows = Windows {
        snapshot_blocks: 2,
        batch_blocks: 3,
    };
    let Some(env) = setup(
        "delayed_batch_cannot_reanchor_a_project_of_the_epoch",
        windows,
    )
    .await
    else {
        return;
    };
    let c = &env.client;
    let market = env.market();
    let (rel, epoch) = c.release_epoch(market, 1, 10).await.expect("release");
    let out = c
        .submit_batch(
            market,
            epoch,
            "in-time",
            &strings(&["p"]),
            &strings(&[CID_A]),
            root(1),
        )
        .await
        .expect("in-time batch");
    assert!(
        matches!(out, SubmitOutcome::Anchored { delayed: false, .. }),
        "{out:?}"
    );
    mine_past(c, rel.block, windows.batch_blocks).await;

    // The loophole: past the batch window, a second batch naming the finalized project "p"
    // with another CID. It was accepted (delayed batches marked nothing); now it reverts.
    let before = nonce(c).await;
    let r = c
        .submit_batch(
            market,
            epoch,
            "late-dup",
            &strings(&["q", "p"]),
            &strings(&[CID_A, CID_B]),
            root(2),
        )
        .await;
    assert_eq!(
        revert_of(r),
        Revert::ProjectAlreadySubmitted {
            project_id: "p".into(),
            epoch: U256::from(epoch)
        }
    );
    assert_eq!(nonce(c).await, before, "the reverting batch was not sent");
    let a = c.anchored(market, epoch).await.expect("anchored");
    assert_eq!(a.batches.len(), 1, "{a:?}");
    let p = contract(c)
        .projectStatus(market, "p".into(), U256::from(epoch))
        .call()
        .await
        .expect("status");
    assert!(p.submitted && p.snapshotCid == CID_A && p.batchCid == "in-time");

    // A delayed batch of a new project is anchored (flagged delayed) and claims it: a second
    // delayed batch naming it reverts too.
    let out = c
        .submit_batch(
            market,
            epoch,
            "late-1",
            &strings(&["q"]),
            &strings(&[CID_B]),
            root(3),
        )
        .await
        .expect("delayed batch");
    assert!(
        matches!(out, SubmitOutcome::Anchored { delayed: true, .. }),
        "{out:?}"
    );
    let r = c
        .submit_batch(
            market,
            epoch,
            "late-2",
            &strings(&["q"]),
            &strings(&[CID_A]),
            root(4),
        )
        .await;
    assert_eq!(
        revert_of(r),
        Revert::ProjectAlreadySubmitted {
            project_id: "q".into(),
            epoch: U256::from(epoch)
        }
    );
    // projectStatus keeps reporting in-time anchors only; projectAnchor shows the claim.
    let q = contract(c)
        .projectStatus(market, "q".into(), U256::from(epoch))
        .call()
        .await
        .expect("status");
    assert!(!q.submitted);
    let q = contract(c)
        .projectAnchor(market, "q".into(), U256::from(epoch))
        .call()
        .await
        .expect("anchor");
    assert!(q.anchored && q.delayed && q.snapshotCid == CID_B && q.batchCid == "late-1");
    let p = contract(c)
        .projectAnchor(market, "p".into(), U256::from(epoch))
        .call()
        .await
        .expect("anchor");
    assert!(p.anchored && !p.delayed);
}

#[tokio::test(flavor = "multi_thread")]
async fn end_batch_submissions_refuses_an_epoch_with_no_batch() {
    let windows = Windows {
        snapshot_blocks: 2,
        batch_blocks: 3,
    };
    let Some(env) = setup(
        "end_batch_submissions_refuses_an_epoch_with_no_batch",
        windows,
    )
    .await
    else {
        return;
    };
    let c = &env.client;
    let market = env.market();
    let (rel, epoch) = c.release_epoch(market, 1, 10).await.expect("release");
    mine_past(c, rel.block, windows.batch_blocks).await;

    // The loophole: closing an epoch nobody anchored anything for, so that even a delayed batch
    // for it can no longer be recorded.
    let before = nonce(c).await;
    assert_eq!(
        revert_of(c.end_batch_submissions(market, epoch).await),
        Revert::NoBatchSubmitted(U256::from(epoch))
    );
    assert_eq!(nonce(c).await, before, "nothing was sent");
    // The raw call reverts the same way when it is forced into a transaction.
    let raw = ProtocolState::endBatchSubmissionsCall {
        dataMarket: market,
        epochId: U256::from(epoch),
    };
    assert_eq!(
        revert_of(c.send_call(&raw).await),
        Revert::NoBatchSubmitted(U256::from(epoch))
    );
    assert!(!c.anchored(market, epoch).await.expect("anchored").ended);

    // A delayed batch still goes in, and then the epoch can be ended.
    let out = c
        .submit_batch(
            market,
            epoch,
            "late",
            &strings(&["p"]),
            &strings(&[CID_A]),
            root(1),
        )
        .await
        .expect("delayed batch");
    assert!(
        matches!(out, SubmitOutcome::Anchored { delayed: true, .. }),
        "{out:?}"
    );
    assert!(matches!(
        c.end_batch_submissions(market, epoch).await.expect("end"),
        EndOutcome::Ended { .. }
    ));
    // An epoch that was never released is refused before the batch rule.
    assert_eq!(
        revert_of(c.end_batch_submissions(market, epoch + 1).await),
        Revert::EpochNotReleased(U256::from(epoch + 1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ownership_moves_only_when_the_pending_owner_accepts() {
    let windows = Windows {
        snapshot_blocks: 20,
        batch_blocks: 60,
    };
    let Some(env) = setup(
        "ownership_moves_only_when_the_pending_owner_accepts",
        windows,
    )
    .await
    else {
        return;
    };
    let owner = &env.client;
    let next = env.client_with_key(Some(1)).await;
    let third = env.client_with_key(Some(2)).await;
    let (owner_addr, next_addr, third_addr) = (
        owner.signer_address().expect("signer"),
        next.signer_address().expect("signer"),
        third.signer_address().expect("signer"),
    );
    let ps = contract(owner);
    let market2 = Address::repeat_byte(0x42);
    let register = |m: Address| ProtocolState::registerDataMarketCall {
        dataMarket: m,
        epochSize: U256::from(10),
        snapshotWindow: U256::from(2),
        batchWindow: U256::from(3),
        sourceChainId: U256::from(1),
        sourceChainBlockTime: U256::from(120_000),
        daySize: U256::from(864_000_000u64),
        dailyQuota: U256::from(1),
    };

    // Only the owner may start a transfer.
    assert_eq!(
        revert_of(
            third
                .send_call(&ProtocolState::transferOwnershipCall {
                    newOwner: third_addr
                })
                .await
        ),
        Revert::NotOwner(third_addr)
    );
    owner
        .send_call(&ProtocolState::transferOwnershipCall {
            newOwner: next_addr,
        })
        .await
        .expect("transferOwnership");
    // The loophole: ownership used to move right here. Now it stays until accepted.
    assert_eq!(owner.owner().await.expect("owner"), owner_addr);
    assert_eq!(ps.pendingOwner().call().await.expect("pending"), next_addr);
    assert_eq!(
        revert_of(next.send_call(&register(market2)).await),
        Revert::NotOwner(next_addr)
    );
    // A third party cannot accept in the pending owner's place (nor can the old owner).
    assert_eq!(
        revert_of(
            third
                .send_call(&ProtocolState::acceptOwnershipCall {})
                .await
        ),
        Revert::NotPendingOwner(third_addr)
    );
    assert_eq!(
        revert_of(
            owner
                .send_call(&ProtocolState::acceptOwnershipCall {})
                .await
        ),
        Revert::NotPendingOwner(owner_addr)
    );
    assert_eq!(owner.owner().await.expect("owner"), owner_addr);

    next.send_call(&ProtocolState::acceptOwnershipCall {})
        .await
        .expect("acceptOwnership");
    assert_eq!(owner.owner().await.expect("owner"), next_addr);
    assert_eq!(
        ps.pendingOwner().call().await.expect("pending"),
        Address::ZERO
    );
    assert_eq!(
        revert_of(owner.send_call(&register(market2)).await),
        Revert::NotOwner(owner_addr)
    );
    next.send_call(&register(market2))
        .await
        .expect("the new owner administers");
    // Accepting twice is not a thing: the pending owner is cleared.
    assert_eq!(
        revert_of(next.send_call(&ProtocolState::acceptOwnershipCall {}).await),
        Revert::NotPendingOwner(next_addr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn window_change_applies_to_epochs_released_after_it() {
    let windows = Windows {
        snapshot_blocks: 20,
        batch_blocks: 60,
    };
    let Some(env) = setup("window_change_applies_to_epochs_released_after_it", windows).await
    else {
        return;
    };
    let c = &env.client;
    let market = env.market();
    let update = |snapshot: u64, batch: u64| ProtocolState::updateSubmissionWindowsCall {
        dataMarket: market,
        snapshotWindow: U256::from(snapshot),
        batchWindow: U256::from(batch),
    };
    assert_eq!(
        c.epoch_windows(market, 1).await.expect("windows"),
        None,
        "not released"
    );
    let (rel1, e1) = c.release_epoch(market, 1, 10).await.expect("release 1");
    assert_eq!(
        c.epoch_windows(market, e1).await.expect("windows"),
        Some(windows)
    );

    // The loophole: shrinking the windows after epoch 1's release cut its deadlines short.
    let small = Windows {
        snapshot_blocks: 2,
        batch_blocks: 3,
    };
    c.send_call(&update(small.snapshot_blocks, small.batch_blocks))
        .await
        .expect("update windows");
    assert_eq!(
        c.submission_window(market).await.expect("market windows"),
        small
    );
    assert_eq!(
        c.epoch_windows(market, e1).await.expect("windows"),
        Some(windows),
        "epoch 1 keeps the windows it was released under"
    );
    // 10 blocks after release: past the new batch window (3), inside epoch 1's own (60).
    mine_past(c, rel1.block, 9).await;
    let out = c
        .submit_batch(
            market,
            e1,
            "e1",
            &strings(&["p"]),
            &strings(&[CID_A]),
            root(1),
        )
        .await
        .expect("epoch 1 batch");
    let SubmitOutcome::Anchored { block, delayed, .. } = out else {
        panic!("{out:?}")
    };
    assert!(block > rel1.block + small.batch_blocks && block <= rel1.block + windows.batch_blocks);
    assert!(!delayed, "epoch 1's batch window is still 60 blocks");

    // The next release takes the new windows.
    let (rel2, e2) = c.release_epoch(market, 11, 20).await.expect("release 2");
    assert_eq!(
        c.epoch_windows(market, e2).await.expect("windows"),
        Some(small)
    );
    // Widening the windows again does not reopen epoch 2's passed deadline either.
    c.send_call(&update(100, 1000))
        .await
        .expect("update windows");
    mine_past(c, rel2.block, 9).await;
    let out = c
        .submit_batch(
            market,
            e2,
            "e2",
            &strings(&["p"]),
            &strings(&[CID_A]),
            root(2),
        )
        .await
        .expect("epoch 2 batch");
    assert!(
        matches!(out, SubmitOutcome::Anchored { delayed: true, .. }),
        "{out:?}"
    );
    assert_eq!(
        c.epoch_windows(market, e2).await.expect("windows"),
        Some(small)
    );
    // Windows are stored with the epoch as uint64: a larger one is refused where it is set,
    // never truncated at release.
    let huge = U256::from(u64::MAX) + U256::from(1);
    let too_big = ProtocolState::updateSubmissionWindowsCall {
        dataMarket: market,
        snapshotWindow: U256::from(1),
        batchWindow: huge,
    };
    assert_eq!(
        revert_of(c.send_call(&too_big).await),
        Revert::InvalidWindow {
            snapshot_window: U256::from(1),
            batch_window: huge
        }
    );
    let register = ProtocolState::registerDataMarketCall {
        dataMarket: Address::repeat_byte(0x43),
        epochSize: U256::from(10),
        snapshotWindow: huge,
        batchWindow: U256::from(1),
        sourceChainId: U256::from(1),
        sourceChainBlockTime: U256::from(120_000),
        daySize: U256::from(864_000_000u64),
        dailyQuota: U256::from(1),
    };
    assert!(matches!(
        revert_of(c.send_call(&register).await),
        Revert::InvalidWindow { .. }
    ));
    let (_, e3) = c.release_epoch(market, 21, 30).await.expect("release 3");
    assert_eq!(
        c.epoch_windows(market, e3).await.expect("windows"),
        Some(Windows {
            snapshot_blocks: 100,
            batch_blocks: 1000
        })
    );
}
