//! A protocol chain in memory ([`MemChain`]), faithful to the contract where the handlers can
//! tell: releases (epoch manager only, contiguous, exactly `epochSize` blocks, the first anywhere)
//! that roll the market's day over as `releaseEpoch` does, skips, windows kept per epoch, slot
//! owners, flags, exactly-once anchoring per batch CID, `endBatchSubmissions` refused without a
//! batch, and `updateRewards` (SEQUENCER only, ended days only, once per slot and day, read
//! before send, `DailyTaskCompletedEvent` at the quota). Integration tests and the local runner
//! use anvil instead; this exists so that every rule and fault of the handlers is tested in
//! milliseconds (and so a benchmark or a simulator can run the pipeline without a node).
//!
//! Each [`MemChain`] is a handle with a signing key on one shared chain: [`MemChain::with_signer`]
//! gives another key on the same chain (a second epoch manager, a stranger). The default key
//! ([`MemChain::OPERATOR`]) is owner, sequencer and epoch manager, like the local deployment's.
//! Faults: [`MemChain::fail_next_submits`], [`MemChain::fail_next_release`],
//! [`MemChain::fail_next_rewards`] (nothing sent, or sent and mined with the answer lost).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use sequencer_core::devkeys;
use sequencer_core::eip712::address_of;
use sequencer_core::epochs::DayClock;
use sequencer_core::{Address, B256};
use sequencer_ports::{
    AnchoredBatch, ChainPort, EndOutcome, EpochAnchors, EpochDetails, EpochRelease, ErrorKind,
    MarketDays, MarketInfo, PortError, ReleaseOutcome, ReleasesPage, RewardsOutcome, SentTx,
    SlotCount, SubmitOutcome, Windows,
};

/// The hash of block `n` on a [`MemChain`].
pub fn block_hash_of(n: u64) -> B256 {
    sequencer_core::B256::from(alloy_keccak(n))
}

fn alloy_keccak(n: u64) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"memchain-block");
    h.update(n.to_be_bytes());
    h.finalize().into()
}

/// How the next write of a kind fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFault {
    /// The connection fails before anything is sent: nothing changes on chain (`Unavailable`).
    BeforeSend,
    /// The transaction is sent and mined, but its answer is lost (a receipt timeout, the
    /// connection cut, a process killed before it read the receipt): `Pending`.
    AfterSend,
    /// Releases only: another key's identical release lands between our read and our send, so
    /// the contract refuses ours at estimation (`InvalidEpochRange`), nothing sent.
    RacedBy(Address),
    /// Releases only: another key's identical release lands first in the same block; ours is
    /// mined and fails without revert data (`TxFailed`), gas spent.
    FailedAfter(Address),
}

/// Slots per `updateRewards` transaction, as the chain client sends them.
const REWARD_SLOTS_PER_TX: usize = 250;

#[derive(Debug)]
struct Inner {
    /// Port calls by method (what a test counts: `MemChain::calls`).
    calls: BTreeMap<&'static str, u64>,
    head: u64,
    releases: Vec<EpochRelease>,
    days_of: BTreeMap<u64, u64>,
    owners: BTreeMap<u64, Address>,
    flagged: BTreeSet<Address>,
    anchored: BTreeMap<u64, Vec<AnchoredBatch>>,
    ended: BTreeSet<u64>,
    /// Batch and end transactions (what [`MemChain::transactions`] counts).
    txs: u64,
    /// Every transaction: its sender.
    senders: BTreeMap<B256, Address>,
    nonce: u64,
    fail_next_submit: u32,
    /// The error of those failures (`None`: a receipt that did not come in time).
    submit_error: Option<PortError>,
    /// Refuse every transaction with this error until cleared (a drained account, a revoked
    /// role); reads still answer, so a batch on chain already is still found.
    refuse_writes: Option<PortError>,
    revert_next_submit: u32,
    release_faults: VecDeque<SendFault>,
    rewards_faults: VecDeque<SendFault>,
    /// The market's current windows (`updateSubmissionWindows`).
    windows: Windows,
    /// The windows each epoch was released under (`epochWindows`).
    epoch_windows: BTreeMap<u64, Windows>,
    /// Behave like a contract without `epochWindows` (Powerloom's own).
    no_epoch_windows: bool,
    owner: Address,
    epoch_managers: BTreeSet<Address>,
    sequencers: BTreeSet<Address>,
    epoch_size: u64,
    last_epoch_end: u64,
    days: DayClock,
    daily_quota: u64,
    day_starts: Vec<(u64, B256)>,
    /// (day, slot) → met the quota.
    rewards: BTreeMap<(u64, u64), bool>,
    eligible_nodes: BTreeMap<u64, u64>,
    /// `DailyTaskCompletedEvent`s: (day, slot, snapshotter, transaction).
    completions: Vec<(u64, u64, Address, B256)>,
    skips: Vec<(u64, u64)>,
    release_txs: u64,
    rewards_txs: u64,
    /// `head` calls that fail (`Unavailable`) before it answers again.
    fail_next_heads: u32,
    /// How long each `block_hash` call takes (tokio time).
    block_hash_delay: Option<std::time::Duration>,
    /// `block_hash` calls answered.
    block_hash_calls: u64,
}

impl Inner {
    fn tx(&mut self, from: Address) -> (B256, u64) {
        self.head += 1;
        self.nonce += 1;
        let tx = B256::from(alloy_keccak(1_000_000_000 + self.nonce));
        self.senders.insert(tx, from);
        (tx, self.head)
    }

    fn release_as(
        &mut self,
        market: Address,
        from: Address,
        begin: u64,
        end: u64,
    ) -> Result<ReleaseOutcome, PortError> {
        if !self.epoch_managers.contains(&from) {
            return Err(revert_permission("NotEpochManager", from));
        }
        let current = self.releases.len() as u64;
        let expected = if current == 0 {
            begin
        } else {
            self.last_epoch_end + 1
        };
        if begin != expected || end < begin || end - begin + 1 != self.epoch_size {
            return Err(revert(
                "InvalidEpochRange",
                format!(
                    "epoch [{begin}, {end}]: expected begin {expected}, size {}",
                    self.epoch_size
                ),
            ));
        }
        let (tx, block) = self.tx(from);
        let id = current + 1;
        self.last_epoch_end = end;
        let day_started = self.days.release(id);
        if let Some(d) = day_started {
            self.day_starts.push((d, tx));
        }
        self.days_of.insert(id, self.days.day);
        let windows = self.windows;
        self.epoch_windows.insert(id, windows);
        self.releases.push(EpochRelease {
            market,
            epoch_id: id,
            begin,
            end,
            timestamp: block,
            block_number: block,
            block_hash: block_hash_of(block),
            tx_hash: tx,
        });
        self.release_txs += 1;
        Ok(ReleaseOutcome {
            epoch_id: id,
            tx_hash: tx,
            block,
            day_started,
        })
    }

    fn recorded(&self, day: u64, slots: &[u64]) -> Vec<bool> {
        slots
            .iter()
            .map(|s| self.rewards.contains_key(&(day, *s)))
            .collect()
    }

    /// One `updateRewards` transaction, by the contract's rules.
    fn update_rewards_tx(
        &mut self,
        from: Address,
        day: u64,
        chunk: &[SlotCount],
        eligible_nodes: u64,
    ) -> Result<(SentTx, Vec<(u64, Address)>), PortError> {
        if !self.sequencers.contains(&from) {
            return Err(revert_permission("NotSequencer", from));
        }
        if chunk.is_empty() {
            return Err(revert("EmptyBatch", "no slots".into()));
        }
        let current = self.days.day;
        if day == 0 || day >= current {
            return Err(revert(
                "DayNotEnded",
                format!("day {day} has not ended (current day {current})"),
            ));
        }
        if let Some(c) = chunk
            .iter()
            .find(|c| self.rewards.contains_key(&(day, c.slot)))
        {
            return Err(revert(
                "RewardsAlreadyRecorded",
                format!("slot {} day {day}", c.slot),
            ));
        }
        let (tx, block) = self.tx(from);
        if eligible_nodes != 0 {
            self.eligible_nodes.entry(day).or_insert(eligible_nodes);
        }
        let mut completed = Vec::new();
        for c in chunk {
            let met = c.submissions >= self.daily_quota;
            self.rewards.insert((day, c.slot), met);
            if met {
                let who = self.owners.get(&c.slot).copied().unwrap_or(Address::ZERO);
                self.completions.push((day, c.slot, who, tx));
                completed.push((c.slot, who));
            }
        }
        self.rewards_txs += 1;
        Ok((
            SentTx {
                tx_hash: tx,
                block,
                gas_used: 30_000 + 25_000 * chunk.len() as u64,
            },
            completed,
        ))
    }
}

fn revert(code: &str, message: String) -> PortError {
    PortError::chain(ErrorKind::Reverted, format!("contract reverted: {message}")).with_code(code)
}

fn revert_permission(code: &str, who: Address) -> PortError {
    PortError::chain(
        ErrorKind::Permission,
        format!("contract reverted: {who} lacks the role ({code})"),
    )
    .with_code(code)
}

fn lost(tx: B256) -> PortError {
    // What the chain client says when a receipt does not come in time: retry (reading first).
    PortError::chain(ErrorKind::Pending, format!("no receipt for {tx:#x} yet"))
}

fn unreachable_node() -> PortError {
    PortError::chain(ErrorKind::Unavailable, "connection refused")
}

/// A protocol chain in memory: blocks advance by [`MemChain::mine`] and by every transaction
/// (one block each), epochs by [`MemChain::release`] or the port's `release_epoch`; anchoring is
/// exactly once per batch CID like the contract, and ending an epoch without a batch reverts
/// `NoBatchSubmitted` like the contract.
#[derive(Debug, Clone)]
pub struct MemChain {
    market: Address,
    signer: Option<Address>,
    inner: Arc<Mutex<Inner>>,
}

impl MemChain {
    /// The default key: owner, sequencer and epoch manager of the market.
    pub const OPERATOR: Address = Address::repeat_byte(0x0e);

    /// A chain whose slots `1..=slots` belong to the simulated snapshotters; the market has
    /// epochs of 10 blocks, Powerloom's day of a 1 s chain (8 640 epochs) and quota (1 000).
    pub fn new(market: Address, windows: Windows, slots: u64) -> Self {
        let mut inner = Inner {
            calls: BTreeMap::new(),
            head: 1,
            releases: Vec::new(),
            days_of: BTreeMap::new(),
            owners: BTreeMap::new(),
            flagged: BTreeSet::new(),
            anchored: BTreeMap::new(),
            ended: BTreeSet::new(),
            txs: 0,
            senders: BTreeMap::new(),
            nonce: 0,
            fail_next_submit: 0,
            submit_error: None,
            refuse_writes: None,
            revert_next_submit: 0,
            release_faults: VecDeque::new(),
            rewards_faults: VecDeque::new(),
            windows,
            epoch_windows: BTreeMap::new(),
            no_epoch_windows: false,
            owner: Self::OPERATOR,
            epoch_managers: BTreeSet::from([Self::OPERATOR]),
            sequencers: BTreeSet::from([Self::OPERATOR]),
            epoch_size: 10,
            last_epoch_end: 0,
            days: DayClock::new(8_640),
            daily_quota: 1_000,
            day_starts: Vec::new(),
            rewards: BTreeMap::new(),
            eligible_nodes: BTreeMap::new(),
            completions: Vec::new(),
            skips: Vec::new(),
            release_txs: 0,
            rewards_txs: 0,
            fail_next_heads: 0,
            block_hash_delay: None,
            block_hash_calls: 0,
        };
        for s in 1..=slots {
            inner
                .owners
                .insert(s, address_of(&devkeys::sim_snapshotter_key(s).unwrap()));
        }
        Self {
            market,
            signer: Some(Self::OPERATOR),
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn count(&self, method: &'static str) {
        *self.lock().calls.entry(method).or_default() += 1;
    }

    /// Port calls so far, by method (`slot_owner`, `is_flagged`, `block_number`, …).
    pub fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.lock().calls.clone()
    }

    /// Port calls so far, all methods.
    pub fn total_calls(&self) -> u64 {
        self.lock().calls.values().sum()
    }

    /// The market.
    pub fn market(&self) -> Address {
        self.market
    }

    /// A handle on the same chain that signs with `who` (`None`: read-only).
    pub fn with_signer(&self, who: Option<Address>) -> Self {
        Self {
            market: self.market,
            signer: who,
            inner: self.inner.clone(),
        }
    }

    /// `setEpochManager(market, who, allowed)`.
    pub fn set_epoch_manager(&self, who: Address, allowed: bool) {
        let mut i = self.lock();
        if allowed {
            i.epoch_managers.insert(who);
        } else {
            i.epoch_managers.remove(&who);
        }
    }

    /// `setSequencer(market, who, allowed)`.
    pub fn set_sequencer(&self, who: Address, allowed: bool) {
        let mut i = self.lock();
        if allowed {
            i.sequencers.insert(who);
        } else {
            i.sequencers.remove(&who);
        }
    }

    /// `updateMarketSettings`: the epoch size, `epochsInADay` (the contract derives it from the
    /// day and block time; here it is given) and the quota. A new `epochsInADay` applies to the
    /// current day, counted from its first epoch, as on the contract.
    pub fn set_market(&self, epoch_size: u64, epochs_in_a_day: u64, daily_quota: u64) {
        let mut i = self.lock();
        i.epoch_size = epoch_size;
        i.days.epochs_in_a_day = epochs_in_a_day;
        i.daily_quota = daily_quota;
    }

    /// `assignSnapshotterToSlot`.
    pub fn assign_slot(&self, slot: u64, who: Address) {
        self.lock().owners.insert(slot, who);
    }

    /// `updateSubmissionWindows`: epochs released from now on get `windows`.
    pub fn set_windows(&self, windows: Windows) {
        self.lock().windows = windows;
    }

    /// From now on, answer `epoch_windows` like a contract without that view.
    pub fn forget_epoch_windows(&self) {
        self.lock().no_epoch_windows = true;
    }

    /// Mines `n` blocks; returns the head.
    pub fn mine(&self, n: u64) -> u64 {
        let mut i = self.lock();
        i.head += n;
        i.head
    }

    /// Head.
    pub fn head_now(&self) -> u64 {
        self.lock().head
    }

    /// Releases the next epoch on its grid (the first at block 1) as the owner's epoch manager,
    /// in a new block; returns (epoch id, release block).
    pub fn release(&self) -> (u64, u64) {
        let mut i = self.lock();
        let begin = if i.releases.is_empty() {
            1
        } else {
            i.last_epoch_end + 1
        };
        let end = begin + i.epoch_size - 1;
        let owner = i.owner;
        let was = i.epoch_managers.insert(owner);
        let r = i.release_as(self.market, owner, begin, end).unwrap();
        if was {
            i.epoch_managers.remove(&owner);
        }
        (r.epoch_id, r.block)
    }

    /// Flags a signer.
    pub fn flag(&self, who: Address) {
        self.lock().flagged.insert(who);
    }

    /// Batch and end transactions sent so far.
    pub fn transactions(&self) -> u64 {
        self.lock().txs
    }

    /// `releaseEpoch` transactions mined so far (whoever sent them).
    pub fn release_transactions(&self) -> u64 {
        self.lock().release_txs
    }

    /// `updateRewards` transactions mined so far.
    pub fn rewards_transactions(&self) -> u64 {
        self.lock().rewards_txs
    }

    /// Every `EpochReleased`, in order.
    pub fn releases(&self) -> Vec<EpochRelease> {
        self.lock().releases.clone()
    }

    /// Every `DayStartedEvent`: (day, transaction), in order.
    pub fn day_starts(&self) -> Vec<(u64, B256)> {
        self.lock().day_starts.clone()
    }

    /// The market's day clock (`dayCounter`, the day's first epoch, `epochsInADay`).
    pub fn day_clock(&self) -> DayClock {
        self.lock().days
    }

    /// Every `EpochsSkipped`: (from begin, to begin).
    pub fn skips(&self) -> Vec<(u64, u64)> {
        self.lock().skips.clone()
    }

    /// `rewardsRecorded` and `checkSlotTaskStatusForDay` of (day, slot): `None` when not recorded,
    /// else whether the slot met the quota.
    pub fn reward(&self, day: u64, slot: u64) -> Option<bool> {
        self.lock().rewards.get(&(day, slot)).copied()
    }

    /// `eligibleNodesForDay`.
    pub fn eligible_nodes(&self, day: u64) -> u64 {
        self.lock().eligible_nodes.get(&day).copied().unwrap_or(0)
    }

    /// Every `DailyTaskCompletedEvent`: (day, slot, snapshotter, transaction).
    pub fn completions(&self) -> Vec<(u64, u64, Address, B256)> {
        self.lock().completions.clone()
    }

    /// The sender of every transaction mined so far, for counting per key.
    pub fn transactions_from(&self, who: Address) -> u64 {
        self.lock().senders.values().filter(|s| **s == who).count() as u64
    }

    /// The anchored batches of an epoch.
    pub fn anchored_batches(&self, epoch: u64) -> Vec<AnchoredBatch> {
        self.lock()
            .anchored
            .get(&epoch)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the next `n` `head` reads fail as an unavailable node.
    pub fn fail_next_heads(&self, n: u32) {
        self.lock().fail_next_heads = n;
    }

    /// Makes every `block_hash` read take `d` (a slow RPC node; tokio time, so a test on paused
    /// time advances it), or answer at once (`None`).
    pub fn set_block_hash_delay(&self, d: Option<std::time::Duration>) {
        self.lock().block_hash_delay = d;
    }

    /// `block_hash` reads answered so far.
    pub fn block_hash_calls(&self) -> u64 {
        self.lock().block_hash_calls
    }

    /// Makes the next `n` batch submissions fail with a transport error (after nothing was sent).
    pub fn fail_next_submits(&self, n: u32) {
        let mut i = self.inner.lock().unwrap();
        i.fail_next_submit = n;
        i.submit_error = None;
    }

    /// Makes the next `n` batch submissions fail with `err` (after nothing was sent).
    pub fn fail_next_submits_with(&self, n: u32, err: PortError) {
        let mut i = self.inner.lock().unwrap();
        i.fail_next_submit = n;
        i.submit_error = Some(err);
    }

    /// Refuses every write (batches and `endBatchSubmissions`) with `err` until called with
    /// `None`: what an account without gas money or without the sequencer role gets.
    pub fn refuse_writes(&self, err: Option<PortError>) {
        self.inner.lock().unwrap().refuse_writes = err;
    }

    /// Makes the next `n` batch submissions revert (a refusal no retry fixes: the epoch ends
    /// `ANCHOR_FAILED`).
    pub fn revert_next_submits(&self, n: u32) {
        self.inner.lock().unwrap().revert_next_submit = n;
    }

    /// Makes the next `releaseEpoch` of any key fail this way.
    pub fn fail_next_release(&self, fault: SendFault) {
        self.lock().release_faults.push_back(fault);
    }

    /// Makes the next `updateRewards` send of any key fail this way.
    pub fn fail_next_rewards(&self, fault: SendFault) {
        self.lock().rewards_faults.push_back(fault);
    }

    fn from(&self) -> Result<Address, PortError> {
        self.signer.ok_or_else(|| {
            PortError::chain(
                ErrorKind::Config,
                "no signer configured: this client is read-only",
            )
        })
    }

    fn known(&self, market: Address) -> Result<(), PortError> {
        if market == self.market {
            Ok(())
        } else {
            Err(revert(
                "UnknownMarket",
                format!("data market {market:#x} is not registered"),
            ))
        }
    }
}

#[async_trait]
impl ChainPort for MemChain {
    async fn head(&self) -> Result<u64, PortError> {
        self.count("head");
        {
            let mut i = self.lock();
            if i.fail_next_heads > 0 {
                i.fail_next_heads -= 1;
                return Err(PortError::chain(
                    ErrorKind::Unavailable,
                    "node unavailable (test fault)",
                ));
            }
        }
        Ok(self.head_now())
    }
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, PortError> {
        let delay = self.lock().block_hash_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        self.lock().block_hash_calls += 1;
        self.count("block_hash");
        Ok((number <= self.head_now()).then(|| block_hash_of(number)))
    }
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, PortError> {
        self.count("block_number");
        let head = self.head_now();
        Ok((0..=head).rev().find(|n| block_hash_of(*n) == hash))
    }
    async fn releases_after(
        &self,
        _market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, PortError> {
        self.count("releases_after");
        let i = self.lock();
        Ok(ReleasesPage {
            releases: i
                .releases
                .iter()
                .filter(|r| r.block_number > cursor && r.block_number <= i.head)
                .cloned()
                .collect(),
            next_cursor: i.head,
        })
    }
    async fn slot_owner(&self, slot: u64) -> Result<Address, PortError> {
        self.count("slot_owner");
        Ok(self
            .lock()
            .owners
            .get(&slot)
            .copied()
            .unwrap_or(Address::ZERO))
    }
    async fn is_flagged(&self, _market: Address, who: Address) -> Result<bool, PortError> {
        self.count("is_flagged");
        Ok(self.lock().flagged.contains(&who))
    }
    async fn slot_count(&self) -> Result<Option<u64>, PortError> {
        self.count("slot_count");
        // `getTotalNodeCount()`: the highest slot ever given a snapshotter.
        Ok(Some(
            self.lock()
                .owners
                .iter()
                .filter(|(_, a)| **a != Address::ZERO)
                .map(|(s, _)| *s)
                .max()
                .unwrap_or(0),
        ))
    }
    async fn windows(&self, _market: Address) -> Result<Windows, PortError> {
        self.count("windows");
        Ok(self.lock().windows)
    }
    async fn epoch_windows(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, PortError> {
        self.count("epoch_windows");
        let i = self.lock();
        if i.no_epoch_windows {
            return Ok(None);
        }
        Ok(i.epoch_windows.get(&epoch).copied())
    }
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, PortError> {
        self.count("anchored");
        let i = self.lock();
        let r = i.releases.iter().find(|r| r.epoch_id == epoch);
        Ok(EpochAnchors {
            market,
            epoch_id: epoch,
            release_block: r.map(|r| r.block_number),
            begin: r.map_or(0, |r| r.begin),
            end: r.map_or(0, |r| r.end),
            batches: i.anchored.get(&epoch).cloned().unwrap_or_default(),
            ended: i.ended.contains(&epoch),
        })
    }
    async fn submit_batch(
        &self,
        _market: Address,
        epoch: u64,
        batch_cid: &str,
        _project_ids: &[String],
        _cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError> {
        self.count("submit_batch");
        let mut i = self.inner.lock().unwrap();
        if i.revert_next_submit > 0 {
            i.revert_next_submit -= 1;
            return Err(PortError::chain(
                ErrorKind::Reverted,
                format!("contract reverted: epoch {epoch}: batch {batch_cid} refused: a project already anchored"),
            )
            .with_code("InvalidBatch"));
        }
        if i.fail_next_submit > 0 {
            i.fail_next_submit -= 1;
            if let Some(e) = &i.submit_error {
                return Err(e.clone());
            }
            // What the chain client says when a receipt does not come in time: retry.
            return Err(PortError::chain(
                ErrorKind::Pending,
                format!("no receipt for {:#x} yet", B256::repeat_byte(0xee)),
            ));
        }
        if let Some(b) = i
            .anchored
            .values()
            .flatten()
            .find(|b| b.batch_cid == batch_cid)
        {
            return Ok(SubmitOutcome::AlreadyAnchored {
                tx_hash: b.tx_hash,
                block: b.block,
                root: b.root,
                delayed: b.delayed,
            });
        }
        if let Some(e) = &i.refuse_writes {
            return Err(e.clone());
        }
        i.txs += 1;
        let from = self.signer.unwrap_or(Address::ZERO);
        let (tx, block) = i.tx(from);
        i.anchored.entry(epoch).or_default().push(AnchoredBatch {
            batch_cid: batch_cid.to_string(),
            root,
            block,
            delayed: false,
            tx_hash: Some(tx),
        });
        Ok(SubmitOutcome::Anchored {
            tx_hash: tx,
            block,
            gas_used: 100_000,
            delayed: false,
        })
    }
    async fn end_batch(&self, _market: Address, epoch: u64) -> Result<EndOutcome, PortError> {
        self.count("end_batch");
        let mut i = self.lock();
        if i.ended.contains(&epoch) {
            return Ok(EndOutcome::AlreadyEnded);
        }
        if let Some(e) = &i.refuse_writes {
            return Err(e.clone());
        }
        if i.anchored.get(&epoch).is_none_or(Vec::is_empty) {
            // What the chain client's port makes of the contract's `NoBatchSubmitted` revert.
            return Err(PortError::chain(
                ErrorKind::Reverted,
                format!("contract reverted: epoch {epoch}: no batch submitted, batch submissions cannot be ended"),
            )
            .with_code("NoBatchSubmitted"));
        }
        i.ended.insert(epoch);
        i.txs += 1;
        let from = self.signer.unwrap_or(Address::ZERO);
        let (tx_hash, block) = i.tx(from);
        Ok(EndOutcome::Ended { tx_hash, block })
    }

    // ------------------------------------------------------------ epoch releases and days

    fn signer(&self) -> Option<Address> {
        self.signer
    }
    async fn market_info(&self, market: Address) -> Result<MarketInfo, PortError> {
        self.count("market_info");
        let i = self.lock();
        if market != self.market {
            return Ok(MarketInfo {
                registered: false,
                epoch_size: 0,
                windows: Windows {
                    snapshot_blocks: 0,
                    batch_blocks: 0,
                },
                current_epoch: 0,
                last_epoch_end: 0,
            });
        }
        Ok(MarketInfo {
            registered: true,
            epoch_size: i.epoch_size,
            windows: i.windows,
            current_epoch: i.releases.len() as u64,
            last_epoch_end: i.last_epoch_end,
        })
    }
    async fn is_epoch_manager(&self, market: Address, who: Address) -> Result<bool, PortError> {
        self.count("is_epoch_manager");
        Ok(market == self.market && self.lock().epoch_managers.contains(&who))
    }
    async fn release_epoch(
        &self,
        market: Address,
        begin: u64,
        end: u64,
    ) -> Result<ReleaseOutcome, PortError> {
        self.count("release_epoch");
        let from = self.from()?;
        self.known(market)?;
        let mut i = self.lock();
        match i.release_faults.pop_front() {
            Some(SendFault::BeforeSend) => Err(unreachable_node()),
            Some(SendFault::AfterSend) => {
                let r = i.release_as(market, from, begin, end)?;
                Err(lost(r.tx_hash))
            }
            Some(SendFault::RacedBy(racer)) => {
                i.release_as(market, racer, begin, end)?;
                i.release_as(market, from, begin, end)
            }
            Some(SendFault::FailedAfter(racer)) => {
                i.release_as(market, racer, begin, end)?;
                let (tx, _) = i.tx(from);
                Err(PortError::chain(
                    ErrorKind::Reverted,
                    format!("transaction {tx:#x} failed on chain"),
                )
                .with_code("TxFailed"))
            }
            None => i.release_as(market, from, begin, end),
        }
    }
    async fn skip_epochs(&self, market: Address, new_begin: u64) -> Result<SentTx, PortError> {
        self.count("skip_epochs");
        let from = self.from()?;
        self.known(market)?;
        let mut i = self.lock();
        if from != i.owner && !i.epoch_managers.contains(&from) {
            return Err(revert_permission("NotEpochManager", from));
        }
        let expected = i.last_epoch_end + 1;
        if i.releases.is_empty()
            || new_begin <= expected
            || !(new_begin - expected).is_multiple_of(i.epoch_size)
        {
            return Err(revert(
                "InvalidSkip",
                format!("skip to {new_begin}: expected past {expected} on the grid"),
            ));
        }
        let (tx_hash, block) = i.tx(from);
        i.last_epoch_end = new_begin - 1;
        i.skips.push((expected, new_begin));
        Ok(SentTx {
            tx_hash,
            block,
            gas_used: 40_000,
        })
    }
    async fn epoch_details(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<EpochDetails>, PortError> {
        self.count("epoch_details");
        let i = self.lock();
        Ok(i.releases
            .iter()
            .find(|r| r.epoch_id == epoch)
            .map(|r| EpochDetails {
                epoch_id: epoch,
                begin: r.begin,
                end: r.end,
                release_block: r.block_number,
                day: i.days_of.get(&epoch).copied().unwrap_or(1),
                ended: i.ended.contains(&epoch),
            }))
    }
    async fn epoch_release(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<EpochRelease>, PortError> {
        self.count("epoch_release");
        Ok(self
            .lock()
            .releases
            .iter()
            .find(|r| r.epoch_id == epoch)
            .cloned())
    }
    async fn transaction_sender(&self, tx: B256) -> Result<Option<Address>, PortError> {
        self.count("transaction_sender");
        Ok(self.lock().senders.get(&tx).copied())
    }
    async fn market_days(&self, market: Address) -> Result<MarketDays, PortError> {
        self.count("market_days");
        self.known(market)?;
        let i = self.lock();
        Ok(MarketDays {
            day: i.days.day,
            day_start_epoch: i.days.day_start_epoch,
            epochs_in_a_day: i.days.epochs_in_a_day,
            daily_quota: i.daily_quota,
        })
    }
    async fn update_rewards(
        &self,
        market: Address,
        day: u64,
        counts: &[SlotCount],
        eligible_nodes: u64,
    ) -> Result<RewardsOutcome, PortError> {
        self.count("update_rewards");
        let from = self.from()?;
        self.known(market)?;
        let mut counts = counts.to_vec();
        counts.sort_by_key(|c| c.slot);
        if let Some(w) = counts.windows(2).find(|w| w[0].slot == w[1].slot) {
            return Err(PortError::chain(
                ErrorKind::Config,
                format!("slot {} appears twice in the day's counts", w[0].slot),
            ));
        }
        let mut out = RewardsOutcome {
            day,
            ..RewardsOutcome::default()
        };
        let mut i = self.lock();
        // Read before send, like the client: only what is not recorded yet is sent.
        let slots: Vec<u64> = counts.iter().map(|c| c.slot).collect();
        let recorded = i.recorded(day, &slots);
        let todo: Vec<SlotCount> = counts
            .iter()
            .zip(recorded)
            .filter_map(|(c, done)| {
                if done {
                    out.already.push(c.slot);
                    None
                } else {
                    Some(*c)
                }
            })
            .collect();
        for chunk in todo.chunks(REWARD_SLOTS_PER_TX) {
            let fault = i.rewards_faults.pop_front();
            if matches!(
                fault,
                Some(SendFault::BeforeSend | SendFault::RacedBy(_) | SendFault::FailedAfter(_))
            ) {
                return Err(unreachable_node());
            }
            let (tx, completed) = i.update_rewards_tx(from, day, chunk, eligible_nodes)?;
            if fault == Some(SendFault::AfterSend) {
                return Err(lost(tx.tx_hash));
            }
            out.recorded.extend(chunk.iter().map(|c| c.slot));
            out.completed.extend(completed);
            out.txs.push(tx);
        }
        Ok(out)
    }
}
