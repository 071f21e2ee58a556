//! Resident memory of the ingress while throttled peers keep writing: the ingress stops reading
//! them, so their data piles up in transport receive windows, which `limits.rs` sizes to a budget.
//!
//! Starts the real `sequencer-ingress` binary (`--sink memory`) as a child process with a tiny
//! per-peer rate and no bans, opens `--connections` connections with `--streams` `/collect` streams
//! each (TCP + yamux, or QUIC with `--quic`), makes every stream write signed submissions as fast
//! as flow control lets it, samples the child's VmRSS every `--sample-ms`, and prints a report:
//! RSS before, after connecting, and the median and maximum during the flood, next to the
//! worst-case unread data the windows allow (`limits::YAMUX_STREAM_WINDOW` per stream, or
//! `limits::QUIC_CONNECTION_WINDOW` per connection).
//!
//! ```sh
//! cargo build -p sequencer-ingress --bin sequencer-ingress -p sequencer-runner --example rss_under_flood
//! target/debug/examples/rss_under_flood --connections 200 --streams 4 --seconds 20
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::AsyncWriteExt;
use sequencer_ingress::limits;
use snapshotter_sim::bench::{median, mib, IngressProcess};
use snapshotter_sim::{rss_kib, Client, SubmissionFactory};

#[derive(Parser)]
struct Args {
    /// The ingress binary to run.
    #[arg(long, default_value = "target/debug/sequencer-ingress")]
    ingress_bin: String,
    /// Connections (one peer id each).
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// `/collect` streams per connection.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Seconds of flood after all streams are open.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// RSS sampling period.
    #[arg(long, default_value_t = 500)]
    sample_ms: u64,
    /// Use QUIC instead of TCP + yamux.
    #[arg(long)]
    quic: bool,
    /// Port to listen on (TCP or UDP).
    #[arg(long, default_value_t = 19300)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let total_streams = a.connections * a.streams;
    let n = (a.connections + 16).to_string();
    let ns = (total_streams + 16).to_string();
    // Loopback is one address: relax the per-address limits to the totals. Peers get one message
    // a second and are never banned, so they stay throttled and keep writing.
    let flags: Vec<String> = [
        "--any-market",
        "--gossip",
        "false",
        "--max-connections",
        &n,
        "--max-connections-per-ip",
        &n,
        "--max-pending",
        &n,
        "--max-pending-per-addr",
        &n,
        "--max-streams-total",
        &ns,
        "--max-streams-per-addr",
        &ns,
        "--max-streams-per-peer",
        &a.streams.to_string(),
        "--max-streams-per-connection",
        &a.streams.to_string(),
        "--peer-rate",
        "1",
        "--peer-burst",
        "1",
        "--addr-rate",
        "1e12",
        "--addr-burst",
        "1e12",
        "--peer-abuse-after-secs",
        "1000000",
        "--ban-address-with-peer",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ingress = IngressProcess::start(&a.ingress_bin, a.port, a.quic, &flags).await?;
    let (pid, peer, addr) = (ingress.pid, ingress.peer, ingress.addr.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).context("rss")?;

    let factory = SubmissionFactory::new(1)?;
    let msgs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..50)
            .map(|i| {
                factory
                    .message(1, 1000 + i, &format!("project_{i}:0xabc:UNISWAPV2"))
                    .map(|(_, m)| m)
            })
            .collect::<Result<_, _>>()?,
    );
    let mut clients = Vec::new();
    for _ in 0..a.connections {
        clients.push(Arc::new(Client::connect(&addr, peer).await?));
    }
    let mut streams = Vec::new();
    for c in &clients {
        for _ in 0..a.streams {
            streams.push(c.open().await?);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = rss_kib(pid).context("rss")?;
    let mut writers = Vec::new();
    for mut st in streams {
        let msgs = msgs.clone();
        writers.push(tokio::spawn(async move {
            loop {
                for m in msgs.iter() {
                    if st.write_all(m).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    let mut samples = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(a.seconds);
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(a.sample_ms)).await;
        if let Some(r) = rss_kib(pid) {
            samples.push(r);
        }
    }
    let max = samples.iter().copied().max().unwrap_or(0);
    let second_half = samples.len() / 2;
    let mut late: Vec<u64> = samples[second_half..].to_vec();
    let late_median = median(&mut late);
    let worst_unread = if a.quic {
        a.connections * limits::QUIC_CONNECTION_WINDOW as usize
    } else {
        total_streams * limits::YAMUX_STREAM_WINDOW
    };
    println!(
        "transport={} connections={} streams={} flood={}s samples={}",
        if a.quic { "quic" } else { "tcp+yamux" },
        a.connections,
        total_streams,
        a.seconds,
        samples.len()
    );
    println!("rss_before_mib={:.1}", mib(before));
    println!("rss_connected_mib={:.1}", mib(connected));
    println!("rss_flood_median_second_half_mib={:.1}", mib(late_median));
    println!("rss_flood_max_mib={:.1}", mib(max));
    println!(
        "flood_growth_over_connected_mib={:.1}",
        mib(late_median.saturating_sub(connected))
    );
    println!(
        "worst_case_unread_mib={:.1}",
        worst_unread as f64 / 1024.0 / 1024.0
    );
    for w in writers {
        w.abort();
    }
    ingress.stop().await;
    Ok(())
}
