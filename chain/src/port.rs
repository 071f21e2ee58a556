//! The chain port ([`sequencer_ports::ChainPort`]) on [`ChainClient`], and how a [`ChainError`]
//! reads as the port's error: the kind the handlers act on, the contract's error name as the
//! code, and the client's own verdict on whether a retry can help.

use alloy::primitives::TxHash;
use async_trait::async_trait;
use sequencer_ports::{
    BatchCall, BatchesOutcome, ChainPort, EndOutcome, EpochAnchors, EpochDetails, EpochRelease,
    ErrorKind, MarketDays, MarketInfo, PortError, ReleaseOutcome, ReleasesPage, RewardsOutcome,
    SentTx, SlotCount, SubmitOutcome, Windows,
};

use crate::error::is_transient;
use crate::{Address, ChainClient, ChainError, Revert, B256};

impl Revert {
    /// The contract's name for this error (`NoBatchSubmitted`, …); `Other` for a revert the ABI
    /// does not know.
    pub fn name(&self) -> &'static str {
        match self {
            Revert::NotOwner(_) => "NotOwner",
            Revert::NotSequencer(_) => "NotSequencer",
            Revert::NotEpochManager(_) => "NotEpochManager",
            Revert::ZeroAddress => "ZeroAddress",
            Revert::UnknownMarket(_) => "UnknownMarket",
            Revert::MarketAlreadyRegistered(_) => "MarketAlreadyRegistered",
            Revert::InvalidEpochSize(_) => "InvalidEpochSize",
            Revert::InvalidEpochRange { .. } => "InvalidEpochRange",
            Revert::EpochNotReleased(_) => "EpochNotReleased",
            Revert::EpochEnded(_) => "EpochEnded",
            Revert::LengthMismatch { .. } => "LengthMismatch",
            Revert::EmptyBatch => "EmptyBatch",
            Revert::EmptyBatchCid => "EmptyBatchCid",
            Revert::BatchAlreadySubmitted(_) => "BatchAlreadySubmitted",
            Revert::ProjectAlreadySubmitted { .. } => "ProjectAlreadySubmitted",
            Revert::InvalidSkip { .. } => "InvalidSkip",
            Revert::NoBatchSubmitted(_) => "NoBatchSubmitted",
            Revert::NotPendingOwner(_) => "NotPendingOwner",
            Revert::InvalidWindow { .. } => "InvalidWindow",
            Revert::InvalidSourceChain(_) => "InvalidSourceChain",
            Revert::InvalidBlockTime(_) => "InvalidBlockTime",
            Revert::InvalidDaySize { .. } => "InvalidDaySize",
            Revert::InvalidDailyQuota(_) => "InvalidDailyQuota",
            Revert::DayNotEnded { .. } => "DayNotEnded",
            Revert::RewardsAlreadyRecorded { .. } => "RewardsAlreadyRecorded",
            Revert::Other(_) => "Other",
        }
    }
}

/// The kind of a chain failure and, for reverts, the contract's error name.
fn classify(e: &ChainError) -> (ErrorKind, Option<&'static str>) {
    match e {
        ChainError::Rpc(t) if is_transient(t) => (ErrorKind::Unavailable, None),
        ChainError::CallBudget { .. } => (ErrorKind::Unavailable, None),
        ChainError::Rpc(_) => {
            // A node's refusal, worded by the node (geth, anvil, hosted RPCs).
            let m = e.to_string().to_ascii_lowercase();
            if m.contains("insufficient funds") {
                (ErrorKind::Funds, None)
            } else if m.contains("nonce too low") || m.contains("nonce too high") {
                (ErrorKind::Nonce, None)
            } else {
                (ErrorKind::Refused, None)
            }
        }
        ChainError::Revert(r) => {
            let kind = match r {
                Revert::NotOwner(_)
                | Revert::NotSequencer(_)
                | Revert::NotEpochManager(_)
                | Revert::NotPendingOwner(_) => ErrorKind::Permission,
                _ => ErrorKind::Reverted,
            };
            (kind, Some(r.name()))
        }
        // Mined and failed without revert data (a racing sender won, out of gas): the contract
        // refused it, but which rule is unknown.
        ChainError::TxFailed(_) => (ErrorKind::Reverted, Some("TxFailed")),
        ChainError::GasAboveCeiling { .. } => (ErrorKind::Refused, Some("GasAboveCeiling")),
        ChainError::BatchInOtherEpoch { .. } => (ErrorKind::Refused, Some("BatchInOtherEpoch")),
        ChainError::ReceiptTimeout(_)
        | ChainError::PendingTimeout { .. }
        | ChainError::ReceiptIncomplete { .. }
        | ChainError::ConfirmationTimeout { .. }
        | ChainError::Reorged(_) => (ErrorKind::Pending, None),
        ChainError::NonceConflict { .. } => (ErrorKind::Nonce, None),
        ChainError::FeeTooLow { .. } => (ErrorKind::Fees, None),
        ChainError::Config(_)
        | ChainError::NoSigner
        | ChainError::Signer(_)
        | ChainError::Settings(_)
        | ChainError::SimulatedSlotsOnPublicChain { .. } => (ErrorKind::Config, None),
        ChainError::Decode(_) => (ErrorKind::Corrupt, None),
    }
}

impl From<ChainError> for PortError {
    /// Keeps the client's verdict on retrying ([`ChainError::is_retryable`]) whatever the kind's
    /// default: the client knows its transport. Except for the operational refusals: an account
    /// out of gas money (funded, it works) and a nonce another writer took (the next try reads
    /// the chain and takes the next one) are retried, never final (issue 16 item 5).
    fn from(e: ChainError) -> Self {
        let (kind, code) = classify(&e);
        let retryable = e.is_retryable() || matches!(kind, ErrorKind::Funds | ErrorKind::Nonce);
        let err = PortError::chain(kind, e.to_string()).with_retryable(retryable);
        match code {
            Some(c) => err.with_code(c),
            None => err,
        }
    }
}

#[async_trait]
impl ChainPort for ChainClient {
    async fn head(&self) -> Result<u64, PortError> {
        Ok(ChainClient::head(self).await?)
    }
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, PortError> {
        Ok(ChainClient::block_hash(self, number).await?)
    }
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, PortError> {
        Ok(ChainClient::block_number(self, hash).await?)
    }
    async fn releases_after(
        &self,
        market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, PortError> {
        Ok(ChainClient::releases_after(self, market, cursor).await?)
    }
    async fn slot_owner(&self, slot: u64) -> Result<Address, PortError> {
        Ok(ChainClient::slot_owner(self, slot).await?)
    }
    async fn is_flagged(&self, market: Address, who: Address) -> Result<bool, PortError> {
        Ok(ChainClient::is_flagged(self, market, who).await?)
    }
    async fn slot_count(&self) -> Result<Option<u64>, PortError> {
        Ok(Some(ChainClient::total_node_count(self).await?))
    }
    async fn windows(&self, market: Address) -> Result<Windows, PortError> {
        Ok(ChainClient::submission_window(self, market).await?)
    }
    async fn epoch_windows(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, PortError> {
        Ok(ChainClient::epoch_windows(self, market, epoch).await?)
    }
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, PortError> {
        Ok(ChainClient::anchored(self, market, epoch).await?)
    }
    async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError> {
        Ok(
            ChainClient::submit_batch(self, market, epoch, batch_cid, project_ids, cids, root)
                .await?,
        )
    }
    async fn end_batch(&self, market: Address, epoch: u64) -> Result<EndOutcome, PortError> {
        Ok(ChainClient::end_batch_submissions(self, market, epoch).await?)
    }

    // ---- Pipelined anchoring (issue 19 item 2)
    async fn submit_batches(
        &self,
        market: Address,
        epoch: u64,
        batches: &[BatchCall],
    ) -> BatchesOutcome {
        let w = ChainClient::submit_batches(self, market, epoch, batches).await;
        BatchesOutcome {
            outcomes: w.outcomes,
            error: w.error.map(PortError::from),
        }
    }

    // ------------------------------------------------------------ epoch releases and days

    fn signer(&self) -> Option<Address> {
        self.signer_address()
    }
    async fn market_info(&self, market: Address) -> Result<MarketInfo, PortError> {
        Ok(ChainClient::market_info(self, market).await?)
    }
    async fn is_epoch_manager(&self, market: Address, who: Address) -> Result<bool, PortError> {
        Ok(ChainClient::is_epoch_manager(self, market, who).await?)
    }
    async fn release_epoch(
        &self,
        market: Address,
        begin: u64,
        end: u64,
    ) -> Result<ReleaseOutcome, PortError> {
        let (tx, epoch_id) = ChainClient::release_epoch(self, market, begin, end).await?;
        // The day rolls over inside the release: its `DayStartedEvent` is in the same
        // transaction. A failure to read it after the release is mined must not read as a
        // failed release (the caller would settle it from the contract and count it as raced):
        // the release is reported, with the day left to the next read.
        let day_started = match ChainClient::day_starts(self, market, tx.block, tx.block).await {
            Ok(starts) => starts
                .into_iter()
                .find(|d| d.tx_hash == tx.tx_hash)
                .map(|d| d.day),
            Err(e) => {
                tracing::warn!(%market, epoch_id, error = %e, "released; could not read whether the release started a day");
                None
            }
        };
        Ok(ReleaseOutcome {
            epoch_id,
            tx_hash: tx.tx_hash,
            block: tx.block,
            day_started,
        })
    }
    async fn skip_epochs(&self, market: Address, new_begin: u64) -> Result<SentTx, PortError> {
        Ok(ChainClient::skip_epochs(self, market, new_begin)
            .await?
            .sent())
    }
    async fn epoch_details(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<EpochDetails>, PortError> {
        Ok(ChainClient::epoch_details(self, market, epoch).await?)
    }
    async fn epoch_release(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<EpochRelease>, PortError> {
        let Some(d) = ChainClient::epoch_details(self, market, epoch).await? else {
            return Ok(None);
        };
        let block = d.release_block;
        Ok(ChainClient::epoch_releases(self, market, block, block)
            .await?
            .into_iter()
            .find(|r| r.epoch_id == epoch))
    }
    async fn transaction_sender(&self, tx: TxHash) -> Result<Option<Address>, PortError> {
        Ok(ChainClient::transaction_sender(self, tx).await?)
    }
    async fn market_days(&self, market: Address) -> Result<MarketDays, PortError> {
        let s = ChainClient::market_settings(self, market).await?;
        Ok(MarketDays {
            day: s.day,
            day_start_epoch: s.day_start_epoch,
            epochs_in_a_day: s.epochs_in_a_day,
            daily_quota: s.settings.daily_snapshot_quota,
        })
    }
    async fn update_rewards(
        &self,
        market: Address,
        day: u64,
        counts: &[SlotCount],
        eligible_nodes: u64,
    ) -> Result<RewardsOutcome, PortError> {
        Ok(ChainClient::update_rewards(self, market, day, counts, eligible_nodes).await?)
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U256;
    use alloy::rpc::json_rpc::ErrorPayload;
    use alloy::transports::{RpcError, TransportErrorKind};

    use super::*;

    fn node(message: &str) -> ChainError {
        ChainError::from_rpc(RpcError::ErrorResp(ErrorPayload {
            code: -32003,
            message: message.to_string().into(),
            data: None,
        }))
    }

    #[test]
    fn chain_errors_keep_their_retryability_and_get_a_kind() {
        let cases: Vec<(ChainError, ErrorKind, Option<&str>)> = vec![
            (
                ChainError::from_rpc(TransportErrorKind::custom_str("connection refused")),
                ErrorKind::Unavailable,
                None,
            ),
            (
                ChainError::Revert(Revert::NoBatchSubmitted(U256::from(3))),
                ErrorKind::Reverted,
                Some("NoBatchSubmitted"),
            ),
            (
                ChainError::Revert(Revert::ProjectAlreadySubmitted {
                    project_id: "p".into(),
                    epoch: U256::from(4),
                }),
                ErrorKind::Reverted,
                Some("ProjectAlreadySubmitted"),
            ),
            (
                ChainError::Revert(Revert::NotSequencer(Address::ZERO)),
                ErrorKind::Permission,
                Some("NotSequencer"),
            ),
            (
                node("insufficient funds for gas * price + value"),
                ErrorKind::Funds,
                None,
            ),
            (node("nonce too low"), ErrorKind::Nonce, None),
            (
                node("nonce too high: address 0x…, tx: 9 state: 7"),
                ErrorKind::Nonce,
                None,
            ),
            (
                node("max fee per gas less than block base fee"),
                ErrorKind::Fees,
                None,
            ),
            (
                ChainError::ReceiptTimeout(TxHash::ZERO),
                ErrorKind::Pending,
                None,
            ),
            (
                ChainError::TxFailed(TxHash::ZERO),
                ErrorKind::Reverted,
                Some("TxFailed"),
            ),
            (
                ChainError::NonceConflict {
                    from: Address::ZERO,
                    message: "x".into(),
                },
                ErrorKind::Nonce,
                None,
            ),
            (ChainError::NoSigner, ErrorKind::Config, None),
            (ChainError::Decode("x".into()), ErrorKind::Corrupt, None),
        ];
        // Operational refusals are never final: funded (or with the other writer gone) the
        // same write goes through.
        assert!(PortError::from(node("insufficient funds for gas * price + value")).is_retryable());
        assert!(PortError::from(node("nonce too low")).is_retryable());
        assert!(
            !PortError::from(ChainError::Revert(Revert::NotSequencer(Address::ZERO)))
                .is_retryable()
        );
        for (e, kind, code) in cases {
            let retryable = e.is_retryable() || matches!(kind, ErrorKind::Funds | ErrorKind::Nonce);
            let text = e.to_string();
            let p = PortError::from(e);
            assert_eq!(p.kind(), &kind, "{text}");
            assert_eq!(p.code(), code, "{text}");
            assert_eq!(p.is_retryable(), retryable, "{text}");
            assert!(p.message().contains(&text), "{p}");
        }
    }
}
