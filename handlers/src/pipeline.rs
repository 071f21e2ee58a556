//! The handlers' context: ports, settings and metrics, built once per process (a Lambda cold
//! start, the local runner) and shared by every invocation.

use std::sync::Arc;

use sequencer_core::eip712::Verifier;

pub use crate::clock::{Clock, SystemClock};
use crate::config::PipelineConfig;
use crate::metrics::Metrics;
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

/// Ports, settings and metrics.
pub struct Pipeline {
    /// Ports.
    pub ports: Ports,
    /// Settings.
    pub config: PipelineConfig,
    /// EIP-712 verifier of the configured domain.
    pub verifier: Verifier,
    /// Where counts and latencies go (`crate::metrics`), labelled with the market.
    pub metrics: Metrics,
    /// The clock records are stamped and expire by ([`SystemClock`] unless replaced).
    pub clock: Arc<dyn Clock>,
    /// The newest recorded epoch as verify last read it (kept per process, `verify::guard`).
    pub verify_horizon: Arc<crate::verify::Horizon>,
}

impl Pipeline {
    /// A pipeline recording into the `metrics` facade's recorder (the global one: the Lambdas
    /// install their EMF writer there).
    pub fn new(ports: Ports, config: PipelineConfig) -> Self {
        Self {
            verifier: config.verifier(),
            metrics: Metrics::global(config.market),
            ports,
            config,
            clock: Arc::new(SystemClock),
            verify_horizon: Arc::default(),
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

    /// The same pipeline recording into `recorder` instead (the runner's Prometheus exporter, a
    /// test's debugging recorder).
    pub fn with_recorder(mut self, recorder: Arc<dyn metrics::Recorder + Send + Sync>) -> Self {
        self.metrics = Metrics::with_recorder(self.config.market, recorder);
        self
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
        use std::collections::BTreeMap;
        let bad: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        let err = json(&bad).expect_err("must not become an empty string");
        assert!(matches!(err, PipelineError::Invariant(_)), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(
            json(&BTreeMap::from([("a", 1)])).expect("plain data"),
            r#"{"a":1}"#
        );
    }
}
