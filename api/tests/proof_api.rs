//! The proof API on the embedded adapters and an in-memory chain, through the router exactly as
//! it is served: every test runs twice, once against `sequencer_api::serve::serve` (hyper on a
//! real socket, as the local runner serves it) and once through `lambda_http`'s conversion of a
//! function URL event (as the `proof` Lambda serves it).
//!
//! Every fate of a submission (rejected, simulation, accepted before and after finalization,
//! included with a proof that verifies against the stored batch bytes and the chain's record),
//! epoch status, the paginated list, the cache of anchored epochs and its `Cache-Control`, bad
//! input refused before any lookup, percent-encoding and trailing slashes; and the limits: a
//! slow store answered `503 unavailable` at the request timeout, requests in flight bounded; on
//! the socket, a client that never finishes its headers dropped, connections beyond the limit
//! kept waiting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use std::time::{Duration, Instant};

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use sequencer_api::serve::{serve, ServeLimits};
use sequencer_api::{app, codes, ApiLimits, ApiState, IMMUTABLE};
use sequencer_core::proof::InclusionProof;
use sequencer_core::B256;
use sequencer_embedded::poller::{drain, PollerConfig};
use sequencer_handlers::records::RejectReason;
use sequencer_handlers::verify::{self, Verdict};
use sequencer_handlers::{anchor, finalize, tick};
use sequencer_ports::ContentStore;
use sequencer_testsupport::events::function_url_request;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use uuid::Uuid;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

/// How a request reaches the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// hyper on a loopback socket (the runner).
    Served,
    /// `lambda_http` from a function URL event (the `proof` Lambda).
    Lambda,
}

enum Client {
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
struct ApiResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
    text: String,
    /// `Cache-Control` says it is final.
    immutable: bool,
}

struct Env {
    h: Harness,
    api: ApiState,
    client: Client,
    via: Via,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

async fn env(via: Via) -> Env {
    env_with(via, ApiLimits::default(), ServeLimits::default()).await
}

async fn env_with(via: Via, limits: ApiLimits, serve_limits: ServeLimits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 1);
    let state = ApiState::new(h.p.clone());
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
    async fn call(&self, method: &str, path: &str) -> ApiResponse {
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

    async fn get(&self, path: &str) -> ApiResponse {
        self.call("GET", path).await
    }

    /// Signs and verifies one submission; returns its id and verdict.
    async fn submit(
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

    async fn finalize(&self) {
        drain(&self.finalize_q, &cfg(), 10, |e| {
            finalize::handle(&self.p, e)
        })
        .await
        .unwrap();
    }

    async fn anchor(&self) {
        drain(&self.anchor_q, &cfg(), 10, |e| anchor::handle(&self.p, e))
            .await
            .unwrap();
    }

    fn m(&self) -> String {
        format!("{:#x}", self.market)
    }

    /// Releases an epoch, opens it and returns (epoch, a header inside its window).
    async fn open_epoch(&self) -> (u64, B256) {
        let (epoch, r) = self.chain.release();
        self.chain.mine(1);
        tick::step(&self.p).await.unwrap();
        (epoch, block_hash_of(r + 1))
    }

    async fn close(&self) {
        self.chain.mine(10);
        tick::step(&self.p).await.unwrap();
    }
}

fn cfg() -> PollerConfig {
    PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    }
}

fn code(r: &ApiResponse) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("")
}

/// Each test, run through both servers.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod served {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Via::Served).await
                }
            )*
        }
        mod lambda {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Via::Lambda).await
                }
            )*
        }
    };
}

both!(
    every_fate_of_a_submission_and_a_proof_that_verifies,
    bad_input_is_refused_before_any_lookup,
    epochs_are_listed_newest_first_in_pages,
    percent_encoding_and_trailing_slashes_are_the_routers,
    a_slow_store_is_answered_unavailable_at_the_request_timeout,
    requests_in_flight_are_bounded,
    rewards_per_epoch_and_per_day,
);

async fn rewards_per_epoch_and_per_day(via: Via) {
    let e = env(via).await;
    // One epoch a day, a quota of 1.
    e.chain.set_market(10, 1, 1);
    let (epoch, h) = e.open_epoch().await;
    e.submit(1, 1, epoch, "p1", CID_A, h).await;
    e.submit(2, 2, epoch, "p1", CID_A, h).await;
    e.submit(3, 3, epoch, "p1", CID_B, h).await;
    e.close().await;
    e.finalize().await;
    e.anchor().await;

    let r = e
        .get(&format!("/v1/markets/{}/epochs/{epoch}/rewards", e.m()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.immutable, "final once the epoch is finalized");
    let slots = r.body["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3);
    assert_eq!(slots[0]["eligible"], 1);
    assert_eq!(slots[2]["slot"], 3);
    assert_eq!(slots[2]["eligible"], 0);
    assert_eq!(slots[2]["discards"][0]["cid"], CID_B);
    assert_eq!(slots[2]["discards"][0]["finalized_cid"], CID_A);
    assert_eq!(slots[2]["discards"][0]["reason"], "outvoted");

    // Day 1 is running: not computed yet.
    let day = format!("/v1/markets/{}/days/1/rewards", e.m());
    let r = e.get(&day).await;
    assert_eq!(
        (r.status, code(&r)),
        (404, codes::UNKNOWN_DAY),
        "{}",
        r.body
    );
    // Day 2 starts; the commit runs; the day is answered, final.
    e.chain.release();
    sequencer_handlers::rewards::run(
        &e.p,
        sequencer_handlers::jobs::RewardsJob {
            market: e.market,
            day: 1,
        },
    )
    .await
    .unwrap();
    let r = e.get(&day).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.immutable);
    assert_eq!(r.body["status"], "committed");
    assert_eq!(r.body["eligible_nodes"], 2, "slot 3 earned nothing");
    assert_eq!(r.body["first_epoch"], epoch);
    assert_eq!(r.body["committed"]["completed"], serde_json::json!([1, 2]));

    // Bad days are refused before any lookup; another market is not ours.
    for bad in ["0", "x", "-1", "1.5"] {
        let r = e
            .get(&format!("/v1/markets/{}/days/{bad}/rewards", e.m()))
            .await;
        assert_eq!(
            (r.status, code(&r)),
            (400, codes::BAD_DAY),
            "{bad}: {}",
            r.body
        );
    }
    let r = e
        .get(&format!("/v1/markets/0x{}/days/1/rewards", "ab".repeat(20)))
        .await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_MARKET));
    let r = e
        .get(&format!("/v1/markets/{}/epochs/999/rewards", e.m()))
        .await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_EPOCH));
}

async fn every_fate_of_a_submission_and_a_proof_that_verifies(via: Via) {
    let e = env(via).await;
    let (epoch, h) = e.open_epoch().await;
    let (a1, v) = e.submit(1, 1, epoch, "p1", CID_A, h).await;
    assert_eq!(v, Verdict::Accepted);
    let (a2, _) = e.submit(2, 2, epoch, "p1", CID_B, h).await;
    let (b1, _) = e.submit(3, 3, epoch, "p2", CID_A, h).await;
    let (forged, v) = e.submit(4, 5, epoch, "p3", CID_A, h).await;
    assert_eq!(
        v,
        Verdict::Rejected(RejectReason::from_code("not_slot_snapshotter"))
    );
    let (sim, v) = e.submit(5, 5, 0, "p4", CID_A, h).await;
    assert_eq!(v, Verdict::Simulation);

    // Open: accepted, no proof yet; rejected with its reason; status counts live.
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{a1}",
            e.m()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["fate"], "accepted");
    assert_eq!(r.body["epochState"], "OPEN");
    assert!(r.body.get("proof").is_none());
    assert!(!r.immutable);
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{forged}",
            e.m()
        ))
        .await;
    assert_eq!(r.body["fate"], "rejected");
    assert_eq!(r.body["reason"], "not_slot_snapshotter");
    assert!(r.body["at_ms"].as_i64().unwrap() > 0);
    let r = e
        .get(&format!("/v1/markets/{}/epochs/0/submissions/{sim}", e.m()))
        .await;
    assert_eq!(r.body["fate"], "simulation", "{}", r.body);
    let r = e.get(&format!("/v1/markets/{}/epochs/0", e.m())).await;
    assert_eq!(code(&r), codes::BAD_EPOCH, "epoch 0 has no status");
    let st = e
        .get(&format!("/v1/markets/{}/epochs/{epoch}", e.m()))
        .await;
    assert_eq!(st.status, 200);
    assert_eq!(st.body["state"], "OPEN");
    assert_eq!(st.body["counts"]["accepted"], 3);
    assert_eq!(
        st.body["counts"]["rejectedByReason"]["not_slot_snapshotter"],
        1
    );
    assert_eq!(st.body["countsFinal"], false);

    // Finalized, not anchored: the proof exists, the fate says it is not anchored.
    e.close().await;
    e.finalize().await;
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{b1}",
            e.m()
        ))
        .await;
    assert_eq!(r.body["epochState"], "FINALIZED");
    assert_eq!(r.body["fate"], "accepted");
    assert!(r.body["anchor"]["txHash"].is_null());
    let early: InclusionProof = serde_json::from_value(r.body["proof"].clone()).unwrap();
    assert_eq!(early.verify(), Ok(()));

    // Anchored: included, with the chain's transaction; verifies against the batch bytes.
    e.anchor().await;
    let on_chain = e.chain.anchored_batches(epoch);
    assert_eq!(on_chain.len(), 2, "batch size 1: p1 and p2");
    for (id, batch) in [(&a1, 1u32), (&a2, 1), (&b1, 2)] {
        let r = e
            .get(&format!(
                "/v1/markets/{}/epochs/{epoch}/submissions/{id}",
                e.m()
            ))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["fate"], "included", "{}", r.body);
        assert!(r.immutable);
        let proof: InclusionProof = serde_json::from_value(r.body["proof"].clone()).unwrap();
        assert_eq!(proof.batch_index, batch);
        assert_eq!(proof.siblings.len(), 32);
        let chain_batch = &on_chain[(batch - 1) as usize];
        assert_eq!(proof.batch_cid, chain_batch.batch_cid);
        assert_eq!(proof.anchor_tx, chain_batch.tx_hash);
        assert_eq!(r.body["anchor"]["block"], chain_batch.block);
        let bytes = e.blocks.get(&proof.batch_cid).await.unwrap().unwrap();
        assert_eq!(proof.verify_with_batch(&bytes), Ok(()));
    }
    // The second batch's leaf continues the epoch's tree.
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{b1}",
            e.m()
        ))
        .await;
    assert_eq!(r.body["proof"]["leafIndex"], 2);

    // Cached: the same answer again without a lookup.
    let before = e.p.counters.get("proof_cache_hits_total");
    let again = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{b1}",
            e.m()
        ))
        .await;
    assert_eq!(again.body, r.body);
    assert_eq!(e.p.counters.get("proof_cache_hits_total"), before + 1);
    assert!(e.api.queries.cached() >= 3);

    // Status of the anchored epoch.
    let st = e
        .get(&format!("/v1/markets/{}/epochs/{epoch}", e.m()))
        .await;
    assert_eq!(st.body["state"], "ANCHORED");
    assert_eq!(st.body["countsFinal"], true);
    assert_eq!(st.body["batchCount"], 2);
    let batches = st.body["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0]["cid"], on_chain[0].batch_cid.as_str());
    assert_eq!(
        batches[0]["finalizedCidsRoot"],
        format!("{:#x}", on_chain[0].root)
    );
    assert!(batches[1]["txHash"].as_str().unwrap().starts_with("0x"));
    assert!(st.body["endTx"].as_str().is_some());
    assert!(st.immutable);

    // Unknown id in a known epoch; unknown epoch.
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{}",
            e.m(),
            Uuid::new_v4()
        ))
        .await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_SUBMISSION));
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/77/submissions/{}",
            e.m(),
            Uuid::new_v4()
        ))
        .await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_EPOCH));
    let r = e.get(&format!("/v1/markets/{}/epochs/77", e.m())).await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_EPOCH));
    // Upper-case ids are the same id.
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{}",
            e.m(),
            a1.to_uppercase()
        ))
        .await;
    assert_eq!(r.body["fate"], "included");
}

async fn bad_input_is_refused_before_any_lookup(via: Via) {
    let e = env(via).await;
    let m = e.m();
    let id = Uuid::new_v4();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/v1/markets/0x12/epochs/1".to_string(),
            400,
            codes::BAD_MARKET_ADDRESS,
        ),
        (
            format!("/v1/markets/{}/epochs/1", "zz".repeat(21)),
            400,
            codes::BAD_MARKET_ADDRESS,
        ),
        (
            format!("/v1/markets/0x{}/epochs/1", "g".repeat(40)),
            400,
            codes::BAD_MARKET_ADDRESS,
        ),
        (
            format!("/v1/markets/0x{}/epochs/1", "ab".repeat(20)),
            404,
            codes::UNKNOWN_MARKET,
        ),
        (format!("/v1/markets/{m}/epochs/abc"), 400, codes::BAD_EPOCH),
        (format!("/v1/markets/{m}/epochs/-1"), 400, codes::BAD_EPOCH),
        (format!("/v1/markets/{m}/epochs/+1"), 400, codes::BAD_EPOCH),
        (
            format!("/v1/markets/{m}/epochs/99999999999999999999999"),
            400,
            codes::BAD_EPOCH,
        ),
        (
            format!("/v1/markets/{m}/epochs/1/submissions/not-a-uuid"),
            400,
            codes::BAD_SUBMISSION_ID,
        ),
        (
            format!("/v1/markets/{m}/epochs/1/submissions/{}", id.simple()),
            400,
            codes::BAD_SUBMISSION_ID,
        ),
        (
            format!("/v1/markets/{m}/epochs?limit=0"),
            400,
            codes::BAD_QUERY,
        ),
        (
            format!("/v1/markets/{m}/epochs?limit=1000"),
            400,
            codes::BAD_QUERY,
        ),
        (
            format!("/v1/markets/{m}/epochs?before=x"),
            400,
            codes::BAD_EPOCH,
        ),
        (
            format!("/v1/markets/{m}/epochs?sort=asc"),
            400,
            codes::BAD_QUERY,
        ),
        (
            format!("/v1/markets/{m}/epochs?limit=1&limit=2"),
            400,
            codes::BAD_QUERY,
        ),
        (
            format!("/v1/markets/{m}/epochs/1?x=1"),
            400,
            codes::BAD_QUERY,
        ),
        (
            format!("/v1/markets/{m}/epochs?before=1&before=2"),
            400,
            codes::BAD_QUERY,
        ),
        ("/v1/markets?x=1".to_string(), 400, codes::BAD_QUERY),
        (format!("/v1/markets/{m}/batches"), 404, codes::NOT_FOUND),
        ("/v2/markets".to_string(), 404, codes::NOT_FOUND),
        (format!("/v1/{}", "a/".repeat(300)), 404, codes::NOT_FOUND),
        (
            format!("/v1/markets/{m}/epochs/1/submissions/{}", "f".repeat(300)),
            404,
            codes::NOT_FOUND,
        ),
    ];
    for (path, status, want) in cases {
        let r = e.get(&path).await;
        assert_eq!((r.status, code(&r)), (status, want), "{path}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().len() < 300);
    }
    for method in ["POST", "DELETE", "PUT"] {
        let r = e.call(method, &format!("/v1/markets/{m}/epochs")).await;
        assert_eq!(
            (r.status, code(&r)),
            (405, codes::METHOD_NOT_ALLOWED),
            "{method}"
        );
    }
    assert_eq!(e.p.counters.get("proof_requests_total"), 0, "no lookups");
    assert!(
        e.p.counters
            .get("proof_errors_total{code=bad_market_address}")
            >= 3
    );
    assert!(e.p.counters.get("proof_errors_total{code=not_found}") >= 4);
    let r = e.get("/v1/markets").await;
    assert_eq!(r.body["markets"][0], m.as_str());
    assert_eq!(r.headers["cache-control"], "no-store");
    // The status page, next to the API.
    for path in ["/", "/status", "/status/"] {
        let r = e.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.headers["content-type"].starts_with("text/html"),
            "{path}: {:?}",
            r.headers
        );
        assert!(r.text.contains("/v1/markets"), "{path}");
    }
    assert!(e.get("/v1/markets").await.headers["content-type"].starts_with("application/json"));
    // HEAD is GET without a body.
    let r = e.call("HEAD", "/v1/markets").await;
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty(), "{}", r.text);
}

async fn epochs_are_listed_newest_first_in_pages(via: Via) {
    let e = env(via).await;
    for _ in 0..5 {
        let (epoch, h) = e.open_epoch().await;
        e.submit(1, 1, epoch, "p1", CID_A, h).await;
        e.close().await;
    }
    e.finalize().await;
    e.anchor().await;
    let list = |q: String| {
        let e = &e;
        async move {
            let r = e.get(&format!("/v1/markets/{}/epochs{q}", e.m())).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let ids: Vec<u64> = r.body["epochs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["epochId"].as_u64().unwrap())
                .collect();
            (ids, r.body["next_before"].as_u64(), r.body)
        }
    };
    let (ids, next, body) = list(String::new()).await;
    assert_eq!(ids, vec![5, 4, 3, 2, 1]);
    assert_eq!(next, None);
    let first: &Value = &body["epochs"][0];
    assert_eq!(first["state"], "ANCHORED");
    assert_eq!(first["counts"]["accepted"], 1);
    assert!(first["closeToAnchoredMs"].as_i64().unwrap() >= 0);
    let (ids, next, _) = list("?limit=2".into()).await;
    assert_eq!((ids, next), (vec![5, 4], Some(4)));
    let (ids, next, _) = list("?limit=2&before=4".into()).await;
    assert_eq!((ids, next), (vec![3, 2], Some(2)));
    let (ids, next, _) = list("?limit=2&before=2".into()).await;
    assert_eq!((ids, next), (vec![1], None));
    let (ids, _, _) = list("?before=1".into()).await;
    assert!(ids.is_empty());
    // An open epoch's counts are counted live.
    let (epoch, h) = e.open_epoch().await;
    e.submit(1, 1, epoch, "p1", CID_A, h).await;
    e.submit(1, 1, epoch, "p2", CID_A, h).await;
    e.submit(1, 1, epoch, "p3", CID_A, h).await;
    let (ids, _, body) = list("?limit=1".into()).await;
    assert_eq!(ids, vec![epoch]);
    assert_eq!(body["epochs"][0]["state"], "OPEN");
    assert_eq!(body["epochs"][0]["counts"]["accepted"], 2);
    assert_eq!(
        body["epochs"][0]["counts"]["rejectedByReason"]["slot_epoch_cap"],
        1
    );
    assert_eq!(body["epochs"][0]["countsFinal"], false);
}

async fn percent_encoding_and_trailing_slashes_are_the_routers(via: Via) {
    let e = env(via).await;
    let (epoch, h) = e.open_epoch().await;
    let (id, v) = e.submit(1, 1, epoch, "p1", CID_A, h).await;
    assert_eq!(v, Verdict::Accepted);
    // Percent-encoded path segments decode before they are parsed: `%30x` is `0x`, `%2D` is `-`.
    let market = format!("%30x{}", &e.m()[2..]);
    let encoded_id = id.to_uppercase().replace('-', "%2D");
    for path in [
        format!("/v1/markets/{market}/epochs/{epoch}/submissions/{encoded_id}"),
        format!("/v1/markets/{}/epochs/{epoch}/submissions/{id}/", e.m()),
    ] {
        let r = e.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.body["submissionId"], id.as_str(), "{path}");
        assert_eq!(r.body["fate"], "accepted", "{path}");
    }
    // Query values too; an encoded separator is a value, not a separator.
    let r = e
        .get(&format!("/v1/markets/{}/epochs/?limit=%31", e.m()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["epochs"].as_array().unwrap().len(), 1);
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs?limit=1%26before%3D2",
            e.m()
        ))
        .await;
    assert_eq!((r.status, code(&r)), (400, codes::BAD_QUERY), "{}", r.body);
    // A segment that is not UTF-8 once decoded is refused, not a crash.
    let r = e.get(&format!("/v1/markets/{}/epochs/%FF", e.m())).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!code(&r).is_empty(), "{}", r.body);
}

async fn a_slow_store_is_answered_unavailable_at_the_request_timeout(via: Via) {
    let limits = ApiLimits {
        request_timeout: Duration::from_millis(300),
        ..ApiLimits::default()
    };
    let e = env_with(via, limits, ServeLimits::default()).await;
    e.state.delay(Some(Duration::from_secs(3)));
    let started = Instant::now();
    let r = e.get(&format!("/v1/markets/{}/epochs/1", e.m())).await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, code(&r)),
        (503, codes::UNAVAILABLE),
        "{}",
        r.text
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
    e.state.delay(None);
    let r = e.get(&format!("/v1/markets/{}/epochs/1", e.m())).await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_EPOCH));
}

async fn requests_in_flight_are_bounded(via: Via) {
    let limits = ApiLimits {
        max_in_flight: 2,
        ..ApiLimits::default()
    };
    let e = env_with(via, limits, ServeLimits::default()).await;
    e.state.delay(Some(Duration::from_millis(200)));
    let path = format!("/v1/markets/{}/epochs/7", e.m());
    let started = Instant::now();
    let answers = futures::future::join_all((0..6).map(|_| e.get(&path))).await;
    for r in &answers {
        assert_eq!(
            (r.status, code(r)),
            (404, codes::UNKNOWN_EPOCH),
            "{}",
            r.text
        );
    }
    // Each request reads the store once; at most two ran at a time, so six took three rounds.
    assert_eq!(e.state.peak_in_flight(), 2);
    assert!(started.elapsed() >= Duration::from_millis(550));
}

/// The socket server only (Lambda reads the request for us).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_a_client_that_never_finishes_its_headers_is_dropped() {
    let e = env_with(
        Via::Served,
        ApiLimits::default(),
        ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        },
    )
    .await;
    let Client::Served { base, .. } = &e.client else {
        unreachable!()
    };
    let addr = base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /v1/markets HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("\"markets\""),
        "no answer to a request whose headers never ended"
    );
    // Others are still served.
    assert_eq!(e.get("/v1/markets").await.status, 200);
    assert_eq!(e.via, Via::Served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_connections_beyond_the_limit_wait_for_one_to_close() {
    let e = env_with(
        Via::Served,
        ApiLimits::default(),
        ServeLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(30),
            ..ServeLimits::default()
        },
    )
    .await;
    let Client::Served { base, .. } = &e.client else {
        unreachable!()
    };
    let addr = base.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /v1/markets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the connection limit");
    drop(idle.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
