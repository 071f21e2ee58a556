//! `finalize` (SQS `finalize`): one closed epoch → its one sealed batch set → the anchor job.
//!
//! [`run`] goes through four phases, each reading only what the one before it left:
//!
//! 1. **Look** at the epoch. `CLOSING` and `CLOSED` go on: the tick moves `CLOSING → CLOSED` on
//!    its own time, and finalize accepts either, also when the tick moves it in between
//!    (phase 4). `FINALIZED` only sends the anchor job again; `ANCHORED` and `ANCHOR_FAILED` need
//!    nothing; `OPEN` is not ready.
//! 2. **Seal** ([`seal_epoch`]). If the epoch has a seal (`records::SealRecord`), its document is
//!    loaded and nothing is read or computed again. Otherwise the accepted set is read (every
//!    shard at once, page by page), planned (`core::finalize::plan_epoch`: consensus, the cuts,
//!    each submission's text held once), and the batches are built one at a time and uploaded
//!    with at most `FINALIZE_CONCURRENCY` in flight, each let go once stored. Their records go
//!    into one [`SealDocument`] in the content store, and its CID into the seal, by a
//!    conditional put: the first finalizer to seal the epoch wins, and a run that loses (a
//!    concurrent second finalizer, which may have read another set) takes the winner's seal.
//! 3. **Record** the sealed batches (`PENDING`), at most `FINALIZE_CONCURRENCY` at once. Every
//!    conditional write is checked: a record that is already there must be the sealed batch
//!    (`BatchRecord::same_batch`), or the run stops with an invariant error.
//! 4. **Finish**: the epoch's receipt counts, `→ FINALIZED` from `CLOSING` or `CLOSED`
//!    (whichever it is in when the write lands: a refusal because the tick moved it is retried
//!    at once from the state found), then the anchor job (FIFO, deduplicated by market and
//!    epoch).
//!
//! So every re-run and every concurrent run records one batch set, byte for byte: the sealed
//! one. Everything after the seal reads only the seal, so a per-epoch hook (rewards accounting,
//! say) belongs between phases 3 and 4, over [`Sealed`].
//!
//! **Retry delays.** Races between finalizers and with the tick are answered inline: they never
//! fail the job. A transient failure (state store, content store or queue unavailable) is retried
//! inside the same invocation by [`handle`] ([`run_retrying`]): after 1 s, then 2, 4, 8, 16 and
//! 30 s, while the retries stay within `FINALIZE_RETRY_BUDGET_MS` (120 s by default, counting the
//! runs themselves; the function's timeout is 300 s). Past that budget the message is given
//! back with a short visibility ([`FINALIZE_REDELIVERY`]: 30 s, then 2, 8 and 30 minutes), not
//! the queue's visibility timeout (6 × 300 s = 30 min in the Terraform module), and after five
//! receives it goes to the DLQ. While a job runs its message is held 60 s at a time, so a run
//! that crashes or times out gives it back within a minute. Errors no retry can fix (an invariant, corrupt data, a
//! content store that answers another CID) are not retried in the invocation.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::{StreamExt, TryStreamExt};
use sequencer_core::cids::document_cid;
use sequencer_core::finalize::{plan_epoch, Batch, FinalizeError};
use sequencer_core::rewards::{tally_votes, SlotTally, Vote};
use sequencer_ports::{ErrorKind, PortError};
use serde::{Deserialize, Serialize};

use crate::jobs::EpochJob;
use crate::metrics as m;
use crate::pipeline::{parse, Pipeline, PipelineError};
use crate::records::{
    BatchRecord, EpochCounts, EpochEntry, EpochMove, EpochState, Expiry, SealRecord, SealWrite,
};
use crate::sqs::{body, each_record_held, Redelivery};

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FinalizeReport {
    /// The epoch.
    pub epoch: u64,
    /// Batches recorded (the sealed batch set).
    pub batches: u32,
    /// Batch documents uploaded by this run (none when the epoch was sealed before).
    pub uploaded: u32,
    /// Batch records this run wrote (the others were there already).
    pub recorded: u32,
    /// Submissions listed in batches.
    pub submissions: u64,
    /// This run wrote the epoch's seal.
    pub sealed: bool,
    /// The seal document's CID.
    pub seal_cid: String,
    /// The epoch was finalized before (or by a concurrent run); only the anchor job was sent.
    pub already_finalized: bool,
    /// Time reading the epoch's accepted submissions and receipts, ms.
    pub read_ms: f64,
    /// Time planning the batches (consensus, cuts, texts), ms.
    pub compute_ms: f64,
    /// Time building, uploading, sealing and recording the batches and moving the epoch, ms.
    pub store_ms: f64,
}

/// The sealed batch set of an epoch, as stored in the content store (canonical JSON of this
/// struct; the seal record names its CID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealDocument {
    /// The market (`0x…`, lower case).
    pub market: String,
    /// The epoch.
    pub epoch: u64,
    /// The batches, in order, as finalization records them.
    pub batches: Vec<BatchRecord>,
    /// Projects below the minimum number of submissions, not finalized.
    pub below_minimum: Vec<String>,
    /// Accepted submissions left out because another held their (project, slot).
    pub duplicates_dropped: u64,
    /// Simulation submissions left out.
    pub simulations_skipped: u64,
    /// Each slot's eligible and discarded submissions (`core::rewards`), computed from the set
    /// this seal was made from, so every run records the same rewards.
    #[serde(default)]
    pub rewards: Vec<SlotTally>,
}

/// An epoch's seal and its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The seal.
    pub record: SealRecord,
    /// What it seals.
    pub doc: SealDocument,
    /// This run wrote it.
    pub by_this_run: bool,
}

/// How finalize jobs are held while they run and when a failed one comes back: held 60 s at a
/// time (a crashed or timed-out run's job is back within a minute, not after the queue's 30-minute
/// visibility timeout); after a failed delivery, 30 s, then 2, 8 and 30 minutes (the queue's
/// `maxReceiveCount` of 5 gives a retry horizon of about 40 minutes plus the runs' own retries).
pub const FINALIZE_REDELIVERY: Redelivery = Redelivery {
    hold: Duration::from_secs(60),
    first: Duration::from_secs(30),
    factor: 4,
    max: Duration::from_secs(1800),
};

/// The Lambda handler: each job run with in-invocation retries of transient failures, held while
/// it runs and, when it fails, given back after [`FINALIZE_REDELIVERY`]'s delay.
pub async fn handle(p: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    each_record_held(
        p,
        p.ports.finalize_queue.as_ref(),
        &FINALIZE_REDELIVERY,
        &event,
        "finalize",
        |m| async move {
            let job: EpochJob = parse("finalize job", body(m))?;
            run_retrying(p, job).await.map(|_| ())
        },
    )
    .await
}

/// The wait before retry `n` (0-based) of a transient failure: 1 s, doubling, at most 30 s.
pub fn retry_delay(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30))
}

/// [`run`], retrying transient failures after [`retry_delay`] while the time spent (runs and
/// waits) stays within `finalize_retry_budget`; the last error when it does not.
pub async fn run_retrying(p: &Pipeline, job: EpochJob) -> Result<FinalizeReport, PipelineError> {
    let budget = p.config.finalize_retry_budget;
    let mut spent = Duration::ZERO;
    let mut retry = 0;
    loop {
        // The pipeline's clock, so a simulation on virtual time decides the same way each run.
        let started = p.now_ms();
        let err = match run(p, job).await {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        let took = Duration::from_millis(u64::try_from(p.now_ms() - started).unwrap_or(0));
        spent += took;
        let delay = retry_delay(retry);
        // Another run may take as long as this one did.
        if !err.is_retryable() || spent + delay + took > budget {
            return Err(err);
        }
        tracing::warn!(epoch = job.epoch, error = %err, retry, delay_ms = delay.as_millis() as u64, "finalize failed; retrying in this invocation");
        p.metrics.inc(&m::FINALIZE_RETRIES, []);
        p.clock.sleep(delay).await;
        spent += delay;
        retry += 1;
    }
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
    let mut report = FinalizeReport {
        epoch,
        ..FinalizeReport::default()
    };

    // 1. Look.
    let entry = records
        .epoch(epoch)
        .await?
        .ok_or_else(|| PipelineError::NotReady(format!("epoch {epoch} is not recorded")))?;
    match entry.state {
        EpochState::Closed | EpochState::Closing => {}
        EpochState::Finalized | EpochState::Anchored | EpochState::Failed => {
            report.already_finalized = true;
            report.batches = entry.record.batches.unwrap_or(0);
            // The seal it was finalized from (none for an epoch finalized before seals).
            if let Some(seal) = records.seal(epoch).await? {
                report.seal_cid = seal.cid;
                report.submissions = seal.submissions;
            }
            if entry.state == EpochState::Finalized {
                send_anchor_job(p, epoch).await?;
            }
            return Ok(report);
        }
        EpochState::Open => {
            return Err(PipelineError::NotReady(format!(
                "epoch {epoch} is {}, not closed",
                entry.state
            )))
        }
    }

    // 2. Seal (the receipts are counted meanwhile). Every record written expires with the
    // epoch.
    let expiry = records.expiry_of(&entry.record);
    let (sealed, counts) = futures::try_join!(
        seal_epoch(p, epoch, expiry, &mut report),
        records.tally_receipts(epoch)
    )?;
    let t_stored = Instant::now();
    report.sealed = sealed.by_this_run;
    report.seal_cid = sealed.record.cid.clone();
    report.batches = sealed.doc.batches.len() as u32;
    report.submissions = sealed.record.submissions;

    // 3. Record: the sealed batches, and the rewards tally sealed with them.
    report.recorded = record_batches(p, epoch, expiry, &sealed.doc).await?;
    records
        .record_epoch_rewards(epoch, &sealed.doc.rewards, expiry)
        .await?;

    // 4. Finish.
    report.already_finalized = !finish(p, entry, &sealed.doc, counts).await?;
    report.store_ms += t_stored.elapsed().as_secs_f64() * 1e3;
    if !report.already_finalized {
        p.metrics.inc(&m::FINALIZE_EPOCHS, []);
        p.metrics
            .add(&m::FINALIZE_BATCHES, [], u64::from(report.batches));
    }
    tracing::info!(
        epoch,
        batches = report.batches,
        submissions = report.submissions,
        uploaded = report.uploaded,
        recorded = report.recorded,
        sealed = report.sealed,
        seal = %report.seal_cid,
        already = report.already_finalized,
        "epoch finalized"
    );
    send_anchor_job(p, epoch).await?;
    Ok(report)
}

fn invariant(e: FinalizeError) -> PipelineError {
    PipelineError::Invariant(e.to_string())
}

/// Stores `bytes` and checks the content store answered the CID computed here.
async fn put_document(p: &Pipeline, bytes: &[u8], what: &str) -> Result<String, PipelineError> {
    let cid = document_cid(bytes).to_string();
    put_with_cid(p, bytes, &cid, what).await?;
    Ok(cid)
}

/// Stores `bytes`, whose CID is `cid`, and checks the content store answered it.
async fn put_with_cid(
    p: &Pipeline,
    bytes: &[u8],
    cid: &str,
    what: &str,
) -> Result<(), PipelineError> {
    let stored = p.ports.content.put(bytes).await?;
    if stored != cid {
        return Err(PortError::content(
            ErrorKind::CidMismatch {
                expected: cid.to_string(),
                got: stored,
            },
            format!("the content store's CID for {what}"),
        )
        .into());
    }
    Ok(())
}

/// Uploads one batch; what is recorded for it.
async fn upload(
    p: &Pipeline,
    batch: Result<Batch, FinalizeError>,
) -> Result<BatchRecord, PipelineError> {
    let b = batch.map_err(invariant)?;
    // The batch's CID was computed as it was built: checked against the store's, not again.
    let cid = b.cid.to_string();
    put_with_cid(p, &b.json, &cid, "a batch document").await?;
    Ok(BatchRecord {
        index: b.index,
        cid,
        roothash: format!("{:#x}", b.roothash),
        finalized_cids_root: format!("{:#x}", b.finalized_cids_root),
        first_leaf_index: b.first_leaf_index,
        submissions: b.document.submission_ids.len() as u64,
        bytes: b.json.len() as u64,
        pids: b.document.pids,
        cids: b.document.cids,
        tx_hash: None,
        block: None,
        delayed: false,
    })
}

/// The epoch's seal: the one there, or one made from the accepted set now (phase 2).
pub async fn seal_epoch(
    p: &Pipeline,
    epoch: u64,
    expiry: Expiry,
    report: &mut FinalizeReport,
) -> Result<Sealed, PipelineError> {
    let records = p.records();
    if let Some(record) = records.seal(epoch).await? {
        let doc = load_seal(p, epoch, &record).await?;
        return Ok(Sealed {
            record,
            doc,
            by_this_run: false,
        });
    }

    let t0 = Instant::now();
    let accepted = records.accepted_submissions(epoch).await?;
    let read = accepted.len() as u64;
    let t1 = Instant::now();
    // What rewards need of each submission, kept beside the plan (not the texts).
    let votes: Vec<Vote> = accepted.iter().map(Vote::of).collect();
    let plan = plan_epoch(accepted, &p.config.finalize).map_err(invariant)?;
    let t2 = Instant::now();
    report.read_ms = (t1 - t0).as_secs_f64() * 1e3;
    report.compute_ms = (t2 - t1).as_secs_f64() * 1e3;

    let (listed, below_minimum) = (plan.listed as u64, plan.below_minimum.clone());
    let (duplicates_dropped, simulations_skipped) = (
        plan.duplicates_dropped as u64,
        plan.simulations_skipped as u64,
    );
    // Two things at once, on two threads (scoped: the result is the same however they are
    // scheduled, under Lambda, the runner or the simulation's executor): the rewards tally,
    // from the cut the plan already knows, and the batches. A built batch keeps its JSON and
    // lets go of its texts, so the epoch's texts are held once: in the plan until their batch
    // is built, then in its JSON.
    let cut = plan.cut();
    let (rewards, built) = std::thread::scope(|s| {
        let tally = s.spawn(|| tally_votes(&votes, &cut));
        let built: Vec<Result<Batch, FinalizeError>> = plan
            .batches()
            .map(|b| {
                b.map(|mut b| {
                    b.document.submissions = Vec::new();
                    b
                })
            })
            .collect();
        (tally.join(), built)
    });
    drop((votes, cut));
    let rewards =
        rewards.map_err(|_| PipelineError::Invariant("the rewards tally panicked".to_string()))?;
    let batches: Vec<BatchRecord> = futures::stream::iter(built)
        .map(|b| upload(p, b))
        .buffered(p.config.finalize_concurrency.max(1))
        .try_collect()
        .await?;
    report.uploaded = batches.len() as u32;
    let doc = SealDocument {
        market: format!("{:#x}", p.config.market),
        epoch,
        batches,
        below_minimum,
        duplicates_dropped,
        simulations_skipped,
        rewards,
    };
    let bytes = serde_json::to_vec(&doc)
        .map_err(|e| PipelineError::Invariant(format!("seal document: {e}")))?;
    let record = SealRecord {
        cid: put_document(p, &bytes, "the seal document").await?,
        batches: doc.batches.len() as u32,
        submissions: listed,
        read,
        sealed_at_ms: p.now_ms(),
    };
    report.store_ms = t2.elapsed().as_secs_f64() * 1e3;
    match records.write_seal(epoch, &record, expiry).await? {
        SealWrite::Written => Ok(Sealed {
            record,
            doc,
            by_this_run: true,
        }),
        SealWrite::Exists(theirs) => {
            p.metrics.inc(&m::FINALIZE_SEAL_LOST, []);
            let same = theirs.cid == record.cid;
            tracing::info!(epoch, ours = %record.cid, theirs = %theirs.cid, same, "another finalizer sealed the epoch first; its seal is the epoch's");
            let doc = if same {
                doc
            } else {
                load_seal(p, epoch, &theirs).await?
            };
            Ok(Sealed {
                record: theirs,
                doc,
                by_this_run: false,
            })
        }
    }
}

/// The document a seal names, checked against it.
async fn load_seal(
    p: &Pipeline,
    epoch: u64,
    seal: &SealRecord,
) -> Result<SealDocument, PipelineError> {
    let bytes = p.ports.content.get(&seal.cid).await?.ok_or_else(|| {
        PipelineError::NotReady(format!(
            "the seal document {} of epoch {epoch} is not in the content store",
            seal.cid
        ))
    })?;
    if document_cid(&bytes).to_string() != seal.cid {
        return Err(PipelineError::Corrupt(format!(
            "the seal document of epoch {epoch} does not give its CID {}",
            seal.cid
        )));
    }
    let doc: SealDocument = serde_json::from_slice(&bytes)
        .map_err(|e| PipelineError::Corrupt(format!("seal document {}: {e}", seal.cid)))?;
    let market = format!("{:#x}", p.config.market);
    if doc.epoch != epoch || doc.market != market || doc.batches.len() as u32 != seal.batches {
        return Err(PipelineError::Corrupt(format!(
            "seal document {} is for market {} epoch {} with {} batches, the seal of {market} epoch {epoch} says {}",
            seal.cid,
            doc.market,
            doc.epoch,
            doc.batches.len(),
            seal.batches
        )));
    }
    Ok(doc)
}

/// Records the sealed batches (phase 3); how many this run wrote.
async fn record_batches(
    p: &Pipeline,
    epoch: u64,
    expiry: Expiry,
    doc: &SealDocument,
) -> Result<u32, PipelineError> {
    let records = p.records();
    // The futures are made up front (they do nothing until polled): a stream `map` closure
    // over borrowed records gives a future that is `Send` only for one lifetime, which a
    // spawned handler cannot use.
    let writes: Vec<_> = doc
        .batches
        .iter()
        .map(|b| record_one(&records, epoch, expiry, b))
        .collect();
    futures::stream::iter(writes)
        .buffer_unordered(p.config.finalize_concurrency.max(1))
        .try_fold(0u32, |n, w| async move { Ok(n + w) })
        .await
}

/// Records one sealed batch: 1 if this run wrote it, 0 if the same batch was there; an
/// invariant error if another batch holds its place.
async fn record_one(
    records: &crate::records::Records<'_>,
    epoch: u64,
    expiry: Expiry,
    b: &BatchRecord,
) -> Result<u32, PipelineError> {
    if records.record_batch(epoch, b, expiry).await? {
        return Ok(1);
    }
    match records.batch(epoch, b.index).await? {
        Some(there) if there.record.same_batch(b) => Ok(0),
        Some(there) => Err(PipelineError::Invariant(format!(
            "epoch {epoch} batch {} is recorded as {} but the epoch's seal says {}",
            b.index, there.record.cid, b.cid
        ))),
        None => Err(PipelineError::NotReady(format!(
            "epoch {epoch} batch {} was recorded and is gone",
            b.index
        ))),
    }
}

/// Moves the epoch to `FINALIZED` with its counts (phase 4), from `CLOSING` or `CLOSED`,
/// whichever it is in: `false` when another run had moved it already.
async fn finish(
    p: &Pipeline,
    mut entry: EpochEntry,
    doc: &SealDocument,
    counts: EpochCounts,
) -> Result<bool, PipelineError> {
    let records = p.records();
    let epoch = entry.record.epoch;
    // CLOSING → CLOSED happens at most once, so three attempts always settle.
    for _ in 0..3 {
        let mut rec = entry.record.clone();
        rec.counts = Some(counts.clone());
        rec.batches = Some(doc.batches.len() as u32);
        rec.below_minimum = doc.below_minimum.clone();
        rec.finalized_at_ms = Some(p.now_ms());
        match records
            .move_epoch(entry.state, EpochState::Finalized, &rec)
            .await?
        {
            EpochMove::Moved => return Ok(true),
            EpochMove::Refused(Some(cur))
                if matches!(cur.state, EpochState::Closing | EpochState::Closed) =>
            {
                // The tick closed it meanwhile (CLOSING → CLOSED): finish from there, now.
                p.metrics.inc(&m::FINALIZE_CLOSE_RACES, []);
                tracing::info!(epoch, from = %entry.state, now = %cur.state, "the epoch moved under finalize; finishing from its state");
                entry = *cur;
            }
            EpochMove::Refused(Some(cur)) if cur.state.is_finalized() => return Ok(false),
            EpochMove::Refused(cur) => {
                return Err(PipelineError::NotReady(format!(
                    "epoch {epoch} changed during finalization: {:?}",
                    cur.map(|c| c.state)
                )))
            }
        }
    }
    Err(PipelineError::NotReady(format!(
        "epoch {epoch} kept changing during finalization"
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_one_second_to_thirty() {
        let d: Vec<u64> = (0..8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(30));
    }
}
