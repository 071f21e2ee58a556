//! Gas per `submitSubmissionBatch` for 1, 10, 50 and 100 projects, and submit-to-receipt latency
//! of `ChainClient::submit_batch` (existence check, estimate, sign, send, receipt) on a local
//! anvil (automine). Prints a markdown table, then `releaseEpoch` gas (an ordinary release and
//! one that starts a day: the market has 5 epochs a day) and `updateRewards` gas per slot count.
//!
//! Run: `source scripts/env.sh && cargo run -p sequencer-chain --example gas_report`
//! (`RUNS=9` by default; needs `ANVIL_BIN`).

use std::time::{Duration, Instant};

use alloy::{hex, node_bindings::Anvil, primitives::B256, sol_types::SolCall};
use sequencer_chain::{
    bindings::ProtocolState,
    deploy::{deploy_local, DeployPlan},
    ChainClient, ChainConfig, SubmitOutcome, Windows,
};

const SIZES: [usize; 4] = [1, 10, 50, 100];

fn project_id(run: usize, i: usize) -> String {
    // Shaped like real project ids: aggregate_pairContract_24h_trade_volume:0x<40 hex>:UNISWAPV2
    format!("aggregate_pairContract_24h_trade_volume:0x{run:08x}{i:032x}:UNISWAPV2")
}

fn snapshot_cid(run: usize, i: usize) -> String {
    // 59 characters like a CIDv1 raw sha2-256 (bafkrei…).
    format!("bafkrei{:052x}", (run as u128) << 64 | i as u128)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    let bin =
        std::env::var("ANVIL_BIN").map_err(|_| "ANVIL_BIN is not set (source scripts/env.sh)")?;
    let anvil = Anvil::new().path(bin).try_spawn()?;
    let key = format!("0x{}", hex::encode(anvil.keys()[0].to_bytes()));
    let cfg = ChainConfig::new(anvil.endpoint(), Default::default()).with_private_key(key);
    let client = ChainClient::connect(cfg).await?;
    let plan = DeployPlan {
        slots: 1,
        windows: Windows {
            snapshot_blocks: 20,
            batch_blocks: 1_000_000,
        },
        // 5 epochs a day: every fifth release also starts a day.
        day_size: 5 * 10 * sequencer_chain::market::TIME_SCALE,
        ..DeployPlan::default()
    };
    let (c, d) = deploy_local(&client, &plan).await?;
    let market = d.data_market;

    println!("| projects | calldata bytes | gas used (median) | gas per project | submit→receipt median | min | max |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut begin = 1u64;
    let mut run_id = 0usize;
    let mut release_gas = Vec::new();
    let mut day_start_gas = Vec::new();
    let mut end_gas = Vec::new();
    for n in SIZES {
        let mut gas = Vec::new();
        let mut lat = Vec::new();
        let mut calldata = 0;
        for _ in 0..runs {
            run_id += 1;
            let (rel, epoch) = c
                .release_epoch(market, begin, begin + plan.epoch_size - 1)
                .await?;
            if epoch > 1 && (epoch - 1) % 5 == 0 {
                day_start_gas.push(rel.gas_used);
            } else if epoch > 1 {
                release_gas.push(rel.gas_used);
            }
            begin += plan.epoch_size;
            let pids: Vec<String> = (0..n).map(|i| project_id(run_id, i)).collect();
            let cids: Vec<String> = (0..n).map(|i| snapshot_cid(run_id, i)).collect();
            let batch_cid = snapshot_cid(run_id, 1 << 20);
            calldata = ProtocolState::submitSubmissionBatchCall {
                dataMarket: market,
                batchCid: batch_cid.clone(),
                epochId: alloy::primitives::U256::from(epoch),
                projectIds: pids.clone(),
                snapshotCids: cids.clone(),
                finalizedCidsRootHash: B256::repeat_byte(1),
            }
            .abi_encode()
            .len();
            let t = Instant::now();
            let out = c
                .submit_batch(
                    market,
                    epoch,
                    &batch_cid,
                    &pids,
                    &cids,
                    B256::repeat_byte(1),
                )
                .await?;
            lat.push(t.elapsed());
            match out {
                SubmitOutcome::Anchored { gas_used, .. } => gas.push(gas_used),
                other => return Err(format!("unexpected {other:?}").into()),
            }
            if let sequencer_chain::EndOutcome::Ended { tx_hash, .. } =
                c.end_batch_submissions(market, epoch).await?
            {
                if let Some(r) =
                    alloy::providers::Provider::get_transaction_receipt(c.provider(), tx_hash)
                        .await?
                {
                    end_gas.push(alloy::network::ReceiptResponse::gas_used(&r));
                }
            }
        }
        gas.sort_unstable();
        let g = gas[gas.len() / 2];
        let (min, max) = (
            lat.iter().min().copied().unwrap_or_default(),
            lat.iter().max().copied().unwrap_or_default(),
        );
        let med = median(&mut lat);
        println!(
            "| {n} | {calldata} | {g} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            g / n as u64,
            med.as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    let med = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    println!();
    println!(
        "releaseEpoch: {} gas (median of {}), {} gas when it starts a day (median of {}); endBatchSubmissions: {} gas (median); {runs} runs per size.",
        med(release_gas.clone()),
        release_gas.len(),
        med(day_start_gas.clone()),
        day_start_gas.len(),
        med(end_gas)
    );
    // updateRewards for a finished day: N consecutive slots, every other one at the quota.
    println!();
    println!("| updateRewards slots | gas used | gas per slot |");
    println!("| ---: | ---: | ---: |");
    let day = c.day_counter(market).await? - 1;
    let mut first = 1u64;
    for n in [1u64, 100, 250] {
        let counts: Vec<sequencer_chain::SlotCount> = (first..first + n)
            .map(|slot| sequencer_chain::SlotCount {
                slot,
                submissions: if slot % 2 == 0 { 1_000 } else { 10 },
            })
            .collect();
        first += n;
        let out = c.update_rewards(market, day, &counts, 0).await?;
        let gas: u64 = out.txs.iter().map(|t| t.gas_used).sum();
        println!("| {n} | {gas} | {} |", gas / n);
    }
    Ok(())
}
