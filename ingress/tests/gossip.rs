//! Gossipsub beside `/collect`, with rust-libp2p collectors (`snapshotter_sim::gossip`; the
//! independent js-libp2p peer is `tests/js_gossip.rs`): what is queued and how often, what is
//! forwarded, and every limit under the attack it is for.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use sequencer_core::collect::{CollectMessage, UUID_LEN};
use sequencer_core::gossip::content_id;
use sequencer_ingress::edge::EdgePolicy;
use sequencer_ingress::gossip::GossipSettings;
use sequencer_ingress::limits::EdgeLimits;
use sequencer_ingress::metrics::Path;
use sequencer_ingress::sink::memory::MemorySink;
use snapshotter_sim::gossip::{
    discovery_heartbeat, envelope, mesh_formation_heartbeat, GossipPeer, PeerOptions,
};
use snapshotter_sim::{write_message, SubmissionFactory};

const WAIT: Duration = Duration::from_secs(15);

/// The submission JSON of a `/collect` message (what a collector puts in its envelope).
fn json(collect: &[u8]) -> &[u8] {
    &collect[UUID_LEN..]
}

fn served(settings: &mut sequencer_ingress::Settings) {
    settings.host.edge = EdgePolicy::markets([sequencer_core::devkeys::local_market_address()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_is_queued_once_per_path_under_its_content_id_and_heartbeats_never() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    let ingress = common::start(settings, sink.clone()).await;
    let peer = common::gossip_peer(&ingress).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let (client_id, collect) = factory
        .message(0, 7, "project_a:0xabc:UNISWAPV2")
        .expect("sign");
    let sub = json(&collect).to_vec();

    // The collectors' heartbeats on both topics, then the submission as an envelope, again as a
    // new gossip message (a republish), and bare.
    for n in 0..3 {
        peer.publish(&peer.zero, discovery_heartbeat(&peer.peer_id, n))
            .await
            .expect("publish");
        peer.publish(&peer.all, mesh_formation_heartbeat(&peer.peer_id, n))
            .await
            .expect("publish");
    }
    peer.publish(&peer.all, envelope(7, &sub, &peer.peer_id))
        .await
        .expect("publish");
    peer.publish(&peer.all, envelope(7, &sub, &peer.peer_id))
        .await
        .expect("publish");
    peer.publish(&peer.all, sub.clone()).await.expect("publish");
    // And the same submission on /collect with the client's own id.
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    write_message(&mut s, &collect).await.expect("write");

    assert_eq!(
        sink.wait_for(4, WAIT).await,
        4,
        "three gossip copies and one /collect copy"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sink.messages();
    assert_eq!(got.len(), 4, "heartbeats never reach the queue");

    let want_id = content_id(&CollectMessage::parse(&collect).expect("parse").submission);
    let gossip: Vec<_> = got.iter().filter(|m| m.meta.path == "gossipsub").collect();
    let collect_copies: Vec<_> = got.iter().filter(|m| m.meta.path == "collect").collect();
    assert_eq!((gossip.len(), collect_copies.len()), (3, 1));
    // Every gossip copy is the same bytes: content id + the exact text the collector sent.
    let bodies: HashSet<&Vec<u8>> = gossip.iter().map(|m| &m.body).collect();
    assert_eq!(bodies.len(), 1, "byte-identical queue bodies");
    let body = &gossip[0].body;
    assert_eq!(
        &body[..UUID_LEN],
        want_id.hyphenated().to_string().as_bytes()
    );
    assert_eq!(&body[UUID_LEN..], &sub[..]);
    assert_eq!(
        gossip[0].meta.submission_id,
        want_id.hyphenated().to_string()
    );
    assert_eq!(
        gossip[0].meta.peer,
        peer.peer_id.to_string(),
        "the signed author"
    );
    // The /collect copy keeps the client's id and bytes, and carries the same content id.
    assert_eq!(collect_copies[0].body, collect);
    assert_eq!(
        collect_copies[0].meta.submission_id,
        client_id.hyphenated().to_string()
    );
    for m in &got {
        assert_eq!(m.meta.content_id, want_id.hyphenated().to_string());
    }

    let p = &ingress.metrics.path;
    assert!(p.ignored_count("heartbeat") >= 3);
    assert!(p.ignored_count("mesh_formation") >= 3);
    assert_eq!(p.count_of(Path::Gossipsub, "accepted"), 3);
    assert_eq!(p.count_of(Path::Collect, "accepted"), 1);
    let dup = |path: Path, first: Path| {
        p.duplicates
            .get_or_create(&[("path", path.as_str()), ("first_seen", first.as_str())])
            .get()
    };
    assert_eq!(dup(Path::Gossipsub, Path::Gossipsub), 2);
    assert_eq!(
        dup(Path::Collect, Path::Gossipsub),
        1,
        "the same submission on both paths"
    );
    assert_eq!(
        ingress
            .metrics
            .rejects
            .get_or_create(&[("reason", "bad_json")])
            .get(),
        0
    );
    peer.close().await;
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_gossip_is_rejected_by_the_edge_reasons_and_only_valid_gossip_is_forwarded() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    let ingress = common::start(settings, sink.clone()).await;
    let publisher = common::gossip_peer(&ingress).await;
    // A second collector connected only to the ingress: it sees what the ingress forwards.
    let watcher = common::gossip_peer(&ingress).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let mut expected_rejects = std::collections::BTreeMap::<&str, u64>::new();
    let mut good = Vec::new();
    let mut sent = Vec::new();
    let mut foreign = 0;
    for c in common::edge_cases(&factory) {
        let data = envelope(1, json(&c.bytes), &publisher.peer_id);
        let reason = match c.reason {
            // A raw NUL makes the whole envelope invalid JSON.
            Some("bad_json") => Some("gossip_not_envelope"),
            r => r,
        };
        match reason {
            // Another market's submission on a shared topic: skipped, not punished.
            Some("wrong_data_market") => foreign += 1,
            Some(r) => *expected_rejects.entry(r).or_default() += 1,
            None => good.push(data.clone()),
        }
        sent.push((data.clone(), reason));
        publisher
            .publish(&publisher.all, data)
            .await
            .expect("publish");
    }
    assert_eq!(foreign, 1, "the edge cases hold one foreign market");
    // Not a submission at all.
    publisher
        .publish(&publisher.all, b"{\"hello\":1}".to_vec())
        .await
        .expect("publish");
    *expected_rejects.entry("gossip_not_envelope").or_default() += 1;

    let m = &ingress.metrics;
    let total_rejects: u64 = expected_rejects.values().sum();
    assert!(
        common::eventually(WAIT, || {
            expected_rejects
                .keys()
                .map(|r| m.reject_count(r))
                .sum::<u64>()
                >= total_rejects
                && sink.len() >= good.len()
                && m.path.ignored_count("foreign_market") >= 1
        })
        .await,
        "every message judged"
    );
    for (r, n) in &expected_rejects {
        assert_eq!(m.reject_count(r), *n, "reason {r}");
    }
    assert_eq!(
        m.reject_count("wrong_data_market"),
        0,
        "a foreign market is not punished"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued: Vec<Vec<u8>> = sink
        .messages()
        .into_iter()
        .map(|m| m.body[UUID_LEN..].to_vec())
        .collect();
    common::assert_same(
        queued,
        good.iter().map(|g| {
            let s = std::str::from_utf8(g).expect("utf-8");
            let start = s.find("[").expect("[") + 1;
            let end = s.rfind("],\"snapshotter_id\"").expect("end");
            s.as_bytes()[start..end].to_vec()
        }),
        "only valid submissions are queued",
    );
    // What the watcher received through the ingress: the valid messages, never a rejected one.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = watcher.received().await;
    while good.iter().any(|g| !seen.contains(g)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = watcher.received().await;
    }
    for g in &good {
        assert!(seen.contains(g), "a valid message is forwarded to the mesh");
    }
    for (data, reason) in &sent {
        if reason.is_some() {
            assert!(
                !seen.contains(data),
                "a message refused for {reason:?} was forwarded"
            );
        }
    }
    assert!(!seen.iter().any(|d| d == b"{\"hello\":1}"));
    publisher.close().await;
    watcher.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_gossip_is_refused_before_gossipsub_caches_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::gossip_settings(dir.path()), sink.clone()).await;
    let publisher = common::gossip_peer(&ingress).await;
    let watcher = common::gossip_peer(&ingress).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let (_, collect) = factory.message(0, 3, "big").expect("sign");
    // Padding inside the submission (an unknown key): over the 32 KiB message cap.
    let padded = common::with_field(
        &collect,
        format!("\"pad\":\"{}\"", "x".repeat(40 * 1024)).as_bytes(),
    );
    let big = envelope(3, json(&padded), &publisher.peer_id);
    assert!(big.len() > sequencer_core::gossip::MAX_GOSSIP_MESSAGE_BYTES);
    // And one under the message cap whose submission is over /collect's 16 KiB.
    let padded = common::with_field(
        &collect,
        format!("\"pad\":\"{}\"", "x".repeat(20 * 1024)).as_bytes(),
    );
    let long = envelope(3, json(&padded), &publisher.peer_id);
    publisher
        .publish(&publisher.all, big.clone())
        .await
        .expect("publish");
    publisher
        .publish(&publisher.all, long.clone())
        .await
        .expect("publish");
    let m = &ingress.metrics;
    assert!(
        common::eventually(WAIT, || m.reject_count("gossip_oversize") == 1
            && m.reject_count("oversize") == 1)
        .await,
        "gossip_oversize {} oversize {}",
        m.reject_count("gossip_oversize"),
        m.reject_count("oversize")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.is_empty());
    let seen = watcher.received().await;
    assert!(!seen.contains(&big) && !seen.contains(&long));
    publisher.close().await;
    watcher.close().await;
    ingress.shutdown().await;
}

/// Rust QUIC dials from a chosen local address, so this peer is another host to the ingress.
async fn peer_from(ingress: &sequencer_ingress::Ingress, local: &str) -> GossipPeer {
    let o = PeerOptions {
        local: Some(local.parse().expect("addr")),
        ..common::peer_options()
    };
    let p = GossipPeer::connect(
        Keypair::generate_ed25519(),
        &common::quic_addr(ingress),
        ingress.peer_id,
        &o,
    )
    .await
    .expect("connects");
    assert!(p.wait_mesh(&p.all, 1, WAIT).await);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_flood_from_many_peer_ids_on_one_address_is_throttled_and_the_address_banned() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    // The production per-address logic, with rates small enough to flood in a test.
    settings.limits = EdgeLimits {
        peer_rate: 20.0,
        peer_burst: 20.0,
        addr_rate: 40.0,
        addr_burst: 40.0,
        abuse_after: Duration::from_secs(1),
        ban_for: Duration::from_secs(60),
        ..EdgeLimits::default()
    };
    settings.host.gossip = Some(GossipSettings {
        heartbeat: Duration::from_millis(100),
        ..GossipSettings::default()
    });
    let ingress = common::start(settings, sink.clone()).await;
    // Eight peer ids from 127.0.0.1 (the per-address gossip cap), one honest peer from 127.0.0.2.
    let mut flooders = Vec::new();
    for _ in 0..8 {
        flooders.push(common::gossip_peer(&ingress).await);
    }
    let honest = peer_from(&ingress, "/ip4/127.0.0.2/udp/0/quic-v1").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    for f in flooders {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() && n < 20_000 {
                let hb = if n.is_multiple_of(2) {
                    discovery_heartbeat(&f.peer_id, n)
                } else {
                    mesh_formation_heartbeat(&f.peer_id, n)
                };
                let topic = if n.is_multiple_of(2) { &f.zero } else { &f.all };
                if f.publish(topic, hb).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                n += 1;
                if n.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            f
        }));
    }
    let m = &ingress.metrics;
    assert!(
        common::eventually(Duration::from_secs(20), || m
            .reject_count("peer_banned_flood")
            >= 1)
        .await,
        "the flooding address is cut off (throttled {}, heartbeats ignored {})",
        m.path.ignored_count("throttled"),
        m.path.ignored_count("heartbeat"),
    );
    stop.cancel();
    let mut flooders = Vec::new();
    for t in tasks {
        flooders.push(t.await.expect("flooder"));
    }
    assert!(m.path.ignored_count("heartbeat") >= 1);
    assert!(
        m.path.ignored_count("throttled") >= 1,
        "throttled before the ban"
    );
    // Every peer id of the address is disconnected, and a new one is refused.
    for f in &flooders {
        let deadline = tokio::time::Instant::now() + WAIT;
        while f.is_connected().await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !f.is_connected().await,
            "a flooder of the banned address is still connected"
        );
    }
    let again = GossipPeer::connect(
        Keypair::generate_ed25519(),
        &common::tcp_addr(&ingress),
        ingress.peer_id,
        &common::peer_options(),
    )
    .await;
    assert!(
        again.is_err() || !again.expect("peer").is_connected().await,
        "a fresh peer id from the banned address is refused"
    );
    // The other address is served throughout: its submission is queued.
    let factory = SubmissionFactory::new(1).expect("factory");
    let (_, collect) = factory.message(0, 5, "honest").expect("sign");
    honest
        .publish(&honest.all, envelope(5, json(&collect), &honest.peer_id))
        .await
        .expect("publish");
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
    assert_eq!(sink.messages().len(), 1, "no heartbeat was ever queued");
    for f in flooders {
        f.close().await;
    }
    honest.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalid_gossip_from_many_peer_ids_is_muted_by_its_score_and_never_forwarded() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    settings.limits = EdgeLimits::default();
    settings.host.gossip = Some(GossipSettings {
        heartbeat: Duration::from_millis(100),
        ..GossipSettings::default()
    });
    let ingress = common::start(settings, sink.clone()).await;
    let watcher = peer_from(&ingress, "/ip4/127.0.0.3/udp/0/quic-v1").await;
    let honest = peer_from(&ingress, "/ip4/127.0.0.2/udp/0/quic-v1").await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let mut flooders = Vec::new();
    for _ in 0..8 {
        flooders.push(common::gossip_peer(&ingress).await);
    }
    // All flooders at once, each 200 envelopes whose submission has a malformed signature, one
    // every 5 ms (paced, so the verdicts keep up with the flood on any machine: the point is what
    // the score does, not who is faster).
    let (_, collect) = factory.message(0, 2, "junk").expect("sign");
    let s = String::from_utf8(collect).expect("utf-8");
    let at = s.find("\"signature\":\"").expect("signature") + 13;
    let published = 8 * 200u64;
    let mut junk = Vec::new();
    let mut per_flooder = Vec::new();
    for (i, f) in flooders.iter().enumerate() {
        let mut mine = Vec::new();
        for n in 0..200 {
            let bad = format!("{}{:0130x}{}", &s[..at], i * 1000 + n, &s[at + 130..]);
            mine.push(envelope(2, json(bad.as_bytes()), &f.peer_id));
        }
        junk.extend(mine.iter().cloned());
        per_flooder.push(mine);
    }
    let flooders: Vec<Arc<GossipPeer>> = flooders.into_iter().map(Arc::new).collect();
    let mut tasks = Vec::new();
    for (f, mine) in flooders.iter().cloned().zip(per_flooder) {
        tasks.push(tokio::spawn(async move {
            for data in mine {
                let _ = f.publish(&f.all, data).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("flooder");
    }
    let m = &ingress.metrics;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rejected = m.reject_count("bad_v")
        + m.reject_count("signature_out_of_range")
        + m.reject_count("high_s");
    eprintln!("{rejected} of {published} invalid messages judged before their senders were muted");
    assert!(rejected > 0, "invalid messages are rejected");
    assert!(
        rejected < published / 2,
        "after a few rejections a flooder's score mutes it: {rejected} of {published} judged"
    );
    // The honest peer on another address is served.
    let (_, mine) = factory.message(0, 10, "honest").expect("sign");
    honest
        .publish(&honest.all, envelope(10, json(&mine), &honest.peer_id))
        .await
        .expect("publish");
    assert!(
        common::eventually(WAIT, || sink
            .messages()
            .iter()
            .any(|m| m.body[UUID_LEN..] == mine[UUID_LEN..]))
        .await
    );
    assert_eq!(sink.len(), 1, "no junk queued");
    let seen = watcher.received().await;
    assert!(!junk.iter().any(|j| seen.contains(j)), "junk was forwarded");
    for f in flooders {
        if let Ok(f) = Arc::try_unwrap(f) {
            f.close().await;
        }
    }
    honest.close().await;
    watcher.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_gossip_cap_still_serve_collect_but_no_gossipsub() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    if let Some(g) = settings.host.gossip.as_mut() {
        g.max_inbound = 2;
        g.max_inbound_per_addr = 2;
    }
    let ingress = common::start(settings, sink.clone()).await;
    let a = common::gossip_peer(&ingress).await;
    let b = common::gossip_peer(&ingress).await;
    let third = GossipPeer::connect(
        Keypair::generate_ed25519(),
        &common::tcp_addr(&ingress),
        ingress.peer_id,
        &common::peer_options(),
    )
    .await
    .expect("the connection itself is admitted");
    assert!(
        !third.wait_mesh(&third.all, 1, Duration::from_secs(2)).await,
        "no gossipsub past the cap"
    );
    assert!(ingress.metrics.reject_count("gossip_connections_full") >= 1);
    assert!(
        common::eventually(WAIT, || ingress
            .gossip_health
            .get()
            .is_some_and(|h| h.connections == (2, 0)))
        .await
    );
    // /collect is not affected by the gossip cap.
    let factory = SubmissionFactory::new(1).expect("factory");
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    write_message(&mut s, &factory.message(0, 4, "c").expect("sign").1)
        .await
        .expect("write");
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
    for p in [a, b, third] {
        p.close().await;
    }
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_validation_queue_ignores_new_messages_and_loses_none_it_took() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    // A buffer of one message and a queue that is down: the validator blocks on its second push.
    settings.dispatcher.buffer_bytes = 1;
    if let Some(g) = settings.host.gossip.as_mut() {
        g.validation_queue = 4;
    }
    sink.set_down(true);
    let ingress = common::start(settings, sink.clone()).await;
    let publisher = common::gossip_peer(&ingress).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    for i in 0..20u64 {
        let (_, c) = factory.message(0, 100 + i, &format!("q{i}")).expect("sign");
        let data = envelope(100 + i, json(&c), &publisher.peer_id);
        publisher
            .publish(&publisher.all, data)
            .await
            .expect("publish");
    }
    let p = &ingress.metrics.path;
    assert!(
        common::eventually(WAIT, || p.ignored_count("validation_queue_full") >= 1).await,
        "a full validation queue ignores new messages"
    );
    // The queue comes back: every message the validator took is delivered, none twice.
    sink.set_down(false);
    let taken = || p.count_of(Path::Gossipsub, "accepted") as usize;
    assert!(
        common::eventually(WAIT, || sink.len() >= taken()
            && taken() + p.ignored_count("validation_queue_full") as usize >= 20)
        .await,
        "taken {} ignored {}",
        taken(),
        p.ignored_count("validation_queue_full")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.len(), taken());
    assert!(taken() >= 2 && taken() < 20);
    publisher.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cache_budget_valid_gossip_is_queued_but_not_forwarded() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    let budget = 3_000;
    if let Some(g) = settings.host.gossip.as_mut() {
        // The deployed heartbeat: a history window of 8.4 s, longer than this test.
        g.heartbeat = Duration::from_millis(700);
        g.cache_bytes = budget;
    }
    let ingress = common::start(settings, sink.clone()).await;
    let publisher = common::gossip_peer(&ingress).await;
    let watcher = common::gossip_peer(&ingress).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let (_, c) = factory.message(0, 200 + i, &format!("c{i}")).expect("sign");
        let data = envelope(200 + i, json(&c), &publisher.peer_id);
        sent.push(data.clone());
        publisher
            .publish(&publisher.all, data)
            .await
            .expect("publish");
    }
    assert_eq!(
        sink.wait_for(10, WAIT).await,
        10,
        "every valid submission is queued"
    );
    let p = &ingress.metrics.path;
    assert!(
        p.ignored_count("cache_budget") >= 1,
        "the budget was reached"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = watcher.received().await;
    let forwarded: usize = sent
        .iter()
        .filter(|d| seen.contains(d))
        .map(|d| d.len())
        .sum();
    assert!(
        forwarded > 0 && forwarded <= budget,
        "{forwarded} bytes forwarded, budget {budget}"
    );
    publisher.close().await;
    watcher.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_mesh_and_the_provider_records_are_served_to_a_dht_client() {
    use futures::StreamExt;
    use libp2p::kad;
    use libp2p::swarm::SwarmEvent;

    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    settings.http_listen = Some(([127, 0, 0, 1], 0).into());
    let ingress = common::start(settings, sink.clone()).await;
    let http = ingress.http_addr.expect("http").to_string();
    let peer = common::gossip_peer(&ingress).await;
    let mut body = String::new();
    assert!(
        {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if let Some((_, b)) = common::http_get(&http, "/readyz").await {
                    body = b;
                }
                if body.contains("mesh /powerloom/snapshot-submissions/all=1") {
                    break true;
                }
                if tokio::time::Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
        "readyz detail: {body:?}"
    );
    assert!(body
        .lines()
        .next()
        .is_some_and(|l| l == "ready" || l == "starting"));
    assert!(body.contains("connections in=1 out=0"), "{body}");
    let metrics = common::http_get(&http, "/metrics")
        .await
        .expect("metrics")
        .1;
    assert!(metrics
        .contains("ingress_gossip_mesh_peers{topic=\"/powerloom/snapshot-submissions/all\"} 1"));

    // A Kademlia client (rust-libp2p's, as the go collectors' DHT client would) finds the ingress
    // under the rendezvous string the collectors search.
    let key = Keypair::generate_ed25519();
    let me = key.public().to_peer_id();
    let mut dht = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| {
            let mut k = kad::Behaviour::new(me, kad::store::MemoryStore::new(me));
            k.set_mode(Some(kad::Mode::Client));
            k
        })
        .expect("behaviour")
        .build();
    dht.behaviour_mut()
        .add_address(&ingress.peer_id, common::tcp_addr(&ingress));
    let ns = sequencer_core::gossip::DEFAULT_RENDEZVOUS;
    dht.behaviour_mut().get_providers(kad::RecordKey::new(
        &sequencer_core::gossip::rendezvous_key(ns),
    ));
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            }) = dht.select_next_some().await
            {
                return providers;
            }
        }
    })
    .await
    .expect("providers found");
    assert!(found.contains(&ingress.peer_id));
    peer.close().await;
    ingress.shutdown().await;
}
