//! Pipeline benchmark, one line per backend: how close verify comes to the cost of signature
//! recovery, and anchoring to the cost of the chain (issue 19).
//!
//! Each run is one epoch of P projects × 5 snapshotters (3 agree, 2 disagree; every slot at its
//! cap of 2), every submission a real signed `/collect` message, and measures on the same machine:
//!
//! - `raw_recover_per_core`: `Verifier::recover` over the epoch's submissions in a tight loop on
//!   one thread: the limit of one core;
//! - `verify_per_core`: the `verify` Lambda handler on SQS events of `--batch` records, one at a
//!   time, on a single-threaded runtime (`VERIFY_THREADS=1`);
//! - `verify_all_cores`: the same on a fresh store with `--tasks` events in flight on a runtime of
//!   `--tasks` worker threads (default: every core);
//! - `ddb_requests_per_submission`: DynamoDB requests of the all-cores verify pass per accepted
//!   submission, counted at the adapter (`emulators` only);
//! - `close_to_anchored_ms`: the tick that closes the window → finalize (read, compute, store) →
//!   anchor, through the queues, split by stage;
//! - `gas_bound_blocks` and `anchor_blocks` (anvil only): the anchoring's gas (every transaction
//!   the sequencer's key sent while `anchor` ran, read back from the chain's receipts) over the
//!   block gas limit, rounded up, and the blocks from the head when anchoring started to the
//!   block of its last receipt.
//!
//! The measuring code drives only the handlers' entry points (`verify::handle`, `tick::step`,
//! `finalize::run`, `anchor::run`) and reads the chain from outside, so it measures whatever
//! verify and anchor do inside.
//!
//! Backends: `embedded` (SQLite state and queues, blockstore directory, the in-memory chain:
//! anchoring costs nothing, so the figure is the sequencer's own work), `embedded+anvil-1s` and
//! `embedded+anvil-2s` (the same, anchoring on an anvil this program spawns with `--block-time 1`
//! or `2`), `emulators` (the Lambdas' own wiring: SQS on LocalStack :4566, DynamoDB Local :8000,
//! js-ipfs :5002, the in-memory chain).
//!
//! ```sh
//! source scripts/env.sh   # ANVIL_BIN, LOCALSTACK_PYTHON; the emulators must be running
//! cargo run --release -p sequencer-runner --example pipeline_bench
//! cargo run -p sequencer-runner --example pipeline_bench -- --projects 50 --backend embedded
//! ```
//! Prints a Markdown table (medians over `--runs`, each target's PASS/MISS beside its figure),
//! then one line of JSON per backend and size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use metrics_util::debugging::DebuggingRecorder;
use sequencer_handlers::metrics::VERIFY_ACCEPTED;
use sequencer_testsupport::MetricsProbe;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::providers::Provider;
use clap::{Parser, ValueEnum};
use sequencer_chain::deploy::{deploy_local, DeployPlan};
use sequencer_chain::{ChainClient, ChainConfig};
use sequencer_core::collect::CollectMessage;
use sequencer_core::eip712::Verifier;
use sequencer_core::Address;
use sequencer_embedded::{BlockDir, Db, QueueOptions, SqliteQueue, SqliteState};
use sequencer_handlers::jobs::EpochJob;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::{anchor, finalize, tick, verify};
use sequencer_handlers::{Pipeline, PipelineConfig, Ports};
use sequencer_ports::{ChainPort, Queue};
use sequencer_testsupport::bench::{signed_epoch, sqs_events, SignedEpoch};

/// Verify rate against signature recovery, and close → anchored against the chain, per backend:
/// a Markdown table with each target's PASS/MISS, then one JSON line per backend and size.
#[derive(Parser)]
#[command(
    after_help = "Build with --release for numbers; `source scripts/env.sh` first (ANVIL_BIN, \
                  LOCALSTACK_PYTHON). The emulators backend needs LocalStack :4566, DynamoDB \
                  Local :8000 and js-ipfs :5002 running."
)]
struct Args {
    /// Project counts (× 5 snapshotters each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    projects: Vec<u64>,
    /// Backends, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "embedded,embedded+anvil-1s,embedded+anvil-2s,emulators"
    )]
    backend: Vec<Backend>,
    /// Runs per backend and size; the table and JSON quote medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Verify events in flight (and runtime worker threads) for the all-cores pass [default: cores].
    #[arg(long)]
    tasks: Option<usize>,
    /// Records per SQS event (the Terraform module's batch size).
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// SQLite, blockstore directory, in-memory chain.
    #[value(name = "embedded")]
    Embedded,
    /// The same, anchoring on anvil `--block-time 1`.
    #[value(name = "embedded+anvil-1s")]
    Anvil1,
    /// The same, anchoring on anvil `--block-time 2`.
    #[value(name = "embedded+anvil-2s")]
    Anvil2,
    /// LocalStack SQS, DynamoDB Local, js-ipfs, in-memory chain.
    #[value(name = "emulators")]
    Emulators,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Anvil1 => "embedded+anvil-1s",
            Backend::Anvil2 => "embedded+anvil-2s",
            Backend::Emulators => "emulators",
        }
    }

    fn block_time(self) -> Option<u64> {
        match self {
            Backend::Anvil1 => Some(1),
            Backend::Anvil2 => Some(2),
            _ => None,
        }
    }

    fn embedded(self) -> bool {
        self != Backend::Emulators
    }
}

const SNAPSHOTTERS: u64 = 5;
/// Anvil's first dev account: deployer, sequencer and so the anchoring's sender.
const ANVIL_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

// Targets of issue 19.
const VERIFY_VS_RAW: f64 = 0.7;
const ALL_VS_ONE: f64 = 1.6;
const DDB_PER_ACCEPTED: f64 = 1.5;
const EMULATORS_VERIFY: f64 = 1000.0;
const CLOSE_TO_ANCHORED_MS: f64 = 500.0;
const CLOSE_TO_ANCHORED_AT: u64 = 10_000;
const EXTRA_BLOCKS: u64 = 2;

/// One run's figures.
#[derive(Default, Clone)]
struct Sample {
    raw: f64,
    verify_one: f64,
    verify_all: f64,
    ddb_per_accepted: Option<f64>,
    tick_ms: f64,
    read_ms: f64,
    compute_ms: f64,
    store_ms: f64,
    anchor_ms: f64,
    total_ms: f64,
    batches: u32,
    chain: Option<ChainCost>,
}

/// What anchoring cost on a real chain, read back from its receipts.
#[derive(Clone, Copy)]
struct ChainCost {
    gas: u64,
    block_gas_limit: u64,
    txs: u64,
    /// Blocks from the head when anchoring started to the last receipt's block.
    blocks: u64,
}

impl ChainCost {
    fn bound(&self) -> u64 {
        self.gas.div_ceil(self.block_gas_limit.max(1))
    }
}

/// The pipeline of one pass on a fresh store, its finalize and anchor queues, and (emulators)
/// the DynamoDB adapter whose requests are counted.
/// Every pipeline of this program records its metrics here (one market); verify's accepted
/// count is read back from it.
static RECORDER: std::sync::LazyLock<Arc<DebuggingRecorder>> =
    std::sync::LazyLock::new(|| Arc::new(DebuggingRecorder::new()));

struct Wired {
    p: Arc<Pipeline>,
    finalize_q: Arc<dyn Queue>,
    anchor_q: Arc<dyn Queue>,
    dynamo: Option<sequencer_aws::DynamoStore>,
}

async fn wire(backend: Backend, e: &SignedEpoch, dir: &Path) -> Wired {
    let mut config = PipelineConfig::new(e.market, e.domain.verifying_contract, 31337);
    config.max_per_slot = 2;
    if backend == Backend::Emulators {
        let prefix = sequencer_testsupport::net::unique("pbench");
        sequencer_testsupport::create_resources(&prefix).expect("resources on the emulators");
        std::env::set_var("SEQ_PREFIX", &prefix);
        // The Lambdas' own wiring, over the in-memory chain; the state store replaced by one
        // on the same tables whose request counter this program holds.
        let (p, q) = sequencer_lambdas::aws_pipeline(e.chain.clone(), config.clone())
            .await
            .expect("the AWS wiring");
        let dynamo = sequencer_aws::DynamoStore::from_env(prefix).await;
        let mut ports = p.ports;
        ports.state = Arc::new(dynamo.clone());
        return Wired {
            p: Arc::new(Pipeline::new(ports, config).with_recorder(RECORDER.clone())),
            finalize_q: Arc::new(q.finalize),
            anchor_q: Arc::new(q.anchor),
            dynamo: Some(dynamo),
        };
    }
    std::fs::create_dir_all(dir).unwrap();
    let db = Db::open(&dir.join("bench.sqlite")).unwrap();
    let q = |n: &str, fifo| -> Arc<dyn Queue> {
        Arc::new(SqliteQueue::new(
            db.clone(),
            n,
            QueueOptions {
                fifo,
                dlq: Some(format!("{n}-dlq")),
                ..QueueOptions::default()
            },
        ))
    };
    let (finalize_q, anchor_q) = (q("finalize", false), q("anchor.fifo", true));
    let ports = Ports {
        state: Arc::new(SqliteState::new(db.clone())),
        content: Arc::new(BlockDir::new(dir.join("blocks"))),
        chain: e.chain.clone(),
        finalize_queue: finalize_q.clone(),
        anchor_queue: anchor_q.clone(),
        submissions_dlq: q("submissions-dlq", false),
    };
    Wired {
        p: Arc::new(Pipeline::new(ports, config).with_recorder(RECORDER.clone())),
        finalize_q,
        anchor_q,
        dynamo: None,
    }
}

/// Opens the epoch's window, then verifies every body through the handler with `tasks` events
/// in flight (each task takes the next event when its last one is done); records the handler
/// reports as failed are delivered again, as SQS would. Returns submissions per second.
async fn verify_pass(p: &Arc<Pipeline>, bodies: &[String], batch: usize, tasks: usize) -> f64 {
    tick::step(p).await.expect("tick opens the window");
    let probe = MetricsProbe::of(p.config.market, &RECORDER);
    let before = probe.counter(&VERIFY_ACCEPTED, []);
    let work = Arc::new(Mutex::new(sqs_events(bodies, batch).into_iter()));
    let t = Instant::now();
    let workers: Vec<_> = (0..tasks.max(1))
        .map(|_| {
            let (p, work) = (p.clone(), work.clone());
            tokio::spawn(async move {
                loop {
                    let Some(mut ev) = work.lock().unwrap().next() else {
                        return;
                    };
                    for _attempt in 0..10 {
                        let failed = verify::handle(&p, ev.clone()).await.batch_item_failures;
                        if failed.is_empty() {
                            break;
                        }
                        let ids: Vec<_> = failed.into_iter().map(|f| f.item_identifier).collect();
                        ev.records.retain(|m| {
                            m.message_id
                                .as_ref()
                                .is_some_and(|id| ids.iter().any(|f| f == id))
                        });
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a verify task");
    }
    let rate = bodies.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(
        probe.counter(&VERIFY_ACCEPTED, []) - before,
        bodies.len() as u64,
        "every submission accepted"
    );
    rate
}

/// A spawned anvil with the contract deployed and the epoch released, and the pipeline that
/// anchors on it (the same state and queues as `w`).
struct OnAnvil {
    _anvil: alloy::node_bindings::AnvilInstance,
    client: ChainClient,
    p: Arc<Pipeline>,
}

async fn on_anvil(block_time: u64, w: &Wired, e: &SignedEpoch) -> OnAnvil {
    let bin = std::env::var("ANVIL_BIN").expect("ANVIL_BIN (source scripts/env.sh)");
    let anvil = alloy::node_bindings::Anvil::new()
        .path(bin)
        .block_time(block_time)
        .try_spawn()
        .expect("anvil starts");
    let mut cfg = ChainConfig::new(anvil.endpoint(), Address::ZERO).with_private_key(ANVIL_KEY);
    cfg.receipt_poll = Duration::from_millis(5);
    let owner = ChainClient::connect(cfg).await.unwrap();
    let plan = DeployPlan {
        market: e.market,
        slots: 0,
        ..DeployPlan::default()
    };
    let (client, _) = deploy_local(&owner, &plan).await.expect("deploys");
    let head = client.head().await.unwrap();
    client
        .release_epoch(e.market, head + 1, head + plan.epoch_size)
        .await
        .expect("releases the epoch");
    let mut ports = w.p.ports.clone();
    ports.chain = Arc::new(client.clone()) as Arc<dyn ChainPort>;
    let p = Arc::new(Pipeline::new(ports, w.p.config.clone()).with_recorder(RECORDER.clone()));
    OnAnvil {
        _anvil: anvil,
        client,
        p,
    }
}

/// Every receipt from `sender` in blocks `(from, to]`: gas, count, and the last one's block.
async fn chain_cost(c: &ChainClient, sender: Address, from: u64, to: u64) -> ChainCost {
    let provider = c.provider();
    let (mut gas, mut txs, mut last) = (0u64, 0u64, from);
    let mut per_block = Vec::new();
    for n in from + 1..=to {
        let receipts = provider
            .get_block_receipts(n.into())
            .await
            .unwrap()
            .unwrap_or_default();
        let (mut k, mut g) = (0u64, 0u64);
        for r in receipts.iter().filter(|r| r.from == sender) {
            gas += r.gas_used;
            g += r.gas_used;
            txs += 1;
            k += 1;
            last = n;
        }
        per_block.push(format!("{k}/{:.1}M", g as f64 / 1e6));
    }
    per_block.truncate(usize::try_from(last - from).unwrap_or(0));
    // Where the blocks went: our transactions and their gas in each block after the start.
    eprintln!("anchoring, per block (txs/gas): {}", per_block.join(" "));
    let block = provider
        .get_block_by_number(last.into())
        .await
        .unwrap()
        .expect("the last anchoring block");
    ChainCost {
        gas,
        block_gas_limit: block.header.gas_limit,
        txs,
        blocks: last - from,
    }
}

fn one_run(backend: Backend, projects: u64, args: &Args, tasks: usize) -> Sample {
    let e = signed_epoch(projects, SNAPSHOTTERS);
    let n = e.bodies.len() as f64;
    let mut s = Sample::default();

    // The limit: recovery alone, one thread.
    let subs: Vec<_> = e
        .bodies
        .iter()
        .map(|b| CollectMessage::parse(b.as_bytes()).unwrap().submission)
        .collect();
    let verifier = Verifier::new(e.domain);
    let t = Instant::now();
    for sub in &subs {
        std::hint::black_box(verifier.recover(sub).unwrap());
    }
    s.raw = n / t.elapsed().as_secs_f64();
    drop(subs);

    let dir = tempfile::tempdir().unwrap();
    // One core: a single-threaded runtime, one event at a time.
    std::env::set_var("VERIFY_THREADS", "1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    s.verify_one = rt.block_on(async {
        let w = wire(backend, &e, &dir.path().join("one")).await;
        verify_pass(&w.p, &e.bodies, args.batch, 1).await
    });
    drop(rt);
    std::env::remove_var("VERIFY_THREADS");

    // All cores, on a fresh store; then this epoch is closed, finalized and anchored.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(tasks)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let w = wire(backend, &e, &dir.path().join("all")).await;
        let requests_before = w.dynamo.as_ref().map(|d| d.requests().total());
        s.verify_all = verify_pass(&w.p, &e.bodies, args.batch, tasks).await;
        if let (Some(d), Some(before)) = (&w.dynamo, requests_before) {
            s.ddb_per_accepted = Some((d.requests().total() - before) as f64 / n);
        }
        let anvil = match backend.block_time() {
            Some(bt) => Some(on_anvil(bt, &w, &e).await),
            None => None,
        };
        let anchor_p = anvil.as_ref().map_or_else(|| w.p.clone(), |a| a.p.clone());

        e.chain.mine(10);
        let t0 = Instant::now();
        let closed = tick::step(&w.p).await.unwrap();
        assert_eq!(closed.closed, vec![e.epoch], "the tick closes the epoch");
        let t1 = Instant::now();
        let job = w
            .finalize_q
            .receive(1, Duration::from_secs(2))
            .await
            .unwrap();
        let fr = finalize::run(
            &w.p,
            serde_json::from_str::<EpochJob>(&job[0].body).unwrap(),
        )
        .await
        .unwrap();
        w.finalize_q.ack(&[job[0].receipt.clone()]).await.unwrap();
        let t2 = Instant::now();
        let job = w.anchor_q.receive(1, Duration::from_secs(2)).await.unwrap();
        let head = match &anvil {
            Some(a) => Some(a.client.head().await.unwrap()),
            None => None,
        };
        anchor::run(
            &anchor_p,
            serde_json::from_str::<EpochJob>(&job[0].body).unwrap(),
        )
        .await
        .unwrap();
        w.anchor_q.ack(&[job[0].receipt.clone()]).await.unwrap();
        let t3 = Instant::now();
        let state = w.p.records().epoch(e.epoch).await.unwrap().map(|x| x.state);
        assert_eq!(state, Some(EpochState::Anchored), "the epoch is anchored");
        if let (Some(a), Some(head)) = (&anvil, head) {
            let sender = a.client.signer_address().unwrap();
            let to = a.client.head().await.unwrap();
            s.chain = Some(chain_cost(&a.client, sender, head, to).await);
        }
        s.tick_ms = (t1 - t0).as_secs_f64() * 1e3;
        s.read_ms = fr.read_ms;
        s.compute_ms = fr.compute_ms;
        s.store_ms = fr.store_ms;
        s.anchor_ms = (t3 - t2).as_secs_f64() * 1e3;
        s.total_ms = (t3 - t0).as_secs_f64() * 1e3;
        s.batches = fr.batches;
    });
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// One backend and size: the table row and the JSON line.
fn report(backend: Backend, projects: u64, runs: &[Sample], cores: usize) -> (String, String) {
    let m = |f: fn(&Sample) -> f64| median(runs.iter().map(f).collect());
    let (raw, one, all) = (m(|s| s.raw), m(|s| s.verify_one), m(|s| s.verify_all));
    let total = m(|s| s.total_ms);
    let ddb = runs
        .iter()
        .all(|s| s.ddb_per_accepted.is_some())
        .then(|| m(|s| s.ddb_per_accepted.unwrap_or_default()));
    let chain = runs.iter().all(|s| s.chain.is_some()).then(|| {
        let c = |f: fn(&ChainCost) -> u64| {
            median_u64(runs.iter().map(|s| f(&s.chain.unwrap())).collect())
        };
        ChainCost {
            gas: c(|c| c.gas),
            block_gas_limit: c(|c| c.block_gas_limit),
            txs: c(|c| c.txs),
            blocks: c(|c| c.blocks),
        }
    });

    let mut checks = serde_json::Map::new();
    let mut check = |name: &str, ok: bool| {
        checks.insert(name.into(), ok.into());
        verdict(ok)
    };
    let one_cell = if backend.embedded() {
        let r = one / raw;
        let v = check("verify_per_core_ge_0.7_raw", r >= VERIFY_VS_RAW);
        format!("{one:.0} /s ({r:.2}× raw, ≥ {VERIFY_VS_RAW}: {v})")
    } else {
        format!("{one:.0} /s ({:.2}× raw)", one / raw)
    };
    let all_cell = if backend.embedded() {
        let r = all / one;
        let v = check("verify_all_cores_ge_1.6_per_core", r >= ALL_VS_ONE);
        format!("{all:.0} /s ({r:.2}× one core, ≥ {ALL_VS_ONE}: {v})")
    } else {
        let v = check("verify_emulators_ge_1000", all >= EMULATORS_VERIFY);
        format!(
            "{all:.0} /s ({:.2}× one core; ≥ {EMULATORS_VERIFY:.0} /s: {v})",
            all / one
        )
    };
    let ddb_cell = match ddb {
        Some(r) => {
            let v = check("ddb_requests_per_submission_le_1.5", r <= DDB_PER_ACCEPTED);
            format!("{r:.2} (≤ {DDB_PER_ACCEPTED}: {v})")
        }
        None => "—".into(),
    };
    let total_cell = if backend == Backend::Embedded && projects == CLOSE_TO_ANCHORED_AT {
        let v = check("close_to_anchored_le_500ms", total <= CLOSE_TO_ANCHORED_MS);
        format!("**{total:.1} ms** (≤ {CLOSE_TO_ANCHORED_MS:.0} ms: {v})")
    } else {
        format!("**{total:.1} ms**")
    };
    let (bound_cell, blocks_cell) = match chain {
        Some(c) => {
            let v = check(
                "anchor_blocks_le_gas_bound_plus_2",
                c.blocks <= c.bound() + EXTRA_BLOCKS,
            );
            (
                format!(
                    "{} ({:.1} M gas in {} txs / {:.0} M)",
                    c.bound(),
                    c.gas as f64 / 1e6,
                    c.txs,
                    c.block_gas_limit as f64 / 1e6
                ),
                format!("{} (≤ {}: {v})", c.blocks, c.bound() + EXTRA_BLOCKS),
            )
        }
        None => ("—".into(), "—".into()),
    };
    let row = format!(
        "| {} | {projects} | {raw:.0} /s | {one_cell} | {all_cell} | {ddb_cell} | {total_cell} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {bound_cell} | {blocks_cell} |",
        backend.name(),
        m(|s| s.tick_ms),
        m(|s| s.read_ms),
        m(|s| s.compute_ms),
        m(|s| s.store_ms),
        m(|s| s.anchor_ms),
        runs[0].batches,
    );
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let json = serde_json::json!({
        "backend": backend.name(),
        "projects": projects,
        "snapshotters": SNAPSHOTTERS,
        "submissions": projects * SNAPSHOTTERS,
        "runs": runs.len(),
        "cores": cores,
        "raw_recover_per_core": raw.round(),
        "verify_per_core": one.round(),
        "verify_all_cores": all.round(),
        "ddb_requests_per_submission": ddb.map(|r| (r * 100.0).round() / 100.0),
        "close_to_anchored_ms": round1(total),
        "tick_ms": round1(m(|s| s.tick_ms)),
        "finalize_read_ms": round1(m(|s| s.read_ms)),
        "finalize_compute_ms": round1(m(|s| s.compute_ms)),
        "finalize_store_ms": round1(m(|s| s.store_ms)),
        "anchor_ms": round1(m(|s| s.anchor_ms)),
        "batches": runs[0].batches,
        "anchor_gas": chain.map(|c| c.gas),
        "anchor_txs": chain.map(|c| c.txs),
        "block_gas_limit": chain.map(|c| c.block_gas_limit),
        "gas_bound_blocks": chain.map(|c| c.bound()),
        "anchor_blocks": chain.map(|c| c.blocks),
        "checks": checks,
    });
    (row, json.to_string())
}

fn main() {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tasks = args.tasks.unwrap_or(cores).max(1);
    println!(
        "{} project count(s) × {SNAPSHOTTERS} snapshotters, {} run(s) each (medians), SQS events of {}, {cores} cores, all-cores pass with {tasks} tasks\n",
        args.projects.len(),
        args.runs.max(1),
        args.batch
    );
    println!("| backend | projects × 5 | raw recovery, one core | verify, one core | verify, all cores | DynamoDB requests / accepted | close → anchored | tick close | finalize read | finalize compute | upload + record | anchor | batches | gas bound (blocks) | anchor blocks |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut lines = Vec::new();
    for &backend in &args.backend {
        for &projects in &args.projects {
            let runs: Vec<Sample> = (0..args.runs.max(1))
                .map(|_| one_run(backend, projects, &args, tasks))
                .collect();
            let (row, json) = report(backend, projects, &runs, cores);
            println!("{row}");
            lines.push(json);
        }
    }
    println!();
    for l in lines {
        println!("{l}");
    }
}
