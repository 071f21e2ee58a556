//! Issue 16 item 2, the close on a watermark (docs/protocol.md §4, "The close watermark"): the
//! tick closes an epoch once every ingress boot alive at the window's end has reported a tally
//! since, and verify has decided as many of the epoch's submissions as those boots took in; a
//! submission the ingress took in on time but verify has not decided yet (a transient failure,
//! a queue backlog, a crashed invocation) holds the close, up to `WATERMARK_MAX_WAIT_MS`.
//! Messages go through `verify::handle` with SQS message ids, as Lambda passes them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use sequencer_core::tally::Tally;
use sequencer_core::B256;
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::{tick, verify, Pipeline};
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn msg(h: &Harness, slot: u64, signer: u64, epoch: u64, project: &str, header: B256) -> String {
    signed_message(
        &h.domain,
        h.market,
        &Uuid::new_v4(),
        slot,
        signer,
        epoch,
        project,
        CID_A,
        header,
    )
    .0
}

fn tally(h: &Harness, boot: &str, seq: u64, at_ms: i64, epochs: Vec<(u64, u64)>) -> String {
    Tally {
        market: format!("{:#x}", h.market),
        boot: boot.into(),
        seq,
        at_ms,
        epochs,
        last: false,
    }
    .to_body()
}

/// Runs verify on `(message id, body)` pairs as one SQS event; the ids that failed.
async fn deliver(p: &Pipeline, msgs: &[(&str, &str)]) -> Vec<String> {
    let mut e = SqsEvent::default();
    e.records = msgs
        .iter()
        .map(|(id, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some((*id).to_string());
            m.body = Some((*body).to_string());
            m
        })
        .collect();
    verify::handle(p, e)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// A pipeline whose close waits at most 1.5 s for the watermark, and an epoch it opened: the
/// pipeline, the epoch and its release block.
async fn opened_with_short_max_wait(h: &Harness) -> (Arc<Pipeline>, u64, u64) {
    let p = h.pipeline_with(|c, _| c.watermark_max_wait = Duration::from_millis(1_500));
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&p).await.unwrap();
    (p, epoch, r)
}

async fn state(h: &Harness, epoch: u64) -> EpochState {
    h.p.records().epoch(epoch).await.unwrap().unwrap().state
}

#[tokio::test]
async fn an_epoch_closes_only_once_verify_decided_all_the_ingress_took_in() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    assert_eq!(tick::step(&h.p).await.unwrap().opened, vec![epoch]);
    let header = block_hash_of(r + 1);
    let (a, b) = (
        msg(&h, 1, 1, epoch, "p1", header),
        msg(&h, 2, 2, epoch, "p1", header),
    );
    // The ingress took in both on time; verify has seen only the first (the second is held up
    // in the queue, say by a transient failure awaiting its redelivery).
    let early = tally(&h, "boot-a", 1, now_ms(), vec![(epoch, 2)]);
    assert!(deliver(&h.p, &[("t1", &early), ("m1", &a)])
        .await
        .is_empty());
    assert_eq!(h.metrics.counter(&m::VERIFY_TALLIES, []), 1);

    // The window and the grace pass: the boot has not reported since, the epoch stays open.
    h.chain.mine(10);
    assert!(tick::step(&h.p).await.unwrap().closed.is_empty());
    assert_eq!(state(&h, epoch).await, EpochState::Open);
    // The boot reports after the window (its clock a few seconds on): 2 taken in, 1 decided.
    let late = tally(&h, "boot-a", 2, now_ms() + 5_000, vec![(epoch, 2)]);
    assert!(deliver(&h.p, &[("t2", &late)]).await.is_empty());
    assert!(tick::step(&h.p).await.unwrap().closed.is_empty());
    // A redelivery of the first message counts once; an older tally changes nothing.
    assert!(deliver(&h.p, &[("m1", &a), ("t1", &early)])
        .await
        .is_empty());
    assert_eq!(h.p.records().decided_count(epoch).await.unwrap(), 1);
    assert!(tick::step(&h.p).await.unwrap().closed.is_empty());

    // The held-up submission arrives: accepted, not late, and then the epoch closes.
    assert!(deliver(&h.p, &[("m2", &b)]).await.is_empty());
    let records = h.p.records();
    let accepted = records.tally_receipts(epoch).await.unwrap().accepted;
    assert_eq!(accepted, 2, "both on-time submissions accepted");
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    assert_eq!(h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["met"]), 1);
    assert_eq!(h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["timeout"]), 0);
}

#[tokio::test]
async fn messages_counted_not_stored_are_decided_too() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    let header = block_hash_of(r + 1);
    // A stranger over slot 1 and a slot id past the contract's: the ingress took them in (it
    // cannot tell), verify counts them and stores nothing; they must not hold the close.
    let stranger = msg(&h, 1, 9, epoch, "p1", header);
    let out_of_range = msg(&h, 77, 77, epoch, "p1", header);
    let t0 = tally(&h, "boot-a", 1, now_ms(), vec![(epoch, 2)]);
    assert!(deliver(
        &h.p,
        &[("t0", &t0), ("s1", &stranger), ("s2", &out_of_range)]
    )
    .await
    .is_empty());
    assert_eq!(h.p.records().decided_count(epoch).await.unwrap(), 2);
    h.chain.mine(10);
    assert!(tick::step(&h.p).await.unwrap().closed.is_empty());
    let t = tally(&h, "boot-a", 2, now_ms() + 5_000, vec![(epoch, 2)]);
    assert!(deliver(&h.p, &[("t1", &t)]).await.is_empty());
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    assert_eq!(h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["met"]), 1);
}

#[tokio::test]
async fn a_boot_that_stops_reporting_holds_the_close_only_until_the_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (p, epoch, _) = opened_with_short_max_wait(&h).await;
    // A boot alive at the window's end that crashed before its next tally.
    let t = tally(&h, "boot-gone", 1, now_ms(), vec![(epoch, 3)]);
    assert!(deliver(&p, &[("t1", &t)]).await.is_empty());
    h.chain.mine(10);
    assert!(tick::step(&p).await.unwrap().closed.is_empty());
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert_eq!(tick::step(&p).await.unwrap().closed, vec![epoch]);
    assert_eq!(h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["timeout"]), 1);
}

#[tokio::test]
async fn far_future_epochs_that_push_an_epoch_out_of_a_tally_hold_its_close_until_the_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (p, epoch, r) = opened_with_short_max_wait(&h).await;
    let header = block_hash_of(r + 1);
    let (a, b) = (
        msg(&h, 1, 1, epoch, "p1", header),
        msg(&h, 2, 2, epoch, "p1", header),
    );
    // The ingress took both in on time; then a sender named 64 far-future epochs, and the
    // boot's tally (its newest 64 epochs) no longer holds this one: its count reads 0.
    let flood: Vec<(u64, u64)> = (0..64).map(|i| (epoch + 1_000_000 + i, 1)).collect();
    let t1 = tally(&h, "boot-a", 1, now_ms(), flood.clone());
    assert!(deliver(&p, &[("t1", &t1), ("m1", &a)]).await.is_empty());
    h.chain.mine(10);
    let t2 = tally(&h, "boot-a", 2, now_ms() + 5_000, flood);
    assert!(deliver(&p, &[("t2", &t2)]).await.is_empty());
    // One decided, "0" taken in: read as none, the epoch would close now, and the second
    // on-time submission, still in flight, would be rejected late.
    assert!(tick::step(&p).await.unwrap().closed.is_empty());
    assert_eq!(state(&h, epoch).await, EpochState::Open);
    assert!(deliver(&p, &[("m2", &b)]).await.is_empty());
    let accepted = p.records().tally_receipts(epoch).await.unwrap().accepted;
    assert_eq!(accepted, 2, "both on-time submissions accepted");
    assert!(tick::step(&p).await.unwrap().closed.is_empty());
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert_eq!(tick::step(&p).await.unwrap().closed, vec![epoch]);
    assert_eq!(h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["met"]), 0);
    assert_eq!(h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["timeout"]), 1);
}

#[tokio::test]
async fn without_tallies_the_close_waits_for_the_grace_only() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, _) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    h.chain.mine(10);
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    assert_eq!(
        h.metrics.counter(&m::TICK_CLOSE_WATERMARK, ["no_tallies"]),
        1
    );
}

#[tokio::test]
async fn tallies_of_another_market_or_malformed_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let other = Tally {
        market: "0x00000000000000000000000000000000000000aa".into(),
        boot: "b".into(),
        seq: 1,
        at_ms: now_ms(),
        epochs: vec![(1, 5)],
        last: false,
    }
    .to_body();
    let broken = r#"{"tally":{"market":"x"}}"#;
    assert!(deliver(&h.p, &[("o", &other), ("x", broken)])
        .await
        .is_empty());
    assert!(h.p.records().tallies().await.unwrap().is_empty());
    assert_eq!(
        h.metrics
            .counter(&m::VERIFY_DROPPED, [verify::TALLY_OTHER_MARKET]),
        1
    );
    assert_eq!(
        h.metrics
            .counter(&m::VERIFY_DEAD_LETTERED, ["malformed:tally"]),
        1
    );
}
