//! The proof API (`handlers::proof`) on the embedded adapters and an in-memory chain: every fate
//! of a submission (rejected, simulation, accepted before and after finalization, included with a
//! proof that verifies against the stored batch bytes and the chain's record), epoch status, the
//! paginated list, the cache of anchored epochs, and bad input refused before any lookup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sequencer_core::proof::InclusionProof;
use sequencer_core::B256;

use sequencer_embedded::poller::{drain, PollerConfig};
use sequencer_handlers::proof::{codes, ApiResponse, ProofApi};
use sequencer_handlers::{anchor, finalize, tick, verify};
use sequencer_ports::ContentStore;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};

use serde_json::Value;
use uuid::Uuid;
use verify::Verdict;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

struct Env {
    h: Harness,
    api: ProofApi,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        h: Harness::new(dir.path(), 1),
        api: ProofApi::default(),
        _dir: dir,
    }
}

impl Env {
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

    async fn get(&self, path: &str) -> ApiResponse {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        self.api.handle(&self.p, "GET", path, query).await
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

#[tokio::test]
async fn every_fate_of_a_submission_and_a_proof_that_verifies() {
    let e = env();
    let (epoch, h) = e.open_epoch().await;
    let (a1, v) = e.submit(1, 1, epoch, "p1", CID_A, h).await;
    assert_eq!(v, Verdict::Accepted);
    let (a2, _) = e.submit(2, 2, epoch, "p1", CID_B, h).await;
    let (b1, _) = e.submit(3, 3, epoch, "p2", CID_A, h).await;
    let (forged, v) = e.submit(4, 5, epoch, "p3", CID_A, h).await;
    assert_eq!(v, Verdict::Rejected("not_slot_snapshotter".into()));
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
    assert!(e.api.cached() >= 3);

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

#[tokio::test]
async fn bad_input_is_refused_before_any_lookup() {
    let e = env();
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
        (format!("/v1/markets/{m}/batches"), 404, codes::NOT_FOUND),
        ("/".to_string(), 404, codes::NOT_FOUND),
        (format!("/v1/{}", "a/".repeat(300)), 404, codes::NOT_FOUND),
    ];
    for (path, status, want) in cases {
        let r = e.get(&path).await;
        assert_eq!((r.status, code(&r)), (status, want), "{path}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().len() < 300);
    }
    let r = e
        .api
        .handle(&e.p, "POST", &format!("/v1/markets/{m}/epochs"), "")
        .await;
    assert_eq!((r.status, code(&r)), (405, codes::METHOD_NOT_ALLOWED));
    assert_eq!(e.p.counters.get("proof_requests_total"), 0, "no lookups");
    let r = e.get("/v1/markets").await;
    assert_eq!(r.body["markets"][0], m.as_str());
    assert!(sequencer_handlers::proof::status_page("/status")
        .is_some_and(|h| h.contains("/v1/markets")));
    assert!(sequencer_handlers::proof::status_page("/v1/markets").is_none());
}

#[tokio::test]
async fn epochs_are_listed_newest_first_in_pages() {
    let e = env();
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
