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
//! cargo build -p sequencer-ingress --bin sequencer-ingress --example rss_under_flood
//! target/debug/examples/rss_under_flood --connections 200 --streams 4 --seconds 20
//! ```

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use futures::AsyncWriteExt;
use libp2p::{Multiaddr, PeerId};
use sequencer_ingress::limits;
use snapshotter_sim::{rss_kib, Client, SubmissionFactory};
use tokio::io::AsyncBufReadExt;

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

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let key_file = std::env::temp_dir().join(format!("rss-flood-{}.key", std::process::id()));
    let spill = std::env::temp_dir().join(format!("rss-flood-{}.jsonl", std::process::id()));
    let listen = if a.quic {
        format!("/ip4/127.0.0.1/udp/{}/quic-v1", a.port)
    } else {
        format!("/ip4/127.0.0.1/tcp/{}", a.port)
    };
    let peer: PeerId = {
        let out = std::process::Command::new(&a.ingress_bin)
            .args(["--print-peer-id", "--key-file"])
            .arg(&key_file)
            .output()
            .with_context(|| format!("running {}", a.ingress_bin))?;
        String::from_utf8(out.stdout)?.trim().parse()?
    };
    let total_streams = a.connections * a.streams;
    let n = (a.connections + 16).to_string();
    let ns = (total_streams + 16).to_string();
    let http = format!("127.0.0.1:{}", a.port + 1);
    // Loopback is one address: relax the per-address limits to the totals. Peers get one message
    // a second and are never banned, so they stay throttled and keep writing.
    let mut child = tokio::process::Command::new(&a.ingress_bin)
        .args([
            "--sink",
            "memory",
            "--listen",
            &listen,
            "--http-listen",
            &http,
        ])
        .arg("--key-file")
        .arg(&key_file)
        .args(["--max-connections", &n, "--max-connections-per-ip", &n])
        .args(["--max-pending", &n, "--max-pending-per-addr", &n])
        .args(["--max-streams-total", &ns, "--max-streams-per-addr", &ns])
        .args(["--max-streams-per-peer", &a.streams.to_string()])
        .args(["--max-streams-per-connection", &a.streams.to_string()])
        .args(["--peer-rate", "1", "--peer-burst", "1"])
        .args(["--addr-rate", "1e12", "--addr-burst", "1e12"])
        .args([
            "--peer-abuse-after-secs",
            "1000000",
            "--ban-address-with-peer",
            "false",
        ])
        .arg("--spill-path")
        .arg(&spill)
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the ingress")?;
    let pid = child.id().context("child pid")?;
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("ingress: {l}");
            }
        });
    }
    let addr: Multiaddr = listen.parse()?;
    // Wait for the listener.
    let mut up = false;
    for _ in 0..100 {
        if Client::connect(&addr, peer).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        bail!("ingress did not come up on {listen}");
    }
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
    let _ = child.kill().await;
    let _ = std::fs::remove_file(&key_file);
    let _ = std::fs::remove_file(&spill);
    Ok(())
}
