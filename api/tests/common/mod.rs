//! What the API's integration tests share: a harness (embedded adapters, an in-memory chain)
//! with the API over it, reached through hyper on a loopback socket (as the runner serves it) or
//! through `lambda_http`'s conversion of a function URL event (as the `proof` Lambda serves it),
//! and the pipeline's steps (open an epoch, submit, close, finalize, anchor).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use sequencer_api::serve::{serve, ServeLimits};
use sequencer_api::{app, ApiLimits, ApiState, IMMUTABLE};
use sequencer_core::B256;
use sequencer_embedded::poller::{drain, PollerConfig};
use sequencer_handlers::verify::{self, Verdict};
use sequencer_handlers::{anchor, finalize, tick};
use sequencer_testsupport::events::function_url_request;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
pub const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

/// How a request reaches the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// hyper on a loopback socket (the runner).
    Served,
    /// `lambda_http` from a function URL event (the `proof` Lambda).
    Lambda,
}

pub enum Client {
    Served {
        base: String,
        http: reqwest::Client,
        _stop: oneshot::Sender<()>,
    },
    Lambda {
        app: Router,
    },
}

/// An answer as the client saw it.
pub struct ApiResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub text: String,
    /// `Cache-Control` says it is final.
    pub immutable: bool,
}

pub struct Env {
    pub h: Harness,
    pub api: ApiState,
    pub client: Client,
    pub via: Via,
    pub _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

pub async fn env(via: Via) -> Env {
    env_with(via, ApiLimits::default(), ServeLimits::default()).await
}

pub async fn env_with(via: Via, limits: ApiLimits, serve_limits: ServeLimits) -> Env {
    env_state(via, limits, serve_limits, |s| s).await
}

/// [`env_with`] with the API's state shaped by `shape` (sources, settings, queries).
pub async fn env_state(
    via: Via,
    limits: ApiLimits,
    serve_limits: ServeLimits,
    shape: impl FnOnce(ApiState) -> ApiState,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 1);
    let state = shape(ApiState::new(h.p.clone()));
    let router = app(state.clone(), &limits);
    let client = match via {
        Via::Served => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(serve(listener, router, serve_limits, async move {
                let _ = stopped.await;
            }));
            Client::Served {
                base,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap(),
                _stop: stop,
            }
        }
        Via::Lambda => Client::Lambda { app: router },
    };
    Env {
        h,
        api: state,
        client,
        via,
        _dir: dir,
    }
}

impl Env {
    pub async fn call(&self, method: &str, path: &str) -> ApiResponse {
        let (status, headers, text) = match &self.client {
            Client::Served { base, http, .. } => {
                let r = http
                    .request(method.parse().unwrap(), format!("{base}{path}"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let headers: HashMap<String, String> = r
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                (status, headers, r.text().await.unwrap())
            }
            Client::Lambda { app } => {
                let req: LambdaRequest =
                    serde_json::from_value(function_url_request(method, path)).unwrap();
                let mut adapter = lambda_http::Adapter::from(app.clone());
                let resp = adapter
                    .call(LambdaEvent::new(req, Context::default()))
                    .await
                    .unwrap();
                let v = serde_json::to_value(&resp).unwrap();
                assert_eq!(v["isBase64Encoded"], false, "{v}");
                let headers = v["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap().to_string()))
                    .collect();
                (
                    v["statusCode"].as_u64().unwrap() as u16,
                    headers,
                    v["body"].as_str().unwrap_or("").to_string(),
                )
            }
        };
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let immutable = headers.get("cache-control").map(String::as_str) == Some(IMMUTABLE);
        ApiResponse {
            status,
            headers,
            body,
            text,
            immutable,
        }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.call("GET", path).await
    }

    /// Signs and verifies one submission; returns its id and verdict.
    pub async fn submit(
        &self,
        slot: u64,
        signer: u64,
        epoch: u64,
        project: &str,
        cid: &str,
        header: B256,
    ) -> (String, Verdict) {
        let id = Uuid::new_v4();
        let body = signed_message(
            &self.domain,
            self.market,
            &id,
            slot,
            signer,
            epoch,
            project,
            cid,
            header,
        )
        .0;
        let v = verify::verify_body(&self.p, &body).await.unwrap();
        (id.to_string(), v)
    }

    pub async fn finalize(&self) {
        drain(&self.finalize_q, &cfg(), 10, |e| {
            finalize::handle(&self.p, e)
        })
        .await
        .unwrap();
    }

    pub async fn anchor(&self) {
        drain(&self.anchor_q, &cfg(), 10, |e| anchor::handle(&self.p, e))
            .await
            .unwrap();
    }

    pub fn m(&self) -> String {
        format!("{:#x}", self.market)
    }

    /// Releases an epoch, opens it and returns (epoch, a header inside its window).
    pub async fn open_epoch(&self) -> (u64, B256) {
        let (epoch, r) = self.chain.release();
        self.chain.mine(1);
        tick::step(&self.p).await.unwrap();
        (epoch, block_hash_of(r + 1))
    }

    pub async fn close(&self) {
        self.chain.mine(10);
        tick::step(&self.p).await.unwrap();
    }
}

pub fn cfg() -> PollerConfig {
    PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    }
}

pub fn code(r: &ApiResponse) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("")
}
