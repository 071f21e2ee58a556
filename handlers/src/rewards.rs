//! The daily rewards commit: once a market's day has ended on chain (the contract rolled
//! `dayCounter` past it) and every epoch of that day is settled in the state store, sums the
//! day's per-epoch rewards (kept by finalization, [`crate::records::EpochRewards`]) per slot,
//! holds them against `dailySnapshotQuota` ([`sequencer_core::rewards::tally_day`]) and records
//! them on chain with `updateRewards`, which emits `DailyTaskCompletedEvent` for each slot at
//! the quota.
//!
//! Exactly once: the day's record ([`DayRewards`]) is kept with the commit's outcome, and a job
//! for a day already committed sends nothing; a run interrupted between the send and that record
//! sends again only what the contract does not hold yet (the chain port reads `rewardsRecorded`
//! per slot first, and the contract refuses a second record of a (slot, day)). The tally is pure
//! in the stored epochs, so a rerun computes exactly the counts sent before.

use sequencer_core::rewards::{eligible_nodes, tally_day};
use sequencer_ports::{ChainPort, SlotCount};
use serde::Serialize;

use crate::jobs::RewardsJob;
use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::query::{Answer, QueryError};
use crate::records::{DayCommit, DayRewards, EpochState};

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RewardsReport {
    /// The day, as committed.
    pub rewards: DayRewards,
    /// It was committed by an earlier run: nothing sent.
    pub already_committed: bool,
}

/// The smallest epoch id in `[1, current + 1]` whose day is at least `day` (`current + 1` when
/// none is): days never go back as epoch ids grow, so a binary search over `epochDetails`.
async fn first_epoch_from_day(
    chain: &dyn ChainPort,
    market: sequencer_core::Address,
    current: u64,
    day: u64,
) -> Result<u64, PipelineError> {
    let (mut lo, mut hi) = (1u64, current.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let d = chain.epoch_details(market, mid).await?.ok_or_else(|| {
            PipelineError::Invariant(format!("epoch {mid} of {current} released has no details"))
        })?;
        if d.day >= day {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Commits day `job.day`'s rewards, once. `NotReady` (retried) while the day runs or one of its
/// epochs is not settled yet.
pub async fn run(p: &Pipeline, job: RewardsJob) -> Result<RewardsReport, PipelineError> {
    let market = p.config.market;
    if job.market != market {
        return Err(PipelineError::Invariant(format!(
            "rewards job for market {:#x}, this deployment sequences {market:#x}",
            job.market
        )));
    }
    let day = job.day;
    let records = p.records();
    if let Some(rec) = records.day_rewards(day).await? {
        if rec.committed.is_some() {
            return Ok(RewardsReport {
                rewards: rec,
                already_committed: true,
            });
        }
    }
    let chain = p.ports.chain.as_ref();
    let days = chain.market_days(market).await?;
    if day == 0 || day >= days.day {
        return Err(PipelineError::NotReady(format!(
            "day {day} has not ended (the market is in day {})",
            days.day
        )));
    }
    let info = chain.market_info(market).await?;
    let first = first_epoch_from_day(chain, market, info.current_epoch, day).await?;
    let next = first_epoch_from_day(chain, market, info.current_epoch, day + 1).await?;
    if next <= first {
        return Err(PipelineError::Invariant(format!(
            "day {day} ended on chain but has no epoch"
        )));
    }
    let last = next - 1;
    // Every epoch of the day settled: finalized (or anchored), or failed anchoring (it earns
    // nothing); an epoch older than anything recorded ran before this sequencer and earned
    // nothing here.
    let oldest = records.oldest_epoch().await?;
    let entries = records.epochs_from(first).await?;
    let mut failed = std::collections::BTreeSet::new();
    for e in first..=last {
        match entries.iter().find(|x| x.record.epoch == e) {
            Some(x) => match x.state {
                EpochState::Finalized | EpochState::Anchored => {}
                // Its batches never made it on chain: what it finalized is not on record.
                EpochState::Failed => {
                    failed.insert(e);
                }
                s => {
                    return Err(PipelineError::NotReady(format!(
                        "day {day}: epoch {e} is {s}, not finalized"
                    )))
                }
            },
            None if oldest.is_none_or(|o| e < o) => {}
            None => {
                return Err(PipelineError::NotReady(format!(
                    "day {day}: epoch {e} is not recorded yet"
                )))
            }
        }
    }
    let mut epochs = records.epochs_rewards(first, last).await?;
    epochs.retain(|r| !failed.contains(&r.epoch));
    let slots = tally_day(epochs.iter().map(|r| r.slots.as_slice()), days.daily_quota);
    let mut rec = DayRewards {
        day,
        first_epoch: first,
        last_epoch: last,
        quota: days.daily_quota,
        eligible_nodes: eligible_nodes(&slots),
        slots,
        committed: None,
    };
    records.save_day_rewards(&rec).await?;
    let counts: Vec<SlotCount> = rec
        .slots
        .iter()
        .filter(|s| s.eligible > 0)
        .map(|s| SlotCount {
            slot: s.slot,
            submissions: s.eligible,
        })
        .collect();
    let commit = if counts.is_empty() {
        DayCommit {
            at_ms: p.now_ms(),
            ..DayCommit::default()
        }
    } else {
        let out = chain
            .update_rewards(market, day, &counts, rec.eligible_nodes)
            .await?;
        DayCommit::of(&out, p.now_ms())
    };
    p.metrics.inc(&m::REWARDS_DAYS_COMMITTED, []);
    p.metrics.add(
        &m::REWARDS_DAILY_TASKS_COMPLETED,
        [],
        commit.completed.len() as u64,
    );
    tracing::info!(
        day,
        first_epoch = first,
        last_epoch = last,
        slots = rec.slots.len(),
        eligible_nodes = rec.eligible_nodes,
        recorded = commit.recorded.len(),
        already = commit.already.len(),
        completed = commit.completed.len(),
        "day's rewards committed"
    );
    rec.committed = Some(commit);
    records.save_day_rewards(&rec).await?;
    Ok(RewardsReport {
        rewards: rec,
        already_committed: false,
    })
}

// ------------------------------------------------------------------------------ the views

/// `GET /v1/markets/{m}/epochs/{e}/rewards`: one epoch's rewards per slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochRewardsView {
    /// The market.
    pub data_market: String,
    /// The epoch.
    pub epoch: u64,
    /// The epoch's state (`finalized` and after: the tally is final).
    pub state: EpochState,
    /// By slot id: eligible, and discarded with the CIDs and why. Empty before finalization.
    pub slots: Vec<sequencer_core::rewards::SlotTally>,
}

/// `GET /v1/markets/{m}/days/{day}/rewards`: one day's rewards per slot and its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayRewardsView {
    /// The market.
    pub data_market: String,
    /// `committed` (on chain), or `computed` (the commit is under way).
    pub status: &'static str,
    /// The day and its sums.
    #[serde(flatten)]
    pub rewards: DayRewards,
}

/// Epoch `epoch`'s rewards; final once the epoch is finalized.
pub async fn epoch_view(p: &Pipeline, epoch: u64) -> Result<Answer<EpochRewardsView>, QueryError> {
    let records = p.records();
    let Some(entry) = records.epoch(epoch).await? else {
        return Err(QueryError::UnknownEpoch(epoch));
    };
    let rewards = records.epoch_rewards(epoch).await?;
    let settled = rewards.is_some()
        && matches!(
            entry.state,
            EpochState::Finalized | EpochState::Anchored | EpochState::Failed
        );
    Ok(Answer {
        view: EpochRewardsView {
            data_market: format!("{:#x}", p.config.market),
            epoch,
            state: entry.state,
            slots: rewards.map(|r| r.slots).unwrap_or_default(),
        },
        settled,
    })
}

/// Day `day`'s rewards as the daily commit computed them; final once committed.
pub async fn day_view(p: &Pipeline, day: u64) -> Result<Answer<DayRewardsView>, QueryError> {
    let Some(rewards) = p.records().day_rewards(day).await? else {
        return Err(QueryError::UnknownDay(day));
    };
    let settled = rewards.committed.is_some();
    Ok(Answer {
        view: DayRewardsView {
            data_market: format!("{:#x}", p.config.market),
            status: if settled { "committed" } else { "computed" },
            rewards,
        },
        settled,
    })
}

// ---------------------------------------------------------------------- the anchor FIFO

/// Runs a rewards job from the anchor FIFO. A day not ready (still running, or an epoch of it
/// not finalized) is not an error there: a failed message would hold up the group's anchoring
/// behind it, and every epoch anchored later asks for the day again ([`after_anchor`]).
pub async fn handle_job(p: &Pipeline, job: RewardsJob) -> Result<(), PipelineError> {
    match run(p, job).await {
        Ok(_) => Ok(()),
        Err(PipelineError::NotReady(why)) => {
            tracing::info!(day = job.day, why = %why, "day's rewards not ready; asked again by a later epoch");
            p.metrics.inc(&m::REWARDS_NOT_READY, []);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// After epoch `epoch` was anchored: if the day before its day is not committed yet, asks for its
/// commit on the anchor FIFO (in the signing key's group, deduplicated per day). Best effort: a
/// failure is logged and counted, and the next anchored epoch asks again.
pub async fn after_anchor(p: &Pipeline, epoch: u64) {
    if let Err(e) = ask_for_previous_day(p, epoch).await {
        tracing::warn!(epoch, error = %e, "could not ask for the previous day's rewards commit");
        p.metrics.inc(&m::REWARDS_ASK_ERRORS, []);
    }
}

async fn ask_for_previous_day(p: &Pipeline, epoch: u64) -> Result<(), PipelineError> {
    let market = p.config.market;
    let Some(details) = p.ports.chain.epoch_details(market, epoch).await? else {
        return Ok(());
    };
    let Some(day) = details.day.checked_sub(1).filter(|d| *d > 0) else {
        return Ok(());
    };
    if p.records()
        .day_rewards(day)
        .await?
        .is_some_and(|r| r.committed.is_some())
    {
        return Ok(());
    }
    let job = RewardsJob { market, day };
    p.ports
        .anchor_queue
        .send(&[job.fifo_message(&p.config.anchor_group)?])
        .await?;
    Ok(())
}
