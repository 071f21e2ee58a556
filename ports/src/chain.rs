//! The chain port: what the handlers read from and write to the protocol state contract, and the
//! values it answers with. The adapter is `sequencer_chain::ChainClient` (alloy over JSON-RPC, a
//! local key or KMS), which implements [`ChainPort`] in its own crate; tests use an in-memory
//! chain (`sequencer_testsupport::MemChain`).

use alloy_primitives::{Address, BlockHash, TxHash, B256};
use async_trait::async_trait;
use serde::{Deserialize, Serialize, Serializer};

use crate::PortError;

/// The protocol chain.
#[async_trait]
pub trait ChainPort: Send + Sync {
    /// Head block number.
    async fn head(&self) -> Result<u64, PortError>;
    /// Hash of block `number`, `None` if it does not exist yet.
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, PortError>;
    /// Number of the block with this hash, `None` if unknown.
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, PortError>;
    /// Confirmed `EpochReleased` events of `market` after block `cursor`.
    async fn releases_after(&self, market: Address, cursor: u64)
        -> Result<ReleasesPage, PortError>;
    /// The snapshotter of `slot` (zero if none).
    async fn slot_owner(&self, slot: u64) -> Result<Address, PortError>;
    /// Whether `who` is flagged on `market`.
    async fn is_flagged(&self, market: Address, who: Address) -> Result<bool, PortError>;
    /// How many slots the contract has given out (`getTotalNodeCount()`: the highest slot id
    /// ever assigned; slots are numbered from 1, so `1..=this` covers every slot), `None` when
    /// the adapter cannot tell (then callers check no slot range). Verify rejects a slot id above
    /// it before any other chain call (docs/protocol.md §5).
    async fn slot_count(&self) -> Result<Option<u64>, PortError> {
        Ok(None)
    }
    /// [`Self::slot_owner`], from a cache only if its answer is younger than `max_age`: what a
    /// caching adapter serves before refusing a signer (a slot just given to a new snapshotter
    /// is seen within `max_age`, not the cache's lifetime). Uncached ports read the chain.
    async fn slot_owner_fresh(
        &self,
        slot: u64,
        max_age: std::time::Duration,
    ) -> Result<Address, PortError> {
        let _ = max_age;
        self.slot_owner(slot).await
    }
    /// [`Self::slot_count`], from a cache only if its answer is younger than `max_age` (a slot
    /// just assigned above the cached count is in range within `max_age`).
    async fn slot_count_fresh(
        &self,
        max_age: std::time::Duration,
    ) -> Result<Option<u64>, PortError> {
        let _ = max_age;
        self.slot_count().await
    }
    /// The market's windows, in blocks: what epochs released from now on get.
    async fn windows(&self, market: Address) -> Result<Windows, PortError>;
    /// The windows `epoch` was released under (its deadlines, whatever the market's windows
    /// became since), `None` when the contract does not keep them (the caller falls back to
    /// [`Self::windows`]) or the epoch is not released.
    async fn epoch_windows(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, PortError>;
    /// What is on chain for an epoch (release block, anchored batches, ended).
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, PortError>;
    /// Anchors one batch exactly once (`AlreadyAnchored` when it is on chain).
    async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError>;
    /// Ends an epoch's batch submissions exactly once.
    async fn end_batch(&self, market: Address, epoch: u64) -> Result<EndOutcome, PortError>;

    // ---- Pipelined anchoring (issue 19 item 2) ---------------------------------------------

    /// Anchors several batches of one epoch, each exactly once, in order, without waiting for
    /// one batch's receipt before the next is sent (the chain adapter sends them with
    /// consecutive nonces, then confirms them all). The chain is read before anything is sent:
    /// a batch on chain already is `AlreadyAnchored`. Sending stops at the first batch that
    /// fails; what was sent is still confirmed. `endBatchSubmissions` is not part of it: the
    /// caller ends the epoch once every batch is confirmed.
    ///
    /// The default anchors them one at a time with [`Self::submit_batch`].
    async fn submit_batches(
        &self,
        market: Address,
        epoch: u64,
        batches: &[BatchCall],
    ) -> BatchesOutcome {
        let mut out = BatchesOutcome {
            outcomes: Vec::with_capacity(batches.len()),
            error: None,
        };
        for b in batches {
            match self
                .submit_batch(market, epoch, &b.batch_cid, &b.project_ids, &b.cids, b.root)
                .await
            {
                Ok(o) => out.outcomes.push(Some(o)),
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        out.outcomes.resize(batches.len(), None);
        out
    }
    // ------------------------------------------------------------ epoch releases and days
    // What the epoch manager (`sequencer_handlers::epoch_manager`) and the daily rewards commit
    // (`sequencer_handlers::rewards`) need. The source chain's head is `head()` of the source
    // chain's own adapter (a second `ChainPort`, or this one when the market's source chain is
    // the protocol chain).

    /// The address this adapter signs with, `None` when it is read-only.
    fn signer(&self) -> Option<Address>;
    /// A market's registration and epoch counters (`dataMarketInfo`).
    async fn market_info(&self, market: Address) -> Result<MarketInfo, PortError>;
    /// Whether `who` holds the EPOCH MANAGER role of `market` (`isEpochManager`).
    async fn is_epoch_manager(&self, market: Address, who: Address) -> Result<bool, PortError>;
    /// Releases epoch `[begin, end]` of `market` (`releaseEpoch`, epoch manager only), once: the
    /// writer waits for a pending transaction of our key before sending and never replaces it.
    /// The contract's contiguity check refuses a second release (`InvalidEpochRange`).
    async fn release_epoch(
        &self,
        market: Address,
        begin: u64,
        end: u64,
    ) -> Result<ReleaseOutcome, PortError>;
    /// Skips whole epochs so that the next begins at `new_begin` (`skipEpochs`).
    async fn skip_epochs(&self, market: Address, new_begin: u64) -> Result<SentTx, PortError>;
    /// Epoch `epoch` as the contract stores it (`epochDetails`), `None` when never released.
    async fn epoch_details(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<EpochDetails>, PortError>;
    /// The `EpochReleased` event of `epoch` (its block and transaction), `None` when never
    /// released.
    async fn epoch_release(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<EpochRelease>, PortError>;
    /// The sender of a transaction, `None` when the node does not know it.
    async fn transaction_sender(&self, tx: TxHash) -> Result<Option<Address>, PortError>;
    /// The market's day and rewards settings (`marketSettings`).
    async fn market_days(&self, market: Address) -> Result<MarketDays, PortError>;
    /// Records an ended day's per-slot counts (`updateRewards`, SEQUENCER only), exactly once
    /// per (market, slot, day): reads `rewardsRecorded` first and sends only what is missing;
    /// the contract emits `DailyTaskCompletedEvent` for each slot at or above the quota.
    async fn update_rewards(
        &self,
        market: Address,
        day: u64,
        counts: &[SlotCount],
        eligible_nodes: u64,
    ) -> Result<RewardsOutcome, PortError>;
}

/// Serializes an address EIP-55 checksummed (serde's default for [`Address`] is lower case),
/// like every address the command line prints. Deserializing accepts either case.
pub fn checksummed<S: Serializer>(a: &Address, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&a.to_checksum(None))
}

/// [`checksummed`] for `(slot, address)` pairs.
pub fn checksummed_slots<S: Serializer>(v: &[(u64, Address)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (slot, a) in v {
        seq.serialize_element(&(slot, a.to_checksum(None)))?;
    }
    seq.end()
}

/// One `EpochReleased` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochRelease {
    /// The data market.
    #[serde(serialize_with = "checksummed")]
    pub market: Address,
    /// Epoch id (starts at 1).
    pub epoch_id: u64,
    /// First block of the epoch (source chain numbering, as released).
    pub begin: u64,
    /// Last block of the epoch.
    pub end: u64,
    /// `block.timestamp` of the release.
    pub timestamp: u64,
    /// The protocol-chain block R that holds the release: the window opens here.
    pub block_number: u64,
    /// Hash of block R (lets a caller re-check it is still canonical).
    pub block_hash: BlockHash,
    /// The release transaction.
    pub tx_hash: TxHash,
}

/// Releases found after a cursor, and the cursor to pass next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasesPage {
    /// Releases in blocks `(cursor, next_cursor]`, in chain order.
    pub releases: Vec<EpochRelease>,
    /// The highest block scanned (head − confirmations); unchanged when nothing is safe yet.
    pub next_cursor: u64,
}

/// A market's windows, in protocol-chain blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    /// `snapshotSubmissionWindow(market)`: submissions for epoch E carry a header in `[R, R + this]`.
    pub snapshot_blocks: u64,
    /// `batchSubmissionWindow(market)`: batches after `R + this` are recorded as delayed.
    pub batch_blocks: u64,
}

/// Outcome of [`ChainPort::submit_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SubmitOutcome {
    /// We sent the transaction and it was mined.
    Anchored {
        /// Our transaction.
        tx_hash: TxHash,
        /// Its block.
        block: u64,
        /// Gas it used.
        gas_used: u64,
        /// Past the batch window: `DelayedBatchSubmitted` was emitted.
        delayed: bool,
    },
    /// The batch CID was on chain already for this epoch; nothing was sent.
    AlreadyAnchored {
        /// The transaction that anchored it, when its log was found.
        tx_hash: Option<TxHash>,
        /// Block it was anchored in.
        block: u64,
        /// The root recorded with it.
        root: B256,
        /// Whether it was recorded as delayed.
        delayed: bool,
    },
}

/// Outcome of [`ChainPort::end_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EndOutcome {
    /// We sent `endBatchSubmissions` and it was mined.
    Ended {
        /// Our transaction.
        tx_hash: TxHash,
        /// Its block.
        block: u64,
    },
    /// The epoch's batch submissions were ended already; nothing was sent.
    AlreadyEnded,
}

/// A batch anchored on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredBatch {
    /// The batch CID.
    pub batch_cid: String,
    /// `finalizedCidsRootHash` recorded with it.
    pub root: B256,
    /// Block it was anchored in.
    pub block: u64,
    /// Recorded as delayed (past the batch window).
    pub delayed: bool,
    /// The anchoring transaction, when its log was found.
    pub tx_hash: Option<TxHash>,
}

/// What is on chain for one epoch of a market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochAnchors {
    /// The market.
    #[serde(serialize_with = "checksummed")]
    pub market: Address,
    /// The epoch.
    pub epoch_id: u64,
    /// Release block R, `None` when the epoch was never released.
    pub release_block: Option<u64>,
    /// Epoch range `[begin, end]` as released.
    pub begin: u64,
    /// Last block of the epoch.
    pub end: u64,
    /// Batches in submission order.
    pub batches: Vec<AnchoredBatch>,
    /// `endBatchSubmissions` was called.
    pub ended: bool,
}

impl EpochAnchors {
    /// The anchored batch with this CID, if any.
    pub fn batch(&self, cid: &str) -> Option<&AnchoredBatch> {
        self.batches.iter().find(|b| b.batch_cid == cid)
    }
}

// ---- Pipelined anchoring (issue 19 item 2) -------------------------------------------------

/// One batch for [`ChainPort::submit_batches`]: the arguments of `submitSubmissionBatch`
/// besides the market and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCall {
    /// The batch CID.
    pub batch_cid: String,
    /// Its project ids, sorted.
    pub project_ids: Vec<String>,
    /// Finalized CIDs, parallel to `project_ids`.
    pub cids: Vec<String>,
    /// `finalizedCidsRootHash`.
    pub root: B256,
}

/// What [`ChainPort::submit_batches`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchesOutcome {
    /// Per batch, in call order: anchored (confirmed) or found on chain; `None` when nothing of
    /// it is known to be on chain (not sent, or sent and not confirmed: a retry reads the
    /// chain first).
    pub outcomes: Vec<Option<SubmitOutcome>>,
    /// Why the rest stopped, if something did.
    pub error: Option<PortError>,
}

impl BatchesOutcome {
    /// Every batch confirmed on chain, and no error.
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.outcomes.iter().all(Option::is_some)
    }
}

// ---------------------------------------------------------------- epoch releases and days

/// A market's registration and epoch counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarketInfo {
    /// Registered at all.
    pub registered: bool,
    /// Epoch size in source-chain blocks.
    pub epoch_size: u64,
    /// Windows in blocks.
    pub windows: Windows,
    /// Last released epoch id (0: none).
    pub current_epoch: u64,
    /// Last block of the last released epoch (or of the last skip).
    pub last_epoch_end: u64,
}

/// One of our transactions, mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentTx {
    /// The transaction.
    pub tx_hash: TxHash,
    /// Its block.
    pub block: u64,
    /// Gas it used.
    pub gas_used: u64,
}

/// What [`ChainPort::release_epoch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReleaseOutcome {
    /// The released epoch's id.
    pub epoch_id: u64,
    /// Our transaction.
    pub tx_hash: TxHash,
    /// Its block: the epoch's release block.
    pub block: u64,
    /// The day this release started (`DayStartedEvent` in the same transaction), if it did.
    pub day_started: Option<u64>,
}

/// An epoch as the contract stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EpochDetails {
    /// Epoch id.
    pub epoch_id: u64,
    /// First source-chain block.
    pub begin: u64,
    /// Last source-chain block.
    pub end: u64,
    /// Protocol-chain block of the release.
    pub release_block: u64,
    /// The market's day the epoch belongs to.
    pub day: u64,
    /// `endBatchSubmissions` was called.
    pub ended: bool,
}

/// A market's day and rewards settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarketDays {
    /// `dayCounter`: the current day, from 1.
    pub day: u64,
    /// First epoch id of the current day.
    pub day_start_epoch: u64,
    /// `epochsInADay`.
    pub epochs_in_a_day: u64,
    /// `dailySnapshotQuota`: eligible submissions a slot needs in a day.
    pub daily_quota: u64,
}

/// One slot's count for a day, as `updateRewards` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotCount {
    /// Slot id.
    pub slot: u64,
    /// Its eligible submissions over the day.
    pub submissions: u64,
}

/// What [`ChainPort::update_rewards`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RewardsOutcome {
    /// The day.
    pub day: u64,
    /// Slots our transactions recorded.
    pub recorded: Vec<u64>,
    /// Slots found recorded already (by an earlier call, or another sender); not sent again.
    pub already: Vec<u64>,
    /// `DailyTaskCompletedEvent`s our transactions emitted: (slot, snapshotter).
    #[serde(serialize_with = "checksummed_slots")]
    pub completed: Vec<(u64, Address)>,
    /// Our transactions, in order.
    pub txs: Vec<SentTx>,
}
