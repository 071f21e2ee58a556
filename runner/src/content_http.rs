//! The blockstore over HTTP, in the two forms collectors and validators already speak: the Kubo
//! RPC's `POST /api/v0/cat?arg=<cid>` and a gateway's `GET /ipfs/<cid>`. Lets anyone outside the
//! runner fetch the batch documents whose CIDs are on chain and recompute them.
//!
//! The same server answers the proof API under `/v1/` (`sequencer_functions::handlers::proof`,
//! the handler the `proof` Lambda runs): submission fates with inclusion proofs, epoch status,
//! recent epochs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use sequencer_functions::handlers::proof::ProofApi;
use sequencer_functions::ports::ContentStore;
use sequencer_functions::Pipeline;
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

async fn proof(
    State((p, api)): State<(Arc<Pipeline>, Arc<ProofApi>)>,
    method: Method,
    uri: Uri,
) -> Response {
    let r = api
        .handle(&p, method.as_str(), uri.path(), uri.query().unwrap_or(""))
        .await;
    (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, r.cache_control()),
        ],
        r.body_text(),
    )
        .into_response()
}

/// Serves `store` on `addr`, and the proof API over `pipeline` under `/v1/` when given; returns
/// the bound address.
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    pipeline: Option<Arc<Pipeline>>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let mut app = Router::new()
        .route("/api/v0/cat", post(cat).get(cat))
        .route("/ipfs/{cid}", get(gateway))
        .with_state(store);
    if let Some(p) = pipeline {
        app = app.merge(
            Router::new()
                .route("/v1/{*rest}", any(proof))
                .with_state((p, Arc::new(ProofApi::default()))),
        );
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok(bound)
}
