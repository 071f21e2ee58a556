//! The proof and status queries: what snapshotters, validators and operators ask the sequencer,
//! answered read-only from the records and the content store as typed serde views. No HTTP here:
//! `sequencer-api` serves these views (axum, in the `proof` Lambda and the local runner).
//!
//! | query | view |
//! | --- | --- |
//! | [`Queries::submission`] | [`SubmissionView`]: the submission's [`Fate`]: `included` (batch, leaf, 32 siblings, `roothash`, anchoring tx and block), `accepted` (not yet anchored, with the proof once finalized), `not_batched`, `simulation`, `rejected` (reason and when) |
//! | [`Queries::epoch`] | [`EpochStatusView`]: release block, window, state, counts accepted / rejected by reason, batches with CIDs, both roots and transactions |
//! | [`Queries::epochs`] | [`EpochListView`]: recent epochs, newest first; `next_before` pages on |
//! | [`Queries::markets`] | [`MarketsView`]: the market this deployment sequences |
//!
//! An answer about an anchored epoch never changes ([`Answer::settled`]): it is cached in memory
//! (bounded, [`CACHE_RESPONSES`]) and may be cached by HTTP caches. Proofs are rebuilt from the
//! batch documents (the content store), the same bytes anyone can fetch by the CIDs on chain; a
//! settled epoch's submission-id lists are kept ([`CACHE_EPOCHS`]) so proving many ids of one
//! epoch reads each document once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sequencer_core::finalize::BatchDocument;
use sequencer_core::proof::{prove_inclusion, EpochBatch, InclusionProof};
use sequencer_core::B256;
use serde::Serialize;

use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{
    BatchEntry, BatchRecord, BatchState, EpochCounts, EpochEntry, EpochRecord, EpochState, Outcome,
};

/// Default page size of the epoch list.
pub const DEFAULT_LIMIT: u64 = 20;
/// Largest page of the epoch list: one state-store query of at most this many items.
pub const MAX_LIMIT: u64 = 100;
/// Cached answers. Each is a few KiB (a proof is 32 hashes), so 4096 stay under ~16 MiB, well
/// inside the smallest Lambda memory size, and cover every submission of a busy epoch.
pub const CACHE_RESPONSES: usize = 4096;
/// Settled epochs whose submission-id lists are kept (each up to the epoch's ids, ~40 B each).
pub const CACHE_EPOCHS: usize = 8;

/// An answer, and whether it is final (about an anchored epoch: it never changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// The view.
    pub view: T,
    /// Final: caches may keep it for ever.
    pub settled: bool,
}

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No such epoch recorded (not released, or expired).
    #[error("epoch {0} is not recorded by this sequencer (not released, or expired)")]
    UnknownEpoch(u64),
    /// No rewards computed for this day (it has not ended, or its commit has not run yet).
    #[error("day {0}'s rewards are not computed yet (the daily commit runs once the day ended and its epochs are finalized)")]
    UnknownDay(u64),
    /// No receipt for this id in this (recorded) epoch.
    #[error("no submission {id} was received for epoch {epoch}")]
    UnknownSubmission {
        /// The epoch.
        epoch: u64,
        /// The submission id.
        id: String,
    },
    /// A store failed, or stored data is inconsistent.
    #[error(transparent)]
    Failed(#[from] PipelineError),
}

/// What became of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// In an anchored batch: the proof verifies against the batch and the chain.
    Included,
    /// Accepted; not anchored yet (the proof once finalized).
    Accepted,
    /// Accepted, but in no batch (its project was below the minimum, or another submission
    /// held its project and slot).
    NotBatched,
    /// A simulation submission (epoch 0): liveness only, never batched.
    Simulation,
    /// Rejected, with its reason.
    Rejected,
}

/// A batch as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    /// 1-based index in the epoch.
    pub index: u32,
    /// Batch CID.
    pub cid: String,
    /// `PENDING` or `ANCHORED`.
    pub state: BatchState,
    /// Root over the submission ids of batches 1..=index.
    pub roothash: String,
    /// Root over this batch's CIDs (on chain).
    pub finalized_cids_root: String,
    /// Leaf index of its first submission id in the epoch's tree.
    pub first_leaf_index: u64,
    /// Projects in it.
    pub projects: usize,
    /// Submissions listed.
    pub submissions: u64,
    /// Bytes of the document.
    pub bytes: u64,
    /// Anchoring transaction.
    pub tx_hash: Option<String>,
    /// Its block.
    pub block: Option<u64>,
    /// Recorded as delayed on chain.
    pub delayed: bool,
}

impl BatchView {
    fn new(state: BatchState, b: &BatchRecord) -> Self {
        Self {
            index: b.index,
            cid: b.cid.clone(),
            state,
            roothash: b.roothash.clone(),
            finalized_cids_root: b.finalized_cids_root.clone(),
            first_leaf_index: b.first_leaf_index,
            projects: b.pids.len(),
            submissions: b.submissions,
            bytes: b.bytes,
            tx_hash: b.tx_hash.clone(),
            block: b.block,
            delayed: b.delayed,
        }
    }
}

/// Where a batch was anchored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnchorView {
    /// The transaction.
    pub tx_hash: Option<String>,
    /// Its block.
    pub block: Option<u64>,
}

/// A submission's fate.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionView {
    /// The market.
    pub data_market: String,
    /// The epoch.
    pub epoch_id: u64,
    /// The submission id.
    pub submission_id: String,
    /// Project id as sent.
    pub project_id: String,
    /// Slot id as sent.
    pub slot_id: u64,
    /// The receipt's outcome: `accepted`, `simulation` or `rejected`.
    pub outcome: &'static str,
    /// When it was verified (ms since the Unix epoch).
    #[serde(rename = "at_ms")]
    pub at_ms: i64,
    /// What became of it.
    pub fate: Fate,
    /// In words.
    pub message: String,
    /// The epoch's state, once the epoch is looked at (accepted submissions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch_state: Option<EpochState>,
    /// Rejection reason code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rejection detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Its batch, once finalized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchView>,
    /// Where its batch was anchored, once finalized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorView>,
    /// The inclusion proof, once finalized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<InclusionProof>,
}

/// An epoch's outcome counts as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountsView {
    /// Accepted submissions.
    pub accepted: u64,
    /// Accepted simulation submissions.
    pub simulations: u64,
    /// Rejected, all reasons.
    pub rejected: u64,
    /// Rejected, by reason code.
    pub rejected_by_reason: std::collections::BTreeMap<String, u64>,
}

impl From<&EpochCounts> for CountsView {
    fn from(c: &EpochCounts) -> Self {
        Self {
            accepted: c.accepted,
            simulations: c.simulations,
            rejected: c.rejected_total(),
            rejected_by_reason: c.rejected.clone(),
        }
    }
}

/// One epoch in a list or a status answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochSummary {
    /// Epoch id.
    pub epoch_id: u64,
    /// Where it is.
    pub state: EpochState,
    /// Source-chain range as released.
    pub begin: u64,
    /// Last block of the range.
    pub end: u64,
    /// Block of the release.
    pub release_block: u64,
    /// Last block of the submission window.
    pub window_end: u64,
    /// When the tick saw the release.
    pub seen_at_ms: i64,
    /// When the tick closed it.
    pub closed_at_ms: Option<i64>,
    /// Head when it was closed.
    pub closed_at_block: Option<u64>,
    /// When finalization recorded the batches.
    pub finalized_at_ms: Option<i64>,
    /// When the last transaction was mined.
    pub anchored_at_ms: Option<i64>,
    /// Close → anchored, ms.
    pub close_to_anchored_ms: Option<i64>,
    /// Outcome counts (live while the epoch is open).
    pub counts: CountsView,
    /// The counts are the ones recorded at finalization.
    pub counts_final: bool,
    /// Number of batches, once finalized.
    pub batch_count: Option<u32>,
    /// Projects below the minimum submissions.
    pub below_minimum: Vec<String>,
    /// `endBatchSubmissions` transaction.
    pub end_tx: Option<String>,
    /// Why anchoring failed, if it did.
    pub failure: Option<String>,
}

impl EpochSummary {
    fn new(state: EpochState, rec: &EpochRecord, counts: &EpochCounts) -> Self {
        Self {
            epoch_id: rec.epoch,
            state,
            begin: rec.begin,
            end: rec.end,
            release_block: rec.release_block,
            window_end: rec.window_end,
            seen_at_ms: rec.seen_at_ms,
            closed_at_ms: rec.closed_at_ms,
            closed_at_block: rec.closed_at_block,
            finalized_at_ms: rec.finalized_at_ms,
            anchored_at_ms: rec.anchored_at_ms,
            close_to_anchored_ms: match (rec.closed_at_ms, rec.anchored_at_ms) {
                (Some(c), Some(a)) => Some(a - c),
                _ => None,
            },
            counts: counts.into(),
            counts_final: rec.counts.is_some(),
            batch_count: rec.batches,
            below_minimum: rec.below_minimum.clone(),
            end_tx: rec.end_tx.clone(),
            failure: rec.failure.clone(),
        }
    }
}

/// An epoch's status with its batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochStatusView {
    /// The market.
    pub data_market: String,
    /// The epoch.
    #[serde(flatten)]
    pub summary: EpochSummary,
    /// Its batches, in order.
    pub batches: Vec<BatchView>,
}

/// A page of recent epochs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochListView {
    /// The market.
    pub data_market: String,
    /// The epochs.
    pub epochs: Vec<EpochSummary>,
    /// Pass as `before` for the next (older) page; `None` on the last.
    #[serde(rename = "next_before")]
    pub next_before: Option<u64>,
}

/// The markets this deployment sequences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketsView {
    /// Market addresses.
    pub markets: Vec<String>,
}

/// A bounded map with first-in-first-out eviction (entries never change once inserted, so
/// recency buys little over insertion order).
#[derive(Debug)]
struct Bounded<V> {
    cap: usize,
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V: Clone> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, k: &str) -> Option<V> {
        self.map.get(k).cloned()
    }

    fn insert(&mut self, k: String, v: V) {
        if self.cap == 0 || self.map.contains_key(&k) {
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(k.clone());
        self.map.insert(k, v);
    }
}

/// A settled answer kept in memory.
#[derive(Debug, Clone)]
enum Cached {
    Submission(Arc<SubmissionView>),
    Epoch(Arc<EpochStatusView>),
}

/// An epoch's batches with their documents' submission ids, in order.
type EpochLeaves = Arc<Vec<(BatchEntry, Vec<String>)>>;

/// The queries with their caches; build one per process (a Lambda cold start, the runner).
#[derive(Debug)]
pub struct Queries {
    answers: Mutex<Bounded<Cached>>,
    leaves: Mutex<Bounded<EpochLeaves>>,
}

impl Default for Queries {
    fn default() -> Self {
        Self::with_capacity(CACHE_RESPONSES, CACHE_EPOCHS)
    }
}

impl Queries {
    /// With explicit cache sizes (0 disables a cache).
    pub fn with_capacity(answers: usize, epochs: usize) -> Self {
        Self {
            answers: Mutex::new(Bounded::new(answers)),
            leaves: Mutex::new(Bounded::new(epochs)),
        }
    }

    /// Cached answers right now (tests, metrics).
    pub fn cached(&self) -> usize {
        self.answers.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    fn hit(&self, p: &Pipeline, key: &str) -> Option<Cached> {
        let hit = self.answers.lock().ok().and_then(|c| c.get(key));
        if hit.is_some() {
            p.counters.inc("proof_cache_hits_total");
        } else {
            p.counters.inc("proof_requests_total");
        }
        hit
    }

    fn keep(&self, key: String, value: Cached) {
        if let Ok(mut c) = self.answers.lock() {
            c.insert(key, value);
        }
    }

    /// The fate of submission `id` (a lower-case hyphenated UUID) in `epoch` (0: simulation).
    pub async fn submission(
        &self,
        p: &Pipeline,
        epoch: u64,
        id: &str,
    ) -> Result<Answer<Arc<SubmissionView>>, QueryError> {
        let key = format!("s/{epoch}/{id}");
        if let Some(Cached::Submission(v)) = self.hit(p, &key) {
            return Ok(Answer {
                view: v,
                settled: true,
            });
        }
        let answer = self.submission_uncached(p, epoch, id).await?;
        let answer = Answer {
            view: Arc::new(answer.view),
            settled: answer.settled,
        };
        if answer.settled {
            self.keep(key, Cached::Submission(answer.view.clone()));
        }
        Ok(answer)
    }

    async fn submission_uncached(
        &self,
        p: &Pipeline,
        epoch: u64,
        id: &str,
    ) -> Result<Answer<SubmissionView>, QueryError> {
        let market = p.config.market;
        let records = p.records();
        let Some(receipt) = records.receipt(epoch, id).await? else {
            return Err(match records.epoch(epoch).await? {
                None => QueryError::UnknownEpoch(epoch),
                Some(_) => QueryError::UnknownSubmission {
                    epoch,
                    id: id.to_string(),
                },
            });
        };
        let mut view = SubmissionView {
            data_market: format!("{market:#x}"),
            epoch_id: epoch,
            submission_id: id.to_string(),
            project_id: receipt.project.clone(),
            slot_id: receipt.slot,
            outcome: receipt.outcome.code(),
            at_ms: receipt.at_ms,
            fate: Fate::Accepted,
            message: String::new(),
            epoch_state: None,
            reason: None,
            detail: None,
            batch: None,
            anchor: None,
            proof: None,
        };
        match &receipt.outcome {
            Outcome::Accepted => {}
            Outcome::Simulation => {
                view.fate = Fate::Simulation;
                view.message = "accepted as a simulation submission (liveness); simulation submissions are never batched".into();
                // A receipt never changes once written.
                return Ok(Answer {
                    view,
                    settled: true,
                });
            }
            Outcome::Rejected { reason, detail } => {
                view.fate = Fate::Rejected;
                view.reason = Some(reason.code().to_string());
                view.detail = detail.clone();
                view.message = format!("rejected: {reason}");
                return Ok(Answer {
                    view,
                    settled: true,
                });
            }
        }
        let Some(EpochEntry { state, record }) = records.epoch(epoch).await? else {
            view.message = "accepted; the epoch is not recorded (yet)".into();
            return Ok(Answer {
                view,
                settled: false,
            });
        };
        view.epoch_state = Some(state);
        if !state.is_finalized() {
            view.message =
                format!("accepted; the epoch is {state}, not finalized yet: no batch or proof yet");
            return Ok(Answer {
                view,
                settled: false,
            });
        }
        let leaves = self.leaves(p, epoch, state).await?;
        let refs: Vec<EpochBatch> = leaves
            .iter()
            .map(|(b, ids)| EpochBatch {
                index: b.record.index,
                cid: b.record.cid.clone(),
                roothash: b.record.roothash.parse().unwrap_or(B256::ZERO),
                submission_ids: ids,
                anchor_tx: b.record.tx_hash.as_deref().and_then(|t| t.parse().ok()),
            })
            .collect();
        let Some(proof) = prove_inclusion(&format!("{market:#x}"), epoch, &refs, id) else {
            view.fate = Fate::NotBatched;
            view.message = if record.below_minimum.contains(&receipt.project) {
                "accepted, but its project had fewer submissions than the minimum and was not finalized"
            } else {
                "accepted, but listed in no batch (another submission held its project and slot)"
            }
            .into();
            return Ok(Answer {
                view,
                settled: state == EpochState::Anchored,
            });
        };
        let (batch, _) = &leaves[(proof.batch_index as usize).saturating_sub(1)];
        let anchored = batch.state == BatchState::Anchored && batch.record.tx_hash.is_some();
        view.fate = if anchored {
            Fate::Included
        } else {
            Fate::Accepted
        };
        view.message = if anchored {
            "included and anchored: verify the proof against the batch document and the chain"
        } else if state == EpochState::Failed {
            "batched, but anchoring the epoch failed"
        } else {
            "batched; not anchored yet"
        }
        .into();
        view.batch = Some(BatchView::new(batch.state, &batch.record));
        view.anchor = Some(AnchorView {
            tx_hash: batch.record.tx_hash.clone(),
            block: batch.record.block,
        });
        view.proof = Some(proof);
        Ok(Answer {
            view,
            settled: state == EpochState::Anchored && anchored,
        })
    }

    /// A finalized epoch's batches and their documents' ids (cached once settled).
    async fn leaves(
        &self,
        p: &Pipeline,
        epoch: u64,
        epoch_state: EpochState,
    ) -> Result<EpochLeaves, PipelineError> {
        let key = epoch.to_string();
        if let Some(hit) = self.leaves.lock().ok().and_then(|c| c.get(&key)) {
            return Ok(hit);
        }
        let mut out = Vec::new();
        for b in p.records().batches(epoch).await? {
            let bytes = p.ports.content.get(&b.record.cid).await?.ok_or_else(|| {
                PipelineError::NotReady(format!(
                    "batch {} ({}) is not in the content store",
                    b.record.index, b.record.cid
                ))
            })?;
            let doc: BatchDocument = serde_json::from_slice(&bytes).map_err(|e| {
                PipelineError::Corrupt(format!("batch document {}: {e}", b.record.cid))
            })?;
            out.push((b, doc.submission_ids));
        }
        let out = Arc::new(out);
        let settled = out.iter().all(|(b, _)| b.state == BatchState::Anchored);
        if epoch_state == EpochState::Anchored && settled {
            if let Ok(mut c) = self.leaves.lock() {
                c.insert(key, out.clone());
            }
        }
        Ok(out)
    }

    /// An epoch's status and batches.
    pub async fn epoch(
        &self,
        p: &Pipeline,
        epoch: u64,
    ) -> Result<Answer<Arc<EpochStatusView>>, QueryError> {
        let key = format!("e/{epoch}");
        if let Some(Cached::Epoch(v)) = self.hit(p, &key) {
            return Ok(Answer {
                view: v,
                settled: true,
            });
        }
        let records = p.records();
        let Some(EpochEntry { state, record }) = records.epoch(epoch).await? else {
            return Err(QueryError::UnknownEpoch(epoch));
        };
        let counts = match &record.counts {
            Some(c) => c.clone(),
            // Not finalized yet: counted live (an open epoch's receipts are bounded by the cap).
            None => records.tally_receipts(epoch).await?,
        };
        let batches = records.batches(epoch).await?;
        let settled = state == EpochState::Anchored
            && batches.iter().all(|b| b.state == BatchState::Anchored);
        let view = Arc::new(EpochStatusView {
            data_market: format!("{:#x}", p.config.market),
            summary: EpochSummary::new(state, &record, &counts),
            batches: batches
                .iter()
                .map(|b| BatchView::new(b.state, &b.record))
                .collect(),
        });
        if settled {
            self.keep(key, Cached::Epoch(view.clone()));
        }
        Ok(Answer { view, settled })
    }

    /// Up to `limit` epochs before `before` (default: the newest), newest first. Epochs not
    /// finalized yet are counted live; only those inside their window (a handful, however long
    /// the list) have no recorded counts.
    pub async fn epochs(
        &self,
        p: &Pipeline,
        before: Option<u64>,
        limit: u64,
    ) -> Result<Answer<EpochListView>, QueryError> {
        p.counters.inc("proof_requests_total");
        let records = p.records();
        let before = match before {
            Some(b) => b,
            None => records.newest_epoch().await?.unwrap_or(0).saturating_add(1),
        };
        // Epochs [lowest, before): one query from `lowest`.
        let lowest = before.saturating_sub(limit).max(1);
        let mut epochs = Vec::new();
        for e in records
            .epoch_page(lowest, usize::try_from(limit).unwrap_or(usize::MAX))
            .await?
        {
            if e.record.epoch >= before {
                continue;
            }
            let counts = match &e.record.counts {
                Some(c) => c.clone(),
                None => records.tally_receipts(e.record.epoch).await?,
            };
            epochs.push(EpochSummary::new(e.state, &e.record, &counts));
        }
        epochs.reverse();
        let next_before = match records.oldest_epoch().await? {
            Some(o) if o < lowest => Some(lowest),
            _ => None,
        };
        Ok(Answer {
            view: EpochListView {
                data_market: format!("{:#x}", p.config.market),
                epochs,
                next_before,
            },
            settled: false,
        })
    }

    /// The market this deployment sequences.
    pub fn markets(&self, p: &Pipeline) -> MarketsView {
        p.counters.inc("proof_requests_total");
        MarketsView {
            markets: vec![format!("{:#x}", p.config.market)],
        }
    }
}
