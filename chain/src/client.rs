//! [`ChainClient`]: the alloy implementation of the chain port.
//!
//! Reads go through a retry loop with exponential backoff on transient RPC errors (node down or
//! restarting, timeouts, HTTP 429/5xx). Writes go through one writer per client (and per key, when
//! clones made by [`ChainClient::with_contract`] share it): the writer waits for anything our key
//! left pending (a crashed predecessor), checks what is already on chain, then estimates gas
//! (reverts decoded here, nothing sent), signs once with an explicit nonce, sends the same signed
//! bytes on every retry, and waits for the receipt.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::{
    eips::{eip2718::Encodable2718, BlockId},
    network::{EthereumWallet, NetworkTransactionBuilder, ReceiptResponse, TransactionBuilder},
    primitives::{Address, BlockHash, Bytes, TxHash, TxKind, B256, U256, U64},
    providers::{Provider, RootProvider},
    rpc::{
        client::RpcClient,
        types::{Filter, Log, TransactionReceipt, TransactionRequest},
    },
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolEvent},
    transports::{http::reqwest, RpcError},
};
use tracing::{debug, info, warn};

use crate::{
    bindings::ProtocolState::{
        self, BatchSubmissionsCompleted, DelayedBatchSubmitted, EpochReleased,
        ProtocolStateInstance, SnapshotBatchSubmitted,
    },
    config::{ChainConfig, SignerSource},
    error::is_transient,
    types::{
        AnchoredBatch, EndOutcome, EpochAnchors, EpochRelease, ReleasesPage, SubmitOutcome,
        TxOutcome, Windows,
    },
    ChainError,
};

/// Result alias of this crate.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// Alloy client of the ProtocolState contract. Cheap to share behind an `Arc`; all methods
/// take `&self`.
#[derive(Clone)]
pub struct ChainClient {
    cfg: Arc<ChainConfig>,
    provider: RootProvider,
    contract: ProtocolStateInstance<RootProvider>,
    chain_id: u64,
    wallet: Option<(EthereumWallet, Address)>,
    writer: Arc<tokio::sync::Mutex<()>>,
    slots: Arc<Mutex<HashMap<u64, (Address, Instant)>>>,
}

impl fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainClient")
            .field("rpc_url", &self.cfg.rpc_url)
            .field("protocol_state", &self.cfg.protocol_state)
            .field("chain_id", &self.chain_id)
            .field("signer", &self.wallet.as_ref().map(|(_, a)| *a))
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// Connects (reads the chain id, with retries) and builds the signer if one is configured.
    pub async fn connect(cfg: ChainConfig) -> Result<Self> {
        let url: reqwest::Url = cfg
            .rpc_url
            .parse()
            .map_err(|e| ChainError::Config(format!("RPC_URL: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.rpc_timeout)
            .build()
            .map_err(|e| ChainError::Config(format!("http client: {e}")))?;
        let provider = RootProvider::new(RpcClient::new_http_with_client(http, url));
        let contract = ProtocolState::new(cfg.protocol_state, provider.clone());
        let mut client = Self {
            cfg: Arc::new(cfg),
            provider,
            contract,
            chain_id: 0,
            wallet: None,
            writer: Arc::default(),
            slots: Arc::default(),
        };
        let node_chain_id = client
            .retry("eth_chainId", |c| async move {
                c.provider
                    .get_chain_id()
                    .await
                    .map_err(ChainError::from_rpc)
            })
            .await?;
        if let Some(want) = client.cfg.chain_id {
            if want != node_chain_id {
                return Err(ChainError::Config(format!(
                    "CHAIN_ID is {want} but the node at RPC_URL serves chain {node_chain_id}"
                )));
            }
        }
        client.chain_id = node_chain_id;
        if let Some(src) = client.cfg.signer.clone() {
            client.wallet = Some(make_wallet(&src, node_chain_id).await?);
        }
        Ok(client)
    }

    /// The same client (connection, signer and single writer) pointed at another contract
    /// address, e.g. right after [`Self::deploy_protocol_state`].
    #[must_use]
    pub fn with_contract(&self, protocol_state: Address) -> Self {
        let mut cfg = (*self.cfg).clone();
        cfg.protocol_state = protocol_state;
        Self {
            cfg: Arc::new(cfg),
            contract: ProtocolState::new(protocol_state, self.provider.clone()),
            slots: Arc::default(),
            ..self.clone()
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ChainConfig {
        &self.cfg
    }

    /// The node's chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The ProtocolState address.
    pub fn protocol_state(&self) -> Address {
        self.cfg.protocol_state
    }

    /// Our signing address, if a signer is configured.
    pub fn signer_address(&self) -> Option<Address> {
        self.wallet.as_ref().map(|(_, a)| *a)
    }

    /// The underlying provider, for calls this client does not wrap.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    // ------------------------------------------------------------------ retries

    /// Runs `f` until it succeeds, fails with a non-transient error, or `RPC_MAX_RETRIES`
    /// retries were spent; backoff doubles from `RPC_BACKOFF_INITIAL_MS` to `RPC_BACKOFF_MAX_MS`.
    async fn retry<'a, T, F, Fut>(&'a self, what: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut(&'a Self) -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        let mut delay = self.cfg.backoff_initial;
        let mut attempt = 0u32;
        loop {
            match f(self).await {
                Ok(v) => return Ok(v),
                Err(ChainError::Rpc(e)) if is_transient(&e) && attempt < self.cfg.max_retries => {
                    attempt += 1;
                    warn!(what, attempt, error = %e, "transient rpc error; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ------------------------------------------------------------------ chain port: reads

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
            .retry("slotSnapshotterMapping", |c| async move {
                c.contract
                    .slotSnapshotterMapping(U256::from(slot))
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            })
            .await?;
        if let Ok(mut cache) = self.slots.lock() {
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
        self.retry("isFlagged", |c| async move {
            c.contract
                .isFlagged(market, snapshotter)
                .call()
                .await
                .map_err(ChainError::from_contract)
        })
        .await
    }

    /// The market's snapshot and batch submission windows, in blocks.
    pub async fn submission_window(&self, market: Address) -> Result<Windows> {
        let snapshot = self
            .retry("snapshotSubmissionWindow", |c| async move {
                c.contract
                    .snapshotSubmissionWindow(market)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            })
            .await?;
        let batch = self
            .retry("batchSubmissionWindow", |c| async move {
                c.contract
                    .batchSubmissionWindow(market)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            })
            .await?;
        Ok(Windows {
            snapshot_blocks: to_u64(snapshot, "snapshot window")?,
            batch_blocks: to_u64(batch, "batch window")?,
        })
    }

    /// Registration and epoch counters of a market.
    pub async fn market_info(&self, market: Address) -> Result<MarketInfo> {
        let r = self
            .retry("dataMarketInfo", |c| async move {
                c.contract
                    .dataMarketInfo(market)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            })
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
        self.retry("isEpochManager", |c| async move {
            c.contract
                .isEpochManager(market, who)
                .call()
                .await
                .map_err(ChainError::from_contract)
        })
        .await
    }

    /// The contract owner (`owner()`).
    pub async fn owner(&self) -> Result<Address> {
        self.retry("owner", |c| async move {
            c.contract
                .owner()
                .call()
                .await
                .map_err(ChainError::from_contract)
        })
        .await
    }

    /// What is on chain for `epoch` of `market`: release, anchored batches (CID, root, block,
    /// transaction), and whether batch submissions were ended.
    pub async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors> {
        let e = U256::from(epoch);
        let info = self
            .retry("epochInfo", |c| async move {
                c.contract
                    .epochInfo(market, e)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            })
            .await?;
        let cids = self
            .retry("epochBatchCids", |c| async move {
                c.contract
                    .epochBatchCids(market, e)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
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

    async fn batch_info(
        &self,
        market: Address,
        cid: &str,
    ) -> Result<ProtocolState::batchInfoReturn> {
        self.retry("batchInfo", |c| {
            let cid = cid.to_string();
            async move {
                c.contract
                    .batchInfo(market, cid)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            }
        })
        .await
    }

    /// Batch CID → anchoring transaction, from the batch events in the given blocks.
    async fn batch_tx_hashes(
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

    // ------------------------------------------------------------------ chain port: writes

    /// Anchors one batch, exactly once: if `batch_cid` is already recorded for this epoch (by us
    /// before a crash, or by a transaction still pending from our key, which is waited for) it
    /// returns [`SubmitOutcome::AlreadyAnchored`] and sends nothing. Reverts come back typed
    /// ([`crate::Revert`]) before anything is sent.
    pub async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome> {
        let (wallet, from) = self.wallet()?;
        let _writer = self.writer.lock().await;
        let nonce = self.await_no_pending(from).await?;
        if let Some(done) = self.find_batch(market, epoch, batch_cid).await? {
            info!(%market, epoch, batch_cid, "batch already anchored; not sending");
            return Ok(done);
        }
        let call = ProtocolState::submitSubmissionBatchCall {
            dataMarket: market,
            batchCid: batch_cid.to_string(),
            epochId: U256::from(epoch),
            projectIds: project_ids.to_vec(),
            snapshotCids: cids.to_vec(),
            finalizedCidsRootHash: root,
        };
        let to = TxKind::Call(self.cfg.protocol_state);
        let receipt = self
            .send_locked(wallet, from, nonce, to, call.abi_encode().into())
            .await?;
        let delayed = receipt
            .inner
            .logs()
            .iter()
            .any(|l| l.topic0() == Some(&DelayedBatchSubmitted::SIGNATURE_HASH));
        let tx_hash = receipt.transaction_hash();
        let block = receipt.block_number().unwrap_or_default();
        info!(%market, epoch, batch_cid, %tx_hash, block, delayed, "batch anchored");
        Ok(SubmitOutcome::Anchored {
            tx_hash,
            block,
            gas_used: receipt.gas_used(),
            delayed,
        })
    }

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
            .batch_tx_hashes(market, epoch, &BTreeSet::from([block]))
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
        let (wallet, from) = self.wallet()?;
        let _writer = self.writer.lock().await;
        let nonce = self.await_no_pending(from).await?;
        let e = U256::from(epoch);
        let ended = self
            .retry("epochBatchSubmissionsEnded", |c| async move {
                c.contract
                    .epochBatchSubmissionsEnded(market, e)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            })
            .await?;
        if ended {
            return Ok(EndOutcome::AlreadyEnded);
        }
        let call = ProtocolState::endBatchSubmissionsCall {
            dataMarket: market,
            epochId: e,
        };
        let receipt = self
            .send_locked(
                wallet,
                from,
                nonce,
                TxKind::Call(self.cfg.protocol_state),
                call.abi_encode().into(),
            )
            .await?;
        debug_assert!(receipt
            .inner
            .logs()
            .iter()
            .any(|l| l.topic0() == Some(&BatchSubmissionsCompleted::SIGNATURE_HASH)));
        Ok(EndOutcome::Ended {
            tx_hash: receipt.transaction_hash(),
            block: receipt.block_number().unwrap_or_default(),
        })
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
        let (wallet, from) = self.wallet()?;
        let _writer = self.writer.lock().await;
        let nonce = self.await_no_pending(from).await?;
        let r = self.send_locked(wallet, from, nonce, to, input).await?;
        Ok(TxOutcome {
            tx_hash: r.transaction_hash(),
            block: r.block_number().unwrap_or_default(),
            gas_used: r.gas_used(),
            contract_address: r.contract_address(),
        })
    }

    fn wallet(&self) -> Result<(&EthereumWallet, Address)> {
        self.wallet
            .as_ref()
            .map(|(w, a)| (w, *a))
            .ok_or(ChainError::NoSigner)
    }

    /// Waits until no transaction from `from` is pending (pending nonce == latest nonce) and
    /// returns that nonce. A transaction left pending by a crashed writer is waited for, never
    /// replaced, so the caller's "is it on chain already?" check sees its effect.
    async fn await_no_pending(&self, from: Address) -> Result<u64> {
        let deadline = Instant::now() + self.cfg.pending_timeout;
        loop {
            let latest = self
                .retry("eth_getTransactionCount", |c| async move {
                    c.provider
                        .get_transaction_count(from)
                        .latest()
                        .await
                        .map_err(ChainError::from_rpc)
                })
                .await?;
            let pending = self
                .retry("eth_getTransactionCount", |c| async move {
                    c.provider
                        .get_transaction_count(from)
                        .pending()
                        .await
                        .map_err(ChainError::from_rpc)
                })
                .await?;
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

    /// Estimate (reverts decoded; gas ceiling), sign once with `nonce`, send (same bytes on every
    /// retry), wait for the receipt. Call with the writer lock held.
    async fn send_locked(
        &self,
        wallet: &EthereumWallet,
        from: Address,
        nonce: u64,
        to: TxKind,
        input: Bytes,
    ) -> Result<TransactionReceipt> {
        let req = TransactionRequest::default()
            .with_from(from)
            .with_kind(to)
            .with_input(input)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id);
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
        let gas_limit =
            (estimate.saturating_mul(self.cfg.gas_margin_percent) / 100).clamp(estimate, ceiling);
        let fees = self
            .retry("eth_feeHistory", |c| async move {
                c.provider
                    .estimate_eip1559_fees()
                    .await
                    .map_err(ChainError::from_rpc)
            })
            .await?;
        let envelope = req
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(wallet)
            .await
            .map_err(|e| ChainError::Signer(e.to_string()))?;
        let raw = envelope.encoded_2718();
        let tx_hash = *envelope.tx_hash();
        debug!(%tx_hash, nonce, gas_limit, estimate, "sending transaction");
        let sent = self
            .retry("eth_sendRawTransaction", |c| {
                let raw = raw.clone();
                async move {
                    c.provider
                        .send_raw_transaction(&raw)
                        .await
                        .map(|_| ())
                        .map_err(ChainError::from_rpc)
                }
            })
            .await;
        if let Err(e) = sent {
            let msg = rpc_message(&e).unwrap_or_default().to_ascii_lowercase();
            if msg.contains("already known") || msg.contains("known transaction") {
                debug!(%tx_hash, "node already has the transaction");
            } else if msg.contains("nonce too low") {
                // Ours, sent by an earlier attempt whose response was lost, or someone else's.
                if self.receipt_once(tx_hash).await?.is_none() {
                    return Err(ChainError::NonceConflict { from, message: msg });
                }
            } else {
                return Err(e);
            }
        }
        let receipt = self.wait_receipt(tx_hash).await?;
        if !receipt.status() {
            return Err(ChainError::TxFailed(tx_hash));
        }
        Ok(receipt)
    }

    async fn receipt_once(&self, tx_hash: TxHash) -> Result<Option<TransactionReceipt>> {
        self.retry("eth_getTransactionReceipt", |c| async move {
            c.provider
                .get_transaction_receipt(tx_hash)
                .await
                .map_err(ChainError::from_rpc)
        })
        .await
    }

    async fn wait_receipt(&self, tx_hash: TxHash) -> Result<TransactionReceipt> {
        let deadline = Instant::now() + self.cfg.receipt_timeout;
        // Start polling fast (a local or fast chain mines within milliseconds), then back off to
        // RECEIPT_POLL_MS so a slow chain is not hammered.
        let mut delay = self.cfg.receipt_poll.min(Duration::from_millis(10));
        loop {
            if let Some(r) = self.receipt_once(tx_hash).await? {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(ChainError::ReceiptTimeout(tx_hash));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.cfg.receipt_poll);
        }
    }

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

    // ------------------------------------------------------------------ typed admin calls

    /// Registers a data market (owner only). Windows and epoch size in blocks.
    pub async fn register_market(
        &self,
        market: Address,
        epoch_size: u64,
        snapshot_window: u64,
        batch_window: u64,
    ) -> Result<TxOutcome> {
        self.send_call(&ProtocolState::registerDataMarketCall {
            dataMarket: market,
            epochSize: U256::from(epoch_size),
            snapshotWindow: U256::from(snapshot_window),
            batchWindow: U256::from(batch_window),
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

/// A market's registration and counters ([`ChainClient::market_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MarketInfo {
    /// Registered at all.
    pub registered: bool,
    /// Epoch size in blocks.
    pub epoch_size: u64,
    /// Windows in blocks.
    pub windows: Windows,
    /// Last released epoch id (0 = none).
    pub current_epoch: u64,
    /// Last block of the last released epoch.
    pub last_epoch_end: u64,
}

async fn make_wallet(src: &SignerSource, chain_id: u64) -> Result<(EthereumWallet, Address)> {
    match src {
        SignerSource::PrivateKey(key) => {
            // The parse error is not echoed: it could quote the key.
            let signer: PrivateKeySigner = key.trim().parse().map_err(|_| {
                ChainError::Signer("SIGNER_PRIVATE_KEY is not a valid secp256k1 private key".into())
            })?;
            let _ = chain_id;
            let address = signer.address();
            Ok((EthereumWallet::new(signer), address))
        }
        #[cfg(feature = "aws-kms")]
        SignerSource::Kms(key_id) => {
            use alloy::signers::{aws::AwsSigner, Signer as _};
            let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let kms = aws_sdk_kms::Client::new(&conf);
            let signer = AwsSigner::new(kms, key_id.clone(), Some(chain_id))
                .await
                .map_err(|e| ChainError::Signer(format!("KMS key {key_id}: {e}")))?;
            let address = signer.address();
            Ok((EthereumWallet::new(signer), address))
        }
        #[cfg(not(feature = "aws-kms"))]
        SignerSource::Kms(_) => {
            let _ = chain_id;
            Err(ChainError::Config(
                "KMS_KEY_ID needs sequencer-chain built with the `aws-kms` feature".into(),
            ))
        }
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

fn rpc_message(e: &ChainError) -> Option<String> {
    match e {
        ChainError::Rpc(RpcError::ErrorResp(p)) => Some(p.message.to_string()),
        _ => None,
    }
}

fn to_u64(v: U256, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| ChainError::Decode(format!("{what} {v} does not fit in u64")))
}
