//! `seqctl`: the sequencer's command line for operators and snapshotters.
//! Offline: recompute a batch document's roots, verify a submission's EIP-712
//! signature, verify an inclusion proof. Against others, trusting none of them: fetch
//! a proof from a sequencer and check it against IPFS and the chain (`proof get`),
//! recompute an epoch from the chain and IPFS alone (`audit epoch`). Exit status 0
//! means the check held; 1 means it did not (the reason is printed); 2 is a usage or
//! input error.
//!
//! The parts, one file per command:
//! - `batch` (`batch inspect`), `submission` (`submission verify`), `proof_verify`
//!   (`proof verify`, offline): files in, checks out;
//! - `proof_chain` (`proof verify --rpc-url`, and the chain checks `proof get` shares),
//!   `proof_get` (`proof get`), `audit` (`audit epoch`): ask a sequencer, IPFS and the chain,
//!   trusting none of them;
//! - `chain` (`chain deploy | release-epochs | epoch`): operator commands against a chain;
//! - `epochs` (`epochs failed | reanchor`): the operator's way back for epochs whose anchoring
//!   failed, against the runner's data directory or the AWS deployment;
//! - shared: `args` (market, epoch and id arguments), `net` (runtime, HTTP, IPFS `cat`, chain
//!   connection, URL redaction), `report` (the printed or JSON check report).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

mod args;
mod audit;
mod batch;
mod chain;
mod env;
mod epochs;
mod market;
mod net;
mod proof_chain;
mod proof_get;
mod proof_verify;
mod report;
mod rewards;
mod submission;

#[derive(Parser)]
#[command(
    name = "seqctl",
    version,
    about = "Submission sequencer command line",
    after_help = env::HELP
)]
struct Cli {
    /// Print one JSON object instead of text lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Batch documents.
    #[command(subcommand)]
    Batch(BatchCmd),
    /// Snapshot submissions.
    #[command(subcommand)]
    Submission(SubmissionCmd),
    /// Inclusion proofs.
    #[command(subcommand)]
    Proof(ProofCmd),
    /// Protocol chain: deploy a local ProtocolState, release epochs, show an epoch's anchors.
    #[command(subcommand)]
    Chain(chain::ChainCmd),
    /// Epochs whose anchoring failed: list them, anchor one again once the cause is fixed.
    #[command(subcommand)]
    Epochs(epochs::EpochsCmd),
    /// Recompute what a sequencer did from the chain and IPFS alone.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// A market's kit for snapshotter operators.
    #[command(subcommand)]
    Market(market::MarketCmd),
    /// Rewards per slot per day or epoch, from a sequencer's status API.
    #[command(subcommand)]
    Rewards(rewards::RewardsCmd),
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Recompute an epoch from the chain and the batch documents: each batch's CID from its
    /// bytes, both roots, one batch per project, every listed submission's EIP-712 signer
    /// against its slot's owner and its header inside the window, the plurality per project.
    #[command(
        override_usage = "seqctl audit epoch [OPTIONS] --rpc-url <RPC_URL> --protocol-state <PROTOCOL_STATE> --ipfs <IPFS> [MARKET] <EPOCH>"
    )]
    Epoch {
        /// [MARKET] EPOCH: the data market address (default: --market) and the epoch id.
        #[arg(value_name = "ARGS", num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// Data market address, when MARKET is left out.
        #[arg(long, env = env::DATA_MARKET_ADDRESS)]
        market: Option<String>,
        /// JSON-RPC endpoint of the protocol chain (never printed: it may carry an API key).
        #[arg(long, env = env::RPC_URL, hide_env_values = true)]
        rpc_url: String,
        /// ProtocolState contract (also the EIP-712 verifying contract).
        #[arg(long, env = env::PROTOCOL_STATE_ADDRESS)]
        protocol_state: String,
        /// IPFS node (Kubo RPC, `POST /api/v0/cat`) holding the batch documents.
        #[arg(long, env = env::IPFS_API_URL, hide_env_values = true)]
        ipfs: String,
        /// EIP-712 chain id (default: the RPC's chain id).
        #[arg(long, env = env::CHAIN_ID)]
        chain_id: Option<u64>,
    },
}

#[derive(Subcommand)]
enum BatchCmd {
    /// Recompute a batch document's roothash and finalized-CIDs root; fails when
    /// the document's roothash differs.
    Inspect {
        /// The batch document (JSON), or `-` for standard input.
        file: PathBuf,
        /// Submission ids of the epoch's earlier batches, in order: a JSON array of
        /// strings, batch documents (their submissionIDs are used), or one id a line.
        #[arg(long)]
        previous_ids: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SubmissionCmd {
    /// Recover a submission's signer and print its EIP-712 digest.
    Verify {
        /// Protocol chain id.
        #[arg(long, env = env::CHAIN_ID)]
        chain_id: u64,
        /// ProtocolState contract address (the EIP-712 verifying contract).
        #[arg(long, env = env::PROTOCOL_STATE_ADDRESS)]
        protocol_state: String,
        /// One submission in `/collect` JSON form (a leading UUID is allowed), or `-`.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProofCmd {
    /// Check an inclusion-proof document: the Merkle path from the submission id to the
    /// roothash; with --batch, the batch document's CID, roothash and listing; with --rpc-url,
    /// against the chain: the market is registered, the epoch released, the batch CID one of the
    /// epoch's batch CIDs at the proof's position, and the document's cids root the
    /// finalizedCidsRoot stored with it. Without --rpc-url the proof is not checked against the
    /// chain, and a self-made tree and document pass: the output says so.
    Verify {
        /// The proof document (JSON), or `-`.
        file: PathBuf,
        /// The batch document's exact bytes, to check its CID, roothash and listing.
        #[arg(long)]
        batch: Option<PathBuf>,
        /// JSON-RPC endpoint of the protocol chain (never printed: it may carry an API key).
        /// Needs --protocol-state, and --batch or --ipfs for the batch document.
        #[arg(long, env = env::RPC_URL, hide_env_values = true)]
        rpc_url: Option<String>,
        /// ProtocolState contract (with --rpc-url).
        #[arg(long, env = env::PROTOCOL_STATE_ADDRESS)]
        protocol_state: Option<String>,
        /// IPFS node (Kubo RPC, `POST /api/v0/cat`), with --rpc-url: the batch document when
        /// --batch is not given, and the epoch's earlier batches, to recompute the roothash.
        /// Not used offline.
        #[arg(long, env = env::IPFS_API_URL, hide_env_values = true)]
        ipfs: Option<String>,
    },
    /// Fetch a submission's proof from a sequencer's proof API and check it offline: the
    /// Merkle path, the batch bytes from IPFS (`--ipfs`), the batch and roots on chain
    /// (`--rpc-url`).
    #[command(override_usage = "seqctl proof get [OPTIONS] --url <URL> [MARKET] <EPOCH> <ID>")]
    Get {
        /// Proof API base URL (the `proof` function URL, or the local runner's HTTP address).
        #[arg(long, env = env::PROOF_API_URL, hide_env_values = true)]
        url: String,
        /// [MARKET] EPOCH ID: the data market address (default: --market), the epoch id and
        /// the submission id (UUID).
        #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
        args: Vec<String>,
        /// Data market address, when MARKET is left out.
        #[arg(long, env = env::DATA_MARKET_ADDRESS)]
        market: Option<String>,
        /// IPFS node (Kubo RPC, `POST /api/v0/cat`) to fetch the batch document from.
        #[arg(long, env = env::IPFS_API_URL, hide_env_values = true)]
        ipfs: Option<String>,
        /// JSON-RPC endpoint of the protocol chain, to check the batch is anchored there and,
        /// with --ipfs, its roots (`proof verify --rpc-url`'s checks). Needs --protocol-state.
        /// Never printed.
        #[arg(long, env = env::RPC_URL, hide_env_values = true)]
        rpc_url: Option<String>,
        /// ProtocolState contract (with --rpc-url).
        #[arg(long, env = env::PROTOCOL_STATE_ADDRESS)]
        protocol_state: Option<String>,
    },
}

/// A check that did not hold: printed, exit status 1.
#[derive(Debug)]
struct CheckFailed(String);

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckFailed {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.cmd {
        Cmd::Batch(BatchCmd::Inspect { file, previous_ids }) => {
            batch::batch_inspect(&file, previous_ids.as_deref(), json)
        }
        Cmd::Submission(SubmissionCmd::Verify {
            chain_id,
            protocol_state,
            file,
        }) => submission::submission_verify(chain_id, &protocol_state, &file, json),
        Cmd::Proof(ProofCmd::Verify {
            file,
            batch,
            rpc_url,
            protocol_state,
            ipfs,
        }) => args::chain_pair(rpc_url, protocol_state).and_then(|pair| {
            let on_chain = pair.map(|(rpc_url, protocol_state)| proof_chain::ProofOnChain {
                rpc_url,
                protocol_state,
                ipfs,
            });
            proof_verify::proof_verify(&file, batch.as_deref(), on_chain, json)
        }),
        Cmd::Proof(ProofCmd::Get {
            url,
            args,
            market,
            ipfs,
            rpc_url,
            protocol_state,
        }) => args::market_first::<2>(args, market).and_then(|(market, rest)| {
            let [epoch, id] = rest;
            let (rpc_url, protocol_state) = match args::chain_pair(rpc_url, protocol_state)? {
                Some((r, p)) => (Some(r), Some(p)),
                None => (None, None),
            };
            proof_get::proof_get(
                proof_get::ProofGet {
                    url,
                    market,
                    epoch,
                    id,
                    ipfs,
                    rpc_url,
                    protocol_state,
                },
                json,
            )
        }),
        Cmd::Audit(AuditCmd::Epoch {
            args,
            market,
            rpc_url,
            protocol_state,
            ipfs,
            chain_id,
        }) => args::market_first::<1>(args, market).and_then(|(market, [epoch])| {
            audit::audit_epoch(
                audit::AuditEpoch {
                    market,
                    epoch,
                    rpc_url,
                    protocol_state,
                    ipfs,
                    chain_id,
                },
                json,
            )
        }),
        Cmd::Chain(cmd) => chain::run(cmd, json),
        Cmd::Market(cmd) => market::run(cmd, json),
        Cmd::Epochs(cmd) => epochs::run(cmd, json),
        Cmd::Rewards(cmd) => rewards::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let failed = e.downcast_ref::<CheckFailed>().is_some();
            if json {
                println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(if failed { 1 } else { 2 })
        }
    }
}

pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}
