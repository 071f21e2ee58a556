//! The handlers end to end on the embedded adapters and an in-memory chain (`sequencer_testsupport::Harness`): every rejection
//! reason, redelivery, poison messages, the close → finalize → anchor chain, re-runs and
//! injected faults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sequencer_core::devkeys;
use sequencer_core::eip712::{address_of, Domain};
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::{Address, B256};
use uuid::Uuid;

use sequencer_handlers::{anchor, finalize, tick, verify};

use sequencer_embedded::poller::{drain, PollerConfig};
use sequencer_handlers::jobs::EpochJob;
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::{EpochState, RejectReason};
use sequencer_ports::Table;
use sequencer_ports::{ContentStore, OutMessage, Queue};
use sequencer_testsupport::faults::Op;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};

use verify::Verdict;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

struct Env {
    h: Harness,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        h: Harness::new(dir.path(), 2),
        _dir: dir,
    }
}

impl Env {
    #[allow(clippy::too_many_arguments)]
    fn msg(
        &self,
        slot: u64,
        signer: u64,
        epoch: u64,
        project: &str,
        cid: &str,
        header: B256,
    ) -> String {
        signed_message(
            &self.domain,
            self.market,
            &Uuid::new_v4(),
            slot,
            signer,
            epoch,
            project,
            cid,
            header,
        )
        .0
    }

    async fn verify(&self, body: &str) -> Verdict {
        verify::verify_body(&self.p, body).await.unwrap()
    }

    async fn run_all(&self) {
        self.run_jobs().await;
    }
}

fn rejected(reason: &str) -> Verdict {
    Verdict::Rejected(RejectReason::from_code(reason))
}

#[tokio::test]
async fn every_rule_then_close_finalize_anchor_exactly_once() {
    let e = env();
    let (epoch, r) = e.chain.release();
    e.chain.mine(1);
    let opened = tick::step(&e.p).await.unwrap();
    assert_eq!(opened.opened, vec![epoch]);
    let h = block_hash_of(r + 1);

    // Accepted: 3 votes for A, 2 for B on p1; slot 1 also on p2.
    let mut accepted_bodies = Vec::new();
    for slot in 1..=5 {
        let cid = if slot <= 3 { CID_A } else { CID_B };
        let body = e.msg(slot, slot, epoch, "p1", cid, h);
        assert_eq!(e.verify(&body).await, Verdict::Accepted, "slot {slot}");
        accepted_bodies.push(body);
    }
    let p2 = e.msg(1, 1, epoch, "p2", CID_B, h);
    assert_eq!(e.verify(&p2).await, Verdict::Accepted);

    // Every rejection reason.
    assert_eq!(
        e.verify(&e.msg(1, 1, epoch, "p3", CID_A, h)).await,
        rejected("slot_epoch_cap")
    );
    assert_eq!(
        e.verify(&e.msg(2, 2, epoch, "p1", CID_B, h)).await,
        rejected("duplicate")
    );
    // Counted, not stored (docs/protocol.md §5): another slot's key, a slot without a
    // snapshotter, a slot id past the contract's slot count.
    assert_eq!(
        e.verify(&e.msg(3, 4, epoch, "p4", CID_A, h)).await,
        Verdict::Dropped("not_slot_snapshotter")
    );
    e.chain.assign_slot(10, Address::repeat_byte(0x10));
    assert_eq!(
        e.verify(&e.msg(8, 1, epoch, "p4", CID_A, h)).await,
        Verdict::Dropped("unknown_slot")
    );
    assert_eq!(
        e.verify(&e.msg(99, 1, epoch, "p4", CID_A, h)).await,
        Verdict::Dropped(verify::SLOT_OUT_OF_RANGE)
    );
    assert_eq!(
        e.verify(&e.msg(2, 2, epoch, "p5", CID_A, block_hash_of(r - 1)))
            .await,
        rejected("outside_window")
    );
    // A header the node does not know while its head is inside the window: "not yet" (it may
    // be a block the node has not served), back to the queue after the invocation's rounds,
    // with no receipt; once the head is past the window, unknown for good.
    let unknown = e.msg(2, 2, epoch, "p5", CID_A, B256::repeat_byte(7));
    let quick = {
        let mut cfg = e.p.config.clone();
        cfg.verify_not_yet_wait = Duration::ZERO;
        sequencer_handlers::Pipeline::new(e.p.ports.clone(), cfg)
    };
    assert!(verify::verify_body(&quick, &unknown)
        .await
        .unwrap_err()
        .is_retryable());
    e.chain.mine(5);
    assert_eq!(e.verify(&unknown).await, rejected("unknown_header"));
    assert_eq!(
        e.verify(&e.msg(2, 2, 7, "p5", CID_A, h)).await,
        rejected("epoch_not_released")
    );
    assert_eq!(
        e.verify(&e.msg(2, 2, epoch, "p5", "bafy-not-a-cid", h))
            .await,
        rejected("bad_snapshot_cid")
    );
    let foreign = signed_message(
        &e.domain,
        Address::repeat_byte(9),
        &Uuid::new_v4(),
        2,
        2,
        epoch,
        "p5",
        CID_A,
        h,
    )
    .0;
    assert_eq!(e.verify(&foreign).await, rejected("wrong_data_market"));
    let other_domain = Domain {
        chain_id: 1,
        ..e.domain
    };
    let forged = signed_message(
        &other_domain,
        e.market,
        &Uuid::new_v4(),
        2,
        2,
        epoch,
        "p5",
        CID_A,
        h,
    )
    .0;
    assert_eq!(
        e.verify(&forged).await,
        Verdict::Dropped("not_slot_snapshotter")
    );
    e.chain
        .flag(address_of(&devkeys::sim_snapshotter_key(6).unwrap()));
    assert_eq!(
        e.verify(&e.msg(6, 6, epoch, "p5", CID_A, h)).await,
        rejected("flagged_signer")
    );
    assert_eq!(
        e.verify(&e.msg(2, 2, 0, "p5", CID_A, h)).await,
        Verdict::Simulation
    );

    // Redelivery changes nothing; a reused id with another body is refused.
    assert_eq!(e.verify(&accepted_bodies[0]).await, Verdict::Redelivered);
    let reused = format!(
        "{}{}",
        &accepted_bodies[0][..36],
        &e.msg(2, 2, epoch, "p9", CID_A, h)[36..]
    );
    assert_eq!(e.verify(&reused).await, rejected("duplicate_submission_id"));

    // Poison goes to the DLQ with its reason, through the poller like Lambda's mapping.
    e.submissions
        .send(&[OutMessage::new("not a submission")])
        .await
        .unwrap();
    let cfg = PollerConfig {
        wait: Duration::ZERO,
        ..PollerConfig::default()
    };
    let r1 = drain(&e.submissions, &cfg, 5, |ev| verify::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!((r1.received, r1.failed), (1, 0));
    let dead = e
        .submissions
        .dlq()
        .unwrap()
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].attributes["dead_letter_reason"].starts_with("malformed:"));

    // Not closed before window end + grace.
    // Window ends at r + 5, grace 2: closes once the head passes r + 7 (it is at r + 6).
    assert_eq!(e.chain.head_now(), r + 6);
    e.chain.mine(1);
    assert!(tick::step(&e.p).await.unwrap().closed.is_empty());
    e.chain.mine(1);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![epoch]);
    assert!(
        tick::step(&e.p).await.unwrap().closed.is_empty(),
        "closed once"
    );
    assert_eq!(
        e.finalize_q.depth().await.unwrap(),
        1,
        "exactly one finalize job"
    );

    // Late after the close.
    assert_eq!(
        e.verify(&e.msg(4, 4, epoch, "p7", CID_A, h)).await,
        rejected("late")
    );

    e.run_all().await;
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(epochs[0].state, EpochState::Anchored);
    let rec = &epochs[0].record;
    let counts = rec.counts.clone().unwrap();
    assert_eq!(counts.accepted, 6);
    for reason in [
        "slot_epoch_cap",
        "duplicate",
        "outside_window",
        "unknown_header",
        "bad_snapshot_cid",
        "wrong_data_market",
        "flagged_signer",
    ] {
        assert!(
            counts.rejected.get(reason).copied().unwrap_or(0) >= 1,
            "{reason}: {counts:?}"
        );
    }
    for reason in ["not_slot_snapshotter", "unknown_slot", "slot_out_of_range"] {
        assert!(
            !counts.rejected.contains_key(reason),
            "not stored: {counts:?}"
        );
    }

    // On chain: the batches' roots equal a recomputation from the stored documents.
    let on_chain = e.chain.anchored_batches(epoch);
    assert_eq!(on_chain.len(), 1, "p1 and p2 fit one batch of 2");
    let mut previous: Vec<String> = Vec::new();
    for b in &on_chain {
        let bytes = e.blocks.get(&b.batch_cid).await.unwrap().unwrap();
        let doc: BatchDocument = serde_json::from_slice(&bytes).unwrap();
        let roots = inspect_roots(&doc, &previous).unwrap();
        assert_eq!(roots.finalized_cids_root, b.root);
        assert_eq!(doc.roothash, format!("{:#x}", roots.roothash));
        assert_eq!(doc.pids, vec!["p1", "p2"]);
        assert_eq!(doc.cids, vec![CID_A, CID_B], "plurality A on p1");
        assert_eq!(doc.submission_ids.len(), 6);
        previous.extend(doc.submission_ids);
    }
    let txs = e.chain.transactions();
    assert_eq!(txs, 2, "one batch + endBatchSubmissions");

    // Re-running finalize and anchor changes nothing.
    let job = EpochJob {
        market: e.market,
        epoch,
    };
    let again = finalize::run(&e.p, job).await.unwrap();
    assert!(again.already_finalized);
    assert_eq!(again.uploaded, 0);
    anchor::run(&e.p, job).await.unwrap();
    e.run_all().await;
    assert_eq!(e.chain.transactions(), txs);

    // Counted with labels as labels, each outcome once.
    let m = &e.metrics;
    assert_eq!(m.counter(&m::VERIFY_ACCEPTED, []), 6);
    assert_eq!(m.counter(&m::VERIFY_SIMULATIONS, []), 1);
    assert_eq!(m.counter(&m::VERIFY_REDELIVERED, []), 1);
    for (reason, n) in [
        ("slot_epoch_cap", 1),
        ("duplicate", 1),
        ("not_slot_snapshotter", 0),
        ("unknown_slot", 0),
        ("outside_window", 1),
        ("unknown_header", 1),
        ("epoch_not_released", 1),
        ("bad_snapshot_cid", 1),
        ("wrong_data_market", 1),
        ("flagged_signer", 1),
        ("duplicate_submission_id", 1),
        ("late", 1),
        ("never_seen", 0),
    ] {
        assert_eq!(m.counter(&m::VERIFY_REJECTED, [reason]), n, "{reason}");
    }
    for (reason, n) in [
        ("not_slot_snapshotter", 2),
        ("unknown_slot", 1),
        (verify::SLOT_OUT_OF_RANGE, 1),
    ] {
        assert_eq!(m.counter(&m::VERIFY_DROPPED, [reason]), n, "{reason}");
    }
    let series = m.all_series();
    let dead: Vec<_> = series
        .iter()
        .filter(|(name, _)| name == m::VERIFY_DEAD_LETTERED.name)
        .collect();
    assert_eq!(dead.len(), 1, "{series:?}");
    assert!(dead[0].1[1].1.starts_with("malformed:"), "{dead:?}");
    assert_eq!(m.counter(&m::VERIFY_DEAD_LETTERED, [&dead[0].1[1].1]), 1);
    assert_eq!(m.counter(&m::TICK_EPOCHS_OPENED, []), 1);
    assert_eq!(m.counter(&m::TICK_EPOCHS_CLOSED, []), 1);
    assert_eq!(m.counter(&m::ANCHOR_BATCHES_SENT, []), 1);
    assert_eq!(m.counter(&m::ANCHOR_EPOCHS_FAILED, []), 0);
    // Close → anchored once for the epoch, however often anchor ran for it; not negative, and
    // not longer than this test has been running.
    let lat = m.samples(&m::ANCHOR_CLOSE_TO_ANCHORED, []);
    assert_eq!(lat.len(), 1, "{lat:?}");
    assert!((0.0..60.0).contains(&lat[0]), "{lat:?}");
    // Every series is a catalogue metric carrying the market, then its own label keys.
    for (name, labels) in &series {
        let d = m::ALL.iter().find(|d| d.name == name).expect(name);
        assert_eq!(labels[0], ("market".into(), format!("{:#x}", e.market)));
        let keys: Vec<&str> = labels[1..].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, d.labels, "{name}");
    }
}

#[tokio::test]
async fn many_batches_crash_between_steps_and_retry_gives_one_tx_per_batch() {
    let e = env();
    let (epoch, r) = e.chain.release();
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let h = block_hash_of(r + 1);
    for i in 0..7 {
        for slot in 1..=2 {
            let body = e.msg(slot, slot, epoch, &format!("proj-{i}"), CID_A, h);
            let _ = e.verify(&body).await;
        }
    }
    // Slot cap is 2: only proj-0 and proj-1 per slot are accepted.
    e.chain.mine(10);
    tick::step(&e.p).await.unwrap();
    let f = finalize::run(
        &e.p,
        EpochJob {
            market: e.market,
            epoch,
        },
    )
    .await
    .unwrap();
    assert_eq!(f.batches, 1);

    // Re-finalizing gives identical CIDs (deterministic) and uploads nothing.
    let again = finalize::run(
        &e.p,
        EpochJob {
            market: e.market,
            epoch,
        },
    )
    .await
    .unwrap();
    assert_eq!(again.uploaded, 0);

    // The chain fails once: the job comes back.
    e.chain.fail_next_submits(1);
    let cfg = PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    };
    let first =
        sequencer_embedded::poller::poll_once(&e.anchor_q, &cfg, |ev| anchor::handle(&e.p, ev))
            .await
            .unwrap();
    assert_eq!(first.failed, 1);
    assert_eq!(e.chain.transactions(), 0);

    // A crash after the batch's transaction, before its record: the retry finds the batch on
    // chain (AlreadyAnchored) and sends nothing again.
    let job = EpochJob {
        market: e.market,
        epoch,
    };
    e.state.fail_next(Op::Transition, Table::Batches);
    let crashed = anchor::run(&e.p, job).await;
    assert!(
        crashed.as_ref().is_err_and(|e| e.is_retryable()),
        "{crashed:?}"
    );
    assert_eq!(e.chain.transactions(), 1, "the batch went out");
    // And a crash after endBatchSubmissions, before the epoch's record: the retry finds it ended.
    e.state.fail_next(Op::Transition, Table::Epochs);
    let crashed = anchor::run(&e.p, job).await;
    assert!(
        crashed.as_ref().is_err_and(|e| e.is_retryable()),
        "{crashed:?}"
    );
    assert_eq!(e.metrics.counter(&m::ANCHOR_BATCHES_ALREADY, []), 1);
    assert_eq!(e.chain.transactions(), 2, "batch + endBatchSubmissions");
    let rep = anchor::run(&e.p, job).await.unwrap();
    assert_eq!((rep.sent, rep.already, rep.ended), (0, 0, false));
    assert_eq!(e.metrics.counter(&m::ANCHOR_BATCHES_SENT, []), 1);
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(epochs[0].state, EpochState::Anchored);

    // The queued job, retried, finds the epoch anchored: one transaction per batch in all.
    drain(&e.anchor_q, &cfg, 10, |ev| anchor::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!(e.chain.anchored_batches(epoch).len(), 1);
    assert_eq!(e.chain.transactions(), 2);
}

#[tokio::test]
async fn epoch_without_submissions_is_anchored_without_ending_it_on_chain() {
    let e = env();
    let (empty, _) = e.chain.release();
    e.chain.mine(1);
    assert_eq!(tick::step(&e.p).await.unwrap().opened, vec![empty]);
    e.chain.mine(10);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![empty]);
    // Finalize gives no batch for an epoch nobody submitted to; anchor then used to send
    // endBatchSubmissions, which the contract refuses (NoBatchSubmitted) and the epoch ended
    // ANCHOR_FAILED. Now nothing is sent and the epoch is done.
    e.run_all().await;
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(
        epochs[0].state,
        EpochState::Anchored,
        "{:?}",
        epochs[0].record
    );
    assert_eq!(epochs[0].record.batches, Some(0));
    assert_eq!(epochs[0].record.end_tx, None);
    assert_eq!(epochs[0].record.failure, None);
    assert_eq!(e.chain.transactions(), 0, "nothing sent for an empty epoch");
    assert_eq!(e.metrics.counter(&m::ANCHOR_EPOCHS_EMPTY, []), 1);
    assert_eq!(e.metrics.counter(&m::ANCHOR_EPOCHS_FAILED, []), 0);
    // Nothing went on chain: no close → anchored latency for it.
    assert!(e
        .metrics
        .samples(&m::ANCHOR_CLOSE_TO_ANCHORED, [])
        .is_empty());
    // The chain would have refused the end (what the handler no longer asks for).
    let refused = sequencer_ports::ChainPort::end_batch(e.chain.as_ref(), e.market, empty).await;
    assert!(
        matches!(
            &refused,
            Err(e) if *e.kind() == sequencer_ports::ErrorKind::Reverted
                && e.code() == Some("NoBatchSubmitted")
                && !e.is_retryable()
        ),
        "{refused:?}"
    );
    // A re-run stays a no-op; the next epoch with a submission is anchored and ended as before.
    let job = EpochJob {
        market: e.market,
        epoch: empty,
    };
    anchor::run(&e.p, job).await.unwrap();
    let (next, r) = e.chain.release();
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let body = e.msg(1, 1, next, "p1", CID_A, block_hash_of(r + 1));
    assert_eq!(e.verify(&body).await, Verdict::Accepted);
    e.chain.mine(10);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![next]);
    e.run_all().await;
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(epochs[1].state, EpochState::Anchored);
    assert!(epochs[1].record.end_tx.is_some(), "{:?}", epochs[1].record);
    assert_eq!(e.chain.transactions(), 2, "one batch + endBatchSubmissions");
    assert_eq!(e.metrics.samples(&m::ANCHOR_CLOSE_TO_ANCHORED, []).len(), 1);
}

#[tokio::test]
async fn a_window_change_after_release_keeps_the_epochs_deadline() {
    let e = env();
    // Released under the harness windows (snapshot 5), then the market's window is cut to 1
    // before the tick has seen the release: the tick used to read the market's window then and
    // close the epoch 4 blocks early, turning honest submissions away as late.
    let (epoch, r) = e.chain.release();
    e.chain.set_windows(sequencer_ports::Windows {
        snapshot_blocks: 1,
        batch_blocks: 100,
    });
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(
        epochs[0].record.window_end,
        r + 5,
        "the window stored with the epoch"
    );
    // Past the new window (r + 1 + grace 2), inside the epoch's own: still open, and a
    // submission whose header is block r + 4 is in its window.
    e.chain.mine(3);
    assert!(tick::step(&e.p).await.unwrap().closed.is_empty());
    let body = e.msg(1, 1, epoch, "p1", CID_A, block_hash_of(r + 4));
    assert_eq!(e.verify(&body).await, Verdict::Accepted);
    e.chain.mine(4);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![epoch]);

    // The next release takes the new window.
    let (next, r2) = e.chain.release();
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(epochs[1].record.epoch, next);
    assert_eq!(epochs[1].record.window_end, r2 + 1);
    assert_eq!(e.metrics.counter(&m::TICK_EPOCH_WINDOWS_FALLBACK, []), 0);
    e.chain.mine(1);
    let outside = e.msg(2, 2, next, "p1", CID_A, block_hash_of(r2 + 2));
    assert_eq!(e.verify(&outside).await, rejected("outside_window"));
}

#[tokio::test]
async fn without_per_epoch_windows_on_chain_the_market_window_is_used_and_counted() {
    let e = env();
    e.chain.forget_epoch_windows();
    e.chain.set_windows(sequencer_ports::Windows {
        snapshot_blocks: 7,
        batch_blocks: 100,
    });
    let (_, r) = e.chain.release();
    let (_, r2) = e.chain.release();
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(
        (epochs[0].record.window_end, epochs[1].record.window_end),
        (r + 7, r2 + 7)
    );
    assert_eq!(e.metrics.counter(&m::TICK_EPOCH_WINDOWS_FALLBACK, []), 2);
}

#[tokio::test]
async fn a_revert_no_retry_can_fix_fails_the_epoch_once_and_counts_it() {
    // What the anchor-failed alarm reads: `anchor_epochs_failed_total` for the market, once per
    // epoch however often its job comes back, and no close → anchored latency for it.
    let e = env();
    let (epoch, r) = e.chain.release();
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let body = e.msg(1, 1, epoch, "p1", CID_A, block_hash_of(r + 1));
    assert_eq!(e.verify(&body).await, Verdict::Accepted);
    e.chain.mine(10);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![epoch]);
    e.chain.revert_next_submits(1);
    e.run_all().await;
    let epochs = e.p.records().epochs().await.unwrap();
    assert_eq!(
        epochs[0].state,
        EpochState::Failed,
        "{:?}",
        epochs[0].record
    );
    assert!(epochs[0]
        .record
        .failure
        .as_deref()
        .is_some_and(|f| f.contains("already anchored")));
    assert_eq!(e.chain.transactions(), 0);
    // The job again (a redelivery): the epoch stays failed, counted once.
    let job = EpochJob {
        market: e.market,
        epoch,
    };
    anchor::run(&e.p, job).await.unwrap();
    assert_eq!(e.metrics.counter(&m::ANCHOR_EPOCHS_FAILED, []), 1);
    assert_eq!(e.metrics.counter(&m::ANCHOR_EPOCHS, []), 0);
    assert!(e
        .metrics
        .samples(&m::ANCHOR_CLOSE_TO_ANCHORED, [])
        .is_empty());
}
