//! Reading back what a pipeline recorded: a `metrics-util` debugging recorder of the test's own
//! (no global recorder, so tests in one process never see each other's counts), read by the
//! catalogue's definitions (`sequencer_handlers::metrics`) and the pipeline's market.
//!
//! The debugging recorder hands out what was counted since its last snapshot; the probe adds
//! every snapshot up, so a value read here is the total since the pipeline was built, like the
//! counter Prometheus would scrape.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sequencer_core::Address;
use sequencer_handlers::metrics::{CounterDef, HistogramDef, MARKET_LABEL};

/// A series: name and labels (`market` included), in the order recorded.
pub type Series = (String, Vec<(String, String)>);

#[derive(Debug, Default)]
struct Totals {
    counters: BTreeMap<Series, u64>,
    histograms: BTreeMap<Series, Vec<f64>>,
}

/// The totals of one pipeline's metrics.
#[derive(Debug, Clone)]
pub struct MetricsProbe {
    market: String,
    snapshotter: Snapshotter,
    totals: Arc<Mutex<Totals>>,
}

impl MetricsProbe {
    /// A probe for a pipeline of `market`, and the recorder to give that pipeline
    /// (`Pipeline::with_recorder`).
    pub fn new(market: Address) -> (Self, Arc<DebuggingRecorder>) {
        let recorder = Arc::new(DebuggingRecorder::new());
        let probe = Self {
            market: format!("{market:#x}"),
            snapshotter: recorder.snapshotter(),
            totals: Arc::default(),
        };
        (probe, recorder)
    }

    /// A probe of `market` over a recorder given to several pipelines (each read takes what
    /// the recorder counted since the last read of any probe over it).
    pub fn of(market: Address, recorder: &DebuggingRecorder) -> Self {
        Self {
            market: format!("{market:#x}"),
            snapshotter: recorder.snapshotter(),
            totals: Arc::default(),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Totals) -> T) -> T {
        let mut totals = self
            .totals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let (name, labels) = key.into_parts();
            let labels = labels
                .into_iter()
                .map(|l| {
                    let (k, v) = l.into_parts();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let series = (name.as_str().to_string(), labels);
            match value {
                DebugValue::Counter(n) => *totals.counters.entry(series).or_default() += n,
                DebugValue::Histogram(v) => totals
                    .histograms
                    .entry(series)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.into_inner())),
                DebugValue::Gauge(_) => {}
            }
        }
        f(&totals)
    }

    fn series(&self, name: &str, keys: &[&str], values: &[&str]) -> Series {
        let labels = std::iter::once((MARKET_LABEL.to_string(), self.market.clone()))
            .chain(
                keys.iter()
                    .zip(values)
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .collect();
        (name.to_string(), labels)
    }

    /// The total of a counter's series (`values` in the order of its label keys); 0 if never
    /// counted.
    pub fn counter<const N: usize>(&self, def: &CounterDef<N>, values: [&str; N]) -> u64 {
        let s = self.series(def.name, &def.labels, &values);
        self.read(|t| t.counters.get(&s).copied().unwrap_or(0))
    }

    /// Every value a histogram's series recorded, in order.
    pub fn samples<const N: usize>(&self, def: &HistogramDef<N>, values: [&str; N]) -> Vec<f64> {
        let s = self.series(def.name, &def.labels, &values);
        self.read(|t| t.histograms.get(&s).cloned().unwrap_or_default())
    }

    /// Every series recorded so far (counters and histograms), for checks over all of them.
    pub fn all_series(&self) -> Vec<Series> {
        self.read(|t| {
            t.counters
                .keys()
                .chain(t.histograms.keys())
                .cloned()
                .collect()
        })
    }
}
