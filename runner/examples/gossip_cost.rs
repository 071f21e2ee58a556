//! What gossipsub costs the ingress: the real `sequencer-ingress` binary as a child process
//! (`--sink memory`), driven at a stated load of signed submissions by simulated collectors in
//! this process, once per case:
//!
//! 1. gossipsub off, submissions on `/collect`;
//! 2. gossipsub on, the same `/collect` load, with the collectors also in the mesh (heartbeats
//!    only on gossipsub): the cost of being a mesh member;
//! 3. gossipsub on, every submission published on gossipsub only;
//! 4. gossipsub on, every submission on both paths (the newest collectors' default: twice the
//!    messages into the ingress for the same submissions).
//!
//! For each it samples the child's VmRSS and CPU time every `--sample-ms` while the load runs and
//! reads `ingress_messages_accepted_total` from its `/metrics`, and prints one line: accepted
//! messages/s, submissions/s, the child's CPU use, and the median and maximum RSS over the second
//! half of the run.
//!
//! ```sh
//! cargo build -p sequencer-ingress --bin sequencer-ingress -p sequencer-runner --example gossip_cost
//! target/debug/examples/gossip_cost --rate 1000 --seconds 20 --collectors 8
//! target/debug/examples/gossip_cost --rate 0 --seconds 10 --collectors 8   # as fast as they can
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::AsyncWriteExt;
use libp2p::identity::Keypair;
use sequencer_core::collect::UUID_LEN;
use snapshotter_sim::bench::{cpu_seconds_of, median, mib, IngressProcess};
use snapshotter_sim::gossip::{
    discovery_heartbeat, envelope, mesh_formation_heartbeat, GossipPeer, PeerOptions,
};
use snapshotter_sim::{rss_kib, Client, SubmissionFactory};

#[derive(Parser)]
struct Args {
    /// The ingress binary to run.
    #[arg(long, default_value = "target/debug/sequencer-ingress")]
    ingress_bin: String,
    /// Submissions per second, all collectors together (0: as fast as they can).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of load per case.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Simulated collectors (each its own peer id, one connection, one /collect stream).
    #[arg(long, default_value_t = 8)]
    collectors: usize,
    /// Collector heartbeat period in ms (10 000 deployed).
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// Sampling period.
    #[arg(long, default_value_t = 500)]
    sample_ms: u64,
    /// First port (each case uses two).
    #[arg(long, default_value_t = 19400)]
    port: u16,
    /// Only these cases (1–4), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    cases: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    CollectNoGossip,
    CollectWithMesh,
    Gossip,
    Both,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::CollectNoGossip => "gossipsub off, /collect",
            Case::CollectWithMesh => "gossipsub on (mesh, heartbeats), /collect",
            Case::Gossip => "gossipsub on, gossipsub only",
            Case::Both => "gossipsub on, both paths",
        }
    }
    fn gossip_on(self) -> bool {
        self != Case::CollectNoGossip
    }
    fn collect(self) -> bool {
        matches!(
            self,
            Case::CollectNoGossip | Case::CollectWithMesh | Case::Both
        )
    }
    fn publish(self) -> bool {
        matches!(self, Case::Gossip | Case::Both)
    }
}

struct Collector {
    client: Option<(Client, libp2p::Stream)>,
    peer: Option<GossipPeer>,
}

async fn run_case(a: &Args, case: Case, port: u16, msgs: Arc<Vec<Vec<u8>>>) -> anyhow::Result<()> {
    let n = (a.collectors * 4 + 64).to_string();
    let flags: Vec<String> = [
        "--any-market",
        "--gossip",
        if case.gossip_on() { "true" } else { "false" },
        // One host for every collector: per-address limits at the totals, rates out of the way.
        "--max-connections-per-ip",
        &n,
        "--max-pending-per-addr",
        &n,
        "--max-streams-per-addr",
        &n,
        "--gossip-max-inbound-per-addr",
        &n,
        "--gossip-max-inbound",
        &n,
        "--peer-rate",
        "1e9",
        "--peer-burst",
        "1e9",
        "--addr-rate",
        "1e12",
        "--addr-burst",
        "1e12",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ingress = IngressProcess::start(&a.ingress_bin, port, false, &flags).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(ingress.pid).context("rss")?;
    let mut collectors = Vec::new();
    for _ in 0..a.collectors {
        let client = if case.collect() {
            let c = Client::connect(&ingress.addr, ingress.peer).await?;
            let s = c.open().await?;
            Some((c, s))
        } else {
            None
        };
        let peer = if case.gossip_on() {
            let p = GossipPeer::connect(
                Keypair::generate_ed25519(),
                &ingress.addr,
                ingress.peer,
                &PeerOptions::default(),
            )
            .await?;
            if !p.wait_mesh(&p.all, 1, Duration::from_secs(20)).await {
                anyhow::bail!("the ingress did not join a collector's mesh");
            }
            Some(p)
        } else {
            None
        };
        collectors.push(Collector { client, peer });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kib(ingress.pid).context("rss")?;
    let accepted_before = ingress.metric("ingress_messages_accepted_total").await;
    let cpu_before = cpu_seconds_of(ingress.pid).unwrap_or(0.0);
    let started = tokio::time::Instant::now();
    let end = started + Duration::from_secs(a.seconds);
    let per = if a.rate > 0.0 {
        Some(Duration::from_secs_f64(a.collectors as f64 / a.rate))
    } else {
        None
    };
    let heartbeat = Duration::from_millis(a.heartbeat_ms);
    let mut tasks = Vec::new();
    for (i, mut c) in collectors.into_iter().enumerate() {
        let msgs = msgs.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = per.map(|d| {
                let mut t = tokio::time::interval(d);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut beat = tokio::time::Instant::now() + heartbeat;
            let mut sent = 0u64;
            let mut refused = 0u64;
            let mut beats = 0u64;
            while tokio::time::Instant::now() < end {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let m = &msgs[(i * 7919 + sent as usize) % msgs.len()];
                if case.collect() {
                    if let Some((_, s)) = c.client.as_mut() {
                        if s.write_all(m).await.is_err() {
                            break;
                        }
                    }
                }
                if let Some(p) = c.peer.as_ref() {
                    if case.publish()
                        && p.publish(&p.all, envelope(1, &m[UUID_LEN..], &p.peer_id))
                            .await
                            .is_err()
                    {
                        // The collector's own send queue is full: the load outran it.
                        refused += 1;
                    }
                    if tokio::time::Instant::now() >= beat {
                        beats += 1;
                        let _ = p
                            .publish(&p.zero, discovery_heartbeat(&p.peer_id, beats))
                            .await;
                        let _ = p
                            .publish(&p.all, mesh_formation_heartbeat(&p.peer_id, beats))
                            .await;
                        beat += heartbeat;
                    }
                }
                sent += 1;
                if per.is_none() && sent.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            (c, sent, refused)
        }));
    }
    let mut rss = Vec::new();
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(a.sample_ms)).await;
        if let Some(r) = rss_kib(ingress.pid) {
            rss.push(r);
        }
    }
    let mut submissions = 0u64;
    let mut refused = 0u64;
    let mut keep = Vec::new();
    for t in tasks {
        let (c, sent, r) = t.await?;
        submissions += sent;
        refused += r;
        keep.push(c);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A moment for what is in flight (counted: it was sent within the load window).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = ingress.metric("ingress_messages_accepted_total").await - accepted_before;
    let cpu = cpu_seconds_of(ingress.pid).unwrap_or(0.0) - cpu_before;
    let ignored: Vec<String> = ingress
        .series("ingress_gossip_ignored_total")
        .await
        .into_iter()
        .filter(|(l, v)| *v > 0.0 && !l.contains("heartbeat") && !l.contains("mesh_formation"))
        .map(|(l, v)| format!("{l}={v}"))
        .collect();
    let max = rss.iter().copied().max().unwrap_or(0);
    let mut late = rss[rss.len() / 2..].to_vec();
    println!(
        "case=\"{}\" collectors={} rate_target={} seconds={} submissions_sent={} publish_refused_by_collectors={} accepted_msgs={} accepted_per_s={:.0} submissions_per_s={:.0} ingress_cpu={:.0}% rss_idle_mib={:.1} rss_connected_mib={:.1} rss_median_2nd_half_mib={:.1} rss_max_mib={:.1} gossip_ignored=[{}]",
        case.name(),
        a.collectors,
        if a.rate > 0.0 { format!("{:.0}/s", a.rate) } else { "max".into() },
        a.seconds,
        submissions,
        refused,
        accepted,
        accepted / elapsed,
        submissions as f64 / elapsed,
        100.0 * cpu / elapsed,
        mib(rss_idle),
        mib(rss_connected),
        mib(median(&mut late)),
        mib(max),
        ignored.join(" "),
    );
    for c in keep {
        if let Some((client, mut s)) = c.client {
            let _ = s.close().await;
            client.close().await;
        }
        if let Some(p) = c.peer {
            p.close().await;
        }
    }
    ingress.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let factory = SubmissionFactory::new(a.collectors.max(1))?;
    eprintln!("signing 400 distinct submissions…");
    let msgs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..400)
            .map(|i| {
                factory
                    .message(
                        i % a.collectors.max(1),
                        1 + i as u64,
                        &format!("cost_{i}:0xabc:UNISWAPV2"),
                    )
                    .map(|(_, m)| m)
            })
            .collect::<Result<_, _>>()?,
    );
    for (k, case) in [
        Case::CollectNoGossip,
        Case::CollectWithMesh,
        Case::Gossip,
        Case::Both,
    ]
    .into_iter()
    .enumerate()
    {
        if !a.cases.contains(&(k as u8 + 1)) {
            continue;
        }
        run_case(&a, case, a.port + 2 * k as u16, msgs.clone()).await?;
    }
    Ok(())
}
