//! Helpers shared by the ingress integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::sink::SubmissionSink;
use sequencer_ingress::{Ingress, Settings};
use snapshotter_sim::{Client, SubmissionFactory};

/// Settings for a test ingress on loopback with an ephemeral port and fast timings. Every client
/// dials from 127.0.0.1, so the per-address limits are relaxed to the totals (`one_host_fleet`);
/// `tests/address_limits.rs` tests them with clients on other loopback addresses.
pub fn settings(spill_dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.limits = s.limits.one_host_fleet();
    s.host.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    s.spill_path = spill_dir.join("spill.jsonl");
    s.drain_timeout = Duration::from_secs(5);
    s.dispatcher.backoff_max = Duration::from_millis(200);
    s
}

/// Starts an ingress with `sink`.
pub async fn start(settings: Settings, sink: Arc<dyn SubmissionSink>) -> Ingress {
    Ingress::start(
        settings,
        Keypair::generate_ed25519(),
        sink,
        Metrics::new(),
        None,
    )
    .await
    .expect("ingress starts")
}

/// The first TCP listen address.
pub fn tcp_addr(ingress: &Ingress) -> Multiaddr {
    ingress
        .listen_addrs
        .iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .cloned()
        .expect("a TCP listen address")
}

/// A connected client.
pub async fn client(ingress: &Ingress) -> Client {
    Client::connect(&tcp_addr(ingress), ingress.peer_id)
        .await
        .expect("client connects")
}

/// `n` signed messages for `slot`.
pub fn messages(factory: &SubmissionFactory, slot: usize, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            factory
                .message(
                    slot,
                    1000 + i as u64,
                    &format!("project_{slot}_{i}:0xabc:UNISWAPV2"),
                )
                .expect("sign")
                .1
        })
        .collect()
}

/// Whether a service-dependent test should run: prints a loud skip (and returns false) when the
/// service is missing, unless SEQ_REQUIRE_SERVICES=1, then panics.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var("SEQ_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{what} is required (SEQ_REQUIRE_SERVICES=1) but missing");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what} is missing; this test did not run !!!!!!!!\n");
    false
}

/// A TCP forwarder that can be taken down and brought back: stands in for the queue endpoint
/// going away and coming back (connections reset, new ones closed at once) without restarting the
/// emulator, so the test is fast and deterministic.
pub struct Flaky {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Flaky {
    /// Forwards to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (up2, gen2) = (up.clone(), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let (up3, gen3) = (up2.clone(), gen2.clone());
                let my_gen = gen3.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let watch = async {
                        while up3.load(Ordering::SeqCst) && gen3.load(Ordering::SeqCst) == my_gen {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = watch => {}
                    }
                });
            }
        });
        Self {
            url,
            up,
            generation,
            task,
        }
    }

    /// Takes the endpoint down (open connections are cut) or brings it back.
    pub fn set_up(&self, up: bool) {
        use std::sync::atomic::Ordering;
        self.up.store(up, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts two sets of messages are equal, reporting counts rather than dumping bytes.
pub fn assert_same<A, B>(got: A, want: B, what: &str)
where
    A: IntoIterator<Item = Vec<u8>>,
    B: IntoIterator<Item = Vec<u8>>,
{
    let got: std::collections::HashSet<Vec<u8>> = got.into_iter().collect();
    let want: std::collections::HashSet<Vec<u8>> = want.into_iter().collect();
    let missing = want.difference(&got).count();
    let extra = got.difference(&want).count();
    assert!(
        missing == 0 && extra == 0,
        "{what}: {missing} missing, {extra} unexpected (of {})",
        want.len()
    );
}

/// Waits up to `within` for the spill files in `dir` to be removed after a replay;
/// returns how many remain.
#[allow(dead_code)] // not every test binary replays spills
pub async fn spill_files_left(dir: &Path, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let left = || {
        std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("spill.jsonl"))
            .count()
    };
    while left() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    left()
}
