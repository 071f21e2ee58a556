//! A deterministic simulation of the sequencer's deployment, in the spirit of FoundationDB's and
//! TigerBeetle's simulators: the real handlers over in-memory ports with the deployment's
//! semantics, driven by a seeded scheduler that decides every interleaving, on virtual time,
//! with the Terraform module's timeouts, visibility timeouts, batch sizes and concurrency, and
//! faults: crashes between any two port calls, redelivery, duplicates, reordering, slow and
//! failing stores, a chain that is slow, reorganizes or answers "not yet", hostile floods.
//! After every run the invariants ([`invariants`]) are checked; a seed replays its run exactly
//! (same trace hash).
//!
//! | module | what |
//! | --- | --- |
//! | [`exec`] | the executor: one thread, virtual time, seeded choice among ready tasks, killable tasks, trace hash |
//! | [`gate`] | the layer every port call goes through: latency, faults, crash points, counting, tracing |
//! | [`model`] | state store (DynamoDB), queues (SQS standard and FIFO), chain (client + contract), content store (IPFS node) |
//! | [`deploy`] | the Terraform module's settings, checked against the `.tf` files |
//! | [`actors`] | miner, epoch manager, tick schedule, event source mappings, ingress, snapshotters honest and hostile, TTL sweeper, operator |
//! | [`invariants`] | what must hold after a run |
//!
//! # What this crate depends on
//!
//! The core, the ports (`sequencer-ports`), the handlers (`sequencer-handlers`) and the test
//! kit's signing (`sequencer-testsupport` without its SQLite harness); no alloy provider, no AWS
//! SDK, no SQLite, no libp2p (`scripts/check-layers.sh`). From the handlers:
//!
//! - `Pipeline`, `PipelineConfig`, `Ports`, and the `Clock` the simulator replaces
//!   (`Pipeline::with_clock`): record timestamps and expiries are on virtual time;
//! - the Lambda entry points `{verify, finalize, anchor}::handle(&Pipeline, SqsEvent)`,
//!   `tick::step(&Pipeline)` (the simulator runs `tick::run`'s loop itself on virtual time:
//!   `run` sleeps on tokio's clock), `verify::verify_body` (cost probes), `query::Queries`
//!   (the proof API's answers);
//! - the typed records layer (`records::Records` over a read-only view of the store,
//!   [`world::World::records`]) the actors and invariants read the pipeline's state through.
//!
//! `docs/simulation.md` says what to do when a port gains a method or a defect is fixed.

pub mod actors;
pub mod capture;
pub mod defects;
pub mod deploy;
pub mod exec;
pub mod gate;
pub mod invariants;
pub mod ledger;
pub mod model;
pub mod scenario;
pub mod world;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sequencer_handlers::query::{Queries, QueryError};
use sequencer_handlers::records::EpochState;
use sequencer_handlers::verify;
use tracing_subscriber::layer::SubscriberExt;

pub use invariants::Violation;
pub use scenario::Scenario;

use crate::gate::Profile;
use crate::ledger::{Actor, Answer, Attack};
use crate::model::state::{now, ReadOnly};
use crate::world::{Slots, World};

/// What one run gave.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Seed.
    pub seed: u64,
    /// Scenario name.
    pub scenario: String,
    /// Hash over every scheduling event and port call, in order.
    pub trace_hash: String,
    /// Events in the trace.
    pub events: u64,
    /// Virtual time the run covered, ms.
    pub virtual_ms: u64,
    /// Why the main phase stopped.
    pub stop: exec::Stop,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// Counts for the summary line.
    pub stats: BTreeMap<&'static str, u64>,
    /// The trace's lines, when asked for.
    pub log: Vec<String>,
}

impl RunReport {
    /// Violations that are no open defect of [`defects::DEFECTS`].
    pub fn unknown(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| defects::known(v).is_none())
            .collect()
    }

    /// Invariants broken, with how many times.
    pub fn broken(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for v in &self.violations {
            *m.entry(v.invariant).or_default() += 1;
        }
        m
    }

    /// One line: seed, outcome, numbers.
    pub fn summary(&self) -> String {
        let broken = self.broken();
        format!(
            "seed {} {}: {} ({} events, {:.0} s virtual, trace {}) {}",
            self.seed,
            self.scenario,
            if broken.is_empty() {
                "ok".to_string()
            } else {
                format!("{broken:?}")
            },
            self.events,
            self.virtual_ms as f64 / 1000.0,
            &self.trace_hash[..16],
            self.stats
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// Run options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep a readable line per traced event.
    pub log: bool,
}

/// Runs `sc` with `seed` and checks the invariants.
pub fn run(seed: u64, sc: &Scenario, opts: Options) -> RunReport {
    let sim = exec::Sim::new(seed, opts.log);
    let w = World::new(sim.clone(), sc.clone());
    let subscriber =
        tracing_subscriber::registry().with(capture::Capture::new(sim.clone(), w.ledger.clone()));
    let stop = tracing::subscriber::with_default(subscriber, || {
        actors::spawn_all(&w);
        let releases_ms = (sc.epochs + 1) * sc.epoch_size * sc.block_ms + 120_000;
        let limit = releases_ms + sc.drain_ms;
        // Past the retention, long enough for the sweeper to delete what expired and for old
        // submissions to be replayed.
        let min_run = sc.record_ttl_s.map_or(0, |t| (t + 60 * 60) * 1000);
        let mut next_check = 0u64;
        let stop = sim.run(limit, || {
            let now = w.sim.now();
            if now < next_check {
                return false;
            }
            next_check = now + 10_000;
            now >= min_run && settled(&w)
        });
        audit(&w, false);
        stop
    });
    // The probes write to the store: check the run's invariants before they go.
    let mut violations = invariants::check(&w);
    let subscriber =
        tracing_subscriber::registry().with(capture::Capture::new(sim.clone(), w.ledger.clone()));
    tracing::subscriber::with_default(subscriber, || audit(&w, true));
    violations.extend(invariants::check_probes(&w));
    let (trace_hash, events) = sim.trace_hash();
    let mut stats = BTreeMap::new();
    {
        let l = w.ledger();
        stats.insert("sent", l.sent.len() as u64);
        stats.insert(
            "honest",
            l.sent.iter().filter(|s| s.actor == Actor::Honest).count() as u64,
        );
        stats.insert("invocations", l.invocations.len() as u64);
        stats.insert(
            "killed",
            l.invocations.iter().filter(|i| i.killed.is_some()).count() as u64,
        );
        stats.insert("epochs", l.released.len() as u64);
    }
    {
        let c = w.chain();
        stats.insert("txs", c.txs.len() as u64);
        stats.insert("reorgs", c.reorgs.len() as u64);
    }
    let anchored = {
        let st = w.state();
        let view = ReadOnly(&st);
        now(w.records(&view).epochs())
            .unwrap_or_default()
            .iter()
            .filter(|e| e.state == EpochState::Anchored)
            .count()
    };
    stats.insert("anchored", anchored as u64);
    RunReport {
        seed,
        scenario: sc.name.clone(),
        trace_hash,
        events,
        virtual_ms: sim.now(),
        stop,
        violations,
        stats,
        log: sim.take_log(),
    }
}

/// Nothing more can happen: every epoch is out and past its window, nothing is queued or
/// running, every sender is done.
fn settled(w: &Arc<World>) -> bool {
    let released = w.ledger().released.len() as u64;
    if released < w.sc.epochs
        || w.ingress_pending.load(Ordering::SeqCst) > 0
        || w.senders_pending.load(Ordering::SeqCst) > 0
        || !w.queues_empty()
        || w.running_invocations() > 0
    {
        return false;
    }
    let st = w.state();
    let view = ReadOnly(&st);
    let records = w.records(&view);
    (1..=released).all(|e| {
        now(records.epoch(e))
            .ok()
            .flatten()
            .is_some_and(|x| !matches!(x.state, EpochState::Open | EpochState::Closing))
    })
}

/// After the run, with faults off: ask the proof API about every honest submission, and
/// measure what one hostile message of each kind costs.
fn audit(w: &Arc<World>, probing: bool) {
    for g in [
        &w.gates.state,
        &w.gates.queue,
        &w.gates.content,
        &w.gates.chain,
    ] {
        let p = g.profile();
        g.set_profile(Profile::fast(p.min_ms, p.max_ms));
    }
    w.chain().faults = Default::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let w2 = w.clone();
    w.sim.spawn("audit", async move {
        if probing {
            probes(&w2).await;
        } else {
            proofs(&w2).await;
        }
        d.store(true, Ordering::SeqCst);
    });
    let limit = w.sim.now() + 6 * 60 * 60 * 1000;
    w.sim.run(limit, || done.load(Ordering::SeqCst));
}

async fn proofs(w: &Arc<World>) {
    // The answers the proof API serves (`sequencer-api` renders these views over HTTP).
    let api = Queries::default();
    let honest: Vec<(String, u64)> = w
        .ledger()
        .sent
        .iter()
        .filter(|s| matches!(s.actor, Actor::Honest | Actor::BigProject))
        .map(|s| (s.id.clone(), s.epoch))
        .collect();
    for (id, e) in honest {
        let answer = match api.submission(&w.reader, e, &id).await {
            Ok(a) => Answer::Fate(a.view.fate),
            Err(QueryError::UnknownEpoch(_)) => Answer::UnknownEpoch,
            Err(QueryError::ExpiredEpoch { .. }) => Answer::ExpiredEpoch,
            Err(QueryError::UnknownSubmission { .. }) => Answer::UnknownSubmission,
            Err(QueryError::Failed(err)) => Answer::Failed(err.to_string()),
            // A batch document's answer; a submission's query never gives it.
            Err(err @ QueryError::UnknownBatch { .. }) => Answer::Failed(err.to_string()),
            // A rewards query's answer; a submission query never gives it.
            Err(e @ QueryError::UnknownDay(_)) => Answer::Failed(e.to_string()),
        };
        w.ledger().proofs.push((id, e, answer));
    }
}

/// Measures what one hostile message of each kind costs: verified alone, by a task named
/// `probe` whose port calls the gate counts apart and never fails or slows. The attacks on a
/// live epoch run while one is open and recorded (`probe_live`); an expired epoch's replay runs
/// after the run (`audit`).
pub(crate) async fn probe(w: &Arc<World>, attack: Attack, e: u64, r: u64) {
    // The cost of one message in a flood, in a warm verify process: every slot's owner and
    // flag and the slot count in its caches, as steady traffic (and the flood's first messages)
    // leave them. A cold process pays one `slot_owner` and one `is_flagged` per slot, and one
    // `slot_count`, per CHAIN_CACHE_TTL_SECS (docs/simulation.md).
    let p = w.reader.clone();
    let last = Slots::of(&w.sc).last();
    let market = w.market;
    let h = w.sim.spawn("probe-warm", async move {
        let chain = &p.ports.chain;
        let _ = chain.slot_count().await;
        for s in 1..=last {
            if let Ok(o) = chain.slot_owner(s).await {
                let _ = chain.is_flagged(market, o).await;
            }
        }
    });
    let _ = h.await;
    let Some(m) = probe_message(w, attack, e, r) else {
        return;
    };
    w.ledger().probe_ids.insert(m.id.clone());
    // A probe stands for a message that came through the ingress: its tally counts it (the
    // close watermark must not see verify decide more than the ingress took in).
    if m.epoch > 0 && sequencer_core::collect::CollectMessage::parse(m.body.as_bytes()).is_ok() {
        *w.ingress_tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(m.epoch)
            .or_default() += 1;
    }
    let before = function_counts(w, "probe");
    let p = w.reader.clone();
    let body = m.body.clone();
    let h = w
        .sim
        .spawn("probe", async move { verify::verify_body(&p, &body).await });
    let verdict = match h.await {
        Ok(Ok(v)) => format!("Ok({v:?})"),
        Ok(Err(e)) => format!("Err({e})"),
        Err(k) => format!("killed {k:?}"),
    };
    let after = function_counts(w, "probe");
    let delta: BTreeMap<String, u64> = after
        .into_iter()
        .map(|(k, v)| (k.clone(), v - before.get(&k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    w.ledger().probes.push((attack, verdict, delta));
}

/// A hostile message of `attack` for the probes. A replay probe replays a submission already
/// answered, so it measures the replay's cost without taking the original's place.
fn probe_message(w: &Arc<World>, attack: Attack, e: u64, r: u64) -> Option<ledger::Sent> {
    let slots = Slots::of(&w.sc);
    for _ in 0..20 {
        let c = actors::hostile_message(w, slots, e, r, attack)
            .into_iter()
            .next()?;
        let answered = c.replay_of.as_ref().is_none_or(|orig| {
            let st = w.state();
            let view = ReadOnly(&st);
            now(w.records(&view).receipt(c.epoch, orig))
                .ok()
                .flatten()
                .is_some()
        });
        if answered {
            return Some(c);
        }
    }
    None
}

async fn probes(w: &Arc<World>) {
    if w.sc.record_ttl_s.is_none() {
        return;
    }
    let Some((&e, &(_, r))) = w.ledger().released.iter().next_back() else {
        return;
    };
    probe(w, Attack::OldReplay, e, r).await;
}

fn function_counts(w: &World, function: &str) -> BTreeMap<String, u64> {
    w.counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|((f, _), _)| f == function)
        .map(|((_, op), n)| (op.clone(), *n))
        .collect()
}
