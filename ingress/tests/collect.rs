//! `/collect` over real libp2p connections (Rust client, TCP + Noise/TLS + yamux, and QUIC) into
//! the in-memory sink: long-lived streams, split/coalesced/oversized/garbage input, floods,
//! connection limits, queue outages, backpressure, drain, spill and replay.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::spill;
use snapshotter_sim::{write_message, Client, SubmissionFactory};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_per_long_lived_stream_arrive_byte_exact() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(8).expect("factory");
    let mut sent = HashSet::new();
    let mut tasks = Vec::new();
    for c in 0..2 {
        let client = Arc::new(common::client(&ingress).await);
        for s in 0..3 {
            let msgs = common::messages(&factory, c * 3 + s, 150);
            sent.extend(msgs.iter().cloned());
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = client.open().await.expect("open");
                for m in msgs {
                    write_message(&mut stream, &m).await.expect("write");
                }
                // Keep the stream open a moment: long-lived streams are never closed by collectors.
                tokio::time::sleep(Duration::from_millis(200)).await;
                drop(client);
            }));
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    assert_eq!(sink.wait_for(sent.len(), WAIT).await, sent.len());
    let got = sink.messages();
    let bodies: HashSet<Vec<u8>> = got.iter().map(|m| m.body.clone()).collect();
    common::assert_same(
        bodies,
        sent.iter().cloned(),
        "every message arrives byte-exact",
    );
    assert_eq!(got.len(), sent.len());
    let m = &got[0];
    assert_eq!(m.meta.submission_id.as_bytes(), &m.body[..36]);
    assert!(m.meta.project.starts_with("project_"));
    assert!(m.meta.epoch >= 1000 && m.meta.slot >= 1);
    assert_eq!(
        m.meta.market,
        format!("{:#x}", sequencer_core::devkeys::local_market_address())
    );
    assert_eq!(ingress.metrics.messages_enqueued.get(), sent.len() as u64);
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_coalesced_writes_are_framed() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let msgs = common::messages(&factory, 0, 12);
    let client = common::client(&ingress).await;
    let mut stream = client.open().await.expect("open");
    // Five messages coalesced into one write.
    let coalesced: Vec<u8> = msgs[..5].concat();
    write_message(&mut stream, &coalesced).await.expect("write");
    // Each of the next messages split into 7-byte writes, with pauses.
    for m in &msgs[5..8] {
        for chunk in m.chunks(7) {
            stream.write_all(chunk).await.expect("write");
            stream.flush().await.expect("flush");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Messages cut across a write boundary: tail of one + head of the next in one write.
    let rest: Vec<u8> = msgs[8..].concat();
    for chunk in rest.chunks(1000) {
        write_message(&mut stream, chunk).await.expect("write");
    }
    assert_eq!(sink.wait_for(12, WAIT).await, 12);
    let got: HashSet<Vec<u8>> = sink.messages().into_iter().map(|m| m.body).collect();
    common::assert_same(got, msgs, "split and coalesced writes");
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_garbage_input_is_counted_and_the_stream_reset() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let good = common::messages(&factory, 1, 3);
    let client = common::client(&ingress).await;

    // Oversized: a valid UUID and a JSON object that never ends within 16 KiB.
    let mut s1 = client.open().await.expect("open");
    let mut big = b"0b0e2f7e-4a2c-4d39-9a0e-6c1f2b3c4d5e{\"request\":{\"projectId\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 20 * 1024));
    let _ = write_message(&mut s1, &big).await;
    // Garbage: not a UUID at all.
    let mut s2 = client.open().await.expect("open");
    let _ = write_message(&mut s2, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // A complete message whose JSON is not a submission is skipped; the stream goes on.
    let mut s3 = client.open().await.expect("open");
    write_message(
        &mut s3,
        b"0b0e2f7e-4a2c-4d39-9a0e-6c1f2b3c4d5e{\"request\":\"not an object\"}",
    )
    .await
    .expect("write");
    write_message(&mut s3, &good[0])
        .await
        .expect("write after a skipped message");

    let m = &ingress.metrics;
    let deadline = tokio::time::Instant::now() + WAIT;
    while (m.reject_count("oversize") == 0
        || m.reject_count("bad_uuid") == 0
        || m.reject_count("bad_json") == 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.reject_count("oversize"), 1);
    assert_eq!(m.reject_count("bad_uuid"), 1);
    assert_eq!(m.reject_count("bad_json"), 1);
    assert_eq!(sink.wait_for(1, WAIT).await, 1);

    // The reset streams are gone: writing on them eventually fails.
    let mut failed = false;
    for _ in 0..50 {
        if write_message(&mut s1, &good[1]).await.is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "the oversized stream was reset");
    // The connection is fine: a new stream delivers.
    let mut s4 = client.open().await.expect("open");
    write_message(&mut s4, &good[2]).await.expect("write");
    assert_eq!(sink.wait_for(2, WAIT).await, 2);
    let bodies: HashSet<Vec<u8>> = sink.messages().into_iter().map(|m| m.body).collect();
    assert!(bodies.contains(&good[0]) && bodies.contains(&good[2]));
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_slowed_then_cut_off_while_another_peer_flows() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.limits.peer_rate = 200.0;
    settings.limits.peer_burst = 200.0;
    settings.limits.abuse_after = Duration::from_secs(2);
    settings.limits.ban_for = Duration::from_secs(60);
    let ingress = common::start(settings, sink.clone()).await;
    let factory = Arc::new(SubmissionFactory::new(4).expect("factory"));

    // The flooder: 4 streams writing as fast as they can, far above 200/s.
    let flooder = Arc::new(common::client(&ingress).await);
    let flood_msgs = Arc::new(common::messages(&factory, 0, 500));
    let mut flood = Vec::new();
    for _ in 0..4 {
        let (c, msgs) = (flooder.clone(), flood_msgs.clone());
        flood.push(tokio::spawn(async move {
            let Ok(mut s) = c.open().await else { return };
            for _ in 0..20 {
                for m in msgs.iter() {
                    if write_message(&mut s, m).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The honest peer: 100 messages at 50/s on one stream; all must arrive promptly.
    let honest = common::client(&ingress).await;
    let honest_msgs = common::messages(&factory, 1, 100);
    let mut s = honest.open().await.expect("open");
    for m in &honest_msgs {
        write_message(&mut s, m).await.expect("honest write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Generous for loaded CI machines; unthrottled it takes well under a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let honest_set: HashSet<Vec<u8>> = honest_msgs.iter().cloned().collect();
    loop {
        let got = sink
            .messages()
            .into_iter()
            .filter(|m| honest_set.contains(&m.body))
            .count();
        if got == honest_msgs.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "honest peer starved: {got}/100 arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = &ingress.metrics;
    assert!(m.throttled.get() > 0, "the flooder was throttled");
    // Throttled to ~200/s plus the burst: nowhere near the 40 000 it tried to send.
    let flooded = sink.messages().len() - honest_msgs.len();
    assert!(flooded < 3_000, "flooder got {flooded} through");
    // Continuous throttling for 2 s gets it cut off.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while m.reject_count("peer_banned_flood") == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(m.reject_count("peer_banned_flood"), 1);
    // Once cut off, it can neither open streams nor reconnect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        flooder.open().await.is_err(),
        "banned peer's connection is closed"
    );
    for t in flood {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_stream_limits_refuse_and_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.limits.max_per_ip = 2;
    settings.limits.max_streams_per_peer = 2;
    let ingress = common::start(settings, sink.clone()).await;
    let a = common::client(&ingress).await;
    let _b = common::client(&ingress).await;
    let third = Client::connect(&common::tcp_addr(&ingress), ingress.peer_id).await;
    // The third connection from 127.0.0.1 is refused before the handshake (or right after).
    let refused = match third {
        Err(_) => true,
        Ok(c) => c.open().await.is_err(),
    };
    assert!(refused, "third connection from one IP refused");
    assert!(ingress.metrics.reject_count("conn_per_ip_limit") >= 1);

    // Per-peer stream cap: the third concurrent stream is dropped and counted.
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 3);
    let mut s1 = a.open().await.expect("open");
    let mut s2 = a.open().await.expect("open");
    write_message(&mut s1, &msgs[0]).await.expect("write");
    write_message(&mut s2, &msgs[1]).await.expect("write");
    assert_eq!(sink.wait_for(2, WAIT).await, 2);
    if let Ok(mut s3) = a.open().await {
        let _ = write_message(&mut s3, &msgs[2]).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while ingress.metrics.reject_count("streams_per_peer") == 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ingress.metrics.reject_count("streams_per_peer"), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sink.len(),
        2,
        "the refused stream's message was not accepted"
    );
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_transport_delivers() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings
        .host
        .listen
        .push("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"));
    let ingress = common::start(settings, sink.clone()).await;
    let quic = ingress
        .listen_addrs
        .iter()
        .find(|a| a.to_string().contains("quic-v1"))
        .cloned()
        .expect("quic addr");
    let client = Client::connect(&quic, ingress.peer_id)
        .await
        .expect("quic connect");
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 20);
    let mut s = client.open().await.expect("open");
    for m in &msgs {
        write_message(&mut s, m).await.expect("write");
    }
    assert_eq!(sink.wait_for(20, WAIT).await, 20);
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_outage_is_retried_without_loss_and_full_buffer_pushes_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    // Room for about 20 messages.
    settings.dispatcher.buffer_bytes = 20 * 1024;
    let ingress = common::start(settings, sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 300);
    sink.set_down(true);
    let client = Arc::new(common::client(&ingress).await);
    let writer = {
        let (client, msgs) = (client.clone(), msgs.clone());
        tokio::spawn(async move {
            let mut s = client.open().await.expect("open");
            for m in &msgs {
                write_message(&mut s, m).await.expect("write");
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
    };
    let m = &ingress.metrics;
    let deadline = tokio::time::Instant::now() + WAIT;
    while m.backpressure_waits.get() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        m.backpressure_waits.get() > 0,
        "readers waited on the full buffer"
    );
    assert!(
        m.buffer_bytes.get() <= 20 * 1024,
        "the buffer stays within its bound"
    );
    assert!(
        m.messages_accepted.get() < 300,
        "reading stopped while the queue was down"
    );
    assert!(sink.is_empty());
    // Queue back, with some per-entry failures on top: everything arrives exactly once.
    sink.fail_first_entry_of_next_calls(5);
    sink.set_down(false);
    assert_eq!(sink.wait_for(300, WAIT).await, 300);
    let got: Vec<Vec<u8>> = sink.messages().into_iter().map(|m| m.body).collect();
    common::assert_same(
        got.iter().cloned(),
        msgs.iter().cloned(),
        "after the outage",
    );
    assert_eq!(got.len(), 300, "no duplicates");
    assert!(m.reject_count("queue_rejected") == 0);
    writer.abort();
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_full_buffer_to_the_queue() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.dispatcher.buffer_bytes = 64 * 1024;
    settings.drain_timeout = Duration::from_secs(10);
    let ingress = common::start(settings, sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 200);
    sink.set_down(true);
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    let writer = tokio::spawn(async move {
        for m in &msgs {
            if write_message(&mut s, m).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    while ingress.metrics.backpressure_waits.get() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted_before = ingress.metrics.messages_accepted.get();
    assert!(
        accepted_before > 0 && ingress.metrics.backpressure_waits.get() > 0,
        "buffer is full"
    );
    // Queue comes back 1 s into the drain.
    let s2 = sink.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        s2.set_down(false);
    });
    let accepted_metric = ingress.metrics.messages_accepted.clone();
    let report = ingress.shutdown().await;
    let accepted = accepted_metric.get();
    assert!(accepted >= accepted_before);
    assert_eq!(report.enqueued, accepted, "everything accepted was drained");
    assert_eq!(report.spilled + report.lost + report.rejected, 0);
    assert_eq!(sink.len() as u64, accepted);
    assert!(!dir.path().join("spill.jsonl").exists());
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_deadline_the_buffer_is_spilled_and_replayed_on_next_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let spill_path = dir.path().join("spill.jsonl");
    let down = Arc::new(MemorySink::new());
    down.set_down(true);
    let mut settings = common::settings(dir.path());
    settings.drain_timeout = Duration::from_millis(800);
    let ingress = common::start(settings.clone(), down.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 50);
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    for m in &msgs {
        write_message(&mut s, m).await.expect("write");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while ingress.metrics.messages_accepted.get() < 50 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    let report = ingress.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown respects the deadline"
    );
    assert_eq!(report.spilled, 50);
    assert_eq!(report.enqueued + report.lost, 0);
    let records = spill::read_file(&spill_path).expect("spill file");
    assert_eq!(records.len(), 50);
    common::assert_same(
        records.iter().map(|r| r.bytes().expect("record body")),
        msgs.iter().cloned(),
        "spilled byte-exact",
    );
    client.close().await;

    // Next start: the spill is replayed into the (now working) queue, then removed.
    let up = Arc::new(MemorySink::new());
    let ingress = common::start(settings, up.clone()).await;
    assert_eq!(ingress.replaying, 50);
    assert_eq!(up.wait_for(50, WAIT).await, 50);
    let got: HashSet<Vec<u8>> = up.messages().into_iter().map(|m| m.body).collect();
    common::assert_same(got, msgs.iter().cloned(), "replayed");
    let meta = &up.messages()[0].meta;
    assert!(meta.project.starts_with("project_0_") && !meta.peer.is_empty());
    let left = common::spill_files_left(dir.path(), WAIT).await;
    assert_eq!(left, 0, "replayed spill files are removed once handed over");
    let report = ingress.shutdown().await;
    assert_eq!(report.enqueued, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_half_written_times_out_and_is_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.host.partial_message_timeout = Duration::from_millis(500);
    settings.host.stream_idle_timeout = Duration::from_secs(1);
    let ingress = common::start(settings, sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 2);
    let client = common::client(&ingress).await;
    // Slowloris: one whole message, then half of the next, then silence.
    let mut s1 = client.open().await.expect("open");
    write_message(&mut s1, &msgs[0]).await.expect("write");
    write_message(&mut s1, &msgs[1][..100])
        .await
        .expect("write");
    // A quiet stream: nothing at all.
    let _s2 = client.open().await.expect("open");
    let m = &ingress.metrics;
    let deadline = tokio::time::Instant::now() + WAIT;
    while (m.reject_count("partial_message_timeout") == 0
        || m.reject_count("stream_idle_timeout") == 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.reject_count("partial_message_timeout"), 1);
    assert_eq!(m.reject_count("stream_idle_timeout"), 1);
    assert_eq!(
        sink.wait_for(1, WAIT).await,
        1,
        "the complete message was accepted"
    );
    client.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_and_noise_only_clients_both_deliver() {
    use snapshotter_sim::Security;
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::settings(dir.path()), sink.clone()).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let mut sent = Vec::new();
    for (slot, security) in [(0, Security::Tls), (1, Security::Noise)] {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let client =
            Client::connect_using(key, security, &common::tcp_addr(&ingress), ingress.peer_id)
                .await
                .unwrap_or_else(|e| panic!("{security:?} client connects: {e}"));
        let msgs = common::messages(&factory, slot, 10);
        let mut s = client.open().await.expect("open");
        for m in &msgs {
            write_message(&mut s, m).await.expect("write");
        }
        sent.extend(msgs);
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.close().await;
    }
    assert_eq!(sink.wait_for(20, WAIT).await, 20);
    common::assert_same(
        sink.messages().into_iter().map(|m| m.body),
        sent,
        "TLS and Noise",
    );
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_peer_are_capped() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::settings(dir.path());
    settings.limits.max_per_peer = 2;
    let ingress = common::start(settings, sink).await;
    let key = libp2p::identity::Keypair::generate_ed25519();
    let addr = common::tcp_addr(&ingress);
    let _a = Client::connect_with(key.clone(), &addr, ingress.peer_id)
        .await
        .expect("first");
    let _b = Client::connect_with(key.clone(), &addr, ingress.peer_id)
        .await
        .expect("second");
    // The third connection of the same identity completes the handshake and is then refused.
    if let Ok(c) = Client::connect_with(key, &addr, ingress.peer_id).await {
        let _ = c.open().await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while ingress.metrics.reject_count("conn_per_peer_limit") == 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ingress.metrics.reject_count("conn_per_peer_limit"), 1);
    assert_eq!(ingress.metrics.connections_open.get(), 2);
    ingress.shutdown().await;
}
