//! Verify's acceptance as one conditional transaction, and verify in batches, under the faults
//! they are for: the tick closing an epoch between verify's read and its write, a crash after
//! the write whose answer was lost then a redelivery after the close, two bodies with one
//! submission id racing, concurrent batches competing for one slot's cap, and partial batch
//! failures. The state store is the embedded one under `FaultyState`, which holds, fails or
//! loses a call on demand and counts calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use sequencer_core::B256;
use sequencer_handlers::records::{EpochState, Outcome, RejectReason};
use sequencer_handlers::{tick, verify};
use sequencer_ports::{StateStore, Table};
use sequencer_testsupport::faults::Op;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;
use verify::Verdict;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";

struct Env {
    h: Harness,
    _dir: tempfile::TempDir,
    epoch: u64,
    header: B256,
}

impl std::ops::Deref for Env {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

/// A harness with one released epoch the tick has opened.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    assert_eq!(tick::step(&h.p).await.unwrap().opened, vec![epoch]);
    Env {
        h,
        _dir: dir,
        epoch,
        header: block_hash_of(r + 1),
    }
}

impl Env {
    fn msg_id(&self, id: &Uuid, slot: u64, project: &str) -> String {
        signed_message(
            &self.domain,
            self.market,
            id,
            slot,
            slot,
            self.epoch,
            project,
            CID_A,
            self.header,
        )
        .0
    }

    fn msg(&self, slot: u64, project: &str) -> String {
        self.msg_id(&Uuid::new_v4(), slot, project)
    }

    async fn outcome(&self, body: &str) -> Option<Outcome> {
        let id = &body[..36];
        self.p
            .records()
            .receipt(self.epoch, id)
            .await
            .unwrap()
            .map(|r| r.outcome)
    }

    /// Closes the epoch as the tick does (its first step: OPEN → CLOSING).
    async fn close(&self) {
        self.chain.mine(10);
        assert_eq!(tick::step(&self.p).await.unwrap().closed, vec![self.epoch]);
    }

    async fn accepted_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .p
            .records()
            .accepted_submissions(self.epoch)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.submission_id)
            .collect();
        ids.sort();
        ids
    }
}

/// The harness's pipeline with no time for a second round (`VERIFY_NOT_YET_WAIT_MS=0`): what a
/// failed round returns is what the queue gets back.
fn cut_short(e: &Env) -> sequencer_handlers::Pipeline {
    let mut cfg = e.p.config.clone();
    cfg.verify_not_yet_wait = std::time::Duration::ZERO;
    sequencer_handlers::Pipeline::new(e.p.ports.clone(), cfg)
}

fn rejected(reason: &str) -> Verdict {
    Verdict::Rejected(RejectReason::from_code(reason))
}

/// Item 16.2: the same lost answer inside an invocation with time left: the next round finds
/// the message's own receipt and reports what it says (accepted), not a redelivery.
#[tokio::test]
async fn a_lost_answer_is_settled_by_the_next_round_of_the_same_invocation() {
    let e = env().await;
    let body = e.msg(2, "p1");
    e.state.lose_next(Op::Transact, Table::Submissions);
    assert_eq!(
        verify::verify_body(&e.p, &body).await.unwrap(),
        Verdict::Accepted
    );
    assert_eq!(e.outcome(&body).await, Some(Outcome::Accepted));
    assert_eq!(e.accepted_ids().await, vec![body[..36].to_string()]);
}

/// Item 16.1: the tick closes the epoch after verify read it as open and before verify wrote.
/// The acceptance is conditional on the epoch still being open, so the submission is `late`
/// and nothing of it is stored as accepted: no receipt says "accepted" for a submission
/// finalize never sees.
#[tokio::test]
async fn a_close_between_verify_read_and_write_makes_it_late_not_accepted_unbatched() {
    let e = Arc::new(env().await);
    let body = e.msg(1, "p1");
    let mut held = e.state.hold(Op::Transact, Some(Table::Submissions));
    let e2 = e.clone();
    let b2 = body.clone();
    let v = tokio::spawn(async move { verify::verify_body(&e2.p, &b2).await });
    held.reached().await;
    e.close().await;
    held.release();
    assert_eq!(v.await.unwrap().unwrap(), rejected("late"));
    assert!(matches!(
        e.outcome(&body).await,
        Some(Outcome::Rejected {
            reason: RejectReason::Late,
            ..
        })
    ));
    assert!(e.accepted_ids().await.is_empty(), "no accepted claim");
    // And it does not count toward the slot's cap.
    let counter = e
        .state
        .batch_get(&[(
            Table::Counters,
            sequencer_ports::Key::new(format!("{:#x}#{}#1", e.market, e.epoch), "accepted"),
        )])
        .await
        .unwrap();
    assert_eq!(counter[0], None);
}

/// Item 16.1: verify's write lands, its answer is lost (the function timed out or crashed
/// after the transaction), the tick closes the epoch, and SQS redelivers. The redelivery finds
/// the receipt and changes nothing: never `late` over an accepted claim.
#[tokio::test]
async fn a_redelivery_after_the_close_never_writes_late_over_an_accepted_claim() {
    let e = env().await;
    let body = e.msg(2, "p1");
    e.state.lose_next(Op::Transact, Table::Submissions);
    // The invocation ends with the lost answer (no time left for a round: a timeout or a crash).
    assert!(verify::verify_body(&cut_short(&e), &body).await.is_err());
    e.close().await;
    assert_eq!(
        verify::verify_body(&e.p, &body).await.unwrap(),
        Verdict::Redelivered
    );
    assert_eq!(e.outcome(&body).await, Some(Outcome::Accepted));
    assert_eq!(e.accepted_ids().await, vec![body[..36].to_string()]);
    // And a redelivery of an accepted one long after: the same.
    assert_eq!(
        verify::verify_body(&e.p, &body).await.unwrap(),
        Verdict::Redelivered
    );
}

/// Item 16.7: two bodies with one submission id (two projects, so no other rule separates
/// them) verified at the same moment: exactly one is accepted, the other is
/// `duplicate_submission_id`, and the receipt is the winner's.
#[tokio::test]
async fn two_bodies_with_one_id_racing_cannot_both_be_accepted() {
    let e = Arc::new(env().await);
    let id = Uuid::new_v4();
    let a = e.msg_id(&id, 1, "pa");
    let b = e.msg_id(&id, 2, "pb");
    // Both read "no receipt" before either writes: hold the first transaction until the
    // second has read.
    let mut held = e.state.hold(Op::Transact, None);
    let (e1, a1) = (e.clone(), a.clone());
    let first = tokio::spawn(async move { verify::verify_body(&e1.p, &a1).await });
    held.reached().await;
    let (e2, b2) = (e.clone(), b.clone());
    let second = tokio::spawn(async move { verify::verify_body(&e2.p, &b2).await });
    // The second reads, then writes and wins; then the first goes on.
    let v2 = second.await.unwrap().unwrap();
    held.release();
    let v1 = first.await.unwrap().unwrap();
    assert_eq!(v2, Verdict::Accepted);
    assert_eq!(v1, rejected("duplicate_submission_id"));
    assert_eq!(e.accepted_ids().await, vec![id.to_string()]);
    let claims = e.p.records().accepted_submissions(e.epoch).await.unwrap();
    assert_eq!(claims.len(), 1, "one claim for the id: {claims:?}");
    assert_eq!(claims[0].submission.request.project_id, "pb");

    // In one batch too: the first of the batch wins, the other body is refused, the same
    // body twice is a redelivery.
    let id2 = Uuid::new_v4();
    let c = e.msg_id(&id2, 3, "pc");
    let d = e.msg_id(&id2, 4, "pd");
    let out = verify::verify_batch(&e.p, &[&c, &d, &c]).await;
    let out: Vec<Verdict> = out.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        out,
        vec![
            Verdict::Accepted,
            rejected("duplicate_submission_id"),
            Verdict::Redelivered
        ]
    );
}

/// Issue 19.1: one batch is one batched read and one transaction; messages that lose a
/// condition (first wins, the slot's cap) are decided again and the others are still
/// accepted; a redelivered batch changes nothing and writes nothing.
#[tokio::test]
async fn a_batch_is_one_read_and_one_transaction_and_losers_do_not_hold_back_the_rest() {
    let e = env().await;
    // Slot 1 already holds p1 (first wins) by an earlier message.
    let earlier = e.msg(1, "p1");
    assert_eq!(
        verify::verify_body(&e.p, &earlier).await.unwrap(),
        Verdict::Accepted
    );
    let bodies: Vec<String> = vec![
        e.msg(1, "p1"), // duplicate of the claim above
        e.msg(1, "p2"), // slot 1's second: accepted (cap 2)
        e.msg(1, "p3"), // slot 1's third: over the cap
        e.msg(2, "p1"),
        e.msg(3, "p1"),
        e.msg(4, "p2"),
        e.msg(5, "p2"),
        e.msg(2, "p2"),
        e.msg(3, "p3"), // slot 3's second
        e.msg(3, "p4"), // slot 3's third: over the cap
    ];
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let before = e.state.counts();
    let out: Vec<Verdict> = verify::verify_batch(&e.p, &refs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let after = e.state.counts();
    let delta =
        |op: Op| after.get(&op).copied().unwrap_or(0) - before.get(&op).copied().unwrap_or(0);
    assert_eq!(
        out,
        vec![
            rejected("duplicate"),
            Verdict::Accepted,
            rejected("slot_epoch_cap"),
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::Accepted,
            rejected("slot_epoch_cap"),
        ]
    );
    assert_eq!(delta(Op::BatchGet), 1, "one batched read: {after:?}");
    assert_eq!(delta(Op::Transact), 1, "one transaction: {after:?}");
    // And the batch's decided marks for the close watermark: one set add for the epoch.
    assert_eq!(delta(Op::AddMembers), 1, "one decided mark: {after:?}");
    let total: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    assert_eq!(total, 3, "nothing else: {before:?} -> {after:?}");

    // The batch again (SQS redelivers it whole): every message is a redelivery.
    let before = e.state.write_calls();
    let again: Vec<Verdict> = verify::verify_batch(&e.p, &refs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        again.iter().all(|v| *v == Verdict::Redelivered),
        "{again:?}"
    );
    // Nothing but the decided marks again (a set add of marks already there: no change).
    assert_eq!(
        e.state.write_calls(),
        before + 1,
        "a redelivered batch writes nothing but its idempotent decided mark"
    );
    assert_eq!(e.accepted_ids().await.len(), 8);
}

/// Issue 19.1 under concurrency: batches running at once for one slot never accept more than
/// its cap, and each submission is accepted at most once; a batch whose transaction loses a
/// condition still accepts its other messages.
#[tokio::test]
async fn concurrent_batches_keep_the_slot_cap_and_first_wins_exact() {
    let e = Arc::new(env().await);
    // Slot 1: six projects over three batches, two each; and per batch slot 2 on one project
    // (first wins among the three).
    let batches: Vec<Vec<String>> = (0..3)
        .map(|b| {
            vec![
                e.msg(1, &format!("q{b}a")),
                e.msg(1, &format!("q{b}b")),
                e.msg(2, "shared"),
            ]
        })
        .collect();
    // Hold the first batch's transaction so the others read the same empty state.
    let mut held = e.state.hold(Op::Transact, None);
    let runs: Vec<_> = batches
        .iter()
        .map(|b| {
            let e = e.clone();
            let b = b.clone();
            tokio::spawn(async move {
                let refs: Vec<&str> = b.iter().map(String::as_str).collect();
                verify::verify_batch(&e.p, &refs).await
            })
        })
        .collect();
    held.reached().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    held.release();
    let mut verdicts: BTreeMap<String, u32> = BTreeMap::new();
    for r in runs {
        for v in r.await.unwrap() {
            *verdicts.entry(format!("{:?}", v.unwrap())).or_default() += 1;
        }
    }
    let accepted = e.accepted_ids().await;
    // Slot 1: exactly its cap (2) of its six; (shared, 2): one of three (first wins).
    assert_eq!(accepted.len(), 3, "{verdicts:?}");
    assert_eq!(
        verdicts[&format!("{:?}", Verdict::Accepted)],
        3,
        "{verdicts:?}"
    );
    assert_eq!(verdicts[&format!("{:?}", rejected("slot_epoch_cap"))], 4);
    assert_eq!(verdicts[&format!("{:?}", rejected("duplicate"))], 2);
    let epoch = e.p.records().epoch(e.epoch).await.unwrap().unwrap();
    assert_eq!(epoch.state, EpochState::Open);
}

/// Partial batch failure: a message whose state read fails (a corrupt receipt) or whose
/// chain call fails is reported alone; the others of the batch are decided. A batch whose
/// transaction fails before it reaches the store returns only the messages it carried, and a
/// retry of those accepts them.
#[tokio::test]
async fn a_failed_transaction_returns_only_its_messages_and_the_retry_completes_them() {
    let e = env().await;
    let bodies = [e.msg(1, "p1"), e.msg(2, "p1"), "garbage".to_string()];
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    e.state.fail_next(Op::Transact, Table::Submissions);
    let out = verify::verify_batch(&cut_short(&e), &refs).await;
    assert!(out[0].is_err() && out[1].is_err(), "{out:?}");
    assert!(out[0].as_ref().unwrap_err().is_retryable());
    assert!(
        matches!(out[2], Ok(Verdict::DeadLettered(_))),
        "poison is decided: {out:?}"
    );
    assert!(e.accepted_ids().await.is_empty());
    let out: Vec<Verdict> = verify::verify_batch(&e.p, &refs[..2])
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(out, vec![Verdict::Accepted, Verdict::Accepted]);

    // Through the Lambda entry point: only the failed record is in batchItemFailures.
    use sequencer_handlers::sqs::events::{SqsEvent, SqsMessage};
    let mk = |id: &str, body: &str| {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_string());
        m.body = Some(body.to_string());
        m
    };
    let fresh = e.msg(3, "p1");
    let corrupt_id = e.msg(4, "p1");
    // A stored receipt that does not parse makes its own message fail, not its neighbours.
    e.state
        .put(
            Table::Receipts,
            &sequencer_ports::Key::new(
                format!(
                    "{:#x}#{}#{}",
                    e.market,
                    e.epoch,
                    sequencer_handlers::records::shard_of(&corrupt_id[..36])
                ),
                &corrupt_id[..36],
            ),
            &sequencer_ports::Item::data("{not json"),
        )
        .await
        .unwrap();
    let mut ev = SqsEvent::default();
    ev.records = vec![mk("m-fresh", &fresh), mk("m-corrupt", &corrupt_id)];
    let resp = verify::handle(&e.p, ev).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["m-corrupt"]);
    assert_eq!(e.outcome(&fresh).await, Some(Outcome::Accepted));
}
