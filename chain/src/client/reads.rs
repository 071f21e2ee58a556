//! Reads: chain head and blocks, releases, slots, roles, and what is anchored for an epoch.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use alloy::{
    primitives::{Address, BlockHash, TxHash, B256, U256},
    providers::Provider,
    rpc::types::{Filter, Log, TransactionReceipt},
    sol_types::SolEvent,
};

use super::{ChainClient, Result};
use crate::{
    bindings::ProtocolState::{self, DelayedBatchSubmitted, EpochReleased, SnapshotBatchSubmitted},
    types::{AnchoredBatch, EpochAnchors, EpochRelease, MarketInfo, ReleasesPage, Windows},
    ChainError, Revert,
};

/// Entries the slot-owner cache holds at most (verify checks the slot range first, so a market's
/// slots bound it in practice; this bounds it whatever a caller asks).
const SLOT_CACHE_MAX_ENTRIES: usize = 100_000;

impl ChainClient {
    /// Current head block number.
    pub async fn head(&self) -> Result<u64> {
        self.retry("eth_blockNumber", |c| async move {
            c.provider
                .get_block_number()
                .await
                .map_err(ChainError::from_rpc)
        })
        .await
    }

    /// Hash of block `number`, `None` if the node has no such block yet.
    pub async fn block_hash(&self, number: u64) -> Result<Option<BlockHash>> {
        self.retry("eth_getBlockByNumber", |c| async move {
            let block = c
                .provider
                .get_block_by_number(number.into())
                .await
                .map_err(ChainError::from_rpc)?;
            Ok(block.map(|b| b.header.hash))
        })
        .await
    }

    /// Number of the block with this hash, `None` if the node does not know it.
    pub async fn block_number(&self, hash: BlockHash) -> Result<Option<u64>> {
        self.retry("eth_getBlockByHash", |c| async move {
            let block = c
                .provider
                .get_block_by_hash(hash)
                .await
                .map_err(ChainError::from_rpc)?;
            Ok(block.map(|b| b.header.number))
        })
        .await
    }

    /// `EpochReleased` events of `market` in blocks `[from, to]` (inclusive), in chain order.
    /// Queries at most `LOG_RANGE_BLOCKS` blocks per call.
    pub async fn epoch_releases(
        &self,
        market: Address,
        from: u64,
        to: u64,
    ) -> Result<Vec<EpochRelease>> {
        let mut out = Vec::new();
        let mut start = from;
        while start <= to {
            let end = start.saturating_add(self.cfg.log_range - 1).min(to);
            let filter = Filter::new()
                .address(self.cfg.protocol_state)
                .event_signature(EpochReleased::SIGNATURE_HASH)
                .topic1(market.into_word())
                .from_block(start)
                .to_block(end);
            let logs = self.get_logs(&filter).await?;
            for log in logs.iter().filter(|l| !l.removed) {
                out.push(decode_release(log)?);
            }
            if end == u64::MAX {
                break;
            }
            start = end + 1;
        }
        Ok(out)
    }

    /// Reorg-safe follower: releases of `market` in blocks `(cursor, head − CONFIRMATIONS]`, and
    /// that upper bound as the next cursor. A release is only ever reported once it is
    /// `CONFIRMATIONS` blocks deep, so the caller never has to take one back.
    pub async fn releases_after(&self, market: Address, cursor: u64) -> Result<ReleasesPage> {
        let head = self.head().await?;
        let safe = head.saturating_sub(self.cfg.confirmations);
        if safe <= cursor {
            return Ok(ReleasesPage {
                releases: Vec::new(),
                next_cursor: cursor,
            });
        }
        let releases = self.epoch_releases(market, cursor + 1, safe).await?;
        Ok(ReleasesPage {
            releases,
            next_cursor: safe,
        })
    }

    /// The snapshotter assigned to `slot` (zero address if none), cached for `SLOT_CACHE_TTL_SECS`.
    pub async fn slot_owner(&self, slot: u64) -> Result<Address> {
        if let Some(hit) = self.cached_slot(slot) {
            return Ok(hit);
        }
        let owner = self
            .view(ProtocolState::slotSnapshotterMappingCall {
                slotId: U256::from(slot),
            })
            .await?;
        if let Ok(mut cache) = self.slots.lock() {
            if cache.len() >= SLOT_CACHE_MAX_ENTRIES {
                // Bounded: expired entries go first; if every entry is fresh (a flood of slot
                // ids), the map starts over rather than grow.
                let ttl = self.cfg.slot_cache_ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
                if cache.len() >= SLOT_CACHE_MAX_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(slot, (owner, Instant::now()));
        }
        Ok(owner)
    }

    fn cached_slot(&self, slot: u64) -> Option<Address> {
        let cache = self.slots.lock().ok()?;
        let (owner, at) = cache.get(&slot)?;
        (at.elapsed() < self.cfg.slot_cache_ttl).then_some(*owner)
    }

    /// Drops cached slot owners (one slot, or all with `None`), e.g. on `SnapshotterAddressChanged`.
    pub fn invalidate_slots(&self, slot: Option<u64>) {
        if let Ok(mut cache) = self.slots.lock() {
            match slot {
                Some(s) => {
                    cache.remove(&s);
                }
                None => cache.clear(),
            }
        }
    }

    /// Whether `snapshotter` is on `market`'s flagged list.
    pub async fn is_flagged(&self, market: Address, snapshotter: Address) -> Result<bool> {
        self.view(ProtocolState::isFlaggedCall {
            dataMarket: market,
            snapshotter,
        })
        .await
    }

    /// The market's snapshot and batch submission windows, in blocks.
    pub async fn submission_window(&self, market: Address) -> Result<Windows> {
        let snapshot = self
            .view(ProtocolState::snapshotSubmissionWindowCall { dataMarket: market })
            .await?;
        let batch = self
            .view(ProtocolState::batchSubmissionWindowCall { dataMarket: market })
            .await?;
        Ok(Windows {
            snapshot_blocks: to_u64(snapshot, "snapshot window")?,
            batch_blocks: to_u64(batch, "batch window")?,
        })
    }

    /// `epochWindows(market, epoch)`: the windows stored with `epoch` at its release, in blocks,
    /// which fix its deadlines whatever `updateSubmissionWindows` does afterwards.
    ///
    /// `None` when they are not available: the epoch is not released, or the contract has no such
    /// view (Powerloom's own protocol state contract, or one deployed before it existed). A caller
    /// then falls back to the market's current windows ([`Self::submission_window`]).
    pub async fn epoch_windows(&self, market: Address, epoch: u64) -> Result<Option<Windows>> {
        let r = self
            .view(ProtocolState::epochWindowsCall {
                dataMarket: market,
                epochId: U256::from(epoch),
            })
            .await;
        match r {
            Ok(w) => Ok(Some(Windows {
                snapshot_blocks: to_u64(w.snapshotWindow, "epoch snapshot window")?,
                batch_blocks: to_u64(w.batchWindow, "epoch batch window")?,
            })),
            Err(ChainError::Revert(Revert::EpochNotReleased(_))) => Ok(None),
            // No `epochWindows` on this contract: the call reverts without data we know.
            Err(ChainError::Revert(Revert::Other(why))) => {
                tracing::debug!(%market, epoch, %why, "no per-epoch windows on this contract");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Registration and epoch counters of a market.
    pub async fn market_info(&self, market: Address) -> Result<MarketInfo> {
        let r = self
            .view(ProtocolState::dataMarketInfoCall { dataMarket: market })
            .await?;
        Ok(MarketInfo {
            registered: r.registered,
            epoch_size: to_u64(r.epochSize, "epoch size")?,
            windows: Windows {
                snapshot_blocks: to_u64(r.snapshotWindow, "snapshot window")?,
                batch_blocks: to_u64(r.batchWindow, "batch window")?,
            },
            current_epoch: to_u64(r.currentEpochId, "epoch id")?,
            last_epoch_end: to_u64(r.lastEpochEnd, "epoch end")?,
        })
    }

    /// The sender of transaction `tx_hash`, `None` if the node does not know it.
    pub async fn transaction_sender(&self, tx_hash: TxHash) -> Result<Option<Address>> {
        use alloy::network::TransactionResponse as _;
        self.retry("eth_getTransactionByHash", |c| async move {
            let tx = c
                .provider
                .get_transaction_by_hash(tx_hash)
                .await
                .map_err(ChainError::from_rpc)?;
            Ok(tx.map(|t| t.from()))
        })
        .await
    }

    /// Whether `who` holds the EPOCH MANAGER role of `market` (`isEpochManager`).
    pub async fn is_epoch_manager(&self, market: Address, who: Address) -> Result<bool> {
        self.view(ProtocolState::isEpochManagerCall {
            dataMarket: market,
            account: who,
        })
        .await
    }

    /// The contract owner (`owner()`).
    pub async fn owner(&self) -> Result<Address> {
        self.view(ProtocolState::ownerCall {}).await
    }

    /// Whether `epoch`'s batch submissions are ended (`epochBatchSubmissionsEnded`).
    pub(super) async fn batch_submissions_ended(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<bool> {
        self.view(ProtocolState::epochBatchSubmissionsEndedCall {
            dataMarket: market,
            epochId: U256::from(epoch),
        })
        .await
    }

    /// What is on chain for `epoch` of `market`: release, anchored batches (CID, root, block,
    /// transaction), and whether batch submissions were ended.
    pub async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors> {
        let e = U256::from(epoch);
        let info = self
            .view(ProtocolState::epochDetailsCall {
                dataMarket: market,
                epochId: e,
            })
            .await?;
        let cids = self
            .view(ProtocolState::epochBatchCidsCall {
                dataMarket: market,
                epochId: e,
            })
            .await?;
        let mut batches = Vec::with_capacity(cids.len());
        for cid in cids {
            let b = self.batch_info(market, &cid).await?;
            batches.push(AnchoredBatch {
                batch_cid: cid,
                root: b.finalizedCidsRootHash,
                block: to_u64(b.blockNumber, "block number")?,
                delayed: b.delayed,
                tx_hash: None,
            });
        }
        let blocks: BTreeSet<u64> = batches.iter().map(|b| b.block).collect();
        let txs = self.batch_tx_hashes(market, epoch, &blocks).await?;
        for b in &mut batches {
            b.tx_hash = txs.get(&b.batch_cid).copied();
        }
        let release_block = to_u64(info.releaseBlock, "release block")?;
        Ok(EpochAnchors {
            market,
            epoch_id: epoch,
            release_block: (release_block != 0).then_some(release_block),
            begin: to_u64(info.begin, "epoch begin")?,
            end: to_u64(info.end, "epoch end")?,
            batches,
            ended: info.batchSubmissionsEnded,
        })
    }

    pub(super) async fn batch_info(
        &self,
        market: Address,
        cid: &str,
    ) -> Result<ProtocolState::batchInfoReturn> {
        self.view(ProtocolState::batchInfoCall {
            dataMarket: market,
            batchCid: cid.to_string(),
        })
        .await
    }

    /// Batch CID → anchoring transaction, from the batch events in the given blocks.
    pub(super) async fn batch_tx_hashes(
        &self,
        market: Address,
        epoch: u64,
        blocks: &BTreeSet<u64>,
    ) -> Result<HashMap<String, TxHash>> {
        let mut out = HashMap::new();
        for &block in blocks {
            let filter = Filter::new()
                .address(self.cfg.protocol_state)
                .event_signature(vec![
                    SnapshotBatchSubmitted::SIGNATURE_HASH,
                    DelayedBatchSubmitted::SIGNATURE_HASH,
                ])
                .topic1(market.into_word())
                .topic2(B256::from(U256::from(epoch)))
                .from_block(block)
                .to_block(block);
            for log in self.get_logs(&filter).await? {
                let (Some(tx), Some(cid)) = (log.transaction_hash, batch_cid_of(&log)) else {
                    continue;
                };
                out.insert(cid, tx);
            }
        }
        Ok(out)
    }

    async fn get_logs(&self, filter: &Filter) -> Result<Vec<Log>> {
        self.retry("eth_getLogs", |c| async move {
            c.provider
                .get_logs(filter)
                .await
                .map_err(ChainError::from_rpc)
        })
        .await
    }

    /// The receipt of `tx_hash`, `None` while it is not mined (or no longer, after a reorg).
    pub(super) async fn receipt_once(&self, tx_hash: TxHash) -> Result<Option<TransactionReceipt>> {
        self.retry("eth_getTransactionReceipt", |c| async move {
            c.provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(ChainError::from_rpc)
        })
        .await
    }

    /// Our nonce at the latest block (`pending = false`) or including the node's pool.
    pub(super) async fn nonce(&self, from: Address, pending: bool) -> Result<u64> {
        self.retry("eth_getTransactionCount", |c| async move {
            let q = c.provider.get_transaction_count(from);
            let q = if pending { q.pending() } else { q.latest() };
            q.await.map_err(ChainError::from_rpc)
        })
        .await
    }
}

fn decode_release(log: &Log) -> Result<EpochRelease> {
    let decoded = log
        .log_decode::<EpochReleased>()
        .map_err(|e| ChainError::Decode(format!("EpochReleased: {e}")))?;
    let ev = &decoded.inner.data;
    Ok(EpochRelease {
        market: ev.dataMarketAddress,
        epoch_id: to_u64(ev.epochId, "epoch id")?,
        begin: to_u64(ev.begin, "epoch begin")?,
        end: to_u64(ev.end, "epoch end")?,
        timestamp: to_u64(ev.timestamp, "timestamp")?,
        block_number: log
            .block_number
            .ok_or_else(|| ChainError::Decode("log without block number".into()))?,
        block_hash: log
            .block_hash
            .ok_or_else(|| ChainError::Decode("log without block hash".into()))?,
        tx_hash: log
            .transaction_hash
            .ok_or_else(|| ChainError::Decode("log without transaction".into()))?,
    })
}

fn batch_cid_of(log: &Log) -> Option<String> {
    match log.topic0()? {
        t if *t == SnapshotBatchSubmitted::SIGNATURE_HASH => log
            .log_decode::<SnapshotBatchSubmitted>()
            .ok()
            .map(|l| l.inner.data.batchCid),
        t if *t == DelayedBatchSubmitted::SIGNATURE_HASH => log
            .log_decode::<DelayedBatchSubmitted>()
            .ok()
            .map(|l| l.inner.data.batchCid),
        _ => None,
    }
}

pub(super) fn to_u64(v: U256, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| ChainError::Decode(format!("{what} {v} does not fit in u64")))
}
