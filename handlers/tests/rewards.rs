//! Rewards accounting end to end on the embedded adapters and the in-memory chain: finalize keeps
//! each epoch's per-slot rewards (eligible, and discarded with the CIDs), the daily commit sums a
//! day once it ended on chain and records it with one `updateRewards`, exactly once across
//! redelivery, a lost answer and two runs at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sequencer_core::rewards::DiscardReason;
use sequencer_core::B256;
use sequencer_handlers::jobs::RewardsJob;
use sequencer_handlers::records::{DayCommit, DayRewards};
use sequencer_handlers::{rewards, tick, verify, PipelineError};
use sequencer_testsupport::memchain::SendFault;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

fn msg(h: &Harness, slot: u64, epoch: u64, project: &str, cid: &str, header: B256) -> String {
    signed_message(
        &h.domain,
        h.market,
        &Uuid::new_v4(),
        slot,
        slot,
        epoch,
        project,
        cid,
        header,
    )
    .0
}

/// Releases an epoch, has `votes` (slot, project, CID) accepted in it, closes, finalizes and
/// anchors it.
async fn epoch_with(h: &Harness, votes: &[(u64, &str, &str)]) -> u64 {
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    assert_eq!(tick::step(&h.p).await.unwrap().opened, vec![epoch]);
    for (slot, project, cid) in votes {
        let body = msg(h, *slot, epoch, project, cid, block_hash_of(r + 1));
        assert_eq!(
            verify::verify_body(&h.p, &body).await.unwrap(),
            verify::Verdict::Accepted
        );
    }
    h.chain.mine(10);
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    h.run_jobs().await;
    epoch
}

fn job(h: &Harness, day: u64) -> RewardsJob {
    RewardsJob {
        market: h.market,
        day,
    }
}

#[tokio::test]
async fn a_day_is_counted_per_slot_and_committed_once_despite_a_lost_answer_and_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    // Epochs of 10 blocks, 2 epochs a day, a quota of 2 eligible submissions.
    h.chain.set_market(10, 2, 2);

    // Day 1, epoch 1: slots 1 and 2 vote A on p1, slot 3 B (outvoted); slot 1 also p2.
    let e1 = epoch_with(
        &h,
        &[
            (1, "p1", CID_A),
            (2, "p1", CID_A),
            (3, "p1", CID_B),
            (1, "p2", CID_A),
        ],
    )
    .await;
    // Day 1, epoch 2: all three vote A.
    let e2 = epoch_with(&h, &[(1, "p1", CID_A), (2, "p1", CID_A), (3, "p1", CID_A)]).await;

    // Finalize kept each epoch's rewards, the discarded with the CIDs.
    let r1 = h.p.records().epoch_rewards(e1).await.unwrap().unwrap();
    let by_slot = |s: u64| r1.slots.iter().find(|t| t.slot == s).unwrap().clone();
    assert_eq!(by_slot(1).eligible, 2);
    assert_eq!(by_slot(2).eligible, 1);
    let three = by_slot(3);
    assert_eq!(three.eligible, 0);
    assert_eq!(three.discards.len(), 1);
    assert_eq!(three.discards[0].cid, CID_B);
    assert_eq!(three.discards[0].finalized_cid.as_deref(), Some(CID_A));
    assert_eq!(three.discards[0].reason, DiscardReason::Outvoted);
    assert_eq!(h.p.records().epochs_rewards(e1, e2).await.unwrap().len(), 2);

    // The day has not ended on chain: nothing is sent, the job is retried later.
    let early = rewards::run(&h.p, job(&h, 1)).await.unwrap_err();
    assert!(matches!(early, PipelineError::NotReady(_)), "{early}");
    assert!(early.is_retryable());
    assert_eq!(h.chain.rewards_transactions(), 0);

    // The third release starts day 2.
    h.chain.release();
    assert_eq!(h.chain.day_clock().day, 2);

    // Sent and mined, the answer lost: the job fails (retryable) ...
    h.chain.fail_next_rewards(SendFault::AfterSend);
    let lost = rewards::run(&h.p, job(&h, 1)).await.unwrap_err();
    assert!(lost.is_retryable(), "{lost}");
    assert_eq!(h.chain.rewards_transactions(), 1);
    // ... and its redelivery, twice at once, sends nothing again.
    let (a, b) = tokio::join!(
        rewards::run(&h.p, job(&h, 1)),
        rewards::run(&h.p, job(&h, 1))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        h.chain.rewards_transactions(),
        1,
        "one updateRewards for the day"
    );
    for r in [&a, &b] {
        let day = &r.rewards;
        assert_eq!((day.first_epoch, day.last_epoch), (e1, e2));
        assert_eq!(day.quota, 2);
        let sums: Vec<(u64, u64, u64, bool)> = day
            .slots
            .iter()
            .map(|s| (s.slot, s.eligible, s.discarded, s.met_quota))
            .collect();
        assert_eq!(
            sums,
            vec![(1, 3, 0, true), (2, 2, 0, true), (3, 1, 1, false)]
        );
        assert_eq!(day.eligible_nodes, 2);
    }
    // One DailyTaskCompletedEvent per slot at the quota, the other recorded as not met.
    let done: Vec<(u64, u64)> = h
        .chain
        .completions()
        .iter()
        .map(|(day, slot, _, _)| (*day, *slot))
        .collect();
    assert_eq!(done, vec![(1, 1), (1, 2)]);
    assert_eq!(h.chain.reward(1, 3), Some(false));
    assert_eq!(h.chain.eligible_nodes(1), 2);

    // Committed: a later job reads the record and sends nothing.
    let again = rewards::run(&h.p, job(&h, 1)).await.unwrap();
    assert!(again.already_committed);
    let commit = again.rewards.committed.unwrap();
    assert_eq!(
        commit.recorded.len() + commit.already.len(),
        3,
        "{commit:?}"
    );
    assert_eq!(h.chain.rewards_transactions(), 1);

    // A job for another market is refused without a read.
    let mut foreign = job(&h, 1);
    foreign.market = sequencer_core::Address::repeat_byte(9);
    assert!(!rewards::run(&h.p, foreign)
        .await
        .unwrap_err()
        .is_retryable());
}

#[tokio::test]
async fn a_day_waits_for_its_epochs_to_be_finalized() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    h.chain.set_market(10, 2, 1);
    let e1 = epoch_with(&h, &[(1, "p1", CID_A)]).await;
    // Epoch 2 is released and open (a submission in it), not finalized, when day 2 starts.
    let (e2, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    let body = msg(&h, 2, e2, "p1", CID_A, block_hash_of(r + 1));
    assert_eq!(
        verify::verify_body(&h.p, &body).await.unwrap(),
        verify::Verdict::Accepted
    );
    h.chain.release();
    let wait = rewards::run(&h.p, job(&h, 1)).await.unwrap_err();
    assert!(
        matches!(&wait, PipelineError::NotReady(m) if m.contains(&format!("epoch {e2}"))),
        "{wait}"
    );
    assert_eq!(h.chain.rewards_transactions(), 0);
    // Once it is finalized, the day counts both epochs.
    h.chain.mine(10);
    tick::step(&h.p).await.unwrap();
    h.run_jobs().await;
    let r = rewards::run(&h.p, job(&h, 1)).await.unwrap();
    assert_eq!((r.rewards.first_epoch, r.rewards.last_epoch), (e1, e2));
    let slots: Vec<(u64, u64)> = r
        .rewards
        .slots
        .iter()
        .map(|s| (s.slot, s.eligible))
        .collect();
    assert_eq!(slots, vec![(1, 1), (2, 1)]);
    assert_eq!(h.chain.completions().len(), 2);
    assert_eq!(h.chain.rewards_transactions(), 1);
}

#[tokio::test]
async fn anchoring_the_next_days_epochs_commits_the_day_through_the_anchor_fifo_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    h.chain.set_market(10, 2, 1);
    epoch_with(&h, &[(1, "p1", CID_A)]).await;
    epoch_with(&h, &[(2, "p1", CID_A)]).await;
    assert_eq!(h.chain.rewards_transactions(), 0, "day 1 still running");
    // Day 2's first epoch: its anchoring asks for day 1's commit on the anchor FIFO, which the
    // same drain runs.
    epoch_with(&h, &[(1, "p1", CID_A)]).await;
    assert_eq!(h.chain.day_clock().day, 2);
    assert_eq!(h.chain.rewards_transactions(), 1);
    let day = h.p.records().day_rewards(1).await.unwrap().unwrap();
    assert_eq!(day.committed.unwrap().completed, vec![1, 2]);
    assert_eq!(h.p.records().latest_rewards_day().await.unwrap(), Some(1));
    // Later epochs of day 2 do not ask again.
    epoch_with(&h, &[(2, "p1", CID_A)]).await;
    assert_eq!(h.chain.rewards_transactions(), 1);
    assert_eq!(
        h.metrics
            .counter(&sequencer_handlers::metrics::REWARDS_DAYS_COMMITTED, []),
        1
    );
}

/// A market of thousands of slots: one epoch's tally (every slot with two discards) and one
/// day's sums are far over what one DynamoDB item holds (400 KB). They are stored in parts, no
/// item over the limit, and read back whole, alone and in a range; before, finalize failed on
/// every delivery (`ValidationException: Item size has exceeded the maximum allowed size`, found
/// by the pipeline benchmark at 1 000 projects × 5 on DynamoDB Local) and the epoch never
/// anchored.
#[tokio::test]
async fn rewards_of_thousands_of_slots_fit_the_store_in_parts() {
    use sequencer_core::rewards::{DaySlot, Discard, SlotTally};
    use sequencer_handlers::records::{DayRewards, Expiry};
    use sequencer_ports::{query_all, Table};
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let records = h.p.records();
    let slots: Vec<SlotTally> = (1..=6_000u64)
        .map(|slot| SlotTally {
            slot,
            eligible: 1,
            discards: (0..2)
                .map(|k| Discard {
                    project: format!("aggregate_pair_total_reserves:0x{slot:040x}:{k}"),
                    cid: CID_B.to_string(),
                    finalized_cid: Some(CID_A.to_string()),
                    reason: DiscardReason::Outvoted,
                })
                .collect(),
        })
        .collect();
    // A small epoch before and after: the range read keeps them apart.
    let small = vec![SlotTally {
        slot: 1,
        eligible: 1,
        discards: Vec::new(),
    }];
    // Each epoch's rewards carry the epoch's expiry, on every part.
    let expiry = Expiry(4_000_000_000);
    records
        .record_epoch_rewards(6, &small, expiry)
        .await
        .unwrap();
    let big = records
        .record_epoch_rewards(7, &slots, expiry)
        .await
        .unwrap();
    records
        .record_epoch_rewards(8, &small, expiry)
        .await
        .unwrap();
    // Again (a redelivered finalize): the same.
    records
        .record_epoch_rewards(7, &slots, expiry)
        .await
        .unwrap();
    assert_eq!(records.epoch_rewards(7).await.unwrap().unwrap(), big);
    let range = records.epochs_rewards(6, 8).await.unwrap();
    assert_eq!(
        range
            .iter()
            .map(|r| (r.epoch, r.slots.len()))
            .collect::<Vec<_>>(),
        vec![(6, 1), (7, 6_000), (8, 1)]
    );
    assert_eq!(range[1], big);

    let day = DayRewards {
        day: 3,
        first_epoch: 1,
        last_epoch: 720,
        quota: 10,
        slots: (1..=20_000u64)
            .map(|slot| DaySlot {
                slot,
                eligible: 700 + slot % 40,
                discarded: slot % 7,
                met_quota: true,
            })
            .collect(),
        eligible_nodes: 20_000,
        committed: None,
    };
    records.save_day_rewards(&day).await.unwrap();
    assert_eq!(records.day_rewards(3).await.unwrap().unwrap(), day);

    let mut items = 0;
    for (sk, item) in query_all(
        h.state.as_ref(),
        Table::Epochs,
        &format!("{:#x}#rewards", h.market),
    )
    .await
    .unwrap()
    {
        assert_eq!(item.ttl, Some(expiry.0), "{sk} without the epoch's expiry");
    }
    for (_, item) in query_all(
        h.state.as_ref(),
        Table::Epochs,
        &format!("{:#x}#rewards", h.market),
    )
    .await
    .unwrap()
    .into_iter()
    .chain(
        query_all(
            h.state.as_ref(),
            Table::Epochs,
            &format!("{:#x}#rewards-day", h.market),
        )
        .await
        .unwrap(),
    ) {
        assert!(item.ttl.is_some(), "a rewards item that never expires");
        assert!(
            item.data.len() < 400_000,
            "an item of {} bytes",
            item.data.len()
        );
        items += 1;
    }
    assert!(items > 6, "stored in parts: {items} items");
}

#[tokio::test]
async fn the_newest_day_with_rewards_is_named_by_one_item_that_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 1);
    let records = h.p.records();
    assert_eq!(records.latest_rewards_day().await.unwrap(), None);
    let day = |day| DayRewards {
        day,
        first_epoch: day,
        last_epoch: day,
        quota: 1,
        ..DayRewards::default()
    };
    records.save_day_rewards(&day(3)).await.unwrap();
    assert_eq!(records.latest_rewards_day().await.unwrap(), Some(3));
    // An older day saved late (a day whose commit was asked for late) does not move it back.
    records.save_day_rewards(&day(2)).await.unwrap();
    assert_eq!(records.latest_rewards_day().await.unwrap(), Some(3));
    // Saved again with its commit: still named.
    let mut committed = day(3);
    committed.committed = Some(DayCommit::default());
    records.save_day_rewards(&committed).await.unwrap();
    assert_eq!(records.latest_rewards_day().await.unwrap(), Some(3));
    records.save_day_rewards(&day(4)).await.unwrap();
    assert_eq!(records.latest_rewards_day().await.unwrap(), Some(4));
    // The day records themselves are untouched by the name.
    assert_eq!(records.day_rewards(2).await.unwrap().unwrap().day, 2);
}
