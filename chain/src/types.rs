//! Values of the chain client. Those the chain port speaks ([`EpochRelease`], [`Windows`],
//! [`EpochAnchors`], [`SubmitOutcome`], …) are the port's own (`sequencer_ports::chain`),
//! re-exported here so callers of the client need not know the port crate.

use alloy::primitives::{Address, TxHash};
use serde::Serialize;

pub use sequencer_ports::chain::{
    checksummed, checksummed_slots, AnchoredBatch, BatchCall, EndOutcome, EpochAnchors,
    EpochDetails, EpochRelease, MarketDays, MarketInfo, ReleaseOutcome, ReleasesPage,
    RewardsOutcome, SentTx, SlotCount, SubmitOutcome, Windows,
};

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

/// What [`crate::ChainClient::submit_batches`] did: per batch, in call order, its outcome
/// (`None`: nothing of it known to be on chain), and the error that stopped the rest.
#[derive(Debug)]
pub struct BatchesWritten {
    /// Per batch.
    pub outcomes: Vec<Option<SubmitOutcome>>,
    /// Why sending stopped, if it did.
    pub error: Option<crate::ChainError>,
}

impl TxOutcome {
    /// The transaction and its block, as the chain port reports a mined transaction of ours.
    pub fn sent(&self) -> SentTx {
        SentTx {
            tx_hash: self.tx_hash,
            block: self.block,
            gas_used: self.gas_used,
        }
    }
}
