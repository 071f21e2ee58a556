//! `seqctl`: the sequencer's command line for operators and snapshotters.
//! Offline: recompute a batch document's roots, verify a submission's EIP-712
//! signature, verify an inclusion proof. Against others, trusting none of them: fetch
//! a proof from a sequencer and check it against IPFS and the chain (`proof get`),
//! recompute an epoch from the chain and IPFS alone (`audit epoch`). Exit status 0
//! means the check held; 1 means it did not (the reason is printed); 2 is a usage or
//! input error.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sequencer_core::collect::CollectMessage;
use sequencer_core::eip712::{Domain, Verifier};
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::proof::InclusionProof;
use sequencer_core::submission::{parse_address, SnapshotSubmission};
use serde_json::json;

mod chain;
mod market;
mod remote;

#[derive(Parser)]
#[command(name = "seqctl", version, about = "Submission sequencer command line")]
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
    /// Recompute what a sequencer did from the chain and IPFS alone.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// A market's kit for snapshotter operators.
    #[command(subcommand)]
    Market(market::MarketCmd),
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Recompute an epoch from the chain and the batch documents: each batch's CID from its
    /// bytes, both roots, one batch per project, every listed submission's EIP-712 signer
    /// against its slot's owner and its header inside the window, the plurality per project.
    Epoch {
        /// Data market address.
        market: String,
        /// Epoch id.
        epoch: String,
        /// JSON-RPC endpoint of the protocol chain.
        #[arg(long, env = "RPC_URL")]
        rpc_url: String,
        /// ProtocolState contract (also the EIP-712 verifying contract).
        #[arg(long, env = "PROTOCOL_STATE_ADDRESS")]
        protocol_state: String,
        /// IPFS node (Kubo RPC, `POST /api/v0/cat`) holding the batch documents.
        #[arg(long, env = "IPFS_API_URL")]
        ipfs: String,
        /// EIP-712 chain id (default: the RPC's chain id).
        #[arg(long)]
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
        #[arg(long)]
        chain_id: u64,
        /// ProtocolState contract address (the EIP-712 verifying contract).
        #[arg(long)]
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
        #[arg(long, requires = "protocol_state")]
        rpc_url: Option<String>,
        /// ProtocolState contract (with --rpc-url).
        #[arg(long, requires = "rpc_url")]
        protocol_state: Option<String>,
        /// IPFS node (Kubo RPC, `POST /api/v0/cat`), with --rpc-url: the batch document when
        /// --batch is not given, and the epoch's earlier batches, to recompute the roothash.
        #[arg(long, requires = "rpc_url")]
        ipfs: Option<String>,
    },
    /// Fetch a submission's proof from a sequencer's proof API and check it offline: the
    /// Merkle path, the batch bytes from IPFS (`--ipfs`), the batch and roots on chain
    /// (`--rpc-url`).
    Get {
        /// Proof API base URL (the `proof` function URL, or the local runner's HTTP address).
        #[arg(long)]
        url: String,
        /// Data market address.
        market: String,
        /// Epoch id.
        epoch: String,
        /// Submission id (UUID).
        id: String,
        /// IPFS node (Kubo RPC, `POST /api/v0/cat`) to fetch the batch document from.
        #[arg(long)]
        ipfs: Option<String>,
        /// JSON-RPC endpoint of the protocol chain, to check the batch is anchored there and,
        /// with --ipfs, its roots (`proof verify --rpc-url`'s checks). Never printed.
        #[arg(long, requires = "protocol_state")]
        rpc_url: Option<String>,
        /// ProtocolState contract (with --rpc-url).
        #[arg(long)]
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
            batch_inspect(&file, previous_ids.as_deref(), json)
        }
        Cmd::Submission(SubmissionCmd::Verify {
            chain_id,
            protocol_state,
            file,
        }) => submission_verify(chain_id, &protocol_state, &file, json),
        Cmd::Proof(ProofCmd::Verify {
            file,
            batch,
            rpc_url,
            protocol_state,
            ipfs,
        }) => {
            let on_chain = match (rpc_url, protocol_state) {
                (Some(rpc_url), Some(protocol_state)) => Some(remote::ProofOnChain {
                    rpc_url,
                    protocol_state,
                    ipfs,
                }),
                // clap requires both together.
                _ => None,
            };
            proof_verify(&file, batch.as_deref(), on_chain, json)
        }
        Cmd::Proof(ProofCmd::Get {
            url,
            market,
            epoch,
            id,
            ipfs,
            rpc_url,
            protocol_state,
        }) => remote::proof_get(
            remote::ProofGet {
                url,
                market,
                epoch,
                id,
                ipfs,
                rpc_url,
                protocol_state,
            },
            json,
        ),
        Cmd::Audit(AuditCmd::Epoch {
            market,
            epoch,
            rpc_url,
            protocol_state,
            ipfs,
            chain_id,
        }) => remote::audit_epoch(
            remote::AuditEpoch {
                market,
                epoch,
                rpc_url,
                protocol_state,
                ipfs,
                chain_id,
            },
            json,
        ),
        Cmd::Chain(cmd) => chain::run(cmd, json),
        Cmd::Market(cmd) => market::run(cmd, json),
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

fn read_input(path: &Path) -> Result<Vec<u8>> {
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

fn previous_ids(path: &Path) -> Result<Vec<String>> {
    let bytes = read_input(path)?;
    let text = String::from_utf8(bytes).context("previous ids are not UTF-8")?;
    if let Ok(ids) = serde_json::from_str::<Vec<String>>(&text) {
        return Ok(ids);
    }
    if let Ok(doc) = serde_json::from_str::<BatchDocument>(&text) {
        return Ok(doc.submission_ids);
    }
    if let Ok(docs) = serde_json::from_str::<Vec<BatchDocument>>(&text) {
        return Ok(docs.into_iter().flat_map(|d| d.submission_ids).collect());
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn batch_inspect(file: &Path, previous: Option<&Path>, json: bool) -> Result<()> {
    let bytes = read_input(file)?;
    let doc: BatchDocument = serde_json::from_slice(&bytes).context("not a batch document")?;
    let previous = previous.map(previous_ids).transpose()?.unwrap_or_default();
    let roots = inspect_roots(&doc, &previous)?;
    let cid = sequencer_core::cids::raw_cid(&bytes);
    let matches = doc.roothash.parse().ok() == Some(roots.roothash);
    if json {
        println!(
            "{}",
            json!({
                "ok": matches,
                "roothash": roots.roothash.to_string(),
                "finalized_cids_root": roots.finalized_cids_root.to_string(),
                "document_roothash": doc.roothash,
                "cid": cid.to_string(),
                "submissions": doc.submission_ids.len(),
                "previous_ids": previous.len(),
                "projects": doc.pids.len(),
            })
        );
    } else {
        println!("roothash {}", roots.roothash);
        println!("finalized_cids_root {}", roots.finalized_cids_root);
        println!("cid {cid}");
        println!(
            "submissions {} projects {}",
            doc.submission_ids.len(),
            doc.pids.len()
        );
    }
    if doc.submission_ids.len() != doc.submissions.len() || doc.pids.len() != doc.cids.len() {
        bail!(CheckFailed(format!(
            "arrays are not parallel: {} submissionIDs vs {} submissions, {} pids vs {} cids",
            doc.submission_ids.len(),
            doc.submissions.len(),
            doc.pids.len(),
            doc.cids.len()
        )));
    }
    if !matches {
        bail!(CheckFailed(format!(
            "roothash differs: the document says {}, its ids give {}{}",
            doc.roothash,
            roots.roothash,
            if previous.is_empty() {
                " (if this is not the epoch's first batch, pass --previous-ids)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

fn submission_verify(chain_id: u64, protocol_state: &str, file: &Path, json: bool) -> Result<()> {
    let verifying_contract = parse_address(protocol_state)
        .with_context(|| format!("--protocol-state {protocol_state:?} is not an address"))?;
    let bytes = read_input(file)?;
    let trimmed = bytes.trim_ascii();
    let submission: SnapshotSubmission = if trimmed.first() == Some(&b'{') {
        serde_json::from_slice(trimmed).context("not a submission")?
    } else {
        CollectMessage::parse(trimmed)
            .context("not a /collect message")?
            .submission
    };
    let verifier = Verifier::new(Domain {
        chain_id,
        verifying_contract,
    });
    let digest = verifier.digest(&submission.request);
    match verifier.recover(&submission) {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "digest": digest.to_string(), "signer": r.signer.to_checksum(None)})
                );
            } else {
                println!("digest {digest}");
                println!("signer {}", r.signer.to_checksum(None));
            }
            Ok(())
        }
        Err(e) => {
            if !json {
                println!("digest {digest}");
            }
            bail!(CheckFailed(format!(
                "invalid signature ({}): {e}",
                e.reason()
            )))
        }
    }
}

/// Printed (and in `--json`, `"chain": …`) when a proof is checked offline only.
const NOT_ON_CHAIN: &str = "not checked against the chain (give --rpc-url and --protocol-state): \
     a self-made tree and document pass these checks";

fn proof_verify(
    file: &Path,
    batch: Option<&Path>,
    on_chain: Option<remote::ProofOnChain>,
    json: bool,
) -> Result<()> {
    let proof: InclusionProof =
        serde_json::from_slice(&read_input(file)?).context("not an inclusion-proof document")?;
    let batch_bytes = batch.map(read_input).transpose()?;
    let result = match &batch_bytes {
        Some(b) => proof.verify_with_batch(b),
        None => proof.verify(),
    };
    result.map_err(|e| CheckFailed(format!("proof does not hold: {e}")))?;
    let summary = json!({"submission_id": proof.submission_id, "data_market": proof.data_market,
                         "epoch_id": proof.epoch_id, "batch_index": proof.batch_index,
                         "batch_cid": proof.batch_cid, "leaf_index": proof.leaf_index,
                         "roothash": proof.roothash.to_string(), "batch_checked": batch.is_some()});
    if !json {
        println!(
            "ok submission {} is leaf {} under roothash {} (batch {} {})",
            proof.submission_id,
            proof.leaf_index,
            proof.roothash,
            proof.batch_index,
            proof.batch_cid
        );
    }
    match on_chain {
        Some(c) => remote::proof_verify_on_chain(&proof, batch_bytes.as_deref(), c, summary, json),
        None => {
            if json {
                let mut s = summary;
                s["ok"] = json!(true);
                s["chain_checked"] = json!(false);
                s["chain"] = json!(NOT_ON_CHAIN);
                println!("{s}");
            } else {
                println!("{NOT_ON_CHAIN}");
            }
            Ok(())
        }
    }
}
