//! The transaction engine: one writer per client that sends a call exactly as far as it must:
//! nonce, fees, replacement of a stuck transaction under a fee ceiling, confirmation depth with
//! a reorg re-check. It knows nothing of batches or epochs: what a write must not do twice is
//! an [`Effect`] the caller passes (the anchoring semantics are in `anchoring.rs`).
//!
//! One write, holding the client's writer lock:
//!
//! 1. Wait until nothing from our key is pending (a predecessor's transaction is waited for,
//!    not replaced), unless it is this same write left in flight by an earlier call of this
//!    client, which is resumed (replaced with bumped fees if it is still stuck).
//! 2. Ask the chain whether the effect is there already ([`Effect::find`]); if so report that,
//!    once it is confirmed.
//! 3. Estimate gas (a revert comes back typed, nothing is sent), sign with the nonce and fees
//!    capped at `MAX_FEE_PER_GAS_CEILING_WEI`, send; "already known" is success.
//! 4. Poll for a receipt of any transaction sent for this nonce. After `TX_REPLACE_AFTER_MS`
//!    without one, check the effect again (the original may have landed meanwhile), then sign a
//!    replacement with the same nonce and both fees raised by `FEE_BUMP_PERCENT` (at least the
//!    10 % nodes require). When the ceiling leaves no room, do not replace: keep waiting, and
//!    after `RECEIPT_TIMEOUT_SECS` report `ReceiptTimeout` (or the node's fee refusal when it
//!    never accepted one). Fee refusals (`max fee per gas less than block base fee`,
//!    `replacement transaction underpriced`) are re-priced: a refused replacement like a stuck
//!    one; a refused send with nothing of ours pooled after one poll, raising only the max fee
//!    (the tip stays the node's estimate), up to the ceiling. After any error the
//!    effect is checked before the error is returned.
//! 5. Wait until the receipt's block is `CHAIN_CONFIRMATIONS` deep, then re-check that the
//!    receipt is still there in the same, canonical block. If it was reorged out, start again
//!    at 1 (the effect check makes the resend idempotent).

use std::time::{Duration, Instant};

use std::future::Future;

use alloy::{
    eips::{eip2718::Encodable2718, BlockId},
    network::{EthereumWallet, NetworkTransactionBuilder, ReceiptResponse, TransactionBuilder},
    primitives::{Address, Bytes, TxHash, TxKind},
    providers::Provider,
    rpc::types::{TransactionReceipt, TransactionRequest},
    sol_types::SolCall,
};
use tracing::{debug, info, warn};

use super::{
    fees::{self, Fees},
    ChainClient, Result,
};
use crate::{bindings::ProtocolState, types::TxOutcome, ChainError};

/// How often one write starts over after its transaction was reorged out. Each round already
/// waited `CHAIN_CONFIRMATIONS` blocks; a chain that drops the same write three times in a row
/// is not one to keep sending to from inside one call: the retryable `Reorged` error puts the
/// message back on its queue, and the retry starts from what is on chain then.
const MAX_REORG_ROUNDS: u32 = 3;

/// What the writer did, since the client was built (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterCounters {
    /// Distinct signed transactions the node accepted.
    pub sent: u64,
    /// Re-pricings with the same nonce (a stuck transaction replaced, or a refused one
    /// re-signed with higher fees).
    pub replaced: u64,
    /// Sends the node refused for their fees (below base fee, underpriced).
    pub fee_refused: u64,
    /// Times a replacement was due but the fee ceiling left no room for it.
    pub at_ceiling: u64,
    /// Writes whose transaction (or found effect) left the canonical chain before it was
    /// confirmed, and were started again.
    pub reorged: u64,
    /// Highest max fee per gas ever signed, in wei.
    pub max_fee_signed: u128,
}

/// A transaction this client sent and saw no receipt for before giving up
/// (`ReceiptTimeout`); the next identical write resumes it instead of waiting for it.
pub(super) struct InFlight {
    nonce: u64,
    to: TxKind,
    input: Bytes,
    gas_limit: u64,
    fees: Fees,
    sent: Vec<TxHash>,
}

/// The on-chain effect a write must not produce twice, and how to find it: the engine asks
/// before it sends, before each replacement and after any error, and never sends while it is
/// there.
pub(super) trait Effect: Sync {
    /// What the chain says about the effect when it is there.
    type Found: Send + Sync + std::fmt::Debug;

    /// The effect on chain, `None` when it is not there.
    fn find<'a>(
        &'a self,
        c: &'a ChainClient,
    ) -> impl Future<Output = Result<Option<Self::Found>>> + Send + 'a;

    /// The block a found effect is in (its confirmations are waited for there, and it must
    /// still be in that block afterwards) and the transaction that made it, when known;
    /// `None` for an effect the chain keeps without a block (a flag), which is read once more.
    fn block_of(found: &Self::Found) -> Option<(u64, Option<TxHash>)>;
}

/// No effect beyond the nonce (admin calls, deployments).
pub(super) struct Unguarded;

impl Effect for Unguarded {
    type Found = std::convert::Infallible;

    fn find<'a>(
        &'a self,
        _c: &'a ChainClient,
    ) -> impl Future<Output = Result<Option<Self::Found>>> + Send + 'a {
        std::future::ready(Ok(None))
    }

    fn block_of(found: &Self::Found) -> Option<(u64, Option<TxHash>)> {
        match *found {}
    }
}

/// How a write ended.
#[derive(Debug)]
pub(super) enum Written<F> {
    /// Our transaction, mined, confirmed.
    Mined(Box<TransactionReceipt>),
    /// The effect was on chain already (confirmed); nothing of ours was needed.
    Already(F),
}

enum Accepted {
    Yes,
    /// The node says the nonce is used: by one of ours, or someone else's.
    NonceTaken(String),
}

impl ChainClient {
    /// What the writer did so far.
    pub fn writer_counters(&self) -> WriterCounters {
        self.counters.lock().map(|c| *c).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut WriterCounters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }

    /// Sends any call to the ProtocolState contract through the single writer (admin calls:
    /// roles, markets, slots, epoch releases).
    pub async fn send_call<C: SolCall>(&self, call: &C) -> Result<TxOutcome> {
        self.send_raw(
            TxKind::Call(self.cfg.protocol_state),
            call.abi_encode().into(),
        )
        .await
    }

    /// Deploys a new ProtocolState (owned by our key) from the committed bytecode.
    pub async fn deploy_protocol_state(&self) -> Result<TxOutcome> {
        let out = self
            .send_raw(TxKind::Create, ProtocolState::BYTECODE.clone())
            .await?;
        if out.contract_address.is_none() {
            return Err(ChainError::Decode(
                "deployment receipt without a contract address".into(),
            ));
        }
        Ok(out)
    }

    async fn send_raw(&self, to: TxKind, input: Bytes) -> Result<TxOutcome> {
        match self.write(&Unguarded, to, input).await? {
            Written::Mined(r) => Ok(TxOutcome {
                tx_hash: r.transaction_hash(),
                block: block_of(&r)?,
                gas_used: r.gas_used(),
                contract_address: r.contract_address(),
            }),
            Written::Already(never) => match never {},
        }
    }

    /// One write, steps 1–5 of the module docs.
    pub(super) async fn write<E: Effect>(
        &self,
        effect: &E,
        to: TxKind,
        input: Bytes,
    ) -> Result<Written<E::Found>> {
        let (wallet, from) = self.wallet()?;
        let mut inflight = self.writer.lock().await;
        let mut last = TxHash::ZERO;
        for round in 0..=MAX_REORG_ROUNDS {
            if round > 0 {
                self.count(|c| c.reorged += 1);
                warn!(%last, round, "write reorged out before its confirmations; starting again");
            }
            // Resume our own stuck transaction of this same write, or wait for what is pending.
            let resume = match inflight.take() {
                Some(f) if f.to == to && f.input == input => {
                    let latest = self.nonce(from, false).await?;
                    (latest == f.nonce).then_some(f)
                }
                _ => None,
            };
            let nonce = match &resume {
                Some(f) => f.nonce,
                None => self.await_no_pending(from).await?,
            };
            if resume.is_none() {
                if let Some(done) = effect.find(self).await? {
                    if self.found_confirmed(effect, &done).await? {
                        return Ok(Written::Already(done));
                    }
                    continue;
                }
            }
            let sent = self
                .send_until_mined(
                    wallet,
                    from,
                    nonce,
                    &to,
                    &input,
                    effect,
                    resume,
                    &mut inflight,
                )
                .await?;
            match sent {
                Written::Already(done) => {
                    if self.found_confirmed(effect, &done).await? {
                        return Ok(Written::Already(done));
                    }
                }
                Written::Mined(receipt) => {
                    last = receipt.transaction_hash();
                    if !receipt.status() {
                        return Err(ChainError::TxFailed(last));
                    }
                    if let Some(r) = self.confirmed(*receipt).await? {
                        return Ok(Written::Mined(Box::new(r)));
                    }
                }
            }
        }
        Err(ChainError::Reorged(last))
    }

    /// A found effect, re-checked once its block is `CHAIN_CONFIRMATIONS` deep: `false` if it
    /// vanished (reorged out) or moved. An effect without a block is re-read once.
    async fn found_confirmed<E: Effect>(&self, effect: &E, found: &E::Found) -> Result<bool> {
        match E::block_of(found) {
            Some((block, tx_hash)) => {
                self.await_depth(block, tx_hash.unwrap_or_default()).await?;
                Ok(matches!(
                    effect.find(self).await?.as_ref().and_then(E::block_of),
                    Some((b, _)) if b == block
                ))
            }
            None => Ok(effect.find(self).await?.is_some()),
        }
    }

    /// Waits until block `block` is `CHAIN_CONFIRMATIONS` deep (`head >= block + N − 1`).
    async fn await_depth(&self, block: u64, tx_hash: TxHash) -> Result<()> {
        let need = block.saturating_add(self.cfg.chain_confirmations.max(1) - 1);
        let deadline = Instant::now() + self.cfg.receipt_timeout;
        let mut delay = self.cfg.receipt_poll.min(Duration::from_millis(10));
        loop {
            if self.head().await? >= need {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ChainError::ConfirmationTimeout {
                    tx_hash,
                    block,
                    confirmations: self.cfg.chain_confirmations,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.cfg.receipt_poll);
        }
    }

    /// `receipt` once its block is `CHAIN_CONFIRMATIONS` deep and the node still has it in that
    /// same canonical block; `None` if it was reorged out. A transaction re-mined in another
    /// block is waited for again there.
    async fn confirmed(&self, receipt: TransactionReceipt) -> Result<Option<TransactionReceipt>> {
        let tx_hash = receipt.transaction_hash();
        let mut r = receipt;
        loop {
            let block = block_of(&r)?;
            let hash = r.block_hash().ok_or(ChainError::ReceiptIncomplete {
                tx_hash,
                field: "block hash",
            })?;
            self.await_depth(block, tx_hash).await?;
            let Some(again) = self.receipt_once(tx_hash).await? else {
                return Ok(None);
            };
            match again.block_hash() {
                Some(h) if h == hash => {
                    return Ok((self.block_hash(block).await? == Some(hash)).then_some(again));
                }
                Some(h) => {
                    info!(%tx_hash, old = %hash, new = %h, "transaction re-mined in another block; waiting for its confirmations there");
                    r = again;
                }
                None => return Ok(None),
            }
        }
    }

    /// Waits until no transaction from `from` is pending (pending nonce == latest nonce) and
    /// returns that nonce. A transaction left pending by a crashed writer is waited for, never
    /// replaced, so the caller's "is it on chain already?" check sees its effect.
    async fn await_no_pending(&self, from: Address) -> Result<u64> {
        let deadline = Instant::now() + self.cfg.pending_timeout;
        loop {
            let latest = self.nonce(from, false).await?;
            let pending = self.nonce(from, true).await?;
            if pending <= latest {
                return Ok(latest);
            }
            if Instant::now() >= deadline {
                return Err(ChainError::PendingTimeout {
                    from,
                    latest,
                    pending,
                });
            }
            info!(%from, latest, pending, "waiting for our pending transactions to be mined");
            tokio::time::sleep(self.cfg.receipt_poll).await;
        }
    }

    async fn estimate_fees(&self) -> Result<Fees> {
        let f = self
            .retry("eth_feeHistory", |c| async move {
                c.provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(ChainError::from_rpc)
            })
            .await?;
        Ok(Fees {
            max_fee: f.max_fee_per_gas,
            priority: f.max_priority_fee_per_gas,
        })
    }

    /// Steps 3–4 of the module docs for one nonce.
    #[allow(clippy::too_many_arguments)]
    async fn send_until_mined<E: Effect>(
        &self,
        wallet: &EthereumWallet,
        from: Address,
        nonce: u64,
        to: &TxKind,
        input: &Bytes,
        effect: &E,
        resume: Option<InFlight>,
        inflight: &mut Option<InFlight>,
    ) -> Result<Written<E::Found>> {
        let req = TransactionRequest::default()
            .with_from(from)
            .with_kind(*to)
            .with_input(input.clone())
            .with_nonce(nonce)
            .with_chain_id(self.chain_id);
        let ceiling = self.cfg.max_fee_ceiling;
        let (gas_limit, mut fees, mut sent, mut replace_now) = match resume {
            Some(f) => (f.gas_limit, f.fees, f.sent, true),
            None => {
                let gas_limit = self.gas_limit(&req).await?;
                let fees = fees::initial(self.estimate_fees().await?, ceiling);
                (gas_limit, fees, Vec::new(), false)
            }
        };
        let deadline = Instant::now() + self.cfg.receipt_timeout;
        let mut ceiling_warned = false;
        loop {
            if replace_now {
                // Before replacing: did the original (or anyone) produce the effect meanwhile?
                if let Some(r) = self.first_receipt(&sent).await? {
                    return Ok(Written::Mined(Box::new(r)));
                }
                if let Some(done) = effect.find(self).await? {
                    return Ok(Written::Already(done));
                }
                let fresh = self.estimate_fees().await?;
                let bump = self.cfg.fee_bump_percent;
                // Something of ours is pooled: a replacement must raise both fees. Nothing is
                // (every send refused): only the max fee needs to rise.
                let next = if sent.is_empty() {
                    fees::repriced(fees, fresh, bump, ceiling)
                } else {
                    fees::bumped(fees, fresh, bump, ceiling)
                };
                match next {
                    Some(next) => {
                        info!(nonce, old_max_fee = fees.max_fee, max_fee = next.max_fee,
                            old_priority = fees.priority, priority = next.priority,
                            "no receipt in time or fees refused; re-signing with the same nonce and higher fees");
                        self.count(|c| c.replaced += 1);
                        fees = next;
                    }
                    None => {
                        self.count(|c| c.at_ceiling += 1);
                        if !ceiling_warned {
                            warn!(nonce, max_fee = fees.max_fee, ceiling,
                                "a replacement is due but the fee ceiling leaves no room; not raising the fees, waiting");
                            ceiling_warned = true;
                        }
                    }
                }
            }
            replace_now = true;
            let (raw, tx_hash) = self.sign(wallet, &req, gas_limit, fees).await?;
            let refusal = match self.send_signed(&raw, tx_hash).await {
                Ok(Accepted::Yes) => {
                    if !sent.contains(&tx_hash) {
                        sent.push(tx_hash);
                        self.count(|c| c.sent += 1);
                    }
                    None
                }
                Ok(Accepted::NonceTaken(message)) => {
                    if let Some(r) = self.first_receipt(&sent).await? {
                        return Ok(Written::Mined(Box::new(r)));
                    }
                    if let Some(r) = self.receipt_once(tx_hash).await? {
                        return Ok(Written::Mined(Box::new(r)));
                    }
                    if let Some(done) = effect.find(self).await? {
                        return Ok(Written::Already(done));
                    }
                    return Err(ChainError::NonceConflict { from, message });
                }
                Err(e @ ChainError::FeeTooLow { .. }) => {
                    self.count(|c| c.fee_refused += 1);
                    warn!(nonce, max_fee = fees.max_fee, priority = fees.priority, error = %e,
                        "node refused the fees; will re-price");
                    Some(e)
                }
                Err(e) => return self.settle(e, &sent, effect).await,
            };
            // Poll for a receipt of anything sent for this nonce until the replacement is due
            // (a refused send with nothing of ours pooled is re-priced after one poll).
            let wait = if refusal.is_some() && sent.is_empty() {
                self.cfg.receipt_poll.min(self.cfg.replace_after)
            } else {
                self.cfg.replace_after
            };
            let replace_at = Instant::now() + wait;
            let mut delay = self.cfg.receipt_poll.min(Duration::from_millis(10));
            loop {
                match self.first_receipt(&sent).await {
                    Ok(Some(r)) => {
                        *inflight = None;
                        return Ok(Written::Mined(Box::new(r)));
                    }
                    Ok(None) => {}
                    Err(e) => return self.settle(e, &sent, effect).await,
                }
                let now = Instant::now();
                if now >= deadline {
                    if let Some(done) = effect.find(self).await? {
                        return Ok(Written::Already(done));
                    }
                    let Some(&last) = sent.last() else {
                        return Err(refusal.unwrap_or(ChainError::ReceiptTimeout(tx_hash)));
                    };
                    // Remembered so that the retry of this write resumes (replaces) it.
                    *inflight = Some(InFlight {
                        nonce,
                        to: *to,
                        input: input.clone(),
                        gas_limit,
                        fees,
                        sent,
                    });
                    return Err(ChainError::ReceiptTimeout(last));
                }
                if now >= replace_at {
                    break;
                }
                tokio::time::sleep(delay.min(replace_at - now)).await;
                delay = (delay * 2).min(self.cfg.receipt_poll);
            }
        }
    }

    /// After an error: a receipt of ours, or the effect, wins over the error.
    async fn settle<E: Effect>(
        &self,
        e: ChainError,
        sent: &[TxHash],
        effect: &E,
    ) -> Result<Written<E::Found>> {
        if let Ok(Some(r)) = self.first_receipt(sent).await {
            return Ok(Written::Mined(Box::new(r)));
        }
        if let Ok(Some(done)) = effect.find(self).await {
            return Ok(Written::Already(done));
        }
        Err(e)
    }

    /// The receipt of whichever of `sent` was mined (at most one can be: same nonce).
    async fn first_receipt(&self, sent: &[TxHash]) -> Result<Option<TransactionReceipt>> {
        for &h in sent.iter().rev() {
            if let Some(r) = self.receipt_once(h).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// `eth_estimateGas` (a revert comes back typed) with the margin, under `GAS_LIMIT_CEILING`.
    async fn gas_limit(&self, req: &TransactionRequest) -> Result<u64> {
        let estimate = self
            .retry("eth_estimateGas", |c| {
                let req = req.clone();
                async move {
                    c.provider
                        .estimate_gas(req)
                        .block(BlockId::latest())
                        .await
                        .map_err(ChainError::from_rpc)
                }
            })
            .await?;
        let ceiling = self.cfg.gas_limit_ceiling;
        if estimate > ceiling {
            return Err(ChainError::GasAboveCeiling { estimate, ceiling });
        }
        Ok((estimate.saturating_mul(self.cfg.gas_margin_percent) / 100).clamp(estimate, ceiling))
    }

    async fn sign(
        &self,
        wallet: &EthereumWallet,
        req: &TransactionRequest,
        gas_limit: u64,
        fees: Fees,
    ) -> Result<(Vec<u8>, TxHash)> {
        debug_assert!(fees.max_fee <= self.cfg.max_fee_ceiling);
        let envelope = req
            .clone()
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(fees.max_fee)
            .with_max_priority_fee_per_gas(fees.priority)
            .build(wallet)
            .await
            .map_err(|e| ChainError::Signer(self.redactor.scrub(&e.to_string())))?;
        self.count(|c| c.max_fee_signed = c.max_fee_signed.max(fees.max_fee));
        let tx_hash = *envelope.tx_hash();
        debug!(%tx_hash, gas_limit, max_fee = fees.max_fee, priority = fees.priority, "signed transaction");
        Ok((envelope.encoded_2718(), tx_hash))
    }

    /// Sends signed bytes (the same bytes on every transient retry).
    async fn send_signed(&self, raw: &[u8], tx_hash: TxHash) -> Result<Accepted> {
        let sent = self
            .retry("eth_sendRawTransaction", |c| async move {
                c.provider
                    .send_raw_transaction(raw)
                    .await
                    .map(|_| ())
                    .map_err(ChainError::from_rpc)
            })
            .await;
        match sent {
            Ok(()) => Ok(Accepted::Yes),
            Err(e) => {
                let msg = rpc_message(&e).unwrap_or_default().to_ascii_lowercase();
                if msg.contains("already known")
                    || msg.contains("known transaction")
                    || msg.contains("already imported")
                {
                    debug!(%tx_hash, "node already has the transaction");
                    Ok(Accepted::Yes)
                } else if msg.contains("nonce too low") {
                    Ok(Accepted::NonceTaken(msg))
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// The receipt's block number; a receipt without one is a typed, loud failure.
pub(super) fn block_of(r: &TransactionReceipt) -> Result<u64> {
    r.block_number().ok_or(ChainError::ReceiptIncomplete {
        tx_hash: r.transaction_hash(),
        field: "block number",
    })
}

fn rpc_message(e: &ChainError) -> Option<String> {
    match e {
        ChainError::Rpc(alloy::transports::RpcError::ErrorResp(p)) => Some(p.message.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receipt as a lagging node may serve it: everything but the block.
    fn receipt_without_block() -> TransactionReceipt {
        serde_json::from_value(serde_json::json!({
            "type": "0x2",
            "status": "0x1",
            "cumulativeGasUsed": "0x5208",
            "logs": [],
            "logsBloom": format!("0x{}", "00".repeat(256)),
            "transactionHash": format!("0x{}", "ab".repeat(32)),
            "transactionIndex": null,
            "blockHash": null,
            "blockNumber": null,
            "gasUsed": "0x5208",
            "effectiveGasPrice": "0x1",
            "from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "to": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "contractAddress": null
        }))
        .expect("receipt json")
    }

    #[test]
    fn a_receipt_without_its_block_is_a_typed_retryable_error_not_block_zero() {
        let r = receipt_without_block();
        let err = block_of(&r).expect_err("no block number");
        assert!(
            matches!(err, ChainError::ReceiptIncomplete { field: "block number", tx_hash } if tx_hash == r.transaction_hash()),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
}
