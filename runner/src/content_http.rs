//! The blockstore over HTTP, in the two forms collectors and validators already speak: the Kubo
//! RPC's `POST /api/v0/cat?arg=<cid>` and a gateway's `GET /ipfs/<cid>`. Lets anyone outside the
//! runner fetch the batch documents whose CIDs are on chain and recompute them.
//!
//! The same server answers the proof API under `/v1/` (`sequencer_api`, the router the `proof`
//! Lambda serves): submission fates with inclusion proofs, epoch status, recent epochs, the live
//! summary (with the dead-letter queues' depth and the in-process ingress's health, see
//! [`ingress_health`]), with the status page over it at `/` and `/status` (batch links go to this
//! server's own `/ipfs/<cid>`); and the pipeline's counters on `/metrics` in the
//! Prometheus text format (the names the functions' EMF lines carry, labels as Prometheus
//! labels). It is served by `sequencer_api::serve` (hyper: header-read timeout, connection
//! limit) with the API's request timeout and in-flight limit over every route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sequencer_api::ingress::{IngressHealth, IngressPath, IngressResult};
use sequencer_api::serve::ServeLimits;
use sequencer_api::{ApiConfig, ApiLimits, ApiState, IngressSource};
use sequencer_handlers::Pipeline;
use sequencer_ingress::metrics::{Metrics, Path as IngressPathLabel};
use sequencer_ports::ContentStore;
use tokio_util::sync::CancellationToken;

type Store = Arc<dyn ContentStore>;

async fn fetch(store: &Store, cid: &str) -> Response {
    match store.get(cid).await {
        Ok(Some(bytes)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("{{\"Message\":\"block {cid} not found\",\"Code\":0,\"Type\":\"error\"}}"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn cat(State(s): State<Store>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("arg") {
        Some(cid) => fetch(&s, cid.trim_start_matches("/ipfs/")).await,
        None => (
            StatusCode::BAD_REQUEST,
            "argument \"ipfs-path\" is required",
        )
            .into_response(),
    }
}

async fn gateway(State(s): State<Store>, Path(cid): Path<String>) -> Response {
    fetch(&s, &cid).await
}

/// `Pipeline.counters` in the Prometheus text format: `verify_rejected_total{reason=late}` becomes
/// `verify_rejected_total{reason="late"}`, one `# TYPE` line per name.
pub fn render_metrics(counters: &std::collections::BTreeMap<String, u64>) -> String {
    let mut by_name: std::collections::BTreeMap<&str, Vec<(String, u64)>> = Default::default();
    for (name, v) in counters {
        let (base, labels) = match name.split_once('{') {
            Some((b, rest)) => {
                let labels: Vec<String> = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| {
                        let v = v.trim().trim_matches('"');
                        let v = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        format!("{}=\"{v}\"", k.trim())
                    })
                    .collect();
                (b, format!("{{{}}}", labels.join(",")))
            }
            None => (name.as_str(), String::new()),
        };
        by_name.entry(base).or_default().push((labels, *v));
    }
    let mut out = String::new();
    for (name, series) in by_name {
        out.push_str(&format!("# TYPE {name} counter\n"));
        for (labels, v) in series {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    }
    out
}

async fn metrics(State(p): State<Arc<Pipeline>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&p.counters.snapshot()),
    )
        .into_response()
}

/// The status page's settings in the runner: batch links to this server's own gateway route
/// unless `STATUS_IPFS_GATEWAY_URL` says otherwise (the other `STATUS_*` variables apply too).
pub fn api_config() -> Result<ApiConfig, sequencer_api::config::ApiConfigError> {
    ApiConfig {
        ipfs_gateway_url: "/ipfs/{cid}".into(),
        ..ApiConfig::default()
    }
    .with_env()
}

/// The health of the ingress running in this process, as the status summary shows it: open
/// connections and `/collect` streams, and accepted / rejected submissions per path (the API
/// turns successive reports into rates).
pub fn ingress_health(replica: String, metrics: Metrics) -> impl IngressSource {
    move || -> IngressResult {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ok(vec![IngressHealth {
            replica: replica.clone(),
            at_ms,
            connections: metrics.connections_open.get().max(0) as u64,
            streams: metrics.streams_open.get().max(0) as u64,
            paths: [IngressPathLabel::Collect, IngressPathLabel::Gossipsub]
                .into_iter()
                .map(|p| IngressPath {
                    path: p.as_str().to_string(),
                    accepted: metrics.path.count_of(p, "accepted"),
                    rejected: metrics.path.count_of(p, "rejected"),
                    accepted_per_sec: None,
                })
                .collect(),
        }])
    }
}

/// Serves `store` on `addr`, and the proof API of `api` (with the status page) and its
/// pipeline's counters on `/metrics` when given; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    api: Option<ApiState>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let mut app = Router::new()
        .route("/api/v0/cat", post(cat).get(cat))
        .route("/ipfs/{cid}", get(gateway))
        .with_state(store);
    if let Some(api) = api {
        app = app
            .merge(
                Router::new()
                    .route("/metrics", get(metrics))
                    .with_state(api.pipeline.clone()),
            )
            .merge(sequencer_api::router(api));
    }
    let app = sequencer_api::with_limits(app, &ApiLimits::default());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(sequencer_api::serve::serve(
        listener,
        app,
        ServeLimits::default(),
        stop.cancelled_owned(),
    ));
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::render_metrics;

    #[test]
    fn counters_render_as_prometheus_text() {
        let mut c = std::collections::BTreeMap::new();
        c.insert("verify_accepted_total".to_string(), 80);
        c.insert("verify_rejected_total{reason=late}".to_string(), 1);
        c.insert("verify_rejected_total{reason=duplicate}".to_string(), 4);
        c.insert("verify_rejected_total_x".to_string(), 2);
        let text = render_metrics(&c);
        assert_eq!(
            text,
            "# TYPE verify_accepted_total counter\nverify_accepted_total 80\n\
             # TYPE verify_rejected_total counter\nverify_rejected_total{reason=\"duplicate\"} 4\n\
             verify_rejected_total{reason=\"late\"} 1\n\
             # TYPE verify_rejected_total_x counter\nverify_rejected_total_x 2\n"
        );
    }
}
