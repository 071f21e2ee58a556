//! The chain port: what the handlers read from and write to the protocol state contract. The
//! adapter is `sequencer_chain::ChainClient` (alloy over JSON-RPC, a local key or KMS); its types
//! are the port's.

use async_trait::async_trait;
use sequencer_chain::{
    Address, ChainClient, EndOutcome, EpochAnchors, ReleasesPage, SubmitOutcome, Windows, B256,
};

pub use sequencer_chain::ChainError;

/// The protocol chain.
#[async_trait]
pub trait ChainPort: Send + Sync {
    /// Head block number.
    async fn head(&self) -> Result<u64, ChainError>;
    /// Hash of block `number`, `None` if it does not exist yet.
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError>;
    /// Number of the block with this hash, `None` if unknown.
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, ChainError>;
    /// Confirmed `EpochReleased` events of `market` after block `cursor`.
    async fn releases_after(
        &self,
        market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, ChainError>;
    /// The snapshotter of `slot` (zero if none).
    async fn slot_owner(&self, slot: u64) -> Result<Address, ChainError>;
    /// Whether `who` is flagged on `market`.
    async fn is_flagged(&self, market: Address, who: Address) -> Result<bool, ChainError>;
    /// The market's windows, in blocks: what epochs released from now on get.
    async fn windows(&self, market: Address) -> Result<Windows, ChainError>;
    /// The windows `epoch` was released under (its deadlines, whatever the market's windows
    /// became since), `None` when the contract does not keep them (the caller falls back to
    /// [`Self::windows`]) or the epoch is not released.
    async fn epoch_windows(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, ChainError>;
    /// What is on chain for an epoch (release block, anchored batches, ended).
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, ChainError>;
    /// Anchors one batch exactly once (`AlreadyAnchored` when it is on chain).
    async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, ChainError>;
    /// Ends an epoch's batch submissions exactly once.
    async fn end_batch(&self, market: Address, epoch: u64) -> Result<EndOutcome, ChainError>;
}

#[async_trait]
impl ChainPort for ChainClient {
    async fn head(&self) -> Result<u64, ChainError> {
        ChainClient::head(self).await
    }
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        ChainClient::block_hash(self, number).await
    }
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, ChainError> {
        ChainClient::block_number(self, hash).await
    }
    async fn releases_after(
        &self,
        market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, ChainError> {
        ChainClient::releases_after(self, market, cursor).await
    }
    async fn slot_owner(&self, slot: u64) -> Result<Address, ChainError> {
        ChainClient::slot_owner(self, slot).await
    }
    async fn is_flagged(&self, market: Address, who: Address) -> Result<bool, ChainError> {
        ChainClient::is_flagged(self, market, who).await
    }
    async fn windows(&self, market: Address) -> Result<Windows, ChainError> {
        ChainClient::submission_window(self, market).await
    }
    async fn epoch_windows(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, ChainError> {
        ChainClient::epoch_windows(self, market, epoch).await
    }
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, ChainError> {
        ChainClient::anchored(self, market, epoch).await
    }
    async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, ChainError> {
        ChainClient::submit_batch(self, market, epoch, batch_cid, project_ids, cids, root).await
    }
    async fn end_batch(&self, market: Address, epoch: u64) -> Result<EndOutcome, ChainError> {
        ChainClient::end_batch_submissions(self, market, epoch).await
    }
}
