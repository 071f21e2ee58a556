//! Edge checks on a running ingress: implausible submissions are counted by reason and never
//! reach the sink, plausible ones arrive byte-exact, and a peer sending only malformed messages
//! is throttled and cut off like any flooder.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sequencer_ingress::edge::EdgePolicy;
use sequencer_ingress::sink::memory::MemorySink;
use snapshotter_sim::{write_message, SubmissionFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_submissions_are_refused_by_reason_and_the_rest_arrive_byte_exact() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.host.edge = EdgePolicy::markets([sequencer_core::devkeys::local_market_address()]);
    let ingress = common::start(settings, sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let cases = common::edge_cases(&factory);
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    for c in &cases {
        write_message(&mut s, &c.bytes).await.expect("write");
    }
    let good: Vec<Vec<u8>> = cases
        .iter()
        .filter(|c| c.reason.is_none())
        .map(|c| c.bytes.clone())
        .collect();
    // Every case is accounted for: accepted or rejected.
    let m = &ingress.metrics;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut reasons: Vec<&'static str> = cases.iter().filter_map(|c| c.reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let expected_rejects = cases.iter().filter(|c| c.reason.is_some()).count() as u64;
    let counted = || reasons.iter().map(|r| m.reject_count(r)).sum::<u64>();
    while (sink.len() < good.len() || counted() < expected_rejects)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in &cases {
        if let Some(r) = c.reason {
            let want = cases.iter().filter(|d| d.reason == Some(r)).count() as u64;
            assert_eq!(m.reject_count(r), want, "{}: reason {r}", c.name);
        }
    }
    // Give stragglers a moment: nothing refused may show up late.
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::assert_same(
        sink.messages().into_iter().map(|m| m.body),
        good.iter().cloned(),
        "only plausible submissions reach the sink, byte-exact",
    );
    // Every decoded message (malformed JSON included) was charged to the budget: received
    // counts only decoded ones, the bad_json one is counted by its reason.
    assert_eq!(
        m.messages_received.get() + m.reject_count("bad_json"),
        cases.len() as u64
    );
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_only_malformed_messages_is_throttled_and_cut_off() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.host.edge = EdgePolicy::markets([sequencer_core::devkeys::local_market_address()]);
    settings.limits.peer_rate = 100.0;
    settings.limits.peer_burst = 100.0;
    settings.limits.abuse_after = Duration::from_secs(2);
    settings.limits.ban_for = Duration::from_secs(60);
    let ingress = common::start(settings, sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let market = common::local_market();
    // Two kinds of garbage: well-framed JSON that is not a submission (decoder rejects it), and
    // signed submissions for a market this ingress does not serve (edge rejects them).
    let foreign: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let m = factory.message(0, 100 + i, "flood").expect("sign").1;
            common::replace(&m, &market, "0x000000000000000000000000000000000000dead")
        })
        .collect();
    let junk = b"00000000-0000-0000-0000-000000000000{\"request\":7}".to_vec();
    let flooder = Arc::new(common::client(&ingress).await);
    let mut tasks = Vec::new();
    for k in 0..2 {
        let (c, foreign, junk) = (flooder.clone(), foreign.clone(), junk.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = c.open().await else { return };
            for _ in 0..50 {
                for m in &foreign {
                    let msg = if k == 0 { m } else { &junk };
                    if write_message(&mut s, msg).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    let m = &ingress.metrics;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while m.reject_count("peer_banned_flood") == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m.throttled.get() > 0, "malformed messages were throttled");
    assert_eq!(
        m.reject_count("peer_banned_flood"),
        1,
        "and the peer was cut off"
    );
    let refused = m.reject_count("wrong_data_market") + m.reject_count("bad_json");
    // ~100/s for the ~2 s before the ban plus the burst: far fewer than the 20 000 sent.
    assert!(refused < 2_000, "{refused} malformed messages were read");
    assert!(sink.is_empty(), "none of them reached the sink");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        flooder.open().await.is_err(),
        "banned peer's connection is closed"
    );
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    ingress.shutdown().await;
}
