//! `seqctl proof verify --rpc-url`: the chain half of `proof verify`: the proof's market is
//! registered, its epoch released, its batch CID one of the epoch's batch CIDs at its position,
//! and the roots the chain binds (the `finalizedCidsRoot` stored per batch; the roothash through
//! the anchored document, whose bytes hash to the anchored CID) equal the proof's. `proof get`
//! runs the same checks ([`check_on_chain`]).

use anyhow::{bail, Context, Result};
use sequencer_chain::ChainClient;
use sequencer_core::cids::document_cid;
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::proof::InclusionProof;
use sequencer_core::submission::parse_address;
use sequencer_core::B256;
use serde_json::{json, Value};

use crate::net::{base_url, chain, client, ipfs_cat, rpc_arg, runtime, scrub, url_arg};
use crate::report::Report;

/// `seqctl proof verify --rpc-url`'s chain inputs.
pub struct ProofOnChain {
    pub rpc_url: String,
    pub protocol_state: String,
    /// Kubo RPC to fetch the batch document (when `--batch` is not given) and the epoch's
    /// earlier batch documents from.
    pub ipfs: Option<String>,
}

/// `seqctl proof verify --rpc-url`: the offline checks held (`offline` is their JSON summary);
/// now against the chain. `batch` is the `--batch` document's bytes.
pub fn proof_verify_on_chain(
    proof: &InclusionProof,
    batch: Option<&[u8]>,
    a: ProofOnChain,
    offline: Value,
    json_out: bool,
) -> Result<()> {
    let rpc = a.rpc_url.clone();
    proof_verify_on_chain_inner(proof, batch, a, offline, json_out).map_err(|e| scrub(e, &rpc))
}

fn proof_verify_on_chain_inner(
    proof: &InclusionProof,
    batch: Option<&[u8]>,
    a: ProofOnChain,
    offline: Value,
    json_out: bool,
) -> Result<()> {
    let protocol_state = parse_address(&a.protocol_state)
        .with_context(|| format!("--protocol-state {:?} is not an address", a.protocol_state))?;
    rpc_arg(&a.rpc_url)?;
    let ipfs = a
        .ipfs
        .as_deref()
        .map(|u| url_arg("--ipfs", u).map(|u| base_url(&u)))
        .transpose()?;
    if batch.is_none() && ipfs.is_none() {
        bail!(
            "--rpc-url needs the batch document too (--batch FILE or --ipfs URL): the chain keeps \
             each batch's CID and finalizedCidsRoot, not the roothash; only the anchored document, \
             whose bytes hash to the anchored CID, ties the proof's roothash to the chain"
        );
    }
    runtime()?.block_on(async move {
        let http = client()?;
        let mut rep = Report::new(json_out);
        let fetched;
        let bytes = match batch {
            Some(b) => Some(b),
            None => {
                // `ipfs` is set: checked above.
                let Some(ipfs) = &ipfs else { bail!("no batch document") };
                fetched = ipfs_cat(&http, ipfs, &proof.batch_cid).await?;
                match &fetched {
                    None => rep.check(false, "batch document from IPFS", format!("{} not found", proof.batch_cid)),
                    Some(b) => match proof.verify_with_batch(b) {
                        Ok(()) => rep.check(true, "batch document from IPFS: CID of its bytes, its roothash and its listing match the proof", proof.batch_cid.clone()),
                        Err(e) => rep.check(false, "batch document from IPFS matches the proof", e.to_string()),
                    },
                }
                fetched.as_deref()
            }
        };
        let c = chain(&a.rpc_url, protocol_state).await?;
        check_on_chain(&mut rep, &c, &http, ipfs.as_ref(), proof, bytes).await?;
        let mut summary = offline;
        summary["chain_checked"] = json!(true);
        summary["chain_id"] = json!(c.chain_id());
        summary["protocol_state"] = json!(format!("{protocol_state:#x}"));
        rep.finish(summary, &format!("proof of {} against the chain", proof.submission_id))
    })
}

/// The checks of `proof` against what the chain recorded for its market and epoch. `doc` is the
/// batch document's bytes, when known (already checked against the proof offline by the caller);
/// `ipfs` serves the epoch's earlier documents, to recompute the roothash. Decided checks go into
/// `rep`; an `Err` is a chain read that failed.
pub(crate) async fn check_on_chain(
    rep: &mut Report,
    c: &ChainClient,
    http: &reqwest::Client,
    ipfs: Option<&reqwest::Url>,
    proof: &InclusionProof,
    doc: Option<&[u8]>,
) -> Result<()> {
    let epoch = proof.epoch_id;
    let Some(market) = parse_address(&proof.data_market) else {
        rep.check(false, "market is an address", proof.data_market.clone());
        return Ok(());
    };
    let info = c
        .market_info(market)
        .await
        .context("read the market from the chain")?;
    rep.check(
        info.registered,
        "market is registered on chain",
        format!(
            "{market:#x} at ProtocolState {:#x}, chain {}",
            c.protocol_state(),
            c.chain_id()
        ),
    );
    if !info.registered {
        return Ok(());
    }
    let anchors = c
        .anchored(market, epoch)
        .await
        .context("read the epoch from the chain")?;
    rep.check(
        anchors.release_block.is_some(),
        "epoch is released on chain",
        match anchors.release_block {
            Some(b) => format!("epoch {epoch} in block {b}"),
            None => format!(
                "epoch {epoch} was never released (the market's last epoch is {})",
                info.current_epoch
            ),
        },
    );
    if anchors.release_block.is_none() {
        return Ok(());
    }
    let Some(i) = anchors
        .batches
        .iter()
        .position(|b| b.batch_cid == proof.batch_cid)
    else {
        rep.check(
            false,
            "batch CID is anchored on chain for this epoch",
            format!(
                "{} is not one of epoch {epoch}'s {} batch CIDs on chain{}",
                proof.batch_cid,
                anchors.batches.len(),
                if anchors.batches.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        anchors
                            .batches
                            .iter()
                            .map(|b| b.batch_cid.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        );
        return Ok(());
    };
    let on_chain = &anchors.batches[i];
    rep.check(
        true,
        "batch CID is anchored on chain for this epoch",
        format!(
            "{} is batch {} of {} (block {})",
            proof.batch_cid,
            i + 1,
            anchors.batches.len(),
            on_chain.block
        ),
    );
    rep.check(
        i + 1 == proof.batch_index as usize,
        "batch index is its position on chain",
        format!("the proof says {}, the chain {}", proof.batch_index, i + 1),
    );
    if on_chain.delayed {
        rep.info("the batch is recorded as delayed (anchored past the batch window): the chain lists it, but does not mark its projects submitted");
    }
    match (proof.anchor_tx, on_chain.tx_hash) {
        (Some(p), Some(t)) => rep.check(
            p == t,
            "anchor transaction matches the chain",
            format!("the proof says {p}, the chain {t}"),
        ),
        (Some(p), None) => rep.info(&format!(
            "anchor transaction {p}: its log was not found, not compared"
        )),
        _ => {}
    }
    let Some(bytes) = doc else {
        rep.check(
            false,
            "roots on chain",
            "no batch document: the chain keeps the batch CID and its finalizedCidsRoot; the roothash is only tied to it by the document (--ipfs)",
        );
        return Ok(());
    };
    let cid = document_cid(bytes).to_string();
    if cid != on_chain.batch_cid {
        rep.check(
            false,
            "batch document is the anchored one",
            format!("its bytes give {cid}, the chain has {}", on_chain.batch_cid),
        );
        return Ok(());
    }
    let d: BatchDocument = match serde_json::from_slice(bytes) {
        Ok(d) => d,
        Err(e) => {
            rep.check(
                false,
                "batch document is the anchored one",
                format!("not a batch document: {e}"),
            );
            return Ok(());
        }
    };
    rep.check(
        d.roothash.parse::<B256>().ok() == Some(proof.roothash)
            && d.submission_ids.contains(&proof.submission_id),
        "anchored document carries the proof's roothash and lists the submission",
        format!("{} in {cid}", d.roothash),
    );
    // The roothash grows over the epoch's batches: recompute it from the earlier documents the
    // chain names. finalizedCidsRoot is over this batch's cids alone.
    let mut previous = Vec::new();
    let mut missing = Vec::new();
    let recompute = i == 0 || ipfs.is_some();
    if let (true, Some(ipfs)) = (i > 0, ipfs) {
        for b in &anchors.batches[..i] {
            match ipfs_cat(http, ipfs, &b.batch_cid)
                .await?
                .and_then(|x| checked_doc(&b.batch_cid, &x))
            {
                Some(pd) => previous.extend(pd.submission_ids),
                None => missing.push(b.batch_cid.clone()),
            }
        }
    }
    match inspect_roots(&d, &previous) {
        Ok(roots) => {
            rep.check(
                roots.finalized_cids_root == on_chain.root,
                "finalizedCidsRoot on chain equals the document's cids root",
                format!(
                    "the chain has {}, the document's cids give {}",
                    on_chain.root, roots.finalized_cids_root
                ),
            );
            if recompute {
                rep.check(
                    missing.is_empty() && roots.roothash == proof.roothash,
                    "roothash recomputed from this and the earlier batches on chain",
                    if !missing.is_empty() {
                        format!(
                            "earlier batch documents missing or altered: {}",
                            missing.join(", ")
                        )
                    } else {
                        format!(
                            "{} over {} ids of batches 1..={}",
                            roots.roothash,
                            previous.len() + d.submission_ids.len(),
                            i + 1
                        )
                    },
                );
            } else {
                rep.info(&format!(
                    "roothash not recomputed over batches 1..={i} (give --ipfs to fetch them): the anchored document's is used"
                ));
            }
        }
        Err(e) => rep.check(false, "roots recomputed", e.to_string()),
    }
    Ok(())
}

/// The document when `bytes` hash to `cid` and parse.
fn checked_doc(cid: &str, bytes: &[u8]) -> Option<BatchDocument> {
    (document_cid(bytes).to_string() == cid)
        .then(|| serde_json::from_slice(bytes).ok())
        .flatten()
}
