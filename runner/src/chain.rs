//! The runner's chain: a spawned anvil (installed by `scripts/tools.sh anvil` when missing) or a
//! given RPC, with ProtocolState deployed once and its addresses kept in the data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sequencer_chain::deploy::{deploy_local, local_market_address, DeployPlan, Deployment};
use sequencer_chain::{Address, ChainClient, ChainConfig, Windows};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// anvil's standard test accounts 0 and 1 (public knowledge; local chains only): owner and epoch
/// manager; sequencer. Separate keys keep anchoring and releases off each other's nonces (the
/// owner sends nothing after the deployment).
pub const OWNER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// SEQUENCER role.
pub const SEQUENCER_KEY: &str =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// What the data directory remembers of the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// RPC the deployment lives on.
    pub rpc_url: String,
    /// The deployment.
    pub deployment: Deployment,
}

/// A running anvil (killed on drop).
pub struct Anvil {
    /// JSON-RPC URL.
    pub rpc_url: String,
    _child: Child,
}

/// The repository root (for `scripts/tools.sh` and `.tools/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn anvil_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ANVIL_BIN").map(PathBuf::from) {
        if p.is_file() {
            return Some(p);
        }
    }
    let local =
        repo_root().join(".tools/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    local.is_file().then_some(local)
}

/// Finds anvil, installing it with the project's tools script when it is missing.
pub async fn find_or_install_anvil() -> Result<PathBuf> {
    if let Some(p) = anvil_path() {
        return Ok(p);
    }
    eprintln!(
        "anvil not found: installing it with scripts/tools.sh anvil (npm @foundry-rs/anvil) …"
    );
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/tools.sh"))
        .arg("anvil")
        .status()
        .await
        .context("running scripts/tools.sh anvil")?;
    if !status.success() {
        bail!("scripts/tools.sh anvil failed ({status})");
    }
    anvil_path().context("anvil still missing after scripts/tools.sh anvil")
}

/// Spawns anvil on a free loopback port, mining a block every `block_ms`.
pub async fn spawn_anvil(block_ms: u64) -> Result<Anvil> {
    let bin = find_or_install_anvil().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("free port")?;
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--block-time",
            &format!("{:.3}", block_ms.max(50) as f64 / 1000.0),
        ])
        .arg("--silent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let rpc_url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A plain TCP probe first: the chain client would log every refused connection.
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            if let Ok(c) = ChainClient::connect(ChainConfig::new(&rpc_url, Address::ZERO)).await {
                if c.head().await.is_ok() {
                    break;
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("anvil did not answer on {rpc_url}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Anvil {
        rpc_url,
        _child: child,
    })
}

/// A client with `key`, fast polling for local chains.
pub async fn client(rpc_url: &str, protocol_state: Address, key: &str) -> Result<ChainClient> {
    let mut cfg = ChainConfig::new(rpc_url, protocol_state).with_private_key(key);
    cfg.confirmations = 1;
    cfg.receipt_poll = Duration::from_millis(25);
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.slot_cache_ttl = Duration::from_secs(5);
    ChainClient::connect(cfg)
        .await
        .context("connecting to the chain")
}

/// The deployment of the data directory when it exists on this chain; otherwise a new one.
pub async fn deploy_or_reuse(
    rpc_url: &str,
    data_dir: &Path,
    plan: &DeployPlan,
) -> Result<(Deployment, bool)> {
    let path = data_dir.join("deployment.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let saved: Saved = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a deployment", path.display()))?;
        if saved.rpc_url == rpc_url {
            let c = client(rpc_url, saved.deployment.protocol_state, OWNER_KEY).await?;
            if c.market_info(saved.deployment.data_market)
                .await
                .map(|m| m.registered)
                .unwrap_or(false)
            {
                return Ok((saved.deployment, true));
            }
        }
    }
    let owner = client(rpc_url, Address::ZERO, OWNER_KEY).await?;
    let (_, d) = deploy_local(&owner, plan)
        .await
        .context("deploying ProtocolState")?;
    std::fs::create_dir_all(data_dir)?;
    let saved = Saved {
        rpc_url: rpc_url.to_string(),
        deployment: d.clone(),
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&saved)?)?;
    Ok((d, false))
}

/// The plan for the runner's market.
pub fn plan(slots: u64, epoch_size: u64, window: u64, batch_window: u64) -> Result<DeployPlan> {
    let key = |k: &str| -> Result<Address> {
        sequencer_chain::deploy::address_of_key(k).context("test key")
    };
    Ok(DeployPlan {
        market: local_market_address(),
        epoch_size,
        windows: Windows {
            snapshot_blocks: window,
            batch_blocks: batch_window,
        },
        sequencer: Some(key(SEQUENCER_KEY)?),
        epoch_manager: Some(key(OWNER_KEY)?),
        slots,
        ..DeployPlan::default()
    })
}
