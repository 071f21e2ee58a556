//! `anchor` (SQS FIFO `anchor`, one message group per signing key, so one writer per key):
//! `submitSubmissionBatch` for each of the epoch's batches in order, then `endBatchSubmissions`.
//! An epoch finalized with no batch (no accepted submission) sends nothing: the contract refuses
//! to end an epoch without a batch (`NoBatchSubmitted`), and leaving it open lets nothing in that
//! the sequencer would anchor. It is recorded `ANCHORED` without an end transaction and counted
//! (`anchor_epochs_empty_total`).
//!
//! An epoch's batches go out pipelined: [`sequencer_ports::ChainPort::submit_batches`] sends every pending batch
//! with consecutive nonces and then confirms them all, so an epoch takes the blocks its gas needs,
//! not one round trip per batch; `endBatchSubmissions` goes last, once every batch is confirmed.
//!
//! Exactly one transaction per batch across crashes and retries: a batch is sent only while its
//! record is `PENDING`; the chain client first waits out any pending transaction of our key and
//! reads the contract, returning `AlreadyAnchored` instead of sending (the backstop after a crash
//! between the receipt and the record).
//!
//! Failures (issue 16 item 5):
//! - funding and nonce refusals (`insufficient funds`, `nonce too low`) are the operator's to fix
//!   and retried: each is counted (`anchor_operational_errors_total{kind=…}`) and logged
//!   (`anchor account needs the operator`, the alarm's filter) and the job comes back;
//! - a revert no retry can fix (a revoked sequencer role, a project anchored by someone else),
//!   or any chain failure on the job's last delivery (`ANCHOR_MAX_RECEIVES`), marks the epoch
//!   `ANCHOR_FAILED` with its reason instead of losing it in the DLQ; `seqctl epochs failed`
//!   lists those and `seqctl epochs reanchor` ([`reanchor`]) queues one again once the cause is
//!   fixed: the batches on chain are found there, so it is still one transaction per batch;
//! - jobs of one SQS batch run one after another (one writer per key) but each on its own: a
//!   poison job fails alone and reaches the DLQ after its retries, its neighbours succeed.
//!
//! The same FIFO carries the daily rewards commit ([`crate::rewards`], `updateRewards` with the
//! same key): an anchored epoch of day d asks for day d − 1's commit until it is done.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use sequencer_core::B256;
use sequencer_ports::{BatchCall, ErrorKind, Queue};
use sequencer_ports::{EndOutcome, PortError, SubmitOutcome};
use serde::Serialize;

use crate::jobs::{AnchorJob, EpochJob};
use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{BatchState, EpochEntry, EpochMove, EpochRecord, EpochState, Records};
use crate::rewards;
use crate::sqs::{body, failure, holding, receives, retry_later, Redelivery};

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

/// The Lambda handler. FIFO: the records of one group arrive in order and run one after another
/// (one writer per signing key), each on its own: one that fails is reported alone and comes back
/// (after `maxReceiveCount` deliveries, to the DLQ); the others are done.
///
/// Every message of the batch is held ([`ANCHOR_REDELIVERY`]`.hold`) while the batch runs, so a
/// crashed or timed-out invocation unblocks the FIFO group within that; a failed job is given
/// back after [`ANCHOR_REDELIVERY`]'s delay, [`ANCHOR_OPERATIONAL_REDELIVERY`]'s when the
/// operator must act (funds, nonce, role), [`ANCHOR_POISON_REDELIVERY`]'s when no retry can help.
pub async fn handle(p: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    let queue = p.ports.anchor_queue.as_ref();
    let runs = async {
        let mut failed = Vec::new();
        for m in &event.records {
            let receives = receives(m);
            let last = receives >= p.config.anchor_max_receives;
            let result = match AnchorJob::parse(body(m)) {
                Ok(job) => run_job(p, job, last).await,
                Err(e) => {
                    p.metrics.inc(&m::ANCHOR_JOBS_UNREADABLE, []);
                    Err(e)
                }
            };
            if let Err(e) = result {
                failed.push((m, e));
            }
        }
        failed
    };
    let failed = holding(p, queue, &event.records, ANCHOR_REDELIVERY.hold, runs).await;
    let mut response = SqsBatchResponse::default();
    for (m, e) in failed {
        let id = m.message_id.clone().unwrap_or_default();
        let redelivery = if operational(&e).is_some() {
            &ANCHOR_OPERATIONAL_REDELIVERY
        } else if e.is_retryable() {
            &ANCHOR_REDELIVERY
        } else {
            &ANCHOR_POISON_REDELIVERY
        };
        let delay = retry_later(queue, m, redelivery).await;
        tracing::warn!(message_id = %id, receives = receives(m), error = %e, delay_s = delay.as_secs(), "anchor job failed; it will be redelivered after the delay");
        response.batch_item_failures.push(failure(id));
    }
    response
}

/// How anchor jobs are held while their batch runs and when a failed one comes back (the FIFO
/// group waits for it): held 60 s at a time; after a failed delivery 5 s, then 20 s, 80 s, 320 s
/// and at most the queue's 660 s visibility timeout (10 receives: a retry horizon of about an
/// hour).
pub const ANCHOR_REDELIVERY: Redelivery = Redelivery {
    hold: Duration::from_secs(60),
    first: Duration::from_secs(5),
    factor: 4,
    max: Duration::from_secs(660),
};

/// [`ANCHOR_REDELIVERY`] for a job no retry can help (unreadable, corrupt records): 5 s every
/// time, so it reaches the DLQ after its receives within a couple of minutes instead of holding
/// its FIFO group for the growing delays.
pub const ANCHOR_POISON_REDELIVERY: Redelivery = Redelivery {
    hold: Duration::from_secs(60),
    first: Duration::from_secs(5),
    factor: 1,
    max: Duration::from_secs(5),
};

/// [`ANCHOR_REDELIVERY`] for a refusal the operator must fix (`insufficient funds`,
/// `nonce too low`, a revoked role): 60 s, doubling to 660 s (a retry horizon of about 70
/// minutes before the epoch is `ANCHOR_FAILED` and `seqctl epochs reanchor` is the way back).
pub const ANCHOR_OPERATIONAL_REDELIVERY: Redelivery = Redelivery {
    hold: Duration::from_secs(60),
    first: Duration::from_secs(60),
    factor: 2,
    max: Duration::from_secs(660),
};

/// The `kind` label of an error the operator must fix, if it is one.
fn operational(e: &PipelineError) -> Option<&'static str> {
    match e {
        PipelineError::Port(e) => operational_kind(e),
        _ => None,
    }
}

fn operational_kind(e: &PortError) -> Option<&'static str> {
    match e.kind() {
        ErrorKind::Funds => Some("funds"),
        ErrorKind::Nonce => Some("nonce"),
        ErrorKind::Permission => Some("permission"),
        _ => None,
    }
}

/// Runs one job of the anchor queue; `last`: its last delivery before the DLQ.
pub async fn run_job(p: &Pipeline, job: AnchorJob, last: bool) -> Result<(), PipelineError> {
    match job {
        AnchorJob::Epoch(job) => run_delivery(p, job, last).await.map(|_| ()),
        AnchorJob::Rewards(job) => rewards::handle_job(p, job).await,
    }
}

/// Anchors one finalized epoch (a delivery that is not the job's last).
pub async fn run(p: &Pipeline, job: EpochJob) -> Result<AnchorReport, PipelineError> {
    run_delivery(p, job, false).await
}

/// Anchors one finalized epoch; on the job's `last` delivery a chain failure marks it
/// `ANCHOR_FAILED` rather than leaving it to the DLQ.
async fn run_delivery(
    p: &Pipeline,
    job: EpochJob,
    last: bool,
) -> Result<AnchorReport, PipelineError> {
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
    let pending: Vec<_> = list
        .into_iter()
        .filter(|e| e.state != BatchState::Anchored)
        .map(|e| e.record)
        .collect();
    let calls = pending
        .iter()
        .map(|b| {
            let root: B256 = b
                .finalized_cids_root
                .parse()
                .map_err(|_| PipelineError::Corrupt(format!("batch {} root", b.index)))?;
            Ok(BatchCall {
                batch_cid: b.cid.clone(),
                project_ids: b.pids.clone(),
                cids: b.cids.clone(),
                root,
            })
        })
        .collect::<Result<Vec<_>, PipelineError>>()?;
    if !calls.is_empty() {
        let out = chain.submit_batches(market, epoch, &calls).await;
        // Record what is on chain first, whatever stopped the rest.
        for (mut b, outcome) in pending.into_iter().zip(out.outcomes) {
            let Some(outcome) = outcome else { continue };
            match outcome {
                SubmitOutcome::Anchored {
                    tx_hash,
                    block,
                    delayed,
                    ..
                } => {
                    report.sent += 1;
                    p.metrics.inc(&m::ANCHOR_BATCHES_SENT, []);
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
                    p.metrics.inc(&m::ANCHOR_BATCHES_ALREADY, []);
                    b.tx_hash = tx_hash.map(|t| format!("{t:#x}"));
                    b.block = Some(block);
                    b.delayed = delayed;
                }
            }
            records
                .mark_batch_anchored(epoch, &b, records.expiry_of(&rec))
                .await?;
            tracing::info!(epoch, batch = b.index, cid = %b.cid, tx = ?b.tx_hash, "batch anchored");
        }
        if let Some(e) = out.error {
            return chain_failure(p, rec, e, last).await;
        }
        if report.sent + report.already != calls.len() as u32 {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch}: {} of {} batches confirmed",
                report.sent + report.already,
                calls.len()
            )));
        }
    }

    if report.empty {
        tracing::info!(
            epoch,
            "epoch has no batch: nothing to anchor, not ended on chain"
        );
        p.metrics.inc(&m::ANCHOR_EPOCHS_EMPTY, []);
    } else {
        match chain.end_batch(market, epoch).await {
            Ok(EndOutcome::Ended { tx_hash, .. }) => {
                report.ended = true;
                rec.end_tx = Some(format!("{tx_hash:#x}"));
            }
            Ok(EndOutcome::AlreadyEnded) => {}
            Err(e) => return chain_failure(p, rec, e, last).await,
        }
    }
    let anchored_at = p.now_ms();
    rec.anchored_at_ms = Some(anchored_at);
    match records
        .move_epoch(EpochState::Finalized, EpochState::Anchored, &rec)
        .await?
    {
        // Once per epoch: only the run that moved it records how long it took since the close.
        EpochMove::Moved => {
            if let (false, Some(closed)) = (report.empty, rec.closed_at_ms) {
                let secs = anchored_at.saturating_sub(closed).max(0) as f64 / 1e3;
                p.metrics.observe(&m::ANCHOR_CLOSE_TO_ANCHORED, [], secs);
            }
        }
        EpochMove::Refused(cur) => {
            tracing::warn!(epoch, state = ?cur.map(|c| c.state), "epoch changed while anchoring");
        }
    }
    p.metrics.inc(&m::ANCHOR_EPOCHS, []);
    rewards::after_anchor(p, epoch).await;
    Ok(report)
}

/// A chain failure while anchoring `rec`'s epoch: counted, with an alarm, when the operator must
/// act (funds, nonce, role); the job comes back when a retry can help and this is not its last
/// delivery; otherwise the epoch is `ANCHOR_FAILED`.
async fn chain_failure(
    p: &Pipeline,
    rec: EpochRecord,
    e: PortError,
    last: bool,
) -> Result<AnchorReport, PipelineError> {
    if let Some(kind) = operational_kind(&e) {
        p.metrics.inc(&m::ANCHOR_OPERATIONAL_ERRORS, [kind]);
        tracing::error!(epoch = rec.epoch, kind, error = %e, retryable = e.is_retryable(), "anchor account needs the operator");
    }
    if e.is_retryable() && !last {
        return Err(e.into());
    }
    fail(p, rec, e).await
}

/// Records that anchoring `rec`'s epoch failed for good (`ANCHOR_FAILED`, with the reason).
async fn fail(
    p: &Pipeline,
    mut rec: EpochRecord,
    why: PortError,
) -> Result<AnchorReport, PipelineError> {
    tracing::error!(epoch = rec.epoch, error = %why, kind = ?why.kind(), "anchoring failed for good");
    p.metrics.inc(&m::ANCHOR_EPOCHS_FAILED, []);
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

/// The epochs whose anchoring failed (`ANCHOR_FAILED`), oldest first, with their reasons.
pub async fn failed_epochs(records: &Records<'_>) -> Result<Vec<EpochEntry>, PipelineError> {
    Ok(records
        .epochs()
        .await?
        .into_iter()
        .filter(|e| e.state == EpochState::Failed)
        .collect())
}

/// What [`reanchor`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reanchor {
    /// The epoch.
    pub epoch: u64,
    /// Why it had failed.
    pub failure: Option<String>,
    /// The anchor job was queued again.
    pub queued: bool,
}

/// Anchors a failed epoch again once its cause is fixed (funds, the sequencer role): moves it
/// from `ANCHOR_FAILED` back to `FINALIZED` (a conditional write: two operators racing move it
/// once) and queues its anchor job in `group` with a deduplication id of its own (`token`, unique
/// per attempt), so SQS does not drop it as a repeat of the first job. Still exactly once: the
/// batches recorded anchored are skipped, and the chain client reads the contract before it
/// sends any other. An epoch in any other state is refused with the state it is in, and so is
/// an epoch past the retention (its batches expire with it).
pub async fn reanchor(
    records: &Records<'_>,
    anchor_queue: &dyn Queue,
    group: &str,
    epoch: u64,
    token: &str,
) -> Result<Reanchor, PipelineError> {
    let entry = records
        .epoch(epoch)
        .await?
        .ok_or_else(|| PipelineError::Invariant(format!("epoch {epoch} is not recorded")))?;
    let mut rec = entry.record;
    if records.is_expired(&rec) {
        return Err(PipelineError::Invariant(format!(
            "epoch {epoch} is past the retention ({} days): its records are expiring, it cannot be anchored again",
            records.retention().as_secs() / 86_400
        )));
    }
    let failure = rec.failure.take();
    match entry.state {
        EpochState::Failed => {
            match records
                .move_epoch(EpochState::Failed, EpochState::Finalized, &rec)
                .await?
            {
                EpochMove::Moved => {}
                EpochMove::Refused(cur) => {
                    return Err(PipelineError::Invariant(format!(
                        "epoch {epoch} is {}, not ANCHOR_FAILED (moved meanwhile)",
                        cur.map_or("gone".to_string(), |c| c.state.to_string())
                    )))
                }
            }
        }
        // A re-anchor that queued nothing (crashed between the move and the send) is repeated.
        EpochState::Finalized => {}
        other => {
            return Err(PipelineError::Invariant(format!(
                "epoch {epoch} is {other}: only an ANCHOR_FAILED epoch is anchored again"
            )))
        }
    }
    let job = AnchorJob::Epoch(EpochJob {
        market: records.market(),
        epoch,
    });
    let dedup = format!("{:#x}-{epoch}-reanchor-{token}", records.market());
    anchor_queue
        .send(&[job.fifo_message(group, &dedup)?])
        .await?;
    tracing::info!(epoch, failure = ?failure, "epoch queued to be anchored again");
    Ok(Reanchor {
        epoch,
        failure,
        queued: true,
    })
}
