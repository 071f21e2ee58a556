//! The README's run commands in the order a new user types them, on one data directory, through
//! the real `sequencer-local` binary and its spawned anvil:
//!
//! 1. the default command (small sizes, `--json`): epochs anchored, every check held;
//! 2. `--no-sim --assign …` for an outside collector on the same directory: the same chain comes
//!    back (its anvil state is kept in the data directory), and submissions an outside collector
//!    sends for the next released epoch are anchored. Before the data directory knew its chain,
//!    this run spawned a new anvil, redeployed at the same addresses and took the new chain's
//!    epochs for the old run's finished ones: the submissions were never anchored;
//! 3. the default command again: resumes the same chain and anchors new epochs;
//! 4. with the chain's state file gone, the directory belongs to a chain that no longer exists:
//!    refused, naming `--fresh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sequencer_chain::{ChainClient, ChainConfig};
use serde_json::Value;

const SIZES: [&str; 6] = ["--slots", "10", "--projects", "4", "--batch-size", "2"];

fn runner(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sequencer-local"));
    c.args(SIZES)
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("RPC_URL")
        .env("RUST_LOG", "error");
    c
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["type"] == t).collect()
}

/// Lines of a running child's stdout, read on a thread.
fn line_reader(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_json(rx: &mpsc::Receiver<String>, deadline: Instant) -> Value {
    let left = deadline.saturating_duration_since(Instant::now());
    let line = rx.recv_timeout(left).expect("a JSON line in time");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The `--no-sim` runner; killed if the test fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SIGTERM, as a service manager or Ctrl-C stops it.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_commands_in_sequence_resume_one_chain_and_lose_nothing() {
    if sequencer_testsupport::anvil_bin(
        "readme_commands_in_sequence_resume_one_chain_and_lose_nothing",
    )
    .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // 1. The default command.
    let o = runner(d, &["--epochs", "1", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    let epochs = of_type(&lines, "epoch");
    assert!(
        !epochs.is_empty() && epochs.iter().all(|e| e["ok"] == true),
        "{lines:?}"
    );
    let summary = of_type(&lines, "summary");
    assert_eq!(summary.len(), 1, "{lines:?}");
    let first = summary[0].clone();
    assert_eq!(first["ok"], true);
    assert_eq!(first["resumed"], false);
    let first_epoch = epochs[0]["epoch"].as_u64().unwrap();
    assert!(
        d.join("anvil-state.json").is_file(),
        "the chain is kept in the data directory"
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(d.join("deployment.json")).unwrap()).unwrap();
    assert_eq!(saved["chain"]["chain_id"], 31337);
    assert!(saved["chain"]["genesis_hash"].as_str().is_some());

    // 2. `--no-sim` for an outside collector, on the same directory.
    let outsider = "0x00000000000000000000000000000000000000a1";
    let mut child = Running(
        runner(
            d,
            &[
                "--no-sim",
                "--json",
                "--block-ms",
                "250",
                "--assign",
                &format!("21={outsider}"),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap(),
    );
    let rx = line_reader(child.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    let ready = next_json(&rx, deadline);
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["protocol_state"], first["protocol_state"]);
    let rpc = ready["rpc_url"].as_str().unwrap().to_string();
    let protocol_state: sequencer_chain::Address =
        ready["protocol_state"].as_str().unwrap().parse().unwrap();
    let market: sequencer_chain::Address = ready["data_market"].as_str().unwrap().parse().unwrap();
    let c = ChainClient::connect(ChainConfig::new(&rpc, protocol_state))
        .await
        .unwrap();
    assert_eq!(
        c.slot_owner(21).await.unwrap(),
        outsider.parse::<sequencer_chain::Address>().unwrap()
    );
    // The same chain: the first run's epochs are still anchored on it.
    let a = c.anchored(market, first_epoch).await.unwrap();
    assert!(
        !a.batches.is_empty(),
        "epoch {first_epoch} of the first run is on this chain"
    );

    // An outside collector (real libp2p, real signatures) sends for the next released epoch.
    let addr: libp2p::Multiaddr = ready["ingress"].as_str().unwrap().parse().unwrap();
    let peer: libp2p::PeerId = ready["peer_id"].as_str().unwrap().parse().unwrap();
    let domain = sequencer_core::eip712::Domain {
        chain_id: ready["chain_id"].as_u64().unwrap(),
        verifying_contract: protocol_state,
    };
    let mut sim = snapshotter_sim::scenario::Simulator::connect(
        &addr,
        peer,
        domain,
        market,
        10,
        4,
        1,
        snapshotter_sim::scenario::SimPath::Collect,
    )
    .await
    .unwrap();
    let before = c.market_info(market).await.unwrap().current_epoch;
    let (epoch, release) = loop {
        let info = c.market_info(market).await.unwrap();
        if info.current_epoch > before {
            let a = c.anchored(market, info.current_epoch).await.unwrap();
            break (info.current_epoch, a.release_block.unwrap());
        }
        assert!(Instant::now() < deadline, "no epoch released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let header = c.block_hash(release).await.unwrap().unwrap();
    let sent = sim.submit_epoch(epoch, header).await.unwrap();
    let accepted = sent
        .iter()
        .filter(|s| s.expect == snapshotter_sim::scenario::Expect::Accepted)
        .count() as u64;
    assert!(accepted >= 10, "{accepted}");
    let row = loop {
        let v = next_json(&rx, deadline);
        if v["type"] == "epoch" && v["epoch"] == epoch {
            break v;
        }
    };
    sim.close().await;
    assert_eq!(
        row["accepted"], accepted,
        "every outside submission anchored: {row}"
    );
    assert!(!row["batches"].as_array().unwrap().is_empty(), "{row}");
    let a = c.anchored(market, epoch).await.unwrap();
    assert_eq!(a.batches.len(), row["batches"].as_array().unwrap().len());
    let status = terminate(&mut child.0);
    assert!(status.success(), "{status}");
    let rest: Vec<Value> = rx
        .try_iter()
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let s = of_type(&rest, "summary");
    assert_eq!(s.len(), 1, "{rest:?}");
    assert_eq!(s[0]["resumed"], true);

    // 3. The default command again: the same chain, new epochs, promptly.
    let t0 = Instant::now();
    let o = runner(d, &["--epochs", "1", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    let e = of_type(&lines, "epoch");
    assert!(e[0]["epoch"].as_u64().unwrap() > epoch, "{lines:?}");
    assert_eq!(of_type(&lines, "summary")[0]["resumed"], true);
    eprintln!("resumed default run: {:?}", t0.elapsed());

    // 4. The chain's state lost: the records belong to a chain that is gone.
    std::fs::remove_file(d.join("anvil-state.json")).unwrap();
    let o = runner(d, &["--epochs", "1"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("belongs to another chain") && err.contains("--fresh"),
        "{err}"
    );
    assert!(o.stdout.is_empty() || !String::from_utf8_lossy(&o.stdout).contains("\"epoch\""));
}

/// `sequencer-local --help` names `RPC_URL` but never shows its value (it may carry an API key).
#[test]
fn help_never_shows_the_rpc_url_from_the_environment() {
    let secret = "s3cr3t-k3y-0123";
    let o = Command::new(env!("CARGO_BIN_EXE_sequencer-local"))
        .arg("--help")
        .env(
            "RPC_URL",
            format!("https://user:{secret}@rpc.example/v3/{secret}"),
        )
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("[env: RPC_URL]"), "{text}");
    assert!(text.contains("--json"), "{text}");
    assert!(!text.contains(secret), "{text}");
}
