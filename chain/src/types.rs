//! Values the chain port hands to the handlers.

use alloy::primitives::{Address, BlockHash, TxHash, B256};
use serde::{Deserialize, Serialize, Serializer};

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

/// Outcome of [`crate::ChainClient::submit_batch`].
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

/// Outcome of [`crate::ChainClient::end_batch_submissions`].
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

/// A mined transaction of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxOutcome {
    /// Transaction hash.
    pub tx_hash: TxHash,
    /// Block number.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Created contract, for deployments.
    pub contract_address: Option<Address>,
}
