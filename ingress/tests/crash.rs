//! SIGKILL of the real binary: without the write-ahead log the in-memory window (accepted, not
//! yet acknowledged by the queue) is lost; with it (`--wal-path`) no accepted message is. Plus the
//! measurement of that window at a stated load, and the WAL's cost (ignored; run by hand, see
//! docs/benchmarks.md).

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use libp2p::identity::Keypair;
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::sink::sqs::SqsSink;
use sequencer_ingress::Ingress;
use snapshotter_sim::{percentile, write_message, Client as P2pClient, SubmissionFactory};

async fn emulator() -> Option<(Client, String)> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let hostport = endpoint.as_deref().map(|e| {
        e.trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    });
    let reachable = match &hostport {
        Some(h) => tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(h.clone()),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        None => false,
    };
    if !common::require("the SQS emulator (AWS_ENDPOINT_URL)", reachable) {
        return None;
    }
    Some((SqsSink::client_from_env().await, hostport?))
}

async fn create_queue(client: &Client) -> String {
    let name = format!("ingress-crash-{}", uuid::Uuid::new_v4().simple());
    client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_owned()
}

/// Receives (and deletes) until `quiet` passes with nothing received or `n` distinct bodies are
/// seen.
async fn drain_queue(client: &Client, url: &str, n: usize, quiet: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut distinct = HashSet::new();
    let mut last_new = tokio::time::Instant::now();
    while distinct.len() < n && last_new.elapsed() < quiet {
        let r = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in r.messages() {
            let b = m.body().unwrap_or("").as_bytes().to_vec();
            // Any message counts as progress: after a WAL replay most are duplicates.
            last_new = tokio::time::Instant::now();
            // The ingress's own tallies (the close watermark's counts) are not submissions.
            if !common::is_tally(&b) {
                distinct.insert(b.clone());
                out.push(b);
            }
            if let Some(h) = m.receipt_handle() {
                let _ = client
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
    }
    out
}

struct Bin {
    child: tokio::process::Child,
    http: String,
    addr: libp2p::Multiaddr,
}

async fn spawn(
    endpoint: &str,
    queue_url: &str,
    key: &Keypair,
    dir: &std::path::Path,
    wal: bool,
) -> Bin {
    let (p2p_port, http_port) = (common::free_port(), common::free_port());
    let http = format!("127.0.0.1:{http_port}");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sequencer-ingress"));
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env(
            "INGRESS_KEY",
            hex::encode(key.to_protobuf_encoding().expect("key")),
        )
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
        .args(["--http-listen", &http, "--queue-url", queue_url])
        .args(["--markets", &common::local_market()])
        .args([
            "--peer-rate",
            "100000",
            "--peer-burst",
            "100000",
            "--log",
            "warn",
        ])
        .arg("--spill-path")
        .arg(dir.join("spill.jsonl"));
    if wal {
        cmd.arg("--wal-path").arg(dir.join("wal"));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ingress");
    for _ in 0..200 {
        if common::http_get(&http, "/healthz").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = format!("/ip4/127.0.0.1/tcp/{p2p_port}")
        .parse()
        .expect("addr");
    Bin { child, http, addr }
}

async fn sigkill(bin: &mut Bin) {
    bin.child.start_kill().expect("SIGKILL");
    let status = bin.child.wait().await.expect("wait");
    assert!(!status.success(), "killed: {status:?}");
}

fn sigterm(bin: &Bin) {
    let pid = bin.child.id().expect("pid");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

async fn metric(http: &str, name: &str) -> u64 {
    common::scrape_metric(http, name).await.unwrap_or(0.0) as u64
}

/// Accepts `n` messages while the queue endpoint is down (they sit in the buffer), SIGKILLs the
/// binary, brings the queue back and starts it again: returns (accepted before the kill,
/// distinct messages that reach the queue after the restart, sent).
async fn kill_with_a_full_buffer(
    wal: bool,
    n: usize,
) -> Option<(u64, HashSet<Vec<u8>>, Vec<Vec<u8>>)> {
    let (client, hostport) = emulator().await?;
    let url = create_queue(&client).await;
    let proxy = common::Flaky::start(hostport).await;
    proxy.set_up(false);
    let dir = tempfile::tempdir().expect("tmp");
    let key = Keypair::generate_ed25519();
    let mut bin = spawn(&proxy.url, &url, &key, dir.path(), wal).await;
    let factory = SubmissionFactory::new(2).expect("factory");
    let msgs = common::messages(&factory, 0, n);
    let p2p = P2pClient::connect(&bin.addr, key.public().to_peer_id())
        .await
        .expect("connect");
    let mut s = p2p.open().await.expect("open");
    for m in &msgs {
        write_message(&mut s, m).await.expect("write");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&bin.http, "ingress_messages_accepted_total").await < n as u64
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = metric(&bin.http, "ingress_messages_accepted_total").await;
    let enqueued = metric(&bin.http, "ingress_messages_enqueued_total").await;
    assert_eq!(enqueued, 0, "the queue is down: nothing acknowledged");
    sigkill(&mut bin).await;
    drop(s);
    p2p.close().await;
    proxy.set_up(true);
    let bin2 = spawn(&proxy.url, &url, &key, dir.path(), wal).await;
    let got = drain_queue(
        &client,
        &url,
        n,
        Duration::from_secs(if wal { 30 } else { 5 }),
    )
    .await;
    sigterm(&bin2);
    let mut bin2 = bin2;
    let exit = tokio::time::timeout(Duration::from_secs(30), bin2.child.wait()).await;
    assert!(
        exit.is_ok_and(|e| e.is_ok_and(|s| s.success())),
        "clean exit after SIGTERM"
    );
    if wal {
        let left: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
            .expect("wal dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("wal-"))
            .collect();
        assert!(
            left.is_empty(),
            "segments left after a clean stop: {left:?}"
        );
    }
    let _ = client.delete_queue().queue_url(&url).send().await;
    Some((accepted, got.into_iter().collect(), msgs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_without_a_wal_loses_the_accepted_messages_in_the_buffer() {
    let Some((accepted, got, sent)) = kill_with_a_full_buffer(false, 300).await else {
        return;
    };
    assert_eq!(accepted, 300, "all accepted before the kill");
    eprintln!(
        "without WAL: accepted {accepted}, in the queue after restart {}",
        got.len()
    );
    assert!(
        got.is_empty(),
        "nothing survives a SIGKILL: {} arrived",
        got.len()
    );
    assert_eq!(sent.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_the_wal_loses_no_accepted_message() {
    let Some((accepted, got, sent)) = kill_with_a_full_buffer(true, 300).await else {
        return;
    };
    assert_eq!(accepted, 300, "all accepted before the kill");
    eprintln!(
        "with WAL: accepted {accepted}, in the queue after restart {}",
        got.len()
    );
    common::assert_same(
        got,
        sent,
        "every accepted message, byte-exact, after the restart",
    );
}

/// What the load generator wrote, in order.
type Written = Arc<Mutex<Vec<Vec<u8>>>>;

/// Load from `streams` streams at `rate` msg/s in total for `secs`, returning what was written.
fn spawn_load(
    p2p: Arc<P2pClient>,
    msgs: Arc<Vec<Vec<u8>>>,
    streams: usize,
    rate: f64,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<tokio::task::JoinHandle<()>>, Written) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for k in 0..streams {
        let (p2p, msgs, written, stop) = (p2p.clone(), msgs.clone(), written.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = p2p.open().await else { return };
            let mut tick = tokio::time::interval(Duration::from_secs_f64(streams as f64 / rate));
            for m in msgs.iter().skip(k).step_by(streams) {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                if write_message(&mut s, m).await.is_err() {
                    return;
                }
                written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(m.clone());
            }
        }));
    }
    (tasks, written)
}

/// The in-memory window at a stated load: 500 msg/s from 4 streams into LocalStack SQS, SIGKILL
/// after 3 s. Prints accepted (scraped just before the kill), buffered then, and what reached the
/// queue; with the WAL the restart must deliver every accepted message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_load_loses_at_most_the_in_memory_window() {
    let Some((client, hostport)) = emulator().await else {
        return;
    };
    let rate = 500.0;
    let factory = SubmissionFactory::new(2).expect("factory");
    let msgs = Arc::new(common::messages(&factory, 0, 4000));
    for wal in [false, true] {
        let url = create_queue(&client).await;
        let endpoint = format!("http://{hostport}");
        let dir = tempfile::tempdir().expect("tmp");
        let key = Keypair::generate_ed25519();
        let mut bin = spawn(&endpoint, &url, &key, dir.path(), wal).await;
        let p2p = Arc::new(
            P2pClient::connect(&bin.addr, key.public().to_peer_id())
                .await
                .expect("connect"),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let (tasks, written) = spawn_load(p2p.clone(), msgs.clone(), 4, rate, stop.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let accepted = metric(&bin.http, "ingress_messages_accepted_total").await;
        let enqueued = metric(&bin.http, "ingress_messages_enqueued_total").await;
        let buffered = metric(&bin.http, "ingress_buffer_messages").await;
        sigkill(&mut bin).await;
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let sent: HashSet<Vec<u8>> = written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let in_wal: HashSet<Vec<u8>> = if wal {
            let mut w = HashSet::new();
            for e in std::fs::read_dir(dir.path().join("wal"))
                .expect("wal dir")
                .flatten()
            {
                for r in sequencer_ingress::spill::read_file(&e.path()).expect("segment") {
                    w.insert(r.bytes().expect("body"));
                }
            }
            w
        } else {
            HashSet::new()
        };
        let restarted = if wal {
            Some(spawn(&endpoint, &url, &key, dir.path(), wal).await)
        } else {
            None
        };
        let got: HashSet<Vec<u8>> = drain_queue(&client, &url, sent.len(), Duration::from_secs(5))
            .await
            .into_iter()
            .collect();
        let lost_at_least = accepted.saturating_sub(got.len() as u64);
        eprintln!(
            "load {rate}/s, 4 streams, SIGKILL after 3 s, wal={wal}: written {} accepted(scraped) {accepted} enqueued(scraped) {enqueued} buffered(scraped) {buffered} in queue {} => lost >= {lost_at_least}, written but not in queue {}",
            sent.len(),
            got.len(),
            sent.len() - got.len()
        );
        if wal {
            eprintln!(
                "  in the WAL at the kill: {}, of them not in the queue after the restart: {}",
                in_wal.len(),
                in_wal.difference(&got).count()
            );
        }
        assert!(got.is_subset(&sent), "nothing but what was written");
        assert!(
            got.len() as u64 >= enqueued,
            "everything acknowledged before the kill is in the queue"
        );
        if wal {
            assert_eq!(
                lost_at_least, 0,
                "with the WAL every accepted message arrives"
            );
        }
        if let Some(b) = restarted {
            sigterm(&b);
            let mut b = b;
            let _ = tokio::time::timeout(Duration::from_secs(30), b.child.wait()).await;
        }
        let _ = client.delete_queue().queue_url(&url).send().await;
    }
}

struct Run {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn wal_run(wal: bool, rate: f64, n: usize, msgs: &Arc<Vec<Vec<u8>>>) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let mut settings = common::settings(dir.path());
    settings.limits.peer_rate = 1e9;
    settings.limits.peer_burst = 1e9;
    if wal {
        settings.wal_path = Some(dir.path().join("wal"));
    }
    let sink = Arc::new(MemorySink::counting());
    let latency = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let ingress = Ingress::start(
        settings,
        Keypair::generate_ed25519(),
        sink.clone(),
        Metrics::new(),
        Some(latency.clone()),
    )
    .await
    .expect("start");
    let p2p = Arc::new(common::client(&ingress).await);
    let streams = 4;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for k in 0..streams {
        let (p2p, msgs) = (p2p.clone(), msgs.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = p2p.open().await.expect("open");
            let mut tick = (rate > 0.0).then(|| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(streams as f64 / rate));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for m in msgs.iter().take(n).skip(k).step_by(streams) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                write_message(&mut s, m).await.expect("write");
            }
            s
        }));
    }
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(t.await.expect("writer"));
    }
    let got = sink.wait_for(n, Duration::from_secs(300)).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(got, n);
    let mut lat = latency.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort_unstable();
    drop(keep);
    ingress.shutdown().await;
    Run {
        throughput: n as f64 / elapsed,
        p50_ms: percentile(&lat, 50.0) as f64 / 1000.0,
        p99_ms: percentile(&lat, 99.0) as f64 / 1000.0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The WAL's cost, same run, alternating off/on, medians of `WAL_BENCH_ROUNDS` (default 3):
/// at a fixed rate (`WAL_BENCH_RATE`, default 1000/s) and as fast as possible.
/// `cargo nextest run -p sequencer-ingress … --run-ignored only -E 'test(wal_cost)' --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run by hand"]
async fn wal_cost() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rounds = env("WAL_BENCH_ROUNDS", 3.0) as usize;
    let rate = env("WAL_BENCH_RATE", 1000.0);
    let n = env("WAL_BENCH_MESSAGES", 5000.0) as usize;
    let factory = SubmissionFactory::new(4).expect("factory");
    let msgs = Arc::new(
        (0..4)
            .flat_map(|slot| common::messages(&factory, slot, n / 4 + 1))
            .collect::<Vec<_>>(),
    );
    for r in [rate, 0.0] {
        let mut by = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (i, wal) in [false, true].into_iter().enumerate() {
                let run = wal_run(wal, r, n, &msgs).await;
                eprintln!(
                    "round {round} rate {} wal={wal}: {:.0} msg/s p50 {:.2} ms p99 {:.2} ms",
                    if r > 0.0 {
                        format!("{r}/s")
                    } else {
                        "max".into()
                    },
                    run.throughput,
                    run.p50_ms,
                    run.p99_ms
                );
                by[i].push(run);
            }
        }
        for (i, wal) in [false, true].into_iter().enumerate() {
            let runs = &by[i];
            println!(
                "rate {} wal={wal} n={n} rounds={rounds}: median {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms",
                if r > 0.0 { format!("{r}/s") } else { "max".into() },
                median(runs.iter().map(|x| x.throughput).collect()),
                median(runs.iter().map(|x| x.p50_ms).collect()),
                median(runs.iter().map(|x| x.p99_ms).collect()),
            );
        }
    }
}
