//! The local runner end to end on a real anvil: the README's run command with small sizes, and a
//! runner killed with SIGKILL mid-run and restarted on the same data directory and chain.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::node_bindings::Anvil;
use alloy::providers::Provider;
use clap::Parser;
use sequencer_chain::{ChainClient, ChainConfig};

fn anvil_bin(test: &str) -> Option<PathBuf> {
    sequencer_testsupport::anvil_bin(test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_epochs_and_every_check_holds() {
    if anvil_bin("runs_epochs_and_every_check_holds").is_none() {
        return;
    }
    small_run(&[]).await;
}

/// Two epochs of 10 slots and 5 projects with `extra` flags; every check must hold.
async fn small_run(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec![
        "sequencer-local",
        "--epochs",
        "2",
        "--slots",
        "10",
        "--projects",
        "5",
    ];
    argv.extend_from_slice(extra);
    argv.extend_from_slice(&["--data-dir", dir.path().to_str().unwrap()]);
    let args = sequencer_runner::Args::parse_from(argv);
    let code = sequencer_runner::run(args).await.expect("runs");
    assert_eq!(code, 0, "every outcome and proof check held");
}

/// Runs the binary until it printed `rows` epoch rows, then SIGKILLs it.
fn run_and_kill(dir: &std::path::Path, rpc: &str, rows: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sequencer-local"))
        .args([
            "--epochs",
            "50",
            "--slots",
            "10",
            "--projects",
            "5",
            "--rpc-url",
            rpc,
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    for line in out.lines() {
        let line = line.unwrap();
        if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.parse::<u64>().is_ok())
        {
            seen += 1;
            if seen >= rows {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no epoch rows in time");
    }
    // A process crash, not a clean stop: in-flight handler calls die mid-way.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runner_resumes_without_loss_or_duplicate_transactions() {
    let Some(bin) = anvil_bin("killed_runner_resumes_without_loss_or_duplicate_transactions")
    else {
        return;
    };
    let anvil = Anvil::new()
        .path(bin)
        .block_time_f64(0.25)
        .try_spawn()
        .unwrap();
    let rpc = anvil.endpoint();
    let dir = tempfile::tempdir().unwrap();
    run_and_kill(dir.path(), &rpc, 1);
    // Restart on the same directory and chain; it must finish what was in flight.
    let args = sequencer_runner::Args::parse_from([
        "sequencer-local",
        "--epochs",
        "2",
        "--slots",
        "10",
        "--projects",
        "5",
        "--rpc-url",
        &rpc,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(sequencer_runner::run(args).await.expect("resumes"), 0);
    let probe = ChainClient::connect(ChainConfig::new(&rpc, sequencer_chain::Address::ZERO))
        .await
        .unwrap();
    let head_at_stop = probe.head().await.unwrap();

    let saved: sequencer_runner::chain::Saved =
        serde_json::from_slice(&std::fs::read(dir.path().join("deployment.json")).unwrap())
            .unwrap();
    let d = saved.deployment;
    let c = ChainClient::connect(ChainConfig::new(&rpc, d.protocol_state))
        .await
        .unwrap();
    let info = c.market_info(d.data_market).await.unwrap();
    let mut batches = 0u64;
    let mut ended = 0u64;
    let mut with_batches = 0u64;
    let mut due_not_ended = Vec::new();
    for e in 1..=info.current_epoch {
        let a = c.anchored(d.data_market, e).await.unwrap();
        batches += a.batches.len() as u64;
        ended += u64::from(a.ended);
        with_batches += u64::from(!a.batches.is_empty());
        // Window, close grace (2) and a margin of 8 blocks for finalize and anchor.
        let due = a
            .release_block
            .unwrap_or(u64::MAX)
            .saturating_add(d.windows.snapshot_blocks + 10);
        // An epoch without a batch is never ended: the contract refuses (`NoBatchSubmitted`).
        if due < head_at_stop && !a.ended && !a.batches.is_empty() {
            due_not_ended.push(e);
        }
    }
    assert!(
        with_batches >= 3,
        "epochs of both runs were anchored ({with_batches})"
    );
    // Every transaction of the sequencer key is one batch or one endBatchSubmissions: nothing was
    // sent twice across the kill.
    let nonce = c
        .provider()
        .get_transaction_count(d.sequencer)
        .await
        .unwrap();
    assert_eq!(nonce, batches + ended, "{batches} batches + {ended} ends");
    // Every epoch whose window closed well before the second run stopped is ended, the one in
    // flight at the kill included.
    assert!(
        due_not_ended.is_empty(),
        "closed but never ended: {due_not_ended:?} (head {head_at_stop})"
    );
}

/// The newest collectors' default: every submission on `/collect` and on gossipsub. Each is
/// counted once (one copy accepted, the other `duplicate`, before the per-slot cap), and the
/// proofs hold for the id the batch holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_count_each_submission_once_and_every_check_holds() {
    if anvil_bin("both_paths_count_each_submission_once_and_every_check_holds").is_none() {
        return;
    }
    small_run(&["--path", "both"]).await;
}
