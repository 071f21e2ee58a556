//! The blockstore over HTTP, in the two forms collectors and validators already speak: the Kubo
//! RPC's `POST /api/v0/cat?arg=<cid>` and a gateway's `GET /ipfs/<cid>`. Lets anyone outside the
//! runner fetch the batch documents whose CIDs are on chain and recompute them.
//!
//! The same server answers the proof API under `/v1/` (`sequencer_api`, the router the `proof`
//! Lambda serves): submission fates with inclusion proofs, epoch status, recent epochs, with the
//! status page over it at `/` and `/status`; and the process's metrics on `/metrics` in the
//! Prometheus text format (`crate::metrics`: the pipeline's, named and labelled as the
//! functions' EMF lines are, then the ingress's). It is served by `sequencer_api::serve` (hyper: header-read timeout, connection
//! limit) with the API's request timeout and in-flight limit over every route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sequencer_api::serve::ServeLimits;
use sequencer_api::{ApiLimits, ApiState};
use sequencer_handlers::Pipeline;

use crate::metrics::Exporter;
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

/// Serves `store` on `addr`, the proof API over `pipeline` (with the status page) when given,
/// and `metrics` on `/metrics` when given; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    pipeline: Option<Arc<Pipeline>>,
    metrics: Option<Exporter>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let mut app = Router::new()
        .route("/api/v0/cat", post(cat).get(cat))
        .route("/ipfs/{cid}", get(gateway))
        .with_state(store);
    if let Some(p) = pipeline {
        app = app.merge(sequencer_api::router(ApiState::new(p)));
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
