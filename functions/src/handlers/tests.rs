//! The handlers end to end on the embedded adapters and an in-memory chain: every rejection
//! reason, redelivery, poison messages, the close → finalize → anchor chain, re-runs and
//! injected faults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sequencer_core::devkeys;
use sequencer_core::eip712::{address_of, Domain};
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::{Address, B256};
use uuid::Uuid;

use super::{anchor, finalize, tick, verify};

use crate::poller::{drain, PollerConfig};
use crate::ports::{ContentStore, OutMessage, Queue};
use crate::records::{state, EpochJob};
use crate::testkit::{block_hash_of, signed_message, Harness};

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
    Verdict::Rejected(reason.to_string())
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
    assert_eq!(
        e.verify(&e.msg(3, 4, epoch, "p4", CID_A, h)).await,
        rejected("not_slot_snapshotter")
    );
    assert_eq!(
        e.verify(&e.msg(99, 1, epoch, "p4", CID_A, h)).await,
        rejected("unknown_slot")
    );
    assert_eq!(
        e.verify(&e.msg(2, 2, epoch, "p5", CID_A, block_hash_of(r - 1)))
            .await,
        rejected("outside_window")
    );
    assert_eq!(
        e.verify(&e.msg(2, 2, epoch, "p5", CID_A, B256::repeat_byte(7)))
            .await,
        rejected("unknown_header")
    );
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
    assert_eq!(e.verify(&forged).await, rejected("not_slot_snapshotter"));
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
    // Window ends at r + 5, grace 2: closes once the head passes r + 7.
    e.chain.mine(6);
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
    let epochs = tick::epochs(&e.p).await.unwrap();
    assert_eq!(epochs[0].1, state::ANCHORED);
    let rec = &epochs[0].2;
    let counts = rec.counts.clone().unwrap();
    assert_eq!(counts.accepted, 6);
    for reason in [
        "slot_epoch_cap",
        "duplicate",
        "not_slot_snapshotter",
        "outside_window",
        "unknown_header",
        "bad_snapshot_cid",
        "wrong_data_market",
        "flagged_signer",
        "unknown_slot",
    ] {
        assert!(
            counts.rejected.get(reason).copied().unwrap_or(0) >= 1,
            "{reason}: {counts:?}"
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

    // The chain fails once: the job comes back and the retry sends each batch once.
    e.chain.fail_next_submits(1);
    let cfg = PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    };
    let first = crate::poller::poll_once(&e.anchor_q, &cfg, |ev| anchor::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!(first.failed, 1);
    drain(&e.anchor_q, &cfg, 10, |ev| anchor::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!(e.chain.anchored_batches(epoch).len(), 1);
    assert_eq!(e.chain.transactions(), 2);
    // Lost record (a crash after the transaction, before the record): the chain backstop says
    // AlreadyAnchored and nothing is sent.
    let st = &e.p.ports.state;
    let key = crate::records::batch_key(&e.market, epoch, 1);
    let mut item = st
        .get(crate::ports::Table::Batches, &key)
        .await
        .unwrap()
        .unwrap();
    item.state = Some(state::PENDING.into());
    st.put(crate::ports::Table::Batches, &key, &item)
        .await
        .unwrap();
    let ekey = crate::records::epoch_key(&e.market, epoch);
    let mut eitem = st
        .get(crate::ports::Table::Epochs, &ekey)
        .await
        .unwrap()
        .unwrap();
    eitem.state = Some(state::FINALIZED.into());
    st.put(crate::ports::Table::Epochs, &ekey, &eitem)
        .await
        .unwrap();
    let rep = anchor::run(
        &e.p,
        EpochJob {
            market: e.market,
            epoch,
        },
    )
    .await
    .unwrap();
    assert_eq!((rep.sent, rep.already), (0, 1));
    assert_eq!(e.chain.transactions(), 2);
}
