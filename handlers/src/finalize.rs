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
use sequencer_core::finalize::{finalize_epoch, Accepted, FinalizedEpoch};
use sequencer_core::submission::SnapshotSubmission;
use serde::Serialize;

use crate::pipeline::{json, now_ms, parse, Pipeline, PipelineError};
use crate::records::{
    self, state, BatchRecord, EpochCounts, EpochJob, EpochRecord, Receipt, SubmissionRecord, SHARDS,
};
use crate::sqs::{body, each_record};
use sequencer_ports::{query_all, ErrorKind, Item, OutMessage, PortError, Table, Transition};

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
    let store = &p.ports.state;
    let ekey = records::epoch_key(&market, epoch);
    let item = store
        .get(Table::Epochs, &ekey)
        .await?
        .ok_or_else(|| PipelineError::NotReady(format!("epoch {epoch} is not recorded")))?;
    let from = item.state.clone().unwrap_or_default();
    let mut rec: EpochRecord = parse("epoch", &item.data)?;
    let mut report = FinalizeReport {
        epoch,
        ..FinalizeReport::default()
    };
    match from.as_str() {
        state::CLOSED | state::CLOSING => {}
        state::FINALIZED => {
            report.already_finalized = true;
            report.batches = rec.batches.unwrap_or(0);
            send_anchor_job(p, epoch).await?;
            return Ok(report);
        }
        state::ANCHORED | state::ANCHOR_FAILED => {
            report.already_finalized = true;
            report.batches = rec.batches.unwrap_or(0);
            return Ok(report);
        }
        other => {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch} is {other}, not closed"
            )))
        }
    }

    let t0 = std::time::Instant::now();
    let (accepted, counts) = read_epoch(p, epoch).await?;
    let t1 = std::time::Instant::now();
    let finalized: FinalizedEpoch = finalize_epoch(&accepted, &p.config.finalize)
        .map_err(|e| PipelineError::Invariant(e.to_string()))?;
    let t2 = std::time::Instant::now();
    report.read_ms = (t1 - t0).as_secs_f64() * 1e3;
    report.compute_ms = (t2 - t1).as_secs_f64() * 1e3;
    for b in &finalized.batches {
        let cid = b.cid.to_string();
        let key = records::batch_key(&market, epoch, b.index);
        if let Some(existing) = store.get(Table::Batches, &key).await? {
            let have: BatchRecord = parse("batch", &existing.data)?;
            if have.cid != cid {
                return Err(PipelineError::Invariant(format!(
                    "epoch {epoch} batch {} was recorded as {}, finalizing again gives {cid}",
                    b.index, have.cid
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
            store
                .put_if_absent(
                    Table::Batches,
                    &key,
                    &Item::with_state(state::PENDING, json(&br)?),
                )
                .await?;
        }
        report.submissions += b.document.submission_ids.len() as u64;
    }
    report.batches = finalized.batches.len() as u32;
    report.store_ms = t2.elapsed().as_secs_f64() * 1e3;
    rec.counts = Some(counts);
    rec.batches = Some(report.batches);
    rec.below_minimum = finalized.below_minimum.clone();
    rec.finalized_at_ms = Some(now_ms());
    let to = Item::with_state(state::FINALIZED, json(&rec)?).ttl(p.ttl());
    match store
        .transition(Table::Epochs, &ekey, Some(&from), &to)
        .await?
    {
        Transition::Applied => {}
        Transition::Refused(Some(cur)) if cur.state.as_deref() == Some(state::FINALIZED) => {
            report.already_finalized = true;
        }
        Transition::Refused(cur) => {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch} changed during finalization: {:?}",
                cur.and_then(|c| c.state)
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
    let market = p.config.market;
    let job = EpochJob { market, epoch };
    let msg = OutMessage::new(json(&job)?)
        .attr("market", format!("{market:#x}"))
        .attr("epoch", epoch.to_string())
        .fifo(
            p.config.anchor_group.clone(),
            format!("{market:#x}-{epoch}"),
        );
    p.ports.anchor_queue.send(&[msg]).await?;
    Ok(())
}

/// The epoch's accepted submissions and the counts of all its receipts.
pub async fn read_epoch(
    p: &Pipeline,
    epoch: u64,
) -> Result<(Vec<Accepted>, EpochCounts), PipelineError> {
    let market = p.config.market;
    let store = p.ports.state.as_ref();
    let mut accepted = Vec::new();
    let mut counts = EpochCounts::default();
    for shard in 0..SHARDS {
        let pk = records::epoch_shard_pk(&market, epoch, shard);
        for (_, item) in query_all(store, Table::Submissions, &pk).await? {
            if item.state.as_deref() != Some(state::ACCEPTED) {
                continue;
            }
            let r: SubmissionRecord = parse("submission", &item.data)?;
            let submission: SnapshotSubmission = serde_json::from_str(&r.text).map_err(|e| {
                PipelineError::Corrupt(format!("submission {}: {e}", r.submission_id))
            })?;
            accepted.push(Accepted {
                submission_id: r.submission_id,
                submission,
            });
        }
        for (_, item) in query_all(store, Table::Receipts, &pk).await? {
            let r: Receipt = parse("receipt", &item.data)?;
            match (r.outcome.as_str(), r.reason) {
                ("accepted", _) => counts.accepted += 1,
                ("simulation", _) => counts.simulations += 1,
                (_, Some(reason)) => *counts.rejected.entry(reason).or_default() += 1,
                (other, None) => *counts.rejected.entry(other.to_string()).or_default() += 1,
            }
        }
    }
    Ok((accepted, counts))
}

/// The epoch's batch records, in order.
pub async fn batches(
    p: &Pipeline,
    epoch: u64,
) -> Result<Vec<(String, BatchRecord)>, PipelineError> {
    let pk = records::batches_pk(&p.config.market, epoch);
    let mut out = Vec::new();
    for (_, item) in query_all(p.ports.state.as_ref(), Table::Batches, &pk).await? {
        out.push((item.state.unwrap_or_default(), parse("batch", &item.data)?));
    }
    Ok(out)
}
