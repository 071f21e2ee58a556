//! Market settings, days and rewards: registration with settings, the views Powerloom's node
//! reads, day starts, and the once-per-(market, slot, day) bulk `updateRewards`.

use alloy::{
    primitives::{Address, TxHash, U256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use serde::Serialize;
use tracing::{info, warn};

use super::{reads::to_u64, ChainClient, Result};
use crate::{
    bindings::ProtocolState::{self, DailyTaskCompletedEvent, DayStartedEvent},
    market::{MarketSettings, OnChainSettings},
    types::{checksummed, EpochDetails, RewardsOutcome, SlotCount, TxOutcome},
    ChainError, Revert, Windows,
};

/// Slots per `updateRewards` transaction. Each recorded slot costs a few thousand gas (a bit in
/// a shared word, and an event when it met the quota), so 250 stay near 1.5 M gas, well under any
/// block's limit and under the client's default gas ceiling.
pub const REWARD_SLOTS_PER_TX: usize = 250;
/// Slots per `rewardsRecorded` view call (one `eth_call`, a bool each).
const RECORDED_SLOTS_PER_CALL: usize = 1_000;
/// Times [`ChainClient::update_rewards`] re-reads the chain after a competing sender recorded a
/// slot between its read and its send, before it gives up with the revert.
const REWARD_ROUNDS: usize = 3;

/// `snapshotStatus(market, project, epoch)` in Powerloom's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotStatus {
    /// `FINALIZED` (1): anchored in time; `PENDING` (0): not (or only delayed).
    pub finalized: bool,
    /// The finalized CID ("" when pending).
    pub snapshot_cid: String,
    /// Timestamp of the anchoring block (0 when pending).
    pub timestamp: u64,
}

/// One `DayStartedEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayStart {
    /// The market.
    #[serde(serialize_with = "checksummed")]
    pub market: Address,
    /// The day that started.
    pub day: u64,
    /// `block.timestamp` of the release that started it.
    pub timestamp: u64,
    /// Its block.
    pub block_number: u64,
    /// The release transaction.
    pub tx_hash: TxHash,
}

impl ChainClient {
    /// Registers `market` with its settings and windows (owner only). The settings are checked
    /// first ([`MarketSettings::validate`]: the contract's own rules), so an invalid one sends
    /// nothing.
    pub async fn register_market_with(
        &self,
        market: Address,
        settings: &MarketSettings,
        windows: Windows,
    ) -> Result<TxOutcome> {
        settings.validate()?;
        self.send_call(&ProtocolState::registerDataMarketCall {
            dataMarket: market,
            epochSize: U256::from(settings.epoch_size),
            snapshotWindow: U256::from(windows.snapshot_blocks),
            batchWindow: U256::from(windows.batch_blocks),
            sourceChainId: U256::from(settings.source_chain_id),
            sourceChainBlockTime: U256::from(settings.source_block_time),
            daySize: U256::from(settings.day_size),
            dailyQuota: U256::from(settings.daily_snapshot_quota),
        })
        .await
    }

    /// Changes a market's settings (owner only); checked first like
    /// [`Self::register_market_with`].
    pub async fn update_market_settings(
        &self,
        market: Address,
        settings: &MarketSettings,
    ) -> Result<TxOutcome> {
        settings.validate()?;
        self.send_call(&ProtocolState::updateMarketSettingsCall {
            dataMarket: market,
            epochSize: U256::from(settings.epoch_size),
            sourceChainId: U256::from(settings.source_chain_id),
            sourceChainBlockTime: U256::from(settings.source_block_time),
            daySize: U256::from(settings.day_size),
            dailyQuota: U256::from(settings.daily_snapshot_quota),
        })
        .await
    }

    /// A market's settings and day state (`marketSettings`); `UnknownMarket` when unregistered.
    pub async fn market_settings(&self, market: Address) -> Result<OnChainSettings> {
        let r = self
            .view(ProtocolState::marketSettingsCall { dataMarket: market })
            .await?;
        Ok(OnChainSettings {
            settings: MarketSettings {
                epoch_size: to_u64(r.epochSize, "epoch size")?,
                source_chain_id: to_u64(r.sourceChainId, "source chain id")?,
                source_block_time: to_u64(r.sourceChainBlockTime, "source block time")?,
                day_size: to_u64(r.daySize, "day size")?,
                daily_snapshot_quota: to_u64(r.dailyQuota, "daily quota")?,
            },
            epochs_in_a_day: to_u64(r.epochsPerDay, "epochs in a day")?,
            day: to_u64(r.currentDay, "day")?,
            day_start_epoch: to_u64(r.dayStartEpochId, "day start epoch")?,
        })
    }

    /// `dayCounter(market)`: the market's current day (from 1).
    pub async fn day_counter(&self, market: Address) -> Result<u64> {
        let d = self
            .view(ProtocolState::dayCounterCall { dataMarket: market })
            .await?;
        to_u64(d, "day")
    }

    /// Epoch `epoch` as the contract stores it (`epochDetails`), `None` when never released.
    pub async fn epoch_details(&self, market: Address, epoch: u64) -> Result<Option<EpochDetails>> {
        let d = self
            .view(ProtocolState::epochDetailsCall {
                dataMarket: market,
                epochId: U256::from(epoch),
            })
            .await?;
        if d.releaseBlock.is_zero() {
            return Ok(None);
        }
        Ok(Some(EpochDetails {
            epoch_id: epoch,
            begin: to_u64(d.begin, "begin")?,
            end: to_u64(d.end, "end")?,
            release_block: to_u64(d.releaseBlock, "release block")?,
            day: to_u64(d.day, "day")?,
            ended: d.batchSubmissionsEnded,
        }))
    }

    /// The day `epoch` belongs to (`epochDetails`), `None` when it was never released.
    pub async fn epoch_day(&self, market: Address, epoch: u64) -> Result<Option<u64>> {
        Ok(self.epoch_details(market, epoch).await?.map(|d| d.day))
    }

    /// `allSnapshotters(who)`: whether `who` is some slot's snapshotter.
    pub async fn is_snapshotter(&self, who: Address) -> Result<bool> {
        self.view(ProtocolState::allSnapshottersCall { addr: who })
            .await
    }

    /// `getTotalNodeCount()`: the highest slot id ever assigned.
    pub async fn total_node_count(&self) -> Result<u64> {
        let n = self.view(ProtocolState::getTotalNodeCountCall {}).await?;
        to_u64(n, "node count")
    }

    /// `snapshotStatus(market, project, epoch)`.
    pub async fn snapshot_status(
        &self,
        market: Address,
        project: &str,
        epoch: u64,
    ) -> Result<SnapshotStatus> {
        let r = self
            .view(ProtocolState::snapshotStatusCall {
                dataMarket: market,
                projectId: project.to_string(),
                epochId: U256::from(epoch),
            })
            .await?;
        Ok(SnapshotStatus {
            finalized: r.status == 1,
            snapshot_cid: r.snapshotCid,
            timestamp: to_u64(r.timestamp, "timestamp")?,
        })
    }

    /// `DayStartedEvent`s of `market` in blocks `[from, to]`, in chain order.
    pub async fn day_starts(&self, market: Address, from: u64, to: u64) -> Result<Vec<DayStart>> {
        let filter = Filter::new()
            .address(self.cfg.protocol_state)
            .event_signature(DayStartedEvent::SIGNATURE_HASH)
            .topic1(market.into_word())
            .from_block(from)
            .to_block(to);
        let logs = self
            .retry("eth_getLogs", |c| {
                let filter = filter.clone();
                async move {
                    c.provider
                        .get_logs(&filter)
                        .await
                        .map_err(ChainError::from_rpc)
                }
            })
            .await?;
        let mut out = Vec::new();
        for log in logs.iter().filter(|l| !l.removed) {
            let ev = log
                .log_decode::<DayStartedEvent>()
                .map_err(|e| ChainError::Decode(format!("DayStartedEvent: {e}")))?;
            out.push(DayStart {
                market: ev.inner.data.dataMarketAddress,
                day: to_u64(ev.inner.data.dayId, "day")?,
                timestamp: to_u64(ev.inner.data.timestamp, "timestamp")?,
                block_number: log
                    .block_number
                    .ok_or_else(|| ChainError::Decode("log without block number".into()))?,
                tx_hash: log
                    .transaction_hash
                    .ok_or_else(|| ChainError::Decode("log without transaction".into()))?,
            });
        }
        Ok(out)
    }

    /// For each of `slots`, whether `updateRewards` recorded it for `day` (`rewardsRecorded`).
    pub async fn rewards_recorded(
        &self,
        market: Address,
        day: u64,
        slots: &[u64],
    ) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(slots.len());
        for chunk in slots.chunks(RECORDED_SLOTS_PER_CALL) {
            let r = self
                .view(ProtocolState::rewardsRecordedCall {
                    dataMarket: market,
                    day: U256::from(day),
                    slotIds: chunk.iter().map(|s| U256::from(*s)).collect(),
                })
                .await?;
            if r.len() != chunk.len() {
                return Err(ChainError::Decode(format!(
                    "rewardsRecorded answered {} flags for {} slots",
                    r.len(),
                    chunk.len()
                )));
            }
            out.extend(r);
        }
        Ok(out)
    }

    /// Commits a finished day's per-slot counts with Powerloom's bulk `updateRewards` (SEQUENCER
    /// role), exactly once per (market, slot, day): it reads `rewardsRecorded` first and sends
    /// only the slots not recorded yet ([`REWARD_SLOTS_PER_TX`] per transaction), so a retry
    /// after a crash, a timeout or a competing sender sends nothing twice; the contract refuses a
    /// second record (`RewardsAlreadyRecorded`) as the backstop, and this call then re-reads and
    /// carries on with what is left. The contract emits `DailyTaskCompletedEvent` for each slot
    /// at or above `dailySnapshotQuota`. `eligible_nodes` is Powerloom's reward-pool divisor,
    /// stored per day (first non-zero wins); 0 leaves it unset.
    ///
    /// Errors: duplicate slots in `counts` ([`ChainError::Config`]); a day that has not ended
    /// ([`Revert::DayNotEnded`], nothing sent); the writer's errors.
    pub async fn update_rewards(
        &self,
        market: Address,
        day: u64,
        counts: &[SlotCount],
        eligible_nodes: u64,
    ) -> Result<RewardsOutcome> {
        let mut counts = counts.to_vec();
        counts.sort_by_key(|c| c.slot);
        if let Some(w) = counts.windows(2).find(|w| w[0].slot == w[1].slot) {
            return Err(ChainError::Config(format!(
                "slot {} appears twice in the day's counts",
                w[0].slot
            )));
        }
        let mut out = RewardsOutcome {
            day,
            ..RewardsOutcome::default()
        };
        if counts.is_empty() {
            return Ok(out);
        }
        let mut last_race = None;
        for round in 0..REWARD_ROUNDS {
            let slots: Vec<u64> = counts.iter().map(|c| c.slot).collect();
            let recorded = self.rewards_recorded(market, day, &slots).await?;
            let mut todo = Vec::new();
            for (c, done) in counts.iter().zip(recorded) {
                if !done {
                    todo.push(*c);
                } else if !out.recorded.contains(&c.slot) && !out.already.contains(&c.slot) {
                    out.already.push(c.slot);
                }
            }
            if todo.is_empty() {
                return Ok(out);
            }
            if round > 0 {
                info!(%market, day, left = todo.len(), round, "re-read after a competing rewards record");
            }
            let mut raced = false;
            for chunk in todo.chunks(REWARD_SLOTS_PER_TX) {
                let call = ProtocolState::updateRewardsCall {
                    dataMarket: market,
                    slotIds: chunk.iter().map(|c| U256::from(c.slot)).collect(),
                    submissionsList: chunk.iter().map(|c| U256::from(c.submissions)).collect(),
                    day: U256::from(day),
                    eligibleNodes: U256::from(eligible_nodes),
                };
                match self.send_call(&call).await {
                    Ok(tx) => {
                        out.recorded.extend(chunk.iter().map(|c| c.slot));
                        out.completed.extend(self.completed_in(market, &tx).await?);
                        out.txs.push(tx.sent());
                    }
                    Err(e @ ChainError::Revert(Revert::RewardsAlreadyRecorded { .. }))
                    | Err(e @ ChainError::TxFailed(_)) => {
                        warn!(%market, day, error = %e, "a slot was recorded by someone else meanwhile; re-reading");
                        last_race = Some(e);
                        raced = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !raced {
                return Ok(out);
            }
        }
        Err(last_race.unwrap_or_else(|| ChainError::Decode("rewards rounds exhausted".into())))
    }

    /// The `DailyTaskCompletedEvent`s of our transaction `tx`: (slot, snapshotter).
    async fn completed_in(&self, market: Address, tx: &TxOutcome) -> Result<Vec<(u64, Address)>> {
        let filter = Filter::new()
            .address(self.cfg.protocol_state)
            .event_signature(DailyTaskCompletedEvent::SIGNATURE_HASH)
            .topic1(market.into_word())
            .from_block(tx.block)
            .to_block(tx.block);
        let logs = self
            .retry("eth_getLogs", |c| {
                let filter = filter.clone();
                async move {
                    c.provider
                        .get_logs(&filter)
                        .await
                        .map_err(ChainError::from_rpc)
                }
            })
            .await?;
        let mut out = Vec::new();
        for log in logs
            .iter()
            .filter(|l| !l.removed && l.transaction_hash == Some(tx.tx_hash))
        {
            let ev = log
                .log_decode::<DailyTaskCompletedEvent>()
                .map_err(|e| ChainError::Decode(format!("DailyTaskCompletedEvent: {e}")))?;
            out.push((
                to_u64(ev.inner.data.slotId, "slot id")?,
                ev.inner.data.snapshotterAddress,
            ));
        }
        Ok(out)
    }

    /// The protocol chain's block time in milliseconds, measured over the last `sample` blocks
    /// from their timestamps (whole seconds); `None` below 2 blocks or when they share one
    /// timestamp (an automining dev chain). For sizing windows ([`crate::market`]).
    pub async fn measured_block_ms(&self, sample: u64) -> Result<Option<u64>> {
        let head = self.head().await?;
        let from = head.saturating_sub(sample.max(1));
        if head < 2 || head == from {
            return Ok(None);
        }
        let ts = |n: u64| async move {
            self.retry("eth_getBlockByNumber", |c| async move {
                c.provider
                    .get_block_by_number(n.into())
                    .await
                    .map_err(ChainError::from_rpc)
            })
            .await
            .map(|b| b.map(|b| b.header.timestamp))
        };
        let (Some(t1), Some(t0)) = (ts(head).await?, ts(from).await?) else {
            return Ok(None);
        };
        if t1 <= t0 {
            return Ok(None);
        }
        Ok(Some((t1 - t0) * 1000 / (head - from)))
    }
}
