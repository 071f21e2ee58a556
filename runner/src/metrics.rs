//! The runner's Prometheus exporter (`metrics-exporter-prometheus`): what `/metrics` on the
//! runner's HTTP address serves, and the counters of the closing summary.
//!
//! Two registries, one page. The pipeline records into a recorder of its own (built here and
//! given to `Pipeline::with_recorder`); the in-process ingress keeps the recorder its
//! `sequencer_ingress::metrics::Metrics` owns, as it does in its own binary and in the tests and
//! the simulator that run several ingresses in one process. `/metrics` renders the pipeline's
//! registry, then the ingress's: their names never meet (every ingress metric starts with
//! `ingress_`, no catalogue name does; a test checks), so the page is one valid exposition, and
//! neither side needs to know the other to record. The ingress also still serves its own
//! `/metrics` on its HTTP address, exactly what a deployed ingress task serves.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::{Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sequencer_handlers::metrics::{Kind, ALL, MARKET_LABEL};
use sequencer_ingress::metrics::Metrics as IngressMetrics;

/// Buckets of the catalogue's histograms in seconds: 0.1 s .. 1 h (an epoch's close → anchored
/// is seconds to a few minutes; an hour is an outage).
const SECONDS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets of the catalogue's histograms in milliseconds: 1 ms .. 5 min.
const MILLISECONDS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 10e3, 30e3, 60e3, 300e3,
];

/// The pipeline's registry and, when given, the ingress's: rendered together.
#[derive(Clone)]
pub struct Exporter {
    pipeline: PrometheusHandle,
    ingress: Option<IngressMetrics>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("ingress", &self.ingress.is_some())
            .finish()
    }
}

impl Exporter {
    /// The exporter, and the recorder to give the pipeline (`Pipeline::with_recorder`).
    pub fn new(ingress: Option<IngressMetrics>) -> (Self, Arc<dyn Recorder + Send + Sync>) {
        let builder = ALL.iter().filter(|d| d.kind == Kind::Histogram).fold(
            PrometheusBuilder::new(),
            |b, d| {
                let buckets = if d.unit == Unit::Seconds {
                    SECONDS
                } else {
                    MILLISECONDS
                };
                // Only an empty bucket list is refused; ours are constants.
                match b.set_buckets_for_metric(Matcher::Full(d.name.into()), buckets) {
                    Ok(b) => b,
                    Err(_) => PrometheusBuilder::new(),
                }
            },
        );
        let recorder = builder.build_recorder();
        let pipeline = recorder.handle();
        (Self { pipeline, ingress }, Arc::new(recorder))
    }

    /// The Prometheus text exposition of the pipeline's metrics, then the ingress's.
    pub fn render(&self) -> String {
        let mut text = self.pipeline.render();
        if let Some(ingress) = &self.ingress {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&ingress.render());
        }
        text
    }

    /// The pipeline's counters as the closing summary shows them: `name` or
    /// `name{key=value,…}`, without the market label (the summary names the market once).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        counters(&self.pipeline.render())
    }
}

/// The counter series of the catalogue in a Prometheus text exposition, keyed as the summary
/// shows them (see [`Exporter::counters`]).
fn counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, labels_of(rest.strip_suffix('}').unwrap_or(rest))),
            None => (series, Vec::new()),
        };
        if !ALL
            .iter()
            .any(|d| d.name == name && d.kind == Kind::Counter)
        {
            continue;
        }
        let shown: Vec<String> = labels
            .into_iter()
            .filter(|(k, _)| k != MARKET_LABEL)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let key = if shown.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{}}}", shown.join(","))
        };
        let n = value.parse::<f64>().map_or(0, |v| v as u64);
        *out.entry(key).or_default() += n;
    }
    out
}

/// `a="x",b="y\"z"` → [(a, x), (b, y"z)].
fn labels_of(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_string(), value));
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sequencer_core::Address;
    use sequencer_handlers::metrics::{self as m, Metrics};

    #[test]
    fn the_page_has_the_pipelines_series_with_the_market_then_the_ingresss() {
        let ingress = IngressMetrics::new();
        ingress.messages_accepted.inc_by(3);
        let (exporter, recorder) = Exporter::new(Some(ingress));
        let market = Address::repeat_byte(0x1f);
        let p = Metrics::with_recorder(market, recorder);
        p.inc(&m::VERIFY_REJECTED, ["late"]);
        p.add(&m::VERIFY_ACCEPTED, [], 80);
        p.observe(&m::ANCHOR_CLOSE_TO_ANCHORED, [], 4.2);
        let text = exporter.render();
        let mk = format!("market=\"{market:#x}\"");
        for line in [
            "# HELP verify_accepted_total Submissions accepted for their epoch.".to_string(),
            "# TYPE verify_accepted_total counter".to_string(),
            format!("verify_accepted_total{{{mk}}} 80"),
            format!("verify_rejected_total{{{mk},reason=\"late\"}} 1"),
            "# TYPE anchor_close_to_anchored_seconds histogram".to_string(),
            format!("anchor_close_to_anchored_seconds_bucket{{{mk},le=\"5\"}} 1"),
            format!("anchor_close_to_anchored_seconds_bucket{{{mk},le=\"2.5\"}} 0"),
            "ingress_messages_accepted_total 3".to_string(),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
        // One exposition: no family is described twice.
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n, "{text}");
        assert_eq!(
            exporter.counters(),
            BTreeMap::from([
                ("verify_accepted_total".to_string(), 80),
                ("verify_rejected_total{reason=late}".to_string(), 1),
            ])
        );
    }

    #[test]
    fn no_catalogue_name_can_meet_an_ingress_name() {
        for d in ALL {
            assert!(!d.name.starts_with("ingress_"), "{}", d.name);
        }
        let ingress = IngressMetrics::new().render();
        // (Blank lines are allowed in the exposition format and carry no name.)
        for line in ingress
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            assert!(line.starts_with("ingress_"), "{line}");
        }
    }

    /// One HTTP/1.1 GET on `addr`: (status line, headers and body).
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (status, rest) = out.split_once("\r\n").unwrap();
        (status.to_string(), rest.to_string())
    }

    #[tokio::test]
    async fn the_runners_http_address_serves_the_page_as_prometheus_text() {
        let (exporter, recorder) = Exporter::new(Some(IngressMetrics::new()));
        let market = Address::repeat_byte(0x2e);
        Metrics::with_recorder(market, recorder).inc(&m::VERIFY_REJECTED, ["duplicate"]);
        let stop = tokio_util::sync::CancellationToken::new();
        let store = Arc::new(sequencer_testsupport::ServedContent::default());
        let with = crate::content_http::serve(
            "127.0.0.1:0".parse().unwrap(),
            store.clone(),
            None,
            Some(exporter),
            stop.clone(),
        )
        .await
        .unwrap();
        let (status, rest) = get(with, "/metrics").await;
        assert!(status.ends_with("200 OK"), "{status}");
        assert!(
            rest.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{rest}"
        );
        let series =
            format!("verify_rejected_total{{market=\"{market:#x}\",reason=\"duplicate\"}} 1");
        assert!(rest.contains(&series), "{rest}");
        assert!(rest.contains("ingress_"), "{rest}");
        // Without an exporter there is no page (seqctl's tests serve content only).
        let without = crate::content_http::serve(
            "127.0.0.1:0".parse().unwrap(),
            store,
            None,
            None,
            stop.clone(),
        )
        .await
        .unwrap();
        assert!(get(without, "/metrics").await.0.contains(" 404 "));
        stop.cancel();
    }

    #[test]
    fn label_values_are_unescaped() {
        assert_eq!(
            labels_of(r#"market="0xab",reason="a\"b\\c\nd""#),
            vec![
                ("market".to_string(), "0xab".to_string()),
                ("reason".to_string(), "a\"b\\c\nd".to_string())
            ]
        );
        assert_eq!(
            counters("# TYPE x counter\nproof_errors_total{market=\"0x1\",code=\"not_found\"} 4\nnot_ours_total 9\n"),
            BTreeMap::from([("proof_errors_total{code=not_found}".to_string(), 4)])
        );
    }
}
