//! Pipeline benchmark: verify throughput per core, and window close → last batch anchored,
//! split by stage, for P projects × 5 snapshotters (3 agree, 2 disagree), on
//!
//! - `embedded`: SQLite state and queues, blockstore directory, the in-memory chain
//!   (`sequencer_testsupport::MemChain`: anchoring costs nothing, so the figure is the
//!   sequencer's own work);
//! - `embedded+anvil`: the same, anchoring on a real anvil (automine) with the chain client;
//! - `emulators`: SQS (LocalStack), DynamoDB Local and js-ipfs, chain in memory.
//!
//! ```sh
//! source scripts/env.sh   # ANVIL_BIN; for --emulators also the running emulators and IPFS
//! cargo run --release -p sequencer-runner --example pipeline_bench -- --projects 1000,10000 --runs 3
//! cargo run --release -p sequencer-runner --example pipeline_bench -- --projects 1000 --runs 1 --backend emulators
//! ```
//! Prints a Markdown table: medians over `--runs` (each run a fresh epoch and store).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sequencer_chain::deploy::{deploy_local, DeployPlan};
use sequencer_chain::{ChainClient, ChainConfig, Windows};
use sequencer_core::eip712::Domain;
use sequencer_core::{devkeys, Address};
use sequencer_embedded::{BlockDir, Db, QueueOptions, SqliteQueue, SqliteState};
use sequencer_handlers::jobs::EpochJob;
use sequencer_handlers::{anchor, finalize, tick, verify};
use sequencer_handlers::{Pipeline, PipelineConfig, Ports};
use sequencer_ports::{ChainPort, Queue};
use sequencer_testsupport::{block_hash_of, signed_message, MemChain};

#[derive(Parser)]
struct Args {
    /// Project counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    projects: Vec<u64>,
    /// Runs per size (medians are quoted).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// embedded, embedded+anvil or emulators.
    #[arg(long, default_value = "embedded")]
    backend: String,
    /// Verify calls in flight (1 = one core's sequential throughput).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
}

const SNAPSHOTTERS: u64 = 5;
const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

#[derive(Default, Clone, Copy)]
struct Sample {
    verify_per_s: f64,
    tick_ms: f64,
    read_ms: f64,
    compute_ms: f64,
    store_ms: f64,
    anchor_ms: f64,
    total_ms: f64,
    batches: u32,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn prefix_resources() -> String {
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let py = std::env::var("LOCALSTACK_PYTHON").expect("LOCALSTACK_PYTHON (source scripts/env.sh)");
    let ok = std::process::Command::new(py)
        .arg("localstack/resources.py")
        .env("SEQ_PREFIX", &prefix)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "resources.py failed");
    prefix
}

async fn one_run(args: &Args, projects: u64) -> Sample {
    let market = devkeys::local_market_address();
    let protocol_state = Address::repeat_byte(0x5a);
    let slots = (projects * SNAPSHOTTERS).div_ceil(2);
    let mem = Arc::new(MemChain::new(
        market,
        Windows {
            snapshot_blocks: 5,
            batch_blocks: 1_000_000,
        },
        slots,
    ));
    let dir = std::env::temp_dir().join(format!("seq-bench-{}", uuid::Uuid::new_v4().simple()));
    let mut config = PipelineConfig::new(market, protocol_state, 31337);
    config.max_per_slot = 2;
    let (ports, finalize_q, anchor_q): (Ports, Arc<dyn Queue>, Arc<dyn Queue>) =
        if args.backend == "emulators" {
            let prefix = prefix_resources().await;
            std::env::set_var("SEQ_PREFIX", &prefix);
            // The Lambdas' own wiring, over the in-memory chain.
            let (p, q) = sequencer_lambdas::aws_pipeline(mem.clone(), config.clone())
                .await
                .unwrap();
            let f: Arc<dyn Queue> = Arc::new(q.finalize);
            let a: Arc<dyn Queue> = Arc::new(q.anchor);
            (p.ports, f, a)
        } else {
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
            let f = q("finalize", false);
            let a = q("anchor.fifo", true);
            (
                Ports {
                    state: Arc::new(SqliteState::new(db.clone())),
                    content: Arc::new(BlockDir::new(dir.join("blocks"))),
                    chain: mem.clone(),
                    finalize_queue: f.clone(),
                    anchor_queue: a.clone(),
                    submissions_dlq: q("submissions-dlq", false),
                },
                f,
                a,
            )
        };
    let p = Arc::new(Pipeline::new(ports.clone(), config.clone()));

    // One epoch, its submissions signed in advance.
    let (epoch, r) = mem.release();
    mem.mine(1);
    tick::step(&p).await.unwrap();
    let domain = Domain {
        chain_id: 31337,
        verifying_contract: protocol_state,
    };
    let header = block_hash_of(r + 1);
    let mut bodies = Vec::with_capacity((projects * SNAPSHOTTERS) as usize);
    for k in 0..SNAPSHOTTERS {
        for j in 0..projects {
            let slot = (k * projects + j) % slots + 1;
            let cid = if k < 3 { CID_A } else { CID_B };
            let project = format!("aggregate_pairContract_trade_volume:0x{j:040x}:UNISWAPV2");
            bodies.push(
                signed_message(
                    &domain,
                    market,
                    &uuid::Uuid::new_v4(),
                    slot,
                    slot,
                    epoch,
                    &project,
                    cid,
                    header,
                )
                .0,
            );
        }
    }

    // Verify.
    let t = Instant::now();
    let mut accepted = 0usize;
    for chunk in bodies.chunks(args.concurrency.max(1)) {
        let out = futures::future::join_all(chunk.iter().map(|b| verify::verify_body(&p, b))).await;
        accepted += out
            .iter()
            .filter(|v| matches!(v, Ok(verify::Verdict::Accepted)))
            .count();
    }
    let verify_s = t.elapsed().as_secs_f64();
    assert_eq!(accepted, bodies.len(), "every submission accepted");

    // Anchoring chain: the in-memory one, or a real anvil.
    let anchor_p = if args.backend == "embedded+anvil" {
        let bin = std::env::var("ANVIL_BIN").expect("ANVIL_BIN");
        let anvil = alloy_anvil(&bin);
        let key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let mut cfg = ChainConfig::new(&anvil.1, Address::ZERO).with_private_key(key);
        cfg.receipt_poll = Duration::from_millis(5);
        let owner = ChainClient::connect(cfg).await.unwrap();
        let plan = DeployPlan {
            market,
            slots: 0,
            ..DeployPlan::default()
        };
        let (c, _) = deploy_local(&owner, &plan).await.unwrap();
        let head = c.head().await.unwrap();
        c.release_epoch(market, head + 1, head + plan.epoch_size)
            .await
            .unwrap();
        let mut ports = ports.clone();
        ports.chain = Arc::new(c) as Arc<dyn ChainPort>;
        Some((Arc::new(Pipeline::new(ports, config.clone())), anvil.0))
    } else {
        None
    };

    // Close → finalize → anchor, through the queues.
    mem.mine(10);
    let t0 = Instant::now();
    let closed = tick::step(&p).await.unwrap();
    assert_eq!(closed.closed, vec![epoch]);
    let t1 = Instant::now();
    let job = finalize_q.receive(1, Duration::from_secs(2)).await.unwrap();
    let fr = finalize::run(&p, serde_json::from_str::<EpochJob>(&job[0].body).unwrap())
        .await
        .unwrap();
    finalize_q.ack(&[job[0].receipt.clone()]).await.unwrap();
    let t2 = Instant::now();
    let job = anchor_q.receive(1, Duration::from_secs(2)).await.unwrap();
    let ap = anchor_p
        .as_ref()
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| p.clone());
    anchor::run(&ap, serde_json::from_str::<EpochJob>(&job[0].body).unwrap())
        .await
        .unwrap();
    anchor_q.ack(&[job[0].receipt.clone()]).await.unwrap();
    let t3 = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    Sample {
        verify_per_s: bodies.len() as f64 / verify_s,
        tick_ms: (t1 - t0).as_secs_f64() * 1e3,
        read_ms: fr.read_ms,
        compute_ms: fr.compute_ms,
        store_ms: fr.store_ms,
        anchor_ms: (t3 - t2).as_secs_f64() * 1e3,
        total_ms: (t3 - t0).as_secs_f64() * 1e3,
        batches: fr.batches,
    }
}

fn alloy_anvil(bin: &str) -> (alloy::node_bindings::AnvilInstance, String) {
    let a = alloy::node_bindings::Anvil::new()
        .path(bin)
        .try_spawn()
        .unwrap();
    let url = a.endpoint();
    (a, url)
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "backend `{}`, verify concurrency {}, {} run(s) per size, medians",
        args.backend, args.concurrency, args.runs
    );
    println!("\n| projects × 5 | verify (subs/s) | batches | tick close | finalize read | finalize compute | upload + record | anchor | close → anchored |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &projects in &args.projects {
        let samples: Vec<Sample> = (0..args.runs.max(1))
            .map(|_| rt.block_on(one_run(&args, projects)))
            .collect();
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        println!(
            "| {projects} | {:.0} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | **{:.1} ms** |",
            m(|s| s.verify_per_s),
            samples[0].batches,
            m(|s| s.tick_ms),
            m(|s| s.read_ms),
            m(|s| s.compute_ms),
            m(|s| s.store_ms),
            m(|s| s.anchor_ms),
            m(|s| s.total_ms),
        );
    }
}
