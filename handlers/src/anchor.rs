//! `anchor` (SQS FIFO `anchor`, one message group per signing key, so one writer per key):
//! `submitSubmissionBatch` for each of the epoch's batches in order, then `endBatchSubmissions`.
//! An epoch finalized with no batch (no accepted submission) sends nothing: the contract refuses
//! to end an epoch without a batch (`NoBatchSubmitted`), and leaving it open lets nothing in that
//! the sequencer would anchor. It is recorded `ANCHORED` without an end transaction and counted
//! (`anchor_epochs_empty_total`).
//!
//! Exactly one transaction per batch across crashes and retries: a batch is sent only while its
//! record is `PENDING`; the chain client first waits out any pending transaction of our key and
//! reads the contract, returning `AlreadyAnchored` instead of sending (the backstop after a crash
//! between the receipt and the record). A revert no retry can fix (e.g. a project anchored by
//! someone else) marks the epoch `ANCHOR_FAILED` with its reason and is not retried.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use sequencer_core::B256;
use sequencer_ports::{EndOutcome, PortError, SubmitOutcome};
use serde::Serialize;

use crate::jobs::EpochJob;
use crate::pipeline::{parse, Pipeline, PipelineError};
use crate::records::{BatchState, EpochMove, EpochRecord, EpochState};
use crate::sqs::{body, failure};

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    /// The epoch.
    pub epoch: u64,
    /// Transactions this run sent for batches.
    pub sent: u32,
    /// Batches found on chain already.
    pub already: u32,
    /// `endBatchSubmissions` sent by this run.
    pub ended: bool,
    /// The epoch has no batch: nothing was sent, not even `endBatchSubmissions`.
    pub empty: bool,
}

/// The Lambda handler.
pub async fn handle(p: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    // FIFO: records of one group arrive in order; run them one after another.
    let mut response = SqsBatchResponse::default();
    let mut failed = false;
    for m in &event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let result = if failed {
            Err(PipelineError::NotReady(
                "an earlier job of the group failed".into(),
            ))
        } else {
            match parse::<EpochJob>("anchor job", body(m)) {
                Ok(job) => run(p, job).await.map(|_| ()),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            tracing::warn!(message_id = %id, error = %e, "anchor job failed; it will be redelivered");
            failed = true;
            response.batch_item_failures.push(failure(id));
        }
    }
    response
}

/// Anchors one finalized epoch.
pub async fn run(p: &Pipeline, job: EpochJob) -> Result<AnchorReport, PipelineError> {
    let market = p.config.market;
    let epoch = job.epoch;
    let records = p.records();
    let chain = &p.ports.chain;
    let entry = records
        .epoch(epoch)
        .await?
        .ok_or_else(|| PipelineError::NotReady(format!("epoch {epoch} is not recorded")))?;
    let mut report = AnchorReport {
        epoch,
        ..AnchorReport::default()
    };
    match entry.state {
        EpochState::Finalized => {}
        EpochState::Anchored | EpochState::Failed => return Ok(report),
        other => {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch} is {other}, not finalized"
            )))
        }
    }
    let mut rec = entry.record;

    let list = records.batches(epoch).await?;
    let recorded = rec.batches.map_or(list.len(), |n| n as usize);
    if recorded != list.len() {
        return Err(PipelineError::Corrupt(format!(
            "epoch {epoch} was finalized with {recorded} batches but {} are recorded",
            list.len()
        )));
    }
    report.empty = list.is_empty();
    for entry in list {
        if entry.state == BatchState::Anchored {
            continue;
        }
        let mut b = entry.record;
        let root: B256 = b
            .finalized_cids_root
            .parse()
            .map_err(|_| PipelineError::Corrupt(format!("batch {} root", b.index)))?;
        let outcome = chain
            .submit_batch(market, epoch, &b.cid, &b.pids, &b.cids, root)
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) if !e.is_retryable() => return fail(p, rec, e).await,
            Err(e) => return Err(e.into()),
        };
        match outcome {
            SubmitOutcome::Anchored {
                tx_hash,
                block,
                delayed,
                ..
            } => {
                report.sent += 1;
                p.counters.inc("anchor_batches_sent_total");
                b.tx_hash = Some(format!("{tx_hash:#x}"));
                b.block = Some(block);
                b.delayed = delayed;
            }
            SubmitOutcome::AlreadyAnchored {
                tx_hash,
                block,
                delayed,
                ..
            } => {
                report.already += 1;
                p.counters.inc("anchor_batches_already_total");
                b.tx_hash = tx_hash.map(|t| format!("{t:#x}"));
                b.block = Some(block);
                b.delayed = delayed;
            }
        }
        records.mark_batch_anchored(epoch, &b).await?;
        tracing::info!(epoch, batch = b.index, cid = %b.cid, tx = ?b.tx_hash, "batch anchored");
    }

    if report.empty {
        tracing::info!(
            epoch,
            "epoch has no batch: nothing to anchor, not ended on chain"
        );
        p.counters.inc("anchor_epochs_empty_total");
    } else {
        match chain.end_batch(market, epoch).await {
            Ok(EndOutcome::Ended { tx_hash, .. }) => {
                report.ended = true;
                rec.end_tx = Some(format!("{tx_hash:#x}"));
            }
            Ok(EndOutcome::AlreadyEnded) => {}
            Err(e) if !e.is_retryable() => return fail(p, rec, e).await,
            Err(e) => return Err(e.into()),
        }
    }
    rec.anchored_at_ms = Some(p.now_ms());
    if let EpochMove::Refused(cur) = records
        .move_epoch(EpochState::Finalized, EpochState::Anchored, &rec)
        .await?
    {
        tracing::warn!(epoch, state = ?cur.map(|c| c.state), "epoch changed while anchoring");
    }
    p.counters.inc("anchor_epochs_total");
    Ok(report)
}

/// Records that anchoring `rec`'s epoch failed for good (`ANCHOR_FAILED`, with the reason).
async fn fail(
    p: &Pipeline,
    mut rec: EpochRecord,
    why: PortError,
) -> Result<AnchorReport, PipelineError> {
    tracing::error!(epoch = rec.epoch, error = %why, kind = ?why.kind(), "anchoring failed for good");
    p.counters.inc("anchor_epochs_failed_total");
    let epoch = rec.epoch;
    rec.failure = Some(why.to_string());
    p.records()
        .move_epoch(EpochState::Finalized, EpochState::Failed, &rec)
        .await?;
    Ok(AnchorReport {
        epoch,
        ..AnchorReport::default()
    })
}
