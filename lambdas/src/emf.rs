//! CloudWatch Embedded Metric Format: after each invocation a function prints what its counters
//! (`Pipeline.counters`, named like the ingress's metrics: `<stage>_<what>_total`, a label as
//! `{reason=…}`) gained during it, and how long it took, as JSON lines CloudWatch turns into
//! metrics (namespace [`NAMESPACE`], dimension `Function`, plus the label when there is one).
//! No agent and no API call: the lines go to stdout with the logs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// CloudWatch namespace.
pub const NAMESPACE: &str = "Sequencer";

/// `verify_rejected_total{reason=duplicate}` → (`verify_rejected_total`, [(reason, duplicate)]).
pub fn split_labels(name: &str) -> (&str, Vec<(&str, &str)>) {
    match name.split_once('{') {
        Some((base, rest)) => {
            let labels = rest
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
                .collect();
            (base, labels)
        }
        None => (name, Vec::new()),
    }
}

/// A counter's labels, `(name, value)`.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// The EMF lines for one invocation: one per label set, the unlabelled counters and the
/// duration together.
pub fn lines(
    function: &str,
    deltas: &BTreeMap<String, u64>,
    duration: Duration,
    timestamp_ms: u64,
) -> Vec<String> {
    let mut groups: BTreeMap<Labels, Vec<(&str, u64)>> = BTreeMap::new();
    for (name, n) in deltas.iter().filter(|(_, n)| **n > 0) {
        let (base, labels) = split_labels(name);
        groups.entry(labels).or_default().push((base, *n));
    }
    let duration_ms = duration.as_secs_f64() * 1e3;
    let invocation = format!("{function}_invocation_ms");
    groups.entry(Vec::new()).or_default();
    groups
        .into_iter()
        .map(|(labels, values)| {
            let mut dims = vec![Value::from("Function")];
            let mut doc = Map::new();
            doc.insert("Function".into(), Value::from(function));
            for (k, v) in &labels {
                dims.push(Value::from(*k));
                doc.insert((*k).to_string(), Value::from(*v));
            }
            let mut metrics: Vec<Value> = values
                .iter()
                .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                .collect();
            for (name, n) in &values {
                doc.insert((*name).to_string(), Value::from(*n));
            }
            if labels.is_empty() {
                metrics.push(json!({"Name": invocation, "Unit": "Milliseconds"}));
                doc.insert(invocation.clone(), Value::from(duration_ms));
            }
            doc.insert(
                "_aws".into(),
                json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": metrics}]}),
            );
            Value::Object(doc).to_string()
        })
        .collect()
}

/// Prints each invocation's gains of a process's counters.
#[derive(Debug)]
pub struct Emf {
    function: &'static str,
    last: Mutex<BTreeMap<String, u64>>,
}

impl Emf {
    /// For one function (`verify`, `tick`, …).
    pub fn new(function: &'static str) -> Self {
        Self {
            function,
            last: Mutex::new(BTreeMap::new()),
        }
    }

    /// One for the whole execution environment (a Lambda `main` keeps it for its lifetime).
    pub fn leaked(function: &'static str) -> &'static Self {
        Box::leak(Box::new(Self::new(function)))
    }

    /// Prints what `counters` gained since the last call, and `duration`.
    pub fn emit(&self, counters: &sequencer_handlers::Counters, duration: Duration) {
        let now = counters.snapshot();
        let deltas = match self.last.lock() {
            Ok(mut last) => {
                let d = now
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.saturating_sub(last.get(k).copied().unwrap_or(0)),
                        )
                    })
                    .collect();
                *last = now;
                d
            }
            Err(_) => return,
        };
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for l in lines(self.function, &deltas, duration, ts) {
            println!("{l}");
        }
    }

    /// `app` printing, after each request, what `pipeline`'s counters gained and how long the
    /// request took (the proof function: one request per invocation).
    pub fn per_request(
        &'static self,
        app: axum::Router,
        pipeline: std::sync::Arc<sequencer_handlers::Pipeline>,
    ) -> axum::Router {
        app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let p = pipeline.clone();
                async move {
                    let started = std::time::Instant::now();
                    let response = next.run(req).await;
                    self.emit(&p.counters, started.elapsed());
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

    #[test]
    fn one_line_per_label_set_with_the_duration_on_the_plain_one() {
        let mut d = BTreeMap::new();
        d.insert("verify_accepted_total".to_string(), 3);
        d.insert("verify_rejected_total{reason=duplicate}".to_string(), 2);
        d.insert("verify_rejected_total{reason=late}".to_string(), 0);
        let l = lines("verify", &d, Duration::from_millis(12), 1000);
        assert_eq!(l.len(), 2, "{l:?}");
        let plain: Value = serde_json::from_str(&l[0]).unwrap();
        assert_eq!(plain["verify_accepted_total"], 3);
        assert_eq!(plain["verify_invocation_ms"], 12.0);
        assert_eq!(plain["Function"], "verify");
        let m = &plain["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], NAMESPACE);
        assert_eq!(m["Dimensions"][0][0], "Function");
        let reason: Value = serde_json::from_str(&l[1]).unwrap();
        assert_eq!(reason["reason"], "duplicate");
        assert_eq!(reason["verify_rejected_total"], 2);
        assert_eq!(
            reason["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1],
            "reason"
        );
        assert!(reason.get("verify_invocation_ms").is_none());
    }

    #[test]
    fn emits_only_what_an_invocation_added() {
        let c = sequencer_handlers::Counters::default();
        let emf = Emf::new("verify");
        c.add("verify_accepted_total", 5);
        emf.emit(&c, Duration::ZERO);
        let last = emf.last.lock().unwrap().clone();
        assert_eq!(last["verify_accepted_total"], 5);
        assert_eq!(
            split_labels("a_total{code=x}"),
            ("a_total", vec![("code", "x")])
        );
    }
}
