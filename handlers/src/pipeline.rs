//! The handlers' context: ports, settings and counters, built once per process (a Lambda cold
//! start, the local runner) and shared by every invocation.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sequencer_core::eip712::Verifier;

use crate::config::PipelineConfig;
use crate::records::Records;
use sequencer_ports::{ChainPort, ContentStore, PortError, Queue, StateStore};

/// The ports one deployment uses.
#[derive(Clone)]
pub struct Ports {
    /// State store.
    pub state: Arc<dyn StateStore>,
    /// Content store (IPFS).
    pub content: Arc<dyn ContentStore>,
    /// Protocol chain.
    pub chain: Arc<dyn ChainPort>,
    /// Where the tick sends finalize jobs.
    pub finalize_queue: Arc<dyn Queue>,
    /// Where finalize sends anchor jobs (FIFO).
    pub anchor_queue: Arc<dyn Queue>,
    /// Dead-letter queue of the submissions queue: verify sends poison messages here.
    pub submissions_dlq: Arc<dyn Queue>,
}

/// Counters by name, for logs, metrics and the local runner's table. Names follow the ingress's
/// style: `<stage>_<what>_total`, reasons as a suffix label `{reason=…}`.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// The map. A panic elsewhere while the lock was held poisons it; counts are plain numbers
    /// that a panic cannot leave half-written, so they are kept (and the poisoning logged)
    /// rather than silently reset or dropped.
    fn map(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            tracing::error!("counters lock poisoned by a panic; keeping the counts");
            poisoned.into_inner()
        })
    }

    /// Adds `n` to `name`.
    pub fn add(&self, name: &str, n: u64) {
        *self.map().entry(name.to_string()).or_default() += n;
    }

    /// Adds one.
    pub fn inc(&self, name: &str) {
        self.add(name, 1);
    }

    /// The current values.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.map().clone()
    }

    /// One value.
    pub fn get(&self, name: &str) -> u64 {
        self.map().get(name).copied().unwrap_or(0)
    }
}

/// A handler error: transient ones make the message come back.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A port failed (state store, queue, content store, chain).
    #[error(transparent)]
    Port(#[from] PortError),
    /// A stored record does not parse.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// An invariant broke (e.g. finalizing an epoch twice gave other bytes).
    #[error("invariant violated: {0}")]
    Invariant(String),
    /// Waiting for another stage (e.g. the tick has not recorded a release yet).
    #[error("not ready: {0}")]
    NotReady(String),
}

impl PipelineError {
    /// Whether retrying later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Port(e) => e.is_retryable(),
            PipelineError::Corrupt(_) | PipelineError::Invariant(_) => false,
            PipelineError::NotReady(_) => true,
        }
    }
}

/// Where the handlers read the time and wait (record timestamps and expiries, the tick's loop):
/// the system clock in every deployment; the deterministic simulation (`sequencer-simulation`)
/// runs them on virtual time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Ports, settings and counters.
pub struct Pipeline {
    /// Ports.
    pub ports: Ports,
    /// Settings.
    pub config: PipelineConfig,
    /// EIP-712 verifier of the configured domain.
    pub verifier: Verifier,
    /// Counters.
    pub counters: Counters,
    /// The clock records are stamped and expire by ([`SystemClock`] unless replaced).
    pub clock: Arc<dyn Clock>,
}

impl Pipeline {
    /// A pipeline.
    pub fn new(ports: Ports, config: PipelineConfig) -> Self {
        Self {
            verifier: config.verifier(),
            ports,
            config,
            counters: Counters::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same pipeline reading the time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Milliseconds since the Unix epoch, by [`Self::clock`].
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The typed records of this pipeline's market in its state store.
    pub fn records(&self) -> Records<'_> {
        Records::new(
            self.ports.state.as_ref(),
            self.config.market,
            self.config.record_ttl,
        )
        .with_clock(self.clock.as_ref())
    }
}

/// Parses a stored JSON record.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    data: &str,
) -> Result<T, PipelineError> {
    serde_json::from_str(data).map_err(|e| PipelineError::Corrupt(format!("{what}: {e}")))
}

/// Serializes a record. Our records are plain data and serialize; if one ever does not (a map
/// with non-string keys added later, say), the handler fails loudly instead of storing or
/// sending an empty string that would read back as corrupt.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String, PipelineError> {
    serde_json::to_string(v)
        .map_err(|e| PipelineError::Invariant(format!("record does not serialize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_that_does_not_serialize_is_a_loud_invariant_error() {
        // JSON object keys must be strings: a map keyed by tuples cannot be written.
        let bad: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let err = json(&bad).expect_err("must not become an empty string");
        assert!(matches!(err, PipelineError::Invariant(_)), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(
            json(&BTreeMap::from([("a", 1)])).expect("plain data"),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn counters_survive_a_panic_while_locked() {
        let c = Arc::new(Counters::default());
        c.add("verify_accepted_total", 2);
        let held = Arc::clone(&c);
        let crashed = std::thread::spawn(move || {
            let _guard = held.inner.lock();
            panic!("a handler panicked while counting");
        })
        .join();
        assert!(crashed.is_err());
        assert!(c.inner.is_poisoned());
        c.inc("verify_accepted_total");
        assert_eq!(c.get("verify_accepted_total"), 3);
        assert_eq!(c.snapshot().get("verify_accepted_total"), Some(&3));
    }
}
