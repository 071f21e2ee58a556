//! Every count the collector keeps: once per instance (for `/health`, which must tell the truth
//! about this process) and through the `metrics` facade (Prometheus text on `/metrics`, from the
//! exporter [`crate::Collector::start`] installs once per process). Reasons are labels.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `collector_received_total` | counter | `method` (`SubmitSnapshot`, `SubmitSnapshotSimulation`) |
//! | `collector_rejected_total` | counter | `reason`: `no_request`, `oversize`, `wrong_market`, `buffer_full`, `shutting_down` (the node gets an error status and retries) |
//! | `collector_forwarded_total` | counter | — (written on a `/collect` stream) |
//! | `collector_dropped_total` | counter | `reason`: `expired` (older than the maximum age), `shutdown` (left at the drain deadline) |
//! | `collector_write_errors_total` | counter | — (a write failed; the message went back to the head of the buffer) |
//! | `collector_upstream_connects_total` | counter | — |
//! | `collector_upstream_connected` | gauge | — (1 while connected to the sequencer) |
//! | `collector_buffer_depth` | gauge | — |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// This instance's counts.
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    forwarded: AtomicU64,
    write_errors: AtomicU64,
    connects: AtomicU64,
    connected: AtomicBool,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Submissions taken from the node.
    pub received: u64,
    /// Written upstream.
    pub forwarded: u64,
    /// Failed writes (each message re-queued).
    pub write_errors: u64,
    /// Connections made to the sequencer.
    pub connects: u64,
    /// Refused at the gRPC edge, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Accepted but never written, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

fn bump(m: &Mutex<BTreeMap<&'static str, u64>>, reason: &'static str) {
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    *g.entry(reason).or_default() += 1;
}

impl Stats {
    /// A submission arrived on `method`.
    pub fn received(&self, method: &'static str) {
        self.received.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("collector_received_total", "method" => method).increment(1);
    }

    /// Refused at the edge for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        bump(&self.rejected, reason);
        metrics::counter!("collector_rejected_total", "reason" => reason).increment(1);
    }

    /// Written upstream.
    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("collector_forwarded_total").increment(1);
    }

    /// Accepted, then dropped for `reason`.
    pub fn dropped(&self, reason: &'static str) {
        bump(&self.dropped, reason);
        metrics::counter!("collector_dropped_total", "reason" => reason).increment(1);
    }

    /// A write failed.
    pub fn write_error(&self) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("collector_write_errors_total").increment(1);
    }

    /// Upstream connection state changed.
    pub fn upstream(&self, up: bool) {
        if up && !self.connected.swap(true, Ordering::Relaxed) {
            self.connects.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("collector_upstream_connects_total").increment(1);
        } else if !up {
            self.connected.store(false, Ordering::Relaxed);
        }
        metrics::gauge!("collector_upstream_connected").set(if up { 1.0 } else { 0.0 });
    }

    /// Whether the upstream connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Buffer depth now.
    pub fn depth(&self, depth: usize) {
        metrics::gauge!("collector_buffer_depth").set(depth as f64);
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            received: self.received.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            rejected: self
                .rejected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            dropped: self
                .dropped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
