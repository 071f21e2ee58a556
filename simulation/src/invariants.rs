//! What must hold after every run, checked against the chain, the content store, the state store
//! and the ledger. Each violation names its invariant, the epoch and submission (or batch), what
//! is wrong in one line, and why: the receipt, the invocations that handled it and what they
//! logged, the epoch's state, the writes that touched it.
//!
//! | invariant | holds when |
//! | --- | --- |
//! | `on_time_not_batched` | every on-time valid honest submission is in exactly one anchored batch of its epoch |
//! | `honest_late` | no on-time honest submission is rejected `late` |
//! | `honest_not_yet_final` | no on-time honest submission is rejected for a "not yet" (`unknown_header`, `epoch_not_released`, `outside_window`) |
//! | `honest_dead_lettered` | no on-time honest submission ends in the dead-letter queue |
//! | `accepted_not_batched` | every `accepted` receipt's submission is in an anchored batch |
//! | `not_provable` | every batched honest submission's inclusion proof, rebuilt from the documents with `sequencer_core::proof`, verifies against the anchored batch |
//! | `proof_api` | the proof API answers `included` with that proof for every batched honest submission |
//! | `chain_matches_documents` | each anchored batch's CID, `roothash` and `finalizedCidsRootHash` recompute from the documents, and the epoch's batches equal `finalize_epoch` over the submissions they list, byte for byte |
//! | `one_tx_per_batch` | one `submitSubmissionBatch` per batch CID, one `endBatchSubmissions` per epoch |
//! | `epoch_stuck` | every released epoch ends `ANCHORED` (ended on chain when it has batches); its accepted submissions are counted here, not one by one |
//! | `epoch_slow` | and it is anchored within the scenario's bound (15 min) after its window closed |
//! | `epoch_closed_late` | the tick closes an epoch within 2 min plus the watermark's longest wait (4 min) after its window closed on chain |
//! | `batched_but_rejected` | no submission in an anchored batch has a rejection receipt |
//! | `batched_without_receipt` | every submission in an anchored batch has its receipt |
//! | `slot_cap` | no slot has more than the cap batched in an epoch |
//! | `first_wins` | one batched submission per (epoch, project, slot) |
//! | `duplicate_ids` | submission ids are unique within an epoch's batches, and one id never has two accepted bodies |
//! | `dead_lettered_message` | only bytes that are no `/collect` message reach the submissions DLQ |
//! | `future_epoch_records` | no record is written for an epoch that was never released |
//! | `hostile_cost` | one hostile message costs at most its ceiling of state writes and chain calls |
//! | `retention` | records of one epoch carry one retention: TTL tables get TTLs, no record of an expiring epoch lives for ever |
//! | `virtual_clock` | every TTL and handler timestamp lies within the run's virtual time: no handler reads the wall clock |

use std::collections::{BTreeMap, BTreeSet};

use sequencer_core::cids::raw_cid;
use sequencer_core::collect::CollectMessage;
use sequencer_core::finalize::{finalize_epoch, Accepted, BatchDocument};
use sequencer_core::merkle::IncrementalTree;
use sequencer_core::proof::{prove_inclusion, EpochBatch};
use sequencer_core::submission::SnapshotSubmission;
use sequencer_core::B256;
use sequencer_handlers::query::Fate;
use sequencer_handlers::records::{EpochRecord, EpochState, Outcome, Receipt};
use sequencer_ports::{Item, Table};

use crate::deploy::TTL_TABLES;
use crate::ledger::{Actor, Answer, Attack, Sent};
use crate::model::chain::{OnChainBatch, TxKind};
use crate::model::content::node_cid;
use crate::model::state::{now, ReadOnly, StateModel};
use crate::world::{queues, World, BASE_MS};

/// Every invariant's name, as violations carry it.
pub const INVARIANTS: &[&str] = &[
    "on_time_not_batched",
    "honest_late",
    "honest_not_yet_final",
    "honest_dead_lettered",
    "accepted_not_batched",
    "not_provable",
    "proof_api",
    "chain_matches_documents",
    "one_tx_per_batch",
    "epoch_stuck",
    "epoch_slow",
    "epoch_closed_late",
    "batched_but_rejected",
    "batched_without_receipt",
    "slot_cap",
    "first_wins",
    "duplicate_ids",
    "dead_lettered_message",
    "future_epoch_records",
    "hostile_cost",
    "retention",
    "virtual_clock",
];

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant (see the module table).
    pub invariant: &'static str,
    /// The epoch, if one.
    pub epoch: Option<u64>,
    /// The submission id, batch CID or attack concerned.
    pub subject: Option<String>,
    /// What is wrong, in one line.
    pub what: String,
    /// Why: the evidence, one item a line.
    pub why: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.invariant)?;
        if let Some(e) = self.epoch {
            write!(f, " epoch {e}")?;
        }
        if let Some(s) = &self.subject {
            write!(f, " {s}")?;
        }
        write!(f, ": {}", self.what)?;
        for w in &self.why {
            write!(f, "\n      {w}")?;
        }
        Ok(())
    }
}

/// Ceilings per hostile message: (state writes, chain calls) for one delivery.
/// Issue 16 item 4: ranges are checked before any RPC call or write; slot owners and flags come
/// from a bounded cache loaded in bulk; a signer that is not the slot's owner is counted, not
/// stored; unknown headers are cached negatively (one lookup per round); an epoch past the retention
/// is rejected without chain calls (item 6).
///
/// Every message verify decides for a recorded epoch also adds its mark to the epoch's decided
/// set for the close watermark (docs/protocol.md §4): one set add per epoch per batch, shared by
/// the batch's messages; a probe is a batch of one, so it pays that write alone (`+ 1` below).
pub fn hostile_ceiling(a: Attack) -> (u64, u64) {
    const MARK: u64 = 1;
    match a {
        // A slot above the cached count, or a signer that is not the cached owner, is asked
        // again once the cached answer is a second old (a slot given just now): at most one
        // chain call a second, shared by every such message (a probe may be the one that pays).
        Attack::Garbage => (MARK, 1),
        // An epoch past the horizon of the records asks the chain for its last release, at most
        // once a second (a tick behind the chain must not drop the current epoch).
        Attack::FutureEpoch => (0, 1),
        Attack::Malformed => (0, 0),
        // While the node's head is inside the window, an unknown header may be a block the
        // node has not served yet (judging at arrival, item 2): verify asks again in its rounds
        // (1, 2, 4 s: four lookups and four head reads per delivery, none written) and the
        // message comes back once after the visibility timeout, past the window, when one
        // lookup and one receipt decide it.
        Attack::RandomHeader => (1 + MARK, 8),
        Attack::Flagged => (1 + MARK, 0),
        Attack::Replay | Attack::DuplicateId | Attack::OverCap => (2 + MARK, 1),
        Attack::OldReplay => (0, 0),
    }
}

fn ms(t: u64) -> String {
    format!("t={:.1}s", t as f64 / 1000.0)
}

/// The epoch an item of `table` belongs to, read from its key. The one place the simulator
/// reads the handlers' key scheme (`handlers/src/records/keys.rs`), for the checks that look at
/// raw items (retention, records of epochs never released); everything else reads through the
/// typed records layer. `the_key_scheme_is_the_handlers` pins it to what `Records` writes.
pub fn epoch_of_key(table: Table, pk: &str, sk: &str) -> Option<u64> {
    match table {
        Table::Epochs => sk.parse().ok(),
        Table::Blocks => None,
        // `market#epoch#…` (submissions, receipts, counters) and `market#epoch` (batches).
        _ => pk.split('#').nth(1)?.parse().ok(),
    }
}

/// What the checks read, gathered once.
struct Facts<'a> {
    w: &'a World,
    releases: BTreeMap<u64, (u64, u64)>,
    chain: BTreeMap<u64, Vec<OnChainBatch>>,
    docs: BTreeMap<String, (Vec<u8>, BatchDocument)>,
    /// epoch → id → (batch index, submission text)
    batched: BTreeMap<u64, BTreeMap<String, Vec<(u32, String)>>>,
    receipts: BTreeMap<(u64, String), Receipt>,
    epochs: BTreeMap<u64, (EpochState, EpochRecord)>,
    /// Accepted claims: (epoch, submission id) → the (project, slot) claims it holds.
    claims: BTreeMap<(u64, String), Vec<(String, u64)>>,
    /// Every item the pipeline wrote, those the TTL sweeper deleted included.
    all: StateModel,
    dlq: Vec<crate::model::queue::Peeked>,
    /// Released epochs not anchored at the end: their submissions are judged with the epoch.
    unanchored: BTreeSet<u64>,
}

impl<'a> Facts<'a> {
    fn gather(w: &'a World) -> Self {
        let releases: BTreeMap<u64, (u64, u64)> = w
            .chain()
            .releases()
            .into_iter()
            .map(|(e, r, win)| (e, (r, win.snapshot_blocks)))
            .collect();
        let mut chain = BTreeMap::new();
        let mut docs = BTreeMap::new();
        let mut batched: BTreeMap<u64, BTreeMap<String, Vec<(u32, String)>>> = BTreeMap::new();
        for e in releases.keys() {
            let b = w.chain().epoch_batches(*e);
            for (i, ob) in b.iter().enumerate() {
                if let Some(bytes) = w.content().peek(&ob.cid) {
                    if let Ok(doc) = serde_json::from_slice::<BatchDocument>(&bytes) {
                        for (id, text) in doc.submission_ids.iter().zip(&doc.submissions) {
                            batched
                                .entry(*e)
                                .or_default()
                                .entry(id.clone())
                                .or_default()
                                .push((i as u32 + 1, text.clone()));
                        }
                        docs.insert(ob.cid.clone(), (bytes, doc));
                    }
                }
            }
            chain.insert(*e, b);
        }
        // What the pipeline wrote, expired items included, read through the typed records.
        let all = w.state().with_expired();
        let (receipts, epochs, claims) = {
            let view = ReadOnly(&all);
            let records = w.records(&view);
            let named: BTreeSet<(u64, String)> = w
                .ledger()
                .sent
                .iter()
                .filter(|s| s.epoch > 0)
                .map(|s| (s.epoch, s.id.clone()))
                .collect();
            let mut receipts = BTreeMap::new();
            for (e, id) in named.iter() {
                if let Ok(Some(r)) = now(records.receipt(*e, id)) {
                    receipts.insert((*e, id.clone()), r);
                }
            }
            let epochs: BTreeMap<u64, (EpochState, EpochRecord)> = now(records.epochs())
                .unwrap_or_default()
                .into_iter()
                .map(|x| (x.record.epoch, (x.state, x.record)))
                .collect();
            let mut claims: BTreeMap<(u64, String), Vec<(String, u64)>> = BTreeMap::new();
            let named_epochs: BTreeSet<u64> = named.iter().map(|(e, _)| *e).collect();
            for e in named_epochs {
                for a in now(records.accepted_submissions(e)).unwrap_or_default() {
                    claims.entry((e, a.submission_id)).or_default().push((
                        a.submission.request.project_id.clone(),
                        a.submission.request.slot_id,
                    ));
                }
            }
            (receipts, epochs, claims)
        };
        let dlq = w.queues().peek(queues::SUBMISSIONS_DLQ);
        let unanchored = releases
            .keys()
            .filter(|e| {
                epochs
                    .get(e)
                    .is_none_or(|(st, _)| *st != EpochState::Anchored)
            })
            .copied()
            .collect();
        Facts {
            unanchored,
            w,
            releases,
            chain,
            docs,
            batched,
            receipts,
            epochs,
            claims,
            all,
            dlq,
        }
    }

    fn window_end(&self, e: u64) -> Option<u64> {
        self.releases.get(&e).map(|(r, w)| r + w)
    }

    /// The story of submission `id`: receipt, handlers, errors, writes.
    fn story(&self, e: u64, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let l = self.w.ledger();
        for s in l.with_id(id) {
            out.push(format!(
                "sent {} by {:?} (slot {}, project {}), at the ingress {} with head {} (window [{}, {}])",
                ms(s.sent_at),
                s.actor,
                s.slot,
                short(&s.project),
                s.arrived_at.map_or("never".into(), ms),
                s.head_at_arrival.map_or("?".into(), |h| h.to_string()),
                self.releases.get(&s.epoch).map_or(0, |r| r.0),
                self.window_end(s.epoch).unwrap_or(0),
            ));
        }
        match self.receipts.get(&(e, id.to_string())) {
            Some(r) => out.push(format!(
                "receipt: {}{} at {}",
                r.outcome.code(),
                r.outcome
                    .reason()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default(),
                ms((r.at_ms - BASE_MS).max(0) as u64)
            )),
            None => out.push("no receipt".into()),
        }
        for inv in l.invocations_of(id) {
            let mut line = invocation_line(inv);
            if let Some(pos) = inv.subjects.iter().position(|s| s == id) {
                let mid = &inv.messages[pos];
                if inv.failed.contains(mid) {
                    line.push_str(" -> reported failed, redelivered after the visibility timeout");
                }
                for lg in l
                    .logged
                    .iter()
                    .filter(|g| g.task == inv.task && g.fields.contains(mid.as_str()))
                {
                    line.push_str(&format!(" [{} {}]", lg.level, lg.fields));
                }
            }
            out.push(line);
        }
        drop(l);
        if let Some((st, rec)) = self.epochs.get(&e) {
            out.push(format!(
                "epoch {e}: {st}, closed {} finalized {}",
                rec.closed_at_ms
                    .map_or("-".into(), |t| ms((t - BASE_MS).max(0) as u64)),
                rec.finalized_at_ms
                    .map_or("-".into(), |t| ms((t - BASE_MS).max(0) as u64)),
            ));
        }
        for w in self
            .w
            .state()
            .journal
            .iter()
            .filter(|j| j.key.sk == id || j.key.sk.contains(id))
            .take(8)
        {
            out.push(format!(
                "write {} {} {} {}[{}] applied={} -> {}",
                ms(w.at),
                w.task,
                w.op,
                w.table.name(),
                w.key.sk,
                w.applied,
                w.state.as_deref().unwrap_or("-")
            ));
        }
        out
    }

    /// What the tick did between `from` and `to`.
    fn tick_story(&self, from: u64, to: u64) -> Vec<String> {
        let l = self.w.ledger();
        let mut out: Vec<String> = l
            .invocations
            .iter()
            .filter(|i| {
                i.task.starts_with("tick#")
                    && i.started <= to
                    && i.ended.unwrap_or(u64::MAX) >= from
            })
            .take(8)
            .map(|i| {
                let mut line = format!(
                    "{} {}..{}",
                    i.task,
                    ms(i.started),
                    i.ended.map_or("running".into(), ms)
                );
                if let Some(k) = i.killed {
                    line.push_str(&format!(
                        " {k} (nothing after the last completed step was saved)"
                    ));
                }
                for lg in l.logged.iter().filter(|g| g.task == i.task).take(1) {
                    line.push_str(&format!(" [{}]", clip(&lg.fields)));
                }
                line
            })
            .collect();
        if out.is_empty() {
            out.push("no tick ran".into());
        }
        out
    }

    /// The story of epoch `e`: its state, its jobs' invocations and what they logged.
    fn epoch_story(&self, e: u64) -> Vec<String> {
        let mut out = Vec::new();
        match self.epochs.get(&e) {
            Some((st, rec)) => {
                out.push(format!(
                    "state {st}; closed {} finalized {} anchored {}{}",
                    rec.closed_at_ms
                        .map_or("-".into(), |t| ms((t - BASE_MS).max(0) as u64)),
                    rec.finalized_at_ms
                        .map_or("-".into(), |t| ms((t - BASE_MS).max(0) as u64)),
                    rec.anchored_at_ms
                        .map_or("-".into(), |t| ms((t - BASE_MS).max(0) as u64)),
                    rec.failure
                        .as_ref()
                        .map(|f| format!("; failure: {f}"))
                        .unwrap_or_default()
                ));
            }
            None => out.push("no epoch record".into()),
        }
        let l = self.w.ledger();
        let subject = format!("epoch {e}");
        for inv in l.invocations_of(&subject).iter().take(12) {
            let mut line = invocation_line(inv);
            if !inv.failed.is_empty() {
                line.push_str(" -> failed");
            }
            for lg in l.logged.iter().filter(|g| g.task == inv.task).take(2) {
                line.push_str(&format!(" [{} {}]", lg.level, clip(&lg.fields)));
            }
            out.push(line);
        }
        let mine: BTreeSet<&String> = l
            .invocations_of(&subject)
            .iter()
            .flat_map(|i| {
                i.messages
                    .iter()
                    .zip(&i.subjects)
                    .filter(|(_, s)| **s == subject)
                    .map(|(m, _)| m)
            })
            .collect();
        for (t, q, id) in &self.w.queues().redriven {
            if mine.contains(id) {
                out.push(format!(
                    "{} its job was moved from {q} to the DLQ after maxReceiveCount deliveries",
                    ms(*t)
                ));
            }
        }
        out
    }
}

/// `task t=…..t=… [crashed|timed out]`.
fn invocation_line(inv: &crate::ledger::Invocation) -> String {
    let mut line = format!(
        "{} {}..{}",
        inv.task,
        ms(inv.started),
        inv.ended.map_or("running".into(), ms)
    );
    if let Some(k) = inv.killed {
        line.push_str(&format!(" {k}"));
    }
    line
}

/// A log line's fields without the constant message, at most ~220 characters.
fn clip(fields: &str) -> String {
    let f = fields
        .split(' ')
        .filter(|p| {
            !p.starts_with("message=") && !p.starts_with("retryable=") && !p.starts_with("stage=")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let f = if f.is_empty() { fields.to_string() } else { f };
    match f.char_indices().nth(220) {
        Some((i, _)) => format!("{}…", &f[..i]),
        None => f,
    }
}

fn short(s: &str) -> String {
    if s.len() > 24 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(20).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s.to_string()
    }
}

/// Checks every invariant.
pub fn check(w: &World) -> Vec<Violation> {
    let f = Facts::gather(w);
    let mut v = Vec::new();
    chain_matches_documents(&f, &mut v);
    one_tx_per_batch(&f, &mut v);
    honest(&f, &mut v);
    accepted_batched(&f, &mut v);
    batched_but_rejected(&f, &mut v);
    per_epoch_rules(&f, &mut v);
    epochs_anchored(&f, &mut v);
    dead_letters(&f, &mut v);
    future_records(&f, &mut v);
    retention(&f, &mut v);
    virtual_clock(&f, &mut v);
    v
}

/// Checks the hostile-message cost probes (run after [`check`]: they write to the store).
pub fn check_probes(w: &World) -> Vec<Violation> {
    let f = Facts::gather(w);
    let mut v = Vec::new();
    hostile_cost(&f, &mut v);
    v
}

fn chain_matches_documents(f: &Facts, v: &mut Vec<Violation>) {
    for (e, batches) in &f.chain {
        let mut ids_tree = IncrementalTree::new();
        let mut accepted = Vec::new();
        let mut broken = false;
        for (i, b) in batches.iter().enumerate() {
            let bad = |what: String| Violation {
                invariant: "chain_matches_documents",
                epoch: Some(*e),
                subject: Some(format!("batch {} {}", i + 1, b.cid)),
                what,
                why: f.epoch_story(*e),
            };
            let Some((bytes, doc)) = f.docs.get(&b.cid) else {
                v.push(bad(
                    "the anchored CID's document is not in the content store (or does not parse)"
                        .into(),
                ));
                broken = true;
                continue;
            };
            if node_cid(bytes).to_string() != b.cid && raw_cid(bytes).to_string() != b.cid {
                v.push(bad(
                    "the document's bytes do not hash to the anchored CID".into()
                ));
            }
            for id in &doc.submission_ids {
                if ids_tree.push(id).is_err() {
                    broken = true;
                }
            }
            if doc.roothash.parse::<B256>().ok() != Some(ids_tree.published_root()) {
                v.push(bad(format!(
                    "roothash {} is not the root over the epoch's ids up to this batch ({})",
                    doc.roothash,
                    ids_tree.published_root()
                )));
            }
            let mut cid_tree = IncrementalTree::new();
            for c in &doc.cids {
                let _ = cid_tree.push(c);
            }
            if cid_tree.published_root() != b.root {
                v.push(bad(format!(
                    "finalizedCidsRootHash on chain {} is not the root over the document's cids {}",
                    b.root,
                    cid_tree.published_root()
                )));
            }
            if doc.pids != b.pids || doc.cids != b.cids {
                v.push(bad("pids/cids on chain differ from the document's".into()));
            }
            for (id, text) in doc.submission_ids.iter().zip(&doc.submissions) {
                match serde_json::from_str::<SnapshotSubmission>(text) {
                    Ok(s) => accepted.push(Accepted {
                        submission_id: id.clone(),
                        submission: s,
                    }),
                    Err(_) => broken = true,
                }
            }
        }
        if broken {
            continue;
        }
        match finalize_epoch(&accepted, &f.w.finalize.config.finalize) {
            Ok(again) => {
                let want: Vec<String> = again.batches.iter().map(|b| b.cid.to_string()).collect();
                let got: Vec<String> = batches.iter().map(|b| b.cid.clone()).collect();
                if want != got {
                    v.push(Violation {
                        invariant: "chain_matches_documents",
                        epoch: Some(*e),
                        subject: None,
                        what: format!(
                            "the anchored batches {got:?} are not what finalizing the submissions they list gives {want:?} (batches of different runs mixed)"
                        ),
                        why: f.epoch_story(*e),
                    });
                }
            }
            Err(err) => v.push(Violation {
                invariant: "chain_matches_documents",
                epoch: Some(*e),
                subject: None,
                what: format!("the listed submissions do not finalize: {err}"),
                why: Vec::new(),
            }),
        }
    }
}

fn one_tx_per_batch(f: &Facts, v: &mut Vec<Violation>) {
    let c = f.w.chain();
    let mut per: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for t in &c.txs {
        let k = match &t.kind {
            TxKind::Submit { cid, .. } => cid.clone(),
            TxKind::End { epoch } => format!("end of epoch {epoch}"),
        };
        per.entry(k).or_default().push((t.at, t.task.clone()));
    }
    for (k, txs) in per {
        if txs.len() > 1 {
            v.push(Violation {
                invariant: "one_tx_per_batch",
                epoch: None,
                subject: Some(k),
                what: format!("{} transactions", txs.len()),
                why: txs
                    .iter()
                    .map(|(t, task)| format!("{} by {task}", ms(*t)))
                    .collect(),
            });
        }
    }
}

/// The on-time honest submissions and their fates.
fn honest(f: &Facts, v: &mut Vec<Violation>) {
    let sent: Vec<Sent> = f.w.ledger().sent.clone();
    let dlq_ids: BTreeSet<String> = f
        .dlq
        .iter()
        .map(|m| m.body.get(..36).unwrap_or("").to_string())
        .collect();
    let api: BTreeMap<String, Answer> =
        f.w.ledger()
            .proofs
            .iter()
            .map(|(id, _, a)| (id.clone(), a.clone()))
            .collect();
    // One signed text under several ids: its `/collect` and gossipsub copies, replays. Body
    // tail (the text after the id) → ids. Any one of them batched keeps the promise.
    let mut copies: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in sent.iter().filter(|s| s.body.len() > 36) {
        copies.entry(&s.body[36..]).or_default().push(&s.id);
    }
    let chain = f.w.chain();
    for s in sent
        .iter()
        .filter(|s| matches!(s.actor, Actor::Honest | Actor::BigProject))
    {
        let Some(&(r, win)) = f.releases.get(&s.epoch) else {
            continue;
        };
        let end = r + win;
        let (Some(h), Some(hb), Some(header)) = (s.head_at_arrival, s.header_block, s.header)
        else {
            continue;
        };
        let canonical = chain.number_of(&header) == Some(hb);
        let on_time = h <= end && (r..=end).contains(&hb) && canonical;
        if !on_time {
            continue;
        }
        let e = s.epoch;
        if f.unanchored.contains(&e) {
            continue;
        }
        let mine = f.batched.get(&e).and_then(|b| b.get(&s.id));
        let by_copy = copies
            .get(&s.body[36..])
            .into_iter()
            .flatten()
            .find(|id| **id != s.id && f.batched.get(&e).is_some_and(|b| b.contains_key(**id)));
        if mine.is_some() || by_copy.is_some() {
            if let Some(m) = mine {
                if m.len() > 1 {
                    v.push(Violation {
                        invariant: "on_time_not_batched",
                        epoch: Some(e),
                        subject: Some(s.id.clone()),
                        what: format!("listed {} times in the epoch's batches", m.len()),
                        why: f.story(e, &s.id),
                    });
                }
                provable(f, v, s, &api);
            }
            continue;
        }
        let receipt = f.receipts.get(&(e, s.id.clone()));
        let reason = receipt.and_then(|r| r.outcome.reason()).map(|r| r.code());
        let (invariant, what) = match (receipt.map(|r| r.outcome.code()), reason) {
            (Some("rejected"), Some("late")) => (
                "honest_late",
                format!("rejected `late` although the ingress received it with head {h} ≤ window end {end}"),
            ),
            (Some("rejected"), Some(r @ ("unknown_header" | "epoch_not_released" | "outside_window"))) => (
                "honest_not_yet_final",
                format!("rejected `{r}` for good, a \"not yet\" answer, although it arrived in the window (head {h} ≤ {end}) with header block {hb}"),
            ),
            (Some("rejected"), Some(other)) => (
                "on_time_not_batched",
                format!("an on-time valid submission rejected `{other}`"),
            ),
            (Some("accepted"), _) => (
                "accepted_not_batched",
                "receipt `accepted` but in no anchored batch".to_string(),
            ),
            _ if dlq_ids.contains(&s.id) => (
                "honest_dead_lettered",
                "in the submissions dead-letter queue".to_string(),
            ),
            _ => ("on_time_not_batched", "not in the epoch's anchored batches".to_string()),
        };
        v.push(Violation {
            invariant,
            epoch: Some(e),
            subject: Some(s.id.clone()),
            what,
            why: f.story(e, &s.id),
        });
    }
}

fn provable(f: &Facts, v: &mut Vec<Violation>, s: &Sent, api: &BTreeMap<String, Answer>) {
    let e = s.epoch;
    let batches = &f.chain[&e];
    let docs: Vec<(&OnChainBatch, &(Vec<u8>, BatchDocument))> = batches
        .iter()
        .filter_map(|b| f.docs.get(&b.cid).map(|d| (b, d)))
        .collect();
    let refs: Vec<EpochBatch> = docs
        .iter()
        .enumerate()
        .map(|(i, (b, (_, d)))| EpochBatch {
            index: i as u32 + 1,
            cid: b.cid.clone(),
            roothash: d.roothash.parse().unwrap_or(B256::ZERO),
            submission_ids: &d.submission_ids,
            anchor_tx: Some(b.tx),
        })
        .collect();
    let bad = |what: String| Violation {
        invariant: "not_provable",
        epoch: Some(e),
        subject: Some(s.id.clone()),
        what,
        why: f.story(e, &s.id),
    };
    match prove_inclusion(&format!("{:#x}", f.w.market), e, &refs, &s.id) {
        None => v.push(bad(
            "no proof can be built from the anchored documents".into()
        )),
        Some(p) => {
            let bytes = &docs[(p.batch_index as usize).saturating_sub(1)].1 .0;
            if let Err(err) = p.verify_with_batch(bytes) {
                v.push(bad(format!("the proof does not verify: {err}")));
            }
        }
    }
    // Every record of the epoch is gone from the live store (past the retention).
    let gone = || {
        let st = f.w.state();
        let view = ReadOnly(&st);
        let records = f.w.records(&view);
        now(records.batches(e)).is_ok_and(|b| b.is_empty())
            && now(records.accepted_submissions(e)).is_ok_and(|a| a.is_empty())
    };
    if f.receipts
        .get(&(e, s.id.clone()))
        .is_some_and(|r| matches!(r.outcome, Outcome::Rejected { .. }))
    {
        // `batched_but_rejected` says it.
        return;
    }
    let unknown = |a: &Answer| matches!(a, Answer::UnknownEpoch | Answer::UnknownSubmission);
    // The epoch is past the retention by the run's clock: every record of it expired at once.
    let past_retention = f.epochs.get(&e).is_some_and(|(_, rec)| {
        let view = ReadOnly(&f.all);
        let expiry_ms = f.w.records(&view).expiry_of(rec).0.saturating_mul(1000);
        expiry_ms <= (BASE_MS as u64).saturating_add(f.w.sim.now())
    });
    match api.get(&s.id) {
        Some(Answer::Fate(Fate::Included)) => {}
        // Past the retention: `expired_epoch`, whatever the sweeper has deleted so far.
        Some(Answer::ExpiredEpoch) if past_retention => {}
        // Past the retention, with every record of the epoch gone: a consistent answer.
        Some(a) if unknown(a) && gone() => {}
        // A receipt never written: `batched_without_receipt` says it.
        Some(a) if unknown(a) && !f.receipts.contains_key(&(e, s.id.clone())) => {}
        Some(a) if unknown(a) => v.push(Violation {
            invariant: "proof_api",
            epoch: Some(e),
            subject: Some(s.id.clone()),
            what: format!(
                "the proof API answered `{a}` for an anchored submission whose epoch's batches and submissions are still stored: the epoch's records expired apart"
            ),
            why: f.story(e, &s.id),
        }),
        Some(a) => v.push(Violation {
            invariant: "proof_api",
            epoch: Some(e),
            subject: Some(s.id.clone()),
            what: format!("the proof API answered `{a}` for a batched, anchored submission"),
            why: f.story(e, &s.id),
        }),
        None => {}
    }
}

fn batched_but_rejected(f: &Facts, v: &mut Vec<Violation>) {
    for (e, ids) in &f.batched {
        for id in ids.keys() {
            let Some(r) = f.receipts.get(&(*e, id.clone())) else {
                v.push(Violation {
                    invariant: "batched_without_receipt",
                    epoch: Some(*e),
                    subject: Some(id.clone()),
                    what: "in an anchored batch, but no receipt was ever written for it: the proof API answers unknown_submission".into(),
                    why: f.story(*e, id),
                });
                continue;
            };
            if let Some(reason) = r.outcome.reason() {
                v.push(Violation {
                    invariant: "batched_but_rejected",
                    epoch: Some(*e),
                    subject: Some(id.clone()),
                    what: format!(
                        "in an anchored batch, but its receipt says rejected `{}`: the proof API tells its snapshotter it was rejected",
                        reason
                    ),
                    why: f.story(*e, id),
                });
            }
        }
    }
}

fn accepted_batched(f: &Facts, v: &mut Vec<Violation>) {
    let honest: BTreeSet<String> =
        f.w.ledger()
            .sent
            .iter()
            .filter(|s| matches!(s.actor, Actor::Honest | Actor::BigProject))
            .map(|s| s.id.clone())
            .collect();
    for ((e, id), r) in &f.receipts {
        if r.outcome != Outcome::Accepted || honest.contains(id) || f.unanchored.contains(e) {
            // Honest submissions are judged (more precisely) by `honest`.
            continue;
        }
        if f.batched.get(e).is_some_and(|b| b.contains_key(id)) {
            continue;
        }
        v.push(Violation {
            invariant: "accepted_not_batched",
            epoch: Some(*e),
            subject: Some(id.clone()),
            what: "receipt `accepted` but in no anchored batch".into(),
            why: f.story(*e, id),
        });
    }
}

fn per_epoch_rules(f: &Facts, v: &mut Vec<Violation>) {
    let cap = u64::from(f.w.verify.config.max_per_slot);
    for (e, ids) in &f.batched {
        let mut per_slot: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut per_claim: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
        for (id, places) in ids {
            if places.len() > 1 {
                let texts: BTreeSet<&String> = places.iter().map(|p| &p.1).collect();
                v.push(Violation {
                    invariant: "duplicate_ids",
                    epoch: Some(*e),
                    subject: Some(id.clone()),
                    what: format!(
                        "listed {} times in the epoch's batches ({} different bodies): its inclusion proof is ambiguous",
                        places.len(),
                        texts.len()
                    ),
                    why: f.story(*e, id),
                });
            }
            for (_, text) in places {
                if let Ok(s) = serde_json::from_str::<SnapshotSubmission>(text) {
                    per_slot
                        .entry(s.request.slot_id)
                        .or_default()
                        .push(id.clone());
                    per_claim
                        .entry((s.request.project_id.clone(), s.request.slot_id))
                        .or_default()
                        .push(id.clone());
                }
            }
        }
        for (slot, ids) in per_slot {
            if ids.len() as u64 > cap {
                v.push(Violation {
                    invariant: "slot_cap",
                    epoch: Some(*e),
                    subject: Some(format!("slot {slot}")),
                    what: format!("{} submissions batched, cap {cap}: {ids:?}", ids.len()),
                    why: Vec::new(),
                });
            }
        }
        for ((project, slot), ids) in per_claim {
            if ids.len() > 1 {
                v.push(Violation {
                    invariant: "first_wins",
                    epoch: Some(*e),
                    subject: Some(format!("project {} slot {slot}", short(&project))),
                    what: format!("{} submissions batched: {ids:?}", ids.len()),
                    why: Vec::new(),
                });
            }
        }
    }
    // One id, two accepted bodies (claims of two projects carrying one id).
    for ((e, id), keys) in &f.claims {
        let (e, id) = (*e, id.clone());
        // Said already when the id is listed twice in the batches.
        let listed_twice = f
            .batched
            .get(&e)
            .and_then(|b| b.get(&id))
            .is_some_and(|p| p.len() > 1);
        if keys.len() > 1 && !listed_twice {
            v.push(Violation {
                invariant: "duplicate_ids",
                epoch: Some(e),
                subject: Some(id.clone()),
                what: format!(
                    "one id has {} accepted claims: {:?}",
                    keys.len(),
                    keys.iter()
                        .map(|(p, slot)| format!("{} slot {slot}", short(p)))
                        .collect::<Vec<_>>()
                ),
                why: f.story(e, &id),
            });
        }
    }
}

fn epochs_anchored(f: &Facts, v: &mut Vec<Violation>) {
    let bound = f.w.sc.stuck_bound_ms;
    let now = f.w.sim.now();
    let closed = f.w.ledger().window_closed.clone();
    for e in f.releases.keys() {
        let Some(&wc) = closed.get(e) else { continue };
        let rec = f.epochs.get(e);
        let has_batches = !f.chain.get(e).is_none_or(Vec::is_empty);
        let ended = f.w.chain().ended(*e);
        let accepted = f
            .receipts
            .iter()
            .filter(|((x, _), r)| x == e && r.outcome == Outcome::Accepted)
            .count();
        let (invariant, what) = match rec {
            Some((EpochState::Anchored, r)) => {
                let t = r.anchored_at_ms.map_or(0, |t| (t - BASE_MS).max(0) as u64);
                if has_batches && !ended {
                    ("epoch_stuck", "ANCHORED but `endBatchSubmissions` never ran".to_string())
                } else if t > wc + bound {
                    let at = |x: Option<i64>| x.map_or(t, |x| (x - BASE_MS).max(0) as u64);
                    let closed = at(r.closed_at_ms);
                    let finalized = at(r.finalized_at_ms);
                    let phases = [
                        ("closing", closed.saturating_sub(wc)),
                        ("finalizing", finalized.saturating_sub(closed)),
                        ("anchoring", t.saturating_sub(finalized)),
                    ];
                    let longest = phases.iter().max_by_key(|p| p.1).map_or("?", |p| p.0);
                    (
                        "epoch_slow",
                        format!(
                            "anchored {} after its window closed, later than the bound of {} (closing {}, finalizing {}, anchoring {}; longest: {longest})",
                            ms(t - wc),
                            ms(bound),
                            ms(phases[0].1),
                            ms(phases[1].1),
                            ms(phases[2].1),
                        ),
                    )
                } else {
                    continue;
                }
            }
            Some((st, r)) => (
                "epoch_stuck",
                format!(
                    "{st} at the end, {} after its window closed, with {accepted} accepted submissions not anchored{}",
                    ms(now.saturating_sub(wc)),
                    r.failure.as_ref().map(|x| format!("; failure: {x}")).unwrap_or_default()
                ),
            ),
            None => (
                "epoch_stuck",
                format!(
                    "never recorded by the tick, {} after its window closed",
                    ms(now.saturating_sub(wc))
                ),
            ),
        };
        v.push(Violation {
            invariant,
            epoch: Some(*e),
            subject: None,
            what,
            why: f.epoch_story(*e),
        });
    }
    // The tick closes an epoch soon after its window closes on chain.
    for (e, (_, r)) in &f.epochs {
        let (Some(c), Some(&wc)) = (r.closed_at_ms, closed.get(e)) else {
            continue;
        };
        let c = (c - BASE_MS).max(0) as u64;
        if c > wc + CLOSE_BOUND_MS {
            v.push(Violation {
                invariant: "epoch_closed_late",
                epoch: Some(*e),
                subject: None,
                what: format!(
                    "closed by the tick {} after its window closed on chain (bound {})",
                    ms(c - wc),
                    ms(CLOSE_BOUND_MS)
                ),
                // From a minute before: a run that failed just before the window closed is
                // why no run was there to close it.
                why: f.tick_story(wc.saturating_sub(60_000), c),
            });
        }
    }
}

/// The handlers stamp records and expiries by the pipeline's clock, virtual time here: a stamp
/// outside the run is a read of the wall clock the simulator does not control (runs no longer
/// repeat, and expiry is untestable). Checks every TTL, receipt time and epoch timestamp.
fn virtual_clock(f: &Facts, v: &mut Vec<Violation>) {
    let lo_ms = BASE_MS;
    let hi_ms = BASE_MS + f.w.sim.now() as i64;
    let ttl_s = f.w.reader.config.record_ttl.as_secs() as i64;
    let (lo_s, hi_s) = (lo_ms / 1000, hi_ms / 1000 + 1 + ttl_s);
    let mut bad: Vec<String> = Vec::new();
    for t in Table::ALL {
        for (pk, sk, i) in f.all.scan(t) {
            if let Some(ttl) = i.ttl {
                if !(lo_s..=hi_s).contains(&(ttl as i64)) {
                    bad.push(format!("{} {pk}|{sk}: ttl {ttl}", t.name()));
                }
            }
        }
    }
    let stamp = |what: String, at: Option<i64>, bad: &mut Vec<String>| {
        if let Some(at) = at {
            if !(lo_ms..=hi_ms).contains(&at) {
                bad.push(format!("{what} at {at} ms"));
            }
        }
    };
    for ((e, id), r) in &f.receipts {
        stamp(format!("receipt {e}/{id}"), Some(r.at_ms), &mut bad);
    }
    for (e, (_, r)) in &f.epochs {
        stamp(format!("epoch {e} seen"), Some(r.seen_at_ms), &mut bad);
        stamp(format!("epoch {e} closed"), r.closed_at_ms, &mut bad);
        stamp(format!("epoch {e} finalized"), r.finalized_at_ms, &mut bad);
        stamp(format!("epoch {e} anchored"), r.anchored_at_ms, &mut bad);
    }
    if !bad.is_empty() {
        v.push(Violation {
            invariant: "virtual_clock",
            epoch: None,
            subject: None,
            what: format!(
                "{} stamps outside the run (Unix ms {lo_ms}..={hi_ms}; TTLs up to {hi_s} s): a handler reads the wall clock instead of `Pipeline::now_ms`",
                bad.len()
            ),
            why: bad.into_iter().take(6).collect(),
        });
    }
}

/// The tick closes an epoch at most this long after its window closed on chain: the grace
/// blocks, the 5 s gap between its runs, a failed run (no retry until the next minute), and the
/// close watermark's longest wait (`WATERMARK_MAX_WAIT_MS` in the module: verify's 180 s
/// visibility timeout plus a minute), for which an on-time submission given back to the queue
/// (a crashed or failed verify) is worth holding the close.
pub const CLOSE_BOUND_MS: u64 = 2 * 60 * 1000 + 240_000;

fn dead_letters(f: &Facts, v: &mut Vec<Violation>) {
    let l = f.w.ledger();
    for m in &f.dlq {
        if CollectMessage::parse(m.body.as_bytes()).is_err() {
            continue;
        }
        let id = m.body.get(..36).unwrap_or("").to_string();
        let who = l.with_id(&id).first().map(|s| s.actor);
        if matches!(who, Some(Actor::Honest | Actor::BigProject)) {
            // Judged by `honest` (on time) or acceptable (late on purpose).
            continue;
        }
        v.push(Violation {
            invariant: "dead_lettered_message",
            epoch: l.with_id(&id).first().map(|s| s.epoch),
            subject: Some(id.clone()),
            what: format!(
                "a well-formed message from {who:?} was dead-lettered after {} deliveries instead of being answered",
                m.receive_count
            ),
            why: l
                .invocations_of(&id)
                .iter()
                .take(6)
                .map(|i| format!("{} {} failed={}", i.task, ms(i.started), !i.failed.is_empty()))
                .collect(),
        });
    }
}

fn future_records(f: &Facts, v: &mut Vec<Violation>) {
    let released: BTreeSet<u64> = f.releases.keys().copied().collect();
    let probes = f.w.ledger().probe_ids.clone();
    let st = f.w.state();
    let mut per: BTreeMap<(u64, &'static str), u64> = BTreeMap::new();
    for t in [Table::Receipts, Table::Submissions, Table::Counters] {
        for (pk, sk, _) in st.scan(t) {
            if probes.contains(&sk) {
                continue;
            }
            if let Some(e) = epoch_of_key(t, &pk, &sk) {
                if e > 0 && !released.contains(&e) {
                    *per.entry((e, t.name())).or_default() += 1;
                }
            }
        }
    }
    drop(st);
    let epochs: BTreeSet<u64> = per.keys().map(|(e, _)| *e).collect();
    if !epochs.is_empty() {
        v.push(Violation {
            invariant: "future_epoch_records",
            epoch: None,
            subject: Some(format!("{} never-released epochs", epochs.len())),
            what: format!(
                "{} records written for epochs that were never released (e.g. epoch {})",
                per.values().sum::<u64>(),
                epochs.iter().next().copied().unwrap_or(0)
            ),
            why: per
                .iter()
                .take(6)
                .map(|((e, t), n)| format!("epoch {e}: {n} in {t}"))
                .collect(),
        });
    }
}

fn hostile_cost(f: &Facts, v: &mut Vec<Violation>) {
    for (attack, verdict, calls) in &f.w.ledger().probes {
        let writes: u64 = calls
            .iter()
            .filter(|(op, _)| {
                // Reads: `get`, `batch_get` (verify's one batched read), `query`.
                op.starts_with("state.")
                    && !op.ends_with(".get")
                    && !op.ends_with(".batch_get")
                    && !op.ends_with(".query")
            })
            .map(|(_, n)| n)
            .sum();
        let rpc: u64 = calls
            .iter()
            .filter(|(op, _)| op.starts_with("chain."))
            .map(|(_, n)| n)
            .sum();
        let dlq = calls.get("queue.send").copied().unwrap_or(0);
        let (max_w, max_rpc) = hostile_ceiling(*attack);
        // An unknown header inside the window is "not yet" by design (see the ceiling).
        let not_yet_header =
            *attack == Attack::RandomHeader && verdict.contains("not served by the node yet");
        let redelivered =
            verdict.starts_with("Err") && !verdict.contains("Corrupt") && !not_yet_header;
        let deliveries = if redelivered {
            f.w.deploy.verify.max_receive_count.unwrap_or(1)
        } else {
            1
        };
        if writes > max_w
            || rpc > max_rpc
            || (dlq > 0 && *attack != Attack::Malformed)
            || redelivered
        {
            v.push(Violation {
                invariant: "hostile_cost",
                epoch: None,
                subject: Some(format!("{attack:?}")),
                what: format!(
                    "one message costs {writes} state writes and {rpc} chain calls per delivery (ceiling {max_w} and {max_rpc}){}",
                    if redelivered {
                        format!(", and fails, so it is delivered {deliveries} times and dead-lettered")
                    } else {
                        String::new()
                    }
                ),
                why: vec![
                    format!("verdict: {verdict}"),
                    format!("calls: {calls:?}"),
                ],
            });
        }
    }
}

fn retention(f: &Facts, v: &mut Vec<Violation>) {
    let ttl_tables: BTreeMap<&str, bool> = TTL_TABLES.into_iter().collect();
    let st = f.w.state();
    // Per table: items without TTL in a TTL table; items without TTL of epochs whose other
    // records expire.
    let mut epoch_expiring: BTreeSet<u64> = BTreeSet::new();
    let mut forever: BTreeMap<&'static str, (u64, String)> = BTreeMap::new();
    let mut missing: BTreeMap<&'static str, (u64, String)> = BTreeMap::new();
    let all: Vec<(Table, String, String, Item)> = Table::ALL
        .iter()
        .flat_map(|t| {
            st.scan(*t)
                .into_iter()
                .map(move |(pk, sk, i)| (*t, pk, sk, i))
        })
        .collect();
    drop(st);
    let epoch_of = epoch_of_key;
    for (t, pk, sk, i) in &all {
        if i.ttl.is_some() {
            if let Some(e) = epoch_of(*t, pk, sk) {
                epoch_expiring.insert(e);
            }
        }
        if i.ttl.is_none()
            && ttl_tables.get(t.name()).copied().unwrap_or(false)
            && !pk.contains("#cursor")
        {
            let m = missing.entry(t.name()).or_insert((0, format!("{pk}|{sk}")));
            m.0 += 1;
        }
    }
    for (t, pk, sk, i) in &all {
        if i.ttl.is_none() {
            if let Some(e) = epoch_of(*t, pk, sk) {
                if epoch_expiring.contains(&e) {
                    let m = forever.entry(t.name()).or_insert((0, format!("{pk}|{sk}")));
                    m.0 += 1;
                }
            }
        }
    }
    for (t, (n, example)) in missing {
        v.push(Violation {
            invariant: "retention",
            epoch: None,
            subject: Some(format!("table {t}")),
            what: format!("{n} items written without a TTL although the module expires this table by TTL (e.g. {example})"),
            why: Vec::new(),
        });
    }
    for (t, (n, example)) in forever {
        v.push(Violation {
            invariant: "retention",
            epoch: None,
            subject: Some(format!("table {t}")),
            what: format!(
                "{n} items never expire while other records of their epoch do (e.g. {example}): once the epoch's record and receipts are gone the proof API answers unknown_epoch for anchored submissions"
            ),
            why: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sequencer_core::Address;
    use sequencer_handlers::records::{BatchRecord, Records, SubmissionRecord};
    use sequencer_ports::Port;

    use super::*;
    use crate::exec::Sim;
    use crate::gate::{CallCounts, Gate, Profile};
    use crate::model::state::SimState;

    /// [`epoch_of_key`] reads what the handlers' records layer writes: one record of every
    /// table, written through `Records`, gives its epoch back (blocks belong to none).
    #[test]
    fn the_key_scheme_is_the_handlers() {
        let sim = Sim::new(1, false);
        let model = Arc::new(Mutex::new(StateModel::default()));
        let counts = Arc::new(Mutex::new(CallCounts::new()));
        let gate = Gate::new(sim.clone(), Port::State, Profile::fast(1, 1), counts);
        let store = SimState::new(gate, model.clone());
        let e = 42;
        let done = Arc::new(Mutex::new(false));
        let d = done.clone();
        sim.spawn("writer", async move {
            let r = Records::new(&store, Address::repeat_byte(7), Duration::from_secs(60));
            let sub = SubmissionRecord {
                submission_id: "id".into(),
                text: "{}".into(),
                signer: Address::ZERO,
                header_block: 1,
                verified_at_ms: 0,
            };
            let batch = BatchRecord {
                index: 1,
                cid: "c".into(),
                roothash: "r".into(),
                finalized_cids_root: "f".into(),
                pids: vec![],
                cids: vec![],
                first_leaf_index: 0,
                submissions: 0,
                bytes: 0,
                tx_hash: None,
                block: None,
                delayed: false,
            };
            let receipt = Receipt {
                outcome: Outcome::Accepted,
                digest: "d".into(),
                project: "p".into(),
                slot: 3,
                at_ms: 0,
            };
            let rec = EpochRecord {
                epoch: e,
                ..EpochRecord::default()
            };
            let expiry = r.expiry_of(&rec);
            let ok = r.open_epoch(&rec).await.is_ok()
                && r.write_receipt(e, "id", &receipt, Some(expiry))
                    .await
                    .is_ok()
                && r.write_intake(
                    &[
                        sequencer_handlers::records::Write::Claim {
                            epoch: e,
                            project: "p".into(),
                            slot: 3,
                            rec: sub.clone(),
                            over_pending: false,
                        },
                        sequencer_handlers::records::Write::Count {
                            epoch: e,
                            slot: 3,
                            ids: vec!["id".into()],
                            max_before: 4,
                        },
                    ],
                    &BTreeMap::from([(e, expiry)]),
                )
                .await
                .is_ok_and(|r| r.is_none())
                && r.record_batch(e, &batch, expiry).await.is_ok()
                && r.record_block(B256::ZERO, 9).await.is_ok();
            *d.lock().unwrap_or_else(|p| p.into_inner()) = ok;
        });
        sim.run(60_000, || false);
        assert!(*done.lock().unwrap_or_else(|p| p.into_inner()), "written");
        let m = model.lock().unwrap_or_else(|p| p.into_inner());
        for t in Table::ALL {
            let items = m.scan(t);
            assert!(!items.is_empty(), "{} written", t.name());
            for (pk, sk, _) in items {
                let want = (t != Table::Blocks).then_some(e);
                assert_eq!(epoch_of_key(t, &pk, &sk), want, "{} {pk}|{sk}", t.name());
            }
        }
    }
}
