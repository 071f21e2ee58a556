//! A chain in memory for handler tests ([`MemChain`]) and helpers to sign submissions with the
//! simulated slot keys. Integration tests and the local runner use anvil instead; this exists so
//! that every rule and fault of the handlers is tested in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use sequencer_chain::{
    AnchoredBatch, ChainError, EndOutcome, EpochAnchors, EpochRelease, ReleasesPage, Revert,
    SubmitOutcome, Windows, U256,
};
use sequencer_core::collect::CollectMessage;
use sequencer_core::devkeys;
use sequencer_core::eip712::{address_of, sign_request, Domain};
use sequencer_core::submission::{Request, SnapshotSubmission};
use sequencer_core::{Address, B256};

use crate::ports::ChainPort;

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
}

#[async_trait]
impl ChainPort for MemChain {
    async fn head(&self) -> Result<u64, ChainError> {
        Ok(self.head_now())
    }
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        Ok((number <= self.head_now()).then(|| block_hash_of(number)))
    }
    async fn block_number(&self, hash: B256) -> Result<Option<u64>, ChainError> {
        let head = self.head_now();
        Ok((0..=head).rev().find(|n| block_hash_of(*n) == hash))
    }
    async fn releases_after(
        &self,
        _market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, ChainError> {
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
    async fn slot_owner(&self, slot: u64) -> Result<Address, ChainError> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .owners
            .get(&slot)
            .copied()
            .unwrap_or(Address::ZERO))
    }
    async fn is_flagged(&self, _market: Address, who: Address) -> Result<bool, ChainError> {
        Ok(self.inner.lock().unwrap().flagged.contains(&who))
    }
    async fn windows(&self, _market: Address) -> Result<Windows, ChainError> {
        Ok(self.inner.lock().unwrap().windows)
    }
    async fn epoch_windows(
        &self,
        _market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, ChainError> {
        let i = self.inner.lock().unwrap();
        if i.no_epoch_windows {
            return Ok(None);
        }
        Ok(i.epoch_windows.get(&epoch).copied())
    }
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, ChainError> {
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
    ) -> Result<SubmitOutcome, ChainError> {
        let mut i = self.inner.lock().unwrap();
        if i.fail_next_submit > 0 {
            i.fail_next_submit -= 1;
            return Err(ChainError::ReceiptTimeout(B256::repeat_byte(0xee)));
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
    async fn end_batch(&self, _market: Address, epoch: u64) -> Result<EndOutcome, ChainError> {
        let mut i = self.inner.lock().unwrap();
        if i.ended.contains(&epoch) {
            return Ok(EndOutcome::AlreadyEnded);
        }
        if i.anchored.get(&epoch).is_none_or(Vec::is_empty) {
            return Err(ChainError::Revert(Revert::NoBatchSubmitted(U256::from(
                epoch,
            ))));
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

/// Signs a submission with simulated slot `slot`'s key (or `signer_slot`'s, to forge).
#[allow(clippy::too_many_arguments)]
pub fn signed_message(
    domain: &Domain,
    market: Address,
    id: &uuid::Uuid,
    slot: u64,
    signer_slot: u64,
    epoch: u64,
    project: &str,
    cid: &str,
    header: B256,
) -> (String, SnapshotSubmission) {
    let key = devkeys::sim_snapshotter_key(signer_slot).unwrap();
    let request = Request {
        slot_id: slot,
        deadline: epoch + 100,
        snapshot_cid: cid.to_string(),
        epoch_id: epoch,
        project_id: project.to_string(),
    };
    let signature = sign_request(domain, &request, &key).unwrap();
    let sub = SnapshotSubmission {
        request,
        signature,
        header: format!("{header:#x}"),
        data_market: format!("{market:#x}"),
        node_version: Some("test".into()),
        protocol_state: None,
    };
    let raw = CollectMessage::encode(id, &sub);
    (String::from_utf8(raw).unwrap(), sub)
}

/// A pipeline on the embedded adapters (one SQLite file and a blockstore under `dir`) and a
/// [`MemChain`] with 6 simulated slots, windows of 5 blocks: what handler tests start from.
pub struct Harness {
    /// The pipeline.
    pub p: crate::Pipeline,
    /// Its chain.
    pub chain: std::sync::Arc<MemChain>,
    /// The submissions queue (its DLQ is the pipeline's `submissions_dlq`).
    pub submissions: crate::embedded::SqliteQueue,
    /// Finalize jobs.
    pub finalize_q: crate::embedded::SqliteQueue,
    /// Anchor jobs (FIFO).
    pub anchor_q: crate::embedded::SqliteQueue,
    /// The content store.
    pub blocks: crate::embedded::BlockDir,
    /// The EIP-712 domain submissions are signed for.
    pub domain: Domain,
    /// The market.
    pub market: Address,
}

impl Harness {
    /// A harness under `dir` cutting batches of `batch_size` projects.
    pub fn new(dir: &std::path::Path, batch_size: usize) -> Self {
        use crate::embedded::{BlockDir, Db, QueueOptions, SqliteQueue, SqliteState};
        use std::sync::Arc;
        let db = Db::open(&dir.join("seq.sqlite")).unwrap();
        let queue = |name: &str, fifo: bool| {
            SqliteQueue::new(
                db.clone(),
                name,
                QueueOptions {
                    visibility_timeout: std::time::Duration::from_secs(30),
                    max_receive_count: Some(3),
                    dlq: Some(format!("{name}-dlq")),
                    fifo,
                },
            )
        };
        let market = devkeys::local_market_address();
        let protocol_state = Address::repeat_byte(0x5a);
        let chain = Arc::new(MemChain::new(
            market,
            Windows {
                snapshot_blocks: 5,
                batch_blocks: 100,
            },
            6,
        ));
        let submissions = queue("submissions", false);
        let finalize_q = queue("finalize", false);
        let anchor_q = queue("anchor.fifo", true);
        let blocks = BlockDir::new(dir.join("blocks"));
        let mut config = crate::PipelineConfig::new(market, protocol_state, 31337);
        config.finalize.batch_size = batch_size;
        let ports = crate::Ports {
            state: Arc::new(SqliteState::new(db.clone())),
            content: Arc::new(blocks.clone()),
            chain: chain.clone(),
            finalize_queue: Arc::new(finalize_q.clone()),
            anchor_queue: Arc::new(anchor_q.clone()),
            submissions_dlq: Arc::new(submissions.dlq().unwrap()),
        };
        Self {
            p: crate::Pipeline::new(ports, config),
            chain,
            submissions,
            finalize_q,
            anchor_q,
            blocks,
            domain: Domain {
                chain_id: 31337,
                verifying_contract: protocol_state,
            },
            market,
        }
    }

    /// Runs the queued finalize jobs, then the anchor jobs, through the poller.
    pub async fn run_jobs(&self) {
        use crate::handlers::{anchor, finalize};
        use crate::poller::{drain, PollerConfig};
        let cfg = PollerConfig {
            wait: std::time::Duration::ZERO,
            retry_delay: std::time::Duration::ZERO,
            ..PollerConfig::default()
        };
        drain(&self.finalize_q, &cfg, 10, |e| finalize::handle(&self.p, e))
            .await
            .unwrap();
        drain(&self.anchor_q, &cfg, 10, |e| anchor::handle(&self.p, e))
            .await
            .unwrap();
    }
}

/// A read-only content store over fixed documents by CID, whatever their bytes: what an honest
/// or a lying IPFS node serves to the tests that audit or verify against one.
#[derive(Debug, Default)]
pub struct ServedContent(pub BTreeMap<String, Vec<u8>>);

#[async_trait]
impl crate::ports::ContentStore for ServedContent {
    async fn put(&self, _bytes: &[u8]) -> Result<String, crate::ports::ContentError> {
        Err(crate::ports::ContentError::Unavailable("read-only".into()))
    }
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, crate::ports::ContentError> {
        Ok(self.0.get(cid).cloned())
    }
}
