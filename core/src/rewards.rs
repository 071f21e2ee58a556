//! Rewards accounting: what each slot did in an epoch and in a day, as the operator pays for it.
//!
//! Per epoch ([`tally_epoch`]), from the accepted submissions and the epoch as finalization cut
//! it: a submission is **eligible** when it is listed in one of the epoch's batches and voted for
//! its project's finalized CID (compared in the canonical spelling, as consensus counts votes);
//! every other accepted submission is **discarded**, with the CID it named and why (outvoted, its
//! project below the minimum, or another submission held its project and slot). Simulation
//! submissions (epoch 0) are liveness only and count for nothing.
//!
//! Per day ([`tally_day`]): the sums over the day's epochs, and whether each slot met the
//! market's `dailySnapshotQuota` (eligible ≥ quota, the contract's own rule in `updateRewards`,
//! which emits `DailyTaskCompletedEvent` for such a slot). Pure: the same inputs give the same
//! tally, so a redelivered job or a rerun after a crash computes exactly what was sent before.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cids::canonical_cid;
use crate::finalize::{Accepted, FinalizedEpoch};

/// Why an accepted submission earned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscardReason {
    /// Its project was finalized with another CID.
    Outvoted,
    /// Its project had fewer accepted submissions than the minimum and was not finalized.
    BelowMinimum,
    /// It is listed in no batch: another submission held its project and slot.
    NotBatched,
}

/// One discarded submission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Discard {
    /// The project.
    pub project: String,
    /// The CID it named, as sent.
    pub cid: String,
    /// The project's finalized CID (`None` when the project was not finalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_cid: Option<String>,
    /// Why.
    pub reason: DiscardReason,
}

/// One slot in one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTally {
    /// Slot id.
    pub slot: u64,
    /// Submissions that voted for their project's finalized CID.
    pub eligible: u64,
    /// The other accepted submissions, in (project, CID) order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discards: Vec<Discard>,
}

impl SlotTally {
    /// Discarded submissions.
    pub fn discarded(&self) -> u64 {
        self.discards.len() as u64
    }
}

/// Every slot with an accepted submission in the epoch, by slot id: eligible and discarded.
pub fn tally_epoch(accepted: &[Accepted], finalized: &FinalizedEpoch) -> Vec<SlotTally> {
    let votes: Vec<Vote> = accepted.iter().map(Vote::of).collect();
    let mut cut = EpochCut::default();
    for b in &finalized.batches {
        cut.add_batch(
            &b.document.pids,
            &b.document.cids,
            &b.document.submission_ids,
        );
    }
    cut.below_minimum = finalized.below_minimum.iter().cloned().collect();
    tally_votes(&votes, &cut)
}

/// What rewards need of one accepted submission (its text is not needed, so finalize keeps
/// these beside the plan without holding the epoch's texts twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The submission id.
    pub submission_id: String,
    /// Its slot.
    pub slot: u64,
    /// Its project.
    pub project: String,
    /// The CID it named, as sent.
    pub cid: String,
    /// A simulation submission (counts for nothing).
    pub simulation: bool,
}

impl Vote {
    /// The vote of an accepted submission.
    pub fn of(a: &Accepted) -> Self {
        let r = &a.submission.request;
        Self {
            submission_id: a.submission_id.clone(),
            slot: r.slot_id,
            project: r.project_id.clone(),
            cid: r.snapshot_cid.clone(),
            simulation: a.submission.is_simulation(),
        }
    }
}

/// How finalization cut an epoch, as rewards read it: each finalized project's CID, the
/// submission ids the batches list, the projects below the minimum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCut {
    /// Finalized CID per project (hashed: an epoch of 10 000 projects looks each vote up).
    pub finalized_cid: HashMap<String, String>,
    /// Submission ids listed in the batches.
    pub listed: HashSet<String>,
    /// Projects below the minimum.
    pub below_minimum: BTreeSet<String>,
}

impl EpochCut {
    /// Adds one batch: its projects, their finalized CIDs (parallel) and the ids it lists.
    pub fn add_batch(&mut self, pids: &[String], cids: &[String], ids: &[String]) {
        for (p, c) in pids.iter().zip(cids) {
            self.finalized_cid.insert(p.clone(), c.clone());
        }
        self.listed.extend(ids.iter().cloned());
    }
}

/// [`tally_epoch`] over the votes and the cut.
pub fn tally_votes(votes: &[Vote], cut: &EpochCut) -> Vec<SlotTally> {
    let mut slots: BTreeMap<u64, SlotTally> = BTreeMap::new();
    // Each distinct CID text made canonical once (parsing a CID costs more than the lookup).
    let mut canonical: HashMap<&str, String> = HashMap::new();
    for v in votes.iter().filter(|v| !v.simulation) {
        let t = slots.entry(v.slot).or_insert_with(|| SlotTally {
            slot: v.slot,
            ..SlotTally::default()
        });
        let winner = cut.finalized_cid.get(&v.project).map(String::as_str);
        let in_batch = cut.listed.contains(&v.submission_id);
        let reason = match winner {
            Some(w)
                if in_batch
                    && canonical
                        .entry(v.cid.as_str())
                        .or_insert_with(|| canonical_cid(&v.cid))
                        == w =>
            {
                t.eligible += 1;
                continue;
            }
            Some(_) if in_batch => DiscardReason::Outvoted,
            _ if cut.below_minimum.contains(&v.project) => DiscardReason::BelowMinimum,
            _ => DiscardReason::NotBatched,
        };
        t.discards.push(Discard {
            project: v.project.clone(),
            cid: v.cid.clone(),
            finalized_cid: winner.map(str::to_string),
            reason,
        });
    }
    let mut out: Vec<SlotTally> = slots.into_values().collect();
    for t in &mut out {
        t.discards.sort();
    }
    out
}

/// One slot over a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySlot {
    /// Slot id.
    pub slot: u64,
    /// Eligible submissions over the day's epochs (what `updateRewards` records).
    pub eligible: u64,
    /// Discarded submissions over the day's epochs.
    pub discarded: u64,
    /// `eligible ≥ dailySnapshotQuota`: the contract emits `DailyTaskCompletedEvent`.
    pub met_quota: bool,
}

/// The day's per-slot sums over its epochs' tallies, by slot id, against `quota`.
pub fn tally_day<'a>(
    epochs: impl IntoIterator<Item = &'a [SlotTally]>,
    quota: u64,
) -> Vec<DaySlot> {
    let mut slots: BTreeMap<u64, DaySlot> = BTreeMap::new();
    for epoch in epochs {
        for t in epoch {
            let d = slots.entry(t.slot).or_insert_with(|| DaySlot {
                slot: t.slot,
                ..DaySlot::default()
            });
            d.eligible = d.eligible.saturating_add(t.eligible);
            d.discarded = d.discarded.saturating_add(t.discarded());
        }
    }
    slots
        .into_values()
        .map(|mut d| {
            d.met_quota = d.eligible >= quota;
            d
        })
        .collect()
}

/// Slots that met the quota: Powerloom's `eligibleNodes`, the divisor of the day's reward pool.
pub fn eligible_nodes(day: &[DaySlot]) -> u64 {
    day.iter().filter(|d| d.met_quota).count() as u64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::finalize::{consensus, finalize_epoch, FinalizeConfig};
    use crate::submission::{Request, SnapshotSubmission};

    const A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
    const B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    const C: &str = "bafkreiaxlemxcp4g3jmhhdmd6tb5ojtzhmm2wwbkwsbxmhvyyhrwivzz4i";

    fn acc(id: &str, project: &str, slot: u64, cid: &str, epoch: u64) -> Accepted {
        Accepted {
            submission_id: id.to_string(),
            submission: SnapshotSubmission {
                request: Request {
                    slot_id: slot,
                    deadline: 1,
                    snapshot_cid: cid.to_string(),
                    epoch_id: epoch,
                    project_id: project.to_string(),
                },
                signature: "00".repeat(65),
                header: format!("0x{}", "ab".repeat(32)),
                data_market: format!("0x{}", "cd".repeat(20)),
                node_version: None,
                protocol_state: None,
            },
        }
    }

    fn run(subs: &[Accepted], min: usize) -> Vec<SlotTally> {
        let cfg = FinalizeConfig {
            min_submissions: min,
            ..FinalizeConfig::default()
        };
        tally_epoch(subs, &finalize_epoch(subs, &cfg).expect("finalize"))
    }

    #[test]
    fn eligible_voted_for_the_finalized_cid_the_rest_is_discarded_with_its_cid() {
        let subs = vec![
            acc("1", "p", 1, A, 9),
            acc("2", "p", 2, A, 9),
            acc("3", "p", 3, B, 9),
            // Slot 3 only ever voted for losers.
            acc("4", "q", 3, C, 9),
            acc("5", "q", 1, A, 9),
            acc("6", "q", 2, A, 9),
            // A lone project under a minimum of 2.
            acc("7", "lone", 1, B, 9),
            // Liveness only.
            acc("8", "p", 4, A, 0),
        ];
        let t = run(&subs, 2);
        assert_eq!(t.iter().map(|s| s.slot).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!((t[0].eligible, t[0].discarded()), (2, 1));
        assert_eq!(
            t[0].discards,
            [Discard {
                project: "lone".into(),
                cid: B.into(),
                finalized_cid: None,
                reason: DiscardReason::BelowMinimum,
            }]
        );
        assert_eq!((t[1].eligible, t[1].discarded()), (2, 0));
        assert_eq!((t[2].eligible, t[2].discarded()), (0, 2));
        assert!(t[2]
            .discards
            .iter()
            .all(|d| d.reason == DiscardReason::Outvoted && d.finalized_cid.as_deref() == Some(A)));
        assert_eq!(
            t[2].discards
                .iter()
                .map(|d| d.cid.as_str())
                .collect::<Vec<_>>(),
            [B, C]
        );
    }

    #[test]
    fn another_spelling_of_the_finalized_cid_is_eligible() {
        let v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
        let v1 = canonical_cid(v0);
        let subs = vec![
            acc("1", "p", 1, v0, 3),
            acc("2", "p", 2, &v1.to_uppercase(), 3),
        ];
        let t = run(&subs, 1);
        assert_eq!(t.iter().map(|s| s.eligible).sum::<u64>(), 2);
    }

    #[test]
    fn a_duplicate_of_a_project_and_slot_is_not_batched() {
        // The state store makes this impossible; finalization keeps the smallest id.
        let subs = vec![acc("1", "p", 1, A, 3), acc("2", "p", 1, A, 3)];
        let t = run(&subs, 1);
        assert_eq!((t[0].eligible, t[0].discarded()), (1, 1));
        assert_eq!(t[0].discards[0].reason, DiscardReason::NotBatched);
    }

    #[test]
    fn the_day_sums_epochs_and_meets_the_quota_at_exactly_the_quota() {
        let e1 = vec![
            SlotTally {
                slot: 1,
                eligible: 2,
                discards: vec![],
            },
            SlotTally {
                slot: 2,
                eligible: 0,
                discards: vec![Discard {
                    project: "p".into(),
                    cid: B.into(),
                    finalized_cid: Some(A.into()),
                    reason: DiscardReason::Outvoted,
                }],
            },
        ];
        let e2 = vec![SlotTally {
            slot: 1,
            eligible: 1,
            discards: vec![],
        }];
        let day = tally_day([e1.as_slice(), e2.as_slice()], 3);
        assert_eq!(
            day,
            [
                DaySlot {
                    slot: 1,
                    eligible: 3,
                    discarded: 0,
                    met_quota: true
                },
                DaySlot {
                    slot: 2,
                    eligible: 0,
                    discarded: 1,
                    met_quota: false
                },
            ]
        );
        assert_eq!(eligible_nodes(&day), 1);
        assert!(!tally_day([e1.as_slice(), e2.as_slice()], 4)[0].met_quota);
        assert!(tally_day(std::iter::empty::<&[SlotTally]>(), 1).is_empty());
    }

    proptest! {
        #[test]
        fn every_accepted_submission_is_counted_once_and_eligible_are_the_winning_votes(
            votes in proptest::collection::vec((0u8..4, 1u64..8, 0usize..3, 0u8..10), 0..60),
            min in 1usize..3,
        ) {
            let cids = [A, B, C];
            let subs: Vec<Accepted> = votes
                .iter()
                .enumerate()
                .map(|(i, (p, slot, c, sim))| {
                    let epoch = if *sim == 0 { 0 } else { 5 };
                    acc(&format!("{i:04}"), &format!("p{p}"), *slot, cids[*c], epoch)
                })
                .collect();
            let t = run(&subs, min);
            let real: Vec<&Accepted> = subs.iter().filter(|a| !a.submission.is_simulation()).collect();
            let counted: u64 = t.iter().map(|s| s.eligible + s.discarded()).sum();
            prop_assert_eq!(counted, real.len() as u64);
            // Eligible = the votes consensus gave each finalized project's winner (after the
            // first-wins rule per project and slot).
            let mut dedup: Vec<Accepted> = real.iter().map(|a| (*a).clone()).collect();
            dedup.sort_by(|a, b| (&a.submission.request.project_id, a.submission.request.slot_id, &a.submission_id)
                .cmp(&(&b.submission.request.project_id, b.submission.request.slot_id, &b.submission_id)));
            dedup.dedup_by(|b, a| a.submission.request.project_id == b.submission.request.project_id
                && a.submission.request.slot_id == b.submission.request.slot_id);
            let winners: u64 = consensus(&dedup)
                .values()
                .filter(|c| c.total >= min)
                .map(|c| c.votes as u64)
                .sum();
            prop_assert_eq!(t.iter().map(|s| s.eligible).sum::<u64>(), winners);
            // Slots in order, each once.
            prop_assert!(t.windows(2).all(|w| w[0].slot < w[1].slot));
            // Input order does not matter.
            let mut rev = subs.clone();
            rev.reverse();
            prop_assert_eq!(run(&rev, min), t);
        }
    }
}
