//! `seqctl batch inspect`: recompute a batch document's roothash and finalized-CIDs root (with
//! the epoch's earlier submission ids for a later batch); fails when the document's roothash
//! differs or its arrays are not parallel.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use serde_json::json;

use crate::{read_input, CheckFailed};

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

pub(crate) fn batch_inspect(file: &Path, previous: Option<&Path>, json: bool) -> Result<()> {
    let bytes = read_input(file)?;
    let doc: BatchDocument = serde_json::from_slice(&bytes).context("not a batch document")?;
    let previous = previous.map(previous_ids).transpose()?.unwrap_or_default();
    let roots = inspect_roots(&doc, &previous)?;
    let cid = sequencer_core::cids::document_cid(&bytes);
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
