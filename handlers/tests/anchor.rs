//! The anchor handler under operational faults (issue 16 item 5), on the embedded adapters and
//! an in-memory chain: an account out of gas money (retried, counted, anchored once funded; on
//! its last delivery recorded `ANCHOR_FAILED` instead of lost in the DLQ), a revoked sequencer
//! role (`ANCHOR_FAILED`, listed, re-anchored once the role is back, one transaction per batch
//! in all), and a poison job in a FIFO batch (fails alone, reaches the DLQ after its retries;
//! the other jobs of its batch are anchored). The same faults on anvil with the real chain
//! client: `seqctl/tests/reanchor.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sequencer_core::B256;
use sequencer_embedded::poller::{drain, poll_once, PollerConfig};
use sequencer_handlers::anchor::{self, failed_epochs, reanchor};
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::{finalize, tick, verify};
use sequencer_ports::{ChainPort, ErrorKind, OutMessage, PortError, Queue};
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;

const CID: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";

fn cfg() -> PollerConfig {
    PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    }
}

/// Releases an epoch, has slot 1 submit `projects` projects, closes it and runs finalize (not
/// anchor): the epoch is `FINALIZED` with its anchor job queued, `projects / 2` batches.
async fn finalized_epoch(h: &Harness, projects: usize) -> u64 {
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    for i in 0..projects {
        // Slots 1..=6 take at most two projects each (the per-slot cap).
        let slot = 1 + (i as u64) / 2;
        let (body, _) = signed_message(
            &h.domain,
            h.market,
            &Uuid::new_v4(),
            slot,
            slot,
            epoch,
            &format!("proj-{i}"),
            CID,
            block_hash_of(r + 1),
        );
        assert_eq!(
            verify::verify_body(&h.p, &body).await.unwrap(),
            verify::Verdict::Accepted
        );
    }
    h.chain.mine(10);
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    drain(&h.finalize_q, &cfg(), 10, |ev| finalize::handle(&h.p, ev))
        .await
        .unwrap();
    let e = h.p.records().epoch(epoch).await.unwrap().unwrap();
    assert_eq!(e.state, EpochState::Finalized);
    epoch
}

async fn state(h: &Harness, epoch: u64) -> EpochState {
    h.p.records().epoch(epoch).await.unwrap().unwrap().state
}

fn funds() -> PortError {
    // What the chain port makes of a node's "insufficient funds for gas * price + value".
    PortError::chain(
        ErrorKind::Funds,
        "insufficient funds for gas * price + value",
    )
    .with_retryable(true)
}

fn revoked() -> PortError {
    PortError::chain(ErrorKind::Permission, "contract reverted: NotSequencer")
        .with_code("NotSequencer")
}

#[tokio::test]
async fn an_unfunded_account_is_retried_with_an_alarm_and_anchors_once_funded() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let epoch = finalized_epoch(&h, 5).await;
    h.chain.refuse_writes(Some(funds()));
    let first = poll_once(&h.anchor_q, &cfg(), |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(
        (first.succeeded, first.failed),
        (0, 1),
        "the job comes back"
    );
    assert_eq!(
        h.metrics.counter(&m::ANCHOR_OPERATIONAL_ERRORS, ["funds"]),
        1
    );
    assert_eq!(state(&h, epoch).await, EpochState::Finalized, "not failed");
    assert_eq!(h.chain.transactions(), 0);
    // Funded: the retried job anchors every batch (3) and ends the epoch.
    h.chain.refuse_writes(None);
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(state(&h, epoch).await, EpochState::Anchored);
    assert_eq!(h.chain.anchored_batches(epoch).len(), 3);
    assert_eq!(h.chain.transactions(), 4, "3 batches + endBatchSubmissions");
    assert_eq!(h.metrics.counter(&m::ANCHOR_EPOCHS_FAILED, []), 0);
}

#[tokio::test]
async fn funds_still_missing_on_the_last_delivery_fail_the_epoch_visibly_not_into_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let epoch = finalized_epoch(&h, 3).await;
    h.chain.refuse_writes(Some(funds()));
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    // Three deliveries (the queue's maxReceiveCount); the third records the failure.
    assert_eq!(
        h.metrics.counter(&m::ANCHOR_OPERATIONAL_ERRORS, ["funds"]),
        3
    );
    assert_eq!(state(&h, epoch).await, EpochState::Failed);
    let failed = failed_epochs(&h.p.records()).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .record
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("insufficient funds")),
        "{:?}",
        failed[0].record
    );
    let dlq = h.anchor_q.dlq().unwrap();
    assert!(dlq.receive(10, Duration::ZERO).await.unwrap().is_empty());

    // Funded, the operator re-anchors: one transaction per batch, then the end.
    h.chain.refuse_writes(None);
    let group = h.p.config.anchor_group.clone();
    let r = reanchor(&h.p.records(), &h.anchor_q, &group, epoch, "1")
        .await
        .unwrap();
    assert!(r.queued);
    assert!(r.failure.is_some_and(|f| f.contains("insufficient funds")));
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(state(&h, epoch).await, EpochState::Anchored);
    assert_eq!(h.chain.transactions(), 3, "2 batches + endBatchSubmissions");
    assert!(failed_epochs(&h.p.records()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_revoked_role_fails_the_epoch_and_a_reanchor_sends_each_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let epoch = finalized_epoch(&h, 4).await;
    // The first batch went out (a run that crashed after it), then the role was revoked.
    let b0 = h.p.records().batches(epoch).await.unwrap()[0]
        .record
        .clone();
    h.chain
        .submit_batch(
            h.market,
            epoch,
            &b0.cid,
            &b0.pids,
            &b0.cids,
            b0.finalized_cids_root.parse::<B256>().unwrap(),
        )
        .await
        .unwrap();
    h.chain.refuse_writes(Some(revoked()));
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(
        state(&h, epoch).await,
        EpochState::Failed,
        "no retry fixes a role"
    );
    assert_eq!(
        h.metrics
            .counter(&m::ANCHOR_OPERATIONAL_ERRORS, ["permission"]),
        1,
        "failed on its first delivery"
    );
    assert_eq!(h.metrics.counter(&m::ANCHOR_EPOCHS_FAILED, []), 1);
    assert_eq!(h.metrics.counter(&m::ANCHOR_BATCHES_ALREADY, []), 1);
    let group = h.p.config.anchor_group.clone();

    // Re-anchored before the role is back: it fails again, and stays listed.
    reanchor(&h.p.records(), &h.anchor_q, &group, epoch, "1")
        .await
        .unwrap();
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(state(&h, epoch).await, EpochState::Failed);
    assert_eq!(failed_epochs(&h.p.records()).await.unwrap().len(), 1);

    // The role granted again; two operators re-anchor at once: two jobs, one anchoring.
    h.chain.refuse_writes(None);
    reanchor(&h.p.records(), &h.anchor_q, &group, epoch, "2")
        .await
        .unwrap();
    reanchor(&h.p.records(), &h.anchor_q, &group, epoch, "3")
        .await
        .unwrap();
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(state(&h, epoch).await, EpochState::Anchored);
    assert_eq!(h.chain.anchored_batches(epoch).len(), 2);
    assert_eq!(
        h.chain.transactions(),
        3,
        "batch 0 (before), batch 1, endBatchSubmissions: each once"
    );
    // Only a failed epoch is re-anchored.
    let again = reanchor(&h.p.records(), &h.anchor_q, &group, epoch, "4").await;
    assert!(again.is_err(), "{again:?}");
    assert!(reanchor(&h.p.records(), &h.anchor_q, &group, 999, "5")
        .await
        .is_err());
}

#[tokio::test]
async fn a_poison_job_fails_alone_and_reaches_the_dlq_after_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let first = finalized_epoch(&h, 2).await;
    // Between the two epochs' jobs, in their FIFO group: a job no run can read.
    let group = h.p.config.anchor_group.clone();
    h.anchor_q
        .send(
            &[OutMessage::new(r#"{"job":"epoch","epoch":"not a number"}"#).fifo(&group, "poison")],
        )
        .await
        .unwrap();
    let second = finalized_epoch(&h, 2).await;
    let one = poll_once(&h.anchor_q, &cfg(), |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!((one.received, one.succeeded, one.failed), (3, 2, 1));
    assert_eq!(state(&h, first).await, EpochState::Anchored);
    assert_eq!(
        state(&h, second).await,
        EpochState::Anchored,
        "the job after the poison one"
    );
    drain(&h.anchor_q, &cfg(), 10, |ev| anchor::handle(&h.p, ev))
        .await
        .unwrap();
    assert_eq!(h.metrics.counter(&m::ANCHOR_JOBS_UNREADABLE, []), 3);
    let dead = h
        .anchor_q
        .dlq()
        .unwrap()
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].body.contains("not a number"));
    assert_eq!(h.chain.transactions(), 4, "one batch and one end per epoch");
}
