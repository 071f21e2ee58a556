//! Epochs and days of a data market, as the epoch manager plans them and the contract counts
//! them (`docs/protocol.md` §9). Pure: no I/O, no clock.
//!
//! - [`plan`]: which epochs are due at a source head, and what to release or skip now. An epoch
//!   is `epochSize` consecutive blocks `[begin, end]` of the market's *source chain*; epoch E+1
//!   begins at `end(E) + 1` whatever the block times and whenever E was released, so releases
//!   never drift. Epoch E is **due** iff the source head is at least `end + finality_offset`.
//! - [`CatchUp`]: how a manager that fell behind catches up (below).
//! - [`DayClock`]: the contract's day, which rolls over inside `releaseEpoch` once
//!   `epochsInADay` epochs of the current day were released (`dayCounter` + 1,
//!   `DayStartedEvent`); skipped blocks get no epoch id and so never count toward a day.
//!
//! # Catching up
//!
//! A manager that was down finds many epochs due at once.
//!
//! - [`CatchUp::InOrder`] (default) releases every missed epoch, oldest first, at most
//!   `max_per_sec` releases a second. For snapshotters: every epoch exists on chain and each gets
//!   its full submission window counted from its own release block, but the epochs are old: their
//!   blocks are history (snapshotters must still be able to read them), they arrive in a burst
//!   paced by `max_per_sec`, and a snapshotter that only follows "the latest epoch" skips them
//!   anyway. The default because nothing is lost and the choice stays reversible: an operator
//!   who prefers the gap can still skip later, while a skipped range can never be released.
//! - [`CatchUp::SkipToHead`] records a skip on chain (`skipEpochs`, event `EpochsSkipped`) over
//!   all missed epochs but the newest, then releases the newest. For snapshotters: the skipped
//!   epochs never exist on chain (no id, no window, nothing to submit or to be rewarded for); the
//!   event tells consumers the gap is deliberate, not lost data. Before the market's first
//!   release there is nothing to skip on chain: the first epoch simply begins on the grid at the
//!   newest due epoch.

use serde::{Deserialize, Serialize};

/// One epoch: blocks `[begin, end]` of the source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRange {
    /// First block.
    pub begin: u64,
    /// Last block.
    pub end: u64,
}

impl EpochRange {
    /// The epoch of `size` blocks starting at `begin`.
    pub fn starting_at(begin: u64, size: u64) -> Result<Self, PlanError> {
        if size == 0 {
            return Err(PlanError::ZeroEpochSize);
        }
        let end = begin
            .checked_add(size - 1)
            .ok_or(PlanError::Overflow { begin })?;
        Ok(Self { begin, end })
    }

    /// The source block at which this epoch is due: `end + finality_offset`.
    pub fn due_at(&self, finality_offset: u64) -> Result<u64, PlanError> {
        self.end
            .checked_add(finality_offset)
            .ok_or(PlanError::Overflow { begin: self.begin })
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The market's epoch size is 0.
    #[error("epoch size is 0")]
    ZeroEpochSize,
    /// Block arithmetic past `u64::MAX`.
    #[error("block numbers overflow u64 from begin {begin}")]
    Overflow {
        /// Where it happened.
        begin: u64,
    },
}

/// How a manager that fell behind catches up. See the module docs for what each means for
/// snapshotters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum CatchUp {
    /// Release every missed epoch in order, at most `max_per_sec` releases a second (also the
    /// bound in normal operation, where one epoch is due at a time). Must exceed the source
    /// chain's epoch rate (1 / (epochSize × block time)) or the backlog never drains.
    InOrder {
        /// Releases per second, > 0.
        max_per_sec: u32,
    },
    /// When more than `max_backlog` epochs are due, skip all but the newest on chain
    /// (`skipEpochs`) and release the newest; a backlog up to `max_backlog` is released in order.
    SkipToHead {
        /// Largest backlog released in order, ≥ 1 (1: skip as soon as two epochs are due).
        max_backlog: u64,
    },
}

impl CatchUp {
    /// Default release rate of [`CatchUp::InOrder`]: 5 a second drains a 50-epoch backlog in
    /// about 10 s, far above any real market's epoch rate (Ethereum: 12 s blocks × 10 = one epoch
    /// per 2 minutes), while one release (a transaction and its receipt) per 200 ms keeps a
    /// burst of windows opening at a pace a sequencer finalizes comfortably.
    pub const DEFAULT_MAX_PER_SEC: u32 = 5;
}

impl Default for CatchUp {
    fn default() -> Self {
        Self::InOrder {
            max_per_sec: Self::DEFAULT_MAX_PER_SEC,
        }
    }
}

/// A skip of whole epochs: blocks `[from_begin, to_begin − 1]` get no epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// First skipped block (the next begin before the skip).
    pub from_begin: u64,
    /// The next begin after the skip.
    pub to_begin: u64,
    /// Number of epochs skipped.
    pub epochs: u64,
}

/// What to do at one source head ([`plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Epochs due at this head, counted from the next begin (before any skip).
    pub due: u64,
    /// Under [`CatchUp::SkipToHead`] with a backlog: skip these epochs first.
    pub skip: Option<Skip>,
    /// The epoch to release now (after the skip, if any); `None` when nothing is due.
    pub release: Option<EpochRange>,
    /// The source block at which the first epoch not due yet becomes due.
    pub next_due_at: u64,
}

/// Decides what is due: with the contract's next `begin`, the market's `epoch_size`, the source
/// chain's head and the finality offset, epoch `[b, b + size − 1]` is due iff
/// `source_head ≥ b + size − 1 + finality_offset`. Epochs are counted on the grid
/// `next_begin + k·size` (no drift). Pure: no I/O.
pub fn plan(
    next_begin: u64,
    epoch_size: u64,
    source_head: u64,
    finality_offset: u64,
    catch_up: CatchUp,
) -> Result<Plan, PlanError> {
    let first = EpochRange::starting_at(next_begin, epoch_size)?;
    let first_due = first.due_at(finality_offset)?;
    if source_head < first_due {
        return Ok(Plan {
            due: 0,
            skip: None,
            release: None,
            next_due_at: first_due,
        });
    }
    let due = (source_head - first_due) / epoch_size + 1;
    // first_due + due·size > source_head ≥ first_due, so this fits when the head does, except
    // at the very top of u64.
    let next_due_at = first_due
        .checked_add(due.saturating_mul(epoch_size))
        .ok_or(PlanError::Overflow { begin: next_begin })?;
    let (skip, release) = match catch_up {
        CatchUp::SkipToHead { max_backlog } if due > max_backlog.max(1) => {
            let newest_begin = next_begin + (due - 1) * epoch_size;
            (
                Some(Skip {
                    from_begin: next_begin,
                    to_begin: newest_begin,
                    epochs: due - 1,
                }),
                EpochRange::starting_at(newest_begin, epoch_size)?,
            )
        }
        _ => (None, first),
    };
    Ok(Plan {
        due,
        skip,
        release: Some(release),
        next_due_at,
    })
}

/// A market's day as the contract keeps it (`dayCounter`, the first epoch of the day, and
/// `epochsInADay`), and the rule by which a release rolls it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayClock {
    /// The current day, from 1.
    pub day: u64,
    /// Id of the current day's first epoch.
    pub day_start_epoch: u64,
    /// Epochs per day (≥ 1 on a valid market).
    pub epochs_in_a_day: u64,
}

impl DayClock {
    /// A newly registered market: day 1 starts with epoch 1.
    pub fn new(epochs_in_a_day: u64) -> Self {
        Self {
            day: 1,
            day_start_epoch: 1,
            epochs_in_a_day,
        }
    }

    /// Whether releasing epoch `id` starts a new day: the contract's
    /// `id >= dayStartEpochId + epochsInADay`.
    pub fn starts_a_day(&self, id: u64) -> bool {
        u128::from(id) >= u128::from(self.day_start_epoch) + u128::from(self.epochs_in_a_day)
    }

    /// Releases epoch `id` (the next one): rolls the day over when it is due, as the contract
    /// does inside `releaseEpoch`. Returns the day that started, if one did.
    pub fn release(&mut self, id: u64) -> Option<u64> {
        if !self.starts_a_day(id) {
            return None;
        }
        self.day += 1;
        self.day_start_epoch = id;
        Some(self.day)
    }

    /// The last epoch of the current day while the settings stay as they are.
    pub fn last_epoch_of_day(&self) -> u64 {
        self.day_start_epoch
            .saturating_add(self.epochs_in_a_day.max(1))
            .saturating_sub(1)
    }
}

/// The day of epoch `id` on a market whose `epochsInADay` never changed: `(id − 1) / n + 1`.
pub fn day_of(id: u64, epochs_in_a_day: u64) -> u64 {
    id.saturating_sub(1) / epochs_in_a_day.max(1) + 1
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const IN_ORDER: CatchUp = CatchUp::InOrder { max_per_sec: 5 };

    #[test]
    fn due_exactly_at_end_plus_offset() {
        // Epoch [11, 20], offset 2: due at source head 22, not 21.
        let p = plan(11, 10, 21, 2, IN_ORDER).expect("plan");
        assert_eq!((p.due, p.release, p.next_due_at), (0, None, 22));
        let p = plan(11, 10, 22, 2, IN_ORDER).expect("plan");
        assert_eq!(p.due, 1);
        assert_eq!(p.release, Some(EpochRange { begin: 11, end: 20 }));
        assert_eq!(p.next_due_at, 32);
        // Offset 0: due once its last block exists.
        assert_eq!(plan(1, 10, 10, 0, IN_ORDER).expect("plan").due, 1);
        assert_eq!(plan(1, 10, 9, 0, IN_ORDER).expect("plan").due, 0);
    }

    #[test]
    fn backlog_in_order_and_skip_to_head() {
        // Down from block 1: head 100, size 10, offset 2: epochs ending 10..=90 are due (9);
        // [91, 100] is due at 102.
        let p = plan(1, 10, 100, 2, IN_ORDER).expect("plan");
        assert_eq!((p.due, p.next_due_at), (9, 102));
        assert_eq!(p.skip, None);
        assert_eq!(p.release, Some(EpochRange { begin: 1, end: 10 }));
        let skip = CatchUp::SkipToHead { max_backlog: 1 };
        let p = plan(1, 10, 100, 2, skip).expect("plan");
        assert_eq!(
            p.skip,
            Some(Skip {
                from_begin: 1,
                to_begin: 81,
                epochs: 8
            })
        );
        assert_eq!(p.release, Some(EpochRange { begin: 81, end: 90 }));
        // A backlog within max_backlog is released in order.
        let p = plan(61, 10, 100, 2, CatchUp::SkipToHead { max_backlog: 3 }).expect("plan");
        assert_eq!((p.due, p.skip), (3, None));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(plan(1, 0, 100, 2, IN_ORDER), Err(PlanError::ZeroEpochSize));
        assert!(matches!(
            plan(u64::MAX - 3, 10, u64::MAX, 2, IN_ORDER),
            Err(PlanError::Overflow { .. })
        ));
        assert!(matches!(
            plan(u64::MAX - 20, 10, u64::MAX, 2, IN_ORDER),
            Err(PlanError::Overflow { .. }) | Ok(_)
        ));
    }

    #[test]
    fn the_day_rolls_over_at_epochs_in_a_day() {
        let mut c = DayClock::new(3);
        let started: Vec<Option<u64>> = (1..=7).map(|id| c.release(id)).collect();
        assert_eq!(
            started,
            [None, None, None, Some(2), None, None, Some(3)],
            "epochs 1-3 are day 1, 4-6 day 2, 7 starts day 3"
        );
        assert_eq!((c.day, c.day_start_epoch, c.last_epoch_of_day()), (3, 7, 9));
        for id in 1..=9 {
            assert_eq!(day_of(id, 3), (id - 1) / 3 + 1);
        }
        // One epoch a day: every release after the first starts one.
        let mut c = DayClock::new(1);
        assert_eq!(c.release(1), None);
        assert_eq!(c.release(2), Some(2));
        // Near the top of u64 nothing overflows.
        let c = DayClock {
            day: 5,
            day_start_epoch: u64::MAX - 1,
            epochs_in_a_day: 10,
        };
        assert!(!c.starts_a_day(u64::MAX));
        assert_eq!(c.last_epoch_of_day(), u64::MAX - 1);
    }

    /// Simulates a manager polling an advancing source head: applies every plan (releases and
    /// skips) and returns (epoch, head at which it was released).
    fn simulate(
        first_begin: u64,
        size: u64,
        offset: u64,
        catch_up: CatchUp,
        heads: &[u64],
    ) -> (Vec<(EpochRange, u64)>, Vec<Skip>) {
        let mut next = first_begin;
        let mut out = Vec::new();
        let mut skips = Vec::new();
        for &head in heads {
            loop {
                let p = plan(next, size, head, offset, catch_up).expect("plan");
                if let Some(s) = p.skip {
                    assert_eq!(s.from_begin, next);
                    skips.push(s);
                    next = s.to_begin;
                }
                let Some(r) = p.release else { break };
                out.push((r, head));
                next = r.end + 1;
            }
        }
        (out, skips)
    }

    proptest! {
        #[test]
        fn never_early_never_late_no_drift(
            first in 0u64..1_000,
            size in 1u64..20,
            offset in 0u64..10,
            steps in proptest::collection::vec(0u64..25, 1..80),
        ) {
            let mut heads = Vec::new();
            let mut h = first;
            for s in steps { h += s; heads.push(h); }
            let (released, _) = simulate(first, size, offset, IN_ORDER, &heads);
            for (k, (r, head)) in released.iter().enumerate() {
                let k = k as u64;
                // No drift: epoch k is exactly on the grid.
                prop_assert_eq!(r.begin, first + k * size);
                prop_assert_eq!(r.end, r.begin + size - 1);
                // Never early.
                prop_assert!(*head >= r.end + offset);
            }
            // Never late: everything due at the last head is released.
            let last = *heads.last().expect("heads");
            let due = if last >= first + size - 1 + offset { (last - (first + size - 1 + offset)) / size + 1 } else { 0 };
            prop_assert_eq!(released.len() as u64, due);
            // And released at the first poll that saw it due.
            let mut prev_head = None;
            let mut i = 0;
            for &head in &heads {
                while i < released.len() && released[i].1 == head {
                    let due_at = released[i].0.end + offset;
                    prop_assert!(head >= due_at);
                    if let Some(p) = prev_head { prop_assert!(p < due_at, "released late: due {} seen at {}", due_at, p); }
                    i += 1;
                }
                prev_head = Some(head);
            }
        }

        #[test]
        fn each_day_starts_once_and_holds_epochs_in_a_day_epochs(
            per_day in 1u64..50,
            releases in 1u64..600,
        ) {
            let mut c = DayClock::new(per_day);
            let mut starts = Vec::new();
            for id in 1..=releases {
                if let Some(d) = c.release(id) {
                    starts.push((d, id));
                }
                prop_assert_eq!(c.day, day_of(id, per_day));
            }
            // Day d (> 1) started exactly once, with epoch (d − 1)·n + 1, in order.
            for (k, (d, id)) in starts.iter().enumerate() {
                prop_assert_eq!(*d, k as u64 + 2);
                prop_assert_eq!(*id, (d - 1) * per_day + 1);
            }
            prop_assert_eq!(starts.len() as u64, (releases - 1) / per_day);
        }

        #[test]
        fn skip_to_head_keeps_the_grid_and_never_runs_ahead(
            first in 0u64..1_000,
            size in 1u64..20,
            offset in 0u64..10,
            max_backlog in 1u64..4,
            steps in proptest::collection::vec(0u64..80, 1..40),
        ) {
            let mut heads = Vec::new();
            let mut h = first;
            for s in steps { h += s; heads.push(h); }
            let (released, skips) = simulate(first, size, offset, CatchUp::SkipToHead { max_backlog }, &heads);
            // Released and skipped together tile the grid from `first`, without overlap.
            let mut spans: Vec<(u64, u64)> = released.iter().map(|(r, _)| (r.begin, r.end + 1)).collect();
            spans.extend(skips.iter().map(|s| (s.from_begin, s.to_begin)));
            spans.sort_unstable();
            let mut at = first;
            for (b, e) in spans { prop_assert_eq!(b, at); prop_assert_eq!((e - b) % size, 0); at = e; }
            for (r, head) in &released {
                prop_assert!(*head >= r.end + offset);
                prop_assert_eq!((r.begin - first) % size, 0);
            }
            for s in &skips { prop_assert!(s.epochs >= max_backlog); }
        }
    }
}
