//! `finalize` (SQS `finalize`): one closed epoch → batches.
//!
//! Reads the epoch's accepted submissions (every shard), runs `core::finalize_epoch` (plurality
//! per project, sorted batches, canonical JSON, CIDs, both roots), uploads every batch document
//! to the content store, records each batch (`PENDING`) and the epoch's counts, moves the epoch
//! to `FINALIZED` and enqueues its anchor job (FIFO, one group per signing key, deduplicated by
//! market and epoch).
//!
//! Re-running it for the same epoch gives the same bytes, CIDs and roots (finalization depends
//! only on the set of accepted submissions), uploads nothing that is already recorded, and an
//! already finalized epoch only gets its anchor job sent again.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use sequencer_core::finalize::{finalize_epoch, FinalizedEpoch};
use sequencer_ports::{ErrorKind, PortError};
use serde::Serialize;

use crate::jobs::EpochJob;
use crate::pipeline::{parse, Pipeline, PipelineError};
use crate::records::{BatchRecord, EpochMove, EpochState};
use crate::sqs::{body, each_record};

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FinalizeReport {
    /// The epoch.
    pub epoch: u64,
    /// Batches recorded.
    pub batches: u32,
    /// Batch documents uploaded by this run.
    pub uploaded: u32,
    /// Submissions listed in batches.
    pub submissions: u64,
    /// The epoch was finalized before; only the anchor job was sent again.
    pub already_finalized: bool,
    /// Time reading the epoch's submissions and receipts, ms.
    pub read_ms: f64,
    /// Time in `core::finalize_epoch` (consensus, batches, JSON, CIDs, roots), ms.
    pub compute_ms: f64,
    /// Time uploading and recording batches, ms.
    pub store_ms: f64,
}

/// The Lambda handler.
pub async fn handle(p: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    each_record(&event, "finalize", |m| async move {
        let job: EpochJob = parse("finalize job", body(m))?;
        run(p, job).await.map(|_| ())
    })
    .await
}

/// Finalizes one epoch.
pub async fn run(p: &Pipeline, job: EpochJob) -> Result<FinalizeReport, PipelineError> {
    let market = p.config.market;
    if job.market != market {
        return Err(PipelineError::Invariant(format!(
            "finalize job for market {:#x}, this deployment sequences {market:#x}",
            job.market
        )));
    }
    let epoch = job.epoch;
    let records = p.records();
    let entry = records
        .epoch(epoch)
        .await?
        .ok_or_else(|| PipelineError::NotReady(format!("epoch {epoch} is not recorded")))?;
    let from = entry.state;
    let mut rec = entry.record;
    let mut report = FinalizeReport {
        epoch,
        ..FinalizeReport::default()
    };
    match from {
        EpochState::Closed | EpochState::Closing => {}
        EpochState::Finalized => {
            report.already_finalized = true;
            report.batches = rec.batches.unwrap_or(0);
            send_anchor_job(p, epoch).await?;
            return Ok(report);
        }
        EpochState::Anchored | EpochState::Failed => {
            report.already_finalized = true;
            report.batches = rec.batches.unwrap_or(0);
            return Ok(report);
        }
        EpochState::Open => {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch} is {from}, not closed"
            )))
        }
    }

    let t0 = std::time::Instant::now();
    let accepted = records.accepted_submissions(epoch).await?;
    let counts = records.tally_receipts(epoch).await?;
    let t1 = std::time::Instant::now();
    let finalized: FinalizedEpoch = finalize_epoch(&accepted, &p.config.finalize)
        .map_err(|e| PipelineError::Invariant(e.to_string()))?;
    let t2 = std::time::Instant::now();
    report.read_ms = (t1 - t0).as_secs_f64() * 1e3;
    report.compute_ms = (t2 - t1).as_secs_f64() * 1e3;
    for b in &finalized.batches {
        let cid = b.cid.to_string();
        if let Some(existing) = records.batch(epoch, b.index).await? {
            if existing.record.cid != cid {
                return Err(PipelineError::Invariant(format!(
                    "epoch {epoch} batch {} was recorded as {}, finalizing again gives {cid}",
                    b.index, existing.record.cid
                )));
            }
        } else {
            let stored = p.ports.content.put(&b.json).await?;
            if stored != cid {
                return Err(PortError::content(
                    ErrorKind::CidMismatch {
                        expected: cid,
                        got: stored,
                    },
                    "the content store's CID for a batch document",
                )
                .into());
            }
            report.uploaded += 1;
            let br = BatchRecord {
                index: b.index,
                cid: cid.clone(),
                roothash: format!("{:#x}", b.roothash),
                finalized_cids_root: format!("{:#x}", b.finalized_cids_root),
                pids: b.document.pids.clone(),
                cids: b.document.cids.clone(),
                first_leaf_index: b.first_leaf_index,
                submissions: b.document.submission_ids.len() as u64,
                bytes: b.json.len() as u64,
                tx_hash: None,
                block: None,
                delayed: false,
            };
            records.record_batch(epoch, &br).await?;
        }
        report.submissions += b.document.submission_ids.len() as u64;
    }
    report.batches = finalized.batches.len() as u32;
    report.store_ms = t2.elapsed().as_secs_f64() * 1e3;
    rec.counts = Some(counts);
    rec.batches = Some(report.batches);
    rec.below_minimum = finalized.below_minimum.clone();
    rec.finalized_at_ms = Some(p.now_ms());
    match records
        .move_epoch(from, EpochState::Finalized, &rec)
        .await?
    {
        EpochMove::Moved => {}
        EpochMove::Refused(Some(cur)) if cur.state == EpochState::Finalized => {
            report.already_finalized = true;
        }
        EpochMove::Refused(cur) => {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch} changed during finalization: {:?}",
                cur.map(|c| c.state)
            )))
        }
    }
    p.counters.inc("finalize_epochs_total");
    p.counters
        .add("finalize_batches_total", u64::from(report.batches));
    tracing::info!(
        epoch,
        batches = report.batches,
        submissions = report.submissions,
        uploaded = report.uploaded,
        "epoch finalized"
    );
    send_anchor_job(p, epoch).await?;
    Ok(report)
}

async fn send_anchor_job(p: &Pipeline, epoch: u64) -> Result<(), PipelineError> {
    let job = EpochJob {
        market: p.config.market,
        epoch,
    };
    p.ports
        .anchor_queue
        .send(&[job.fifo_message(&p.config.anchor_group)?])
        .await?;
    Ok(())
}
