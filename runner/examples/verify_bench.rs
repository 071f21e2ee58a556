//! Verify benchmark: the `verify` handler on whole SQS batches, against the cost of signature
//! recovery, and the state-store requests it spends per accepted submission.
//!
//! One epoch of `--projects` P × 5 snapshotters (every slot at its cap of 2), every submission a
//! real signed `/collect` message, fed to `verify::handle` in SQS events of `--batch` records
//! (the Terraform module's batch size, 100), as Lambda's event source mapping delivers them:
//!
//! - `raw_recover_per_core`: `Verifier::recover` over the same submissions on one thread (the
//!   physical limit of one core);
//! - `verify_per_core`: the handler on the embedded adapters (SQLite, in-memory chain) on a
//!   single-threaded runtime with one recovery thread (`VERIFY_THREADS=1`);
//! - `verify_all_cores`: the same with every core (the runtime's workers and recovery threads);
//! - `--emulators`: the handler on DynamoDB Local (tables from `localstack/resources.py` under a
//!   fresh prefix) with `--inflight` invocations at once, and DynamoDB requests per accepted
//!   submission counted at the adapter.
//!
//! ```sh
//! source scripts/env.sh
//! cargo run --release -p sequencer-runner --example verify_bench -- --projects 1000
//! cargo run --release -p sequencer-runner --example verify_bench -- --projects 1000 --emulators
//! ```
//! Prints a table and a last line of JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use sequencer_core::collect::CollectMessage;
use sequencer_embedded::{BlockDir, Db, QueueOptions, SqliteQueue, SqliteState};
use sequencer_handlers::{tick, verify, Pipeline, PipelineConfig, Ports};
use sequencer_ports::{Queue, StateStore};
use sequencer_testsupport::bench::{signed_epoch, sqs_events, SignedEpoch};
use sequencer_testsupport::MetricsProbe;

const SNAPSHOTTERS: u64 = 5;

struct Args {
    projects: u64,
    batch: usize,
    emulators: bool,
    inflight: usize,
}

fn args() -> Args {
    let mut a = Args {
        projects: 1000,
        batch: 100,
        emulators: false,
        inflight: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || {
            it.next()
                .expect("a value")
                .parse::<u64>()
                .expect("a number")
        };
        match k.as_str() {
            "--projects" => a.projects = v(),
            "--batch" => a.batch = v() as usize,
            "--inflight" => a.inflight = v() as usize,
            "--emulators" => a.emulators = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn pipeline(
    e: &SignedEpoch,
    state: Arc<dyn StateStore>,
    dir: &std::path::Path,
) -> (Arc<Pipeline>, MetricsProbe) {
    let db = Db::open(&dir.join("queues.sqlite")).unwrap();
    let q = |n: &str| -> Arc<dyn Queue> {
        Arc::new(SqliteQueue::new(
            db.clone(),
            n,
            QueueOptions {
                dlq: None,
                ..QueueOptions::default()
            },
        ))
    };
    let ports = Ports {
        state,
        content: Arc::new(BlockDir::new(dir.join("blocks"))),
        chain: e.chain.clone(),
        finalize_queue: q("finalize"),
        anchor_queue: q("anchor.fifo"),
        submissions_dlq: q("submissions-dlq"),
    };
    let mut config = PipelineConfig::new(e.market, e.domain.verifying_contract, 31337);
    config.max_per_slot = 2;
    let (probe, recorder) = MetricsProbe::new(e.market);
    (
        Arc::new(Pipeline::new(ports, config).with_recorder(recorder)),
        probe,
    )
}

/// Verifies every body through the handler, `inflight` events at once; returns subs/s.
async fn run_verify(
    p: &Arc<Pipeline>,
    probe: &MetricsProbe,
    bodies: &[String],
    batch: usize,
    inflight: usize,
) -> f64 {
    tick::step(p).await.unwrap();
    let evs = sqs_events(bodies, batch);
    let t = Instant::now();
    for group in evs.chunks(inflight.max(1)) {
        let outs = futures::future::join_all(
            group
                .iter()
                .cloned()
                .map(|ev| async move { verify::handle(p, ev).await }),
        )
        .await;
        for o in outs {
            assert!(o.batch_item_failures.is_empty(), "no failures");
        }
    }
    let rate = bodies.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(
        probe.counter(&sequencer_handlers::metrics::VERIFY_ACCEPTED, []),
        bodies.len() as u64,
        "every submission accepted"
    );
    rate
}

fn main() {
    let a = args();
    let e = signed_epoch(a.projects, SNAPSHOTTERS);
    let n = e.bodies.len();

    // The limit: recovery alone, one thread.
    let subs: Vec<_> = e
        .bodies
        .iter()
        .map(|b| CollectMessage::parse(b.as_bytes()).unwrap().submission)
        .collect();
    let verifier = sequencer_core::eip712::Verifier::new(e.domain);
    let t = Instant::now();
    for s in &subs {
        std::hint::black_box(verifier.recover(s).unwrap());
    }
    let raw = n as f64 / t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let one_core = {
        std::env::set_var("VERIFY_THREADS", "1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = Db::open(&dir.path().join("one.sqlite")).unwrap();
        let (p, probe) = pipeline(&e, Arc::new(SqliteState::new(db)), &dir.path().join("one"));
        rt.block_on(run_verify(&p, &probe, &e.bodies, a.batch, 1))
    };
    let all_cores = {
        std::env::remove_var("VERIFY_THREADS");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = Db::open(&dir.path().join("all.sqlite")).unwrap();
        let (p, probe) = pipeline(&e, Arc::new(SqliteState::new(db)), &dir.path().join("all"));
        rt.block_on(run_verify(&p, &probe, &e.bodies, a.batch, 1))
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "verify, {n} submissions ({} projects × {SNAPSHOTTERS}), SQS batches of {}, {cores} cores\n",
        a.projects, a.batch
    );
    println!("| measure | rate | ratio |");
    println!("|---|---:|---:|");
    println!("| raw recovery, one core | {raw:.0} /s | 1.00 × |");
    println!(
        "| verify (embedded), one core | {one_core:.0} /s | {:.2} × raw |",
        one_core / raw
    );
    println!(
        "| verify (embedded), all cores | {all_cores:.0} /s | {:.2} × one core |",
        all_cores / one_core
    );

    let mut emu_rate = None;
    let mut per_sub = None;
    if a.emulators {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let prefix = sequencer_testsupport::net::unique("vbench");
        sequencer_testsupport::create_resources(&prefix).expect("tables on the emulators");
        let store = rt.block_on(async { sequencer_aws::DynamoStore::from_env(prefix).await });
        let counts = store.clone();
        let (p, probe) = pipeline(&e, Arc::new(store), &dir.path().join("emu"));
        let rate = rt.block_on(run_verify(&p, &probe, &e.bodies, a.batch, a.inflight));
        let requests = counts.requests().snapshot();
        let total: u64 = requests.values().sum();
        let r = total as f64 / n as f64;
        println!(
            "| verify (DynamoDB Local, {} invocations at once) | {rate:.0} /s | {r:.2} requests / accepted submission |",
            a.inflight
        );
        println!("\nDynamoDB requests by operation: {requests:?}");
        emu_rate = Some(rate);
        per_sub = Some(r);
    }
    println!(
        "{}",
        serde_json::json!({
            "submissions": n,
            "batch": a.batch,
            "raw_recover_per_core": raw.round(),
            "verify_per_core": one_core.round(),
            "verify_all_cores": all_cores.round(),
            "verify_emulators": emu_rate.map(f64::round),
            "ddb_requests_per_submission": per_sub,
        })
    );
}
