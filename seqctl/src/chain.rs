//! `seqctl chain …`: operator commands against a protocol chain (a local anvil, usually).
//!
//! - `deploy`: deploy ProtocolState, register a data market, grant the roles, assign simulated
//!   slots (keys reproducible: see `sequencer_chain::deploy`), print the addresses. The simulated
//!   keys are public, so slots are assigned to them only on a local development chain (chain id
//!   31337 or 1337, `sequencer_chain::deploy::is_local_chain`); elsewhere `--slots` must be 0.
//!   There is no override.
//! - `release-epochs`: the epoch manager (`sequencer_handlers::epoch_manager`, over the chain
//!   adapter): release each epoch of the market once its source chain's head reaches
//!   `end + finality_offset`, contiguous, exactly once, catching up in order or by an on-chain
//!   skip; each day a release started is printed.
//! - `epoch MARKET EPOCH`: what is anchored for an epoch: batches, roots, transactions.
//!
//! Environment fallbacks: `RPC_URL`, `SOURCE_RPC_URL`, `PROTOCOL_STATE_ADDRESS`,
//! `DATA_MARKET_ADDRESS` (all of `crate::env`; URLs never shown in `--help`).
//!
//! Signing key of `deploy` and `release-epochs` ([`KeyArgs`]), never printed, first found of:
//! `--private-key-file PATH` or `--private-key HEX` (one of the two; the flag is visible in the
//! process list and shell history, so it gets a warning), then `SEQCTL_PRIVATE_KEY`, then
//! `SEQCTL_PRIVATE_KEY_FILE`, then `SIGNER_PRIVATE_KEY` (what older scripts set). Without any,
//! anvil's first funded account, on a local development chain only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sequencer_chain::{
    deploy::{
        address_of_key, deploy_local, is_local_chain, local_market_address, DeployPlan,
        ANVIL_FIRST_KEY,
    },
    Address, ChainClient, ChainConfig, Windows,
};
use sequencer_core::epochs::CatchUp;
use sequencer_handlers::epoch_manager::{EpochManager, EpochManagerConfig};
use sequencer_ports::ChainPort;
use serde_json::json;

use crate::env;

#[derive(Debug, Subcommand)]
pub enum ChainCmd {
    /// Deploy ProtocolState, register a market, set roles and assign N simulated slots.
    Deploy {
        /// JSON-RPC endpoint (never printed: it may carry an API key).
        #[arg(long, env = env::RPC_URL, hide_env_values = true)]
        rpc_url: String,
        /// Deployer (owner) key; defaults to anvil's first funded account, on a local chain only.
        #[command(flatten)]
        key: KeyArgs,
        /// Number of simulated slots (ids 1..=N). Their keys are public: more than 0 only on a
        /// local development chain (chain id 31337 or 1337).
        #[arg(long, default_value_t = 10)]
        slots: u64,
        /// Epoch size in blocks.
        #[arg(long, default_value_t = 10)]
        epoch_size: u64,
        /// snapshotSubmissionWindow in protocol-chain blocks. Default: what unmodified
        /// snapshotter nodes need at this chain's block time (measured, or --block-ms):
        /// ceil(50 s / block time) + 2, e.g. 27 blocks at 2 s, 52 at 1 s, 7 at 12 s
        /// (sequencer_chain::market::recommended_snapshot_window); 20 when it cannot be measured.
        /// A shorter window is registered as given, with a warning.
        #[arg(long)]
        snapshot_window: Option<u64>,
        /// Protocol chain block time in milliseconds for the window default and check (default:
        /// measured from the last 100 blocks).
        #[arg(long)]
        block_ms: Option<u64>,
        /// SOURCE_CHAIN_ID of the market (default: this chain's id).
        #[arg(long)]
        source_chain_id: Option<u64>,
        /// SOURCE_CHAIN_BLOCK_TIME in seconds (decimals allowed; stored × 10 000).
        #[arg(long, default_value_t = 1.0)]
        source_block_time: f64,
        /// DAY_SIZE in seconds (stored × 10 000); epochsInADay = day / (block time × epoch size).
        #[arg(long, default_value_t = 86_400.0)]
        day_seconds: f64,
        /// dailySnapshotQuota: submissions a slot needs per day for DailyTaskCompletedEvent.
        #[arg(long, default_value_t = sequencer_chain::market::POWERLOOM_DAILY_QUOTA)]
        daily_quota: u64,
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
    /// Release the market's epochs as its source chain produces them: epoch [b, b+size-1] once
    /// the source head reaches its end + the finality offset (sequencer_handlers::epoch_manager);
    /// prints each release and each day a release started.
    ReleaseEpochs {
        /// JSON-RPC endpoint of the protocol chain (never printed: it may carry an API key).
        #[arg(long, env = env::RPC_URL, hide_env_values = true)]
        rpc_url: String,
        /// ProtocolState contract.
        #[arg(long, env = env::PROTOCOL_STATE_ADDRESS)]
        protocol_state: Address,
        /// Data market.
        #[arg(long, env = env::DATA_MARKET_ADDRESS)]
        market: Address,
        /// Epoch manager key; defaults to anvil's first funded account, on a local chain only.
        #[command(flatten)]
        key: KeyArgs,
        /// Deprecated, kept for old scripts: epochs are the market's epochSize blocks and are
        /// released when due (end + finality offset), never on a timer of their own; a value
        /// other than the epoch size only gets a warning.
        #[arg(long, value_parser = parse_blocks)]
        every: Option<u64>,
        /// Stop after this many releases (default: run until killed).
        #[arg(long)]
        count: Option<u64>,
        /// First block of the first epoch when the market has none yet.
        #[arg(long, default_value_t = 1)]
        first_begin: u64,
        /// Source chain blocks past an epoch's end before it is released.
        #[arg(long, default_value_t = EpochManagerConfig::DEFAULT_FINALITY_OFFSET)]
        finality_offset: u64,
        /// JSON-RPC endpoint of the market's source chain (default: the protocol chain).
        #[arg(long, env = env::SOURCE_RPC_URL, hide_env_values = true)]
        source_rpc_url: Option<String>,
        /// After downtime: release missed epochs in order (rate-bounded) or skip them on chain.
        #[arg(long, value_enum, default_value_t = CatchUpArg::InOrder)]
        catch_up: CatchUpArg,
        /// In-order catch-up rate, releases per second.
        #[arg(long, default_value_t = CatchUp::DEFAULT_MAX_PER_SEC)]
        max_per_sec: u32,
        /// Standby delay in milliseconds: wait this long after an epoch is due and re-read the
        /// contract before sending (a second manager that only takes over when the first is gone).
        #[arg(long, default_value_t = 0)]
        send_delay_ms: u64,
        /// Mine an empty block (anvil_mine) on the source chain when its head did not move for
        /// one poll, for nodes that only mine on transactions.
        #[arg(long)]
        mine_idle: bool,
        /// Head polling interval in milliseconds.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
    },
    /// Show an epoch's anchored batches, roots and transactions.
    #[command(
        override_usage = "seqctl chain epoch [OPTIONS] --rpc-url <RPC_URL> --protocol-state <PROTOCOL_STATE> [MARKET] <EPOCH>"
    )]
    Epoch {
        /// [MARKET] EPOCH: the data market address (default: --market) and the epoch id.
        #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// Data market address, when MARKET is left out.
        #[arg(long, env = env::DATA_MARKET_ADDRESS)]
        market: Option<String>,
        /// JSON-RPC endpoint (never printed: it may carry an API key).
        #[arg(long, env = env::RPC_URL, hide_env_values = true)]
        rpc_url: String,
        /// ProtocolState contract.
        #[arg(long, env = env::PROTOCOL_STATE_ADDRESS)]
        protocol_state: Address,
    },
}

/// Where the signing key comes from (see the module docs for the order). The key itself is never
/// printed, nor quoted in an error.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// Signing key, hex. Visible in the process list and shell history: prefer
    /// SEQCTL_PRIVATE_KEY or --private-key-file.
    #[arg(long, conflicts_with = "private_key_file")]
    private_key: Option<String>,
    /// File holding the hex signing key (surrounding whitespace ignored); should be readable by
    /// its owner only. Fallbacks: SEQCTL_PRIVATE_KEY, SEQCTL_PRIVATE_KEY_FILE, SIGNER_PRIVATE_KEY.
    #[arg(long)]
    private_key_file: Option<PathBuf>,
}

/// Environment variable holding the key.
pub const KEY_ENV: &str = "SEQCTL_PRIVATE_KEY";
/// Environment variable naming a key file.
pub const KEY_FILE_ENV: &str = "SEQCTL_PRIVATE_KEY_FILE";
/// The chain client's key variable, still read for older scripts.
pub const LEGACY_KEY_ENV: &str = "SIGNER_PRIVATE_KEY";

impl KeyArgs {
    /// The key, from the first source that is set; `None` when none is.
    fn resolve(self) -> Result<Option<String>> {
        if let Some(path) = self.private_key_file {
            return read_key_file(&path).map(Some);
        }
        if let Some(k) = self.private_key {
            eprintln!("warning: --private-key is visible to other users in the process list and stays in shell history; prefer {KEY_ENV} or --private-key-file");
            return non_empty(k, "--private-key").map(Some);
        }
        if let Some(k) = env_var(KEY_ENV)? {
            return non_empty(k, KEY_ENV).map(Some);
        }
        if let Some(path) = env_var(KEY_FILE_ENV)? {
            return read_key_file(Path::new(&path)).map(Some);
        }
        match env_var(LEGACY_KEY_ENV)? {
            Some(k) => non_empty(k, LEGACY_KEY_ENV).map(Some),
            None => Ok(None),
        }
    }
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        // The value is not echoed: it may be the key.
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

/// The trimmed key if it is one; errors name the source, never the value.
fn non_empty(k: String, from: &str) -> Result<String> {
    let k = k.trim().to_string();
    if k.is_empty() {
        bail!("{from} is empty");
    }
    if address_of_key(&k).is_err() {
        bail!("{from} does not hold a valid hex secp256k1 private key");
    }
    Ok(k)
}

fn read_key_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the key file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("stat the key file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: the key file {} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    non_empty(text, &format!("the key file {}", path.display()))
}

/// `--catch-up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CatchUpArg {
    /// Release every missed epoch, oldest first, at most --max-per-sec a second.
    InOrder,
    /// Skip all missed epochs but the newest with an on-chain `skipEpochs`.
    Skip,
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
            key,
            slots,
            epoch_size,
            snapshot_window,
            block_ms,
            source_chain_id,
            source_block_time,
            day_seconds,
            daily_quota,
            batch_window,
            market,
            sequencer,
            epoch_manager,
        } => {
            let client = connect(&rpc_url, Address::ZERO, key.resolve()?).await?;
            let block_ms = match block_ms {
                Some(b) => Some(b),
                None => client.measured_block_ms(100).await?,
            };
            let snapshot_window = snapshot_window.unwrap_or_else(|| {
                block_ms.map_or(20, sequencer_chain::market::recommended_snapshot_window)
            });
            match block_ms {
                Some(ms) => {
                    if let Some(w) = sequencer_chain::market::window_warning(snapshot_window, ms) {
                        eprintln!("warning: {w}");
                    }
                }
                None => eprintln!(
                    "note: the chain's block time could not be measured (give --block-ms); snapshot window {snapshot_window} blocks not checked against the node's timing"
                ),
            }
            let scaled = |what: &str, v: f64| {
                sequencer_chain::market::MarketSettings::scaled_seconds(v)
                    .with_context(|| format!("{what} {v} is not a number of seconds"))
            };
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
                source_chain_id,
                source_block_time: scaled("--source-block-time", source_block_time)?,
                day_size: scaled("--day-seconds", day_seconds)?,
                daily_snapshot_quota: daily_quota,
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
                println!(
                    "# source chain {} ({} s blocks), {} epochs a day, daily quota {}",
                    d.settings.source_chain_id,
                    d.settings.source_block_time as f64
                        / sequencer_chain::market::TIME_SCALE as f64,
                    d.settings.epochs_in_a_day(),
                    d.settings.daily_snapshot_quota
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
            key,
            every,
            count,
            first_begin,
            finality_offset,
            source_rpc_url,
            catch_up,
            max_per_sec,
            send_delay_ms,
            mine_idle,
            poll_ms,
        } => {
            let client = connect(&rpc_url, protocol_state, key.resolve()?).await?;
            let source = match source_rpc_url {
                Some(url) => Some(
                    ChainClient::connect(ChainConfig::new(url, Address::ZERO))
                        .await
                        .context("connect to the source chain")?,
                ),
                None => None,
            };
            let cfg = EpochManagerConfig {
                finality_offset,
                poll_interval: Duration::from_millis(poll_ms.max(10)),
                first_begin: Some(first_begin),
                catch_up: match catch_up {
                    CatchUpArg::InOrder => CatchUp::InOrder { max_per_sec },
                    CatchUpArg::Skip => CatchUp::SkipToHead { max_backlog: 1 },
                },
                send_delay: Duration::from_millis(send_delay_ms),
                ..EpochManagerConfig::new(market)
            };
            let poll = cfg.poll_interval;
            let miner = source.clone().unwrap_or_else(|| client.clone());
            let mut manager = EpochManager::new(
                Arc::new(client),
                source.map(|s| Arc::new(s) as Arc<dyn ChainPort>),
                cfg,
            )
            .await
            .context("epoch manager")?;
            let size = manager.epoch_size().await.context("market info")?;
            if let Some(n) = every.filter(|n| *n != size) {
                eprintln!("warning: --every {n} is ignored: the market's epochs are {size} blocks and are released at end + {finality_offset}");
            }
            let mut released = 0u64;
            let mut last_head = None;
            loop {
                let left = count.map(|c| c.saturating_sub(released));
                match manager.step_at_most(left.unwrap_or(u64::MAX)).await {
                    Ok(report) => {
                        for s in &report.skipped {
                            if json {
                                println!(
                                    "{}",
                                    json!({"skipped_from": s.from_begin, "skipped_to": s.to_begin, "epochs": s.epochs})
                                );
                            } else {
                                println!(
                                    "skipped {} epochs: blocks [{}, {}]",
                                    s.epochs,
                                    s.from_begin,
                                    s.to_begin - 1
                                );
                            }
                        }
                        for r in &report.released {
                            if json {
                                println!(
                                    "{}",
                                    json!({"epoch_id": r.epoch_id, "begin": r.range.begin, "end": r.range.end, "block": r.block, "tx_hash": r.tx_hash, "source_head": r.source_head_at_send, "lag_blocks": r.lag.blocks, "lag_ms": r.lag.ms, "day_started": r.day_started})
                                );
                            } else {
                                println!(
                                    "released epoch {} [{}, {}] in block {} ({}), lag {} blocks / {} ms",
                                    r.epoch_id,
                                    r.range.begin,
                                    r.range.end,
                                    r.block,
                                    r.tx_hash.map_or_else(|| "settled".to_string(), |h| h.to_string()),
                                    r.lag.blocks,
                                    r.lag.ms
                                );
                                if let Some(day) = r.day_started {
                                    println!("day {day} started with epoch {}", r.epoch_id);
                                }
                            }
                        }
                        released += report.released.len() as u64;
                        if count.is_some_and(|c| released >= c) {
                            return Ok(());
                        }
                        if mine_idle && last_head == Some(report.source_head) {
                            miner.dev_mine(1).await.context("anvil_mine")?;
                        }
                        last_head = Some(report.source_head);
                    }
                    Err(e) if e.is_fatal() => return Err(e).context("epoch manager"),
                    Err(e) => eprintln!("warning: {e}; re-reading the contract at the next poll"),
                }
                tokio::time::sleep(poll).await;
            }
        }
        ChainCmd::Epoch {
            args,
            market,
            rpc_url,
            protocol_state,
        } => {
            let (market, [epoch]) = crate::args::market_first::<1>(args, market)?;
            let market: Address = market
                .parse()
                .with_context(|| format!("market {market:?} is not an address"))?;
            let epoch: u64 = epoch
                .parse()
                .with_context(|| format!("epoch {epoch:?} is not a number"))?;
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
/// local development chain (31337, 1337); refuses to guess a key anywhere else.
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
            if !is_local_chain(probe.chain_id()) {
                bail!(
                    "chain {} is not a local chain: set {KEY_ENV} or pass --private-key-file",
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
