//! The epoch manager handler on the in-memory chain (`MemChain`, the contract's release, skip,
//! role and day rules), in milliseconds: releases on the grid and never early, a lost answer
//! settled from the contract and never resent, two managers racing, a standby, both catch-up
//! policies (paced on tokio's paused clock), bad input with no transaction, and the day rolling
//! over exactly once across restarts and two managers, as the managers report it. The same
//! handler against anvil: `tests/e2e/tests/epoch_manager.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sequencer_core::epochs::CatchUp;
use sequencer_core::Address;
use sequencer_handlers::epoch_manager::{
    EpochManager, EpochManagerConfig, EpochManagerError, Released,
};
use sequencer_ports::{ChainPort, Windows};
use sequencer_testsupport::{MemChain, SendFault};
use tokio::time::Instant;

const WINDOWS: Windows = Windows {
    snapshot_blocks: 5,
    batch_blocks: 100,
};
const OTHER: Address = Address::repeat_byte(0x77);

fn chain(epoch_size: u64, per_day: u64) -> MemChain {
    let c = MemChain::new(Address::repeat_byte(0x11), WINDOWS, 3);
    c.set_market(epoch_size, per_day, 5);
    c
}

fn cfg(c: &MemChain, offset: u64, first_begin: u64) -> EpochManagerConfig {
    EpochManagerConfig {
        finality_offset: offset,
        poll_interval: Duration::from_millis(20),
        first_begin: Some(first_begin),
        catch_up: CatchUp::InOrder { max_per_sec: 1_000 },
        release_timeout: Duration::from_secs(5),
        ..EpochManagerConfig::new(c.market())
    }
}

async fn manager(c: &MemChain, cfg: EpochManagerConfig) -> EpochManager {
    EpochManager::new(Arc::new(c.clone()), None, cfg)
        .await
        .expect("manager")
}

/// Ids 1..=n once each, on the grid from `first`, each released no earlier than its due block
/// (the release block is the first block after the head it was sent at).
fn assert_contiguous(c: &MemChain, size: u64, first: u64, offset: u64) {
    for (k, r) in c.releases().iter().enumerate() {
        let k = k as u64;
        assert_eq!(r.epoch_id, k + 1);
        assert_eq!(
            (r.begin, r.end),
            (first + k * size, first + k * size + size - 1)
        );
        assert!(
            r.block_number > r.end + offset,
            "epoch {} early",
            r.epoch_id
        );
    }
}

fn assert_never_early(released: &[Released], offset: u64) {
    for r in released {
        assert_eq!(r.due_at, r.range.end + offset);
        assert!(r.source_head_at_send >= r.due_at, "{r:?}");
    }
}

#[tokio::test]
async fn each_due_epoch_is_released_once_on_its_grid_and_never_early() {
    let c = chain(4, 1_000);
    let mut m = manager(&c, cfg(&c, 2, 1)).await;
    // Head 1: epoch [1, 4] is due at 6.
    assert!(m.step().await.unwrap().released.is_empty());
    c.mine(4); // head 5
    let r = m.step().await.unwrap();
    assert!(r.released.is_empty(), "due at 6, head 5");
    assert_eq!(r.next_due_at, 6);
    c.mine(1); // head 6
    let r = m.step().await.unwrap();
    assert_eq!(r.released.len(), 1);
    assert_eq!((r.released[0].range.begin, r.released[0].range.end), (1, 4));
    // A long pause: every epoch due at the head is released in one step, in order.
    c.mine(30);
    let r = m.step().await.unwrap();
    assert_never_early(&r.released, 2);
    let head = c.head_now();
    let last = c.releases().last().unwrap().end;
    assert!(last + 2 <= head && head < last + 2 + 4 + r.released.len() as u64);
    assert_contiguous(&c, 4, 1, 2);
    assert_eq!(m.stats().released, c.release_transactions());
    assert_eq!(
        c.transactions_from(MemChain::OPERATOR),
        c.release_transactions()
    );
}

#[tokio::test]
async fn a_lost_answer_is_settled_from_the_contract_and_never_resent() {
    let c = chain(2, 1_000);
    let mut m = manager(&c, cfg(&c, 1, 1)).await;
    c.mine(3); // head 4: [1, 2] due at 3
               // Sent and mined, the answer lost: the contract shows it released by our key.
    c.fail_next_release(SendFault::AfterSend);
    let r = m.step().await.unwrap();
    assert_eq!(r.released.len(), 1, "{r:?}");
    assert_eq!(c.release_transactions(), 1, "not sent again");
    assert_eq!((m.stats().released, m.stats().retried), (1, 1));
    assert_eq!(r.released[0].tx_hash, Some(c.releases()[0].tx_hash));
    // Never sent: the error is returned (not fatal), the next poll releases it. (The lost
    // release mined block 5, so [3, 4] is due now.)
    assert_eq!(c.head_now(), 5);
    c.fail_next_release(SendFault::BeforeSend);
    let e = m.step().await.expect_err("transport error");
    assert!(!e.is_fatal(), "{e}");
    assert_eq!(c.release_transactions(), 1);
    let r = m.step().await.unwrap();
    assert_eq!(r.released.len(), 1, "{r:?}");
    assert_eq!(c.release_transactions(), 2);
    assert_contiguous(&c, 2, 1, 1);
    assert_eq!(m.stats().raced, 0);
}

#[tokio::test]
async fn a_release_by_another_key_is_raced_not_counted() {
    let c = chain(2, 1_000);
    c.set_epoch_manager(OTHER, true);
    let mut m = manager(&c, cfg(&c, 1, 1)).await;
    c.mine(2); // head 3: [1, 2] due
               // Another manager's release lands between our read and our send: the contract refuses ours
               // (contiguity) and the contract says who released it.
    c.fail_next_release(SendFault::RacedBy(OTHER));
    let r = m.step().await.unwrap();
    assert!(r.released.is_empty(), "{r:?}");
    assert_eq!((r.raced, m.stats().raced, m.stats().released), (1, 1, 0));
    // Theirs lands first in the same block; ours is mined and fails (gas spent, no revert data).
    c.mine(2);
    c.fail_next_release(SendFault::FailedAfter(OTHER));
    let r = m.step().await.unwrap();
    assert!(r.released.is_empty(), "{r:?}");
    assert_eq!(m.stats().raced, 2);
    assert_eq!(m.stats().retried, 0, "a failed transaction is not a retry");
    assert_eq!(c.transactions_from(OTHER), 2);
    assert_contiguous(&c, 2, 1, 1);
    // And on: the next epoch is ours ([5, 6] is due: the two transactions mined blocks 7, 8).
    assert_eq!(c.head_now(), 8);
    assert_eq!(m.step().await.unwrap().released.len(), 1);
    assert_eq!(c.releases().last().map(|r| r.epoch_id), Some(3));
}

/// Two managers on one chain until `deadline`, a block every 10 ms (paused clock).
async fn race(a: &mut EpochManager, b: &mut EpochManager, c: &MemChain, for_: Duration) {
    let deadline = Instant::now() + for_;
    let miner = {
        let c = c.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
                c.mine(1);
            }
        })
    };
    let (sa, sb) = tokio::join!(
        a.run_until(Some(deadline), std::future::pending()),
        b.run_until(Some(deadline), std::future::pending())
    );
    sa.unwrap();
    sb.unwrap();
    miner.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn two_managers_at_once_release_each_epoch_once() {
    let c = chain(2, 1_000);
    c.set_epoch_manager(OTHER, true);
    let mut a = manager(&c, cfg(&c, 1, 2)).await;
    let mut b = manager(&c.with_signer(Some(OTHER)), cfg(&c, 1, 2)).await;
    race(&mut a, &mut b, &c, Duration::from_secs(5)).await;
    let n = c.releases().len() as u64;
    assert!(n >= 100, "{n} epochs");
    assert_contiguous(&c, 2, 2, 1);
    assert_eq!(a.stats().released + b.stats().released, n);
    assert_eq!(
        c.transactions_from(MemChain::OPERATOR) + c.transactions_from(OTHER),
        n,
        "no release was sent twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_standby_sends_nothing_while_the_primary_is_healthy_then_takes_over() {
    let c = chain(2, 1_000);
    c.set_epoch_manager(OTHER, true);
    let mut primary = manager(&c, cfg(&c, 1, 2)).await;
    let mut scfg = cfg(&c, 1, 2);
    scfg.send_delay = Duration::from_millis(100);
    let standby_chain = c.with_signer(Some(OTHER));
    let mut standby = manager(&standby_chain, scfg).await;
    race(&mut primary, &mut standby, &c, Duration::from_secs(2)).await;
    assert!(primary.stats().released >= 50, "{:?}", primary.stats());
    assert_eq!(c.transactions_from(OTHER), 0, "{:?}", standby.stats());
    // The primary is gone: the standby takes over, 100 ms late per epoch.
    let before = c.releases().len();
    let deadline = Instant::now() + Duration::from_secs(2);
    let miner = {
        let c = c.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
                c.mine(1);
            }
        })
    };
    let s = standby
        .run_until(Some(deadline), std::future::pending())
        .await
        .unwrap();
    miner.await.unwrap();
    assert!(s.released >= 10, "{s:?}");
    assert_eq!(c.releases().len() as u64, before as u64 + s.released);
    assert_contiguous(&c, 2, 2, 1);
}

#[tokio::test(start_paused = true)]
async fn catch_up_in_order_is_paced_and_skip_to_head_skips_on_chain() {
    let c = chain(2, 1_000);
    let mut in_order = cfg(&c, 1, 1);
    in_order.catch_up = CatchUp::InOrder { max_per_sec: 10 };
    let mut m = manager(&c, in_order.clone()).await;
    c.mine(40); // head 41: epochs ending 2..=40 due (20)
    let t = Instant::now();
    let r = m.step().await.unwrap();
    assert_eq!(r.released.len(), 20);
    assert!(
        t.elapsed() >= Duration::from_millis(19 * 100),
        "10 a second: {:?}",
        t.elapsed()
    );
    assert_contiguous(&c, 2, 1, 1);

    // Down again for 25 epochs: one skip on chain, then the newest epoch.
    let mut skip = in_order;
    skip.catch_up = CatchUp::SkipToHead { max_backlog: 1 };
    let mut m = manager(&c, skip).await;
    let next = c.releases().last().unwrap().end + 1;
    c.mine(50);
    let r = m.step().await.unwrap();
    let [s] = r.skipped[..] else {
        panic!("one skip: {r:?}")
    };
    assert_eq!(s.from_begin, next);
    assert_eq!((s.to_begin - s.from_begin) % 2, 0);
    assert_eq!(c.skips(), vec![(s.from_begin, s.to_begin)]);
    assert_eq!(r.released.len(), 1);
    assert_eq!(r.released[0].range.begin, s.to_begin);
    assert_eq!(m.stats().skipped, s.epochs);
    assert_eq!(c.releases().len(), 21, "skipped epochs get no id");
}

#[tokio::test]
async fn bad_input_gets_a_typed_error_and_no_transaction() {
    let c = chain(2, 1_000);
    let mut wrong = cfg(&c, 1, 1);
    wrong.market = Address::repeat_byte(0x42);
    let e = EpochManager::new(Arc::new(c.clone()), None, wrong)
        .await
        .expect_err("wrong market");
    assert!(matches!(e, EpochManagerError::UnknownMarket(_)), "{e}");
    assert!(e.is_fatal());
    let e = EpochManager::new(Arc::new(c.with_signer(Some(OTHER))), None, cfg(&c, 1, 1))
        .await
        .expect_err("no role");
    assert!(
        matches!(e, EpochManagerError::NotEpochManager { who, .. } if who == OTHER),
        "{e}"
    );
    let e = EpochManager::new(Arc::new(c.with_signer(None)), None, cfg(&c, 1, 1))
        .await
        .expect_err("no signer");
    assert!(matches!(e, EpochManagerError::NoSigner), "{e}");
    let mut zero_rate = cfg(&c, 1, 1);
    zero_rate.catch_up = CatchUp::InOrder { max_per_sec: 0 };
    assert!(matches!(
        EpochManager::new(Arc::new(c.clone()), None, zero_rate).await,
        Err(EpochManagerError::Config(_))
    ));
    // Role revoked after start: the contract refuses, typed and fatal, nothing mined.
    c.set_epoch_manager(OTHER, true);
    let mut revoked = manager(&c.with_signer(Some(OTHER)), cfg(&c, 1, 1)).await;
    c.set_epoch_manager(OTHER, false);
    c.mine(5);
    let e = revoked.step().await.expect_err("role revoked");
    assert!(
        matches!(e, EpochManagerError::NotEpochManager { .. }),
        "{e}"
    );
    assert!(e.is_fatal());
    // Epoch size 0 (a foreign contract could say so).
    let mut m = manager(&c, cfg(&c, 1, 1)).await;
    c.set_market(0, 1_000, 5);
    let e = m.step().await.expect_err("epoch size 0");
    assert!(matches!(e, EpochManagerError::ZeroEpochSize(_)), "{e}");
    assert_eq!(
        c.release_transactions(),
        0,
        "no transaction for any bad input"
    );
}

/// Every day after the first started exactly once, by the release of its first epoch
/// ((d − 1)·n + 1), and the contract's day is the last epoch's.
fn assert_days(c: &MemChain, per_day: u64) -> u64 {
    let releases = c.releases();
    let last = releases.last().expect("epochs").epoch_id;
    let days = (last - 1) / per_day + 1;
    let starts = c.day_starts();
    assert_eq!(
        starts.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        (2..=days).collect::<Vec<_>>(),
        "each day started once, in order"
    );
    for (d, tx) in &starts {
        let first = releases
            .iter()
            .find(|r| r.epoch_id == (d - 1) * per_day + 1)
            .expect("first epoch of the day");
        assert_eq!(first.tx_hash, *tx, "day {d}");
    }
    assert_eq!(c.day_clock().day, days);
    days
}

#[tokio::test(start_paused = true)]
async fn the_day_rolls_over_exactly_once_across_restarts_and_two_managers() {
    let per_day = 3;
    let c = chain(2, per_day);
    c.set_epoch_manager(OTHER, true);
    let mut reported: Vec<(u64, u64)> = Vec::new(); // (day, epoch) from Released
    let mut started = 0;

    // One manager, a lost answer on a release that starts a day, then a restart (nothing in
    // memory) that runs on.
    let mut a = manager(&c, cfg(&c, 1, 1)).await;
    c.mine(2 * per_day + 1);
    for _ in 0..per_day {
        let r = a.step_at_most(1).await.unwrap();
        reported.extend(
            r.released
                .iter()
                .filter_map(|x| x.day_started.map(|d| (d, x.epoch_id))),
        );
    }
    c.fail_next_release(SendFault::AfterSend); // epoch 4 starts day 2; its answer is lost
    let r = a.step().await.unwrap();
    reported.extend(
        r.released
            .iter()
            .filter_map(|x| x.day_started.map(|d| (d, x.epoch_id))),
    );
    assert_eq!(
        reported,
        [(2, 4)],
        "settled from the contract, day included: {r:?}"
    );
    assert_eq!((a.stats().days_started, a.stats().day), (1, Some(2)));
    started += a.stats().days_started;
    drop(a);

    for _ in 0..3 {
        let mut restarted = manager(&c, cfg(&c, 1, 1)).await;
        assert_eq!(
            restarted.stats().day,
            Some(c.day_clock().day),
            "read at start"
        );
        c.mine(2 * per_day + 2);
        let r = restarted.step().await.unwrap();
        reported.extend(
            r.released
                .iter()
                .filter_map(|x| x.day_started.map(|d| (d, x.epoch_id))),
        );
        started += restarted.stats().days_started;
        assert_eq!(restarted.stats().day, Some(c.day_clock().day));
    }

    // Two managers with two keys racing on the market.
    let mut x = manager(&c, cfg(&c, 1, 1)).await;
    let mut y = manager(&c.with_signer(Some(OTHER)), cfg(&c, 1, 1)).await;
    race(&mut x, &mut y, &c, Duration::from_secs(3)).await;
    started += x.stats().days_started + y.stats().days_started;

    let days = assert_days(&c, per_day);
    assert!(days >= 20, "{days} days");
    assert_eq!(started, days - 1, "the managers report each day once");
    for (d, epoch) in &reported {
        assert_eq!(*epoch, (d - 1) * per_day + 1);
    }
    let now = c.day_clock().day;
    for s in [x.stats(), y.stats()] {
        assert!(
            s.day.is_some_and(|d| d + 1 >= now && d <= now),
            "{s:?} day {now}"
        );
    }
}

#[tokio::test]
async fn stats_and_prometheus_report_the_day() {
    let c = chain(2, 2);
    let mut m = manager(&c, cfg(&c, 1, 1)).await;
    c.mine(10);
    m.step().await.unwrap();
    let s = m.stats();
    assert_eq!(s.days_started, c.day_starts().len() as u64);
    assert_eq!(s.day, Some(c.day_clock().day));
    let text = s.prometheus(c.market());
    assert!(text.contains(&format!(
        "epoch_manager_days_started_total{{market=\"{}\"}} {}",
        c.market(),
        s.days_started
    )));
    assert!(text.contains(&format!(
        "epoch_manager_day{{market=\"{}\"}} {}",
        c.market(),
        c.day_clock().day
    )));
    let _: &dyn ChainPort = &c;
}
