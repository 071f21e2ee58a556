//! What the runner prints per epoch, and the checks behind it: every simulated message got the
//! outcome it should, and sampled inclusion proofs hold against the batch bytes and the chain.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::proof::{prove_inclusion, EpochBatch};
use sequencer_core::B256;
use sequencer_handlers::records::{BatchRecord, EpochRecord, Outcome, Receipt};
use sequencer_handlers::Pipeline;
use sequencer_ports::ContentStore;

use snapshotter_sim::scenario::{Expect, Sent};

/// One epoch's row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochRow {
    /// Epoch id.
    pub epoch: u64,
    /// Release block.
    pub release_block: u64,
    /// Release lag: release block − (epoch end + finality offset), in blocks (source chain =
    /// protocol chain locally).
    pub release_lag_blocks: i64,
    /// Accepted submissions.
    pub accepted: u64,
    /// Rejected by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Batches: (cid, roothash, finalized cids root, tx).
    pub batches: Vec<(String, String, String, String)>,
    /// `endBatchSubmissions` tx.
    pub end_tx: String,
    /// Window close (tick) → last transaction recorded, ms.
    pub close_to_anchor_ms: i64,
    /// Simulated messages whose outcome matched / all.
    pub outcomes_ok: (usize, usize),
    /// Proofs that verified / checked.
    pub proofs_ok: (usize, usize),
}

/// Builds the row of an anchored epoch and runs its checks.
pub async fn epoch_row(
    p: &Pipeline,
    content: &dyn ContentStore,
    rec: &EpochRecord,
    sent: &[Sent],
    proofs: usize,
    finality_offset: u64,
) -> Result<EpochRow> {
    let epoch = rec.epoch;
    let records = p.records();
    let counts = records.tally_receipts(epoch).await?;
    let bs: Vec<BatchRecord> = records
        .batches(epoch)
        .await?
        .into_iter()
        .map(|b| b.record)
        .collect();

    // Outcomes. A submission sent on both paths has two ids: one is accepted and the other a
    // `duplicate`, or both are rejected for its reason.
    let is = |r: &Option<Receipt>, e: &Expect| match (e, r) {
        (Expect::Accepted, Some(r)) => r.outcome == Outcome::Accepted,
        (Expect::Dropped(_), None) => true,
        (Expect::Rejected(why), Some(r)) => {
            r.outcome.reason().map(|reason| reason.code()) == Some(*why)
        }
        _ => false,
    };
    let mut ok = 0;
    let mut accepted_ids = std::collections::BTreeMap::new();
    for s in sent.iter().filter(|s| s.epoch == epoch) {
        let got = records.receipt(epoch, &s.id).await?;
        let (matches, alt) = match &s.alt_id {
            None => (is(&got, &s.expect), None),
            Some(alt) => {
                let other = records.receipt(epoch, alt).await?;
                let dup = Expect::Rejected("duplicate");
                let m = match s.expect {
                    Expect::Accepted => {
                        (is(&got, &s.expect) && is(&other, &dup))
                            || (is(&other, &s.expect) && is(&got, &dup))
                    }
                    // Both rejected, never counted: the copy judged second may instead meet
                    // the (project, slot) claim of the slot's accepted submission first
                    // (`duplicate`), which verify checks before the cap.
                    Expect::Rejected(_) | Expect::Dropped(_) => {
                        (is(&got, &s.expect) && (is(&other, &s.expect) || is(&other, &dup)))
                            || (is(&other, &s.expect) && is(&got, &dup))
                    }
                };
                (m, Some((alt.clone(), other)))
            }
        };
        if s.expect == Expect::Accepted {
            let winner = match &alt {
                Some((alt, other)) if is(other, &Expect::Accepted) => alt.clone(),
                _ => s.id.clone(),
            };
            accepted_ids.insert(s.id.clone(), winner);
        }
        if matches {
            ok += 1;
        } else {
            eprintln!(
                "  ! epoch {epoch} submission {}: expected {:?}, got {got:?}{}",
                s.id,
                s.expect,
                alt.map(|(a, o)| format!(" and for its gossip copy {a}: {o:?}"))
                    .unwrap_or_default()
            );
        }
    }
    let total = sent.iter().filter(|s| s.epoch == epoch).count();

    // Proofs: from the stored batch bytes, checked against the chain's record of each batch.
    let anchors = p.ports.chain.anchored(p.config.market, epoch).await?;
    let mut docs = Vec::new();
    for b in &bs {
        let bytes = content.get(&b.cid).await?.with_context(|| {
            format!(
                "batch {} ({}) missing from the content store",
                b.index, b.cid
            )
        })?;
        let doc: BatchDocument = serde_json::from_slice(&bytes).context("batch document")?;
        docs.push((bytes, doc));
    }
    let mut previous: Vec<String> = Vec::new();
    let mut chain_ok = true;
    for (b, (_, doc)) in bs.iter().zip(&docs) {
        let roots = inspect_roots(doc, &previous).context("roots")?;
        let on_chain = anchors.batch(&b.cid);
        if on_chain.map(|a| a.root) != Some(roots.finalized_cids_root)
            || doc.roothash != format!("{:#x}", roots.roothash)
        {
            eprintln!(
                "  ! epoch {epoch} batch {}: chain or document roots do not match a recomputation",
                b.index
            );
            chain_ok = false;
        }
        previous.extend(doc.submission_ids.iter().cloned());
    }
    let refs: Vec<EpochBatch> = bs
        .iter()
        .zip(&docs)
        .map(|(b, (_, d))| EpochBatch {
            index: b.index,
            cid: b.cid.clone(),
            roothash: b.roothash.parse().unwrap_or(B256::ZERO),
            submission_ids: &d.submission_ids,
            anchor_tx: b.tx_hash.as_deref().and_then(|t| t.parse().ok()),
        })
        .collect();
    let mut proofs_ok = 0;
    let sample: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.epoch == epoch && s.expect == Expect::Accepted)
        .step_by(7)
        .take(proofs)
        .collect();
    for s in &sample {
        let market = format!("{:#x}", p.config.market);
        // The id the batch holds: of a dual-path submission, the copy that was accepted.
        let id = accepted_ids.get(&s.id).unwrap_or(&s.id);
        match prove_inclusion(&market, epoch, &refs, id) {
            Some(proof) => {
                let bytes = &docs[(proof.batch_index - 1) as usize].0;
                if proof.verify_with_batch(bytes).is_ok() && chain_ok {
                    proofs_ok += 1;
                } else {
                    eprintln!("  ! epoch {epoch}: proof of {id} does not verify");
                }
            }
            None => eprintln!("  ! epoch {epoch}: accepted submission {id} is in no batch"),
        }
    }

    Ok(EpochRow {
        epoch,
        release_block: rec.release_block,
        release_lag_blocks: rec.release_block as i64 - (rec.end + finality_offset) as i64,
        accepted: counts.accepted,
        rejected: counts.rejected,
        batches: bs
            .iter()
            .map(|b| {
                (
                    b.cid.clone(),
                    b.roothash.clone(),
                    b.finalized_cids_root.clone(),
                    b.tx_hash.clone().unwrap_or_else(|| "?".into()),
                )
            })
            .collect(),
        end_tx: rec.end_tx.clone().unwrap_or_else(|| "-".into()),
        close_to_anchor_ms: match (rec.closed_at_ms, rec.anchored_at_ms) {
            (Some(c), Some(a)) => a - c,
            _ => -1,
        },
        outcomes_ok: (ok, total),
        proofs_ok: (proofs_ok, sample.len()),
    })
}

fn short(s: &str) -> String {
    if s.len() > 18 {
        format!("{}…{}", &s[..10], &s[s.len() - 6..])
    } else {
        s.to_string()
    }
}

/// Prints the table header.
pub fn print_header() {
    println!(
        "{:>5}  {:>8}  {:>4}  {:>8}  {:<58}  {:>7}  {:>9}  {:>8}  {:>7}",
        "epoch",
        "released",
        "lag",
        "accepted",
        "rejected (by reason)",
        "batches",
        "close→tx",
        "outcomes",
        "proofs"
    );
}

/// Prints one epoch: the row, then one line per batch.
pub fn print_row(r: &EpochRow) {
    let rejected = if r.rejected.is_empty() {
        "-".to_string()
    } else {
        r.rejected
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "{:>5}  {:>8}  {:>4}  {:>8}  {:<58}  {:>7}  {:>7}ms  {:>4}/{:<3}  {:>3}/{:<3}",
        r.epoch,
        r.release_block,
        r.release_lag_blocks,
        r.accepted,
        rejected,
        r.batches.len(),
        r.close_to_anchor_ms,
        r.outcomes_ok.0,
        r.outcomes_ok.1,
        r.proofs_ok.0,
        r.proofs_ok.1
    );
    for (i, (cid, root, cids_root, tx)) in r.batches.iter().enumerate() {
        println!(
            "         batch {}: {}  roothash {}  cids root {}  tx {}",
            i + 1,
            cid,
            short(root),
            short(cids_root),
            short(tx)
        );
    }
    println!("         endBatchSubmissions tx {}", short(&r.end_tx));
}
