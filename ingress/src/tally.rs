//! The ingress side of the close watermark (docs/protocol.md §4; the message is core's
//! [`sequencer_core::tally::Tally`]): this process's counts of the submissions it took in, per
//! market and epoch, sent through the submissions queue so the pipeline knows how many on-time
//! submissions each ingress replica handed over.
//!
//! - **Where a submission is counted**: in [`crate::dispatcher::BufferHandle::push`], the one
//!   point both paths (`/collect` and gossipsub) hand a submission to the dispatcher, at the
//!   moment it is accepted (after the edge checks and the buffer reservation; with a write-ahead
//!   log, once its line is fsynced). Refusals at the edge, pushes cut short by shutdown and WAL
//!   failures are never counted; a message later spilled is (it was taken in); a replayed record
//!   is not counted again (the boot that took it in counted it). Epoch 0 (simulations) is not
//!   counted.
//! - **Bounded**: per market only the newest [`MAX_TALLY_EPOCHS`] epochs are kept (an older
//!   epoch falls out); markets are the configured ones plus at most [`MAX_EXTRA_MARKETS`] others
//!   (only with `--any-market`; beyond them a market is not counted).
//! - **Sent** by [`spawn`]'s task, per market, as its own queue message (kind `tally`, built by
//!   [`envelope`]) straight through the sink: never through the buffer, the write-ahead log or
//!   the spill file, so a tally never waits behind submissions nor holds their room, and a lost
//!   one is simply superseded (tallies are cumulative). One is sent every
//!   [`TallySettings::interval`] while the counts changed since the last acknowledged one, and
//!   every [`TallySettings::heartbeat`] regardless (with an empty epoch list for a market with no
//!   counts yet). [`TallySender::finish`] sends the last one after the drain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequencer_core::tally::{Tally, MAX_TALLY_EPOCHS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::envelope::{Envelope, EnvelopeMeta};
use crate::metrics::Metrics;
use crate::sink::{EntryResult, SubmissionSink};

/// `EnvelopeMeta::kind` of a tally message (also its `kind` message attribute).
pub const KIND: &str = "tally";

/// Default interval of change-driven tallies (`INGRESS_TALLY_INTERVAL_MS`).
pub const INTERVAL: Duration = Duration::from_millis(1000);

/// Default heartbeat: a tally per market at least this often (`INGRESS_TALLY_HEARTBEAT_MS`).
pub const HEARTBEAT: Duration = Duration::from_millis(5000);

/// Longest wait for one tally call; past it the call counts as failed and the next tally
/// supersedes it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the last tallies after the drain: inside the module's smallest stop margin
/// (`stop_timeout_margin_secs` ≥ 5 s), with the spill's time.
pub const FINAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Markets counted beyond the configured ones (only `--any-market` lets others through the edge).
pub const MAX_EXTRA_MARKETS: usize = 16;

/// When tallies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TallySettings {
    /// A market's tally is sent at this interval while its counts changed since the last one the
    /// queue acknowledged. Zero: only heartbeats.
    pub interval: Duration,
    /// A tally per market at least this often, changed or not (the boot says it is alive).
    pub heartbeat: Duration,
}

impl Default for TallySettings {
    fn default() -> Self {
        Self {
            interval: INTERVAL,
            heartbeat: HEARTBEAT,
        }
    }
}

impl TallySettings {
    /// From the two settings in milliseconds; a zero heartbeat turns tallies off (`None`).
    pub fn from_millis(interval_ms: u64, heartbeat_ms: u64) -> Option<Self> {
        (heartbeat_ms > 0).then(|| Self {
            interval: Duration::from_millis(interval_ms),
            heartbeat: Duration::from_millis(heartbeat_ms),
        })
    }

    /// How often the sender wakes up.
    fn tick(&self) -> Duration {
        let t = if self.interval.is_zero() {
            self.heartbeat
        } else {
            self.interval.min(self.heartbeat)
        };
        t.max(Duration::from_millis(1))
    }
}

/// The market key of the tallies: lowercase `0x` hex (what core's `parse_address` reads), or the
/// value lowercased if it is no address (the edge lets none such through).
pub fn market_key(market: &str) -> String {
    match sequencer_core::submission::parse_address(market.trim()) {
        Some(a) => format!("0x{}", hex::encode(a.as_slice())),
        None => market.to_ascii_lowercase(),
    }
}

#[derive(Debug, Default, Clone)]
struct MarketCounts {
    /// Epoch → submissions taken in since the boot started.
    epochs: BTreeMap<u64, u64>,
    /// Bumped on every count: tells the sender whether anything changed.
    version: u64,
}

#[derive(Debug, Default)]
struct Inner {
    markets: BTreeMap<String, MarketCounts>,
    extra: usize,
    refused_markets: u64,
}

/// The per-market, per-epoch counts of one boot, shared by both paths (through the buffer) and
/// the sender.
#[derive(Debug, Default)]
pub struct TallyCounts {
    inner: Mutex<Inner>,
}

/// One market's counts at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSnapshot {
    /// Market key ([`market_key`]).
    pub market: String,
    /// Changes counted so far (compare with an earlier snapshot's).
    pub version: u64,
    /// `(epoch, count)`, oldest first, at most [`MAX_TALLY_EPOCHS`].
    pub epochs: Vec<(u64, u64)>,
}

impl TallyCounts {
    /// Counts for `configured` markets (each gets a tally, counted or not) and up to
    /// [`MAX_EXTRA_MARKETS`] others.
    pub fn new<I, S>(configured: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let markets = configured
            .into_iter()
            .map(|m| (market_key(m.as_ref()), MarketCounts::default()))
            .collect();
        Self {
            inner: Mutex::new(Inner {
                markets,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one submission of `market` (as sent) and `epoch` taken in. Epoch 0 (simulations)
    /// is not counted.
    pub fn count(&self, market: &str, epoch: u64) {
        if epoch == 0 {
            return;
        }
        let key = market_key(market);
        let mut g = self.lock();
        let inner = &mut *g;
        if !inner.markets.contains_key(&key) {
            if inner.extra >= MAX_EXTRA_MARKETS {
                inner.refused_markets += 1;
                if inner.refused_markets.is_power_of_two() {
                    tracing::warn!(market = %key, refused = inner.refused_markets, "too many markets to tally; this one's submissions are not counted");
                }
                return;
            }
            inner.extra += 1;
        }
        let m = inner.markets.entry(key).or_default();
        *m.epochs.entry(epoch).or_insert(0) += 1;
        while m.epochs.len() > MAX_TALLY_EPOCHS {
            m.epochs.pop_first();
        }
        m.version += 1;
    }

    /// Every market's counts now.
    pub fn snapshot(&self) -> Vec<MarketSnapshot> {
        self.lock()
            .markets
            .iter()
            .map(|(market, c)| MarketSnapshot {
                market: market.clone(),
                version: c.version,
                epochs: c.epochs.iter().map(|(e, n)| (*e, *n)).collect(),
            })
            .collect()
    }

    /// Submissions of `market` and `epoch` counted so far (tests, logs).
    pub fn get(&self, market: &str, epoch: u64) -> u64 {
        self.lock()
            .markets
            .get(&market_key(market))
            .and_then(|m| m.epochs.get(&epoch).copied())
            .unwrap_or(0)
    }
}

/// The queue message of `tally`: its body ([`Tally::to_body`]) with attributes `kind=tally` and
/// the market; no buffer reservation, no durable copy.
pub fn envelope(tally: &Tally) -> Envelope {
    Envelope::new(
        tally.to_body().into_bytes(),
        EnvelopeMeta {
            market: tally.market.clone(),
            kind: KIND.to_owned(),
            ..EnvelopeMeta::default()
        },
    )
}

/// A fresh boot id: a random UUID v4.
pub fn new_boot_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(1)
        .max(1)
}

#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    /// Version of the counts the last acknowledged tally carried.
    acked: Option<u64>,
    /// When the last tally was attempted.
    last: Option<Instant>,
}

/// Sends one boot's tallies through a sink.
pub struct TallySender {
    boot: String,
    seq: AtomicU64,
    counts: Arc<TallyCounts>,
    sink: Arc<dyn SubmissionSink>,
    metrics: Metrics,
    settings: TallySettings,
    sent: Mutex<BTreeMap<String, Sent>>,
    /// Set by [`TallySender::finish`]: the tallies sent from then on say they are the last.
    finished: std::sync::atomic::AtomicBool,
}

/// Outcome of one tally call (the `outcome` label of `ingress_tallies_sent_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The queue took it.
    Ok,
    /// The call failed or timed out, or the queue asked for a retry: the next tally supersedes it.
    Failed,
    /// The queue refused the message itself (should never happen: the body is plain JSON).
    Rejected,
}

impl SendOutcome {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Ok => "ok",
            SendOutcome::Failed => "failed",
            SendOutcome::Rejected => "rejected",
        }
    }
}

impl TallySender {
    /// A sender for a new boot (a fresh random boot id).
    pub fn new(
        counts: Arc<TallyCounts>,
        sink: Arc<dyn SubmissionSink>,
        metrics: Metrics,
        settings: TallySettings,
    ) -> Self {
        Self {
            boot: new_boot_id(),
            seq: AtomicU64::new(0),
            counts,
            sink,
            metrics,
            settings,
            sent: Mutex::new(BTreeMap::new()),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This boot's id.
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// The counts this sender reports.
    pub fn counts(&self) -> &Arc<TallyCounts> {
        &self.counts
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Sent>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the tallies due now (`all`: every market's, as at the end of the drain).
    pub async fn send_due(&self, all: bool) {
        let now = Instant::now();
        let due: Vec<MarketSnapshot> = {
            let sent = self.sent();
            self.counts
                .snapshot()
                .into_iter()
                .filter(|m| {
                    let s = sent.get(&m.market).copied().unwrap_or_default();
                    let changed = s.acked != Some(m.version) && m.version > 0;
                    let heartbeat = s.last.is_none_or(|t| {
                        now.saturating_duration_since(t) >= self.settings.heartbeat
                    });
                    all || heartbeat || (changed && !self.settings.interval.is_zero())
                })
                .collect()
        };
        for m in due {
            let outcome = self.send_one(&m).await;
            let mut sent = self.sent();
            let s = sent.entry(m.market).or_default();
            s.last = Some(now);
            if outcome == SendOutcome::Ok {
                s.acked = Some(m.version);
            }
        }
    }

    /// Sends one tally of `m` (the next `seq` of this boot); never retried.
    async fn send_one(&self, m: &MarketSnapshot) -> SendOutcome {
        let tally = Tally {
            market: m.market.clone(),
            boot: self.boot.clone(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            at_ms: now_ms(),
            epochs: m.epochs.clone(),
            last: self.finished.load(Ordering::SeqCst),
        };
        let batch = [envelope(&tally)];
        let outcome = match tokio::time::timeout(SEND_TIMEOUT, self.sink.send_batch(&batch)).await {
            Ok(Ok(r)) => match r.first() {
                Some(EntryResult::Ok) => SendOutcome::Ok,
                Some(EntryResult::Reject(why)) => {
                    tracing::error!(market = %m.market, reason = %why, "queue refused a tally");
                    SendOutcome::Rejected
                }
                Some(EntryResult::Retry(_)) | None => SendOutcome::Failed,
            },
            Ok(Err(e)) => {
                tracing::debug!(market = %m.market, error = %e, "tally not sent; the next one supersedes it");
                SendOutcome::Failed
            }
            Err(_) => SendOutcome::Failed,
        };
        self.metrics
            .tallies_sent
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
        outcome
    }

    /// The last tallies of the boot, after the buffer is drained: every market's final counts.
    /// The caller bounds it ([`FINAL_TIMEOUT`]).
    pub async fn finish(&self) {
        // The drain is over: these tallies are the boot's last (the tick stops waiting for it).
        self.finished.store(true, Ordering::SeqCst);
        self.send_due(true).await;
    }
}

/// The sender's task: wakes every [`TallySettings::interval`] (or heartbeat) and sends what is
/// due until `stop`; a call in progress is abandoned at `stop` (the final tally follows).
pub fn spawn(sender: Arc<TallySender>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sender.settings.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sender.send_due(false) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::memory::MemorySink;

    const M: &str = "0x00000000000000000000000000000000000000AA";
    const K: &str = "0x00000000000000000000000000000000000000aa";

    fn tallies(sink: &MemorySink) -> Vec<Tally> {
        sink.messages()
            .into_iter()
            .filter(|m| m.meta.kind == KIND)
            .map(|m| Tally::parse(&m.body).expect("a tally body"))
            .collect()
    }

    #[test]
    fn counts_per_market_and_epoch_bounded_and_not_epoch_zero() {
        let c = TallyCounts::new([M]);
        c.count(M, 7);
        c.count("00000000000000000000000000000000000000aa", 7);
        c.count(M, 0);
        assert_eq!(c.get(K, 7), 2);
        assert_eq!(c.get(K, 0), 0);
        for e in 100..100 + MAX_TALLY_EPOCHS as u64 {
            c.count(M, e);
        }
        let s = c.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].market, K);
        assert_eq!(s[0].epochs.len(), MAX_TALLY_EPOCHS);
        assert_eq!(c.get(K, 7), 0, "the oldest epoch fell out");
        assert_eq!(s[0].epochs[0], (100, 1));
    }

    #[test]
    fn markets_beyond_the_cap_are_not_counted() {
        let c = TallyCounts::new([M]);
        for i in 0..MAX_EXTRA_MARKETS + 3 {
            c.count(&format!("0x{:040x}", i + 1), 5);
        }
        c.count(M, 5);
        assert_eq!(c.snapshot().len(), 1 + MAX_EXTRA_MARKETS);
        assert_eq!(c.get(M, 5), 1, "the configured market is always counted");
    }

    #[test]
    fn a_tally_message_is_valid_for_the_queue() {
        let t = Tally {
            market: K.into(),
            boot: new_boot_id(),
            seq: 1,
            at_ms: now_ms(),
            epochs: vec![(3, 4)],
            last: false,
        };
        let env = envelope(&t);
        assert_eq!(
            env.attributes(),
            vec![("kind", "tally".to_owned()), ("market", K.to_owned())]
        );
        let body = std::str::from_utf8(&env.raw).expect("utf-8");
        assert!(body.chars().all(crate::edge::is_sqs_char));
        assert_eq!(Tally::parse(body.as_bytes()).expect("parse"), t);
        assert_eq!(
            uuid::Uuid::parse_str(&t.boot).map(|u| u.get_version_num()),
            Ok(4)
        );
    }

    fn sender(sink: &Arc<MemorySink>, metrics: &Metrics, s: TallySettings) -> TallySender {
        TallySender::new(
            Arc::new(TallyCounts::new([M])),
            sink.clone(),
            metrics.clone(),
            s,
        )
    }

    #[tokio::test]
    async fn sends_on_change_and_as_heartbeat_with_increasing_seq_and_cumulative_counts() {
        let sink = Arc::new(MemorySink::new());
        let s = sender(
            &sink,
            &Metrics::new(),
            TallySettings {
                interval: Duration::from_secs(1),
                heartbeat: Duration::from_millis(300),
            },
        );
        // First: a heartbeat with no counts yet (the boot is alive).
        s.send_due(false).await;
        let t = tallies(&sink);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].seq, t[0].epochs.clone()), (1, vec![]));
        assert_eq!(t[0].market, K);
        // Unchanged, heartbeat not due: nothing.
        s.send_due(false).await;
        assert_eq!(tallies(&sink).len(), 1);
        s.counts().count(M, 9);
        s.counts().count(M, 9);
        s.send_due(false).await;
        let t = tallies(&sink);
        assert_eq!(
            (t[1].seq, t[1].epochs.clone()),
            (2, vec![(9, 2)]),
            "a change"
        );
        s.send_due(false).await;
        assert_eq!(tallies(&sink).len(), 2, "acknowledged: not again");
        s.counts().count(M, 10);
        s.send_due(false).await;
        assert_eq!(
            tallies(&sink)[2].epochs,
            vec![(9, 2), (10, 1)],
            "cumulative"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        s.send_due(false).await;
        let t = tallies(&sink);
        assert_eq!(t.len(), 4, "a heartbeat with no change");
        assert_eq!(t[3].epochs, vec![(9, 2), (10, 1)]);
        assert!(t.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert!(t.windows(2).all(|w| w[1].at_ms >= w[0].at_ms));
        assert!(t.iter().all(|x| x.boot == s.boot()));
    }

    #[tokio::test]
    async fn the_task_sends_a_change_within_the_interval_and_stops() {
        let sink = Arc::new(MemorySink::new());
        let s = Arc::new(sender(
            &sink,
            &Metrics::new(),
            TallySettings {
                interval: Duration::from_millis(20),
                heartbeat: Duration::from_secs(60),
            },
        ));
        let stop = CancellationToken::new();
        let task = spawn(s.clone(), stop.clone());
        s.counts().count(M, 3);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tallies(&sink).last().map(|t| t.count(3)) != Some(1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(tallies(&sink).last().map(|t| t.count(3)), Some(1));
        stop.cancel();
        task.await.expect("task");
        let n = tallies(&sink).len();
        s.finish().await;
        let t = tallies(&sink);
        assert_eq!(t.len(), n + 1, "the last tally after the task");
        assert_eq!(t[n].seq, t[n - 1].seq + 1);
    }

    #[tokio::test]
    async fn a_failed_tally_is_superseded_by_the_next_with_the_full_counts() {
        let sink = Arc::new(MemorySink::new());
        let metrics = Metrics::new();
        let s = sender(&sink, &metrics, TallySettings::default());
        let outcome = |o: &str| metrics.tallies_sent.get_or_create(&[("outcome", o)]).get();
        sink.set_down(true);
        s.counts().count(M, 4);
        s.send_due(false).await;
        s.send_due(false).await;
        assert!(tallies(&sink).is_empty());
        assert_eq!(outcome("failed"), 2, "tried again while not acknowledged");
        s.counts().count(M, 4);
        sink.set_down(false);
        s.send_due(false).await;
        let t = tallies(&sink);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].epochs, vec![(4, 2)], "the full counts");
        assert_eq!(t[0].seq, 3, "failed tallies used their seq too");
        s.send_due(false).await;
        assert_eq!(
            tallies(&sink).len(),
            1,
            "acknowledged: no resend before the heartbeat"
        );
        assert_eq!(outcome("ok"), 1);
    }
}
