//! Prometheus metrics of the ingress: one registry, cheap cloneable handles.
//!
//! Every place that drops or refuses something increments `ingress_rejects_total{reason}`
//! (reasons: [`crate::reject::Reject`]); nothing is dropped silently (PROTOCOL.md §5).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::reject::Reject;

/// Label set with one static label, e.g. `[("reason", "oversize")]`.
pub type StaticLabel = [(&'static str, &'static str); 1];

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s: covers in-memory enqueue (sub-ms) up to SQS calls retried under throttling.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// All metric handles. Cloning shares the underlying values.
#[derive(Clone)]
pub struct Metrics {
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
    /// Messages accepted into the buffer (they will reach the queue or the spill file).
    pub messages_accepted: Counter,
    /// Messages the queue acknowledged.
    pub messages_enqueued: Counter,
    /// Messages written to the spill file at shutdown.
    pub messages_spilled: Counter,
    /// Messages replayed from a spill file at start.
    pub messages_replayed: Counter,
    /// Drops and refusals by reason (connections, streams, messages).
    pub rejects: Family<StaticLabel, Counter>,
    /// Times a reader waited on its peer's token bucket.
    pub throttled: Counter,
    /// Times a reader waited because the buffer was full (backpressure).
    pub backpressure_waits: Counter,
    /// Messages currently buffered (decoded, not yet acknowledged by the queue).
    pub buffer_messages: Gauge,
    /// Bytes currently buffered.
    pub buffer_bytes: Gauge,
    /// Latency of one queue call, by outcome.
    pub sink_call_seconds: Family<StaticLabel, Histogram, fn() -> Histogram>,
    /// Queue call retries by reason.
    pub sink_retries: Family<StaticLabel, Counter>,
    /// Time from a message being read off the wire to the queue acknowledging it.
    pub read_to_enqueued_seconds: Histogram,
    /// 1 while the process is draining after SIGTERM.
    pub draining: Gauge,
    /// Damaged lines of spill files and WAL segments moved to a quarantine file at start.
    pub spill_quarantined: Counter,
    /// 1 while the last queue probe succeeded (what `/readyz` reports).
    pub queue_ready: Gauge,
    /// Write-ahead log counters.
    pub wal: crate::wal::WalMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh, unregistered handles.
    pub fn new() -> Self {
        Self {
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            streams_open: Gauge::default(),
            streams_accepted: Counter::default(),
            bytes_received: Counter::default(),
            messages_received: Counter::default(),
            messages_accepted: Counter::default(),
            messages_enqueued: Counter::default(),
            messages_spilled: Counter::default(),
            messages_replayed: Counter::default(),
            rejects: Family::default(),
            throttled: Counter::default(),
            backpressure_waits: Counter::default(),
            buffer_messages: Gauge::default(),
            buffer_bytes: Gauge::default(),
            sink_call_seconds: Family::new_with_constructor(latency_histogram),
            sink_retries: Family::default(),
            read_to_enqueued_seconds: latency_histogram(),
            draining: Gauge::default(),
            spill_quarantined: Counter::default(),
            queue_ready: Gauge::default(),
            wal: crate::wal::WalMetrics::default(),
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

    /// A registry holding all handles, for `/metrics`.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("ingress");
        r.register(
            "connections_open",
            "Open libp2p connections",
            self.connections_open.clone(),
        );
        r.register(
            "connections_accepted",
            "Connections admitted",
            self.connections_accepted.clone(),
        );
        r.register(
            "streams_open",
            "Open /collect streams",
            self.streams_open.clone(),
        );
        r.register(
            "streams_accepted",
            "/collect streams admitted",
            self.streams_accepted.clone(),
        );
        r.register(
            "bytes_received",
            "Bytes read from /collect streams",
            self.bytes_received.clone(),
        );
        r.register(
            "messages_received",
            "Messages decoded from /collect",
            self.messages_received.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages accepted into the buffer",
            self.messages_accepted.clone(),
        );
        r.register(
            "messages_enqueued",
            "Messages acknowledged by the queue",
            self.messages_enqueued.clone(),
        );
        r.register(
            "messages_spilled",
            "Messages spilled to the local file at shutdown",
            self.messages_spilled.clone(),
        );
        r.register(
            "messages_replayed",
            "Messages replayed from the spill file at start",
            self.messages_replayed.clone(),
        );
        r.register(
            "rejects",
            "Drops and refusals by reason",
            self.rejects.clone(),
        );
        r.register(
            "throttled",
            "Reader waits on a peer's token bucket",
            self.throttled.clone(),
        );
        r.register(
            "backpressure_waits",
            "Reader waits because the buffer was full",
            self.backpressure_waits.clone(),
        );
        r.register(
            "buffer_messages",
            "Messages buffered, not yet acknowledged by the queue",
            self.buffer_messages.clone(),
        );
        r.register(
            "buffer_bytes",
            "Bytes buffered, not yet acknowledged by the queue",
            self.buffer_bytes.clone(),
        );
        r.register(
            "sink_call_seconds",
            "Latency of one queue call by outcome",
            self.sink_call_seconds.clone(),
        );
        r.register(
            "sink_retries",
            "Queue call retries by reason",
            self.sink_retries.clone(),
        );
        r.register(
            "read_to_enqueued_seconds",
            "Time from reading a message to the queue acknowledging it",
            self.read_to_enqueued_seconds.clone(),
        );
        r.register(
            "draining",
            "1 while draining after SIGTERM",
            self.draining.clone(),
        );
        r.register(
            "spill_quarantined",
            "Damaged spill or WAL lines moved to a quarantine file",
            self.spill_quarantined.clone(),
        );
        r.register(
            "queue_ready",
            "1 while the last queue probe succeeded",
            self.queue_ready.clone(),
        );
        r.register(
            "wal_appended",
            "Messages appended to the write-ahead log and fsynced",
            self.wal.appended.clone(),
        );
        r.register(
            "wal_commits",
            "Write-ahead log group commits (one fsync each)",
            self.wal.commits.clone(),
        );
        r.register(
            "wal_commit_failures",
            "Write-ahead log group commits that failed",
            self.wal.failures.clone(),
        );
        r
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an error would only come from a broken metric impl.
    if encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
