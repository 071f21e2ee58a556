//! The protocol chain as the chain port sees it through `sequencer_chain::ChainClient` and the
//! ProtocolState contract (`contracts/ProtocolState.sol`): blocks with hashes that change under a
//! reorg; `EpochReleased` with the windows fixed at release; slot owners and flags; exactly-once
//! anchoring (the client reads the chain before it sends; the contract refuses a batch CID twice,
//! a project twice in one epoch, anything after `endBatchSubmissions`, an end without a batch);
//! writes mined in the next block; and faults: "not yet" answers from a node behind the head (a
//! load-balanced RPC whose nodes lag), slow and failing calls (the gate), funding outages,
//! `nonce too low`, a revoked role, receipts that time out after the transaction was sent.
//!
//! Failures are the [`PortError`]s the chain adapter makes of the client's errors
//! (`chain/src/port.rs`): a contract revert is `Reverted` with the contract's error name as its
//! code (`NotSequencer` is `Permission`), a node's `insufficient funds` is `Funds` and its
//! `nonce too low` is `Nonce`, both retried (the adapter's verdict since issue 16 item 5), a
//! receipt that did not come in time is `Pending` (retryable), a transport failure (the gate's)
//! `Unavailable`. Messages are the client's.
//!
//! Two halves, as in every model: [`ChainModel`] holds the semantics, [`SimChain`] is the port,
//! each trait method one [`SimChain::read`] line (reads: answered by a node that may lag) or a
//! write through [`SimChain::write`] (refusals, mined in the next block). A new `ChainPort`
//! method is a model method and one line in `impl ChainPort for SimChain`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sequencer_core::{Address, B256};
use sequencer_ports::{
    AnchoredBatch, ChainPort, EndOutcome, EpochAnchors, EpochDetails, EpochRelease, ErrorKind,
    MarketDays, MarketInfo, PortError, ReleaseOutcome, ReleasesPage, RewardsOutcome, SentTx,
    SlotCount, SubmitOutcome, Windows,
};
use sha2::{Digest, Sha256};

use crate::exec::Sim;
use crate::gate::Gate;

/// The address the sequencer's anchor key signs with.
pub const SEQUENCER: Address = Address::repeat_byte(0x5e);

/// A transaction mined on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxKind {
    /// `submitSubmissionBatch`.
    Submit {
        /// Epoch.
        epoch: u64,
        /// Batch CID.
        cid: String,
    },
    /// `endBatchSubmissions`.
    End {
        /// Epoch.
        epoch: u64,
    },
}

/// One transaction of the sequencer's key.
#[derive(Debug, Clone)]
pub struct Tx {
    /// Virtual ms it was sent.
    pub at: u64,
    /// Block.
    pub block: u64,
    /// Hash.
    pub hash: B256,
    /// What.
    pub kind: TxKind,
    /// The sending task.
    pub task: String,
}

/// A batch on chain.
#[derive(Debug, Clone)]
pub struct OnChainBatch {
    /// Epoch.
    pub epoch: u64,
    /// CID.
    pub cid: String,
    /// `finalizedCidsRootHash`.
    pub root: B256,
    /// Block.
    pub block: u64,
    /// Past the batch window.
    pub delayed: bool,
    /// Transaction.
    pub tx: B256,
    /// Project ids.
    pub pids: Vec<String>,
    /// Snapshot CIDs.
    pub cids: Vec<String>,
}

/// Faults of the chain that are about its meaning, not its transport (those are the gate's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainFaults {
    /// Chance that a read is answered by a node behind the head.
    pub lag_p: f64,
    /// How far behind, at most, in blocks.
    pub max_lag: u64,
    /// Virtual-time windows `[from, to)` in which the key cannot pay for gas.
    pub funding_outages: Vec<(u64, u64)>,
    /// Windows in which the key's SEQUENCER role is revoked.
    pub role_revoked: Vec<(u64, u64)>,
    /// Chance that a write is refused with `nonce too low`.
    pub nonce_too_low_p: f64,
    /// Chance that a write is mined but its receipt times out (`ReceiptTimeout`).
    pub receipt_timeout_p: f64,
}

/// The chain's state.
#[derive(Debug)]
pub struct ChainModel {
    /// The market.
    pub market: Address,
    /// Protocol block time, ms (writes wait for the next block).
    pub block_ms: u64,
    /// `CONFIRMATIONS` of the release follower.
    pub confirmations: u64,
    head: u64,
    forks: BTreeMap<u64, u32>,
    by_hash: BTreeMap<B256, u64>,
    releases: Vec<(u64, u64, u64, u64)>,
    windows: Windows,
    epoch_windows: BTreeMap<u64, Windows>,
    owners: BTreeMap<u64, Address>,
    flagged: BTreeSet<Address>,
    batches: BTreeMap<String, OnChainBatch>,
    epoch_batches: BTreeMap<u64, Vec<String>>,
    epoch_projects: BTreeMap<u64, BTreeSet<String>>,
    ended: BTreeMap<u64, u64>,
    /// Every transaction of the sequencer's key, in order.
    pub txs: Vec<Tx>,
    /// Reorgs: (virtual ms, depth).
    pub reorgs: Vec<(u64, u64)>,
    /// Meaning faults.
    pub faults: ChainFaults,
}

fn hash_of(height: u64, fork: u32) -> B256 {
    let mut h = Sha256::new();
    h.update(b"sim-block");
    h.update(height.to_be_bytes());
    h.update(fork.to_be_bytes());
    B256::from(<[u8; 32]>::from(h.finalize()))
}

impl ChainModel {
    /// A chain at block 1 with `windows` and slot owners.
    pub fn new(market: Address, windows: Windows, owners: BTreeMap<u64, Address>) -> Self {
        let mut c = Self {
            market,
            block_ms: 2_000,
            confirmations: 2,
            head: 0,
            forks: BTreeMap::new(),
            by_hash: BTreeMap::new(),
            releases: Vec::new(),
            windows,
            epoch_windows: BTreeMap::new(),
            owners,
            flagged: BTreeSet::new(),
            batches: BTreeMap::new(),
            epoch_batches: BTreeMap::new(),
            epoch_projects: BTreeMap::new(),
            ended: BTreeMap::new(),
            txs: Vec::new(),
            reorgs: Vec::new(),
            faults: ChainFaults::default(),
        };
        c.mine();
        c
    }

    /// The canonical hash of block `n`.
    pub fn hash(&self, n: u64) -> B256 {
        hash_of(n, self.forks.get(&n).copied().unwrap_or(0))
    }

    /// Head.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The canonical block of `hash`, whatever a node's lag.
    pub fn number_of(&self, hash: &B256) -> Option<u64> {
        self.by_hash.get(hash).copied()
    }

    /// Mines one block.
    pub fn mine(&mut self) -> u64 {
        self.head += 1;
        let h = self.hash(self.head);
        self.by_hash.insert(h, self.head);
        self.head
    }

    /// Replaces the last `depth` blocks with others (new hashes; their transactions are
    /// included again at the same heights, as a mempool re-includes them).
    pub fn reorg(&mut self, depth: u64, at_ms: u64) {
        let from = self.head.saturating_sub(depth.saturating_sub(1)).max(1);
        for n in from..=self.head {
            let old = self.hash(n);
            self.by_hash.remove(&old);
            *self.forks.entry(n).or_default() += 1;
            let new = self.hash(n);
            self.by_hash.insert(new, n);
        }
        self.reorgs.push((at_ms, depth));
    }

    /// The next epoch's first source block (the contract's `lastEpochEnd + 1`).
    pub fn next_begin(&self) -> u64 {
        self.releases.last().map_or(1, |r| r.2 + 1)
    }

    /// `releaseEpoch(begin, end)`: mined in the next block; returns (epoch, release block).
    pub fn release(&mut self, begin: u64, end: u64) -> (u64, u64) {
        let epoch = self.releases.len() as u64 + 1;
        let block = self.head + 1;
        self.releases.push((epoch, begin, end, block));
        self.epoch_windows.insert(epoch, self.windows);
        (epoch, block)
    }

    /// Every release: (epoch, release block, windows).
    pub fn releases(&self) -> Vec<(u64, u64, Windows)> {
        self.releases
            .iter()
            .map(|r| {
                (
                    r.0,
                    r.3,
                    self.epoch_windows
                        .get(&r.0)
                        .copied()
                        .unwrap_or(self.windows),
                )
            })
            .collect()
    }

    /// Flags a signer.
    pub fn flag(&mut self, who: Address) {
        self.flagged.insert(who);
    }

    /// Batches of `epoch` in submission order.
    pub fn epoch_batches(&self, epoch: u64) -> Vec<OnChainBatch> {
        self.epoch_batches
            .get(&epoch)
            .map(|v| {
                v.iter()
                    .filter_map(|c| self.batches.get(c).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `endBatchSubmissions` ran for `epoch`.
    pub fn ended(&self, epoch: u64) -> bool {
        self.ended.contains_key(&epoch)
    }

    fn view(&self, lag: u64) -> u64 {
        self.head.saturating_sub(lag).max(1)
    }

    fn release_of(&self, epoch: u64) -> Option<&(u64, u64, u64, u64)> {
        self.releases.iter().find(|r| r.0 == epoch)
    }

    fn anchors(&self, epoch: u64, view: u64) -> EpochAnchors {
        let r = self.release_of(epoch).filter(|r| r.3 <= view);
        EpochAnchors {
            market: self.market,
            epoch_id: epoch,
            release_block: r.map(|r| r.3),
            begin: r.map_or(0, |r| r.1),
            end: r.map_or(0, |r| r.2),
            batches: self
                .epoch_batches(epoch)
                .into_iter()
                .filter(|b| b.block <= view)
                .map(|b| AnchoredBatch {
                    batch_cid: b.cid,
                    root: b.root,
                    block: b.block,
                    delayed: b.delayed,
                    tx_hash: Some(b.tx),
                })
                .collect(),
            ended: self.ended.get(&epoch).is_some_and(|b| *b <= view),
        }
    }

    fn in_window(windows: &[(u64, u64)], now: u64) -> bool {
        windows.iter().any(|(a, b)| (*a..*b).contains(&now))
    }

    /// Refusals every write of the key gets before anything is sent.
    fn write_refusal(&self, now: u64, roll: f64) -> Option<PortError> {
        if Self::in_window(&self.faults.role_revoked, now) {
            return Some(
                PortError::chain(
                    ErrorKind::Permission,
                    format!(
                        "contract reverted: caller {SEQUENCER} is not a sequencer of the market"
                    ),
                )
                .with_code("NotSequencer"),
            );
        }
        if Self::in_window(&self.faults.funding_outages, now) {
            return Some(node_error("insufficient funds for gas * price + value"));
        }
        if roll < self.faults.nonce_too_low_p {
            return Some(node_error("nonce too low"));
        }
        None
    }

    fn tx_hash(&self) -> B256 {
        let mut h = Sha256::new();
        h.update(b"sim-tx");
        h.update((self.txs.len() as u64).to_be_bytes());
        B256::from(<[u8; 32]>::from(h.finalize()))
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        now: u64,
        task: &str,
        epoch: u64,
        cid: &str,
        pids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError> {
        // The client reads the chain before it sends (exactly once after any crash).
        if let Some(b) = self.batches.get(cid) {
            if b.epoch != epoch {
                return Err(PortError::chain(
                    ErrorKind::Refused,
                    format!(
                        "batch {cid} for epoch {epoch} is anchored in epoch {}",
                        b.epoch
                    ),
                )
                .with_code("BatchInOtherEpoch"));
            }
            return Ok(SubmitOutcome::AlreadyAnchored {
                tx_hash: Some(b.tx),
                block: b.block,
                root: b.root,
                delayed: b.delayed,
            });
        }
        // The contract's checks, found by eth_estimateGas before anything is sent.
        let Some(&(_, _, _, release)) = self.release_of(epoch) else {
            return Err(revert(
                "EpochNotReleased",
                format!("epoch {epoch} is not released"),
            ));
        };
        if self.ended.contains_key(&epoch) {
            return Err(revert(
                "EpochEnded",
                format!("epoch {epoch}: batch submissions already ended"),
            ));
        }
        if pids.len() != cids.len() {
            return Err(revert(
                "LengthMismatch",
                format!(
                    "{} project ids but {} snapshot cids",
                    pids.len(),
                    cids.len()
                ),
            ));
        }
        if pids.is_empty() {
            return Err(revert("EmptyBatch", "empty batch"));
        }
        if cid.is_empty() {
            return Err(revert("EmptyBatchCid", "empty batch cid"));
        }
        let have = self.epoch_projects.entry(epoch).or_default();
        if let Some(p) = pids.iter().find(|p| have.contains(*p)) {
            return Err(revert(
                "ProjectAlreadySubmitted",
                format!("project {p} already submitted for epoch {epoch}"),
            ));
        }
        have.extend(pids.iter().cloned());
        let block = self.head + 1;
        let windows = self
            .epoch_windows
            .get(&epoch)
            .copied()
            .unwrap_or(self.windows);
        let delayed = block > release + windows.batch_blocks;
        let tx = self.tx_hash();
        self.txs.push(Tx {
            at: now,
            block,
            hash: tx,
            kind: TxKind::Submit {
                epoch,
                cid: cid.to_string(),
            },
            task: task.to_string(),
        });
        self.batches.insert(
            cid.to_string(),
            OnChainBatch {
                epoch,
                cid: cid.to_string(),
                root,
                block,
                delayed,
                tx,
                pids: pids.to_vec(),
                cids: cids.to_vec(),
            },
        );
        self.epoch_batches
            .entry(epoch)
            .or_default()
            .push(cid.to_string());
        Ok(SubmitOutcome::Anchored {
            tx_hash: tx,
            block,
            gas_used: 92_000 * pids.len() as u64,
            delayed,
        })
    }

    fn end(&mut self, now: u64, task: &str, epoch: u64) -> Result<EndOutcome, PortError> {
        if self.ended.contains_key(&epoch) {
            return Ok(EndOutcome::AlreadyEnded);
        }
        if self.release_of(epoch).is_none() {
            return Err(revert(
                "EpochNotReleased",
                format!("epoch {epoch} is not released"),
            ));
        }
        if self.epoch_batches.get(&epoch).is_none_or(Vec::is_empty) {
            return Err(revert(
                "NoBatchSubmitted",
                format!("epoch {epoch}: no batch submitted, batch submissions cannot be ended"),
            ));
        }
        let block = self.head + 1;
        let tx = self.tx_hash();
        self.txs.push(Tx {
            at: now,
            block,
            hash: tx,
            kind: TxKind::End { epoch },
            task: task.to_string(),
        });
        self.ended.insert(epoch, block);
        Ok(EndOutcome::Ended { tx_hash: tx, block })
    }
}

/// A contract revert as the chain adapter reports it: `Reverted`, the error's name as the code.
fn revert(name: &str, message: impl std::fmt::Display) -> PortError {
    PortError::chain(ErrorKind::Reverted, format!("contract reverted: {message}")).with_code(name)
}

/// A node's refusal of our transaction (`insufficient funds …`, `nonce too low`) as the chain
/// adapter reports it (`chain/src/port.rs`, `From<ChainError>`): the kind its wording gives;
/// funds and nonce refusals retryable (funded, or with the next nonce, it works: issue 16 item
/// 5), any other refusal not (the client's verdict on an error answer of the node, which is no
/// transport failure).
pub fn node_error(message: &str) -> PortError {
    let m = message.to_ascii_lowercase();
    let kind = if m.contains("insufficient funds") {
        ErrorKind::Funds
    } else if m.contains("nonce too low") || m.contains("nonce too high") {
        ErrorKind::Nonce
    } else {
        ErrorKind::Refused
    };
    let retryable = matches!(kind, ErrorKind::Funds | ErrorKind::Nonce);
    PortError::chain(
        kind,
        format!("rpc: server returned an error response: error code -32000: {message}"),
    )
    .with_retryable(retryable)
}

/// A receipt that did not come in time, our transaction mined or not.
fn receipt_timeout(tx: B256) -> PortError {
    PortError::chain(ErrorKind::Pending, format!("no receipt for {tx:#x} yet"))
}

/// The chain port over a [`ChainModel`], through a [`Gate`].
#[derive(Clone)]
pub struct SimChain {
    gate: Gate,
    model: Arc<Mutex<ChainModel>>,
}

impl SimChain {
    /// A chain port.
    pub fn new(gate: Gate, model: Arc<Mutex<ChainModel>>) -> Self {
        Self { gate, model }
    }

    /// The gate (fault windows).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    fn sim(&self) -> &Sim {
        self.gate.sim()
    }

    fn with<T>(&self, f: impl FnOnce(&mut ChainModel) -> T) -> T {
        f(&mut self.model.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How far behind the node answering this read is.
    fn lag(&self) -> u64 {
        let (p, max) = self.with(|m| (m.faults.lag_p, m.faults.max_lag));
        if max > 0 && self.sim().chance(p) {
            self.sim().rand_range(1..max + 1)
        } else {
            0
        }
    }

    /// One read through the gate, answered by a node that may lag: `f` gets the model and the
    /// head that node has seen.
    async fn read<T: std::fmt::Debug>(
        &self,
        op: &'static str,
        what: String,
        f: impl FnOnce(&ChainModel, u64) -> T,
    ) -> Result<T, PortError> {
        let lag = self.lag();
        self.gate
            .call(
                op,
                format!("{what} lag {lag}"),
                || (Ok(self.with(|m| f(m, m.view(lag)))), 0),
                |r| format!("{r:?}"),
            )
            .await
    }

    /// One transaction of the sequencer's key through the gate: the key's refusals first (a
    /// revoked role, a funding outage, `nonce too low`), then `f` (the client's read-before-send
    /// and the contract, given the time and the sending task), mined in the next block. A
    /// transaction `f` sent (`sent` gives its hash) has its receipt time out with the
    /// scenario's chance, after it was mined.
    async fn write<T: std::fmt::Debug>(
        &self,
        op: &'static str,
        what: String,
        f: impl FnOnce(&mut ChainModel, u64, &str) -> Result<T, PortError>,
        sent: impl Fn(&T) -> Option<B256>,
    ) -> Result<T, PortError> {
        let now = self.sim().now();
        let task = self.sim().current_name();
        let roll = self.sim().rand_range(0..1_000_000) as f64 / 1e6;
        let timeout = {
            let p = self.with(|m| m.faults.receipt_timeout_p);
            self.sim().chance(p)
        };
        let latency = self.write_latency();
        self.gate
            .call(
                op,
                what,
                || {
                    let r = self.with(|m| match m.write_refusal(now, roll) {
                        Some(e) => Err(e),
                        None => f(m, now, &task),
                    });
                    match r {
                        Ok(o) => match sent(&o) {
                            Some(tx) if timeout => (Err(receipt_timeout(tx)), latency),
                            _ => (Ok(o), latency),
                        },
                        Err(e) => (Err(e), 0),
                    }
                },
                |r| format!("{r:?}"),
            )
            .await
    }

    fn write_latency(&self) -> u64 {
        // Mined in the next block, then reported (CHAIN_CONFIRMATIONS = 1).
        let block_ms = self.with(|m| m.block_ms);
        block_ms / 2 + self.sim().rand_range(0..block_ms)
    }
}

#[async_trait]
impl ChainPort for SimChain {
    async fn head(&self) -> Result<u64, PortError> {
        self.read("head", String::new(), |_, view| view).await
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>, PortError> {
        self.read("block_hash", number.to_string(), |m, view| {
            (number <= view).then(|| m.hash(number))
        })
        .await
    }

    async fn block_number(&self, hash: B256) -> Result<Option<u64>, PortError> {
        self.read("block_number", format!("{hash:#x}"), |m, view| {
            m.by_hash.get(&hash).copied().filter(|n| *n <= view)
        })
        .await
    }

    async fn releases_after(
        &self,
        _market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, PortError> {
        self.read("releases_after", cursor.to_string(), |m, view| {
            let safe = view.saturating_sub(m.confirmations);
            ReleasesPage {
                releases: m
                    .releases
                    .iter()
                    .filter(|r| r.3 > cursor && r.3 <= safe)
                    .map(|r| EpochRelease {
                        market: m.market,
                        epoch_id: r.0,
                        begin: r.1,
                        end: r.2,
                        timestamp: r.3,
                        block_number: r.3,
                        block_hash: m.hash(r.3),
                        tx_hash: B256::repeat_byte(r.0 as u8),
                    })
                    .collect(),
                next_cursor: cursor.max(safe),
            }
        })
        .await
    }

    async fn slot_owner(&self, slot: u64) -> Result<Address, PortError> {
        self.read("slot_owner", slot.to_string(), |m, _| {
            m.owners.get(&slot).copied().unwrap_or(Address::ZERO)
        })
        .await
    }

    async fn is_flagged(&self, _market: Address, who: Address) -> Result<bool, PortError> {
        self.read("is_flagged", format!("{who:#x}"), |m, _| {
            m.flagged.contains(&who)
        })
        .await
    }

    async fn slot_count(&self) -> Result<Option<u64>, PortError> {
        // `getTotalNodeCount()`: the highest slot ever given a snapshotter.
        self.read("slot_count", String::new(), |m, _| {
            Some(
                m.owners
                    .iter()
                    .filter(|(_, a)| **a != Address::ZERO)
                    .map(|(s, _)| *s)
                    .max()
                    .unwrap_or(0),
            )
        })
        .await
    }

    async fn windows(&self, _market: Address) -> Result<Windows, PortError> {
        self.read("windows", String::new(), |m, _| m.windows).await
    }

    async fn epoch_windows(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, PortError> {
        self.read("epoch_windows", epoch.to_string(), |m, view| {
            m.release_of(epoch)
                .filter(|r| r.3 <= view)
                .and_then(|_| m.epoch_windows.get(&epoch).copied())
        })
        .await
    }

    async fn anchored(&self, _market: Address, epoch: u64) -> Result<EpochAnchors, PortError> {
        self.read("anchored", epoch.to_string(), |m, view| {
            m.anchors(epoch, view)
        })
        .await
    }

    async fn submit_batch(
        &self,
        _market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError> {
        let what = format!("epoch {epoch} {batch_cid} {} projects", project_ids.len());
        self.write(
            "submit_batch",
            what,
            |m, now, task| m.submit(now, task, epoch, batch_cid, project_ids, cids, root),
            |o| match o {
                SubmitOutcome::Anchored { tx_hash, .. } => Some(*tx_hash),
                SubmitOutcome::AlreadyAnchored { .. } => None,
            },
        )
        .await
    }

    async fn end_batch(&self, _market: Address, epoch: u64) -> Result<EndOutcome, PortError> {
        self.write(
            "end_batch",
            format!("epoch {epoch}"),
            |m, now, task| m.end(now, task, epoch),
            |o| match o {
                EndOutcome::Ended { tx_hash, .. } => Some(*tx_hash),
                EndOutcome::AlreadyEnded => None,
            },
        )
        .await
    }

    // Epoch releases and days: the simulated deployment releases epochs from the model (no
    // epoch manager runs in it) and its market stays in day 1, so no rewards commit is due.
    // The one read the pipeline makes here (anchor asks an epoch's day) is answered from the
    // model directly, outside the gate, so it draws nothing from the seeded randomness and the
    // recorded seeds keep their runs; the rest is not modelled and says so.

    fn signer(&self) -> Option<Address> {
        Some(SEQUENCER)
    }
    async fn market_info(&self, _market: Address) -> Result<MarketInfo, PortError> {
        // What verify reads of it: the last released epoch (its horizon before the tick has
        // recorded any epoch).
        self.read("market_info", String::new(), |m, view| {
            let last = m.releases.iter().rev().find(|r| r.3 <= view);
            MarketInfo {
                registered: true,
                epoch_size: last.map_or(0, |r| r.2 + 1 - r.1),
                windows: m.windows,
                current_epoch: last.map_or(0, |r| r.0),
                last_epoch_end: last.map_or(0, |r| r.2),
            }
        })
        .await
    }
    async fn is_epoch_manager(&self, _market: Address, _who: Address) -> Result<bool, PortError> {
        Err(not_modelled("is_epoch_manager"))
    }
    async fn release_epoch(
        &self,
        _market: Address,
        _begin: u64,
        _end: u64,
    ) -> Result<ReleaseOutcome, PortError> {
        Err(not_modelled("release_epoch"))
    }
    async fn skip_epochs(&self, _market: Address, _new_begin: u64) -> Result<SentTx, PortError> {
        Err(not_modelled("skip_epochs"))
    }
    async fn epoch_details(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<EpochDetails>, PortError> {
        Ok(self.with(|m| {
            m.release_of(epoch).map(|r| EpochDetails {
                epoch_id: r.0,
                begin: r.1,
                end: r.2,
                release_block: r.3,
                day: 1,
                ended: m.ended.contains_key(&epoch),
            })
        }))
    }
    async fn epoch_release(
        &self,
        _market: Address,
        _epoch: u64,
    ) -> Result<Option<EpochRelease>, PortError> {
        Err(not_modelled("epoch_release"))
    }
    async fn transaction_sender(&self, _tx: B256) -> Result<Option<Address>, PortError> {
        Err(not_modelled("transaction_sender"))
    }
    async fn market_days(&self, _market: Address) -> Result<MarketDays, PortError> {
        Err(not_modelled("market_days"))
    }
    async fn update_rewards(
        &self,
        _market: Address,
        _day: u64,
        _counts: &[SlotCount],
        _eligible_nodes: u64,
    ) -> Result<RewardsOutcome, PortError> {
        Err(not_modelled("update_rewards"))
    }
}

/// A chain port call the simulated deployment never makes.
fn not_modelled(call: &str) -> PortError {
    PortError::chain(
        ErrorKind::Config,
        format!("{call} is not modelled by the simulated chain"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> ChainModel {
        ChainModel::new(
            Address::repeat_byte(1),
            Windows {
                snapshot_blocks: 5,
                batch_blocks: 10,
            },
            BTreeMap::new(),
        )
    }

    #[test]
    fn anchoring_is_exactly_once_and_the_contract_rules_hold() {
        let mut c = chain();
        let (e, _) = c.release(1, 10);
        c.mine();
        let p = |s: &str| vec![s.to_string()];
        assert!(matches!(
            c.submit(0, "t", e, "b1", &p("a"), &p("x"), B256::ZERO),
            Ok(SubmitOutcome::Anchored { .. })
        ));
        assert!(matches!(
            c.submit(0, "t", e, "b1", &p("a"), &p("x"), B256::ZERO),
            Ok(SubmitOutcome::AlreadyAnchored { .. })
        ));
        assert!(matches!(
            c.submit(0, "t", e, "b2", &p("a"), &p("y"), B256::ZERO),
            Err(ref e) if e.code() == Some("ProjectAlreadySubmitted")
        ));
        assert!(matches!(c.end(0, "t", e), Ok(EndOutcome::Ended { .. })));
        assert!(matches!(c.end(0, "t", e), Ok(EndOutcome::AlreadyEnded)));
        assert!(matches!(
            c.submit(0, "t", e, "b3", &p("b"), &p("y"), B256::ZERO),
            Err(ref e) if e.code() == Some("EpochEnded")
        ));
        assert_eq!(c.txs.len(), 2);
    }

    #[test]
    fn a_reorg_changes_hashes_and_a_lagging_node_has_not_seen_recent_blocks() {
        let mut c = chain();
        for _ in 0..10 {
            c.mine();
        }
        let old = c.hash(10);
        c.reorg(2, 0);
        assert_ne!(c.hash(10), old);
        assert_eq!(c.number_of(&old), None);
        assert_eq!(c.number_of(&c.hash(10)), Some(10));
        assert_eq!(c.number_of(&c.hash(8)), Some(8));
        let (e, r) = c.release(1, 10);
        assert!(
            c.anchors(e, c.view(0)).release_block.is_none(),
            "not mined yet"
        );
        c.mine();
        assert_eq!(c.anchors(e, c.view(0)).release_block, Some(r));
        assert!(
            c.anchors(e, c.view(1)).release_block.is_none(),
            "a node one block behind"
        );
        let funds = node_error("insufficient funds for gas * price + value");
        assert_eq!(
            (funds.kind(), funds.is_retryable()),
            (&ErrorKind::Funds, true),
            "the adapter retries an account out of gas money"
        );
        let nonce = node_error("nonce too low");
        assert_eq!(
            (nonce.kind(), nonce.is_retryable()),
            (&ErrorKind::Nonce, true),
            "and a nonce another writer took"
        );
        assert!(receipt_timeout(B256::ZERO).is_retryable());
    }
}
