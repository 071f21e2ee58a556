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

mod common;

use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequencer_api::ingress::{IngressHealth, IngressPath, IngressResult};
use sequencer_api::serve::ServeLimits;
use sequencer_api::{codes, ApiConfig, ApiLimits};
use sequencer_core::cids::raw_cid;
use sequencer_core::proof::InclusionProof;
use sequencer_handlers::metrics as m;
use sequencer_handlers::query::Queries;
use sequencer_handlers::records::RejectReason;
use sequencer_handlers::tick;
use sequencer_handlers::verify::Verdict;
use sequencer_ports::{ContentStore, ErrorKind, OutMessage, PortError, Queue, Received, Table};
use sequencer_testsupport::block_hash_of;
use sequencer_testsupport::faults::Op;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

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
    the_live_summary_tells_head_ages_lag_failures_dead_letters_and_ingress,
    the_summary_survives_an_unreadable_dlq_and_a_failing_ingress_source,
    batch_documents_are_the_exact_bytes_their_cid_names,
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
    // The live summary names it as the newest day with rewards (what the page opens on).
    let r = e.get(&format!("/v1/markets/{}/status", e.m())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["latestRewardsDay"], 1, "{}", r.body);

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
    // A header before the epoch's window: rejected and stored with its reason (a signer that
    // is not the slot's snapshotter is counted and not stored, docs/protocol.md §5).
    let (forged, v) = e.submit(4, 4, epoch, "p3", CID_A, block_hash_of(1)).await;
    assert_eq!(
        v,
        Verdict::Rejected(RejectReason::from_code("outside_window"))
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
    assert_eq!(r.body["reason"], "outside_window");
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
    assert_eq!(st.body["counts"]["rejectedByReason"]["outside_window"], 1);
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
    let before = e.metrics.counter(&m::PROOF_CACHE_HITS, []);
    let again = e
        .get(&format!(
            "/v1/markets/{}/epochs/{epoch}/submissions/{b1}",
            e.m()
        ))
        .await;
    assert_eq!(again.body, r.body);
    assert_eq!(e.metrics.counter(&m::PROOF_CACHE_HITS, []), before + 1);
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
    assert_eq!(e.metrics.counter(&m::PROOF_REQUESTS, []), 0, "no lookups");
    assert!(e.metrics.counter(&m::PROOF_ERRORS, ["bad_market_address"]) >= 3);
    assert!(e.metrics.counter(&m::PROOF_ERRORS, ["not_found"]) >= 4);
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

/// Ingress health as a test source reports it: one replica, the given counts on both paths.
fn replica(name: &str, at_ms: i64, accepted: u64) -> IngressHealth {
    IngressHealth {
        replica: name.into(),
        at_ms,
        connections: 3,
        streams: 2,
        paths: ["collect", "gossipsub"]
            .into_iter()
            .map(|p| IngressPath {
                path: p.into(),
                accepted,
                rejected: 1,
                accepted_per_sec: None,
            })
            .collect(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn the_live_summary_tells_head_ages_lag_failures_dead_letters_and_ingress(via: Via) {
    // The source reports a replica whose counts grow by 100 per call, 2 s apart.
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let started = now_ms();
    let source = move || -> IngressResult {
        let n = c.fetch_add(1, Ordering::SeqCst);
        Ok(vec![replica(
            "task-1",
            started + 2_000 * n as i64,
            100 * (n + 1),
        )])
    };
    let config = ApiConfig {
        explorer_tx_url: Some("https://scan.example/tx/{tx}".into()),
        ..ApiConfig::default()
    };
    let e = env_state(via, ApiLimits::default(), ServeLimits::default(), |s| {
        s.with_queries(Queries::default().with_summary_ttl(Duration::ZERO))
            .with_ingress(Arc::new(source))
            .with_config(config)
    })
    .await;
    let path = format!("/v1/markets/{}/status", e.m());

    // Before the first tick: no head, no epoch, an empty DLQ.
    let r = e.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.body["chain"]["head"].is_null());
    assert!(r.body["latest"].is_null());
    assert_eq!(r.body["epochs"], serde_json::json!([]));
    // No day with rewards yet: the page keeps its rewards section hidden.
    assert!(r.body["latestRewardsDay"].is_null(), "{}", r.body);
    assert_eq!(r.body["deadLetters"][0]["queue"], "submissions-dlq");
    assert_eq!(r.body["deadLetters"][0]["depth"], 0);
    assert_eq!(
        r.body["page"]["explorerTxUrl"],
        "https://scan.example/tx/{tx}"
    );
    assert_eq!(
        r.body["page"]["ipfsGatewayUrl"],
        "https://ipfs.io/ipfs/{cid}"
    );
    assert_eq!(r.body["page"]["pollMs"], 5000);

    // Epoch 1 anchored; epoch 2's anchoring refused for good; epoch 3 open with live counts.
    let (e1, h) = e.open_epoch().await;
    e.submit(1, 1, e1, "p1", CID_A, h).await;
    e.submit(2, 2, e1, "p1", CID_A, block_hash_of(1)).await; // before the window
    e.close().await;
    e.finalize().await;
    e.anchor().await;
    let (e2, h) = e.open_epoch().await;
    e.submit(1, 1, e2, "p1", CID_A, h).await;
    e.close().await;
    e.finalize().await;
    e.chain.revert_next_submits(1);
    e.anchor().await;
    let (e3, h) = e.open_epoch().await;
    e.submit(1, 1, e3, "p1", CID_A, h).await;
    e.submit(3, 3, e3, "p2", CID_B, h).await;
    // Two poison messages in the submissions DLQ.
    e.submissions
        .send(&[OutMessage::new("x"), OutMessage::new("y")])
        .await
        .unwrap();
    for _ in 0..2 {
        let m = e.submissions.receive(1, Duration::ZERO).await.unwrap();
        e.submissions
            .dead_letter(&m[0], "test poison")
            .await
            .unwrap();
    }

    let r = e.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let b = &r.body;
    let head = e.chain.head_now();
    assert_eq!(b["chain"]["head"], head, "{b}");
    let tick_age = b["chain"]["tickAgeMs"].as_i64().unwrap();
    assert!((0..60_000).contains(&tick_age), "{tick_age}");
    assert_eq!(b["latest"]["epochId"], e3);
    assert_eq!(b["latest"]["state"], "OPEN");
    assert!(b["latest"]["ageMs"].as_i64().unwrap() >= 0);
    assert_eq!(b["latest"]["counts"]["accepted"], 2);
    let release3 = b["latest"]["releaseBlock"].as_u64().unwrap();
    assert_eq!(b["releaseLag"]["blocks"], head - release3);
    let release2 = b["epochs"][1]["releaseBlock"].as_u64().unwrap();
    let release1 = b["epochs"][2]["releaseBlock"].as_u64().unwrap();
    let mut gaps = [release3 - release2, release2 - release1];
    gaps.sort_unstable();
    assert_eq!(b["releaseLag"]["typicalBlocks"], gaps[1]);
    let ids: Vec<u64> = b["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["epochId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![e3, e2, e1], "newest first");
    assert_eq!(b["epochs"][2]["state"], "ANCHORED");
    assert_eq!(
        b["epochs"][2]["counts"]["rejectedByReason"]["outside_window"],
        1
    );
    assert!(b["epochs"][2]["closeToAnchoredMs"].as_i64().unwrap() >= 0);
    assert!(b["next_before"].is_null());
    assert_eq!(b["anchorFailures"]["window"], 3);
    assert_eq!(b["anchorFailures"]["count"], 1);
    assert_eq!(b["anchorFailures"]["latest"][0]["epochId"], e2);
    assert!(
        b["anchorFailures"]["latest"][0]["failure"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{b}"
    );
    assert_eq!(b["deadLetters"][0]["depth"], 2);
    // Ingress: the replica as reported; the second report (2 s later, +100) gives 50/s.
    assert_eq!(b["ingress"][0]["replica"], "task-1");
    assert_eq!(b["ingress"][0]["connections"], 3);
    assert_eq!(b["ingress"][0]["paths"][1]["path"], "gossipsub");
    assert_eq!(b["ingress"][0]["paths"][0]["accepted"], 200);
    assert_eq!(b["ingress"][0]["paths"][0]["acceptedPerSec"], 50.0, "{b}");
    assert!(b.get("ingressError").is_none());

    // Live: the next block shows at once (no summary is kept across requests here).
    e.chain.mine(1);
    tick::step(&e.p).await.unwrap();
    let r = e.get(&path).await;
    assert_eq!(r.body["chain"]["head"], head + 1);

    // Bad input is refused like everywhere else.
    for (p, status, want) in [
        (
            "/v1/markets/0x12/status".to_string(),
            400,
            codes::BAD_MARKET_ADDRESS,
        ),
        (
            format!("/v1/markets/0x{}/status", "ab".repeat(20)),
            404,
            codes::UNKNOWN_MARKET,
        ),
        (format!("{path}?x=1"), 400, codes::BAD_QUERY),
    ] {
        let r = e.get(&p).await;
        assert_eq!((r.status, code(&r)), (status, want), "{p}: {}", r.body);
    }
}

/// A dead-letter queue whose depth cannot be read.
struct UnreadableQueue;

#[async_trait::async_trait]
impl Queue for UnreadableQueue {
    fn name(&self) -> &str {
        "anchor-dlq.fifo"
    }
    async fn send(&self, _: &[OutMessage]) -> Result<(), PortError> {
        unreachable!()
    }
    async fn receive(&self, _: usize, _: Duration) -> Result<Vec<Received>, PortError> {
        unreachable!()
    }
    async fn ack(&self, _: &[String]) -> Result<(), PortError> {
        unreachable!()
    }
    async fn nack(&self, _: &str, _: Duration) -> Result<(), PortError> {
        unreachable!()
    }
    async fn dead_letter(&self, _: &Received, _: &str) -> Result<(), PortError> {
        unreachable!()
    }
    async fn depth(&self) -> Result<u64, PortError> {
        Err(PortError::queue(
            ErrorKind::Refused,
            "AccessDenied: sqs:GetQueueAttributes",
        ))
    }
}

async fn the_summary_survives_an_unreadable_dlq_and_a_failing_ingress_source(via: Via) {
    let failing = || -> IngressResult { Err("heartbeats unreadable: table throttled".into()) };
    let e = env_state(via, ApiLimits::default(), ServeLimits::default(), |s| {
        let dlq = s.pipeline.ports.submissions_dlq.clone();
        s.with_dead_letters(vec![dlq, Arc::new(UnreadableQueue)])
            .with_ingress(Arc::new(failing))
    })
    .await;
    let path = format!("/v1/markets/{}/status", e.m());
    let r = e.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(b["deadLetters"][0]["depth"], 0);
    assert_eq!(b["deadLetters"][1]["queue"], "anchor-dlq.fifo");
    assert!(b["deadLetters"][1]["depth"].is_null());
    assert!(b["deadLetters"][1]["error"]
        .as_str()
        .unwrap()
        .contains("AccessDenied"));
    assert!(b["ingress"].is_null());
    assert!(b["ingressError"].as_str().unwrap().contains("throttled"));
    // The summary is kept for a moment: many open pages cost one computation per interval.
    let again = e.get(&path).await;
    assert_eq!(again.body["nowMs"], b["nowMs"]);
    // Without a source, the summary says "not wired" (null, no error), not "no replica".
    let plain = env_state(via, ApiLimits::default(), ServeLimits::default(), |s| {
        s.with_queries(Queries::default().with_summary_ttl(Duration::ZERO))
    })
    .await;
    let r = plain
        .get(&format!("/v1/markets/{}/status", plain.m()))
        .await;
    assert!(
        r.body["ingress"].is_null() && r.body.get("ingressError").is_none(),
        "{}",
        r.body
    );
    // A store that fails is an error the page can show, not a half summary.
    plain.state.fail_next(Op::Get, Table::Epochs);
    let r = plain
        .get(&format!("/v1/markets/{}/status", plain.m()))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (503, codes::UNAVAILABLE),
        "{}",
        r.body
    );
}

async fn batch_documents_are_the_exact_bytes_their_cid_names(via: Via) {
    let e = env(via).await;
    let (epoch, h) = e.open_epoch().await;
    e.submit(1, 1, epoch, "p1", CID_A, h).await;
    e.submit(2, 2, epoch, "p2", CID_B, h).await;
    let doc = |i: &str| format!("/v1/markets/{}/epochs/{epoch}/batches/{i}/document", e.m());
    // Open: no batch yet.
    let r = e.get(&doc("1")).await;
    assert_eq!(
        (r.status, code(&r)),
        (404, codes::UNKNOWN_BATCH),
        "{}",
        r.body
    );
    e.close().await;
    e.finalize().await;
    e.anchor().await;
    let st = e
        .get(&format!("/v1/markets/{}/epochs/{epoch}", e.m()))
        .await;
    for i in 1..=2u32 {
        let r = e.get(&doc(&i.to_string())).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.immutable, "a CID names its bytes");
        assert!(r.headers["content-type"].starts_with("application/json"));
        let cid = st.body["batches"][(i - 1) as usize]["cid"]
            .as_str()
            .unwrap();
        assert_eq!(
            raw_cid(r.text.as_bytes()).to_string(),
            cid,
            "the bytes hash to the CID"
        );
        assert_eq!(
            r.text.as_bytes(),
            e.blocks.get(cid).await.unwrap().unwrap().as_slice(),
            "byte for byte"
        );
    }
    for (i, status, want) in [
        ("3", 404, codes::UNKNOWN_BATCH),
        ("0", 400, codes::BAD_BATCH_INDEX),
        ("x", 400, codes::BAD_BATCH_INDEX),
        ("4294967296", 400, codes::BAD_BATCH_INDEX),
    ] {
        let r = e.get(&doc(i)).await;
        assert_eq!((r.status, code(&r)), (status, want), "{i}: {}", r.body);
    }
    let r = e
        .get(&format!(
            "/v1/markets/{}/epochs/77/batches/1/document",
            e.m()
        ))
        .await;
    assert_eq!((r.status, code(&r)), (404, codes::UNKNOWN_EPOCH));
    // The content store lost the document: unavailable (retry), never other bytes.
    let cid = st.body["batches"][1]["cid"].as_str().unwrap();
    std::fs::remove_file(e.blocks.dir().join(cid)).unwrap();
    let r = e.get(&doc("2")).await;
    assert_eq!(
        (r.status, code(&r)),
        (503, codes::UNAVAILABLE),
        "{}",
        r.body
    );
    assert_eq!(r.headers["cache-control"], "no-store");
}
