//! The runner's chain: a spawned anvil (`ANVIL_BIN`, the project's install for this platform,
//! `anvil` on `PATH`, or installed by `scripts/tools.sh anvil`) whose chain is kept in the data
//! directory, or a given RPC; ProtocolState deployed once, and the data directory tied to its
//! chain by content (chain id, genesis hash, deployment block), so a rerun resumes that chain or
//! is refused, never mixed with another chain.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sequencer_chain::deploy::{deploy_local, local_market_address, DeployPlan, Deployment};
use sequencer_chain::{Address, ChainClient, ChainConfig, Windows, B256};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// anvil's standard test accounts 0 and 1 (public knowledge; local chains only): owner and epoch
/// manager; sequencer. Separate keys keep anchoring and releases off each other's nonces (the
/// owner sends nothing after the deployment).
pub const OWNER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// SEQUENCER role.
pub const SEQUENCER_KEY: &str =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// What the data directory remembers of the chain: which chain it is (so a rerun never mixes one
/// chain's records with another's) and the deployment on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// RPC the deployment was made through, redacted (scheme, host and port: an RPC URL may carry
    /// an API key). Shown in messages; never used to recognise the chain.
    pub rpc_url: String,
    /// The chain, by content. Absent in data directories written before it existed.
    #[serde(default)]
    pub chain: Option<ChainIdentity>,
    /// The deployment.
    pub deployment: Deployment,
}

/// A chain recognised by its content, not its URL: a new anvil on the same port is another chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainIdentity {
    /// `eth_chainId`.
    pub chain_id: u64,
    /// Hash of block 0 when the data directory was made: recorded for people, not compared
    /// (see [`ChainIdentity::same_chain`]).
    pub genesis_hash: B256,
    /// Block ProtocolState was deployed in.
    pub deploy_block: u64,
    /// Hash of that block.
    pub deploy_block_hash: B256,
}

impl ChainIdentity {
    /// The same chain: the same chain id and the same block at the deployment height. That
    /// block's hash commits to every block before it, genesis included. Block 0 itself is not
    /// compared: anvil (1.7.1) makes a new block 0 each time it loads a `--state` file and keeps
    /// them all, so which one `eth_getBlockByNumber(0)` returns changes across restarts of one
    /// chain, while blocks 1 and up are kept once.
    pub fn same_chain(&self, other: &Self) -> bool {
        self.chain_id == other.chain_id
            && self.deploy_block == other.deploy_block
            && self.deploy_block_hash == other.deploy_block_hash
    }
}

/// The deployment file in a data directory.
pub const DEPLOYMENT_FILE: &str = "deployment.json";
/// A spawned anvil's chain, kept across runs (`anvil --state`).
pub const ANVIL_STATE_FILE: &str = "anvil-state.json";
/// The last block a spawned anvil was seen at (to detect a state file older than the records).
pub const ANVIL_HEAD_FILE: &str = "anvil-head.json";
/// The state database of the embedded adapters (`services::embedded`).
const STATE_DB_FILE: &str = "sequencer.sqlite";
/// Held while a runner uses the data directory.
const LOCK_FILE: &str = "runner.lock";

/// An exclusive hold on a data directory for the life of a run: two runners on one directory
/// would spawn two chains from one state file and share one queue.
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another sequencer-local; stop it first or pass another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// A running anvil whose chain lives in the data directory (`anvil --state`). It runs in its own
/// process group under a small shell that stops it with SIGTERM (anvil then writes its state)
/// when its standard input closes: when this value is dropped, and also when the runner dies
/// without dropping it (SIGKILL, panic), since the kernel closes the pipe then. Drop waits (up to
/// 15 s) for the state to be written, so a rerun starts from it.
pub struct Anvil {
    /// JSON-RPC URL.
    pub rpc_url: String,
    child: std::process::Child,
    checkpoint: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(t) = self.checkpoint.take() {
            t.abort();
        }
        // Closing stdin is the stop signal (see the type's docs).
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!("anvil did not stop within 15 s of SIGTERM: killing it (its state may be lost)");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (for `scripts/tools.sh` and `.tools/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The platform part of anvil's npm package for this machine (`@foundry-rs/anvil-<this>`, 1.7.1
/// ships linux-amd64, linux-arm64, darwin-amd64 and darwin-arm64), as `scripts/tools.sh` names it.
pub fn anvil_npm_platform() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("linux-amd64"),
        ("linux", "aarch64") => Some("linux-arm64"),
        ("macos", "x86_64") => Some("darwin-amd64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        _ => None,
    }
}

/// Where anvil is, first found of: `ANVIL_BIN` (an error when set to no file), the project's
/// install for this platform (`.tools/`, by `scripts/tools.sh anvil`), `anvil` on `PATH`.
pub fn anvil_path() -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("ANVIL_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("ANVIL_BIN={} is not a file", p.display());
        }
        return Ok(Some(p));
    }
    if let Some(platform) = anvil_npm_platform() {
        let local = repo_root().join(format!(
            ".tools/anvil/node_modules/@foundry-rs/anvil-{platform}/bin/anvil"
        ));
        if local.is_file() {
            return Ok(Some(local));
        }
    }
    Ok(std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("anvil"))
            .find(|p| p.is_file())
    }))
}

/// Finds anvil, installing it with the project's tools script when it is missing.
pub async fn find_or_install_anvil() -> Result<PathBuf> {
    if let Some(p) = anvil_path()? {
        return Ok(p);
    }
    let Some(platform) = anvil_npm_platform() else {
        bail!(
            "anvil not found and no npm package of it for {}-{}: install Foundry's anvil, put it on PATH or set ANVIL_BIN",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    };
    eprintln!(
        "anvil not found (ANVIL_BIN, .tools/, PATH): installing it with scripts/tools.sh anvil (npm @foundry-rs/anvil-{platform}) …"
    );
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/tools.sh"))
        .arg("anvil")
        .status()
        .await
        .context("running scripts/tools.sh anvil")?;
    if !status.success() {
        bail!("scripts/tools.sh anvil failed ({status}); or install anvil yourself and put it on PATH or set ANVIL_BIN");
    }
    anvil_path()?.context("anvil still missing after scripts/tools.sh anvil")
}

/// The shell between the runner and anvil: starts anvil (its arguments follow), waits for its
/// own standard input to close, then stops anvil with SIGTERM, so anvil writes its `--state`.
const ANVIL_KEEPER: &str = r#"
"$@" &
anvil=$!
cat >/dev/null
kill -TERM "$anvil" 2>/dev/null
wait "$anvil"
"#;

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    block: u64,
    hash: B256,
}

/// Spawns a throwaway anvil on a free loopback port, mining a block every `block_ms` (for
/// tests; the runner keeps its chain with [`spawn_anvil_kept`]).
pub async fn spawn_anvil(block_ms: u64) -> Result<Anvil> {
    spawn(block_ms, None).await
}

/// Spawns anvil on a free loopback port, mining a block every `block_ms`, its chain kept in
/// `data_dir` (loaded when there, written when it stops). A rerun therefore resumes the chain
/// too; a state file older than the last block the runner saw is refused.
pub async fn spawn_anvil_kept(block_ms: u64, data_dir: &Path) -> Result<Anvil> {
    spawn(block_ms, Some(data_dir)).await
}

async fn spawn(block_ms: u64, data_dir: Option<&Path>) -> Result<Anvil> {
    let bin = find_or_install_anvil().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("free port")?;
    let state = data_dir.map(|d| d.join(ANVIL_STATE_FILE));
    let resumed = state.as_deref().is_some_and(Path::is_file);
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(ANVIL_KEEPER)
        .arg("anvil-keeper")
        .arg(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--block-time",
            &format!("{:.3}", block_ms.max(50) as f64 / 1000.0),
        ])
        .arg("--silent")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(state) = &state {
        cmd.arg("--state").arg(state);
    }
    // Its own process group: Ctrl-C in the terminal reaches the runner, which then stops anvil
    // after its own last transaction, rather than both at once.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let rpc_url = format!("http://127.0.0.1:{port}");
    let mut anvil = Anvil {
        rpc_url: rpc_url.clone(),
        child,
        checkpoint: None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let probe = loop {
        // A plain TCP probe first: the chain client would log every refused connection.
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            if let Ok(c) = ChainClient::connect(ChainConfig::new(&rpc_url, Address::ZERO)).await {
                if c.head().await.is_ok() {
                    break c;
                }
            }
        }
        if let Ok(Some(status)) = anvil.child.try_wait() {
            bail!(
                "anvil ({}) exited at start ({status}){}",
                bin.display(),
                match (&state, resumed) {
                    (Some(state), true) => format!(
                        "; it could not load {}: start over with --fresh",
                        state.display()
                    ),
                    _ => String::new(),
                }
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("anvil did not answer on {rpc_url}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (Some(data_dir), Some(state)) = (data_dir, state) else {
        return Ok(anvil);
    };
    let head_file = data_dir.join(ANVIL_HEAD_FILE);
    if resumed {
        if let Ok(text) = std::fs::read_to_string(&head_file) {
            let seen: Head = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a block", head_file.display()))?;
            if probe.block_hash(seen.block).await? != Some(seen.hash) {
                bail!(
                    "the chain saved in {} ends before block {} ({:#x}), which this data directory's runs already saw: the state was not written at the last stop (a machine crash?), and the records there would not match it. Start over with --fresh (wipes {})",
                    state.display(),
                    seen.block,
                    seen.hash,
                    data_dir.display()
                );
            }
        }
    }
    // The head, noted every second, so a state file that is older than what the runs saw (anvil
    // killed before it could write it) is recognised at the next start.
    anvil.checkpoint = Some(tokio::spawn(async move {
        loop {
            if let Ok(block) = probe.head().await {
                if let Ok(Some(hash)) = probe.block_hash(block).await {
                    if let Ok(bytes) = serde_json::to_vec(&Head { block, hash }) {
                        let tmp = head_file.with_extension("json.tmp");
                        if std::fs::write(&tmp, bytes).is_ok() {
                            let _ = std::fs::rename(&tmp, &head_file);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }));
    Ok(anvil)
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

/// The chain at `c`, by content.
async fn identify(c: &ChainClient, deploy_block: u64) -> Result<ChainIdentity> {
    let genesis_hash = c
        .block_hash(0)
        .await
        .context("reading block 0")?
        .context("the chain has no block 0")?;
    let deploy_block_hash = c
        .block_hash(deploy_block)
        .await
        .context("reading the deployment block")?
        .unwrap_or(B256::ZERO);
    Ok(ChainIdentity {
        chain_id: c.chain_id(),
        genesis_hash,
        deploy_block,
        deploy_block_hash,
    })
}

/// Why a data directory is refused, and what to do.
fn refuse(data_dir: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{dir} belongs to another chain: {what}. Its epoch records would make this chain's epochs look done and its submissions would never be anchored. Start over with --fresh (wipes {dir}), use another --data-dir, or point --rpc-url at the chain it belongs to",
        dir = data_dir.display()
    )
}

/// The deployment of the data directory when the data directory belongs to this chain; a new
/// one when the directory is new. A directory that belongs to another chain (another chain id,
/// genesis, or deployment block: a new anvil on the same port is another chain) is refused with
/// a message naming `--fresh`, never silently redeployed over.
pub async fn deploy_or_reuse(
    rpc_url: &str,
    data_dir: &Path,
    plan: &DeployPlan,
) -> Result<(Deployment, bool)> {
    let path = data_dir.join(DEPLOYMENT_FILE);
    let shown_url = sequencer_chain::redact_url(rpc_url);
    let probe = client(rpc_url, Address::ZERO, OWNER_KEY).await?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let saved: Saved = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a deployment", path.display()))?;
            let d = &saved.deployment;
            let now = identify(&probe, d.deploy_block).await?;
            match &saved.chain {
                Some(was) if was.same_chain(&now) => {}
                Some(was) => {
                    let why = if was.chain_id != now.chain_id {
                        format!(
                            "chain id {} there, {} at {shown_url}",
                            was.chain_id, now.chain_id
                        )
                    } else {
                        format!(
                            "ProtocolState was deployed in block {} ({:#x}), which is {} at {shown_url} (genesis {:#x} there, {:#x} here{})",
                            was.deploy_block,
                            was.deploy_block_hash,
                            if now.deploy_block_hash == B256::ZERO {
                                "not there".to_string()
                            } else {
                                format!("{:#x}", now.deploy_block_hash)
                            },
                            was.genesis_hash,
                            now.genesis_hash,
                            if data_dir.join(ANVIL_STATE_FILE).is_file() {
                                ""
                            } else {
                                "; no anvil-state.json to resume a spawned anvil from"
                            }
                        )
                    };
                    return Err(refuse(data_dir, &why));
                }
                None => {
                    // Written before chains were recognised by content: the old rule (the same
                    // URL, the market still registered) is the best there is; the file is then
                    // upgraded. Old files held the URL unredacted.
                    if saved.rpc_url != rpc_url {
                        return Err(refuse(
                            data_dir,
                            &format!(
                                "it was made on {} and records no chain identity",
                                sequencer_chain::redact_url(&saved.rpc_url)
                            ),
                        ));
                    }
                }
            }
            let c = client(rpc_url, d.protocol_state, OWNER_KEY).await?;
            if !c
                .market_info(d.data_market)
                .await
                .map(|m| m.registered)
                .unwrap_or(false)
            {
                return Err(refuse(
                    data_dir,
                    &format!(
                        "market {} is not registered at ProtocolState {} on {shown_url}",
                        d.data_market, d.protocol_state
                    ),
                ));
            }
            if saved.chain.is_none() {
                write_saved(&path, &shown_url, now, d)?;
            }
            Ok((saved.deployment, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Records without a deployment: they belong to a chain nobody can name any more.
            if data_dir.join(STATE_DB_FILE).exists() {
                return Err(refuse(
                    data_dir,
                    &format!("it holds a state database but no {DEPLOYMENT_FILE} naming its chain"),
                ));
            }
            let (_, d) = deploy_local(&probe, plan)
                .await
                .context("deploying ProtocolState")?;
            std::fs::create_dir_all(data_dir)?;
            let id = identify(&probe, d.deploy_block).await?;
            write_saved(&path, &shown_url, id, &d)?;
            Ok((d, false))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_saved(path: &Path, shown_url: &str, chain: ChainIdentity, d: &Deployment) -> Result<()> {
    let saved = Saved {
        rpc_url: shown_url.to_string(),
        chain: Some(chain),
        deployment: d.clone(),
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&saved)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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
