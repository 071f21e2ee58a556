//! `seqctl audit epoch`: recompute an epoch from the chain and the batch documents alone, as a
//! validator does: each batch's CID from its bytes, both roots, one batch per project, every
//! listed submission's EIP-712 signer against its slot's owner on chain and its header inside
//! the window, the plurality per project.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Context, Result};
use sequencer_chain::{Address, EpochAnchors};
use sequencer_core::cids::{canonical_cid, document_cid};
use sequencer_core::eip712::{Domain, Verifier};
use sequencer_core::finalize::{consensus, inspect_roots, Accepted, BatchDocument};
use sequencer_core::submission::{parse_address, SnapshotSubmission};
use sequencer_core::B256;
use serde_json::json;

use crate::args::{epoch_arg, market_arg};
use crate::net::{base_url, chain, client, ipfs_cat, rpc_arg, runtime, scrub, url_arg};
use crate::report::Report;
use crate::CheckFailed;

/// `seqctl audit epoch`'s inputs.
pub struct AuditEpoch {
    pub market: String,
    pub epoch: String,
    pub rpc_url: String,
    pub protocol_state: String,
    pub ipfs: String,
    pub chain_id: Option<u64>,
}

/// `seqctl audit epoch`.
pub fn audit_epoch(a: AuditEpoch, json_out: bool) -> Result<()> {
    let rpc = a.rpc_url.clone();
    audit_epoch_inner(a, json_out).map_err(|e| scrub(e, &rpc))
}

fn audit_epoch_inner(a: AuditEpoch, json_out: bool) -> Result<()> {
    let market = market_arg(&a.market)?;
    let epoch = epoch_arg(&a.epoch)?;
    let protocol_state = parse_address(&a.protocol_state)
        .with_context(|| format!("--protocol-state {:?} is not an address", a.protocol_state))?;
    let ipfs = base_url(&url_arg("--ipfs", &a.ipfs)?);
    rpc_arg(&a.rpc_url)?;
    runtime()?.block_on(async move {
        let http = client()?;
        let c = chain(&a.rpc_url, protocol_state).await?;
        let chain_id = a.chain_id.unwrap_or_else(|| c.chain_id());
        let verifier = Verifier::new(Domain { chain_id, verifying_contract: protocol_state });
        let anchors: EpochAnchors = c.anchored(market, epoch).await.context("read the epoch from the chain")?;
        let mut rep = Report::new(json_out);
        let Some(release) = anchors.release_block else {
            if json_out {
                println!("{}", json!({"ok": false, "market": format!("{market:#x}"), "epoch": epoch, "error": "epoch not released"}));
            }
            bail!(CheckFailed(format!(
                "epoch {epoch} of market {market:#x} was never released on chain {chain_id} (ProtocolState {protocol_state:#x}): nothing to audit"
            )));
        };
        // The windows the epoch was released under; a contract without `epochWindows` keeps
        // only the market's current ones, which an audit then says it used.
        let windows = match c.epoch_windows(market, epoch).await.context("epochWindows")? {
            Some(w) => w,
            None => {
                rep.info("this contract keeps no per-epoch windows: using the market's current window");
                c.submission_window(market).await.context("snapshotSubmissionWindow")?
            }
        };
        let window_end = release.saturating_add(windows.snapshot_blocks);
        rep.info(&format!(
            "epoch {epoch} of market {market:#x}: released in block {release}, window [{release}, {window_end}], {} batches on chain, batch submissions {}",
            anchors.batches.len(),
            if anchors.ended { "ended" } else { "not ended" }
        ));
        let mut previous: Vec<String> = Vec::new();
        let mut seen_projects: HashMap<String, usize> = HashMap::new();
        let mut seen_ids: HashSet<String> = HashSet::new();
        let mut owners: HashMap<u64, Address> = HashMap::new();
        let mut headers: HashMap<String, Option<u64>> = HashMap::new();
        let mut last_pid: Option<String> = None;
        for (i, b) in anchors.batches.iter().enumerate() {
            let n = i + 1;
            let Some(bytes) = ipfs_cat(&http, &ipfs, &b.batch_cid).await? else {
                rep.check(false, &format!("batch {n}: document on IPFS"), format!("{} not found", b.batch_cid));
                continue;
            };
            let cid = document_cid(&bytes).to_string();
            rep.check(cid == b.batch_cid, &format!("batch {n}: CID of its bytes"), if cid == b.batch_cid { cid.clone() } else { format!("bytes give {cid}, the chain says {}", b.batch_cid) });
            let doc: BatchDocument = match serde_json::from_slice(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    rep.check(false, &format!("batch {n}: is a batch document"), e.to_string());
                    continue;
                }
            };
            let parallel = doc.submission_ids.len() == doc.submissions.len() && doc.pids.len() == doc.cids.len();
            rep.check(parallel, &format!("batch {n}: arrays are parallel"), format!("{} ids, {} submissions, {} pids, {} cids", doc.submission_ids.len(), doc.submissions.len(), doc.pids.len(), doc.cids.len()));
            match inspect_roots(&doc, &previous) {
                Ok(roots) => {
                    let doc_root = doc.roothash.parse::<B256>().ok();
                    rep.check(doc_root == Some(roots.roothash), &format!("batch {n}: roothash over the ids of batches 1..={n}"), if doc_root == Some(roots.roothash) { roots.roothash.to_string() } else { format!("the document says {}, its ids give {}", doc.roothash, roots.roothash) });
                    rep.check(roots.finalized_cids_root == b.root, &format!("batch {n}: finalizedCidsRoot on chain"), if roots.finalized_cids_root == b.root { b.root.to_string() } else { format!("the chain has {}, the document's cids give {}", b.root, roots.finalized_cids_root) });
                }
                Err(e) => rep.check(false, &format!("batch {n}: roots"), e.to_string()),
            }
            // Projects: sorted, across batches too, and each in one batch only.
            let mut dup = Vec::new();
            let mut sorted = true;
            for pid in &doc.pids {
                if let Some(prev) = seen_projects.insert(pid.clone(), n) {
                    dup.push(format!("{pid} (also in batch {prev})"));
                }
                if last_pid.as_deref().is_some_and(|l| l >= pid.as_str()) {
                    sorted = false;
                }
                last_pid = Some(pid.clone());
            }
            rep.check(dup.is_empty(), &format!("batch {n}: each project in one batch only"), dup.join(", "));
            rep.check(sorted, &format!("batch {n}: projects in byte order"), "");
            // Submissions.
            let mut accepted: Vec<Accepted> = Vec::new();
            let mut bad_sig = Vec::new();
            let mut bad_window = Vec::new();
            let mut bad_fields = Vec::new();
            let pids: HashSet<&String> = doc.pids.iter().collect();
            for (sid, text) in doc.submission_ids.iter().zip(&doc.submissions) {
                if !seen_ids.insert(sid.clone()) {
                    bad_fields.push(format!("{sid}: id listed twice"));
                }
                let sub: SnapshotSubmission = match serde_json::from_str(text) {
                    Ok(s) => s,
                    Err(e) => {
                        bad_fields.push(format!("{sid}: not a submission ({e})"));
                        continue;
                    }
                };
                let r = &sub.request;
                if r.epoch_id != epoch || parse_address(&sub.data_market) != Some(market) || !pids.contains(&r.project_id) {
                    bad_fields.push(format!("{sid}: epoch {} market {} project {} do not belong here", r.epoch_id, sub.data_market, r.project_id));
                }
                let owner = match owners.get(&r.slot_id) {
                    Some(o) => *o,
                    None => {
                        let o = c.slot_owner(r.slot_id).await.context("slot owner")?;
                        owners.insert(r.slot_id, o);
                        o
                    }
                };
                match verifier.recover(&sub) {
                    Ok(rec) if rec.signer == owner && owner != Address::ZERO => {}
                    Ok(rec) => bad_sig.push(format!("{sid}: signer {} is not slot {}'s owner {}", rec.signer, r.slot_id, owner)),
                    Err(e) => bad_sig.push(format!("{sid}: {e}")),
                }
                let header = sub.header.to_ascii_lowercase();
                let block = match headers.get(&header) {
                    Some(b) => *b,
                    None => {
                        let b = match header.parse::<B256>() {
                            Ok(h) => c.block_number(h).await.context("header block")?,
                            Err(_) => None,
                        };
                        headers.insert(header.clone(), b);
                        b
                    }
                };
                match block {
                    Some(bn) if (release..=window_end).contains(&bn) => {}
                    Some(bn) => bad_window.push(format!("{sid}: header is block {bn}, outside [{release}, {window_end}]")),
                    None => bad_window.push(format!("{sid}: header {header} is no block of this chain")),
                }
                let mut s = sub.clone();
                s.request.snapshot_cid = canonical_cid(&s.request.snapshot_cid);
                accepted.push(Accepted { submission_id: sid.clone(), submission: s });
            }
            let listed = doc.submission_ids.len();
            rep.check(bad_fields.is_empty(), &format!("batch {n}: {listed} submissions belong to this market, epoch and batch, ids unique"), bad_fields.join("; "));
            rep.check(bad_sig.is_empty(), &format!("batch {n}: every EIP-712 signer is its slot's owner on chain"), bad_sig.join("; "));
            rep.check(bad_window.is_empty(), &format!("batch {n}: every header inside the window"), bad_window.join("; "));
            let votes = consensus(&accepted);
            let mut wrong = Vec::new();
            for (pid, cid) in doc.pids.iter().zip(&doc.cids) {
                match votes.get(pid) {
                    Some(v) if v.cid == canonical_cid(cid) => {}
                    Some(v) => wrong.push(format!("{pid}: listed {cid}, plurality {} ({}/{})", v.cid, v.votes, v.total)),
                    None => wrong.push(format!("{pid}: no submission listed")),
                }
            }
            rep.check(wrong.is_empty(), &format!("batch {n}: cids are the plurality per project"), wrong.join("; "));
            previous.extend(doc.submission_ids);
        }
        if anchors.batches.is_empty() {
            rep.info("no batches anchored for this epoch: nothing to recompute");
        }
        let by_batch: BTreeMap<usize, usize> = seen_projects.values().fold(BTreeMap::new(), |mut m, b| {
            *m.entry(*b).or_default() += 1;
            m
        });
        rep.finish(
            json!({"market": format!("{market:#x}"), "epoch": epoch, "release_block": release,
                   "window_end": window_end, "batches": anchors.batches.len(),
                   "projects": seen_projects.len(), "submissions": seen_ids.len(),
                   "projects_per_batch": by_batch, "ended": anchors.ended}),
            &format!("audit of epoch {epoch}"),
        )
    })
}
