//! Every metric the pipeline records, in one table ([`ALL`]): its name, kind, label keys, unit
//! and help, and the one way to record it ([`Metrics`]) through the `metrics` facade, with labels
//! as labels and the market as a label on every series.
//!
//! Names follow the ingress's style: `<stage>_<what>_total` for counters, the unit as a suffix
//! for histograms. Whatever records them (the Lambdas' CloudWatch EMF, the runner's Prometheus
//! exporter, a test's debugging recorder) sees the same keys: `name{market, <labels>}`. The
//! market label is what keeps two markets apart in one CloudWatch namespace (the EMF writer
//! turns labels into dimensions), so it is added here, not by each recorder.
//!
//! Recording a count is one line: `p.metrics.inc(&metrics::VERIFY_REJECTED, [reason])`. The
//! label values are an array as long as the metric's label keys (a compile error otherwise). A
//! new metric is one entry in the [`catalogue!`] below, with its doc line; `handlers/README.md`
//! lists them all (a test checks), and `infra/terraform/check/drift.py` reads this table to check
//! that every metric the alarms and the dashboard name is one recorded here, with its labels.

use std::marker::PhantomData;
use std::sync::Arc;

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use sequencer_core::Address;

/// The label every series carries: the data market (`0x…`, lowercase hex).
pub const MARKET_LABEL: &str = "market";

/// What kind of metric a [`Desc`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic count.
    Counter,
    /// A distribution of values (Prometheus buckets; EMF value lists).
    Histogram,
}

/// One entry of the catalogue, for describing and listing.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    /// Name.
    pub name: &'static str,
    /// Counter or histogram.
    pub kind: Kind,
    /// Label keys besides [`MARKET_LABEL`].
    pub labels: &'static [&'static str],
    /// Unit (CloudWatch takes it from here).
    pub unit: Unit,
    /// Help text (Prometheus `# HELP`).
    pub help: &'static str,
}

/// A counter definition with `N` label keys besides the market.
pub type CounterDef<const N: usize> = Def<CounterKind, N>;
/// A histogram definition with `N` label keys besides the market.
pub type HistogramDef<const N: usize> = Def<HistogramKind, N>;

/// Marker of counter definitions.
#[derive(Debug)]
pub enum CounterKind {}
/// Marker of histogram definitions.
#[derive(Debug)]
pub enum HistogramKind {}

/// A metric of the catalogue: its name and label keys, typed by kind and label count so a call
/// site cannot observe a counter or forget a label.
#[derive(Debug)]
pub struct Def<K, const N: usize> {
    /// Name.
    pub name: &'static str,
    /// Label keys besides [`MARKET_LABEL`].
    pub labels: [&'static str; N],
    kind: PhantomData<K>,
}

impl<K, const N: usize> Def<K, N> {
    const fn new(name: &'static str, labels: [&'static str; N]) -> Self {
        Self {
            name,
            labels,
            kind: PhantomData,
        }
    }
}

/// Declares the catalogue: one `pub const` per metric and [`ALL`], from the same tokens.
macro_rules! catalogue {
    ($( $(#[doc = $doc:literal])+ $kind:ident $id:ident = $name:literal [$($label:literal),*] $unit:ident; )+) => {
        $(
            $(#[doc = $doc])+
            pub const $id: catalogue!(@type $kind [$($label),*]) = Def::new($name, [$($label),*]);
        )+
        /// Every metric, in the order of the table.
        pub const ALL: &[Desc] = &[$(
            Desc {
                name: $name,
                kind: catalogue!(@kind $kind),
                labels: &[$($label),*],
                unit: Unit::$unit,
                help: concat!($($doc),+).trim_ascii(),
            }
        ),+];
    };
    (@type counter [$($label:literal),*]) => { CounterDef<{ <[&str]>::len(&[$($label),*]) }> };
    (@type histogram [$($label:literal),*]) => { HistogramDef<{ <[&str]>::len(&[$($label),*]) }> };
    (@kind counter) => { Kind::Counter };
    (@kind histogram) => { Kind::Histogram };
}

// drift.py parses the lines below (`kind ID = "name" [labels] Unit;`): keep one entry per line.
catalogue! {
    /// Submissions accepted for their epoch.
    counter VERIFY_ACCEPTED = "verify_accepted_total" [] Count;
    /// Simulation (liveness) submissions accepted; never batched.
    counter VERIFY_SIMULATIONS = "verify_simulations_total" [] Count;
    /// Submissions rejected, by reason (a `core::rules` reason, `late`, `duplicate_submission_id`).
    counter VERIFY_REJECTED = "verify_rejected_total" ["reason"] Count;
    /// Messages processed before (a redelivery): nothing changed.
    counter VERIFY_REDELIVERED = "verify_redelivered_total" [] Count;
    /// Queue messages that are not submissions, sent to the dead-letter queue, by reason.
    counter VERIFY_DEAD_LETTERED = "verify_dead_lettered_total" ["reason"] Count;
    /// Messages verify left to the queue's redelivery (a transient failure of a port).
    counter VERIFY_RETRIED = "verify_retried_total" [] Count;
    /// Pauses verify took inside one invocation before judging "not yet" answers again.
    counter VERIFY_NOT_YET_ROUNDS = "verify_not_yet_rounds_total" [] Count;
    /// Epochs verify recorded from the chain before the tick did (judged at arrival).
    counter VERIFY_EPOCHS_OPENED = "verify_epochs_opened_total" [] Count;
    /// Submissions rejected `late` although they arrived before the close (the pipeline was late).
    counter VERIFY_LATE_AFTER_ARRIVAL = "verify_late_after_arrival_total" [] Count;
    /// Messages counted and not stored (no receipt, no record): a slot or epoch out of range, a
    /// signer that is not the slot's snapshotter, a slot's simulations over their cap; by reason.
    counter VERIFY_DROPPED = "verify_dropped_total" ["reason"] Count;
    /// Ingress tallies verify took (the close watermark's counts).
    counter VERIFY_TALLIES = "verify_tallies_total" [] Count;
    /// Epochs the tick opened from a release.
    counter TICK_EPOCHS_OPENED = "tick_epochs_opened_total" [] Count;
    /// Epochs the tick closed (and sent a finalize job for).
    counter TICK_EPOCHS_CLOSED = "tick_epochs_closed_total" [] Count;
    /// Epoch closes by what allowed them: `met` (the watermark), `timeout`
    /// (`WATERMARK_MAX_WAIT_MS` passed first), `no_tallies` (no ingress reports tallies).
    counter TICK_CLOSE_WATERMARK = "tick_close_watermark_total" ["outcome"] Count;
    /// Releases without windows of their own on chain: the market's current windows were used.
    counter TICK_EPOCH_WINDOWS_FALLBACK = "tick_epoch_windows_fallback_total" [] Count;
    /// Tick steps that failed and were retried (the local runner's tick loop).
    counter TICK_ERRORS = "tick_errors_total" [] Count;
    /// Tick steps that failed inside a tick run, by the part that failed (`head`, `releases`, `close`, `blocks`); the run goes on after a short pause.
    counter TICK_STEP_FAILURES = "tick_step_failures_total" ["part"] Count;
    /// Epochs finalized (including a redelivered job finding its epoch finalized).
    counter FINALIZE_EPOCHS = "finalize_epochs_total" [] Count;
    /// Batches of the epochs finalized.
    counter FINALIZE_BATCHES = "finalize_batches_total" [] Count;
    /// Transient failures finalize retried inside the invocation (within FINALIZE_RETRY_BUDGET_MS).
    counter FINALIZE_RETRIES = "finalize_retries_total" [] Count;
    /// Runs that found another finalizer's seal written first and took it.
    counter FINALIZE_SEAL_LOST = "finalize_seal_lost_total" [] Count;
    /// Moves to FINALIZED refused because the tick moved the epoch meanwhile (retried at once).
    counter FINALIZE_CLOSE_RACES = "finalize_close_races_total" [] Count;
    /// Batch transactions the anchor sent and saw mined.
    counter ANCHOR_BATCHES_SENT = "anchor_batches_sent_total" [] Count;
    /// Batches found anchored on chain already (after a crash or a redelivery).
    counter ANCHOR_BATCHES_ALREADY = "anchor_batches_already_total" [] Count;
    /// Epochs the anchor recorded anchored.
    counter ANCHOR_EPOCHS = "anchor_epochs_total" [] Count;
    /// Epochs with no batch: recorded anchored without a transaction.
    counter ANCHOR_EPOCHS_EMPTY = "anchor_epochs_empty_total" [] Count;
    /// Days whose rewards were committed on chain (`updateRewards`).
    counter REWARDS_DAYS_COMMITTED = "rewards_days_committed_total" [] Count;
    /// Slots that met the daily quota (`DailyTaskCompletedEvent` emitted by our commits).
    counter REWARDS_DAILY_TASKS_COMPLETED = "rewards_daily_tasks_completed_total" [] Count;
    /// Rewards jobs acknowledged because their day is not ready (not ended, epochs not finalized).
    counter REWARDS_NOT_READY = "rewards_not_ready_total" [] Count;
    /// Failures to ask for a day's rewards commit after an anchored epoch.
    counter REWARDS_ASK_ERRORS = "rewards_ask_errors_total" [] Count;
    /// Anchor jobs whose body could not be read (they go to the DLQ after their retries).
    counter ANCHOR_JOBS_UNREADABLE = "anchor_jobs_unreadable_total" [] Count;
    /// Anchoring refused for a reason the operator must fix (`kind`: funds, nonce, permission); retried until the job's last delivery.
    counter ANCHOR_OPERATIONAL_ERRORS = "anchor_operational_errors_total" ["kind"] Count;
    /// Epochs whose anchoring failed for good (ANCHOR_FAILED: a revert no retry can fix).
    counter ANCHOR_EPOCHS_FAILED = "anchor_epochs_failed_total" [] Count;
    /// Seconds from the tick closing an epoch to the anchor recording it anchored, per epoch with at least one batch.
    histogram ANCHOR_CLOSE_TO_ANCHORED = "anchor_close_to_anchored_seconds" [] Seconds;
    /// Proof and status lookups answered from the state store.
    counter PROOF_REQUESTS = "proof_requests_total" [] Count;
    /// Proof answers served from the cache.
    counter PROOF_CACHE_HITS = "proof_cache_hits_total" [] Count;
    /// Proof API error answers, by error code.
    counter PROOF_ERRORS = "proof_errors_total" ["code"] Count;
    /// Milliseconds one invocation of the verify Lambda took.
    histogram VERIFY_INVOCATION_MS = "verify_invocation_ms" [] Milliseconds;
    /// Milliseconds one invocation of the tick Lambda took (it loops until near its deadline).
    histogram TICK_INVOCATION_MS = "tick_invocation_ms" [] Milliseconds;
    /// Milliseconds one invocation of the finalize Lambda took.
    histogram FINALIZE_INVOCATION_MS = "finalize_invocation_ms" [] Milliseconds;
    /// Milliseconds one invocation of the anchor Lambda took.
    histogram ANCHOR_INVOCATION_MS = "anchor_invocation_ms" [] Milliseconds;
    /// Milliseconds one request to the proof Lambda took.
    histogram PROOF_INVOCATION_MS = "proof_invocation_ms" [] Milliseconds;
}

/// The `<function>_invocation_ms` histogram of a Lambda function (`verify`, `tick`, …).
pub fn invocation_ms(function: &str) -> Option<&'static HistogramDef<0>> {
    [
        &VERIFY_INVOCATION_MS,
        &TICK_INVOCATION_MS,
        &FINALIZE_INVOCATION_MS,
        &ANCHOR_INVOCATION_MS,
        &PROOF_INVOCATION_MS,
    ]
    .into_iter()
    .find(|d| d.name.strip_suffix("_invocation_ms") == Some(function))
}

/// Describes every metric of [`ALL`] (help, unit) to `recorder`: whoever installs a recorder
/// calls it once (Prometheus renders the help, CloudWatch takes the unit).
pub fn describe(recorder: &dyn Recorder) {
    for d in ALL {
        let (name, unit, help) = (
            KeyName::from_const_str(d.name),
            Some(d.unit),
            SharedString::const_str(d.help),
        );
        match d.kind {
            Kind::Counter => recorder.describe_counter(name, unit, help),
            Kind::Histogram => recorder.describe_histogram(name, unit, help),
        }
    }
}

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Where one pipeline's metrics go, with its market as a label on every series.
#[derive(Clone)]
pub struct Metrics {
    market: SharedString,
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("market", &self.market)
            .field("own_recorder", &self.recorder.is_some())
            .finish()
    }
}

impl Metrics {
    /// Into the facade's recorder (the global one, e.g. the Lambdas' EMF writer, or none).
    pub fn global(market: Address) -> Self {
        Self {
            market: format!("{market:#x}").into(),
            recorder: None,
        }
    }

    /// Into a recorder of its own (the runner's exporter, a test's), described here.
    pub fn with_recorder(market: Address, recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        describe(recorder.as_ref());
        Self {
            market: format!("{market:#x}").into(),
            recorder: Some(recorder),
        }
    }

    /// The market label's value.
    pub fn market(&self) -> &str {
        &self.market
    }

    fn key<K, const N: usize>(&self, def: &Def<K, N>, values: [&str; N]) -> Key {
        let labels = std::iter::once(Label::new(MARKET_LABEL, self.market.clone()))
            .chain(
                def.labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| Label::new(*k, v.to_owned())),
            )
            .collect::<Vec<_>>();
        Key::from_parts(KeyName::from_const_str(def.name), labels)
    }

    fn with<T>(&self, f: impl FnOnce(&dyn Recorder) -> T) -> T {
        match &self.recorder {
            Some(r) => f(r.as_ref()),
            None => metrics::with_recorder(f),
        }
    }

    /// Adds one to the series of `values` (one per label key of `def`).
    pub fn inc<const N: usize>(&self, def: &CounterDef<N>, values: [&str; N]) {
        self.add(def, values, 1);
    }

    /// Adds `n`.
    pub fn add<const N: usize>(&self, def: &CounterDef<N>, values: [&str; N], n: u64) {
        let key = self.key(def, values);
        self.with(|r| r.register_counter(&key, &METADATA).increment(n));
    }

    /// Records one value.
    pub fn observe<const N: usize>(&self, def: &HistogramDef<N>, values: [&str; N], v: f64) {
        let key = self.key(def, values);
        self.with(|r| r.register_histogram(&key, &METADATA).record(v));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// Name, labels and value of a recorded series.
    type Recorded = (String, Vec<(String, String)>, DebugValue);

    fn series(r: &DebuggingRecorder) -> Vec<Recorded> {
        r.snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| {
                let (_, key) = k.into_parts();
                let (name, labels) = key.into_parts();
                let labels = labels
                    .into_iter()
                    .map(|l| {
                        let (k, v) = l.into_parts();
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                (name.as_str().to_string(), labels, v)
            })
            .collect()
    }

    #[test]
    fn every_series_carries_the_market_then_its_own_labels() {
        let rec = Arc::new(DebuggingRecorder::new());
        let market = Address::repeat_byte(0xAB);
        let m = Metrics::with_recorder(market, rec.clone());
        m.inc(&VERIFY_REJECTED, ["late"]);
        m.inc(&VERIFY_REJECTED, ["late"]);
        m.add(&FINALIZE_BATCHES, [], 3);
        m.observe(&ANCHOR_CLOSE_TO_ANCHORED, [], 1.5);
        let mut got = series(&rec);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mk = ("market".to_string(), format!("{market:#x}"));
        assert_eq!(mk.1, "0xabababababababababababababababababababab");
        assert_eq!(
            got,
            vec![
                (
                    "anchor_close_to_anchored_seconds".into(),
                    vec![mk.clone()],
                    DebugValue::Histogram(vec![1.5.into()])
                ),
                (
                    "finalize_batches_total".into(),
                    vec![mk.clone()],
                    DebugValue::Counter(3)
                ),
                (
                    "verify_rejected_total".into(),
                    vec![mk, ("reason".into(), "late".into())],
                    DebugValue::Counter(2)
                ),
            ]
        );
    }

    #[test]
    fn the_catalogue_is_described_with_units_and_names_are_unique() {
        let rec = Arc::new(DebuggingRecorder::new());
        let m = Metrics::with_recorder(Address::ZERO, rec.clone());
        m.inc(&VERIFY_ACCEPTED, []);
        m.observe(&VERIFY_INVOCATION_MS, [], 2.0);
        let snap = rec.snapshotter().snapshot().into_vec();
        for (k, unit, help, _) in snap {
            let name = k.key().name().to_string();
            let d = ALL.iter().find(|d| d.name == name).unwrap();
            assert_eq!(unit, Some(d.unit), "{name}");
            assert_eq!(help.as_deref(), Some(d.help), "{name}");
        }
        let mut names: Vec<_> = ALL.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is declared twice");
        for d in ALL {
            assert!(!d.labels.contains(&MARKET_LABEL), "{}", d.name);
            match d.kind {
                Kind::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                Kind::Histogram => assert!(
                    d.name.ends_with("_seconds") || d.name.ends_with("_ms"),
                    "{}",
                    d.name
                ),
            }
        }
        for f in ["verify", "tick", "finalize", "anchor", "proof"] {
            assert_eq!(
                invocation_ms(f).map(|d| d.name),
                Some(format!("{f}_invocation_ms")).as_deref()
            );
        }
        assert!(invocation_ms("epoch-manager").is_none());
    }

    #[test]
    fn counting_survives_a_handler_that_panics_after_counting() {
        // The old in-process map kept its counts through a poisoned lock; the facade's recorders
        // count with atomics, so a panic anywhere neither loses nor blocks a count.
        let rec = Arc::new(DebuggingRecorder::new());
        let m = Metrics::with_recorder(Address::ZERO, rec.clone());
        m.add(&VERIFY_ACCEPTED, [], 2);
        let held = m.clone();
        let crashed = std::thread::spawn(move || {
            held.inc(&VERIFY_ACCEPTED, []);
            panic!("a handler panicked after counting");
        })
        .join();
        assert!(crashed.is_err());
        m.inc(&VERIFY_ACCEPTED, []);
        let got = series(&rec);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].2, DebugValue::Counter(4));
    }

    #[test]
    fn the_global_facade_is_used_without_a_recorder_of_its_own() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        let m = Metrics::global(Address::ZERO);
        metrics::with_local_recorder(&rec, || m.inc(&PROOF_ERRORS, ["not_found"]));
        let got = snap.snapshot().into_vec();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.key().name(), "proof_errors_total");
        assert_eq!(got[0].3, DebugValue::Counter(1));
    }

    #[test]
    fn readme_lists_every_metric_with_its_labels() {
        let readme = include_str!("../README.md");
        for d in ALL {
            let listed = if d.labels.is_empty() {
                format!("`{}`", d.name)
            } else {
                format!("`{}{{{}}}`", d.name, d.labels.join(","))
            };
            assert!(
                readme.contains(&listed),
                "handlers/README.md does not list {listed}"
            );
        }
    }
}
