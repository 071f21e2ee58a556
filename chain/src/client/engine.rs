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
//!    effect is checked before the error is returned. Once per new block, a sent transaction
//!    that the node no longer knows (neither pooled nor mined) is re-broadcast at once, the
//!    same signed bytes (see [`ChainClient::rebroadcast_if_lost`]): a node may drop a pooled
//!    transaction (anvil drops a later nonce of ours that fits a block's leftover gas while
//!    an earlier one does not, executing it out of order as "nonce too high"), and waiting
//!    `TX_REPLACE_AFTER_MS` for it would hold every later nonce.
//! 5. Wait until the receipt's block is `CHAIN_CONFIRMATIONS` deep, then re-check that the
//!    receipt is still there in the same, canonical block. If it was reorged out, start again
//!    at 1 (the effect check makes the resend idempotent).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use alloy::{
    eips::{eip2718::Encodable2718, BlockId},
    network::{EthereumWallet, NetworkTransactionBuilder, ReceiptResponse, TransactionBuilder},
    primitives::{Address, Bytes, TxHash, TxKind},
    providers::Provider,
    rpc::types::{TransactionReceipt, TransactionRequest},
    sol_types::SolCall,
};
use futures::StreamExt;
use tracing::{debug, info, warn};

use super::{
    fees::{self, Fees},
    ChainClient, Result,
};
use crate::{
    bindings::ProtocolState, config::ChainConfig, error::FeeRejection, types::TxOutcome, ChainError,
};

/// How often one write starts over after its transaction was reorged out. Each round already
/// waited `CHAIN_CONFIRMATIONS` blocks; a chain that drops the same write three times in a row
/// is not one to keep sending to from inside one call: the retryable `Reorged` error puts the
/// message back on its queue, and the retry starts from what is on chain then.
const MAX_REORG_ROUNDS: u32 = 3;
/// Chain reads (effects looked for, gas estimates) a write sends to the node at once.
const CONCURRENT_READS: usize = 8;

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
    /// Sent transactions the node had lost (neither pooled nor mined), sent again unchanged.
    pub rebroadcast: u64,
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
    raw: Option<(TxHash, Vec<u8>)>,
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

/// One call of [`ChainClient::write_many`].
pub(super) struct Call<'a, E> {
    /// What it must not do twice.
    pub(super) effect: &'a E,
    /// The contract called (or `Create`).
    pub(super) to: TxKind,
    /// Its calldata.
    pub(super) input: Bytes,
}

/// What [`ChainClient::write_many`] did: per call, in call order, how it ended (`None`: nothing
/// of it is known to be on chain), and the error that stopped the write, if one did.
pub(super) struct Many<F> {
    pub(super) written: Vec<Option<Written<F>>>,
    pub(super) error: Option<ChainError>,
}

/// What one round of [`ChainClient::write_many`] did, by call index.
struct RoundEnd<F> {
    /// Confirmed.
    done: Vec<(usize, Written<F>)>,
    /// Failed (sending stopped at the first).
    errors: Vec<(usize, ChainError)>,
    /// Mined or found, then gone before their confirmations: for the next round.
    reorged: Vec<usize>,
    /// The last transaction mined (for the `Reorged` error).
    last: TxHash,
}

/// One nonce of a round: the call sent with it and every transaction signed for it.
struct Slot<'c, E: Effect> {
    call: usize,
    effect: &'c E,
    to: TxKind,
    input: Bytes,
    nonce: u64,
    req: TransactionRequest,
    gas_limit: u64,
    fees: Fees,
    /// Hashes the node accepted for this nonce (at most one can be mined).
    sent: Vec<TxHash>,
    /// The last transaction the node accepted and its signed bytes (for a re-broadcast).
    raw: Option<(TxHash, Vec<u8>)>,
    /// The last transaction signed (accepted or not).
    signed: TxHash,
    /// The node's last fee refusal.
    refusal: Option<ChainError>,
    /// When to re-sign with higher fees.
    replace_at: Instant,
    /// When to give up (`RECEIPT_TIMEOUT_SECS` after the first send).
    deadline: Instant,
    ceiling_warned: bool,
    /// How the slot ended; `None` while open.
    end: Option<Result<Written<E::Found>>>,
}

impl<'c, E: Effect> Slot<'c, E> {
    fn new(
        call: usize,
        c: &Call<'c, E>,
        nonce: u64,
        req: TransactionRequest,
        gas_limit: u64,
        fees: Fees,
        cfg: &ChainConfig,
    ) -> Self {
        let now = Instant::now();
        Self {
            call,
            effect: c.effect,
            to: c.to,
            input: c.input.clone(),
            nonce,
            req,
            gas_limit,
            fees,
            sent: Vec::new(),
            raw: None,
            signed: TxHash::ZERO,
            refusal: None,
            replace_at: now + cfg.replace_after,
            deadline: now + cfg.receipt_timeout,
            ceiling_warned: false,
            end: None,
        }
    }

    /// A slot that failed before anything was signed (gas estimate, fees).
    fn failed(
        call: usize,
        c: &Call<'c, E>,
        nonce: u64,
        req: TransactionRequest,
        e: ChainError,
        cfg: &ChainConfig,
    ) -> Self {
        let no_fees = Fees {
            max_fee: 0,
            priority: 0,
        };
        let mut s = Self::new(call, c, nonce, req, 0, no_fees, cfg);
        s.end = Some(Err(e));
        s
    }

    /// Our own transaction of this same call, held from an earlier write that timed out: a
    /// replacement is due at once.
    fn resumed(
        call: usize,
        c: &Call<'c, E>,
        f: InFlight,
        chain_id: u64,
        from: Address,
        now: Instant,
        cfg: &ChainConfig,
    ) -> Self {
        let req = TransactionRequest::default()
            .with_from(from)
            .with_kind(f.to)
            .with_input(f.input.clone())
            .with_nonce(f.nonce)
            .with_chain_id(chain_id);
        let mut s = Self::new(call, c, f.nonce, req, f.gas_limit, f.fees, cfg);
        s.sent = f.sent;
        s.raw = f.raw;
        s.replace_at = now;
        s
    }
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

    /// One write, steps 1–5 of the module docs: [`Self::write_many`] of one call.
    pub(super) async fn write<E: Effect>(
        &self,
        effect: &E,
        to: TxKind,
        input: Bytes,
    ) -> Result<Written<E::Found>> {
        let mut many = self.write_many(&[Call { effect, to, input }]).await;
        match (many.written.pop().flatten(), many.error) {
            (_, Some(e)) => Err(e),
            (Some(w), None) => Ok(w),
            (None, None) => Err(ChainError::Decode(
                "the writer ended a call without an outcome or an error".into(),
            )),
        }
    }

    /// Several writes at once, steps 1–5 of the module docs for each: the calls whose effect is
    /// not on chain are sent in order with consecutive nonces, at most `MAX_PENDING_TXS`
    /// unmined at a time, without waiting for each other's receipts; each is replaced when
    /// stuck, then all are confirmed together. Their gas is estimated against the latest block,
    /// so calls must not depend on each other's effects. Sending stops at the first call that
    /// fails (what was sent is still confirmed); the outcome lists, in call order, what each
    /// call did (`None`: nothing known to be on chain for it) and the first call's error.
    pub(super) async fn write_many<E: Effect>(&self, calls: &[Call<'_, E>]) -> Many<E::Found> {
        let mut out = Many {
            written: calls.iter().map(|_| None).collect(),
            error: None,
        };
        let (wallet, from) = match self.wallet() {
            Ok(w) => w,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        let mut inflight = self.writer.lock().await;
        let mut last = TxHash::ZERO;
        for round in 0..=MAX_REORG_ROUNDS {
            if round > 0 {
                self.count(|c| c.reorged += 1);
                warn!(%last, round, "write reorged out before its confirmations; starting again");
            }
            let todo: Vec<usize> = (0..calls.len())
                .filter(|&i| out.written[i].is_none())
                .collect();
            let end = match self.round(wallet, from, calls, &todo, &mut inflight).await {
                Ok(end) => end,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            for (i, w) in end.done {
                out.written[i] = Some(w);
            }
            if end.last != TxHash::ZERO {
                last = end.last;
            }
            if let Some((_, e)) = end.errors.into_iter().min_by_key(|(i, _)| *i) {
                out.error = Some(e);
                return out;
            }
            if end.reorged.is_empty() {
                return out;
            }
        }
        out.error = Some(ChainError::Reorged(last));
        out
    }

    /// One round of [`Self::write_many`] over the calls `todo`: resume or wait (step 1), read
    /// the chain (2), send, poll and replace (3–4), confirm (5).
    async fn round<'c, E: Effect>(
        &self,
        wallet: &EthereumWallet,
        from: Address,
        calls: &'c [Call<'c, E>],
        todo: &[usize],
        inflight: &mut Vec<InFlight>,
    ) -> Result<RoundEnd<E::Found>> {
        let now = Instant::now();
        // 1. Resume our own stuck transactions of these same calls (the held ones, from the
        //    latest nonce on, in call order), or wait for whatever of our key is pending.
        let held = std::mem::take(inflight);
        let mut slots: Vec<Slot<'c, E>> = Vec::new();
        if !held.is_empty() {
            let latest = self.nonce(from, false).await?;
            for (f, &i) in held.into_iter().zip(todo) {
                let call = &calls[i];
                if f.nonce != latest + slots.len() as u64
                    || f.to != call.to
                    || f.input != call.input
                {
                    break;
                }
                slots.push(Slot::resumed(
                    i,
                    call,
                    f,
                    self.chain_id,
                    from,
                    now,
                    &self.cfg,
                ));
            }
        }
        let mut next_nonce = match slots.last() {
            Some(s) => s.nonce + 1,
            None => self.await_no_pending(from).await?,
        };
        // 2. The chain first: a call whose effect is there is not sent.
        //    Several reads at a time (an epoch of 10 000 projects has 125 batches to look
        //    for, and one read at a time cost blocks before the first send), in call order.
        let mut found = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        //    (The futures are made up front: a stream's `map` closure over borrowed calls
        //    gives a future that is `Send` for one lifetime only.)
        let looks: Vec<_> = todo[slots.len()..]
            .iter()
            .map(|&i| {
                let effect = calls[i].effect;
                async move { (i, effect.find(self).await) }
            })
            .collect();
        let looked: Vec<(usize, Result<Option<E::Found>>)> = futures::stream::iter(looks)
            .buffered(CONCURRENT_READS)
            .collect()
            .await;
        for (i, r) in looked {
            match r? {
                Some(f) => found.push((i, f)),
                None => queue.push_back(i),
            }
        }
        // 3–4. Send in nonce order with at most `window` unmined; poll; replace; time out.
        let window = self.cfg.max_pending_txs.max(1);
        let min_delay = self.cfg.receipt_poll.min(Duration::from_millis(10));
        let mut delay = min_delay;
        let mut stop = false;
        let mut fresh_fees: Option<Fees> = None;
        let mut checked_at_head: Option<u64> = None;
        loop {
            let mut sent_now = false;
            let free = window.saturating_sub(slots.iter().filter(|s| s.end.is_none()).count());
            // The gas of every call this refill sends, estimated together (each against the
            // latest block: the calls do not depend on each other's effects); one estimate
            // after another held the sends of a large epoch behind the chain's blocks.
            let refill: Vec<usize> = if stop {
                Vec::new()
            } else {
                (0..free).map_while(|_| queue.pop_front()).collect()
            };
            let requests: Vec<TransactionRequest> = refill
                .iter()
                .zip(next_nonce..)
                .map(|(&i, nonce)| {
                    TransactionRequest::default()
                        .with_from(from)
                        .with_kind(calls[i].to)
                        .with_input(calls[i].input.clone())
                        .with_nonce(nonce)
                        .with_chain_id(self.chain_id)
                })
                .collect();
            let estimates: Vec<_> = requests.iter().map(|r| self.gas_limit(r)).collect();
            let limits: Vec<Result<u64>> = futures::stream::iter(estimates)
                .buffered(CONCURRENT_READS)
                .collect()
                .await;
            for ((i, req), gas) in refill.into_iter().zip(requests).zip(limits) {
                if stop {
                    break;
                }
                let call = &calls[i];
                let gas_limit = match gas {
                    Ok(g) => g,
                    Err(e) => {
                        slots.push(Slot::failed(i, call, next_nonce, req, e, &self.cfg));
                        stop = true;
                        break;
                    }
                };
                let estimate = match fresh_fees {
                    Some(f) => f,
                    None => match self.estimate_fees().await {
                        Ok(f) => *fresh_fees.insert(f),
                        Err(e) => {
                            slots.push(Slot::failed(i, call, next_nonce, req, e, &self.cfg));
                            stop = true;
                            break;
                        }
                    },
                };
                let fees = fees::initial(estimate, self.cfg.max_fee_ceiling);
                let mut slot = Slot::new(i, call, next_nonce, req, gas_limit, fees, &self.cfg);
                next_nonce += 1;
                if let Some(end) = self.send_slot(wallet, from, &mut slot).await {
                    stop |= end.is_err();
                    slot.end = Some(end);
                }
                slots.push(slot);
                sent_now = true;
            }
            fresh_fees = None;
            // Receipts in nonce order: one not there yet holds the ones after it.
            for slot in slots.iter_mut().filter(|s| s.end.is_none()) {
                match self.first_receipt(&slot.sent).await {
                    Ok(Some(r)) => slot.end = Some(Ok(Written::Mined(Box::new(r)))),
                    Ok(None) => break,
                    Err(e) => {
                        let end = self.settle(e, &slot.sent, slot.effect).await;
                        stop |= end.is_err();
                        slot.end = Some(end);
                    }
                }
            }
            // Once per new block: anything sent that the node lost is sent again at once.
            if slots.iter().any(|s| s.end.is_none() && !s.sent.is_empty()) {
                if let Ok(head) = self.head().await {
                    if checked_at_head.is_none_or(|h| head > h) {
                        checked_at_head = Some(head);
                        for slot in slots.iter_mut().filter(|s| s.end.is_none()) {
                            if let Some(end) = self.rebroadcast_if_lost(from, slot).await {
                                stop |= end.is_err();
                                slot.end = Some(end);
                            }
                        }
                    }
                }
            }
            let now = Instant::now();
            for slot in slots
                .iter_mut()
                .filter(|s| s.end.is_none() && now >= s.deadline)
            {
                let end = self.timed_out(slot, inflight).await;
                stop |= end.is_err();
                slot.end = Some(end);
            }
            for slot in slots
                .iter_mut()
                .filter(|s| s.end.is_none() && now >= s.replace_at)
            {
                if let Some(end) = self.replace_slot(wallet, from, slot).await {
                    stop |= end.is_err();
                    slot.end = Some(end);
                }
                sent_now = true;
            }
            let open = slots.iter().filter(|s| s.end.is_none());
            let Some(wake) = open.map(|s| s.replace_at.min(s.deadline)).min() else {
                if queue.is_empty() || stop {
                    break;
                }
                continue;
            };
            if sent_now {
                delay = min_delay;
            }
            let now = Instant::now();
            tokio::time::sleep(delay.min(wake.saturating_duration_since(now))).await;
            delay = (delay * 2).min(self.cfg.receipt_poll);
        }
        // 5. Confirmations: the deepest block first, then each write re-checked.
        let mut end = RoundEnd {
            done: Vec::new(),
            errors: Vec::new(),
            reorged: Vec::new(),
            last: TxHash::ZERO,
        };
        let mut mined = Vec::new();
        for slot in slots {
            match slot.end {
                Some(Ok(Written::Mined(r))) => {
                    end.last = r.transaction_hash();
                    if r.status() {
                        mined.push((slot.call, *r));
                    } else {
                        end.errors.push((slot.call, ChainError::TxFailed(end.last)));
                    }
                }
                Some(Ok(Written::Already(f))) => found.push((slot.call, f)),
                Some(Err(e)) => end.errors.push((slot.call, e)),
                None => {
                    return Err(ChainError::Decode(
                        "the writer left a transaction without an outcome".into(),
                    ))
                }
            }
        }
        if let Some((block, tx)) = mined
            .iter()
            .filter_map(|(_, r)| Some((r.block_number()?, r.transaction_hash())))
            .max()
        {
            self.await_depth(block, tx).await?;
        }
        for (i, r) in mined {
            match self.confirmed(r).await? {
                Some(r) => end.done.push((i, Written::Mined(Box::new(r)))),
                None => end.reorged.push(i),
            }
        }
        for (i, f) in found {
            if self.found_confirmed(calls[i].effect, &f).await? {
                end.done.push((i, Written::Already(f)));
            } else {
                end.reorged.push(i);
            }
        }
        Ok(end)
    }

    /// Signs `slot`'s call with its fees and sends it ("already known" is success). `Some` when
    /// that ended the slot: the node says the nonce is used (by our transaction, mined, or the
    /// effect is on chain, or someone else's: `NonceConflict`), or sending failed for a reason
    /// other than the fees and no receipt or effect settles it. A fee refusal is re-priced at
    /// `replace_at`.
    async fn send_slot<E: Effect>(
        &self,
        wallet: &EthereumWallet,
        from: Address,
        slot: &mut Slot<'_, E>,
    ) -> Option<Result<Written<E::Found>>> {
        let (raw, tx_hash) = match self
            .sign(wallet, &slot.req, slot.gas_limit, slot.fees)
            .await
        {
            Ok(signed) => signed,
            Err(e) => return Some(Err(e)),
        };
        slot.signed = tx_hash;
        let refusal = match self.send_signed(&raw, tx_hash).await {
            Ok(Accepted::Yes) => {
                if !slot.sent.contains(&tx_hash) {
                    slot.sent.push(tx_hash);
                    self.count(|c| c.sent += 1);
                }
                slot.raw = Some((tx_hash, raw));
                None
            }
            Ok(Accepted::NonceTaken(message)) => {
                return Some(self.nonce_taken(slot, tx_hash, from, message).await)
            }
            Err(e @ ChainError::FeeTooLow { .. }) => {
                self.count(|c| c.fee_refused += 1);
                warn!(nonce = slot.nonce, max_fee = slot.fees.max_fee, priority = slot.fees.priority,
                    error = %e, "node refused the fees; will re-price");
                Some(e)
            }
            Err(e) => return Some(self.settle(e, &slot.sent, slot.effect).await),
        };
        // A refused send with nothing of ours pooled is re-priced after one poll.
        let wait = if refusal.is_some() && slot.sent.is_empty() {
            self.cfg.receipt_poll.min(self.cfg.replace_after)
        } else {
            self.cfg.replace_after
        };
        slot.replace_at = Instant::now() + wait;
        slot.refusal = refusal;
        None
    }

    /// Sends `slot`'s last accepted transaction again, the same signed bytes, if the node no
    /// longer knows any transaction sent for it (neither in its pool nor mined): a node may
    /// drop a pooled transaction, and then nothing would mine it (nor any later nonce of ours)
    /// until its replacement is due. Re-sending the same bytes cannot do anything twice (same
    /// nonce, same hash); a node that no longer takes its fees (`max fee per gas less than
    /// block base fee`) makes the replacement due now. A read or send that fails otherwise is
    /// left to the next block's check and to the replacement. `Some` when that ended the slot
    /// (the nonce was used meanwhile: by this call's transaction, the effect, or another writer).
    async fn rebroadcast_if_lost<E: Effect>(
        &self,
        from: Address,
        slot: &mut Slot<'_, E>,
    ) -> Option<Result<Written<E::Found>>> {
        let (last, raw) = slot.raw.clone()?;
        for &h in slot.sent.iter().rev() {
            match self.tx_known(h).await {
                Ok(false) => {}
                Ok(true) | Err(_) => return None,
            }
        }
        match self.send_signed(&raw, last).await {
            Ok(Accepted::Yes) => {
                self.count(|c| c.rebroadcast += 1);
                info!(nonce = slot.nonce, tx_hash = %last,
                    "the node lost our transaction (neither pooled nor mined); sent it again");
                None
            }
            Ok(Accepted::NonceTaken(message)) => {
                Some(self.nonce_taken(slot, last, from, message).await)
            }
            Err(e @ ChainError::FeeTooLow { .. }) => {
                self.count(|c| c.fee_refused += 1);
                warn!(nonce = slot.nonce, error = %e,
                    "the node lost our transaction and refuses its fees now; re-pricing");
                slot.refusal = Some(e);
                slot.replace_at = Instant::now();
                None
            }
            Err(e) => {
                warn!(nonce = slot.nonce, error = %e, "re-broadcast of a lost transaction failed; checking again next block");
                None
            }
        }
    }

    /// Whether the node knows `tx_hash` (pooled or mined).
    async fn tx_known(&self, tx_hash: TxHash) -> Result<bool> {
        self.retry("eth_getTransactionByHash", |c| async move {
            c.provider
                .get_transaction_by_hash(tx_hash)
                .await
                .map(|t| t.is_some())
                .map_err(ChainError::from_rpc)
        })
        .await
    }

    /// The node refused `slot`'s nonce as used: a receipt of ours or the effect settles it,
    /// anything else is another writer on our key.
    async fn nonce_taken<E: Effect>(
        &self,
        slot: &Slot<'_, E>,
        tx_hash: TxHash,
        from: Address,
        message: String,
    ) -> Result<Written<E::Found>> {
        if let Some(r) = self.first_receipt(&slot.sent).await? {
            return Ok(Written::Mined(Box::new(r)));
        }
        if let Some(r) = self.receipt_once(tx_hash).await? {
            return Ok(Written::Mined(Box::new(r)));
        }
        if let Some(done) = slot.effect.find(self).await? {
            return Ok(Written::Already(done));
        }
        Err(ChainError::NonceConflict { from, message })
    }

    /// A replacement is due for `slot`: unless its transaction was mined or the effect landed
    /// meanwhile, re-sign it with the same nonce and higher fees (both raised when something of
    /// ours may be pooled for the nonce; only the max fee when every send was refused below the
    /// base fee), never above the ceiling (at the ceiling: the same fees again, and wait).
    async fn replace_slot<E: Effect>(
        &self,
        wallet: &EthereumWallet,
        from: Address,
        slot: &mut Slot<'_, E>,
    ) -> Option<Result<Written<E::Found>>> {
        match self.first_receipt(&slot.sent).await {
            Ok(Some(r)) => return Some(Ok(Written::Mined(Box::new(r)))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        match slot.effect.find(self).await {
            Ok(Some(done)) => return Some(Ok(Written::Already(done))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        let fresh = match self.estimate_fees().await {
            Ok(f) => f,
            Err(e) => return Some(Err(e)),
        };
        let bump = self.cfg.fee_bump_percent;
        let ceiling = self.cfg.max_fee_ceiling;
        // Nothing of ours pooled (every send refused below the base fee): only the max fee
        // needs to rise. An underpriced refusal means a transaction of our key holds the nonce
        // (a predecessor's, left behind a gap): both fees must rise above it.
        let pooled = !slot.sent.is_empty()
            || matches!(
                slot.refusal,
                Some(ChainError::FeeTooLow {
                    kind: FeeRejection::Underpriced,
                    ..
                })
            );
        let next = if pooled {
            fees::bumped(slot.fees, fresh, bump, ceiling)
        } else {
            fees::repriced(slot.fees, fresh, bump, ceiling)
        };
        match next {
            Some(next) => {
                info!(nonce = slot.nonce, old_max_fee = slot.fees.max_fee, max_fee = next.max_fee,
                    old_priority = slot.fees.priority, priority = next.priority,
                    "no receipt in time or fees refused; re-signing with the same nonce and higher fees");
                self.count(|c| c.replaced += 1);
                slot.fees = next;
            }
            None => {
                self.count(|c| c.at_ceiling += 1);
                if !slot.ceiling_warned {
                    warn!(nonce = slot.nonce, max_fee = slot.fees.max_fee, ceiling,
                        "a replacement is due but the fee ceiling leaves no room; not raising the fees, waiting");
                    slot.ceiling_warned = true;
                }
            }
        }
        self.send_slot(wallet, from, slot).await
    }

    /// `RECEIPT_TIMEOUT_SECS` passed without a receipt for `slot`: the effect, if it landed;
    /// else `ReceiptTimeout` (or the node's fee refusal when it never accepted a send). What
    /// was sent is remembered, so that a retry of the same call by this client resumes (and
    /// replaces) it instead of waiting for it.
    async fn timed_out<E: Effect>(
        &self,
        slot: &mut Slot<'_, E>,
        inflight: &mut Vec<InFlight>,
    ) -> Result<Written<E::Found>> {
        if let Some(done) = slot.effect.find(self).await? {
            return Ok(Written::Already(done));
        }
        let Some(&last) = slot.sent.last() else {
            return Err(slot
                .refusal
                .take()
                .unwrap_or(ChainError::ReceiptTimeout(slot.signed)));
        };
        let pos = inflight.partition_point(|f| f.nonce < slot.nonce);
        inflight.insert(
            pos,
            InFlight {
                nonce: slot.nonce,
                to: slot.to,
                input: slot.input.clone(),
                gas_limit: slot.gas_limit,
                fees: slot.fees,
                sent: std::mem::take(&mut slot.sent),
                raw: slot.raw.take(),
            },
        );
        Err(ChainError::ReceiptTimeout(last))
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
