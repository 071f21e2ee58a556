//! `verify` (SQS `submissions` → state store): PROTOCOL.md §3–§5 in order, exactly once per
//! submission id.
//!
//! 1. Parse the `/collect` message; a body that is not one can never succeed: it goes to the
//!    dead-letter queue with its reason and is counted (`verify_dead_lettered_total`).
//! 2. The receipt of the submission id: a redelivery (same body digest) changes nothing; a reused
//!    id with another body is rejected `duplicate_submission_id` and never overwrites the first.
//! 3. Stateless rules (fields, market, signature), slot owner and flag list from the chain, the
//!    epoch's window from the tick's record (an epoch already closed: `late`), the header's
//!    block from the `blocks` table or the chain.
//! 4. First wins per (project, slot): a conditional insert of the claim (`PENDING`).
//! 5. The per-slot cap: an atomic bounded set of submission ids (a retry counts once).
//! 6. The claim becomes `ACCEPTED`, then the receipt is written.
//!
//! Every step is idempotent, so a crash anywhere and a redelivery give the same final state.
//! Rejections are recorded as receipts and counted by reason (`verify_rejected_total{reason}`).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use sequencer_core::collect::CollectMessage;
use sequencer_core::rules::{self, EpochWindow, Rejection};
use sequencer_core::B256;
use sequencer_ports::{BoundedAdd, OutMessage};
use sha2::{Digest, Sha256};

use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{
    AcceptClaim, EpochState, Outcome, Receipt, RejectReason, SubmissionRecord, SubmissionState,
};
use crate::sqs::{body, each_record};

/// Reason code of a submission for an epoch the tick has already closed.
pub const LATE: &str = RejectReason::LATE;
/// Reason code of a submission id reused with another body.
pub const DUPLICATE_ID: &str = RejectReason::DUPLICATE_ID;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted for its epoch.
    Accepted,
    /// Accepted as a simulation (liveness), never batched.
    Simulation,
    /// Rejected for this reason.
    Rejected(RejectReason),
    /// Processed before (a redelivery): nothing changed.
    Redelivered,
    /// Not a submission at all: sent to the dead-letter queue.
    DeadLettered(String),
}

/// The Lambda handler: every record of the batch, concurrently; only transient failures come
/// back as `batchItemFailures`.
pub async fn handle(p: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    each_record(&event, "verify", |m| async move {
        verify_body(p, body(m)).await.map(|_| ())
    })
    .await
}

/// Verifies one queue message body (the `/collect` bytes as received).
pub async fn verify_body(p: &Pipeline, body: &str) -> Result<Verdict, PipelineError> {
    let verdict = verify_inner(p, body).await?;
    match &verdict {
        Verdict::Accepted => p.counters.inc("verify_accepted_total"),
        Verdict::Simulation => p.counters.inc("verify_simulations_total"),
        Verdict::Rejected(r) => p
            .counters
            .inc(&format!("verify_rejected_total{{reason={r}}}")),
        Verdict::Redelivered => p.counters.inc("verify_redelivered_total"),
        Verdict::DeadLettered(r) => p
            .counters
            .inc(&format!("verify_dead_lettered_total{{reason={r}}}")),
    }
    Ok(verdict)
}

async fn verify_inner(p: &Pipeline, body: &str) -> Result<Verdict, PipelineError> {
    let msg = match CollectMessage::parse(body.as_bytes()) {
        Ok(m) => m,
        Err(e) => {
            let reason = format!("malformed:{}", e.reason());
            let out = OutMessage::new(body).attr("dead_letter_reason", format!("{reason}: {e}"));
            p.ports.submissions_dlq.send(&[out]).await?;
            tracing::warn!(%reason, "not a /collect message; dead-lettered");
            return Ok(Verdict::DeadLettered(reason));
        }
    };
    let cfg = &p.config;
    let market = cfg.market;
    let records = p.records();
    let id = msg.submission_id.to_string();
    let sub = &msg.submission;
    let epoch = sub.request.epoch_id;
    let slot = sub.request.slot_id;
    let project = sub.request.project_id.as_str();
    let digest = hex::encode(Sha256::digest(body.as_bytes()));

    if let Some(existing) = records.receipt(epoch, &id).await? {
        if existing.digest == digest {
            return Ok(Verdict::Redelivered);
        }
        tracing::warn!(submission_id = %id, "submission id reused with another body");
        return Ok(Verdict::Rejected(RejectReason::DuplicateSubmissionId));
    }

    let receipt = |outcome: Outcome| Receipt {
        outcome,
        digest: digest.clone(),
        project: project.to_string(),
        slot,
        at_ms: p.now_ms(),
    };
    let (records, id) = (&records, &id);
    let reject = |reason: RejectReason, detail: String| async move {
        let r = receipt(Outcome::Rejected {
            reason: reason.clone(),
            detail: Some(detail),
        });
        if records.write_receipt(epoch, id, &r).await? {
            Ok(Verdict::Rejected(reason))
        } else {
            // Another delivery of the same message got there first.
            Ok(Verdict::Redelivered)
        }
    };
    let rule = |e: Rejection| reject(RejectReason::from(&e), e.to_string());

    // Stateless: fields, market, signature.
    let recovered = match rules::check_stateless(&p.verifier, sub, &market) {
        Ok(r) => r,
        Err(e) => return rule(e).await,
    };
    let signer = recovered.signer;

    // Signer: the slot's snapshotter, not flagged.
    let owner = p.ports.chain.slot_owner(slot).await?;
    let flagged = if owner == signer {
        p.ports.chain.is_flagged(market, signer).await?
    } else {
        false
    };
    if let Err(e) = rules::check_signer(slot, signer, Some(owner), flagged) {
        return rule(e).await;
    }

    if let rules::Kind::Simulation = rules::kind(sub) {
        records
            .write_receipt(epoch, id, &receipt(Outcome::Simulation))
            .await?;
        return Ok(Verdict::Simulation);
    }

    // Window: the epoch as the tick recorded it.
    let (window, open) = match records.epoch(epoch).await? {
        Some(e) => (
            Some(EpochWindow {
                release_block: e.record.release_block,
                window_blocks: e.record.window_end.saturating_sub(e.record.release_block),
            }),
            e.state == EpochState::Open,
        ),
        None => {
            // The tick may not have seen the release yet: ask the chain.
            let on_chain = p.ports.chain.anchored(market, epoch).await?;
            if on_chain.release_block.is_some() {
                return Err(PipelineError::NotReady(format!(
                    "epoch {epoch} is released on chain but not recorded by the tick yet"
                )));
            }
            (None, true)
        }
    };
    if !open {
        return reject(
            RejectReason::Late,
            format!("epoch {epoch} was already closed for finalization"),
        )
        .await;
    }
    let header_block = match sub.header_hash() {
        Some(h) => header_block(p, B256::from(h)).await?,
        None => None,
    };
    if let Err(e) = rules::check_window(epoch, header_block, window) {
        return rule(e).await;
    }
    let header_block = header_block.unwrap_or_default();

    // First wins per (project, slot).
    let text = String::from_utf8_lossy(&msg.raw[sequencer_core::collect::UUID_LEN..]).into_owned();
    let record = SubmissionRecord {
        submission_id: id.clone(),
        text,
        signer,
        header_block,
        verified_at_ms: p.now_ms(),
    };
    if !records
        .claim_submission(epoch, project, slot, &record)
        .await?
    {
        let holder = records.claim_holder(epoch, project, slot).await?;
        match holder {
            Some((state, held)) if held.submission_id == *id => {
                if state == SubmissionState::Accepted {
                    // A crash after acceptance, before the receipt: finish below.
                    return finish_accept(records, epoch, id, receipt(Outcome::Accepted)).await;
                }
            }
            _ => return rule(Rejection::Duplicate).await,
        }
    }

    // The per-slot cap, atomic across concurrent verifiers, idempotent per submission id.
    if !cfg.full_nodes.contains(&signer) {
        let cap = u64::from(cfg.max_per_slot);
        match records.count_toward_cap(epoch, slot, id, cap).await? {
            BoundedAdd::Added(_) | BoundedAdd::Present(_) => {}
            BoundedAdd::Full(_) => {
                // Release our claim so it is never finalized.
                records.release_claim(epoch, project, slot).await?;
                return rule(Rejection::SlotEpochCap {
                    cap: cfg.max_per_slot,
                })
                .await;
            }
        }
    }

    match records.accept_claim(epoch, project, slot, &record).await? {
        AcceptClaim::Accepted | AcceptClaim::AlreadyAccepted => {}
        AcceptClaim::Changed(other) => {
            return Err(PipelineError::Invariant(format!(
                "claim of submission {id} changed under us: {other:?}"
            )))
        }
    }
    finish_accept(records, epoch, id, receipt(Outcome::Accepted)).await
}

async fn finish_accept(
    records: &crate::records::Records<'_>,
    epoch: u64,
    id: &str,
    receipt: Receipt,
) -> Result<Verdict, PipelineError> {
    records.write_receipt(epoch, id, &receipt).await?;
    Ok(Verdict::Accepted)
}

/// The block number of a header hash: the tick's record, else the chain (then recorded).
pub async fn header_block(p: &Pipeline, hash: B256) -> Result<Option<u64>, PipelineError> {
    let records = p.records();
    if let Some(n) = records.recorded_block(hash).await? {
        return Ok(Some(n));
    }
    let n = p.ports.chain.block_number(hash).await?;
    if let Some(n) = n {
        records.record_block(hash, n).await?;
    }
    Ok(n)
}
