//! The defects the simulator finds in today's handlers, each with the invariant it breaks, a
//! needle that identifies it in the violation's text, and a seed that shows it.
//!
//! CI runs seeds of every preset; a violation passes only when it matches a defect here that is
//! not fixed yet. Whoever fixes one sets `fixed: true`: from then on any seed that shows it fails
//! CI, and `every_defect_is_shown_by_its_seed_until_fixed` (tests/defects.rs) asserts its seed
//! no longer shows it. Reverting the fix makes both fail again.
//!
//! A seed is where the defect showed when the table was written; any change to the handlers or
//! the simulator moves interleavings, so the test also looks through the first seeds of the
//! preset before it calls an open defect gone, and says which seed to write instead.
//! `cargo run --release -p sequencer-simulation --example dst -- --defects --seeds 500` finds
//! each one's first seed again.

use crate::invariants::Violation;

/// One defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defect {
    /// Short id.
    pub id: &'static str,
    /// Where it is filed (`16.1` = issue 16 item 1; `new` = not named there).
    pub item: &'static str,
    /// What goes wrong, in one line.
    pub title: &'static str,
    /// The invariant it breaks.
    pub invariant: &'static str,
    /// A substring of the violation's text (`""`: any violation of the invariant).
    pub needle: &'static str,
    /// A preset that shows it.
    pub scenario: &'static str,
    /// A seed of the preset that showed it.
    pub seed: u64,
    /// Fixed: any run showing it fails.
    pub fixed: bool,
}

impl Defect {
    /// Whether `v` is this defect.
    pub fn matches(&self, v: &Violation) -> bool {
        v.invariant == self.invariant
            && (self.needle.is_empty() || v.to_string().contains(self.needle))
    }
}

/// Every defect found, in issue order.
pub const DEFECTS: &[Defect] = &[
    Defect {
        id: "accepted-not-batched",
        item: "16.1",
        title: "verify reads the epoch OPEN, is slow, and writes ACCEPTED after the tick closed it and finalize read the set: an `accepted` receipt, never batched",
        invariant: "accepted_not_batched",
        needle: "",
        scenario: "race",
        seed: 9,
        fixed: true,
    },
    Defect {
        id: "late-over-accepted",
        item: "16.1",
        title: "a verify crashes after ACCEPTED and before the receipt; its redelivery after the close writes `late`: batched, but the receipt (and the proof API) say rejected",
        invariant: "batched_but_rejected",
        needle: "rejected `late`",
        scenario: "rough",
        seed: 8,
        fixed: true,
    },
    Defect {
        id: "finalize-diverges",
        item: "16.1",
        title: "a finalize re-run (or the second finalizer) sees another accepted set: `Invariant` for ever, job dead-lettered, epoch never anchored",
        invariant: "epoch_stuck",
        needle: "invariant violated",
        scenario: "race",
        seed: 148,
        fixed: true,
    },
    Defect {
        id: "mixed-batches",
        item: "16.1",
        title: "two finalizers of one epoch see different accepted sets and their batch records mix (`put_if_absent`'s result ignored): the anchored batches are no finalization of anything, roots broken",
        invariant: "chain_matches_documents",
        needle: "",
        scenario: "finalizers",
        seed: 56,
        fixed: true,
    },
    Defect {
        id: "mixed-batches-unprovable",
        item: "16.1",
        title: "after mixed batch records are anchored, inclusion proofs of anchored submissions no longer verify",
        invariant: "not_provable",
        needle: "",
        scenario: "finalizers",
        seed: 56,
        fixed: true,
    },
    Defect {
        id: "mixed-batches-anchor-failed",
        item: "16.1",
        title: "two finalizers' batch records mix and a project lands in two batches: the contract refuses the second (`ProjectAlreadySubmitted`) and the epoch is ANCHOR_FAILED for good",
        invariant: "epoch_stuck",
        needle: "already submitted for epoch",
        scenario: "finalizers",
        seed: 1177,
        fixed: true,
    },
    Defect {
        id: "late-after-not-ready",
        item: "16.2",
        title: "an epoch released but not yet recorded by the tick gives NotReady; the message returns after the 180 s visibility timeout, by then the epoch is closed: `late`",
        invariant: "honest_late",
        needle: "",
        scenario: "calm",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "late-after-longest-wait",
        item: "16.2",
        title: "an on-time submission whose verification fails twice (a crashed invocation, an injected store fault) comes back after two 180 s visibility timeouts, past the close watermark's longest wait (240 s): `late` (counted and alarmed in a deployment)",
        invariant: "honest_late",
        needle: "",
        scenario: "rough",
        seed: 16,
        fixed: false,
    },
    Defect {
        id: "not-yet-vs-duplicate-delivery",
        item: "16.2",
        title: "two deliveries of one message at once: one hears \"not yet\" from a lagging node and writes a final `unknown_header` receipt, the other accepts the claim: batched while its receipt says rejected",
        invariant: "batched_but_rejected",
        needle: "rejected `unknown_header`",
        scenario: "everything",
        seed: 18,
        fixed: true,
    },
    Defect {
        id: "not-yet-final",
        item: "16.2",
        title: "a header block the RPC node has not seen yet becomes a final `unknown_header` (or a release not yet seen a final `epoch_not_released`)",
        invariant: "honest_not_yet_final",
        needle: "",
        scenario: "rough",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "not-ready-dead-lettered",
        item: "16.2",
        title: "NotReady five times (the tick has not recorded the epoch) sends an honest on-time submission to the DLQ",
        invariant: "honest_dead_lettered",
        needle: "",
        scenario: "race",
        seed: 14,
        fixed: true,
    },
    Defect {
        id: "big-project",
        item: "16.3",
        title: "one project over 256 KiB of submissions: the node chunks the document, the adapter refuses its CID, finalize fails for ever, the whole epoch is never anchored",
        invariant: "epoch_stuck",
        needle: "content store returned CID",
        scenario: "big-project",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "hostile-cost",
        item: "16.4",
        title: "hostile messages cost state writes and chain calls (random slots, future epochs, random headers; NotReady ones five deliveries)",
        invariant: "hostile_cost",
        needle: "",
        scenario: "hostile",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "future-epoch-records",
        item: "16.4",
        title: "messages naming far-future epochs get rejection receipts written into those epochs",
        invariant: "future_epoch_records",
        needle: "",
        scenario: "hostile",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "anchor-failed-funding",
        item: "16.5",
        title: "`insufficient funds` marks every epoch anchored during the outage ANCHOR_FAILED for good",
        invariant: "epoch_stuck",
        needle: "insufficient funds",
        scenario: "operational",
        seed: 1,
        // The chain adapter retries funds refusals and anchor backs off from a minute (`ANCHOR_OPERATIONAL_REDELIVERY`, about 70 minutes before ANCHOR_FAILED, then `seqctl epochs reanchor`); the chain model now answers as the adapter does.
        fixed: true,
    },
    Defect {
        id: "anchor-failed-nonce",
        item: "16.5",
        title: "`nonce too low` marks an epoch ANCHOR_FAILED for good",
        invariant: "epoch_stuck",
        needle: "nonce too low",
        scenario: "operational",
        seed: 6,
        // The chain adapter retries nonce refusals (the model now answers as it does); anchor backs off from a minute.
        fixed: true,
    },
    Defect {
        id: "poison-anchor-job",
        item: "16.5",
        title: "a poison anchor job fails every later job of its FIFO batch: they wait 10 × 660 s and go to the DLQ with it",
        invariant: "epoch_stuck",
        needle: "an earlier job of the group failed",
        scenario: "everything",
        seed: 1,
        // Each job of an anchor batch runs on its own (handlers/src/anchor.rs): no job fails
        // for its neighbour any more.
        fixed: true,
    },
    Defect {
        id: "poison-anchor-job-delay",
        item: "16.5",
        title: "a poison anchor job holds its FIFO group: later epochs are anchored hours late",
        invariant: "epoch_slow",
        needle: "an earlier job of the group failed",
        scenario: "poison",
        seed: 1,
        // Each job runs on its own and a failed one is given back after seconds, not the 660 s visibility timeout, so the group behind it is not held for hours.
        fixed: true,
    },
    Defect {
        id: "retention-apart",
        item: "16.6",
        title: "epochs and receipts expire, submissions and batches never do: the proof API answers unknown_epoch for anchored submissions",
        invariant: "proof_api",
        needle: "expired apart",
        scenario: "retention",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "retention-ttl",
        item: "16.6",
        title: "counters written without the TTL the table claims; submissions and batches never expire",
        invariant: "retention",
        needle: "",
        scenario: "calm",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "retry-after-expiry",
        item: "16.6",
        title: "a finalize job retried after its 30-minute visibility timeout finds the epoch's record expired (a retention shorter than the retry horizon): `not recorded` for ever, the epoch never finalized",
        invariant: "epoch_stuck",
        needle: "is not recorded",
        scenario: "retention",
        seed: 53,
        fixed: true,
    },
    Defect {
        id: "old-replay-dead-lettered",
        item: "16.6",
        title: "an expired epoch's signed submission replayed under a fresh id costs chain reads on five deliveries and lands in the DLQ",
        invariant: "dead_lettered_message",
        needle: "OldReplay",
        scenario: "retention",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "not-ready-dead-lettered-any",
        item: "16.2",
        title: "any well-formed message whose epoch the tick has not recorded (a stalled or failing tick) fails NotReady on five deliveries and is dead-lettered instead of answered",
        invariant: "dead_lettered_message",
        needle: "",
        scenario: "everything",
        seed: 24,
        fixed: true,
    },
    Defect {
        id: "duplicate-behind-late",
        item: "16.2",
        title: "an honest resend of one (project, slot) under another id is `duplicate` of a first that a slow verify found `late` (acceptance is conditional on the epoch open since 16.1; on time is not yet judged at arrival)",
        invariant: "on_time_not_batched",
        needle: "rejected `duplicate`",
        scenario: "finalizers",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "duplicate-ids",
        item: "16.7",
        title: "two bodies under one submission id, verified at once, are both accepted and batched",
        invariant: "duplicate_ids",
        needle: "",
        scenario: "hostile",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "duplicate-ids-cap",
        item: "16.7",
        title: "the per-slot cap counts submission ids, so two bodies under one id count once: a slot gets three submissions batched",
        invariant: "slot_cap",
        needle: "",
        scenario: "hostile",
        seed: 1,
        fixed: true,
    },
    Defect {
        id: "duplicate-id-rejected-in-batch",
        item: "16.7",
        title: "two bodies under one id: one is batched while the id's receipt (the other's, written first) says rejected",
        invariant: "batched_but_rejected",
        needle: "Hostile(DuplicateId)",
        scenario: "hostile",
        seed: 13,
        fixed: true,
    },
    Defect {
        id: "batched-without-receipt",
        item: "16.7",
        title: "a verify crashes between ACCEPTED and the receipt and the message is then dead-lettered: batched, but the proof API answers unknown_submission",
        invariant: "batched_without_receipt",
        needle: "",
        scenario: "race",
        seed: 1237,
        fixed: true,
    },
    Defect {
        id: "finalize-vs-tick-close",
        item: "new",
        title: "finalize reads the epoch CLOSING, the tick then moves it CLOSING → CLOSED, finalize's CLOSING → FINALIZED is refused: NotReady, and the job waits the 30-minute visibility timeout (no fault needed)",
        invariant: "epoch_slow",
        needle: "changed during finalization",
        scenario: "quiet",
        seed: 85,
        fixed: true,
    },
    Defect {
        id: "visibility-delay-finalize",
        item: "new",
        title: "a finalize job whose queue call fails before the handler holds it (a lost receive answer, a failed first ChangeMessageVisibility, then a crash) waits the whole visibility timeout, 6 × 300 s = 30 min; the handler's own failures and crashes after the hold come back within a minute",
        invariant: "epoch_slow",
        needle: "longest: finalizing",
        scenario: "race",
        seed: 7,
        // Open: bounded only by the queue's visibility timeout (a shorter one in the Terraform
        // module, now safe since handlers renew their hold, would close it).
        fixed: false,
    },
    Defect {
        id: "visibility-delay-anchor",
        item: "new",
        title: "one transient failure in anchor delays its epoch (and every later one: FIFO) by the visibility timeout, 2 × 330 s = 11 min",
        invariant: "epoch_slow",
        needle: "longest: anchoring",
        scenario: "rough",
        seed: 1,
        // Anchor holds its batch's messages 60 s at a time and gives a failed job back after 5 s, growing (`anchor::ANCHOR_REDELIVERY`): a crash or a transient failure unblocks the FIFO group within a minute.
        fixed: true,
    },
    Defect {
        id: "tick-stall",
        item: "new",
        title: "a tick step does up to 64 sequential block-hash RPCs before it records releases, and saves its cursor last: with a slow RPC every step outlasts the Lambda timeout, nothing is saved, no epoch is recorded or closed",
        invariant: "epoch_closed_late",
        needle: "timed out",
        scenario: "race",
        seed: 2,
        // Releases and closes come first, block hashes 8 at a time and only while the run's deadline allows, the cursor saved after each part (handlers/src/tick.rs `step_until`).
        fixed: true,
    },
    Defect {
        id: "tick-error-ends-run",
        item: "new",
        title: "one failed tick step ends the whole run (`tick::run` returns the error; the schedule does not retry): releases are recorded and epochs closed up to a minute late",
        invariant: "epoch_closed_late",
        needle: "tick invocation failed",
        scenario: "rough",
        seed: 3,
        // A failed step is counted (`tick_step_failures_total{part}`), logged, followed by a short pause, and the run goes on to its budget (handlers/src/tick.rs `run`).
        fixed: true,
    },
    Defect {
        id: "tick-stall-slow",
        item: "new",
        title: "an epoch the stalled tick closes late is anchored late",
        invariant: "epoch_slow",
        needle: "longest: closing",
        scenario: "race",
        seed: 2,
        // Follows from `tick-stall`'s fix.
        fixed: true,
    },
];

/// The open defect `v` shows, if any: a violation passes CI only when this is `Some`.
pub fn known(v: &Violation) -> Option<&'static Defect> {
    known_in(DEFECTS, v)
}

/// The open defect of `table` that `v` shows, if any.
pub fn known_in<'a>(table: &'a [Defect], v: &Violation) -> Option<&'a Defect> {
    table.iter().find(|d| !d.fixed && d.matches(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, PRESETS};

    fn violation(invariant: &'static str, what: &str) -> Violation {
        Violation {
            invariant,
            epoch: Some(3),
            subject: None,
            what: what.to_string(),
            why: vec!["evidence".into()],
        }
    }

    /// The rule CI applies to every violation of every seed.
    #[test]
    fn an_open_defect_passes_a_new_violation_fails_and_a_fixed_one_fails_again() {
        let d = DEFECTS
            .iter()
            .find(|d| !d.fixed && !d.needle.is_empty())
            .expect("an open defect with a needle");
        let shown = violation(d.invariant, &format!("at the end; failure: {}", d.needle));
        assert_eq!(known(&shown).map(|d| d.id), Some(d.id), "open: passes");
        // The same invariant without the defect's needle is another defect: NEW.
        let other = violation(d.invariant, "CLOSED at the end, for another reason");
        assert!(known_in(&[*d], &other).is_none(), "needle decides");
        // An invariant no defect lists: NEW.
        assert!(known(&violation("one_tx_per_batch", "2 transactions")).is_none());
        // Marked fixed, the same violation fails again.
        let fixed = Defect { fixed: true, ..*d };
        assert!(known_in(&[fixed], &shown).is_none(), "fixed: fails");
    }

    #[test]
    fn every_defect_names_a_preset_and_an_invariant_and_ids_are_unique() {
        let mut ids = std::collections::BTreeSet::new();
        for d in DEFECTS {
            assert!(ids.insert(d.id), "{} listed twice", d.id);
            assert!(
                PRESETS.contains(&d.scenario),
                "{}: preset {}",
                d.id,
                d.scenario
            );
            assert!(Scenario::named(d.scenario).is_some(), "{}", d.id);
            assert!(
                crate::invariants::INVARIANTS.contains(&d.invariant),
                "{}: no invariant {}",
                d.id,
                d.invariant
            );
        }
    }
}
