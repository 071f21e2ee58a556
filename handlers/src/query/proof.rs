//! The proof views: a submission's fate and, once its epoch is finalized, its inclusion proof,
//! rebuilt from the batch documents of the content store.

use std::sync::Arc;

use sequencer_core::finalize::BatchDocument;
use sequencer_core::proof::{prove_inclusion, EpochBatch, InclusionProof};
use sequencer_core::B256;
use serde::Serialize;

use super::status::BatchView;
use super::{Answer, Cached, EpochLeaves, Queries, QueryError};
use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{BatchState, EpochEntry, EpochState, Outcome, Records};

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

/// Why an epoch that is not recorded has no answer: older than the oldest epoch the store keeps
/// (its records expired), or not recorded at all.
pub(super) async fn unrecorded(
    records: &Records<'_>,
    epoch: u64,
) -> Result<QueryError, PipelineError> {
    Ok(match records.oldest_epoch().await? {
        Some(oldest) if epoch > 0 && epoch < oldest => expired(records, epoch),
        _ => QueryError::UnknownEpoch(epoch),
    })
}

/// The epoch is past the retention.
pub(super) fn expired(records: &Records<'_>, epoch: u64) -> QueryError {
    QueryError::ExpiredEpoch {
        epoch,
        days: records.retention().as_secs() / 86_400,
    }
}

impl Queries {
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
                None => unrecorded(&records, epoch).await?,
                Some(e) if records.is_expired(&e.record) => expired(&records, epoch),
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
            if let e @ QueryError::ExpiredEpoch { .. } = unrecorded(&records, epoch).await? {
                return Err(e);
            }
            view.message = "accepted; the epoch is not recorded (yet)".into();
            return Ok(Answer {
                view,
                settled: false,
            });
        };
        // Past the retention its records expire together, but the store deletes them one by
        // one: answered `expired` from the moment it passed, never from a partial set.
        if records.is_expired(&record) {
            return Err(expired(&records, epoch));
        }
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

    /// The exact bytes of batch `index` of `epoch`, as the content store holds them under the
    /// batch's CID: what a browser or `seqctl` checks a proof against (and hashes to the CID).
    /// Always final once found: a batch's CID never changes after finalization records it, and
    /// a CID names its bytes.
    pub async fn batch_document(
        &self,
        p: &Pipeline,
        epoch: u64,
        index: u32,
    ) -> Result<Answer<BatchBytes>, QueryError> {
        p.metrics.inc(&m::PROOF_REQUESTS, []);
        let records = p.records();
        let Some(batch) = records.batch(epoch, index).await? else {
            return Err(match records.epoch(epoch).await? {
                None => unrecorded(&records, epoch).await?,
                Some(_) => QueryError::UnknownBatch { epoch, index },
            });
        };
        let cid = batch.record.cid;
        let stored = p
            .ports
            .content
            .get(&cid)
            .await
            .map_err(PipelineError::from)?;
        let bytes = stored.ok_or_else(|| {
            PipelineError::NotReady(format!("batch {index} ({cid}) is not in the content store"))
        })?;
        Ok(Answer {
            view: BatchBytes { cid, bytes },
            settled: true,
        })
    }
}

/// A batch document's bytes and the CID they are stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchBytes {
    /// The batch CID.
    pub cid: String,
    /// The document, byte for byte.
    pub bytes: Vec<u8>,
}
