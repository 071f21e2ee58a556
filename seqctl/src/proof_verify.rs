//! `seqctl proof verify`: an inclusion-proof document's Merkle path, with `--batch` against the
//! batch document's exact bytes, and with `--rpc-url` against the chain ([`crate::proof_chain`]).

use std::path::Path;

use anyhow::{Context, Result};
use sequencer_core::proof::InclusionProof;
use serde_json::json;

use crate::proof_chain::{self, ProofOnChain};
use crate::{read_input, CheckFailed};

/// Printed (and in `--json`, `"chain": …`) when a proof is checked offline only.
const NOT_ON_CHAIN: &str = "not checked against the chain (give --rpc-url and --protocol-state): \
     a self-made tree and document pass these checks";

pub(crate) fn proof_verify(
    file: &Path,
    batch: Option<&Path>,
    on_chain: Option<ProofOnChain>,
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
        Some(c) => {
            proof_chain::proof_verify_on_chain(&proof, batch_bytes.as_deref(), c, summary, json)
        }
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
