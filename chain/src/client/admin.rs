//! Typed owner / epoch-manager calls, and administration of local chains (anvil, hardhat).

use alloy::{
    primitives::{Address, U256, U64},
    providers::Provider,
};

use super::{ChainClient, Result};
use crate::{bindings::ProtocolState, market::MarketSettings, types::TxOutcome, ChainError};

impl ChainClient {
    /// Local nodes only (anvil/hardhat): mines `blocks` empty blocks (`anvil_mine`), for an epoch
    /// releaser on a node that only mines on transactions.
    pub async fn dev_mine(&self, blocks: u64) -> Result<()> {
        self.retry("anvil_mine", |c| async move {
            c.provider
                .raw_request::<_, serde_json::Value>("anvil_mine".into(), (U64::from(blocks),))
                .await
                .map(|_| ())
                .map_err(ChainError::from_rpc)
        })
        .await
    }

    /// Registers a data market (owner only) with the local-development settings
    /// ([`MarketSettings::default`]: this chain as its source chain, 1 s blocks, Powerloom's day
    /// and quota) and `epoch_size`. Windows and epoch size in blocks. A real market is
    /// registered with [`Self::register_market_with`].
    pub async fn register_market(
        &self,
        market: Address,
        epoch_size: u64,
        snapshot_window: u64,
        batch_window: u64,
    ) -> Result<TxOutcome> {
        let settings = MarketSettings {
            epoch_size,
            source_chain_id: self.chain_id(),
            ..MarketSettings::default()
        };
        // Sent as given: the contract's own checks answer (typed reverts), as they always did.
        self.send_call(&ProtocolState::registerDataMarketCall {
            dataMarket: market,
            epochSize: U256::from(epoch_size),
            snapshotWindow: U256::from(snapshot_window),
            batchWindow: U256::from(batch_window),
            sourceChainId: U256::from(settings.source_chain_id),
            sourceChainBlockTime: U256::from(settings.source_block_time),
            daySize: U256::from(settings.day_size),
            dailyQuota: U256::from(settings.daily_snapshot_quota),
        })
        .await
    }

    /// Grants or revokes the SEQUENCER role of `market` (owner only).
    pub async fn set_sequencer(
        &self,
        market: Address,
        who: Address,
        allowed: bool,
    ) -> Result<TxOutcome> {
        self.send_call(&ProtocolState::setSequencerCall {
            dataMarket: market,
            sequencer: who,
            allowed,
        })
        .await
    }

    /// Grants or revokes the EPOCH MANAGER role of `market` (owner only).
    pub async fn set_epoch_manager(
        &self,
        market: Address,
        who: Address,
        allowed: bool,
    ) -> Result<TxOutcome> {
        self.send_call(&ProtocolState::setEpochManagerCall {
            dataMarket: market,
            epochManager: who,
            allowed,
        })
        .await
    }

    /// Assigns snapshotters to slots in one bulk transaction (owner only); emits
    /// `SnapshotterAddressChanged` per changed slot and drops those slots from the cache.
    pub async fn assign_slots(&self, assignments: &[(u64, Address)]) -> Result<TxOutcome> {
        let out = self
            .send_call(&ProtocolState::assignSnapshotterToSlotBulkCall {
                slotIds: assignments.iter().map(|(s, _)| U256::from(*s)).collect(),
                snapshotters: assignments.iter().map(|(_, a)| *a).collect(),
            })
            .await?;
        for (slot, _) in assignments {
            self.invalidate_slots(Some(*slot));
        }
        Ok(out)
    }

    /// Flags or unflags snapshotters on `market` (owner only).
    pub async fn set_flagged(
        &self,
        market: Address,
        who: &[Address],
        flagged: bool,
    ) -> Result<TxOutcome> {
        self.send_call(&ProtocolState::setFlaggedSnapshottersCall {
            dataMarket: market,
            snapshotters: who.to_vec(),
            flag: flagged,
        })
        .await
    }

    /// Releases the next epoch `[begin, end]` of `market` (epoch manager only); returns the
    /// transaction and the released epoch id.
    pub async fn release_epoch(
        &self,
        market: Address,
        begin: u64,
        end: u64,
    ) -> Result<(TxOutcome, u64)> {
        let out = self
            .send_call(&ProtocolState::releaseEpochCall {
                dataMarket: market,
                begin: U256::from(begin),
                end: U256::from(end),
            })
            .await?;
        let releases = self.epoch_releases(market, out.block, out.block).await?;
        let epoch = releases
            .iter()
            .find(|r| r.tx_hash == out.tx_hash)
            .map(|r| r.epoch_id)
            .ok_or_else(|| {
                ChainError::Decode("release transaction without EpochReleased".into())
            })?;
        Ok((out, epoch))
    }

    /// Skips whole epochs of `market` so that the next epoch begins at `new_begin`
    /// (`skipEpochs`, owner or epoch manager; emits `EpochsSkipped`). `new_begin` must be
    /// `lastEpochEnd + 1 + k·epochSize`, k ≥ 1, and an epoch must have been released before.
    pub async fn skip_epochs(&self, market: Address, new_begin: u64) -> Result<TxOutcome> {
        self.send_call(&ProtocolState::skipEpochsCall {
            dataMarket: market,
            newBegin: U256::from(new_begin),
        })
        .await
    }
}
