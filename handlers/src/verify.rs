//! `verify` (SQS `submissions` → state store): docs/protocol.md §3–§5, exactly once per submission
//! id, one SQS batch at a time.
//!
//! One batch (up to the event source mapping's batch size) is one unit of state work:
//!
//! 1. Parse every `/collect` message; a body that is not one can never succeed: it goes to the
//!    dead-letter queue with its reason (one send for the batch) and is counted
//!    (`verify_dead_lettered_total`).
//! 2. Stateless rules (fields, market, signature), the signatures recovered on every core.
//! 3. One batched read ([`Records::read_intake`]: `BatchGetItem`, one SQLite read transaction)
//!    of every message's receipt, epoch, (project, slot) claim, slot counter and header block.
//!    A receipt with the same body digest is a redelivery (nothing changes); a receipt with
//!    another body is a reused id (`duplicate_submission_id`; the first stays).
//! 4. Slot owners and flags from the chain, once per distinct slot and signer of the batch;
//!    the window from the tick's record (an epoch no longer open: `late`); unseen headers from
//!    the chain, once per distinct hash (then recorded in one batched write). Before any of it,
//!    a message for an epoch past the retention is `expired_epoch` (no call, no write).
//! 5. The batch's writes in transactions of at most 100 operations
//!    ([`Records::write_intake`]: `TransactWriteItems`, one SQLite transaction): an acceptance
//!    is the epoch still `OPEN` (a condition check on the item the tick moves to `CLOSING`),
//!    the claim absent (first wins per (project, slot)), the receipt absent (an id is accepted
//!    once per epoch, under any concurrency: two bodies with one id cannot both be accepted)
//!    and the slot's set of counted ids within its cap, all or nothing. A rejection is its
//!    receipt, written once. When a condition fails, the store says which and what it found;
//!    the messages it concerns are decided again (late, duplicate, over the cap, redelivered)
//!    and the rest of the batch is written again, so one loser never holds back the others.
//!
//! Nothing is written before the transaction, so a crash anywhere leaves either nothing or
//! everything of a message, and a redelivery finds its receipt. A redelivered message after the
//! close finds its receipt (or its accepted claim) before it could be judged `late`.
//! Only messages that hit a transient failure come back (`batchItemFailures`).
//!
//! What a hostile message may cost, and the messages counted but never stored (out-of-range
//! slots and epochs, signers that are not the slot's snapshotter, simulations over their cap),
//! are in [`guard`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use sequencer_core::collect::CollectMessage;
use sequencer_core::rules::{self, EpochWindow, Rejection};
use sequencer_core::tally::Tally;
use sequencer_core::{Address, B256};
use sequencer_ports::{OutMessage, PortError, MAX_TX_OPS};
use sha2::{Digest, Sha256};

use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{
    EpochEntry, EpochRecord, EpochState, Expiry, Found, Outcome, Receipt, RejectReason,
    SubmissionRecord, SubmissionState, Want, Write, WriteStatus,
};
use crate::retention;
use crate::sqs::{body, failure};

mod guard;
mod watermark;
pub use guard::{Horizon, EPOCH_OUT_OF_RANGE, SIMULATION_CAP, SLOT_OUT_OF_RANGE};
pub use watermark::TALLY_OTHER_MARKET;

/// Reason code of a submission for an epoch the tick has already closed.
pub const LATE: &str = RejectReason::LATE;
/// Reason code of a submission id reused with another body.
pub const DUPLICATE_ID: &str = RejectReason::DUPLICATE_ID;

/// Accepted submissions of one slot per transaction unit (a unit is its claims, receipts and
/// one counter update: `2 × this + 1` operations, well under [`MAX_TX_OPS`]).
const UNIT_ACCEPTS: usize = 32;

/// Rounds of writing a batch again after cancellations before the undecided messages are
/// returned to the queue (every round decides at least one message, or met a conflict).
const MAX_ROUNDS: usize = 8;

/// Messages per thread below which signatures are recovered on the calling thread.
const PARALLEL_MIN: usize = 8;

/// Threads that recover a batch's signatures: `VERIFY_THREADS` if set (the benchmark's one-core
/// run sets 1), else every core the function has.
fn recovery_threads() -> usize {
    std::env::var("VERIFY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|t| t.get())
                .unwrap_or(1)
        })
}

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
    /// Counted, not stored (no receipt), for this reason ([`guard`]).
    Dropped(&'static str),
    /// An ingress boot's tally (the close watermark), stored unless a newer one was.
    Tally,
}

/// The Lambda handler: the whole batch as one unit of state work; only the messages that hit a
/// transient failure come back as `batchItemFailures`.
pub async fn handle(p: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    let bodies: Vec<&str> = event.records.iter().map(body).collect();
    // When SQS took each message (Lambda's `SentTimestamp`, Unix ms): the ingress sends a
    // submission as it arrives, so this is its arrival as far as the pipeline can tell.
    let sent: Vec<Option<i64>> = event
        .records
        .iter()
        .map(|m| {
            m.attributes
                .get("SentTimestamp")
                .and_then(|v| v.parse::<i64>().ok())
        })
        .collect();
    let ids: Vec<Option<String>> = event.records.iter().map(|m| m.message_id.clone()).collect();
    let results = count(
        p,
        Batch::new(p, &bodies)
            .sent_at(sent)
            .message_ids(ids)
            .run()
            .await,
    );
    let mut response = SqsBatchResponse::default();
    for (m, r) in event.records.iter().zip(results) {
        if let Err(e) = r {
            let id = m.message_id.clone().unwrap_or_default();
            tracing::warn!(stage = "verify", message_id = %id, error = %e, retryable = e.is_retryable(), "record failed; it will be redelivered");
            response.batch_item_failures.push(failure(id));
        }
    }
    response
}

/// Verifies one queue message body (the `/collect` bytes as received): a batch of one.
pub async fn verify_body(p: &Pipeline, body: &str) -> Result<Verdict, PipelineError> {
    verify_batch(p, &[body])
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            Err(PipelineError::Invariant(
                "a batch of one gave nothing".into(),
            ))
        })
}

/// Verifies a batch of queue message bodies: one result per body, in order.
pub async fn verify_batch(p: &Pipeline, bodies: &[&str]) -> Vec<Result<Verdict, PipelineError>> {
    count(p, Batch::new(p, bodies).run().await)
}

/// Counts each result on the metrics catalogue; returns them.
fn count(
    p: &Pipeline,
    results: Vec<Result<Verdict, PipelineError>>,
) -> Vec<Result<Verdict, PipelineError>> {
    for r in &results {
        match r {
            Ok(Verdict::Accepted) => p.metrics.inc(&m::VERIFY_ACCEPTED, []),
            Ok(Verdict::Simulation) => p.metrics.inc(&m::VERIFY_SIMULATIONS, []),
            Ok(Verdict::Rejected(r)) => p.metrics.inc(&m::VERIFY_REJECTED, [r.code()]),
            Ok(Verdict::Redelivered) => p.metrics.inc(&m::VERIFY_REDELIVERED, []),
            Ok(Verdict::DeadLettered(r)) => p.metrics.inc(&m::VERIFY_DEAD_LETTERED, [r]),
            Ok(Verdict::Dropped(r)) => p.metrics.inc(&m::VERIFY_DROPPED, [*r]),
            Ok(Verdict::Tally) => p.metrics.inc(&m::VERIFY_TALLIES, []),
            Err(_) => p.metrics.inc(&m::VERIFY_RETRIED, []),
        }
    }
    results
}

/// One parsed message.
struct Msg {
    collect: CollectMessage,
    id: String,
    digest: String,
    epoch: u64,
    slot: u64,
    project: String,
}

/// Where a message is.
enum Plan {
    /// Not decided yet (being read).
    Open,
    /// To be accepted: the claim, the receipt and (unless `exempt`) the slot's counter.
    Accept {
        rec: SubmissionRecord,
        exempt: bool,
        over_pending: bool,
    },
    /// Its receipt is to be written alone; then it is `verdict`.
    Record(Outcome, Verdict),
    /// Decided.
    Done(Result<Verdict, PipelineError>),
    /// The same submission id as an earlier message of the batch.
    Twin(usize),
    /// The same (project, slot) as an earlier message of the batch (another id): `duplicate`
    /// once that one is accepted; `late` if it was found late; otherwise judged the same way.
    After(usize),
}

/// Whose a write of a transaction is.
#[derive(Debug, Clone, Copy)]
enum Role {
    Epoch(u64),
    Claim(usize),
    Receipt(usize),
    Count(u64, u64),
}

struct Batch<'a> {
    p: &'a Pipeline,
    bodies: &'a [&'a str],
    msgs: Vec<Option<Msg>>,
    plans: Vec<Plan>,
    /// What the store last said each (epoch, slot)'s counted set holds.
    members: HashMap<(u64, u64), BTreeSet<String>>,
    /// Messages whose stored receipt (a redelivery's) says `late`.
    found_late: BTreeSet<usize>,
    /// The last round of this invocation: "not yet" answers are final (or go back to the queue)
    /// instead of waiting for the next round.
    final_round: bool,
    /// Messages judged again in a later round of this invocation: a receipt they find with
    /// their own body is their own earlier round's write (its answer was lost), so it is
    /// reported as what it says, not as a redelivery.
    again: BTreeSet<usize>,
    /// When the queue took each message (Unix ms), where known.
    sent_ms: Vec<Option<i64>>,
    /// Messages rejected `late` although they arrived before the close: the pipeline, not the
    /// sender, was late (counted `verify_late_after_arrival_total`).
    delayed: BTreeSet<usize>,
    /// The expiry of each recorded epoch of the batch: what its new records carry.
    expiries: BTreeMap<u64, Expiry>,
    /// Ingress tallies of the batch (message index, tally).
    tallies: Vec<(usize, Tally)>,
    /// Each message's queue message id, where known (what its decided mark is made of).
    message_ids: Vec<Option<String>>,
    /// Messages whose header the node did not serve (while its head was inside the window) in
    /// some round of this invocation.
    unserved_header: BTreeSet<usize>,
}

fn port_err(e: &PipelineError) -> PipelineError {
    match e {
        PipelineError::Port(e) => PipelineError::Port(e.clone()),
        PipelineError::Corrupt(s) => PipelineError::Corrupt(s.clone()),
        PipelineError::Invariant(s) => PipelineError::Invariant(s.clone()),
        PipelineError::NotReady(s) => PipelineError::NotReady(s.clone()),
    }
}

impl<'a> Batch<'a> {
    fn new(p: &'a Pipeline, bodies: &'a [&'a str]) -> Self {
        Self {
            p,
            bodies,
            msgs: Vec::with_capacity(bodies.len()),
            plans: Vec::with_capacity(bodies.len()),
            members: HashMap::new(),
            found_late: BTreeSet::new(),
            final_round: false,
            again: BTreeSet::new(),
            sent_ms: Vec::new(),
            delayed: BTreeSet::new(),
            expiries: BTreeMap::new(),
            tallies: Vec::new(),
            message_ids: Vec::new(),
            unserved_header: BTreeSet::new(),
        }
    }

    fn message_ids(mut self, ids: Vec<Option<String>>) -> Self {
        self.message_ids = ids;
        self
    }

    fn sent_at(mut self, sent: Vec<Option<i64>>) -> Self {
        self.sent_ms = sent;
        self
    }

    /// Message `i` is `late`: the epoch was closed (at `closed_at_ms` when known) before it
    /// could be accepted. `open_when_read`: it was open when this invocation read it, so the
    /// message certainly arrived before the close.
    fn late(&mut self, i: usize, epoch: u64, closed_at_ms: Option<i64>, open_when_read: bool) {
        let sent = self.sent_ms.get(i).copied().flatten();
        let before_close =
            open_when_read || matches!((sent, closed_at_ms), (Some(s), Some(c)) if s < c);
        let detail = if before_close {
            self.delayed.insert(i);
            match sent {
                Some(s) => format!(
                    "epoch {epoch} was closed for finalization before this submission, which arrived at {s} ms (before the close), was verified"
                ),
                None => format!(
                    "epoch {epoch} was closed for finalization before this submission, which arrived before the close, was verified"
                ),
            }
        } else {
            format!("epoch {epoch} was already closed for finalization")
        };
        self.reject(i, RejectReason::Late, detail);
    }

    fn receipt_of(&self, i: usize, outcome: Outcome) -> Option<Receipt> {
        let m = self.msgs[i].as_ref()?;
        Some(Receipt {
            outcome,
            digest: m.digest.clone(),
            project: m.project.clone(),
            slot: m.slot,
            at_ms: self.p.now_ms(),
        })
    }

    fn reject(&mut self, i: usize, reason: RejectReason, detail: String) {
        self.plans[i] = Plan::Record(
            Outcome::Rejected {
                reason: reason.clone(),
                detail: Some(detail),
            },
            Verdict::Rejected(reason),
        );
    }

    fn rule(&mut self, i: usize, e: Rejection) {
        self.reject(i, RejectReason::from(&e), e.to_string());
    }

    async fn run(mut self) -> Vec<Result<Verdict, PipelineError>> {
        self.parse().await;
        self.save_tallies().await;
        self.screen().await;
        let recovered = self.recover();
        // Rounds: what comes back "not yet" (a release or a header block the node has not
        // served yet, a write conflict, a transient port error) is judged again after a pause
        // that doubles, within `verify_not_yet_wait`; only what is still undecided then goes
        // back to the queue, whose redelivery comes after the visibility timeout (minutes).
        let budget =
            i64::try_from(self.p.config.verify_not_yet_wait.as_millis()).unwrap_or(i64::MAX);
        // The pauses planned so far (not the clock: the rounds are the same however long each
        // judgement took).
        let mut waited: i64 = 0;
        let mut pause_ms: i64 = 1_000;
        let mut input = recovered.clone();
        loop {
            self.final_round = waited.saturating_add(pause_ms) > budget;
            self.judge(input).await;
            self.write().await;
            let again: Vec<usize> = (0..self.plans.len())
                .filter(|i| matches!(&self.plans[*i], Plan::Done(Err(e)) if e.is_retryable()))
                .collect();
            if again.is_empty() || self.final_round {
                break;
            }
            self.p.metrics.inc(&m::VERIFY_NOT_YET_ROUNDS, []);
            self.p
                .clock
                .sleep(std::time::Duration::from_millis(
                    u64::try_from(pause_ms).unwrap_or(0),
                ))
                .await;
            waited = waited.saturating_add(pause_ms);
            pause_ms = pause_ms.saturating_mul(2);
            input = vec![None; self.plans.len()];
            for i in again {
                self.plans[i] = Plan::Open;
                input[i] = recovered[i].clone();
                self.again.insert(i);
            }
        }
        for &i in &self.delayed {
            if matches!(
                self.plans.get(i),
                Some(Plan::Done(Ok(Verdict::Rejected(RejectReason::Late))))
            ) {
                tracing::warn!(
                    submission_id = self.msgs[i].as_ref().map_or("", |m| m.id.as_str()),
                    "rejected late although it arrived before the close"
                );
                self.p.metrics.inc(&m::VERIFY_LATE_AFTER_ARRIVAL, []);
            }
        }
        let mut out: Vec<Result<Verdict, PipelineError>> = Vec::with_capacity(self.plans.len());
        for i in 0..self.plans.len() {
            let r = match std::mem::replace(&mut self.plans[i], Plan::Open) {
                Plan::Done(r) => r,
                Plan::Twin(first) => match &out[first] {
                    Ok(_) => {
                        let same = self.msgs[first].as_ref().map(|m| &m.digest)
                            == self.msgs[i].as_ref().map(|m| &m.digest);
                        Ok(if same {
                            Verdict::Redelivered
                        } else {
                            Verdict::Rejected(RejectReason::DuplicateSubmissionId)
                        })
                    }
                    Err(_) => Err(PipelineError::NotReady(
                        "an earlier message of the batch with this submission id comes back".into(),
                    )),
                },
                _ => Err(PipelineError::Invariant(
                    "verify left a message undecided".into(),
                )),
            };
            out.push(r);
        }
        self.mark_decided(&mut out).await;
        out
    }

    /// Parses every body; dead-letters what is not a `/collect` message; marks a repeated
    /// submission id (same epoch) as the twin of its first message.
    async fn parse(&mut self) {
        let mut dead = Vec::new();
        let mut first: HashMap<(u64, String), usize> = HashMap::new();
        for (i, body) in self.bodies.iter().enumerate() {
            // An ingress tally (a JSON object; a /collect body starts with a UUID).
            if Tally::looks_like(body.as_bytes()) {
                match Tally::parse(body.as_bytes()) {
                    Ok(t) => {
                        self.tallies.push((i, t));
                        self.msgs.push(None);
                        self.plans.push(Plan::Done(Ok(Verdict::Tally)));
                    }
                    Err(e) => {
                        let reason = "malformed:tally".to_string();
                        tracing::warn!(%reason, error = %e, "not a tally; dead-lettered");
                        dead.push((
                            i,
                            OutMessage::new(*body)
                                .attr("dead_letter_reason", format!("{reason}: {e}")),
                        ));
                        self.msgs.push(None);
                        self.plans
                            .push(Plan::Done(Ok(Verdict::DeadLettered(reason))));
                    }
                }
                continue;
            }
            match CollectMessage::parse(body.as_bytes()) {
                Ok(collect) => {
                    let r = &collect.submission.request;
                    let m = Msg {
                        id: collect.submission_id.to_string(),
                        digest: hex::encode(Sha256::digest(body.as_bytes())),
                        epoch: r.epoch_id,
                        slot: r.slot_id,
                        project: r.project_id.clone(),
                        collect,
                    };
                    let plan = match first.get(&(m.epoch, m.id.clone())) {
                        Some(&f) => Plan::Twin(f),
                        None => {
                            first.insert((m.epoch, m.id.clone()), i);
                            Plan::Open
                        }
                    };
                    self.msgs.push(Some(m));
                    self.plans.push(plan);
                }
                Err(e) => {
                    let reason = format!("malformed:{}", e.reason());
                    tracing::warn!(%reason, "not a /collect message; dead-lettered");
                    dead.push((
                        i,
                        OutMessage::new(*body).attr("dead_letter_reason", format!("{reason}: {e}")),
                    ));
                    self.msgs.push(None);
                    self.plans
                        .push(Plan::Done(Ok(Verdict::DeadLettered(reason))));
                }
            }
        }
        if dead.is_empty() {
            return;
        }
        let out: Vec<OutMessage> = dead.iter().map(|(_, m)| m.clone()).collect();
        if let Err(e) = self.p.ports.submissions_dlq.send(&out).await {
            for (i, _) in &dead {
                self.plans[*i] = Plan::Done(Err(PipelineError::Port(e.clone())));
            }
        }
    }

    /// Stateless rules and signer recovery of every open message, on every core.
    fn recover(&self) -> Vec<Option<Result<Address, Rejection>>> {
        let (verifier, market) = (&self.p.verifier, &self.p.config.market);
        let check = |i: usize| -> Option<Result<Address, Rejection>> {
            match (&self.plans[i], &self.msgs[i]) {
                (Plan::Open, Some(m)) => Some(
                    rules::check_stateless(verifier, &m.collect.submission, market)
                        .map(|r| r.signer),
                ),
                _ => None,
            }
        };
        let n = self.plans.len();
        let threads = recovery_threads().min(n / PARALLEL_MIN).max(1);
        if threads == 1 {
            return (0..n).map(check).collect();
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = (0..threads)
                .map(|t| {
                    let check = &check;
                    s.spawn(move || {
                        (t * per..((t + 1) * per).min(n))
                            .map(check)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|_| vec![None; per]).into_iter())
                .take(n)
                .collect()
        })
    }

    /// Reads the batch's state in one batched read, asks the chain what the store does not
    /// know (once per distinct slot, signer, epoch and header) and plans every open message.
    async fn judge(&mut self, recovered: Vec<Option<Result<Address, Rejection>>>) {
        let p = self.p;
        let cfg = &p.config;
        let records = p.records();
        // Signer per open message; stateless rejections are decided here.
        let mut signer: BTreeMap<usize, Address> = BTreeMap::new();
        for (i, r) in recovered.into_iter().enumerate() {
            match r {
                Some(Ok(s)) => {
                    signer.insert(i, s);
                }
                Some(Err(e)) => self.rule(i, e),
                None => {}
            }
        }

        // One batched read: the receipt of every message still undecided or rejected by a
        // stateless rule (a redelivery must find its receipt), and for the rest their epoch,
        // claim, counter and header block.
        let mut wants: Vec<Want> = Vec::new();
        let mut at: HashMap<usize, [Option<usize>; 4]> = HashMap::new();
        let mut epoch_at: BTreeMap<u64, usize> = BTreeMap::new();
        let mut block_at: BTreeMap<B256, usize> = BTreeMap::new();
        for i in 0..self.plans.len() {
            let Some(m) = &self.msgs[i] else { continue };
            if !matches!(self.plans[i], Plan::Open | Plan::Record(..)) {
                continue;
            }
            let mut slots = [None; 4];
            slots[0] = Some(wants.len());
            wants.push(Want::Receipt {
                epoch: m.epoch,
                id: m.id.clone(),
            });
            if signer.contains_key(&i) {
                slots[1] = Some(wants.len());
                wants.push(Want::Claim {
                    epoch: m.epoch,
                    project: m.project.clone(),
                    slot: m.slot,
                });
                slots[2] = Some(wants.len());
                wants.push(Want::Counter {
                    epoch: m.epoch,
                    slot: m.slot,
                });
                epoch_at.entry(m.epoch).or_insert_with(|| {
                    wants.push(Want::Epoch(m.epoch));
                    wants.len() - 1
                });
                if let Some(h) = m.collect.submission.header_hash() {
                    let h = B256::from(h);
                    block_at.entry(h).or_insert_with(|| {
                        wants.push(Want::Block(h));
                        wants.len() - 1
                    });
                }
            }
            at.insert(i, slots);
        }
        if wants.is_empty() {
            return;
        }
        let found = match records.read_intake(&wants).await {
            Ok(f) => f,
            Err(e) => {
                for i in at.keys() {
                    self.plans[*i] = Plan::Done(Err(port_err(&e)));
                }
                return;
            }
        };

        // Receipts first: a redelivery or a reused id is decided before anything else.
        let mut order: Vec<usize> = at.keys().copied().collect();
        order.sort_unstable();
        let mut live = Vec::new();
        for &i in &order {
            let Some(ri) = at[&i][0] else { continue };
            match &found[ri] {
                Err(e) => self.plans[i] = Plan::Done(Err(port_err(e))),
                Ok(Found::Receipt(Some(r))) => self.plans[i] = self.seen(i, r),
                Ok(_) => {
                    if signer.contains_key(&i) {
                        live.push(i);
                    }
                }
            }
        }
        // A claim this id already holds, accepted, is finished whatever the epoch is now (a
        // crash of an earlier version between the claim and its receipt); no `late` over it.
        let mut claims: HashMap<usize, Option<(SubmissionState, SubmissionRecord)>> =
            HashMap::new();
        let mut members: HashMap<(u64, u64), BTreeSet<String>> = HashMap::new();
        let mut still = Vec::new();
        for i in live {
            let slots = at[&i];
            let (Some(ci), Some(ki)) = (slots[1], slots[2]) else {
                continue;
            };
            let claim = match &found[ci] {
                Ok(Found::Claim(c)) => c.clone(),
                Err(e) => {
                    self.plans[i] = Plan::Done(Err(port_err(e)));
                    continue;
                }
                Ok(_) => None,
            };
            let Some(m) = &self.msgs[i] else { continue };
            if let Ok(Found::Counter(c)) = &found[ki] {
                members
                    .entry((m.epoch, m.slot))
                    .or_insert_with(|| c.iter().cloned().collect());
            }
            if let Some((SubmissionState::Accepted, held)) = &claim {
                if held.submission_id == m.id {
                    self.plans[i] = Plan::Record(Outcome::Accepted, Verdict::Accepted);
                    continue;
                }
            }
            claims.insert(i, claim);
            still.push(i);
        }

        // An epoch past the retention: `expired_epoch` at once, no chain call, no write.
        let ages = retention::epoch_ages(&records, &epoch_at, &found).await;
        self.expiries = ages.expiries;
        still.retain(|&i| match &self.msgs[i] {
            Some(m) if ages.expired.contains(&m.epoch) => {
                self.plans[i] = Plan::Done(Ok(Verdict::Rejected(RejectReason::ExpiredEpoch)));
                false
            }
            _ => true,
        });

        // The chain: owners once per distinct slot, flags once per distinct owner.
        let slots: BTreeSet<u64> = still
            .iter()
            .filter_map(|i| self.msgs[*i].as_ref().map(|m| m.slot))
            .collect();
        let owners: BTreeMap<u64, Result<Address, PortError>> = futures::future::join_all(
            slots
                .iter()
                .map(|s| async move { (*s, p.ports.chain.slot_owner(*s).await) }),
        )
        .await
        .into_iter()
        .collect();
        // A signer that is not the (cached) owner: asked again when the answer is older than
        // `STRANGER_RECHECK` (a slot just given to a new snapshotter), before it is refused.
        let recheck: BTreeSet<u64> = still
            .iter()
            .filter_map(|i| {
                let m = self.msgs[*i].as_ref()?;
                let o = owners.get(&m.slot)?.as_ref().ok()?;
                (Some(o) != signer.get(i)).then_some(m.slot)
            })
            .collect();
        let mut owners = owners;
        for (s, o) in futures::future::join_all(recheck.iter().map(|s| async move {
            (
                *s,
                p.ports
                    .chain
                    .slot_owner_fresh(*s, crate::chain_cache::STRANGER_RECHECK)
                    .await,
            )
        }))
        .await
        {
            owners.insert(s, o);
        }
        self.drop_strangers(&mut still, &owners, &signer);
        let want_flags: BTreeSet<Address> = still
            .iter()
            .filter_map(|i| {
                let m = self.msgs[*i].as_ref()?;
                let o = owners.get(&m.slot)?.as_ref().ok()?;
                (Some(o) == signer.get(i)).then_some(*o)
            })
            .collect();
        let flags: BTreeMap<Address, Result<bool, PortError>> = futures::future::join_all(
            want_flags
                .iter()
                .map(|a| async move { (*a, p.ports.chain.is_flagged(cfg.market, *a).await) }),
        )
        .await
        .into_iter()
        .collect();

        // Epochs the tick has not recorded yet: released on chain, recorded here as the tick
        // records them (same release block, same window), so a submission is judged when it
        // arrives rather than after a redelivery. Not released (yet): "not yet" until the last
        // round, then `epoch_not_released`.
        let mut epochs: BTreeMap<u64, Result<Option<EpochEntry>, PipelineError>> = BTreeMap::new();
        for (e, ix) in epoch_at.iter().filter(|(e, _)| !ages.expired.contains(e)) {
            // Only epochs a message still being judged names (a simulation's 0 has none).
            if *e == 0
                || !still
                    .iter()
                    .any(|i| self.msgs[*i].as_ref().is_some_and(|m| m.epoch == *e))
            {
                continue;
            }
            let r = match &found[*ix] {
                Ok(Found::Epoch(Some(entry))) => Ok(Some(entry.clone())),
                Ok(_) => match self.open_from_chain(*e).await {
                    Ok(None) if !self.final_round => Err(PipelineError::NotReady(format!(
                        "epoch {e} is not released on the node we read yet"
                    ))),
                    other => other,
                },
                Err(err) => Err(port_err(err)),
            };
            epochs.insert(*e, r);
        }
        let mut head: Option<Result<u64, PipelineError>> = None;

        let mut new_blocks: Vec<(B256, u64)> = Vec::new();
        let mut blocks: BTreeMap<B256, Result<Option<u64>, PipelineError>> = BTreeMap::new();
        let mut claimed: BTreeMap<(u64, String, u64), usize> = BTreeMap::new();
        for i in still {
            let Some(m) = &self.msgs[i] else { continue };
            let Some(&sig) = signer.get(&i) else { continue };
            let (epoch, slot) = (m.epoch, m.slot);
            let owner = match owners.get(&slot) {
                Some(Ok(o)) => *o,
                Some(Err(e)) => {
                    self.plans[i] = Plan::Done(Err(PipelineError::Port(e.clone())));
                    continue;
                }
                None => continue,
            };
            let flagged = if owner == sig {
                match flags.get(&sig) {
                    Some(Ok(f)) => *f,
                    Some(Err(e)) => {
                        self.plans[i] = Plan::Done(Err(PipelineError::Port(e.clone())));
                        continue;
                    }
                    None => false,
                }
            } else {
                false
            };
            if let Err(e) = rules::check_signer(slot, sig, Some(owner), flagged) {
                self.rule(i, e);
                continue;
            }
            let Some(m) = &self.msgs[i] else { continue };
            if let rules::Kind::Simulation = rules::kind(&m.collect.submission) {
                self.plans[i] = Plan::Record(Outcome::Simulation, Verdict::Simulation);
                continue;
            }
            let (window, open, closed_at) = match epochs.get(&epoch) {
                Some(Ok(Some(e))) => (
                    Some(EpochWindow {
                        release_block: e.record.release_block,
                        window_blocks: e.record.window_end.saturating_sub(e.record.release_block),
                    }),
                    e.state == EpochState::Open,
                    e.record.closed_at_ms,
                ),
                Some(Ok(None)) => (None, true, None),
                Some(Err(e)) => {
                    self.plans[i] = Plan::Done(Err(port_err(e)));
                    continue;
                }
                None => continue,
            };
            if !open {
                self.late(i, epoch, closed_at, false);
                continue;
            }
            let header_block = match m.collect.submission.header_hash().map(B256::from) {
                None => None,
                Some(h) => {
                    let known = match block_at.get(&h).map(|ix| &found[*ix]) {
                        Some(Ok(Found::Block(Some(n)))) => Some(*n),
                        _ => None,
                    };
                    match known {
                        Some(n) => Some(n),
                        None => {
                            if let std::collections::btree_map::Entry::Vacant(v) = blocks.entry(h) {
                                let r = p
                                    .ports
                                    .chain
                                    .block_number(h)
                                    .await
                                    .map_err(PipelineError::Port);
                                if let Ok(Some(n)) = r {
                                    new_blocks.push((h, n));
                                }
                                v.insert(r);
                            }
                            match &blocks[&h] {
                                Ok(Some(n)) => Some(*n),
                                Ok(None) => {
                                    // A block the node has not served yet while the window
                                    // may still be open by the node's head: "not yet" (and,
                                    // after the last round, back to the queue); once the head
                                    // is past the window the header is unknown for good.
                                    let window_end = window.map(|w| w.end());
                                    if window_end.is_some() && head.is_none() {
                                        head = Some(
                                            p.ports.chain.head().await.map_err(PipelineError::Port),
                                        );
                                    }
                                    match (window_end, &head) {
                                        // Not released: judged as such below.
                                        (None, _) | (_, None) => None,
                                        (Some(end), Some(Ok(h))) if *h > end => None,
                                        (Some(end), Some(Ok(h))) => {
                                            self.unserved_header.insert(i);
                                            self.plans[i] = Plan::Done(Err(PipelineError::NotReady(format!(
                                                "header block not served by the node yet (head {h}, window ends at {end})"
                                            ))));
                                            continue;
                                        }
                                        (Some(_), Some(Err(e))) => {
                                            self.plans[i] = Plan::Done(Err(port_err(e)));
                                            continue;
                                        }
                                    }
                                }
                                Err(e) => {
                                    self.plans[i] = Plan::Done(Err(port_err(e)));
                                    continue;
                                }
                            }
                        }
                    }
                }
            };
            if let Err(e) = rules::check_window(epoch, header_block, window) {
                self.rule(i, e);
                continue;
            }
            let Some(m) = &self.msgs[i] else { continue };
            // First wins per (project, slot): held by another id, or by an earlier message of
            // this batch.
            let over_pending = match claims.get(&i) {
                Some(Some((SubmissionState::Pending, held))) if held.submission_id == m.id => true,
                Some(Some(_)) => {
                    self.rule(i, Rejection::Duplicate);
                    continue;
                }
                _ => false,
            };
            if let Some(&first) = claimed.get(&(epoch, m.project.clone(), slot)) {
                self.plans[i] = Plan::After(first);
                continue;
            }
            claimed.insert((epoch, m.project.clone(), slot), i);
            let text = String::from_utf8_lossy(&m.collect.raw[sequencer_core::collect::UUID_LEN..])
                .into_owned();
            self.plans[i] = Plan::Accept {
                rec: SubmissionRecord {
                    submission_id: m.id.clone(),
                    text,
                    signer: sig,
                    header_block: header_block.unwrap_or_default(),
                    verified_at_ms: self.p.now_ms(),
                },
                exempt: cfg.full_nodes.contains(&sig),
                over_pending,
            };
        }
        self.members = members;
        if !new_blocks.is_empty() {
            // A cache of the chain: failing to record it costs a chain call later, nothing else.
            if let Err(e) = records.record_blocks(&new_blocks).await {
                tracing::warn!(error = %e, "could not record block hashes");
            }
        }
    }
}

impl Batch<'_> {
    /// Epoch `e` as the chain has it when the tick has not recorded it: `None` when it is not
    /// released (on the node we read); else recorded `OPEN` with the release block and window
    /// the tick would record (the tick finds it recorded and closes it when due), and what the
    /// store holds then.
    async fn open_from_chain(&self, e: u64) -> Result<Option<EpochEntry>, PipelineError> {
        let p = self.p;
        let a = p.ports.chain.anchored(p.config.market, e).await?;
        let Some(release_block) = a.release_block else {
            return Ok(None);
        };
        let snapshot = crate::tick::release_window(p, e, &mut None).await?;
        let rec = EpochRecord {
            epoch: e,
            begin: a.begin,
            end: a.end,
            release_block,
            window_end: release_block.saturating_add(snapshot),
            seen_at_ms: p.now_ms(),
            ..EpochRecord::default()
        };
        // Only an epoch the tick will still close: not one that was finalized already (its
        // record expired), nor one whose window the chain has passed by the grace (the tick
        // would close it at once; recording it now could leave it open behind the tick's
        // cursor for ever). Those are closed: `late`.
        let head = p.ports.chain.head().await?;
        let due = rec.window_end.saturating_add(p.config.close_grace_blocks);
        if a.ended || !a.batches.is_empty() || head > due {
            return Ok(Some(EpochEntry {
                state: EpochState::Closed,
                record: rec,
            }));
        }
        let records = p.records();
        if records.open_epoch(&rec).await? {
            tracing::info!(
                epoch = e,
                release_block,
                window_end = rec.window_end,
                "epoch recorded by verify ahead of the tick"
            );
            p.metrics.inc(&m::VERIFY_EPOCHS_OPENED, []);
        }
        records.epoch(e).await
    }
}

/// One transaction being packed: the epochs it must check open, and its writes with their roles.
type Chunk = (BTreeSet<u64>, Vec<(Write, Role)>);

/// A group of writes that stand or fall together (one message's, or one slot's acceptances
/// with their counter update), and the epoch that must still be open for them.
struct Unit {
    epoch: Option<u64>,
    writes: Vec<(Write, Role)>,
}

impl Batch<'_> {
    /// What a receipt found for message `i` means: the same body again, or a reused id.
    fn seen(&mut self, i: usize, r: &Receipt) -> Plan {
        if matches!(r.outcome.reason(), Some(RejectReason::Late)) {
            self.found_late.insert(i);
        }
        match &self.msgs[i] {
            Some(m) if m.digest == r.digest && self.again.contains(&i) => {
                Plan::Done(Ok(match &r.outcome {
                    Outcome::Accepted => Verdict::Accepted,
                    Outcome::Simulation => Verdict::Simulation,
                    Outcome::Rejected { reason, .. } => Verdict::Rejected(reason.clone()),
                }))
            }
            Some(m) if m.digest == r.digest => Plan::Done(Ok(Verdict::Redelivered)),
            m => {
                tracing::warn!(
                    submission_id = m.as_ref().map(|m| m.id.as_str()).unwrap_or(""),
                    "submission id reused with another body"
                );
                Plan::Done(Ok(Verdict::Rejected(RejectReason::DuplicateSubmissionId)))
            }
        }
    }

    /// The writes still to do, as units: the per-slot cap applied in message order to what the
    /// store last said the slot's set holds; acceptances of an epoch found closed become `late`.
    fn units(&mut self, closed: &BTreeSet<u64>) -> Vec<Unit> {
        // Messages behind an earlier one of the batch for the same (project, slot), once it is
        // decided.
        for i in 0..self.plans.len() {
            let Plan::After(f) = self.plans[i] else {
                continue;
            };
            let late = |o: &Outcome| matches!(o.reason(), Some(RejectReason::Late));
            match &self.plans[f] {
                Plan::Done(Ok(Verdict::Rejected(RejectReason::Late))) => self.reject(
                    i,
                    RejectReason::Late,
                    "the epoch was closed for finalization before it was accepted".into(),
                ),
                Plan::Record(o, _) if late(o) => {}
                Plan::Done(Ok(_)) => self.rule(i, Rejection::Duplicate),
                Plan::Done(Err(_)) => {
                    self.plans[i] = Plan::Done(Err(PipelineError::NotReady(
                        "an earlier message of the batch for this (project, slot) comes back"
                            .into(),
                    )))
                }
                _ => {}
            }
        }
        let cfg = &self.p.config;
        let cap = u64::from(cfg.max_per_slot);
        let mut by_slot: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
        for i in 0..self.plans.len() {
            let (Plan::Accept { .. }, Some(m)) = (&self.plans[i], &self.msgs[i]) else {
                continue;
            };
            if closed.contains(&m.epoch) {
                let epoch = m.epoch;
                self.late(i, epoch, None, true);
            } else {
                by_slot.entry((m.epoch, m.slot)).or_default().push(i);
            }
        }
        let mut units = Vec::new();
        for ((epoch, slot), ix) in by_slot {
            let empty = BTreeSet::new();
            let set = self.members.get(&(epoch, slot)).unwrap_or(&empty).clone();
            let mut fresh = 0u64;
            let mut ok = Vec::new();
            for i in ix {
                let (Plan::Accept { exempt, .. }, Some(m)) = (&self.plans[i], &self.msgs[i]) else {
                    continue;
                };
                if *exempt || set.contains(&m.id) {
                    ok.push(i);
                } else if (set.len() as u64).saturating_add(fresh) < cap {
                    fresh += 1;
                    ok.push(i);
                } else {
                    self.rule(
                        i,
                        Rejection::SlotEpochCap {
                            cap: cfg.max_per_slot,
                        },
                    );
                }
            }
            for part in ok.chunks(UNIT_ACCEPTS) {
                let mut writes = Vec::new();
                let mut ids = Vec::new();
                for &i in part {
                    let (
                        Plan::Accept {
                            rec,
                            exempt,
                            over_pending,
                        },
                        Some(m),
                    ) = (&self.plans[i], &self.msgs[i])
                    else {
                        continue;
                    };
                    if !*exempt && !set.contains(&m.id) {
                        ids.push(m.id.clone());
                    }
                    writes.push((
                        Write::Claim {
                            epoch,
                            project: m.project.clone(),
                            slot,
                            rec: rec.clone(),
                            over_pending: *over_pending,
                        },
                        Role::Claim(i),
                    ));
                    if let Some(receipt) = self.receipt_of(i, Outcome::Accepted) {
                        writes.push((
                            Write::Receipt {
                                epoch,
                                id: m.id.clone(),
                                receipt,
                            },
                            Role::Receipt(i),
                        ));
                    }
                }
                if !ids.is_empty() {
                    let n = ids.len() as u64;
                    writes.push((
                        Write::Count {
                            epoch,
                            slot,
                            ids,
                            max_before: cap.saturating_sub(n),
                        },
                        Role::Count(epoch, slot),
                    ));
                }
                units.push(Unit {
                    epoch: Some(epoch),
                    writes,
                });
            }
        }
        units.extend(self.simulation_units());
        for i in 0..self.plans.len() {
            let (Plan::Record(outcome, _), Some(m)) = (&self.plans[i], &self.msgs[i]) else {
                continue;
            };
            if *outcome == Outcome::Simulation {
                continue;
            }
            if let Some(receipt) = self.receipt_of(i, outcome.clone()) {
                units.push(Unit {
                    epoch: None,
                    writes: vec![(
                        Write::Receipt {
                            epoch: m.epoch,
                            id: m.id.clone(),
                            receipt,
                        },
                        Role::Receipt(i),
                    )],
                });
            }
        }
        units
    }

    /// Writes every planned message in transactions of at most [`MAX_TX_OPS`] operations;
    /// after a cancellation decides the messages it concerns again and writes the rest again.
    async fn write(&mut self) {
        let records = self.p.records();
        let mut closed: BTreeSet<u64> = BTreeSet::new();
        let mut conflicted = false;
        for round in 1..=MAX_ROUNDS {
            let units = self.units(&closed);
            if units.is_empty() {
                return;
            }
            if std::mem::take(&mut conflicted) {
                // A short pause before writing again (a conflict clears in milliseconds).
                self.p
                    .clock
                    .sleep(std::time::Duration::from_millis(5 * round as u64))
                    .await;
            }
            // Pack the units into transactions, each with the checks of its epochs first.
            let mut chunks: Vec<Chunk> = Vec::new();
            for u in units {
                let need = u.writes.len() + usize::from(u.epoch.is_some());
                let fits = chunks.last().is_some_and(|(epochs, w)| {
                    let extra = u.epoch.is_some_and(|e| !epochs.contains(&e));
                    epochs.len() + w.len() + u.writes.len() + usize::from(extra) <= MAX_TX_OPS
                });
                if !fits || need > MAX_TX_OPS {
                    chunks.push((BTreeSet::new(), Vec::new()));
                }
                if let Some((epochs, w)) = chunks.last_mut() {
                    if let Some(e) = u.epoch {
                        epochs.insert(e);
                    }
                    w.extend(u.writes);
                }
            }
            // Every transaction of the round in one store call (each all or nothing on its
            // own; the embedded store makes them durable in one commit).
            let txs: Vec<Vec<(Write, Role)>> = chunks
                .into_iter()
                .map(|(epochs, body)| {
                    let mut all: Vec<(Write, Role)> = epochs
                        .iter()
                        .map(|e| (Write::EpochOpen(*e), Role::Epoch(*e)))
                        .collect();
                    all.extend(body);
                    all
                })
                .collect();
            let writes: Vec<Vec<Write>> = txs
                .iter()
                .map(|all| all.iter().map(|(w, _)| w.clone()).collect())
                .collect();
            let results = records.write_intake_each(&writes, &self.expiries).await;
            for (all, result) in txs.iter().zip(results) {
                match result {
                    Ok(None) => {
                        for (_, role) in all {
                            if let Role::Receipt(i) = role {
                                self.plans[*i] =
                                    match std::mem::replace(&mut self.plans[*i], Plan::Open) {
                                        Plan::Accept { .. } => Plan::Done(Ok(Verdict::Accepted)),
                                        Plan::Record(_, v) => Plan::Done(Ok(v)),
                                        other => other,
                                    };
                            }
                        }
                    }
                    Ok(Some(statuses)) => {
                        for ((_, role), status) in all.iter().zip(statuses) {
                            let found = match status {
                                WriteStatus::Failed(found) => found,
                                WriteStatus::Conflict => {
                                    conflicted = true;
                                    continue;
                                }
                                WriteStatus::Held => continue,
                            };
                            self.cancelled(*role, *found, &mut closed);
                        }
                    }
                    Err(e) => {
                        for (_, role) in all {
                            if let Role::Receipt(i) = role {
                                self.plans[*i] = Plan::Done(Err(port_err(&e)));
                            }
                        }
                    }
                }
            }
        }
        for p in &mut self.plans {
            if matches!(p, Plan::Accept { .. } | Plan::Record(..) | Plan::After(_)) {
                *p = Plan::Done(Err(PipelineError::NotReady(
                    "the state store kept cancelling this batch's writes".into(),
                )));
            }
        }
    }

    /// A write's condition failed: what the store found decides the message again.
    fn cancelled(&mut self, role: Role, found: Found, closed: &mut BTreeSet<u64>) {
        match (role, found) {
            (Role::Epoch(e), _) => {
                closed.insert(e);
            }
            (Role::Count(e, s), Found::Counter(m)) => {
                self.members.insert((e, s), m.into_iter().collect());
            }
            (Role::Receipt(i), Found::Receipt(Some(r))) => {
                self.plans[i] = self.seen(i, &r);
            }
            (Role::Claim(i), Found::Claim(held)) => {
                let Some(id) = self.msgs[i].as_ref().map(|m| m.id.clone()) else {
                    return;
                };
                match held {
                    Some((SubmissionState::Accepted, h)) if h.submission_id == id => {
                        self.plans[i] = Plan::Record(Outcome::Accepted, Verdict::Accepted);
                    }
                    Some((SubmissionState::Pending, h)) if h.submission_id == id => {
                        if let Plan::Accept { over_pending, .. } = &mut self.plans[i] {
                            *over_pending = true;
                        }
                    }
                    Some(_) => {
                        if matches!(self.plans[i], Plan::Accept { .. }) {
                            self.rule(i, Rejection::Duplicate);
                        }
                    }
                    None => {
                        if let Plan::Accept { over_pending, .. } = &mut self.plans[i] {
                            *over_pending = false;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
