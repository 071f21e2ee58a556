//! `seqctl chain …`: operator commands against a protocol chain (a local anvil, usually).
//!
//! - `deploy`: deploy ProtocolState, register a data market, grant the roles, assign simulated
//!   slots (keys reproducible: see `sequencer_chain::deploy`), print the addresses.
//! - `release-epochs`: an epoch releaser for local chains (what the protocol's epoch manager
//!   does): release the market's next epoch every N blocks.
//! - `epoch MARKET EPOCH`: what is anchored for an epoch: batches, roots, transactions.
//!
//! Environment fallbacks: `RPC_URL`, `PROTOCOL_STATE_ADDRESS`, `DATA_MARKET_ADDRESS`,
//! `SIGNER_PRIVATE_KEY` (never printed).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sequencer_chain::{
    deploy::{deploy_local, local_market_address, DeployPlan, ANVIL_FIRST_KEY, LOCAL_CHAIN_ID},
    Address, ChainClient, ChainConfig, Windows,
};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ChainCmd {
    /// Deploy ProtocolState, register a market, set roles and assign N simulated slots.
    Deploy {
        /// JSON-RPC endpoint.
        #[arg(long, env = "RPC_URL")]
        rpc_url: String,
        /// Deployer (owner) key; defaults to anvil's first funded account, on chain 31337 only.
        #[arg(long, env = "SIGNER_PRIVATE_KEY", hide_env_values = true)]
        private_key: Option<String>,
        /// Number of simulated slots (ids 1..=N).
        #[arg(long, default_value_t = 10)]
        slots: u64,
        /// Epoch size in blocks.
        #[arg(long, default_value_t = 10)]
        epoch_size: u64,
        /// snapshotSubmissionWindow in blocks.
        #[arg(long, default_value_t = 20)]
        snapshot_window: u64,
        /// batchSubmissionWindow in blocks.
        #[arg(long, default_value_t = 60)]
        batch_window: u64,
        /// Data market address to register (default: the reproducible local market address).
        #[arg(long)]
        market: Option<Address>,
        /// SEQUENCER role (default: the deployer).
        #[arg(long)]
        sequencer: Option<Address>,
        /// EPOCH MANAGER role (default: the deployer).
        #[arg(long)]
        epoch_manager: Option<Address>,
    },
    /// Release the market's next epoch every N blocks (local chains).
    ReleaseEpochs {
        /// JSON-RPC endpoint.
        #[arg(long, env = "RPC_URL")]
        rpc_url: String,
        /// ProtocolState contract.
        #[arg(long, env = "PROTOCOL_STATE_ADDRESS")]
        protocol_state: Address,
        /// Data market.
        #[arg(long, env = "DATA_MARKET_ADDRESS")]
        market: Address,
        /// Epoch manager key; defaults to anvil's first funded account, on chain 31337 only.
        #[arg(long, env = "SIGNER_PRIVATE_KEY", hide_env_values = true)]
        private_key: Option<String>,
        /// Blocks between releases: `10` or `10-blocks`.
        #[arg(long, default_value = "10", value_parser = parse_blocks)]
        every: u64,
        /// Stop after this many releases (default: run until killed).
        #[arg(long)]
        count: Option<u64>,
        /// First block of the first epoch when the market has none yet.
        #[arg(long, default_value_t = 1)]
        first_begin: u64,
        /// Mine an empty block (anvil_mine) when the head did not move for one poll, for nodes
        /// that only mine on transactions.
        #[arg(long)]
        mine_idle: bool,
        /// Head polling interval in milliseconds.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
    },
    /// Show an epoch's anchored batches, roots and transactions.
    Epoch {
        /// Data market address.
        market: Address,
        /// Epoch id.
        epoch: u64,
        /// JSON-RPC endpoint.
        #[arg(long, env = "RPC_URL")]
        rpc_url: String,
        /// ProtocolState contract.
        #[arg(long, env = "PROTOCOL_STATE_ADDRESS")]
        protocol_state: Address,
    },
}

fn parse_blocks(s: &str) -> Result<u64, String> {
    let n = s.strip_suffix("-blocks").unwrap_or(s);
    match n.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!(
            "expected a positive number of blocks (`10` or `10-blocks`), got `{s}`"
        )),
    }
}

/// Runs one `seqctl chain` command on its own tokio runtime.
pub fn run(cmd: ChainCmd, json: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run_async(cmd, json))
}

async fn run_async(cmd: ChainCmd, json: bool) -> Result<()> {
    match cmd {
        ChainCmd::Deploy {
            rpc_url,
            private_key,
            slots,
            epoch_size,
            snapshot_window,
            batch_window,
            market,
            sequencer,
            epoch_manager,
        } => {
            let client = connect(&rpc_url, Address::ZERO, private_key).await?;
            let plan = DeployPlan {
                market: market.unwrap_or_else(local_market_address),
                epoch_size,
                windows: Windows {
                    snapshot_blocks: snapshot_window,
                    batch_blocks: batch_window,
                },
                sequencer,
                epoch_manager,
                slots,
            };
            let (_, d) = deploy_local(&client, &plan).await.context("deploy")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!("CHAIN_ID={}", d.chain_id);
                println!("PROTOCOL_STATE_ADDRESS={}", d.protocol_state);
                println!("DATA_MARKET_ADDRESS={}", d.data_market);
                println!(
                    "# owner {} sequencer {} epoch manager {}",
                    d.owner, d.sequencer, d.epoch_manager
                );
                println!(
                    "# deployed in block {}; epoch size {} blocks, snapshot window {}, batch window {}",
                    d.deploy_block, d.epoch_size, d.windows.snapshot_blocks, d.windows.batch_blocks
                );
                println!("# {} simulated slots (key of slot n = keccak256(\"powerloom-sequencer/sim-snapshotter/<n>\"))", d.slots.len());
                for (slot, addr) in d.slots.iter().take(5) {
                    println!("#   slot {slot}: {addr}");
                }
                if d.slots.len() > 5 {
                    println!("#   … (--json lists all)");
                }
            }
            Ok(())
        }
        ChainCmd::ReleaseEpochs {
            rpc_url,
            protocol_state,
            market,
            private_key,
            every,
            count,
            first_begin,
            mine_idle,
            poll_ms,
        } => {
            let client = connect(&rpc_url, protocol_state, private_key).await?;
            let info = client.market_info(market).await.context("market info")?;
            if !info.registered {
                bail!("market {market} is not registered on {protocol_state}");
            }
            let mut next_begin = if info.current_epoch == 0 {
                first_begin
            } else {
                info.last_epoch_end + 1
            };
            let mut released = 0u64;
            let mut last_release: Option<u64> = None;
            let mut last_head = client.head().await?;
            let poll = Duration::from_millis(poll_ms.max(10));
            loop {
                let head = client.head().await?;
                if last_release.is_none_or(|r| head >= r + every) {
                    let end = next_begin + info.epoch_size - 1;
                    let (tx, epoch) = client
                        .release_epoch(market, next_begin, end)
                        .await
                        .context("releaseEpoch")?;
                    if json {
                        println!(
                            "{}",
                            json!({"epoch_id": epoch, "begin": next_begin, "end": end, "block": tx.block, "tx_hash": tx.tx_hash})
                        );
                    } else {
                        println!(
                            "released epoch {epoch} [{next_begin}, {end}] in block {} ({})",
                            tx.block, tx.tx_hash
                        );
                    }
                    next_begin = end + 1;
                    last_release = Some(tx.block);
                    released += 1;
                    if count.is_some_and(|c| released >= c) {
                        return Ok(());
                    }
                    continue;
                }
                if mine_idle && head == last_head {
                    client.dev_mine(1).await.context("anvil_mine")?;
                }
                last_head = head;
                tokio::time::sleep(poll).await;
            }
        }
        ChainCmd::Epoch {
            market,
            epoch,
            rpc_url,
            protocol_state,
        } => {
            let client = ChainClient::connect(ChainConfig::new(rpc_url, protocol_state)).await?;
            let a = client.anchored(market, epoch).await.context("read epoch")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(());
            }
            match a.release_block {
                None => println!("epoch {epoch} of market {market}: not released"),
                Some(r) => println!(
                    "epoch {epoch} of market {market}: released in block {r} (epoch blocks {}..={}), batch submissions {}",
                    a.begin,
                    a.end,
                    if a.ended { "ended" } else { "open" }
                ),
            }
            for (i, b) in a.batches.iter().enumerate() {
                let tx = b.tx_hash.map_or_else(|| "?".to_string(), |t| t.to_string());
                println!(
                    "batch {}: {} root {} block {} tx {}{}",
                    i + 1,
                    b.batch_cid,
                    b.root,
                    b.block,
                    tx,
                    if b.delayed { " (delayed)" } else { "" }
                );
            }
            Ok(())
        }
    }
}

/// Connects with `key`, or with anvil's first funded key when none is given and the node is a
/// local chain (31337); refuses to guess a key anywhere else.
async fn connect(
    rpc_url: &str,
    protocol_state: Address,
    key: Option<String>,
) -> Result<ChainClient> {
    let mut cfg = ChainConfig::new(rpc_url, protocol_state);
    cfg.confirmations = 0;
    let key = match key {
        Some(k) => k,
        None => {
            let probe = ChainClient::connect(cfg.clone()).await.context("connect")?;
            if probe.chain_id() != LOCAL_CHAIN_ID {
                bail!(
                    "chain {} is not a local chain: pass --private-key or set SIGNER_PRIVATE_KEY",
                    probe.chain_id()
                );
            }
            ANVIL_FIRST_KEY.to_string()
        }
    };
    ChainClient::connect(cfg.with_private_key(key))
        .await
        .context("connect")
}
