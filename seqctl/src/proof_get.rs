//! `seqctl proof get`: fetch a submission's inclusion proof from a sequencer's proof API, then
//! check it offline (the same checks as `proof verify`), against the batch bytes from IPFS and
//! what the chain recorded for the epoch, when given. Trusts the sequencer for nothing.

use anyhow::{bail, Context, Result};
use sequencer_core::proof::InclusionProof;
use sequencer_core::submission::parse_address;
use serde_json::{json, Value};

use crate::args::{epoch_arg, id_arg, market_arg};
use crate::net::{base_url, chain, client, ipfs_cat, read_body, runtime, scrub, url_arg};
use crate::proof_chain::check_on_chain;
use crate::report::Report;
use crate::CheckFailed;

/// `seqctl proof get`'s inputs.
pub struct ProofGet {
    pub url: String,
    pub market: String,
    pub epoch: String,
    pub id: String,
    pub ipfs: Option<String>,
    pub rpc_url: Option<String>,
    pub protocol_state: Option<String>,
}

/// `seqctl proof get`.
pub fn proof_get(a: ProofGet, json_out: bool) -> Result<()> {
    let rpc = a.rpc_url.clone().unwrap_or_default();
    proof_get_inner(a, json_out).map_err(|e| if rpc.is_empty() { e } else { scrub(e, &rpc) })
}

fn proof_get_inner(a: ProofGet, json_out: bool) -> Result<()> {
    let market = market_arg(&a.market)?;
    let epoch = epoch_arg(&a.epoch)?;
    let id = id_arg(&a.id)?;
    let api = base_url(&url_arg("--url", &a.url)?);
    let ipfs = a
        .ipfs
        .as_deref()
        .map(|u| url_arg("--ipfs", u).map(|u| base_url(&u)))
        .transpose()?;
    let protocol_state = match (&a.rpc_url, &a.protocol_state) {
        (Some(_), Some(p)) => Some(
            parse_address(p)
                .with_context(|| format!("--protocol-state {p:?} is not an address"))?,
        ),
        (Some(_), None) => bail!("--rpc-url needs --protocol-state"),
        (None, _) => None,
    };
    runtime()?.block_on(async move {
        let http = client()?;
        let url = api
            .join(&format!("v1/markets/{market:#x}/epochs/{epoch}/submissions/{id}"))
            .context("proof URL")?;
        let r = http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = r.status();
        let body = read_body(r, "proof API").await?;
        let v: Value = serde_json::from_slice(&body).with_context(|| {
            format!("{url}: HTTP {status}, not JSON: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>())
        })?;
        if !status.is_success() {
            let code = v["error"]["code"].as_str().unwrap_or("?");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            if status == reqwest::StatusCode::NOT_FOUND {
                bail!(CheckFailed(format!("the sequencer knows no such submission ({code}): {msg}")));
            }
            bail!("the sequencer answered HTTP {status} ({code}): {msg}");
        }
        let fate = v["fate"].as_str().unwrap_or("?").to_string();
        let mut rep = Report::new(json_out);
        rep.info(&format!("fate {fate}: {}", v["message"].as_str().unwrap_or("")));
        let Some(proof_v) = v.get("proof").filter(|p| !p.is_null()) else {
            let why = match fate.as_str() {
                "rejected" => format!(
                    "the submission was rejected ({}) at {} ms: there is no proof",
                    v["reason"].as_str().unwrap_or("?"),
                    v["at_ms"]
                ),
                "accepted" => "the submission was accepted but is not in an anchored batch yet: no proof yet".into(),
                other => format!("no proof: the submission is {other}"),
            };
            if json_out {
                println!("{}", json!({"ok": false, "fate": fate, "answer": v, "error": why}));
            }
            bail!(CheckFailed(why));
        };
        let proof: InclusionProof = serde_json::from_value(proof_v.clone())
            .context("the sequencer's proof is not an inclusion-proof document")?;
        // The answer must be about what was asked.
        rep.check(
            proof.submission_id == id
                && proof.epoch_id == epoch
                && parse_address(&proof.data_market) == Some(market),
            "proof is for the submission asked",
            format!("{} epoch {} market {}", proof.submission_id, proof.epoch_id, proof.data_market),
        );
        rep.check(
            fate == "included",
            "sequencer says included and anchored",
            fate.clone(),
        );
        // The path from the id to the roothash: `proof verify`.
        match proof.verify() {
            Ok(()) => rep.check(true, "Merkle path leads to the roothash", format!("leaf {} under {}", proof.leaf_index, proof.roothash)),
            Err(e) => rep.check(false, "Merkle path leads to the roothash", e.to_string()),
        }
        let mut doc_bytes: Option<Vec<u8>> = None;
        if let Some(ipfs) = &ipfs {
            match ipfs_cat(&http, ipfs, &proof.batch_cid).await? {
                None => rep.check(false, "batch document from IPFS", format!("{} not found", proof.batch_cid)),
                Some(bytes) => {
                    match proof.verify_with_batch(&bytes) {
                        Ok(()) => rep.check(true, "batch document: CID of its bytes, its roothash and its listing match the proof", proof.batch_cid.clone()),
                        Err(e) => rep.check(false, "batch document matches the proof", e.to_string()),
                    }
                    doc_bytes = Some(bytes);
                }
            }
        }
        if let (Some(rpc), Some(ps)) = (&a.rpc_url, protocol_state) {
            let c = chain(rpc, ps).await?;
            check_on_chain(&mut rep, &c, &http, ipfs.as_ref(), &proof, doc_bytes.as_deref()).await?;
        }
        rep.finish(
            json!({"fate": fate, "submission_id": id, "batch_index": proof.batch_index,
                   "batch_cid": proof.batch_cid, "leaf_index": proof.leaf_index,
                   "roothash": proof.roothash.to_string(), "anchor_tx": proof.anchor_tx,
                   "batch_checked": ipfs.is_some(), "chain_checked": a.rpc_url.is_some()}),
            &format!("proof of {id}"),
        )
    })
}
