//! CloudWatch Embedded Metric Format: the functions' metrics (`sequencer_handlers::metrics`, the
//! one catalogue) go to CloudWatch as JSON lines on stdout, written by
//! `metrics_cloudwatch_embedded`, a maintained recorder for the `metrics` facade (releases
//! through 2026, several contributors; it aggregates counters and histogram values between
//! flushes and writes one EMF document per label set). No agent and no API call.
//!
//! - Namespace: `METRICS_NAMESPACE` (default [`DEFAULT_NAMESPACE`]; the Terraform module sets
//!   `Sequencer/<prefix>`).
//! - Dimensions: the series' labels, so `[market]` or `[market, reason]`, `[market, code]`: the
//!   pipeline's `Metrics` puts the market on every series, so two markets (two deployments, one
//!   namespace or not) never share a metric in one account.
//! - Flushed after every invocation (every request for the proof function): counters carry what
//!   that invocation added, histograms its values (the crate keeps up to 100 values of a series
//!   between flushes; ours record one per epoch anchored or one per invocation), and
//!   `<function>_invocation_ms` how long it took. A series with nothing new is left out.
//!
//! We flush by hand rather than through the crate's `lambda` feature (its tower layer): that
//! feature pulls `lambda_http` with its default features into every function, and the flush is
//! one call at the point each `main` already marks the end of an invocation. The document is
//! written with a single `write_all`, so a log line can never land inside it.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_cloudwatch_embedded::Collector;
use sequencer_handlers::metrics::{invocation_ms, HistogramDef};
use sequencer_handlers::Pipeline;

/// CloudWatch namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "Sequencer";

/// `METRICS_NAMESPACE`, or [`DEFAULT_NAMESPACE`].
pub fn namespace_from_env() -> String {
    namespace(std::env::var("METRICS_NAMESPACE").ok().as_deref())
}

/// The namespace a `METRICS_NAMESPACE` value gives (unset or blank: the default).
fn namespace(value: Option<&str>) -> String {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

/// The EMF recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("CloudWatch EMF recorder: {0}")]
pub struct EmfError(String);

/// The process's EMF writer (the facade's global recorder) for one function.
pub struct Emf {
    collector: &'static Collector,
    invocation: Option<&'static HistogramDef<0>>,
}

impl std::fmt::Debug for Emf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emf")
            .field("namespace", &&*self.collector.config.cloudwatch_namespace)
            .field("invocation", &self.invocation.map(|d| d.name))
            .finish()
    }
}

/// The collector, installed once per process.
static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

impl Emf {
    /// Installs the EMF writer as the global recorder with the namespace of
    /// [`namespace_from_env`] and describes the catalogue to it (its units go into every
    /// document), for `function` (`verify`, `tick`, …: its `<function>_invocation_ms`). A
    /// pipeline built with `Pipeline::new` records into it. A second call in the process keeps
    /// the first writer.
    pub fn install(function: &'static str) -> Result<&'static Self, EmfError> {
        Self::install_with(&namespace_from_env(), function)
    }

    /// [`Emf::install`] with this namespace.
    pub fn install_with(
        namespace: &str,
        function: &'static str,
    ) -> Result<&'static Self, EmfError> {
        let collector = match COLLECTOR.get() {
            Some(c) => *c,
            None => {
                let c = metrics_cloudwatch_embedded::Builder::new()
                    .cloudwatch_namespace(namespace.to_string())
                    .init()
                    .map_err(|e| EmfError(e.to_string()))?;
                metrics::with_recorder(sequencer_handlers::metrics::describe);
                *COLLECTOR.get_or_init(|| c)
            }
        };
        Ok(Box::leak(Box::new(Self {
            collector,
            invocation: invocation_ms(function),
        })))
    }

    /// Writes what was recorded since the last flush to `out`.
    pub fn flush_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut doc = Vec::new();
        self.collector.flush(&mut doc)?;
        if doc.is_empty() {
            return Ok(());
        }
        out.write_all(&doc)?;
        out.flush()
    }

    /// The end of an invocation of `p`'s function: records how long it took, then prints what
    /// the invocation recorded. A failed write is logged, never the invocation's failure.
    pub fn invocation_done(&self, p: &Pipeline, took: Duration) {
        if let Some(def) = self.invocation {
            p.metrics.observe(def, [], took.as_secs_f64() * 1e3);
        }
        if let Err(e) = self.flush_to(&mut std::io::stdout().lock()) {
            tracing::warn!(error = %e, "EMF metrics could not be written");
        }
    }

    /// `app` flushing after each request, with how long the request took (the proof function:
    /// one request per invocation).
    pub fn per_request(
        &'static self,
        app: axum::Router,
        pipeline: std::sync::Arc<Pipeline>,
    ) -> axum::Router {
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let p = pipeline.clone();
                async move {
                    let started = std::time::Instant::now();
                    let response = next.run(req).await;
                    self.invocation_done(&p, started.elapsed());
                    response
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sequencer_core::Address;
    use sequencer_handlers::metrics::{self as m, Metrics};
    use serde_json::Value;

    fn docs(emf: &Emf) -> Vec<Value> {
        let mut out = Vec::new();
        emf.flush_to(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The document of `market` whose dimensions are `dims` (market first).
    fn doc<'a>(all: &'a [Value], market: &str, dims: &[&str]) -> &'a Value {
        all.iter()
            .find(|d| {
                d["market"] == market
                    && d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
                        .as_array()
                        .is_some_and(|a| {
                            a.iter()
                                .map(|v| v.as_str().unwrap())
                                .eq(dims.iter().copied())
                        })
            })
            .unwrap_or_else(|| panic!("no {dims:?} document for {market} in {all:#?}"))
    }

    fn unit(d: &Value, name: &str) -> String {
        d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Name"] == name)
            .map(|m| m["Unit"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{name} not declared in {d}"))
    }

    // The only test of this binary that installs the global recorder (one per process).
    #[test]
    fn per_invocation_documents_namespaced_and_dimensioned_by_market() {
        let emf = Emf::install_with("Sequencer/test", "verify").unwrap();
        let (a, b) = (Address::repeat_byte(0xaa), Address::repeat_byte(0xbb));
        let (ma, mb) = (Metrics::global(a), Metrics::global(b));
        ma.add(&m::VERIFY_ACCEPTED, [], 3);
        ma.inc(&m::VERIFY_REJECTED, ["late"]);
        ma.inc(&m::VERIFY_REJECTED, ["late"]);
        mb.inc(&m::VERIFY_ACCEPTED, []);
        ma.observe(&m::ANCHOR_CLOSE_TO_ANCHORED, [], 12.5);
        let all = docs(emf);
        let (sa, sb) = (format!("{a:#x}"), format!("{b:#x}"));
        for d in &all {
            let ns = &d["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(ns["Namespace"], "Sequencer/test", "{d}");
            assert_eq!(ns["Dimensions"][0][0], "market", "{d}");
        }
        let plain = doc(&all, &sa, &["market"]);
        assert_eq!(plain["verify_accepted_total"], 3);
        assert_eq!(unit(plain, "verify_accepted_total"), "Count");
        assert_eq!(
            plain["anchor_close_to_anchored_seconds"],
            serde_json::json!([12.5])
        );
        assert_eq!(unit(plain, "anchor_close_to_anchored_seconds"), "Seconds");
        let late = doc(&all, &sa, &["market", "reason"]);
        assert_eq!(
            (&late["reason"], &late["verify_rejected_total"]),
            (&"late".into(), &2.into())
        );
        // The other market's count is its own, in its own document.
        assert_eq!(doc(&all, &sb, &["market"])["verify_accepted_total"], 1);
        assert_eq!(all.len(), 3, "{all:#?}");

        // The next invocation prints only what it added.
        ma.inc(&m::VERIFY_ACCEPTED, []);
        let next = docs(emf);
        assert_eq!(next.len(), 1, "{next:#?}");
        assert_eq!(next[0]["verify_accepted_total"], 1);
        assert!(docs(emf).is_empty(), "nothing new, nothing printed");

        // A second install keeps the first writer; the function's invocation histogram is its own.
        let again = Emf::install_with("Other", "anchor").unwrap();
        assert_eq!(
            again.invocation.map(|d| d.name),
            Some("anchor_invocation_ms")
        );
        ma.observe(again.invocation.unwrap(), [], 40.0);
        let d = docs(again);
        assert_eq!(
            d[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Sequencer/test"
        );
        assert_eq!(unit(&d[0], "anchor_invocation_ms"), "Milliseconds");
    }

    #[test]
    fn the_namespace_is_the_variables_value_or_the_default() {
        assert_eq!(namespace(None), DEFAULT_NAMESPACE);
        assert_eq!(namespace(Some("  ")), DEFAULT_NAMESPACE);
        assert_eq!(namespace(Some(" Sequencer/m1 ")), "Sequencer/m1");
    }
}
