//! Item 16.2, on time judged at arrival, under the faults it is for: a release the tick has not
//! recorded yet (the tick runs once a minute with a gap and waits for confirmations), a header
//! block the node we read has not served yet (a lagging RPC node), and one that never will.
//! Before, the first two were `NotReady` until the queue redelivered the message after the
//! visibility timeout (180 s in the deployment), by when the epoch was closed: `late`, or a
//! final `unknown_header`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sequencer_core::B256;
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::{EpochState, RejectReason};
use sequencer_handlers::{tick, verify};
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;
use verify::Verdict;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";

fn msg(h: &Harness, slot: u64, epoch: u64, project: &str, header: B256) -> String {
    signed_message(
        &h.domain,
        h.market,
        &Uuid::new_v4(),
        slot,
        slot,
        epoch,
        project,
        CID_A,
        header,
    )
    .0
}

#[tokio::test]
async fn a_release_the_tick_has_not_recorded_is_judged_when_the_submission_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    // The tick has not run: the store knows nothing of the epoch.
    assert!(h.p.records().epoch(epoch).await.unwrap().is_none());
    let started = Instant::now();
    let body = msg(&h, 1, epoch, "p1", block_hash_of(r + 1));
    assert_eq!(
        verify::verify_body(&h.p, &body).await.unwrap(),
        Verdict::Accepted
    );
    // At once: no round waited, no redelivery needed.
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(h.metrics.counter(&m::VERIFY_EPOCHS_OPENED, []), 1);
    assert_eq!(h.metrics.counter(&m::VERIFY_NOT_YET_ROUNDS, []), 0);
    let entry = h.p.records().epoch(epoch).await.unwrap().unwrap();
    assert_eq!(entry.state, EpochState::Open);
    assert_eq!(entry.record.release_block, r);
    assert_eq!(
        entry.record.window_end,
        r + 5,
        "the window the tick would record"
    );
    // The tick finds it recorded (opens nothing) and closes it when due, with the submission.
    assert!(tick::step(&h.p).await.unwrap().opened.is_empty());
    h.chain.mine(10);
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    let accepted = h.p.records().accepted_submissions(epoch).await.unwrap();
    assert_eq!(accepted.len(), 1);
}

#[tokio::test]
async fn a_header_the_node_has_not_served_yet_is_waited_for_within_the_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    // The snapshotter's node is two blocks ahead of ours: it signed the hash of block head + 2.
    let ahead = h.chain.head_now() + 2;
    assert!(ahead <= r + 5, "inside the window");
    let body = msg(&h, 1, epoch, "p1", block_hash_of(ahead));
    let chain = h.chain.clone();
    let miner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        chain.mine(2);
    });
    assert_eq!(
        verify::verify_body(&h.p, &body).await.unwrap(),
        Verdict::Accepted
    );
    miner.await.unwrap();
    assert!(h.metrics.counter(&m::VERIFY_NOT_YET_ROUNDS, []) >= 1);
}

#[tokio::test]
async fn a_header_unknown_once_the_head_passed_the_window_is_rejected_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, _) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    // Past the window's last block but not closed yet (the grace): a hash the node does not
    // know now is no block of the window; no round is waited.
    h.chain.mine(5);
    let started = Instant::now();
    let body = msg(&h, 1, epoch, "p1", B256::repeat_byte(0x77));
    assert_eq!(
        verify::verify_body(&h.p, &body).await.unwrap(),
        Verdict::Rejected(RejectReason::from_code("unknown_header"))
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(h.metrics.counter(&m::VERIFY_NOT_YET_ROUNDS, []), 0);
}

#[tokio::test]
async fn a_header_unknown_while_the_window_is_open_goes_back_to_the_queue_not_to_a_final_answer() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, _) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    let started = Instant::now();
    let body = msg(&h, 1, epoch, "p1", B256::repeat_byte(0x77));
    // The node's head stays inside the window for the invocation's rounds: "not yet", for the
    // queue's redelivery, and no receipt (the redelivery judges it afresh).
    let err = verify::verify_body(&h.p, &body).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(12),
        "the rounds take VERIFY_NOT_YET_WAIT_MS (7 s): {waited:?}"
    );
    assert_eq!(h.metrics.counter(&m::VERIFY_NOT_YET_ROUNDS, []), 3);
    assert!(h
        .p
        .records()
        .receipt(epoch, &body[..36])
        .await
        .unwrap()
        .is_none());
    // The redelivery, once the head passed the window: unknown for good.
    h.chain.mine(6);
    assert_eq!(
        verify::verify_body(&h.p, &body).await.unwrap(),
        Verdict::Rejected(RejectReason::from_code("unknown_header"))
    );
}

#[tokio::test]
async fn an_epoch_not_released_on_our_node_yet_is_waited_for_then_answered() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (first, _) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    // The snapshotter saw epoch `first + 1` released before our node served the release.
    let next = first + 1;
    let header_block = h.chain.head_now() + 1;
    let body = msg(&h, 1, next, "p1", block_hash_of(header_block));
    let chain = h.chain.clone();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (e, r) = chain.release();
        chain.mine(1);
        (e, r)
    });
    let v = verify::verify_body(&h.p, &body).await.unwrap();
    let (e, r) = releaser.await.unwrap();
    assert_eq!(e, next);
    assert!(
        r <= header_block,
        "release {r}, header block {header_block}"
    );
    assert_eq!(v, Verdict::Accepted);
}

/// A submission that arrived (the queue's `SentTimestamp`) before the close but is verified
/// after it is still `late` (its epoch's batches are sealed), but said and counted as the
/// pipeline's delay, with an alarm on the counter; one that arrived after the close is plain
/// `late`.
#[tokio::test]
async fn late_after_arrival_is_told_apart_from_late_arrival() {
    use sequencer_handlers::sqs::events::{SqsEvent, SqsMessage};
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    let before_close = h.p.now_ms();
    h.chain.mine(10);
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    let after_close = h.p.now_ms() + 1;
    let event = |body: &str, sent: i64| {
        let mut m = SqsMessage::default();
        m.message_id = Some(body[..36].to_string());
        m.body = Some(body.to_string());
        m.attributes
            .insert("SentTimestamp".to_string(), sent.to_string());
        let mut e = SqsEvent::default();
        e.records = vec![m];
        e
    };
    let delayed = msg(&h, 1, epoch, "p1", block_hash_of(r + 1));
    let tardy = msg(&h, 2, epoch, "p1", block_hash_of(r + 1));
    assert!(verify::handle(&h.p, event(&delayed, before_close - 1))
        .await
        .batch_item_failures
        .is_empty());
    assert!(verify::handle(&h.p, event(&tardy, after_close))
        .await
        .batch_item_failures
        .is_empty());
    let receipt = |body: String| {
        let p = h.p.clone();
        async move {
            p.records()
                .receipt(epoch, &body[..36])
                .await
                .unwrap()
                .unwrap()
        }
    };
    let d = receipt(delayed.clone()).await;
    let t = receipt(tardy.clone()).await;
    assert_eq!(d.outcome.reason(), Some(&RejectReason::Late));
    assert_eq!(t.outcome.reason(), Some(&RejectReason::Late));
    assert_eq!(h.metrics.counter(&m::VERIFY_LATE_AFTER_ARRIVAL, []), 1);
    assert_eq!(h.metrics.counter(&m::VERIFY_REJECTED, ["late"]), 2);
}
