//! The bounded buffer between stream readers and the queue, and the loop that empties it:
//! batches of up to 10 entries / 256 KiB with a short linger, several calls in flight, jittered
//! exponential backoff on failures, per-entry retries, and a drain deadline after which what the
//! queue has not taken is spilled to a local file (see [`crate::spill`]).
//!
//! Backpressure: the buffer is bounded in bytes by a semaphore. A reader that cannot reserve room
//! waits, so it stops reading its stream, yamux/QUIC flow control stops the peer's writes, and
//! nothing accepted is ever dropped. A reservation is released only when the queue acknowledged
//! the message (or it was spilled/rejected to a file).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::envelope::{Envelope, Hold};
use crate::metrics::Metrics;
use crate::reject::Reject;
use crate::sink::{EntryResult, SubmissionSink, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};
use crate::spill::{SpillRecord, SpillWriter};
use crate::tally::TallyCounts;
use crate::wal::Wal;

/// How long the first message of a batch waits for company. 20 ms adds little latency (the p99
/// target is 50 ms) and, at ≥ 500 msg/s, fills batches of 10, cutting SQS calls (and cost) 10×.
pub const LINGER: Duration = Duration::from_millis(20);

/// Batch calls in flight at once. One SendMessageBatch takes ~10–30 ms in-region, so 32 calls
/// carry > 10 000 msg/s per replica; more would mostly add throttling.
pub const MAX_IN_FLIGHT: usize = 32;

/// First retry delay; doubled per attempt, with full jitter, up to [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Longest retry delay: keeps recovery quick once the queue is back.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Drain deadline after SIGTERM. ECS sends SIGKILL 30 s after SIGTERM by default; 20 s leaves time
/// to write the spill file and exit.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Entries per call (≤ 10).
    pub max_entries: usize,
    /// Bytes per call (≤ 256 KiB).
    pub max_batch_bytes: usize,
    /// Linger for a partial batch.
    pub linger: Duration,
    /// Calls in flight.
    pub max_in_flight: usize,
    /// Buffer bound in bytes.
    pub buffer_bytes: usize,
    /// Backoff start.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_entries: MAX_BATCH_ENTRIES,
            max_batch_bytes: MAX_BATCH_BYTES,
            linger: LINGER,
            max_in_flight: MAX_IN_FLIGHT,
            buffer_bytes: crate::limits::BUFFER_BYTES,
            backoff_base: BACKOFF_BASE,
            backoff_max: BACKOFF_MAX,
        }
    }
}

/// Records read→enqueued latencies in microseconds (simulator, benchmarks).
pub type LatencyLog = Arc<Mutex<Vec<u32>>>;

/// The buffer is closed (shutdown).
#[derive(Debug, thiserror::Error)]
#[error("buffer closed")]
pub struct BufferClosed;

/// Writer side of the buffer; cheap to clone, one per reader.
#[derive(Clone)]
pub struct BufferHandle {
    permits: Arc<Semaphore>,
    capacity: usize,
    tx: mpsc::UnboundedSender<Envelope>,
    metrics: Metrics,
    wal: Option<Arc<Wal>>,
    tallies: Option<Arc<TallyCounts>>,
}

impl BufferHandle {
    /// Also count every message this buffer accepts into `tallies` (per market and epoch, see
    /// [`crate::tally`]); set before the handle is cloned for the readers.
    pub fn with_tallies(mut self, tallies: Arc<TallyCounts>) -> Self {
        self.tallies = Some(tallies);
        self
    }

    /// Reserves room for `env` (waiting while the buffer is full) and queues it.
    /// Once this returns `Ok`, the message is accepted: it reaches the queue or a spill file.
    /// With a write-ahead log (and no durable copy yet, i.e. not a replayed record), `Ok` means
    /// it is queued for the next group commit: it is accepted (counted, and handed to the
    /// dispatcher) only once it is fsynced; a failed commit drops it, counted as `wal_failed`.
    ///
    /// The point of acceptance is also where the submission is *taken in* for the tallies: it is
    /// counted there, once, unless it is a replayed record (the boot that first accepted it
    /// counted it; a replay is not a new submission).
    pub async fn push(&self, mut env: Envelope) -> Result<(), BufferClosed> {
        let replayed = env.is_durable();
        let want = env.buffer_cost().clamp(1, self.capacity);
        let n = u32::try_from(want).unwrap_or(u32::MAX);
        let permit = match self.permits.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.metrics.backpressure_waits.inc();
                self.permits
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| BufferClosed)?
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(BufferClosed),
        };
        let bytes = i64::try_from(want).unwrap_or(i64::MAX);
        self.metrics.buffer_messages.inc();
        self.metrics.buffer_bytes.inc_by(bytes);
        env.hold = Some(Hold {
            _permit: permit,
            bytes,
            buffer_messages: self.metrics.buffer_messages.clone(),
            buffer_bytes: self.metrics.buffer_bytes.clone(),
        });
        if let (Some(wal), false) = (&self.wal, env.is_durable()) {
            let (tx, metrics) = (self.tx.clone(), self.metrics.clone());
            let tallies = self.tallies.clone();
            let line = Wal::line(&env);
            let submitted = wal.submit(
                line,
                Box::new(move |committed| {
                    let mut env = env;
                    match committed {
                        Ok(segment) => {
                            env.add_ticket(segment.ticket());
                            let key = tallies.as_ref().map(|_| tally_key(&env));
                            if tx.send(env).is_ok() {
                                metrics.messages_accepted.inc();
                                if let (Some(t), Some((market, epoch))) = (&tallies, key) {
                                    t.count(&market, epoch);
                                }
                            } else {
                                // Dispatcher gone (shutdown): not accepted; its line is replayed.
                                metrics.reject(Reject::ShutdownBeforeAccept);
                            }
                        }
                        Err(e) => {
                            // Not on disk, so not accepted; dropping it frees its buffer room.
                            tracing::error!(error = %e, "write-ahead log commit failed; message refused");
                            metrics.reject(Reject::WalFailed);
                        }
                    }
                }),
            );
            return submitted.map_err(|e| {
                tracing::error!(error = %e, "write-ahead log unavailable; message refused");
                self.metrics.reject(Reject::WalFailed);
                BufferClosed
            });
        }
        let key = match (&self.tallies, replayed) {
            (Some(_), false) => Some(tally_key(&env)),
            _ => None,
        };
        self.tx.send(env).map_err(|_| BufferClosed)?;
        self.metrics.messages_accepted.inc();
        if let (Some(t), Some((market, epoch))) = (&self.tallies, key) {
            t.count(&market, epoch);
        }
        Ok(())
    }

    /// Bytes that can still be reserved without waiting.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// What a tally counts an accepted envelope under.
fn tally_key(env: &Envelope) -> (String, u64) {
    (env.meta.market.clone(), env.meta.epoch)
}

/// What the dispatcher did by the time it returned.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Messages acknowledged by the queue.
    pub enqueued: u64,
    /// Messages written to the spill file.
    pub spilled: u64,
    /// Messages written to the rejected file.
    pub rejected: u64,
    /// Messages that could not even be spilled (file system error); logged loudly.
    pub lost: u64,
    /// The dispatcher task panicked: the counts above are incomplete and messages may be lost
    /// (a write-ahead log, if on, still holds them).
    pub failed: bool,
}

/// Reader side: empties the buffer into a sink.
pub struct Dispatcher {
    rx: mpsc::UnboundedReceiver<Envelope>,
    cfg: DispatcherConfig,
    metrics: Metrics,
    spill: Arc<SpillWriter>,
    rejected: Arc<SpillWriter>,
    latency: Option<LatencyLog>,
}

/// Creates the buffer and its dispatcher. `spill_path` receives what is left at the deadline;
/// `<spill_path>.rejected.jsonl` what the queue refuses as malformed.
pub fn buffer(
    cfg: DispatcherConfig,
    metrics: Metrics,
    spill_path: &std::path::Path,
) -> (BufferHandle, Dispatcher) {
    buffer_with_wal(cfg, metrics, spill_path, None)
}

/// Like [`buffer`], and every accepted message is first appended to `wal`.
pub fn buffer_with_wal(
    cfg: DispatcherConfig,
    metrics: Metrics,
    spill_path: &std::path::Path,
    wal: Option<Arc<Wal>>,
) -> (BufferHandle, Dispatcher) {
    let (tx, rx) = mpsc::unbounded_channel();
    let capacity = cfg.buffer_bytes.clamp(1, Semaphore::MAX_PERMITS);
    let handle = BufferHandle {
        permits: Arc::new(Semaphore::new(capacity)),
        capacity,
        tx,
        metrics: metrics.clone(),
        wal,
        tallies: None,
    };
    let mut rejected_path = spill_path.as_os_str().to_owned();
    rejected_path.push(".rejected.jsonl");
    let d = Dispatcher {
        rx,
        cfg,
        metrics,
        spill: Arc::new(SpillWriter::new(spill_path)),
        rejected: Arc::new(SpillWriter::new(std::path::PathBuf::from(rejected_path))),
        latency: None,
    };
    (handle, d)
}

struct Shared {
    sink: Arc<dyn SubmissionSink>,
    metrics: Metrics,
    spill: Arc<SpillWriter>,
    rejected: Arc<SpillWriter>,
    latency: Option<LatencyLog>,
    cfg: DispatcherConfig,
    report: Mutex<DrainReport>,
}

impl Dispatcher {
    /// Also record every read→enqueued latency into `log`.
    pub fn with_latency_log(mut self, log: LatencyLog) -> Self {
        self.latency = Some(log);
        self
    }

    /// Runs until the buffer is closed (every [`BufferHandle`] dropped) and empty, and every
    /// call has finished. Once `deadline` holds a time, nothing is retried past it: what is left
    /// then goes to the spill file.
    pub async fn run(
        mut self,
        sink: Arc<dyn SubmissionSink>,
        deadline: watch::Receiver<Option<Instant>>,
    ) -> DrainReport {
        let shared = Arc::new(Shared {
            sink,
            metrics: self.metrics.clone(),
            spill: self.spill.clone(),
            rejected: self.rejected.clone(),
            latency: self.latency.clone(),
            cfg: self.cfg.clone(),
            report: Mutex::new(DrainReport::default()),
        });
        let in_flight = Arc::new(Semaphore::new(self.cfg.max_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        let mut carry: Option<Envelope> = None;
        loop {
            while tasks.try_join_next().is_some() {}
            let first = match carry.take() {
                Some(e) => e,
                None => match self.rx.recv().await {
                    Some(e) => e,
                    None => break,
                },
            };
            if passed(&deadline) {
                // Past the deadline nothing more is sent: spill everything still buffered in one
                // append (one fsync), not batch by batch, so a full buffer spills in well under
                // a second instead of thousands of small synced writes.
                let mut rest = vec![first];
                while let Ok(e) = self.rx.try_recv() {
                    rest.push(e);
                }
                spill(&shared, rest);
                continue;
            }
            let mut bytes = first.wire_size();
            let mut batch = vec![first];
            let linger_until = Instant::now() + self.cfg.linger;
            while batch.len() < self.cfg.max_entries {
                let next = match self.rx.try_recv() {
                    Ok(e) => Some(e),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Linger over: send what we have.
                        tokio::time::timeout_at(linger_until, self.rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                };
                let Some(e) = next else { break };
                let size = e.wire_size();
                if bytes + size > self.cfg.max_batch_bytes {
                    carry = Some(e);
                    break;
                }
                bytes += size;
                batch.push(e);
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let shared = shared.clone();
            let deadline = deadline.clone();
            tasks.spawn(async move {
                send_with_retry(&shared, batch, deadline).await;
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        let report = report(&shared).clone();
        report
    }
}

/// The report, even if a task panicked while holding it (the counts it has are still true and
/// the panic itself is reported by the join).
fn report(shared: &Shared) -> MutexGuard<'_, DrainReport> {
    shared.report.lock().unwrap_or_else(|p| {
        tracing::error!("drain report lock poisoned by a panicked send task");
        p.into_inner()
    })
}

fn passed(deadline: &watch::Receiver<Option<Instant>>) -> bool {
    deadline.borrow().is_some_and(|d| Instant::now() >= d)
}

fn backoff(cfg: &DispatcherConfig, attempt: u32) -> Duration {
    let exp = cfg.backoff_base.saturating_mul(1u32 << attempt.min(16));
    let cap = exp.min(cfg.backoff_max);
    // Full jitter: spreads retries of many replicas and calls after a shared outage.
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

async fn send_with_retry(
    shared: &Shared,
    mut pending: Vec<Envelope>,
    mut deadline: watch::Receiver<Option<Instant>>,
) {
    let mut attempt: u32 = 0;
    loop {
        if passed(&deadline) {
            spill(shared, pending);
            return;
        }
        let started = Instant::now();
        let limit = *deadline.borrow();
        let call = shared.sink.send_batch(&pending);
        let outcome = match limit {
            Some(d) => tokio::time::timeout_at(d, call).await.ok(),
            None => Some(call.await),
        };
        let Some(result) = outcome else {
            // The deadline cut the call short; its outcome is unknown, so spill (at least once).
            spill(shared, pending);
            return;
        };
        let elapsed = started.elapsed().as_secs_f64();
        match result {
            Ok(results) => {
                shared
                    .metrics
                    .sink_call_seconds
                    .get_or_create(&[("outcome", "ok")])
                    .observe(elapsed);
                let mut retry = Vec::new();
                let mut rejected = Vec::new();
                let mut rejected_envs = Vec::new();
                let mut acked = 0u64;
                let now = Instant::now();
                for (env, res) in pending.into_iter().zip(
                    results
                        .into_iter()
                        .chain(std::iter::repeat(EntryResult::Retry("missing_result"))),
                ) {
                    match res {
                        EntryResult::Ok => {
                            let lat =
                                now.saturating_duration_since(Instant::from_std(env.received_at));
                            shared
                                .metrics
                                .read_to_enqueued_seconds
                                .observe(lat.as_secs_f64());
                            if let Some(log) = &shared.latency {
                                log.lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(u32::try_from(lat.as_micros()).unwrap_or(u32::MAX));
                            }
                            let mut env = env;
                            env.settle();
                            acked += 1;
                        }
                        EntryResult::Retry(reason) => {
                            shared
                                .metrics
                                .sink_retries
                                .get_or_create(&[("reason", reason)])
                                .inc();
                            retry.push(env);
                        }
                        EntryResult::Reject(why) => {
                            tracing::error!(submission_id = %env.meta.submission_id, peer = %env.meta.peer, reason = %why, "queue rejected message; written to the rejected file");
                            rejected.push(SpillRecord::from_envelope(&env, Some(why)));
                            rejected_envs.push(env);
                        }
                    }
                }
                shared.metrics.messages_enqueued.inc_by(acked);
                if !rejected.is_empty() {
                    shared
                        .metrics
                        .rejects
                        .get_or_create(&[("reason", Reject::QueueRejected.as_str())])
                        .inc_by(rejected.len() as u64);
                    let n = rejected.len() as u64;
                    let written = shared.rejected.append(&rejected);
                    let mut r = report(shared);
                    match written {
                        Ok(()) => {
                            r.rejected += n;
                            rejected_envs.iter_mut().for_each(Envelope::settle);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not write rejected messages");
                            r.lost += n;
                        }
                    }
                }
                report(shared).enqueued += acked;
                pending = retry;
                if pending.is_empty() {
                    return;
                }
            }
            Err(e) => {
                shared
                    .metrics
                    .sink_call_seconds
                    .get_or_create(&[("outcome", "error")])
                    .observe(elapsed);
                shared
                    .metrics
                    .sink_retries
                    .get_or_create(&[("reason", e.reason())])
                    .inc();
                if attempt == 0 || attempt.is_power_of_two() {
                    tracing::warn!(sink = shared.sink.name(), error = %e, attempt, messages = pending.len(), "queue call failed; retrying");
                }
            }
        }
        let wait = backoff(&shared.cfg, attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = deadline.changed() => {
                // Sender gone: no deadline will come; just wait out the backoff.
                if changed.is_err() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

fn spill(shared: &Shared, mut pending: Vec<Envelope>) {
    if pending.is_empty() {
        return;
    }
    let records: Vec<SpillRecord> = pending
        .iter()
        .map(|e| SpillRecord::from_envelope(e, None))
        .collect();
    let n = records.len() as u64;
    let written = shared.spill.append(&records);
    let mut r = report(shared);
    match written {
        Ok(()) => {
            r.spilled += n;
            shared.metrics.messages_spilled.inc_by(n);
            pending.iter_mut().for_each(Envelope::settle);
            tracing::warn!(file = %shared.spill.path().display(), messages = n, "drain deadline passed; spilled for replay on next start");
        }
        Err(e) => {
            r.lost += n;
            shared
                .metrics
                .rejects
                .get_or_create(&[("reason", Reject::SpillFailed.as_str())])
                .inc_by(n);
            // Unsettled: a write-ahead log or replayed file holding them is kept for next start.
            tracing::error!(error = %e, messages = n, "could not spill messages: lost unless a write-ahead log holds them");
        }
    }
    drop(r);
    drop(pending);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EnvelopeMeta;
    use crate::sink::memory::MemorySink;

    fn env(i: usize) -> Envelope {
        let meta = EnvelopeMeta {
            submission_id: format!("id-{i}"),
            peer: "p".into(),
            project: "x".into(),
            ..Default::default()
        };
        Envelope::new(format!("{i:036}{{}}").into_bytes(), meta)
    }

    #[derive(Debug)]
    struct NoFile;
    impl crate::envelope::Settlement for NoFile {
        fn release(&self, _settled: bool) {}
    }

    fn at(epoch: u64, market: &str) -> Envelope {
        let mut e = env(epoch as usize);
        e.meta.epoch = epoch;
        e.meta.market = market.to_owned();
        e
    }

    const MARKET: &str = "0x00000000000000000000000000000000000000Aa";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accepted_messages_are_tallied_once_and_replays_refusals_and_epoch_zero_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let tallies = Arc::new(TallyCounts::new([MARKET]));
        let cfg = DispatcherConfig {
            buffer_bytes: 4096,
            ..DispatcherConfig::default()
        };
        let (handle, d) = buffer(cfg, Metrics::new(), &dir.path().join("s.jsonl"));
        let handle = handle.with_tallies(tallies.clone());
        for _ in 0..3 {
            handle.push(at(5, MARKET)).await.expect("push");
        }
        handle.push(at(0, MARKET)).await.expect("push");
        let mut replayed = at(5, MARKET);
        replayed.add_ticket(crate::envelope::Ticket::new(Arc::new(NoFile)));
        handle.push(replayed).await.expect("push");
        assert_eq!(tallies.get(MARKET, 5), 3, "a replay is not counted again");
        assert_eq!(tallies.get(MARKET, 0), 0, "simulations are not counted");
        // The buffer is full (nothing drains it): a push that cannot get in is not counted.
        let mut big = at(6, MARKET);
        big.raw = vec![b'x'; 4000];
        let waited = tokio::time::timeout(Duration::from_millis(200), handle.push(big)).await;
        assert!(waited.is_err(), "backpressure");
        assert_eq!(tallies.get(MARKET, 6), 0);
        // Closed (the dispatcher is gone): refused, not counted.
        drop(d);
        assert!(handle.push(at(7, MARKET)).await.is_err());
        assert_eq!(tallies.get(MARKET, 7), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_wal_a_message_is_tallied_once_its_line_is_committed() {
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = Metrics::new();
        let (wal, _) = Wal::open(&dir.path().join("wal"), metrics.wal.clone()).expect("wal");
        let tallies = Arc::new(TallyCounts::new([MARKET]));
        let (handle, d) = buffer_with_wal(
            DispatcherConfig::default(),
            metrics.clone(),
            &dir.path().join("s.jsonl"),
            Some(Arc::new(wal)),
        );
        let handle = handle.with_tallies(tallies.clone());
        let sink = Arc::new(MemorySink::new());
        let (_tx, rx) = watch::channel(None);
        let run = tokio::spawn(d.run(sink.clone(), rx));
        for _ in 0..4 {
            handle.push(at(9, MARKET)).await.expect("push");
        }
        assert_eq!(sink.wait_for(4, Duration::from_secs(10)).await, 4);
        assert_eq!(tallies.get(MARKET, 9), 4);
        assert_eq!(metrics.messages_accepted.get(), 4);
        drop(handle);
        run.await.expect("dispatcher");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_respect_entry_limit_and_retry_entries() {
        let dir = tempfile::tempdir().expect("tmp");
        let sink = Arc::new(MemorySink::new());
        sink.fail_first_entry_of_next_calls(3);
        let (handle, d) = buffer(
            DispatcherConfig::default(),
            Metrics::new(),
            &dir.path().join("s.jsonl"),
        );
        let (_tx, rx) = watch::channel(None);
        let run = tokio::spawn(d.run(sink.clone(), rx));
        for i in 0..95 {
            handle.push(env(i)).await.expect("push");
        }
        drop(handle);
        let report = run.await.expect("dispatcher");
        assert_eq!(
            report,
            DrainReport {
                enqueued: 95,
                ..Default::default()
            }
        );
        assert_eq!(sink.len(), 95);
        // 95 messages need at least 10 calls of ≤ 10, plus the retried entries.
        assert!(sink.calls() >= 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_buffer_past_the_deadline_spills_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("s.jsonl");
        let sink = Arc::new(MemorySink::new());
        sink.set_down(true);
        let metrics = Metrics::new();
        let (handle, d) = buffer(DispatcherConfig::default(), metrics.clone(), &path);
        let (tx, rx) = watch::channel(None);
        let run = tokio::spawn(d.run(sink.clone(), rx));
        for i in 0..20_000 {
            handle.push(env(i)).await.expect("push");
        }
        drop(handle);
        let started = Instant::now();
        tx.send(Some(Instant::now() + Duration::from_millis(200)))
            .expect("deadline");
        let report = run.await.expect("dispatcher");
        assert_eq!(report.spilled, 20_000);
        assert_eq!(report.enqueued + report.lost, 0);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "spilled in {:?}",
            started.elapsed()
        );
        assert_eq!(crate::spill::read_file(&path).expect("read").len(), 20_000);
        assert_eq!(metrics.buffer_messages.get(), 0, "buffer released");
    }
}
