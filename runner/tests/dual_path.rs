//! One submission sent on both paths, as the newest collectors do by default, through today's
//! verify handler: the `/collect` copy (the client's UUID) and the gossip copy (its content id,
//! made by core's `gossip::queue_body` exactly as the ingress makes it). The first one verified
//! is the submission; the other is rejected `duplicate` before the per-slot cap is touched, so a
//! dual-path collector keeps its cap of 2 for two different projects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sequencer_core::collect::UUID_LEN;
use sequencer_core::gossip::queue_body;
use sequencer_handlers::records::RejectReason;
use sequencer_handlers::tick;
use sequencer_handlers::verify::{self, Verdict};
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;

const CID: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

/// The `/collect` body and the gossip body of one signed submission.
fn both_copies(
    h: &Harness,
    slot: u64,
    epoch: u64,
    project: &str,
    header: sequencer_core::B256,
) -> (String, String) {
    let (collect, _) = signed_message(
        &h.domain,
        h.market,
        &Uuid::new_v4(),
        slot,
        slot,
        epoch,
        project,
        CID,
        header,
    );
    let gossip = queue_body(&collect[UUID_LEN..]).expect("gossip body");
    (collect, String::from_utf8(gossip.raw).expect("utf-8"))
}

#[tokio::test]
async fn a_submission_on_both_paths_is_one_submission_before_the_per_slot_cap() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    assert_eq!(tick::step(&h.p).await.unwrap().opened, vec![epoch]);
    let header = block_hash_of(r + 1);
    let v = |body: String| {
        let p = &h.p;
        async move { verify::verify_body(p, &body).await.unwrap() }
    };
    // Slot 1, two projects, each on both paths: the gossip copy first for one, second for the other.
    for (project, gossip_first) in [("p1", true), ("p2", false)] {
        let (collect, gossip) = both_copies(&h, 1, epoch, project, header);
        let (first, second) = if gossip_first {
            (gossip.clone(), collect)
        } else {
            (collect, gossip.clone())
        };
        assert_eq!(
            v(first).await,
            Verdict::Accepted,
            "{project}: the first copy is the submission"
        );
        assert_eq!(
            v(second).await,
            Verdict::Rejected(RejectReason::from_code("duplicate")),
            "{project}: the other copy is a duplicate"
        );
        // The gossip copy arriving again (another gossip message, same bytes): a redelivery.
        assert_eq!(v(gossip).await, Verdict::Redelivered, "{project}");
    }
    // Both projects were accepted, so the duplicates did not spend the cap; a third project
    // meets the cap of 2, which therefore holds exactly the two.
    let (third, _) = both_copies(&h, 1, epoch, "p3", header);
    assert_eq!(
        v(third).await,
        Verdict::Rejected(RejectReason::from_code("slot_epoch_cap"))
    );
    assert_eq!(
        h.metrics
            .counter(&sequencer_handlers::metrics::VERIFY_ACCEPTED, []),
        2
    );
}

/// A simulation submission (epoch 0, liveness) is not kept once per (project, slot): verify
/// records every simulation id, so the same simulation on both paths gets two simulation
/// receipts and counts twice in the epoch's `simulations`. Fails today; see the gossipsub report.
#[tokio::test]
#[ignore = "verify counts a dual-path simulation submission twice (no first-wins for epoch 0)"]
async fn a_simulation_on_both_paths_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (collect, gossip) = both_copies(&h, 1, 0, "p1", block_hash_of(1));
    assert_eq!(
        verify::verify_body(&h.p, &collect).await.unwrap(),
        Verdict::Simulation
    );
    assert_ne!(
        verify::verify_body(&h.p, &gossip).await.unwrap(),
        Verdict::Simulation,
        "the gossip copy of the same simulation counted again"
    );
}
