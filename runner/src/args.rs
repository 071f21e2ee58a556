//! Command line of `sequencer-local`.

use std::path::PathBuf;

use clap::Parser;

/// The whole sequencer on one machine: a chain (anvil), the contract, the epoch manager, the
/// libp2p ingress, every function on embedded adapters and a snapshotter simulator. Prints what
/// each epoch did and checks inclusion proofs against the chain.
#[derive(Debug, Clone, Parser)]
#[command(name = "sequencer-local", version)]
pub struct Args {
    /// Simulated snapshotter slots (real keys; each submits for two projects per epoch).
    #[arg(long, default_value_t = 20)]
    pub slots: u64,
    /// Projects.
    #[arg(long, default_value_t = 8)]
    pub projects: u64,
    /// Epochs to run before exiting (0: run until Ctrl-C).
    #[arg(long, default_value_t = 3)]
    pub epochs: u64,
    /// Epoch size in blocks.
    #[arg(long, default_value_t = 4)]
    pub epoch_size: u64,
    /// snapshotSubmissionWindow, blocks [default: 16 (16 × 250 ms: 4 s for a simulated
    /// submission to travel the ingress, the queue and verify, with room for a loaded machine);
    /// with --no-sim, what unmodified snapshotter nodes need at the block time
    /// (sequencer_chain::market::recommended_snapshot_window: 52 blocks at 1 s)].
    #[arg(long)]
    pub window: Option<u64>,
    /// Epochs in a day of the local market (DAY_SIZE is set to match; days roll over on chain).
    #[arg(long, default_value_t = 20)]
    pub epochs_per_day: u64,
    /// dailySnapshotQuota of the local market.
    #[arg(long, default_value_t = 10)]
    pub daily_quota: u64,
    /// batchSubmissionWindow, blocks.
    #[arg(long, default_value_t = 200)]
    pub batch_window: u64,
    /// Block time of the spawned anvil, milliseconds [default: 250; 1000 with --no-sim].
    #[arg(long)]
    pub block_ms: Option<u64>,
    /// Projects per batch.
    #[arg(long, default_value_t = 3)]
    pub batch_size: usize,
    /// Blocks past `end` before an epoch is released (epoch manager finality offset).
    #[arg(long, default_value_t = 1)]
    pub finality_offset: u64,
    /// Where the state database, queues, blockstore, deployment and the spawned anvil's chain
    /// live. Reusing it resumes the chain and the records together; a directory that belongs to
    /// another chain is refused.
    #[arg(long, default_value = ".local/run")]
    pub data_dir: PathBuf,
    /// Wipe the data directory first (its chain too, when anvil was spawned).
    #[arg(long)]
    pub fresh: bool,
    /// Standard output as JSON lines for scripts: one `{"type":"epoch",…}` object per anchored
    /// epoch and a `{"type":"summary",…}` at the end (after `{"type":"ready",…}` with --no-sim).
    #[arg(long)]
    pub json: bool,
    /// Use this chain instead of spawning anvil. The data directory is tied to the chain it was
    /// first used with (chain id, genesis hash, deployment block): another chain is refused. The
    /// value is never printed (it may carry an API key).
    #[arg(long, env = "RPC_URL", hide_env_values = true)]
    pub rpc_url: Option<String>,
    /// libp2p listen address of the ingress.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    pub listen: String,
    /// HTTP address serving the batch documents (`/ipfs/<cid>`, `/api/v0/cat?arg=<cid>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub content_listen: std::net::SocketAddr,
    /// Use the AWS adapters (SQS, DynamoDB, IPFS HTTP) against `AWS_ENDPOINT_URL*` and
    /// `IPFS_API_URL` instead of the embedded ones; the queues and tables named with `SEQ_PREFIX`
    /// must exist (`localstack/resources.py`). A random data market keeps runs apart.
    #[arg(long)]
    pub aws: bool,
    /// Data market address to register (default: the local market of `sequencer_core::devkeys`;
    /// random with `--aws`).
    #[arg(long)]
    pub market: Option<sequencer_core::Address>,
    /// Fault drill: the ingress enqueues every message twice (nothing downstream may change).
    #[arg(long)]
    pub deliver_twice: bool,
    /// No simulator: serve an outside collector. Prints the connection details as one JSON line
    /// and keeps releasing epochs until stopped.
    #[arg(long)]
    pub no_sim: bool,
    /// Assign a slot to an outside snapshotter's address (`SLOT=0xADDRESS`, repeatable), e.g.
    /// for an outside collector with its own keys.
    #[arg(long, value_parser = parse_assign)]
    pub assign: Vec<(u64, sequencer_core::Address)>,
    /// Which path the simulated collectors send by: `collect`, `gossipsub` (mesh only) or `both`
    /// (each submission once per path, the newest collectors' default).
    #[arg(long, value_enum, default_value = "collect")]
    pub path: snapshotter_sim::scenario::SimPath,
    /// Inclusion proofs checked per epoch.
    #[arg(long, default_value_t = 5)]
    pub proofs_per_epoch: usize,
    /// Give up on an epoch that is not anchored within this many seconds.
    #[arg(long, default_value_t = 60)]
    pub epoch_timeout_secs: u64,
    /// Log filter (stderr).
    #[arg(long, default_value = "warn", env = "RUST_LOG")]
    pub log: String,
}

fn parse_assign(s: &str) -> Result<(u64, sequencer_core::Address), String> {
    let (slot, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected SLOT=0xADDRESS, got {s:?}"))?;
    let slot: u64 = slot
        .trim()
        .parse()
        .map_err(|_| format!("slot {slot:?} is not a number"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{addr:?} is not an address"))?;
    Ok((slot, addr))
}
