//! The blockstore over HTTP, in the two forms collectors and validators already speak: the Kubo
//! RPC's `POST /api/v0/cat?arg=<cid>` and a gateway's `GET /ipfs/<cid>`. Lets anyone outside the
//! runner fetch the batch documents whose CIDs are on chain and recompute them.
//!
//! The same server answers the proof API under `/v1/` (`sequencer_api`, the router the `proof`
//! Lambda serves): submission fates with inclusion proofs, epoch status, recent epochs, the live
//! summary (with the dead-letter queues' depth and the in-process ingress's health, see
//! [`ingress_health`]), with the status page over it at `/` and `/status` (batch links go to this
//! server's own `/ipfs/<cid>`); and the process's metrics on `/metrics` in the
//! Prometheus text format (`crate::metrics`: the pipeline's, named and labelled as the
//! functions' EMF lines are, then the ingress's). It is served by `sequencer_api::serve` (hyper: header-read timeout, connection
//! limit) with the API's request timeout and in-flight limit over every route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::Exporter;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sequencer_api::ingress::{IngressHealth, IngressPath, IngressResult};
use sequencer_api::serve::ServeLimits;
use sequencer_api::{ApiConfig, ApiLimits, ApiState, IngressSource};
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

async fn metrics(State(m): State<Exporter>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
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

/// Serves `store` on `addr`, the proof API of `api` (with the status page) when given, and
/// `metrics` on `/metrics` when given; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    api: Option<ApiState>,
    metrics: Option<Exporter>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let mut app = Router::new()
        .route("/api/v0/cat", post(cat).get(cat))
        .route("/ipfs/{cid}", get(gateway))
        .with_state(store);
    if let Some(api) = api {
        app = app.merge(sequencer_api::router(api));
    }
    if let Some(m) = metrics {
        app = app.merge(
            Router::new()
                .route("/metrics", get(self::metrics))
                .with_state(m),
        );
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
