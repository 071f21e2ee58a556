//! `snapshotter-sim`: load generator for the ingress. `throughput` runs an ingress in this
//! process (in-memory or SQS sink) and drives N peers × M long-lived `/collect` streams (or, with
//! `--path gossipsub|both`, gossipsub collectors publishing envelopes, or both) with real
//! EIP-712-signed submissions, then reports submissions/s and p50/p99 read→enqueued latency.
//! `idle` opens many idle connections (one open stream each) to a separately running ingress and
//! reports its resident memory per connection.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::sink::sqs::SqsSink;
use sequencer_ingress::sink::SubmissionSink;
use sequencer_ingress::{Ingress, Settings};
use snapshotter_sim::gossip::{envelope, GossipPeer, PeerOptions};
use snapshotter_sim::scenario::SimPath;
use snapshotter_sim::{
    percentile, process_cpu_seconds, rss_kib, write_message, Client, SubmissionFactory,
};

#[derive(Parser)]
#[command(
    name = "snapshotter-sim",
    about = "Load generator for the sequencer ingress"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SinkArg {
    Memory,
    Sqs,
}

#[derive(Subcommand)]
enum Cmd {
    /// In-process ingress + simulated snapshotters; reports submissions/s and latency.
    Throughput {
        /// Peers (each its own libp2p identity and connection).
        #[arg(long, default_value_t = 10)]
        peers: usize,
        /// Long-lived streams per peer.
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Messages per stream.
        #[arg(long, default_value_t = 2_500)]
        messages: usize,
        /// Total target rate in messages/s (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Sink.
        #[arg(long, value_enum, default_value = "memory")]
        sink: SinkArg,
        /// SQS queue URL (with --sink sqs); else a fresh queue is created and deleted.
        #[arg(long, env = "INGRESS_QUEUE_URL")]
        queue_url: Option<String>,
        /// Distinct signed messages per stream (reused round-robin with fresh UUIDs not needed:
        /// bytes are what is measured).
        #[arg(long, default_value_t = 200)]
        distinct: usize,
        /// How each submission travels: /collect streams, gossipsub envelopes (each peer one
        /// gossipsub collector), or both (then twice the messages reach the queue).
        #[arg(long, value_enum, default_value = "collect")]
        path: SimPath,
    },
    /// Idle connections with one open /collect stream each, against a running ingress.
    Idle {
        /// Ingress address.
        #[arg(long)]
        addr: Multiaddr,
        /// Ingress peer id.
        #[arg(long)]
        peer: PeerId,
        /// Ingress process id (RSS is read from /proc).
        #[arg(long)]
        pid: u32,
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Concurrent dials.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().cmd {
        Cmd::Throughput {
            peers,
            streams,
            messages,
            rate,
            sink,
            queue_url,
            distinct,
            path,
        } => {
            throughput(
                peers, streams, messages, rate, sink, queue_url, distinct, path,
            )
            .await
        }
        Cmd::Idle {
            addr,
            peer,
            pid,
            connections,
            parallel,
        } => idle(addr, peer, pid, connections, parallel).await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn throughput(
    peers: usize,
    streams: usize,
    messages: usize,
    rate: f64,
    sink_arg: SinkArg,
    queue_url: Option<String>,
    distinct: usize,
    path: SimPath,
) -> anyhow::Result<()> {
    let sent_total = peers * streams * messages;
    let total = if path == SimPath::Both {
        2 * sent_total
    } else {
        sent_total
    };
    let memory = Arc::new(MemorySink::counting());
    let mut temp_queue = None;
    let sink: Arc<dyn SubmissionSink> = match sink_arg {
        SinkArg::Memory => memory.clone(),
        SinkArg::Sqs => {
            let client = SqsSink::client_from_env().await;
            let url = match queue_url {
                Some(u) => u,
                None => {
                    let name = format!("ingress-bench-{}", uuid::Uuid::new_v4().simple());
                    let out = client
                        .create_queue()
                        .queue_name(&name)
                        .send()
                        .await
                        .context("create bench queue")?;
                    let url = out.queue_url().context("queue url")?.to_owned();
                    temp_queue = Some((client.clone(), url.clone()));
                    url
                }
            };
            Arc::new(SqsSink::new(client, url))
        }
    };
    let mut settings = Settings::default();
    settings.host.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    settings.limits.peer_rate = 1e9;
    settings.limits.peer_burst = 1e9;
    settings.limits.max_streams_per_peer = streams.max(1) * 2;
    settings.host.max_streams_per_connection = streams.max(1) * 2;
    // Every simulated snapshotter dials from this host: relax the per-address limits.
    settings.limits = settings.limits.one_host_fleet();
    if path != SimPath::Collect {
        let mut g = sequencer_ingress::gossip::GossipSettings::default().one_host_fleet();
        g.max_inbound = peers.max(1) * 2 + 16;
        g.max_inbound_per_addr = g.max_inbound;
        settings.host.gossip = Some(g);
    }
    settings.spill_path =
        std::env::temp_dir().join(format!("sim-spill-{}.jsonl", std::process::id()));
    let latency = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let metrics = Metrics::new();
    let ingress = Ingress::start(
        settings,
        Keypair::generate_ed25519(),
        sink,
        metrics.clone(),
        Some(latency.clone()),
    )
    .await?;
    let addr = ingress.listen_addrs[0].clone();

    eprintln!(
        "signing {} distinct submissions per stream…",
        distinct.min(messages).max(1)
    );
    let factory = SubmissionFactory::new(peers.max(1))?;
    let mut plans = Vec::new();
    for p in 0..peers {
        let client = Arc::new(Client::connect(&addr, ingress.peer_id).await?);
        let gossip = if path == SimPath::Collect {
            None
        } else {
            let g = GossipPeer::connect(
                Keypair::generate_ed25519(),
                &addr,
                ingress.peer_id,
                &PeerOptions::default(),
            )
            .await?;
            if !g.wait_mesh(&g.all, 1, Duration::from_secs(20)).await {
                anyhow::bail!("the ingress did not join a gossip peer's mesh");
            }
            Some(Arc::new(g))
        };
        for s in 0..streams {
            let msgs: Vec<Vec<u8>> = (0..distinct.min(messages).max(1))
                .map(|i| {
                    factory
                        .message(
                            p,
                            1 + i as u64,
                            &format!("bench_{p}_{s}_{i}:0xabc:UNISWAPV2"),
                        )
                        .map(|m| m.1)
                })
                .collect::<Result<_, _>>()?;
            let stream = client.open().await?;
            plans.push((client.clone(), gossip.clone(), stream, msgs));
        }
    }
    let per_stream_interval = if rate > 0.0 {
        Some(Duration::from_secs_f64((peers * streams) as f64 / rate))
    } else {
        None
    };
    eprintln!(
        "sending {sent_total} submissions over {peers} peers × {streams} streams by {path:?}…"
    );
    let start = Instant::now();
    let cpu_start = process_cpu_seconds().unwrap_or(0.0);
    let mut tasks = Vec::new();
    for (client, gossip, mut stream, msgs) in plans {
        tasks.push(tokio::spawn(async move {
            let mut tick = per_stream_interval.map(|d| {
                let mut t = tokio::time::interval(d);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for i in 0..messages {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let m = &msgs[i % msgs.len()];
                if path != SimPath::Gossipsub && write_message(&mut stream, m).await.is_err() {
                    break;
                }
                if let Some(g) = gossip.as_ref() {
                    let json = &m[sequencer_core::collect::UUID_LEN..];
                    if g.publish(&g.all, envelope(1, json, &g.peer_id))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            (client, gossip, stream)
        }));
    }
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(t.await?);
    }
    let written = start.elapsed();
    // Everything sent is either enqueued or, on gossipsub, ignored by the ingress (a validator
    // that is behind ignores rather than queues without bound): wait until each message is one
    // or the other, or until nothing moves for 5 s.
    let ignored = || metrics.path.ignored_count("validation_queue_full");
    let done = || metrics.messages_enqueued.get() + ignored();
    let deadline = Instant::now() + Duration::from_secs(900);
    let (mut last, mut still) = (u64::MAX, Instant::now());
    while done() < total as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = done();
        if now != last {
            (last, still) = (now, Instant::now());
        } else if still.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let enqueued = match sink_arg {
        SinkArg::Memory => memory.len() as u64,
        SinkArg::Sqs => metrics.messages_enqueued.get(),
    };
    let ignored = ignored();
    let elapsed = start.elapsed();
    let cpu = process_cpu_seconds().unwrap_or(0.0) - cpu_start;
    let mut lat = latency.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    let ms = |us: u32| us as f64 / 1000.0;
    println!(
        "sink={} path={path:?} peers={peers} streams={streams} messages={total} rate_target={} written_in={:.2}s enqueued={enqueued} ignored_validation_queue_full={ignored} in {:.2}s => {:.0} submissions/s; read->enqueued p50={:.2}ms p99={:.2}ms max={:.2}ms; process CPU {:.2}s (server + clients) => {:.0} submissions per CPU-second; cores={}",
        match sink_arg {
            SinkArg::Memory => "memory",
            SinkArg::Sqs => "sqs",
        },
        if rate > 0.0 { format!("{rate:.0}/s") } else { "max".into() },
        written.as_secs_f64(),
        elapsed.as_secs_f64(),
        enqueued as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(lat.last().copied().unwrap_or(0)),
        cpu,
        enqueued as f64 / cpu.max(0.001),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    drop(keep);
    ingress.shutdown().await;
    if let Some((client, url)) = temp_queue {
        let _ = client.delete_queue().queue_url(url).send().await;
    }
    Ok(())
}

async fn idle(
    addr: Multiaddr,
    peer: PeerId,
    pid: u32,
    connections: usize,
    parallel: usize,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).context("reading server RSS")?;
    eprintln!("server RSS before: {before} KiB; opening {connections} connections…");
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (sem, addr) = (sem.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.ok()?;
            let c = Client::connect(&addr, peer).await.ok()?;
            let s = c.open().await.ok()?;
            Some((c, s))
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        if let Ok(Some(x)) = t.await {
            open.push(x);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid).context("reading server RSS")?;
    let n = open.len().max(1);
    println!(
        "idle connections={} (of {connections}) server RSS before={before} KiB after={after} KiB => {:.1} KiB per connection (one open /collect stream each)",
        open.len(),
        after.saturating_sub(before) as f64 / n as f64
    );
    Ok(())
}
