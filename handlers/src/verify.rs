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
use sha2::{Digest, Sha256};

use crate::pipeline::{json, now_ms, parse, Pipeline, PipelineError};
use crate::records::{self, state, EpochRecord, Receipt, SubmissionRecord};
use crate::sqs::{body, each_record};
use sequencer_ports::{BoundedAdd, Item, OutMessage, Table, Transition};

/// Reason code of a submission for an epoch the tick has already closed.
pub const LATE: &str = "late";
/// Reason code of a submission id reused with another body.
pub const DUPLICATE_ID: &str = "duplicate_submission_id";

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted for its epoch.
    Accepted,
    /// Accepted as a simulation (liveness), never batched.
    Simulation,
    /// Rejected with this reason code.
    Rejected(String),
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
    let id = msg.submission_id.to_string();
    let sub = &msg.submission;
    let epoch = sub.request.epoch_id;
    let slot = sub.request.slot_id;
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    let receipt_key = records::receipt_key(&market, epoch, &id);

    if let Some(existing) = p.ports.state.get(Table::Receipts, &receipt_key).await? {
        let r: Receipt = parse("receipt", &existing.data)?;
        if r.digest == digest {
            return Ok(Verdict::Redelivered);
        }
        tracing::warn!(submission_id = %id, "submission id reused with another body");
        return Ok(Verdict::Rejected(DUPLICATE_ID.into()));
    }

    let reject = |reason: &str, detail: String| Receipt {
        outcome: "rejected".into(),
        reason: Some(reason.to_string()),
        detail: Some(detail),
        digest: digest.clone(),
        project: sub.request.project_id.clone(),
        slot,
        at_ms: now_ms(),
    };
    let rk = &receipt_key;
    let record_rejection = |r: Receipt| async move {
        let reason = r.reason.clone().unwrap_or_default();
        let item = Item::with_state("REJECTED", json(&r)?).ttl(p.ttl());
        if p.ports
            .state
            .put_if_absent(Table::Receipts, rk, &item)
            .await?
        {
            Ok(Verdict::Rejected(reason))
        } else {
            // Another delivery of the same message got there first.
            Ok(Verdict::Redelivered)
        }
    };

    // Stateless: fields, market, signature.
    let recovered = match rules::check_stateless(&p.verifier, sub, &market) {
        Ok(r) => r,
        Err(e) => return record_rejection(reject(e.reason(), e.to_string())).await,
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
        return record_rejection(reject(e.reason(), e.to_string())).await;
    }

    let accept_receipt = |outcome: &str| Receipt {
        outcome: outcome.to_string(),
        reason: None,
        detail: None,
        digest: digest.clone(),
        project: sub.request.project_id.clone(),
        slot,
        at_ms: now_ms(),
    };

    if let rules::Kind::Simulation = rules::kind(sub) {
        let item =
            Item::with_state("SIMULATION", json(&accept_receipt("simulation"))?).ttl(p.ttl());
        p.ports
            .state
            .put_if_absent(Table::Receipts, &receipt_key, &item)
            .await?;
        return Ok(Verdict::Simulation);
    }

    // Window: the epoch as the tick recorded it.
    let epoch_item = p
        .ports
        .state
        .get(Table::Epochs, &records::epoch_key(&market, epoch))
        .await?;
    let (window, open) = match epoch_item {
        Some(item) => {
            let rec: EpochRecord = parse("epoch", &item.data)?;
            let open = item.state.as_deref() == Some(state::OPEN);
            (
                Some(EpochWindow {
                    release_block: rec.release_block,
                    window_blocks: rec.window_end.saturating_sub(rec.release_block),
                }),
                open,
            )
        }
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
        return record_rejection(reject(
            LATE,
            format!("epoch {epoch} was already closed for finalization"),
        ))
        .await;
    }
    let header_block = match sub.header_hash() {
        Some(h) => header_block(p, B256::from(h)).await?,
        None => None,
    };
    if let Err(e) = rules::check_window(epoch, header_block, window) {
        return record_rejection(reject(e.reason(), e.to_string())).await;
    }
    let header_block = header_block.unwrap_or_default();

    // First wins per (project, slot).
    let claim_key = records::submission_key(&market, epoch, &sub.request.project_id, slot);
    let text = String::from_utf8_lossy(&msg.raw[sequencer_core::collect::UUID_LEN..]).into_owned();
    let record = SubmissionRecord {
        submission_id: id.clone(),
        text,
        signer,
        header_block,
        verified_at_ms: now_ms(),
    };
    let pending = Item::with_state(state::PENDING, json(&record)?);
    if !p
        .ports
        .state
        .put_if_absent(Table::Submissions, &claim_key, &pending)
        .await?
    {
        let holder = p.ports.state.get(Table::Submissions, &claim_key).await?;
        let ours = match &holder {
            Some(h) => parse::<SubmissionRecord>("submission", &h.data)?.submission_id == id,
            None => false,
        };
        if !ours {
            let e = Rejection::Duplicate;
            return record_rejection(reject(e.reason(), e.to_string())).await;
        }
        if holder.and_then(|h| h.state).as_deref() == Some(state::ACCEPTED) {
            // A crash after acceptance, before the receipt: finish below.
            return finish_accept(p, &receipt_key, accept_receipt("accepted")).await;
        }
    }

    // The per-slot cap, atomic across concurrent verifiers, idempotent per submission id.
    if !cfg.full_nodes.contains(&signer) {
        let counter = records::slot_counter_key(&market, epoch, slot);
        let cap = u64::from(cfg.max_per_slot);
        match p
            .ports
            .state
            .add_bounded(Table::Counters, &counter, &id, cap)
            .await?
        {
            BoundedAdd::Added(_) | BoundedAdd::Present(_) => {}
            BoundedAdd::Full(_) => {
                // Release our claim so it is never finalized.
                p.ports.state.delete(Table::Submissions, &claim_key).await?;
                let e = Rejection::SlotEpochCap {
                    cap: cfg.max_per_slot,
                };
                return record_rejection(reject(e.reason(), e.to_string())).await;
            }
        }
    }

    let accepted = Item::with_state(state::ACCEPTED, json(&record)?);
    match p
        .ports
        .state
        .transition(
            Table::Submissions,
            &claim_key,
            Some(state::PENDING),
            &accepted,
        )
        .await?
    {
        Transition::Applied => {}
        Transition::Refused(Some(cur)) if cur.state.as_deref() == Some(state::ACCEPTED) => {}
        Transition::Refused(other) => {
            return Err(PipelineError::Invariant(format!(
                "claim of submission {id} changed under us: {other:?}"
            )))
        }
    }
    finish_accept(p, &receipt_key, accept_receipt("accepted")).await
}

async fn finish_accept(
    p: &Pipeline,
    receipt_key: &sequencer_ports::Key,
    receipt: Receipt,
) -> Result<Verdict, PipelineError> {
    let item = Item::with_state("ACCEPTED", json(&receipt)?).ttl(p.ttl());
    p.ports
        .state
        .put_if_absent(Table::Receipts, receipt_key, &item)
        .await?;
    Ok(Verdict::Accepted)
}

/// The block number of a header hash: the tick's record, else the chain (then recorded).
pub async fn header_block(p: &Pipeline, hash: B256) -> Result<Option<u64>, PipelineError> {
    let key = records::block_key(&format!("{hash:#x}"));
    if let Some(item) = p.ports.state.get(Table::Blocks, &key).await? {
        return Ok(item.data.parse().ok());
    }
    let n = p.ports.chain.block_number(hash).await?;
    if let Some(n) = n {
        p.ports
            .state
            .put(Table::Blocks, &key, &Item::data(n.to_string()).ttl(p.ttl()))
            .await?;
    }
    Ok(n)
}
