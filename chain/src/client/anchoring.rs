//! Anchoring: what `submitSubmissionBatch` and `endBatchSubmissions` mean on chain, and how a
//! write of them is made exactly once on top of the transaction engine (`engine.rs`): the chain
//! is read before anything is sent ([`BatchOnChain`]: the batch CID recorded for its epoch;
//! [`EpochEnded`]), a batch found there is reported `AlreadyAnchored` (with its block, root and
//! transaction) and not sent, an epoch found ended `AlreadyEnded`, and a batch CID recorded for
//! another epoch is the typed `BatchInOtherEpoch`.

use std::future::Future;

use alloy::{
    network::ReceiptResponse,
    primitives::{Address, Bytes, TxHash, TxKind, B256, U256},
    sol_types::{SolCall, SolEvent},
};
use tracing::info;

use super::{
    engine::{block_of, Call, Effect, Written},
    reads::to_u64,
    ChainClient, Result,
};
use crate::{
    bindings::ProtocolState::{self, BatchSubmissionsCompleted, DelayedBatchSubmitted},
    types::{BatchCall, BatchesWritten, EndOutcome, SubmitOutcome},
    ChainError,
};

/// `cid` recorded as a batch of `epoch` of `market`.
pub(super) struct BatchOnChain<'a> {
    pub(super) market: Address,
    pub(super) epoch: u64,
    pub(super) cid: &'a str,
}

impl Effect for BatchOnChain<'_> {
    /// Always [`SubmitOutcome::AlreadyAnchored`].
    type Found = SubmitOutcome;

    fn find<'a>(
        &'a self,
        c: &'a ChainClient,
    ) -> impl Future<Output = Result<Option<SubmitOutcome>>> + Send + 'a {
        c.find_batch(self.market, self.epoch, self.cid)
    }

    fn block_of(found: &SubmitOutcome) -> Option<(u64, Option<TxHash>)> {
        match found {
            SubmitOutcome::AlreadyAnchored { block, tx_hash, .. } => Some((*block, *tx_hash)),
            SubmitOutcome::Anchored { block, tx_hash, .. } => Some((*block, Some(*tx_hash))),
        }
    }
}

/// `epoch` of `market` ended (`endBatchSubmissions`): a flag, without a block.
pub(super) struct EpochEnded {
    pub(super) market: Address,
    pub(super) epoch: u64,
}

impl Effect for EpochEnded {
    type Found = ();

    async fn find(&self, c: &ChainClient) -> Result<Option<()>> {
        Ok(c.batch_submissions_ended(self.market, self.epoch)
            .await?
            .then_some(()))
    }

    fn block_of(_: &()) -> Option<(u64, Option<TxHash>)> {
        None
    }
}

impl ChainClient {
    /// Anchors one batch, exactly once: if `batch_cid` is already recorded for this epoch (by us
    /// before a crash, or by a transaction still pending from our key, which is waited for) it
    /// returns [`SubmitOutcome::AlreadyAnchored`] and sends nothing. Reverts come back typed
    /// ([`crate::Revert`]) before anything is sent. Either outcome is returned only once its
    /// block is `CHAIN_CONFIRMATIONS` deep and still canonical.
    pub async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome> {
        let effect = BatchOnChain {
            market,
            epoch,
            cid: batch_cid,
        };
        let input = submit_input(market, epoch, batch_cid, project_ids, cids, root);
        let to = TxKind::Call(self.cfg.protocol_state);
        let written = self.write(&effect, to, input).await?;
        outcome(market, epoch, batch_cid, written)
    }

    /// Anchors an epoch's batches, each exactly once, in order, with consecutive nonces and
    /// without waiting for one batch's receipt before the next is sent (at most
    /// `MAX_PENDING_TXS` unmined); then waits until all are `CHAIN_CONFIRMATIONS` deep and
    /// still canonical. Every batch is looked up on chain first, after anything our key left
    /// pending has been mined, and a batch found there is `AlreadyAnchored` and not sent.
    /// Sending stops at the first batch that fails (a revert, typed, before anything of it is
    /// sent; a nonce taken by another writer; a receipt timeout); what was sent is still
    /// confirmed and reported. A batch reorged out before its confirmations is looked up and
    /// sent again if missing. `endBatchSubmissions` is not part of it: end the epoch once
    /// every batch is confirmed.
    pub async fn submit_batches(
        &self,
        market: Address,
        epoch: u64,
        batches: &[BatchCall],
    ) -> BatchesWritten {
        let effects: Vec<BatchOnChain<'_>> = batches
            .iter()
            .map(|b| BatchOnChain {
                market,
                epoch,
                cid: &b.batch_cid,
            })
            .collect();
        let to = TxKind::Call(self.cfg.protocol_state);
        let calls: Vec<Call<'_, BatchOnChain<'_>>> = batches
            .iter()
            .zip(&effects)
            .map(|(b, effect)| Call {
                effect,
                to,
                input: submit_input(market, epoch, &b.batch_cid, &b.project_ids, &b.cids, b.root),
            })
            .collect();
        let many = self.write_many(&calls).await;
        let mut out = BatchesWritten {
            outcomes: Vec::with_capacity(batches.len()),
            error: many.error,
        };
        for (b, w) in batches.iter().zip(many.written) {
            match w
                .map(|w| outcome(market, epoch, &b.batch_cid, w))
                .transpose()
            {
                Ok(o) => out.outcomes.push(o),
                Err(e) => {
                    out.outcomes.push(None);
                    out.error.get_or_insert(e);
                }
            }
        }
        out
    }

    /// `AlreadyAnchored` for `cid` if the contract records it for `epoch`.
    async fn find_batch(
        &self,
        market: Address,
        epoch: u64,
        cid: &str,
    ) -> Result<Option<SubmitOutcome>> {
        let b = self.batch_info(market, cid).await?;
        let anchored_epoch = to_u64(b.epochId, "epoch id")?;
        if anchored_epoch == 0 {
            return Ok(None);
        }
        if anchored_epoch != epoch {
            return Err(ChainError::BatchInOtherEpoch {
                batch_cid: cid.to_string(),
                epoch,
                anchored_epoch,
            });
        }
        let block = to_u64(b.blockNumber, "block number")?;
        let txs = self
            .batch_tx_hashes(market, epoch, &std::collections::BTreeSet::from([block]))
            .await?;
        Ok(Some(SubmitOutcome::AlreadyAnchored {
            tx_hash: txs.get(cid).copied(),
            block,
            root: b.finalizedCidsRootHash,
            delayed: b.delayed,
        }))
    }

    /// Ends `epoch`'s batch submissions, once: [`EndOutcome::AlreadyEnded`] when it was.
    pub async fn end_batch_submissions(&self, market: Address, epoch: u64) -> Result<EndOutcome> {
        let call = ProtocolState::endBatchSubmissionsCall {
            dataMarket: market,
            epochId: U256::from(epoch),
        };
        let to = TxKind::Call(self.cfg.protocol_state);
        match self
            .write(&EpochEnded { market, epoch }, to, call.abi_encode().into())
            .await?
        {
            Written::Already(_) => Ok(EndOutcome::AlreadyEnded),
            Written::Mined(receipt) => {
                debug_assert!(receipt
                    .inner
                    .logs()
                    .iter()
                    .any(|l| l.topic0() == Some(&BatchSubmissionsCompleted::SIGNATURE_HASH)));
                Ok(EndOutcome::Ended {
                    tx_hash: receipt.transaction_hash(),
                    block: block_of(&receipt)?,
                })
            }
        }
    }
}

/// The calldata of `submitSubmissionBatch`.
fn submit_input(
    market: Address,
    epoch: u64,
    batch_cid: &str,
    project_ids: &[String],
    cids: &[String],
    root: B256,
) -> Bytes {
    ProtocolState::submitSubmissionBatchCall {
        dataMarket: market,
        batchCid: batch_cid.to_string(),
        epochId: U256::from(epoch),
        projectIds: project_ids.to_vec(),
        snapshotCids: cids.to_vec(),
        finalizedCidsRootHash: root,
    }
    .abi_encode()
    .into()
}

/// What a write of a batch did, as the port tells it.
fn outcome(
    market: Address,
    epoch: u64,
    batch_cid: &str,
    written: Written<SubmitOutcome>,
) -> Result<SubmitOutcome> {
    match written {
        Written::Already(done) => {
            info!(%market, epoch, batch_cid, "batch already anchored; not sending");
            Ok(done)
        }
        Written::Mined(receipt) => {
            let delayed = receipt
                .inner
                .logs()
                .iter()
                .any(|l| l.topic0() == Some(&DelayedBatchSubmitted::SIGNATURE_HASH));
            let tx_hash = receipt.transaction_hash();
            let block = block_of(&receipt)?;
            info!(%market, epoch, batch_cid, %tx_hash, block, delayed, "batch anchored");
            Ok(SubmitOutcome::Anchored {
                tx_hash,
                block,
                gas_used: receipt.gas_used(),
                delayed,
            })
        }
    }
}
