//! Rewards: what each slot earned in each finalized epoch ([`EpochRewards`], written by
//! finalization) and each day's sums with what was committed on chain ([`DayRewards`], written by
//! the daily rewards commit, `crate::rewards`). Both live in the epochs table, in partitions of
//! their own (`market#rewards` by epoch, `market#rewards-day` by day). An epoch's rewards expire
//! with the epoch; a day's expire the retention after the day's commit computed them (it runs
//! once the day ended, so the day's sums outlive its epochs).

use serde::{Deserialize, Serialize};

use sequencer_core::rewards::{DaySlot, SlotTally};
use sequencer_core::B256;
use sequencer_ports::{Item, RewardsOutcome, Table};

use super::keys;
use super::{Expiry, Records};
use crate::pipeline::{json, parse, PipelineError};

/// One finalized epoch's rewards: every slot with an accepted submission, eligible (voted for
/// its project's finalized CID) and discarded (with the CIDs and why).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRewards {
    /// Epoch id.
    pub epoch: u64,
    /// By slot id.
    pub slots: Vec<SlotTally>,
}

/// One day's rewards: the sums over its epochs, and the `updateRewards` commit once sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayRewards {
    /// The market's day (`dayCounter` while it ran).
    pub day: u64,
    /// Its first and last epoch ids.
    pub first_epoch: u64,
    /// Last epoch id.
    pub last_epoch: u64,
    /// `dailySnapshotQuota` the sums were held against.
    pub quota: u64,
    /// By slot id.
    pub slots: Vec<DaySlot>,
    /// Slots that met the quota (`eligibleNodes`).
    pub eligible_nodes: u64,
    /// What the commit did on chain; `None` until it was sent and mined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<DayCommit>,
}

/// What the day's `updateRewards` commit did on chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCommit {
    /// Slots our transactions recorded.
    pub recorded: Vec<u64>,
    /// Slots found recorded already (an earlier, interrupted run): not sent again.
    pub already: Vec<u64>,
    /// Slots whose `DailyTaskCompletedEvent` our transactions emitted.
    pub completed: Vec<u64>,
    /// Our transactions, in order.
    pub txs: Vec<B256>,
    /// When the commit was seen mined (ms since the Unix epoch).
    pub at_ms: i64,
}

impl DayCommit {
    /// The record of `outcome`, at `at_ms`.
    pub fn of(outcome: &RewardsOutcome, at_ms: i64) -> Self {
        Self {
            recorded: outcome.recorded.clone(),
            already: outcome.already.clone(),
            completed: outcome.completed.iter().map(|(slot, _)| *slot).collect(),
            txs: outcome.txs.iter().map(|t| t.tx_hash).collect(),
            at_ms,
        }
    }
}

impl Records<'_> {
    /// Records epoch `epoch`'s rewards: the tally finalize sealed with the batches
    /// (`core::rewards::tally_votes` over the sealed set), so a redelivered finalize job, or a
    /// second finalizer, writes the same bytes. Finalize's one call.
    pub async fn record_epoch_rewards(
        &self,
        epoch: u64,
        slots: &[SlotTally],
        expiry: Expiry,
    ) -> Result<EpochRewards, PipelineError> {
        let rec = EpochRewards {
            epoch,
            slots: slots.to_vec(),
        };
        self.store
            .put(
                Table::Epochs,
                &keys::epoch_rewards_key(&self.market, epoch),
                &Item::data(json(&rec)?).ttl(Some(expiry.0)),
            )
            .await?;
        Ok(rec)
    }

    /// Epoch `epoch`'s rewards, `None` when it was not finalized (or finalized before rewards
    /// were kept).
    pub async fn epoch_rewards(&self, epoch: u64) -> Result<Option<EpochRewards>, PipelineError> {
        self.store
            .get(Table::Epochs, &keys::epoch_rewards_key(&self.market, epoch))
            .await?
            .map(|i| parse("epoch rewards", &i.data))
            .transpose()
    }

    /// The rewards of the epochs `first..=last` that have them, in epoch order.
    pub async fn epochs_rewards(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<EpochRewards>, PipelineError> {
        let pk = keys::epoch_rewards_pk(&self.market);
        let mut out = Vec::new();
        // Sort keys are zero-padded epoch ids: start just before `first`.
        let mut after = first.checked_sub(1).map(keys::epoch_sk);
        'pages: loop {
            let page = self
                .store
                .query(Table::Epochs, &pk, after.as_deref(), 1000)
                .await?;
            for (sk, item) in &page.items {
                match keys::epoch_of_sk(sk) {
                    Some(e) if e > last => break 'pages,
                    Some(_) => out.push(parse("epoch rewards", &item.data)?),
                    None => return Err(PipelineError::Corrupt(format!("epoch rewards key {sk}"))),
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(out)
    }

    /// Day `day`'s rewards, `None` before the daily commit computed them.
    pub async fn day_rewards(&self, day: u64) -> Result<Option<DayRewards>, PipelineError> {
        self.store
            .get(Table::Epochs, &keys::day_rewards_key(&self.market, day))
            .await?
            .map(|i| parse("day rewards", &i.data))
            .transpose()
    }

    /// Saves day `day`'s rewards (computed, then again with the commit's outcome).
    pub async fn save_day_rewards(&self, rec: &DayRewards) -> Result<(), PipelineError> {
        Ok(self
            .store
            .put(
                Table::Epochs,
                &keys::day_rewards_key(&self.market, rec.day),
                &Item::data(json(rec)?).ttl(self.expiry()),
            )
            .await?)
    }
}
