//! The topic validator: every gossip message is judged here before gossipsub may forward it.
//!
//! In order: one token from the forwarding peer's and its address's buckets per submission (one
//! for a heartbeat), the same [`crate::rate::PeerGate`] as `/collect`, so a peer flooding gossip
//! is throttled and cut off like a `/collect` flooder and every peer id of an address shares one
//! budget; core's [`sequencer_core::gossip::parse`]; each submission's queue body
//! ([`sequencer_core::gossip::queue_body`]: content id + exact text) through the same
//! [`crate::edge::check`] as `/collect`. Then:
//!
//! - `Reject` (not forwarded; gossipsub lowers the sender's score): not an envelope or a
//!   submission, too large, or any submission refused by the edge checks (none of the message's
//!   submissions is queued);
//! - `Ignore` (not forwarded, no penalty): heartbeats and mesh-formation entries (counted, never
//!   queued); a submission for a data market this ingress does not serve (`foreign_market`: the
//!   topics may be shared by several markets, and honest peers relay them all, so it is skipped,
//!   not punished; submissions of ours in the same message are still queued); a throttled or
//!   banned sender; the validation queue full; the cache budget spent (the submissions were
//!   queued, only forwarding is skipped); shutdown;
//! - `Accept`: every submission queued, then forwarded by gossipsub.
//!
//! A throttled message is ignored, not delayed: gossip cannot be slowed the way a `/collect`
//! stream is (there is no stream to stop reading), and holding it would hold memory. An honest
//! relay stays far below the default rate (500 submissions/s per peer after a burst of 5 000).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::PeerId;
use sequencer_core::collect::CollectMessage;
use sequencer_core::gossip::{self as wire, GossipPayload};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::BufferHandle;
use crate::edge::EdgePolicy;
use crate::envelope::{Envelope, EnvelopeMeta};
use crate::metrics::{Metrics, Path};
use crate::rate::{AddrKey, Admit, PeerGate};
use crate::reject::Reject;
use crate::seen::SeenIds;

/// One message to judge.
#[derive(Debug)]
pub struct Job {
    /// The peer that forwarded it to us (charged, penalised if invalid).
    pub from: PeerId,
    /// That peer's address key.
    pub addr: Option<AddrKey>,
    /// Gossipsub's id of the message.
    pub id: MessageId,
    /// Topic label for metrics.
    pub topic: Arc<str>,
    /// The message's signed author.
    pub author: Option<PeerId>,
    /// Its data.
    pub data: Vec<u8>,
    /// When gossipsub handed it over.
    pub received_at: std::time::Instant,
}

/// The verdict on one message, for `report_message_validation_result`.
#[derive(Debug)]
pub struct Verdict {
    /// Gossipsub's id of the message.
    pub id: MessageId,
    /// The forwarding peer.
    pub from: PeerId,
    /// Topic label.
    pub topic: Arc<str>,
    /// What gossipsub must do with it.
    pub acceptance: MessageAcceptance,
}

/// What the validator needs.
pub struct Validator {
    /// Rate, ban and address state shared with `/collect`.
    pub gate: Arc<PeerGate>,
    /// The bounded buffer to the queue.
    pub buffer: BufferHandle,
    /// Metrics.
    pub metrics: Metrics,
    /// The edge checks' policy.
    pub policy: EdgePolicy,
    /// Recent content ids.
    pub seen: Arc<SeenIds>,
    /// Bytes of accepted messages gossipsub may keep for its history window.
    pub cache_bytes: usize,
    /// Gossipsub's history window (history length × heartbeat).
    pub history: Duration,
    /// Stops the validator (shutdown: readers stop).
    pub cancel: CancellationToken,
    /// Bytes of jobs waiting (the swarm task adds, the validator subtracts).
    pub pending_bytes: Arc<std::sync::atomic::AtomicUsize>,
}

/// Accepted message sizes inside the history window.
struct CacheBudget {
    limit: usize,
    window: Duration,
    held: VecDeque<(Instant, usize)>,
    total: usize,
}

impl CacheBudget {
    fn try_take(&mut self, n: usize, metrics: &Metrics) -> bool {
        let now = Instant::now();
        while let Some((at, len)) = self.held.front().copied() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            self.held.pop_front();
            self.total -= len;
        }
        let ok = self.total + n <= self.limit;
        if ok {
            self.held.push_back((now, n));
            self.total += n;
        }
        metrics
            .path
            .gossip_cache_bytes
            .set(i64::try_from(self.total).unwrap_or(i64::MAX));
        ok
    }
}

/// The outcome of one message before it is turned into a verdict.
enum Outcome {
    Accept,
    Reject(&'static str),
    Ignore(&'static str),
    /// Shutdown began: nothing more is judged.
    Stop,
}

impl Validator {
    /// Judges jobs until cancelled or the job channel closes; sends one verdict per job judged.
    /// Up to one message per core is judged at a time (parsing, the content id and the edge
    /// checks are CPU work; the order of verdicts does not matter to gossipsub).
    pub async fn run(self, mut jobs: mpsc::Receiver<Job>, verdicts: mpsc::Sender<Verdict>) {
        let budget = Arc::new(Mutex::new(CacheBudget {
            limit: self.cache_bytes,
            window: self.history,
            held: VecDeque::new(),
            total: 0,
        }));
        let width = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let slots = Arc::new(tokio::sync::Semaphore::new(width));
        let this = Arc::new(self);
        let mut running = tokio::task::JoinSet::new();
        loop {
            let job = tokio::select! {
                j = jobs.recv() => j,
                _ = this.cancel.cancelled() => None,
            };
            let Some(job) = job else { break };
            this.metrics.path.gossip_validation_queue.dec();
            this.pending_bytes
                .fetch_sub(job.data.len(), std::sync::atomic::Ordering::Relaxed);
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (v, budget, verdicts) = (this.clone(), budget.clone(), verdicts.clone());
            running.spawn(async move {
                let _slot = slot;
                v.judge_one(job, &budget, &verdicts).await;
            });
            // Reap finished tasks so the set stays small.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
        // Dropping the validator drops the buffer handle, so the drain is not held up by it.
    }

    async fn judge_one(
        &self,
        job: Job,
        budget: &Mutex<CacheBudget>,
        verdicts: &mpsc::Sender<Verdict>,
    ) {
        let len = job.data.len();
        let outcome = match self.judge(&job).await {
            Outcome::Accept
                if !budget
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .try_take(len, &self.metrics) =>
            {
                Outcome::Ignore("cache_budget")
            }
            o => o,
        };
        let acceptance = match outcome {
            Outcome::Accept => MessageAcceptance::Accept,
            Outcome::Reject(reason) => {
                self.metrics.reject(Reject::Gossip(reason));
                tracing::debug!(peer = %job.from, reason, "gossip message rejected");
                MessageAcceptance::Reject
            }
            Outcome::Ignore(reason) => {
                self.metrics.path.ignore(reason);
                MessageAcceptance::Ignore
            }
            // Shutdown: no verdict; gossipsub drops the message from its cache in time.
            Outcome::Stop => return,
        };
        let _ = verdicts
            .send(Verdict {
                id: job.id,
                from: job.from,
                topic: job.topic,
                acceptance,
            })
            .await;
    }

    /// One token per submission (at least one per message) from the sender's buckets.
    fn charge(&self, job: &Job, n: usize) -> Result<(), &'static str> {
        for _ in 0..n.max(1) {
            match self.gate.admit_message(&job.from, job.addr.as_ref()) {
                Admit::Now => {}
                Admit::Wait(_) => return Err("throttled"),
                Admit::Banned => return Err("banned"),
            }
        }
        Ok(())
    }

    async fn judge(&self, job: &Job) -> Outcome {
        let m = &self.metrics.path;
        if let Err(reason) = self.charge(job, 1) {
            return Outcome::Ignore(reason);
        }
        let (texts, mesh_formation) = match wire::parse(&job.data) {
            Err(e) => {
                m.reject(Path::Gossipsub, e.reason());
                return Outcome::Reject(e.reason());
            }
            Ok(GossipPayload::Heartbeat) => return Outcome::Ignore("heartbeat"),
            Ok(GossipPayload::Submissions {
                texts,
                mesh_formation,
            }) => (texts, mesh_formation),
        };
        for _ in 0..mesh_formation {
            m.ignore("mesh_formation");
        }
        if texts.is_empty() {
            // Only mesh-formation entries (their count is the ignore above).
            return Outcome::Ignore("mesh_formation_message");
        }
        if let Err(reason) = self.charge(job, texts.len() - 1) {
            return Outcome::Ignore(reason);
        }
        let peer = job.author.unwrap_or(job.from).to_string();
        let mut ready = Vec::with_capacity(texts.len());
        let mut foreign = 0;
        for text in texts {
            m.count(Path::Gossipsub, "received");
            let msg = match wire::queue_body(text) {
                Ok(msg) => msg,
                Err(e) => {
                    m.reject(Path::Gossipsub, e.reason());
                    return Outcome::Reject(e.reason());
                }
            };
            let meta = meta(&msg, &peer);
            if let Err(why) = crate::edge::check(&self.policy, &msg, &meta.attributes()) {
                if let crate::edge::EdgeReject::Market(_) = why {
                    m.count(Path::Gossipsub, "ignored");
                    m.ignore("foreign_market");
                    foreign += 1;
                    continue;
                }
                m.reject(Path::Gossipsub, why.as_str());
                tracing::debug!(peer = %job.from, reason = why.as_str(), error = %why, "gossip submission refused at the edge");
                return Outcome::Reject(why.as_str());
            }
            ready.push((msg, meta));
        }
        for (msg, meta) in ready {
            if let Some(first) = self.seen.observe(msg.submission_id, Path::Gossipsub) {
                m.duplicate(Path::Gossipsub, first);
            }
            let mut env = Envelope::new(msg.raw, meta);
            env.received_at = job.received_at;
            let pushed = tokio::select! {
                r = self.buffer.push(env) => r.is_ok(),
                _ = self.cancel.cancelled() => false,
            };
            if !pushed {
                m.ignore("shutdown");
                return Outcome::Stop;
            }
            m.count(Path::Gossipsub, "accepted");
        }
        if foreign > 0 {
            // Counted per submission above; the message is not vouched for.
            return Outcome::Ignore("foreign_market_message");
        }
        Outcome::Accept
    }
}

/// Message attributes of a gossiped submission: the content id is its submission id.
pub fn meta(msg: &CollectMessage, peer: &str) -> EnvelopeMeta {
    let s = &msg.submission;
    let id = msg.submission_id.hyphenated().to_string();
    EnvelopeMeta {
        submission_id: id.clone(),
        peer: peer.to_owned(),
        market: s.data_market.clone(),
        epoch: s.request.epoch_id,
        slot: s.request.slot_id,
        project: s.request.project_id.clone(),
        content_id: id,
        path: Path::Gossipsub.as_str().to_owned(),
        kind: String::new(),
    }
}
