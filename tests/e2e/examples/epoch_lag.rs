//! Release lag of the epoch manager over 100 epochs on anvil, with one chain (source = protocol
//! chain) and with two (source and protocol chains with different block times), and the
//! catch-up time after the manager was down for 50 epochs under each policy. Prints markdown.
//!
//! Lag of an epoch: from the source chain reaching `end + finality_offset` to the release mined.
//! In blocks: source head after the receipt minus `end + finality_offset`. In ms: from the first
//! time an independent watcher (polling the source head every 2 ms) saw the due block to the
//! manager seeing the receipt; the manager's own figure (from its first poll that saw it due)
//! is shown too.
//!
//! Run: `source scripts/env.sh && cargo run -p sequencer-e2e --example epoch_lag`
//! (`EPOCHS=100` by default; needs `ANVIL_BIN`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use alloy::{
    hex,
    node_bindings::{Anvil, AnvilInstance},
    primitives::U64,
    providers::Provider,
};
use sequencer_chain::{
    deploy::{deploy_local, DeployPlan},
    ChainClient, ChainConfig, Windows,
};
use sequencer_core::epochs::CatchUp;
use sequencer_handlers::epoch_manager::{EpochManager, EpochManagerConfig, Released};
use sequencer_ports::ChainPort;

type Error = Box<dyn std::error::Error>;
/// (source head, first seen), in head order.
type Seen = Arc<Mutex<Vec<(u64, Instant)>>>;

const EPOCH_SIZE: u64 = 3;
const OFFSET: u64 = 2;
const POLL: Duration = Duration::from_millis(50);

fn spawn(bin: &str, block_time: &str) -> Result<AnvilInstance, Error> {
    Ok(Anvil::new()
        .path(bin)
        .args(["--block-time", block_time])
        .try_spawn()?)
}

async fn setup(protocol: &AnvilInstance) -> Result<(ChainClient, sequencer_chain::Address), Error> {
    let key = format!("0x{}", hex::encode(protocol.keys()[0].to_bytes()));
    let client = ChainClient::connect(
        ChainConfig::new(protocol.endpoint(), Default::default()).with_private_key(key),
    )
    .await?;
    let plan = DeployPlan {
        slots: 1,
        epoch_size: EPOCH_SIZE,
        windows: Windows {
            snapshot_blocks: 20,
            batch_blocks: 60,
        },
        ..DeployPlan::default()
    };
    let (c, d) = deploy_local(&client, &plan).await?;
    Ok((c, d.data_market))
}

fn cfg(
    market: sequencer_chain::Address,
    first_begin: u64,
    catch_up: CatchUp,
) -> EpochManagerConfig {
    EpochManagerConfig {
        finality_offset: OFFSET,
        poll_interval: POLL,
        first_begin: Some(first_begin),
        catch_up,
        ..EpochManagerConfig::new(market)
    }
}

/// Watches the source head every 2 ms; records when each new head was first seen.
fn watch(source: ChainClient) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(h) = source.provider().get_block_number().await {
                let now = Instant::now();
                if let Ok(mut v) = s.lock() {
                    if v.last().is_none_or(|(l, _)| h > *l) {
                        v.push((h, now));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    (seen, task)
}

fn pct(v: &mut [u64], q: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

struct LagRow {
    blocks_med: u64,
    blocks_max: u64,
    ms_med: u64,
    ms_max: u64,
    own_ms_med: u64,
    drift: i64,
}

async fn lag_run(
    protocol: &AnvilInstance,
    source: Option<&AnvilInstance>,
    epochs: usize,
) -> Result<LagRow, Error> {
    let (client, market) = setup(protocol).await?;
    let source_client = match source {
        Some(s) => {
            Some(ChainClient::connect(ChainConfig::new(s.endpoint(), Default::default())).await?)
        }
        None => None,
    };
    let src = source_client.clone().unwrap_or_else(|| client.clone());
    let first = src.head().await? + 1;
    let (seen, watcher) = watch(src.clone());
    let mut m = EpochManager::new(
        Arc::new(client),
        source_client.map(|s| Arc::new(s) as Arc<dyn ChainPort>),
        cfg(market, first, CatchUp::default()),
    )
    .await?;
    let mut released: Vec<Released> = Vec::new();
    while released.len() < epochs {
        let r = m.step_at_most((epochs - released.len()) as u64).await?;
        released.extend(r.released);
        tokio::time::sleep(POLL).await;
    }
    watcher.abort();
    let seen = seen.lock().map_err(|_| "watcher lock")?.clone();
    let mut blocks: Vec<u64> = released.iter().map(|r| r.lag.blocks).collect();
    let mut own: Vec<u64> = released.iter().map(|r| r.lag.ms).collect();
    let mut ms: Vec<u64> = released
        .iter()
        .filter_map(|r| {
            let due_seen = seen.iter().find(|(h, _)| *h >= r.due_at)?.1;
            let mined = r.mined_at?;
            Some(mined.saturating_duration_since(due_seen).as_millis() as u64)
        })
        .collect();
    // Drift: lag (blocks) of the last 10 minus the first 10, medians.
    let first10 = pct(&mut blocks[..10].to_vec(), 0.5) as i64;
    let last10 = pct(&mut blocks[blocks.len() - 10..].to_vec(), 0.5) as i64;
    Ok(LagRow {
        blocks_med: pct(&mut blocks, 0.5),
        blocks_max: pct(&mut blocks, 1.0),
        ms_med: pct(&mut ms, 0.5),
        ms_max: pct(&mut ms, 1.0),
        own_ms_med: pct(&mut own, 0.5),
        drift: last10 - first10,
    })
}

struct CatchUpRow {
    seconds: f64,
    releases: u64,
    skipped: u64,
    transactions: u64,
}

/// Releases one epoch, stops for 50 epochs (mined at once), then runs until no epoch is due.
async fn catch_up_run(bin: &str, policy: CatchUp) -> Result<CatchUpRow, Error> {
    let node = spawn(bin, "0.1")?;
    let (client, market) = setup(&node).await?;
    let first = client.head().await? + 1;
    let mut m =
        EpochManager::new(Arc::new(client.clone()), None, cfg(market, first, policy)).await?;
    while m.step().await?.released.is_empty() {
        tokio::time::sleep(POLL).await;
    }
    let from = client.signer_address().ok_or("signer")?;
    let nonce0 = client.provider().get_transaction_count(from).await?;
    // Down for 50 epochs: the chain goes on (100 ms blocks) and 150 blocks appear at once.
    client
        .provider()
        .raw_request::<_, serde_json::Value>("anvil_mine".into(), (U64::from(50 * EPOCH_SIZE),))
        .await?;
    let t = Instant::now();
    let mut m =
        EpochManager::new(Arc::new(client.clone()), None, cfg(market, first, policy)).await?;
    loop {
        let r = m.step().await?;
        if r.backlog == 0 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let seconds = t.elapsed().as_secs_f64();
    let nonce1 = client.provider().get_transaction_count(from).await?;
    let s = m.stats();
    Ok(CatchUpRow {
        seconds,
        releases: s.released,
        skipped: s.skipped,
        transactions: nonce1 - nonce0,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let epochs: usize = std::env::var("EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(20);
    let bin =
        std::env::var("ANVIL_BIN").map_err(|_| "ANVIL_BIN is not set (source scripts/env.sh)")?;

    println!("epoch size {EPOCH_SIZE} blocks, finality offset {OFFSET}, poll {} ms, {epochs} epochs, default client config\n", POLL.as_millis());
    println!("| chains | block time source / protocol | lag blocks median | max | lag ms median | max | manager's own ms median | drift (last 10 − first 10, blocks) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let one = spawn(&bin, "0.1")?;
    let r = lag_run(&one, None, epochs).await?;
    println!(
        "| one | 100 ms | {} | {} | {} | {} | {} | {} |",
        r.blocks_med, r.blocks_max, r.ms_med, r.ms_max, r.own_ms_med, r.drift
    );
    drop(one);
    let source = spawn(&bin, "0.1")?;
    let protocol = spawn(&bin, "0.25")?;
    let r = lag_run(&protocol, Some(&source), epochs).await?;
    println!(
        "| two | 100 ms / 250 ms | {} | {} | {} | {} | {} | {} |",
        r.blocks_med, r.blocks_max, r.ms_med, r.ms_max, r.own_ms_med, r.drift
    );
    drop((source, protocol));

    println!("\ncatch-up after 50 missed epochs (100 ms blocks, the chain keeps producing; until no epoch is due):\n");
    println!("| policy | time | releases | epochs skipped | transactions |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, policy) in [
        ("in order, 5/s (default)", CatchUp::default()),
        ("in order, 20/s", CatchUp::InOrder { max_per_sec: 20 }),
        ("skip to head", CatchUp::SkipToHead { max_backlog: 1 }),
    ] {
        let r = catch_up_run(&bin, policy).await?;
        println!(
            "| {name} | {:.2} s | {} | {} | {} |",
            r.seconds, r.releases, r.skipped, r.transactions
        );
    }
    Ok(())
}
