//! Metrics of the ingress, recorded through the `metrics` facade into a Prometheus recorder
//! (`metrics-exporter-prometheus`) that `/metrics` renders. Labels are labels: one family per
//! metric, e.g. `ingress_rejects_total{reason}`.
//!
//! Each [`Metrics`] owns its own recorder instead of installing a global one, so several ingresses
//! in one process (the runner, tests, the load generator) keep their numbers apart. The handles
//! keep the small API the rest of the crate uses (`inc`, `set`, `observe`, `get_or_create`);
//! recording goes through `metrics::Counter`/`Gauge`/`Histogram`, and reading a value back
//! (`get`, for tests, the simulator and the drain report) parses the exporter's own rendering, so
//! what a test sees is what Prometheus scrapes.
//!
//! Every place that drops or refuses something increments `ingress_rejects_total{reason}`
//! (reasons: [`crate::reject::Reject`]); nothing is dropped silently (docs/protocol.md §5).

use std::sync::Arc;

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::reject::Reject;

/// Label set with one static label, e.g. `[("reason", "oversize")]`.
pub type StaticLabel = [(&'static str, &'static str); 1];

/// Buckets of the latency histograms: 0.25 ms .. ~8 s (×2), covering in-memory enqueue (sub-ms)
/// up to SQS calls retried under throttling.
fn latency_buckets() -> Vec<f64> {
    (0..16).map(|i| 0.000_25 * f64::powi(2.0, i)).collect()
}

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The recorder one [`Metrics`] writes to and the handle `/metrics` renders.
struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    fn new() -> Arc<Self> {
        let builder = [
            "ingress_sink_call_seconds",
            "ingress_read_to_enqueued_seconds",
        ]
        .into_iter()
        .fold(PrometheusBuilder::new(), |b, name| {
            match b.set_buckets_for_metric(Matcher::Full(name.into()), &latency_buckets()) {
                Ok(b) => b,
                // Only an empty bucket list is refused; ours is a constant of 16.
                Err(_) => PrometheusBuilder::new(),
            }
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Arc::new(Self { recorder, handle })
    }

    fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect();
        Key::from_parts(name, labels)
    }

    /// The value of one series in the exporter's rendering (0 if it has none yet).
    fn value(&self, name: &str, labels: &[(&'static str, String)]) -> f64 {
        let text = self.handle.render();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (n, rendered) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                continue;
            }
            let mut got: Vec<(&str, &str)> = rendered
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once("=\""))
                .map(|(k, v)| (k, v.trim_end_matches('"')))
                .collect();
            let mut want: Vec<(&str, &str)> =
                labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            got.sort_unstable();
            want.sort_unstable();
            if got == want {
                return value.parse().unwrap_or(0.0);
            }
        }
        0.0
    }
}

/// Where a handle reads its value back from.
#[derive(Clone, Debug)]
struct Reader {
    registry: Arc<Registry>,
    name: &'static str,
    labels: Vec<(&'static str, String)>,
}

impl Reader {
    fn value(&self) -> f64 {
        self.registry.value(self.name, &self.labels)
    }

    /// The key to register under, and the reader of what gets registered there.
    fn new(
        registry: &Arc<Registry>,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> (Key, Self) {
        let key = Registry::key(name, &labels);
        let reader = Self {
            registry: registry.clone(),
            name,
            labels,
        };
        (key, reader)
    }
}

/// A monotonic counter.
#[derive(Clone, Debug)]
pub struct Counter {
    handle: metrics::Counter,
    reader: Reader,
}

impl Counter {
    fn register(
        registry: &Arc<Registry>,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> Self {
        let (key, reader) = Reader::new(registry, name, labels);
        let handle = registry.recorder.register_counter(&key, &METADATA);
        Self { handle, reader }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.handle.increment(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.handle.increment(n);
    }

    /// The current value, as the exporter renders it.
    pub fn get(&self) -> u64 {
        self.reader.value() as u64
    }
}

/// A gauge.
#[derive(Clone, Debug)]
pub struct Gauge {
    handle: metrics::Gauge,
    reader: Reader,
}

impl Gauge {
    fn register(
        registry: &Arc<Registry>,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> Self {
        let (key, reader) = Reader::new(registry, name, labels);
        let handle = registry.recorder.register_gauge(&key, &METADATA);
        Self { handle, reader }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.handle.increment(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.handle.decrement(1.0);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: i64) {
        self.handle.increment(n as f64);
    }

    /// Subtracts `n`.
    pub fn dec_by(&self, n: i64) {
        self.handle.decrement(n as f64);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.handle.set(v as f64);
    }

    /// The current value, as the exporter renders it.
    pub fn get(&self) -> i64 {
        self.reader.value() as i64
    }
}

/// A histogram (buckets: [`latency_buckets`]).
#[derive(Clone, Debug)]
pub struct Histogram {
    handle: metrics::Histogram,
}

impl Histogram {
    fn register(
        registry: &Arc<Registry>,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> Self {
        let handle = registry
            .recorder
            .register_histogram(&Registry::key(name, &labels), &METADATA);
        Self { handle }
    }

    /// Records one sample.
    pub fn observe(&self, v: f64) {
        self.handle.record(v);
    }
}

/// A labelled family of counters, gauges or histograms: one series per label set.
#[derive(Clone, Debug)]
pub struct Family<M> {
    registry: Arc<Registry>,
    name: &'static str,
    _kind: std::marker::PhantomData<fn() -> M>,
}

impl<M> Family<M> {
    fn new(registry: &Arc<Registry>, name: &'static str) -> Self {
        Self {
            registry: registry.clone(),
            name,
            _kind: std::marker::PhantomData,
        }
    }

    fn labels<const N: usize>(labels: &[(&'static str, &str); N]) -> Vec<(&'static str, String)> {
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }
}

impl Family<Counter> {
    /// The series of `labels`.
    pub fn get_or_create<const N: usize>(&self, labels: &[(&'static str, &str); N]) -> Counter {
        Counter::register(&self.registry, self.name, Self::labels(labels))
    }
}

impl Family<Gauge> {
    /// The series of `labels`.
    pub fn get_or_create<const N: usize>(&self, labels: &[(&'static str, &str); N]) -> Gauge {
        Gauge::register(&self.registry, self.name, Self::labels(labels))
    }
}

impl Family<Histogram> {
    /// The series of `labels`.
    pub fn get_or_create<const N: usize>(&self, labels: &[(&'static str, &str); N]) -> Histogram {
        Histogram::register(&self.registry, self.name, Self::labels(labels))
    }
}

/// The two paths a submission can arrive by (the `path` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// A `/collect` stream.
    Collect,
    /// A gossipsub message.
    Gossipsub,
}

impl Path {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Collect => "collect",
            Path::Gossipsub => "gossipsub",
        }
    }
}

/// Per-path counters and gossipsub's own gauges (see the README's "Metrics").
#[derive(Clone, Debug)]
pub struct PathMetrics {
    /// Submissions by path and outcome (`received`, `accepted`, `rejected`, `ignored`).
    pub messages: Family<Counter>,
    /// Submissions refused, by path and reason.
    pub rejects: Family<Counter>,
    /// Submissions whose content id was already seen within the window, by path and the path it
    /// was first seen on (`first_seen` ≠ `path`: the same submission on both paths).
    pub duplicates: Family<Counter>,
    /// Gossip messages dropped without penalty (heartbeats, mesh formation, limits), by reason.
    pub gossip_ignored: Family<Counter>,
    /// Gossip messages by topic and validation verdict (`accept`, `reject`, `ignore`).
    pub gossip_verdicts: Family<Counter>,
    /// Mesh peers per topic.
    pub gossip_mesh_peers: Family<Gauge>,
    /// Peers known to be subscribed, per topic.
    pub gossip_topic_peers: Family<Gauge>,
    /// Connections that speak gossipsub with us (admitted to the gossip cap).
    pub gossip_connections: Gauge,
    /// Gossip messages waiting for validation.
    pub gossip_validation_queue: Gauge,
    /// Bytes of accepted gossip messages gossipsub keeps for its history window.
    pub gossip_cache_bytes: Gauge,
}

impl PathMetrics {
    /// Counts one submission of `path` with `outcome`.
    pub fn count(&self, path: Path, outcome: &'static str) {
        self.messages
            .get_or_create(&[("path", path.as_str()), ("outcome", outcome)])
            .inc();
    }

    /// Counts one refused submission of `path`.
    pub fn reject(&self, path: Path, reason: &'static str) {
        self.count(path, "rejected");
        self.rejects
            .get_or_create(&[("path", path.as_str()), ("reason", reason)])
            .inc();
    }

    /// Counts one submission seen before (`first_seen`: the path it was first seen on).
    pub fn duplicate(&self, path: Path, first_seen: Path) {
        self.duplicates
            .get_or_create(&[("path", path.as_str()), ("first_seen", first_seen.as_str())])
            .inc();
    }

    /// Counts one gossip message ignored for `reason`.
    pub fn ignore(&self, reason: &'static str) {
        self.gossip_ignored
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Current count of `path`'s `outcome` (tests).
    pub fn count_of(&self, path: Path, outcome: &'static str) -> u64 {
        self.messages
            .get_or_create(&[("path", path.as_str()), ("outcome", outcome)])
            .get()
    }

    /// Current count of `path`'s rejects for `reason` (tests).
    pub fn reject_count(&self, path: Path, reason: &'static str) -> u64 {
        self.rejects
            .get_or_create(&[("path", path.as_str()), ("reason", reason)])
            .get()
    }

    /// Current count of ignored gossip messages for `reason` (tests).
    pub fn ignored_count(&self, reason: &'static str) -> u64 {
        self.gossip_ignored
            .get_or_create(&[("reason", reason)])
            .get()
    }
}

/// All metric handles. Cloning shares the underlying values.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Open libp2p connections (all transports).
    pub connections_open: Gauge,
    /// Connections that completed the handshake and were admitted.
    pub connections_accepted: Counter,
    /// Open `/collect` streams being read.
    pub streams_open: Gauge,
    /// `/collect` streams admitted.
    pub streams_accepted: Counter,
    /// Bytes read from `/collect` streams.
    pub bytes_received: Counter,
    /// Messages decoded from `/collect` streams (before rate limiting and buffering).
    pub messages_received: Counter,
    /// Messages accepted into the buffer, from either path (they will reach the queue or the spill
    /// file).
    pub messages_accepted: Counter,
    /// Messages the queue acknowledged.
    pub messages_enqueued: Counter,
    /// Messages written to the spill file at shutdown.
    pub messages_spilled: Counter,
    /// Messages replayed from a spill file at start.
    pub messages_replayed: Counter,
    /// Drops and refusals by reason (connections, streams, messages of either path).
    pub rejects: Family<Counter>,
    /// Times a reader waited on its peer's token bucket.
    pub throttled: Counter,
    /// Times a reader waited because the buffer was full (backpressure).
    pub backpressure_waits: Counter,
    /// Messages currently buffered (decoded, not yet acknowledged by the queue).
    pub buffer_messages: Gauge,
    /// Bytes currently buffered.
    pub buffer_bytes: Gauge,
    /// Latency of one queue call, by outcome.
    pub sink_call_seconds: Family<Histogram>,
    /// Queue call retries by reason.
    pub sink_retries: Family<Counter>,
    /// Time from a message being read off the wire to the queue acknowledging it.
    pub read_to_enqueued_seconds: Histogram,
    /// 1 while the process is draining after SIGTERM.
    pub draining: Gauge,
    /// Damaged lines of spill files and WAL segments moved to a quarantine file at start.
    pub spill_quarantined: Counter,
    /// 1 while the last queue probe succeeded (what `/readyz` reports).
    pub queue_ready: Gauge,
    /// Write-ahead log counters.
    pub wal: WalMetrics,
    /// Per-path and gossipsub metrics.
    pub path: PathMetrics,
    /// Tally messages sent (`crate::tally`), by outcome (`ok`, `failed`, `rejected`).
    pub tallies_sent: Family<Counter>,
}

/// Counters of the write-ahead log (`wal`). Kept here, with every other handle, so this module
/// does not import the WAL; `wal` re-exports it.
#[derive(Clone, Debug)]
pub struct WalMetrics {
    /// Messages appended and fsynced.
    pub appended: Counter,
    /// Group commits (one fsync each).
    pub commits: Counter,
    /// Group commits that failed.
    pub failures: Counter,
}

impl Default for WalMetrics {
    /// Handles on a recorder of their own (tests that need no other metric).
    fn default() -> Self {
        Metrics::new().wal
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Name, help text.
const COUNTERS: &[(&str, &str)] = &[
    ("ingress_connections_accepted_total", "Connections admitted"),
    (
        "ingress_streams_accepted_total",
        "/collect streams admitted",
    ),
    (
        "ingress_bytes_received_total",
        "Bytes read from /collect streams",
    ),
    (
        "ingress_messages_received_total",
        "Messages decoded from /collect",
    ),
    (
        "ingress_messages_accepted_total",
        "Messages accepted into the buffer (both paths)",
    ),
    (
        "ingress_messages_enqueued_total",
        "Messages acknowledged by the queue",
    ),
    (
        "ingress_messages_spilled_total",
        "Messages spilled to the local file at shutdown",
    ),
    (
        "ingress_messages_replayed_total",
        "Messages replayed from the spill file at start",
    ),
    ("ingress_rejects_total", "Drops and refusals by reason"),
    (
        "ingress_throttled_total",
        "Reader waits on a peer's token bucket",
    ),
    (
        "ingress_backpressure_waits_total",
        "Reader waits because the buffer was full",
    ),
    ("ingress_sink_retries_total", "Queue call retries by reason"),
    (
        "ingress_spill_quarantined_total",
        "Damaged spill or WAL lines moved to a quarantine file",
    ),
    (
        "ingress_wal_appended_total",
        "Messages appended to the write-ahead log and fsynced",
    ),
    (
        "ingress_wal_commits_total",
        "Write-ahead log group commits (one fsync each)",
    ),
    (
        "ingress_wal_commit_failures_total",
        "Write-ahead log group commits that failed",
    ),
    (
        "ingress_path_messages_total",
        "Submissions by path and outcome",
    ),
    (
        "ingress_path_rejects_total",
        "Submissions refused, by path and reason",
    ),
    (
        "ingress_path_duplicates_total",
        "Submissions seen before within the window, by path and the path first seen on",
    ),
    (
        "ingress_gossip_ignored_total",
        "Gossip messages dropped without penalty, by reason",
    ),
    (
        "ingress_gossip_messages_total",
        "Gossip messages by topic and validation verdict",
    ),
    (
        "ingress_tallies_sent_total",
        "Tallies of submissions taken in sent to the queue, by outcome",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    ("ingress_connections_open", "Open libp2p connections"),
    ("ingress_streams_open", "Open /collect streams"),
    (
        "ingress_buffer_messages",
        "Messages buffered, not yet acknowledged by the queue",
    ),
    (
        "ingress_buffer_bytes",
        "Bytes buffered, not yet acknowledged by the queue",
    ),
    ("ingress_draining", "1 while draining after SIGTERM"),
    (
        "ingress_queue_ready",
        "1 while the last queue probe succeeded",
    ),
    (
        "ingress_gossip_mesh_peers",
        "Gossipsub mesh peers per topic",
    ),
    ("ingress_gossip_topic_peers", "Peers subscribed to a topic"),
    (
        "ingress_gossip_connections",
        "Connections admitted to speak gossipsub",
    ),
    (
        "ingress_gossip_validation_queue",
        "Gossip messages waiting for validation",
    ),
    (
        "ingress_gossip_cache_bytes",
        "Bytes of accepted gossip messages in gossipsub's history window",
    ),
];

const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "ingress_sink_call_seconds",
        "Latency of one queue call by outcome",
    ),
    (
        "ingress_read_to_enqueued_seconds",
        "Time from reading a message to the queue acknowledging it",
    ),
];

impl Metrics {
    /// Fresh handles on a recorder of their own.
    pub fn new() -> Self {
        let r = Registry::new();
        for (name, help) in COUNTERS {
            r.recorder
                .describe_counter((*name).into(), None, (*help).into());
        }
        for (name, help) in GAUGES {
            r.recorder
                .describe_gauge((*name).into(), None, (*help).into());
        }
        for (name, help) in HISTOGRAMS {
            r.recorder
                .describe_histogram((*name).into(), None, (*help).into());
        }
        let c = |name| Counter::register(&r, name, Vec::new());
        let g = |name| Gauge::register(&r, name, Vec::new());
        Self {
            connections_open: g("ingress_connections_open"),
            connections_accepted: c("ingress_connections_accepted_total"),
            streams_open: g("ingress_streams_open"),
            streams_accepted: c("ingress_streams_accepted_total"),
            bytes_received: c("ingress_bytes_received_total"),
            messages_received: c("ingress_messages_received_total"),
            messages_accepted: c("ingress_messages_accepted_total"),
            messages_enqueued: c("ingress_messages_enqueued_total"),
            messages_spilled: c("ingress_messages_spilled_total"),
            messages_replayed: c("ingress_messages_replayed_total"),
            rejects: Family::new(&r, "ingress_rejects_total"),
            throttled: c("ingress_throttled_total"),
            backpressure_waits: c("ingress_backpressure_waits_total"),
            buffer_messages: g("ingress_buffer_messages"),
            buffer_bytes: g("ingress_buffer_bytes"),
            sink_call_seconds: Family::new(&r, "ingress_sink_call_seconds"),
            sink_retries: Family::new(&r, "ingress_sink_retries_total"),
            read_to_enqueued_seconds: Histogram::register(
                &r,
                "ingress_read_to_enqueued_seconds",
                Vec::new(),
            ),
            draining: g("ingress_draining"),
            spill_quarantined: c("ingress_spill_quarantined_total"),
            queue_ready: g("ingress_queue_ready"),
            wal: WalMetrics {
                appended: c("ingress_wal_appended_total"),
                commits: c("ingress_wal_commits_total"),
                failures: c("ingress_wal_commit_failures_total"),
            },
            path: PathMetrics {
                messages: Family::new(&r, "ingress_path_messages_total"),
                rejects: Family::new(&r, "ingress_path_rejects_total"),
                duplicates: Family::new(&r, "ingress_path_duplicates_total"),
                gossip_ignored: Family::new(&r, "ingress_gossip_ignored_total"),
                gossip_verdicts: Family::new(&r, "ingress_gossip_messages_total"),
                gossip_mesh_peers: Family::new(&r, "ingress_gossip_mesh_peers"),
                gossip_topic_peers: Family::new(&r, "ingress_gossip_topic_peers"),
                gossip_connections: g("ingress_gossip_connections"),
                gossip_validation_queue: g("ingress_gossip_validation_queue"),
                gossip_cache_bytes: g("ingress_gossip_cache_bytes"),
            },
            tallies_sent: Family::new(&r, "ingress_tallies_sent_total"),
            registry: r,
        }
    }

    /// Counts one drop or refusal.
    pub fn reject(&self, reason: Reject) {
        self.rejects
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// Current count of one reject reason (tests, simulator).
    pub fn reject_count(&self, reason: &'static str) -> u64 {
        self.rejects.get_or_create(&[("reason", reason)]).get()
    }

    /// The Prometheus text exposition of every metric (what `/metrics` serves).
    pub fn render(&self) -> String {
        self.registry.handle.render()
    }

    /// Drains histogram samples into their buckets so they do not pile up between scrapes; run
    /// every few seconds (the ingress does, see [`crate::Ingress::start`]).
    pub fn run_upkeep(&self) {
        self.registry.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_from_the_exporters_rendering() {
        let m = Metrics::new();
        m.messages_accepted.inc_by(3);
        m.reject(Reject::Oversize);
        m.reject(Reject::Oversize);
        m.buffer_bytes.inc_by(10);
        m.buffer_bytes.dec_by(4);
        m.path.count(Path::Gossipsub, "accepted");
        m.sink_call_seconds
            .get_or_create(&[("outcome", "ok")])
            .observe(0.001);
        m.read_to_enqueued_seconds.observe(0.002);
        assert_eq!(m.messages_accepted.get(), 3);
        assert_eq!(m.reject_count("oversize"), 2);
        assert_eq!(m.reject_count("bad_json"), 0);
        assert_eq!(m.buffer_bytes.get(), 6);
        assert_eq!(m.path.count_of(Path::Gossipsub, "accepted"), 1);
        assert_eq!(m.path.count_of(Path::Collect, "accepted"), 0);
        let text = m.render();
        for line in [
            "ingress_messages_accepted_total 3",
            "ingress_rejects_total{reason=\"oversize\"} 2",
            "ingress_path_messages_total{path=\"gossipsub\",outcome=\"accepted\"} 1",
            "# TYPE ingress_sink_call_seconds histogram",
            "ingress_read_to_enqueued_seconds_bucket{le=\"0.002\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Another instance starts from zero: recorders are not shared.
        assert_eq!(Metrics::new().messages_accepted.get(), 0);
    }

    #[test]
    fn readme_lists_every_metric() {
        let readme = include_str!("../README.md");
        for (name, _) in COUNTERS.iter().chain(GAUGES).chain(HISTOGRAMS) {
            let short = name.trim_start_matches("ingress_");
            assert!(
                readme.contains(&format!("`{short}")),
                "ingress/README.md does not list `{short}`"
            );
        }
    }
}
