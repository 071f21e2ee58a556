//! A protocol chain in memory ([`MemChain`]), faithful to the contract where the handlers can
//! tell: releases, windows kept per epoch, slot owners, flags, exactly-once anchoring per batch
//! CID, `endBatchSubmissions` refused without a batch. Integration tests and the local runner use
//! anvil instead; this exists so that every rule and fault of the handlers is tested in
//! milliseconds (and so a benchmark or a simulator can run the pipeline without a node).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use sequencer_core::devkeys;
use sequencer_core::eip712::address_of;
use sequencer_core::{Address, B256};
use sequencer_ports::{
    AnchoredBatch, ChainPort, EndOutcome, EpochAnchors, EpochRelease, ErrorKind, PortError,
    ReleasesPage, SubmitOutcome, Windows,
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

#[derive(Debug)]
struct Inner {
    head: u64,
    releases: Vec<EpochRelease>,
    owners: BTreeMap<u64, Address>,
    flagged: BTreeSet<Address>,
    anchored: BTreeMap<u64, Vec<AnchoredBatch>>,
    ended: BTreeSet<u64>,
    txs: u64,
    fail_next_submit: u32,
    revert_next_submit: u32,
    /// The market's current windows (`updateSubmissionWindows`).
    windows: Windows,
    /// The windows each epoch was released under (`epochWindows`).
    epoch_windows: BTreeMap<u64, Windows>,
    /// Behave like a contract without `epochWindows` (Powerloom's own).
    no_epoch_windows: bool,
}

/// A protocol chain in memory: blocks advance by [`MemChain::mine`], epochs by
/// [`MemChain::release`]; anchoring is exactly once per batch CID like the contract, and ending
/// an epoch without a batch reverts `NoBatchSubmitted` like the contract.
#[derive(Debug)]
pub struct MemChain {
    market: Address,
    inner: Mutex<Inner>,
}

impl MemChain {
    /// A chain whose slots `1..=slots` belong to the simulated snapshotters.
    pub fn new(market: Address, windows: Windows, slots: u64) -> Self {
        let mut inner = Inner {
            head: 0,
            releases: Vec::new(),
            owners: BTreeMap::new(),
            flagged: BTreeSet::new(),
            anchored: BTreeMap::new(),
            ended: BTreeSet::new(),
            txs: 0,
            fail_next_submit: 0,
            revert_next_submit: 0,
            windows,
            epoch_windows: BTreeMap::new(),
            no_epoch_windows: false,
        };
        for s in 1..=slots {
            inner
                .owners
                .insert(s, address_of(&devkeys::sim_snapshotter_key(s).unwrap()));
        }
        inner.head = 1;
        Self {
            market,
            inner: Mutex::new(inner),
        }
    }

    /// `updateSubmissionWindows`: epochs released from now on get `windows`.
    pub fn set_windows(&self, windows: Windows) {
        self.inner.lock().unwrap().windows = windows;
    }

    /// From now on, answer `epoch_windows` like a contract without that view.
    pub fn forget_epoch_windows(&self) {
        self.inner.lock().unwrap().no_epoch_windows = true;
    }

    /// Mines `n` blocks; returns the head.
    pub fn mine(&self, n: u64) -> u64 {
        let mut i = self.inner.lock().unwrap();
        i.head += n;
        i.head
    }

    /// Head.
    pub fn head_now(&self) -> u64 {
        self.inner.lock().unwrap().head
    }

    /// Releases the next epoch in a new block; returns (epoch id, release block).
    pub fn release(&self) -> (u64, u64) {
        let mut i = self.inner.lock().unwrap();
        i.head += 1;
        let epoch = i.releases.len() as u64 + 1;
        let block = i.head;
        let begin = (epoch - 1) * 10 + 1;
        let windows = i.windows;
        i.epoch_windows.insert(epoch, windows);
        i.releases.push(EpochRelease {
            market: self.market,
            epoch_id: epoch,
            begin,
            end: begin + 9,
            timestamp: block,
            block_number: block,
            block_hash: block_hash_of(block),
            tx_hash: B256::repeat_byte(epoch as u8),
        });
        (epoch, block)
    }

    /// Flags a signer.
    pub fn flag(&self, who: Address) {
        self.inner.lock().unwrap().flagged.insert(who);
    }

    /// Batch transactions sent so far.
    pub fn transactions(&self) -> u64 {
        self.inner.lock().unwrap().txs
    }

    /// The anchored batches of an epoch.
    pub fn anchored_batches(&self, epoch: u64) -> Vec<AnchoredBatch> {
        self.inner
            .lock()
            .unwrap()
            .anchored
            .get(&epoch)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the next `n` batch submissions fail with a transport error (after nothing was sent).
    pub fn fail_next_submits(&self, n: u32) {
        self.inner.lock().unwrap().fail_next_submit = n;
    }

    /// Makes the next `n` batch submissions revert (a refusal no retry fixes: the epoch ends
    /// `ANCHOR_FAILED`).
    pub fn revert_next_submits(&self, n: u32) {
        self.inner.lock().unwrap().revert_next_submit = n;
    }
}

#[async_trait]
impl ChainPort for MemChain {
    async fn head(&self) -> Result<u64, PortError> {
        Ok(self.head_now())
    }
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, PortError> {
        Ok((number <= self.head_now()).then(|| block_hash_of(number)))
    }
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, PortError> {
        let head = self.head_now();
        Ok((0..=head).rev().find(|n| block_hash_of(*n) == hash))
    }
    async fn releases_after(
        &self,
        _market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, PortError> {
        let i = self.inner.lock().unwrap();
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
        Ok(self
            .inner
            .lock()
            .unwrap()
            .owners
            .get(&slot)
            .copied()
            .unwrap_or(Address::ZERO))
    }
    async fn is_flagged(&self, _market: Address, who: Address) -> Result<bool, PortError> {
        Ok(self.inner.lock().unwrap().flagged.contains(&who))
    }
    async fn windows(&self, _market: Address) -> Result<Windows, PortError> {
        Ok(self.inner.lock().unwrap().windows)
    }
    async fn epoch_windows(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, PortError> {
        let i = self.inner.lock().unwrap();
        if i.no_epoch_windows {
            return Ok(None);
        }
        Ok(i.epoch_windows.get(&epoch).copied())
    }
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, PortError> {
        let i = self.inner.lock().unwrap();
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
        let mut i = self.inner.lock().unwrap();
        if i.revert_next_submit > 0 {
            i.revert_next_submit -= 1;
            return Err(PortError::chain(
                ErrorKind::Reverted,
                format!("contract reverted: epoch {epoch}: batch {batch_cid} refused"),
            )
            .with_code("InvalidBatch"));
        }
        if i.fail_next_submit > 0 {
            i.fail_next_submit -= 1;
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
        i.head += 1;
        i.txs += 1;
        let tx = B256::from(alloy_keccak(1_000_000 + i.txs));
        let block = i.head;
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
        let mut i = self.inner.lock().unwrap();
        if i.ended.contains(&epoch) {
            return Ok(EndOutcome::AlreadyEnded);
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
        i.head += 1;
        i.txs += 1;
        Ok(EndOutcome::Ended {
            tx_hash: B256::from(alloy_keccak(2_000_000 + epoch)),
            block: i.head,
        })
    }
}
