//! The status views: epochs with their counts, batches and timings, pages of recent epochs, the
//! markets served.

use std::sync::Arc;

use serde::Serialize;

use super::{Answer, Cached, Queries, QueryError};
use crate::metrics as m;
use crate::pipeline::Pipeline;
use crate::records::{BatchRecord, BatchState, EpochCounts, EpochEntry, EpochRecord, EpochState};

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
    pub(super) fn new(state: BatchState, b: &BatchRecord) -> Self {
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

impl Queries {
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
            return Err(super::proof::unrecorded(&records, epoch).await?);
        };
        if records.is_expired(&record) {
            return Err(super::proof::expired(&records, epoch));
        }
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
        p.metrics.inc(&m::PROOF_REQUESTS, []);
        Ok(Answer {
            view: self.epoch_list(p, before, limit).await?,
            settled: false,
        })
    }

    /// The page of [`Queries::epochs`] (uncounted: the status summary reads it too).
    pub(super) async fn epoch_list(
        &self,
        p: &Pipeline,
        before: Option<u64>,
        limit: u64,
    ) -> Result<EpochListView, QueryError> {
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
        Ok(EpochListView {
            data_market: format!("{:#x}", p.config.market),
            epochs,
            next_before,
        })
    }

    /// The market this deployment sequences.
    pub fn markets(&self, p: &Pipeline) -> MarketsView {
        p.metrics.inc(&m::PROOF_REQUESTS, []);
        MarketsView {
            markets: vec![format!("{:#x}", p.config.market)],
        }
    }
}
