//! Budgets keyed on the remote address, mounted as attacks over real libp2p connections into the
//! in-memory sink: many peer ids from one address (connection and stream budgets, one rate bucket,
//! one ban), a stream kept open by whitespace, and handshakes stalled from one address. The
//! attacker dials from 127.0.0.1 over TCP; the honest collector is another host, dialing over QUIC
//! from 127.0.0.2 (all of 127/8 is loopback on Linux) or, for the raw TCP stalls, the attacker
//! binds 127.0.0.3.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::{Ingress, Settings};
use snapshotter_sim::{write_message, Client, SubmissionFactory};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

/// Production limits (no `one_host_fleet`), TCP and QUIC on 127.0.0.1.
fn settings(dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.host.listen = vec![
        "/ip4/127.0.0.1/tcp/0".parse().expect("addr"),
        "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"),
    ];
    s.spill_path = dir.join("spill.jsonl");
    s.drain_timeout = Duration::from_secs(5);
    s
}

fn quic_addr(ingress: &Ingress) -> Multiaddr {
    ingress
        .listen_addrs
        .iter()
        .find(|a| a.to_string().contains("quic-v1"))
        .cloned()
        .expect("a QUIC listen address")
}

fn tcp_port(ingress: &Ingress) -> u16 {
    common::tcp_addr(ingress)
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("tcp port")
}

/// A collector on another host: QUIC from 127.0.0.2.
async fn honest_client(ingress: &Ingress) -> Client {
    Client::connect_from(
        Keypair::generate_ed25519(),
        &"/ip4/127.0.0.2/udp/0/quic-v1".parse().expect("addr"),
        &quic_addr(ingress),
        ingress.peer_id,
    )
    .await
    .expect("honest client from 127.0.0.2 connects")
}

/// Waits until `cond` holds or `within` passes; returns whether it held.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

/// Writes `msgs` from the honest client and waits until every one is in the sink.
async fn honest_delivers(sink: &MemorySink, honest: &Client, msgs: &[Vec<u8>], what: &str) {
    let mut s = honest.open().await.expect("honest stream");
    for m in msgs {
        write_message(&mut s, m).await.expect("honest write");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let want: HashSet<Vec<u8>> = msgs.iter().cloned().collect();
    let arrived = eventually(WAIT, || {
        sink.messages()
            .into_iter()
            .filter(|m| want.contains(&m.body))
            .count()
            == want.len()
    })
    .await;
    assert!(
        arrived,
        "{what}: the honest collector on 127.0.0.2 was not served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peer_ids_from_one_address_cannot_exceed_its_connection_and_stream_budgets() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut s = settings(dir.path());
    s.limits.max_streams_per_addr = 16;
    let per_ip = s.limits.max_per_ip;
    let ingress = common::start(s, sink.clone()).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let attack_msgs = common::messages(&factory, 0, 120);

    // 120 fresh peer ids from 127.0.0.1, each within its own per-peer budgets.
    let mut attackers = Vec::new();
    let mut refused = 0;
    for _ in 0..120 {
        match Client::connect(&common::tcp_addr(&ingress), ingress.peer_id).await {
            Ok(c) => attackers.push(c),
            Err(_) => refused += 1,
        }
    }
    let m = &ingress.metrics;
    assert_eq!(attackers.len(), per_ip, "connections from one address");
    assert_eq!(refused, 120 - per_ip);
    assert_eq!(m.reject_count("conn_per_ip_limit"), (120 - per_ip) as u64);

    // Each admitted peer id opens one stream (far below its per-peer cap) and writes a message.
    let mut streams = Vec::new();
    for (c, msg) in attackers.iter().zip(&attack_msgs) {
        if let Ok(mut st) = c.open().await {
            let _ = write_message(&mut st, msg).await;
            streams.push(st);
        }
    }
    let over = (per_ip - 16) as u64;
    assert!(
        eventually(WAIT, || m.reject_count("streams_per_addr") == over).await,
        "streams_per_addr = {} (want {over})",
        m.reject_count("streams_per_addr")
    );
    assert_eq!(sink.wait_for(16, WAIT).await, 16);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.len(), 16, "only the address's 16 streams were read");

    // The other host is served alongside.
    let honest = honest_client(&ingress).await;
    honest_delivers(
        &sink,
        &honest,
        &common::messages(&factory, 1, 20),
        "stream budget",
    )
    .await;
    assert_eq!(m.reject_count("streams_total"), 0);
    drop(streams);
    for c in attackers {
        c.close().await;
    }
    honest.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peer_ids_from_one_address_are_throttled_and_banned_as_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut s = settings(dir.path());
    let (rate, burst) = (50.0, 50.0);
    s.limits.max_per_ip = 128;
    s.limits.addr_rate = rate;
    s.limits.addr_burst = burst;
    s.limits.abuse_after = Duration::from_secs(2);
    s.limits.ban_for = Duration::from_secs(60);
    // Each fresh peer id has the default per-peer bucket (a 5 000-message burst): alone, those
    // would let 120 identities through 600 000 messages.
    let ingress = common::start(s, sink.clone()).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let flood = Arc::new(common::messages(&factory, 0, 50));

    let mut attackers = Vec::new();
    for _ in 0..120 {
        let c = Client::connect(&common::tcp_addr(&ingress), ingress.peer_id)
            .await
            .expect("attacker connects (within the per-address cap)");
        attackers.push(Arc::new(c));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in &attackers {
        let (c, msgs) = (c.clone(), flood.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut st) = c.open().await else { return };
            loop {
                for m in msgs.iter() {
                    if write_message(&mut st, m).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }

    // The honest host keeps being served while the flood is throttled.
    let honest = honest_client(&ingress).await;
    let honest_msgs = common::messages(&factory, 1, 40);
    honest_delivers(&sink, &honest, &honest_msgs[..20], "during the flood").await;

    let m = &ingress.metrics;
    assert!(
        eventually(WAIT, || m.reject_count("peer_banned_flood") >= 1).await,
        "the flooding address was never cut off"
    );
    let banned_after = started.elapsed().as_secs_f64();
    assert!(m.throttled.get() > 0);
    let flood_set: HashSet<Vec<u8>> = flood.iter().cloned().collect();
    let through = sink
        .messages()
        .into_iter()
        .filter(|m| flood_set.contains(&m.body))
        .count();
    // One address bucket for all 120 identities: its burst plus its rate until the ban (a
    // reader that already held a reserved token may finish one more message).
    let allowed = burst + rate * banned_after + attackers.len() as f64;
    assert!(
        (through as f64) <= allowed,
        "{through} flood messages through in {banned_after:.1} s; one address allows {allowed:.0}"
    );

    // Every identity of the address is cut off and cannot come back with a fresh one.
    let closed = eventually(WAIT, || m.connections_open.get() <= 1).await;
    assert!(closed, "connections open: {}", m.connections_open.get());
    for c in attackers.iter().take(10) {
        assert!(
            c.open().await.is_err(),
            "a banned address's connection is closed"
        );
    }
    let fresh = Client::connect(&common::tcp_addr(&ingress), ingress.peer_id).await;
    assert!(
        fresh.is_err(),
        "a fresh peer id from the banned address is refused"
    );
    assert!(m.reject_count("conn_banned") >= 1);

    // The other host still is not.
    honest_delivers(&sink, &honest, &honest_msgs[20..], "after the ban").await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    honest.close().await;
    ingress.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_trickling_whitespace_is_closed_by_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut s = settings(dir.path());
    let idle = Duration::from_secs(2);
    s.host.stream_idle_timeout = idle;
    let ingress = common::start(s, sink.clone()).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let msgs = common::messages(&factory, 0, 10);
    let client = common::client(&ingress).await;
    let m = &ingress.metrics;

    // One real message, then a space every 200 ms: ten times more often than the timeout.
    let mut trickle = client.open().await.expect("open");
    write_message(&mut trickle, &msgs[0]).await.expect("write");
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
    let t0 = Instant::now();
    let trickler = tokio::spawn(async move {
        for _ in 0..100 {
            if trickle.write_all(b" ").await.is_err() || trickle.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // A stream sending a real message every 500 ms all along is not idle: it keeps writing until
    // the check is over, so the one stream that can time out is the whitespace one.
    let mut busy = client.open().await.expect("open");
    let busy_msgs = msgs[1..].to_vec();
    let busy_task = tokio::spawn(async move {
        let mut sent = 0usize;
        for msg in busy_msgs.iter().cycle().take(40) {
            if write_message(&mut busy, msg).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sent
    });
    let timed_out = eventually(idle * 4, || m.reject_count("stream_idle_timeout") >= 1).await;
    let closed_after = t0.elapsed();
    eprintln!("whitespace stream closed {closed_after:?} after its last message");
    assert!(timed_out, "the whitespace stream was never closed");
    assert!(
        closed_after >= idle - Duration::from_millis(100) && closed_after < idle * 3,
        "closed after {closed_after:?} (idle timeout {idle:?})"
    );
    // Still writing, the busy stream has not timed out, and its messages keep arriving.
    assert!(!busy_task.is_finished(), "the busy stream stopped early");
    let before = sink.len();
    assert!(sink.wait_for(before + 2, WAIT).await >= before + 2);
    assert_eq!(
        m.reject_count("stream_idle_timeout"),
        1,
        "only the whitespace stream timed out"
    );
    busy_task.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), trickler).await;
    client.close().await;
    ingress.shutdown().await;
}

/// A TCP connection from `ip` to the ingress that never says a byte (a stalled handshake).
async fn stalled(ip: Ipv4Addr, port: u16) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((ip, 0))).expect("bind source");
    sock.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .expect("tcp connect")
}

/// Opens `n` stalled handshakes from 127.0.0.3 and tries an honest TCP collector from 127.0.0.1.
async fn stall_then_try_honest(max_pending_per_addr: usize) -> (bool, u64, u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut s = settings(dir.path());
    s.limits.max_pending = 16;
    s.limits.max_pending_per_addr = max_pending_per_addr;
    s.host.handshake_timeout = Duration::from_secs(60);
    let ingress = common::start(s, sink.clone()).await;
    let port = tcp_port(&ingress);
    let mut stalls = Vec::new();
    for _ in 0..40 {
        stalls.push(stalled(Ipv4Addr::new(127, 0, 0, 3), port).await);
    }
    let m = ingress.metrics.clone();
    let refused = |m: &sequencer_ingress::metrics::Metrics| {
        m.reject_count("conn_pending_per_addr_limit") + m.reject_count("conn_pending_limit")
    };
    assert!(
        eventually(WAIT, || refused(&m) >= 24).await,
        "the ingress saw {} refusals of 40 stalls",
        refused(&m)
    );
    let served = match Client::connect(&common::tcp_addr(&ingress), ingress.peer_id).await {
        Ok(c) => {
            let factory = SubmissionFactory::new(1).expect("factory");
            let msg = common::messages(&factory, 0, 1);
            let mut st = c.open().await.expect("open");
            write_message(&mut st, &msg[0]).await.expect("write");
            let ok = sink.wait_for(1, WAIT).await == 1;
            c.close().await;
            ok
        }
        Err(_) => false,
    };
    let counts = (
        m.reject_count("conn_pending_per_addr_limit"),
        m.reject_count("conn_pending_limit"),
    );
    drop(stalls);
    ingress.shutdown().await;
    (served, counts.0, counts.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_from_one_address_do_not_lock_out_another() {
    // With the per-address cap: one address holds 4 of the 16 handshake slots.
    let (served, per_addr, global) = stall_then_try_honest(4).await;
    assert!(served, "honest collector locked out");
    assert_eq!(
        per_addr, 36,
        "36 of 40 stalls refused by the per-address cap"
    );
    assert_eq!(global, 0);
    // The same attack without it (no per-address cap, only the global one) locks everybody out.
    let (served, per_addr, global) = stall_then_try_honest(usize::MAX).await;
    assert!(
        !served,
        "without the per-address cap the stalls should lock the honest peer out"
    );
    assert_eq!(per_addr, 0);
    assert!(global >= 25, "global cap refusals: {global}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_dropped_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut s = settings(dir.path());
    let timeout = Duration::from_secs(1);
    s.host.handshake_timeout = timeout;
    s.limits.max_pending_per_addr = 1;
    let ingress = common::start(s, sink).await;
    let port = tcp_port(&ingress);
    let t0 = Instant::now();
    let mut st = stalled(Ipv4Addr::new(127, 0, 0, 3), port).await;
    // While it stalls, the address's one slot is taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _second = stalled(Ipv4Addr::new(127, 0, 0, 3), port).await;
    let m = ingress.metrics.clone();
    assert!(eventually(WAIT, || m.reject_count("conn_pending_per_addr_limit") == 1).await);
    // The ingress gives up on the stalled one: EOF or reset.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        loop {
            match st.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                // multistream-select may have sent its header: keep reading.
                Ok(_) => {}
            }
        }
    })
    .await;
    let dropped_after = t0.elapsed();
    assert!(read.is_ok(), "stalled handshake still open after 10 s");
    assert!(
        dropped_after >= timeout - Duration::from_millis(100) && dropped_after < timeout * 4,
        "dropped after {dropped_after:?} (handshake timeout {timeout:?})"
    );
    // Its slot is free again: a new handshake from the address is admitted. The swarm frees the
    // slot when it handles the closed connection, which on a loaded machine can come just after
    // the socket closed, so a refusal right at that moment is retried (each one is counted).
    let mut refused = m.reject_count("conn_pending_per_addr_limit");
    let mut admitted = None;
    let freed_by = Instant::now() + Duration::from_secs(5);
    while Instant::now() < freed_by {
        let third = stalled(Ipv4Addr::new(127, 0, 0, 3), port).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = m.reject_count("conn_pending_per_addr_limit");
        if now == refused {
            admitted = Some(third);
            break;
        }
        refused = now;
    }
    assert!(
        admitted.is_some(),
        "the address's pending slot was not freed within 5 s of the drop ({refused} refusals)"
    );
    ingress.shutdown().await;
}
