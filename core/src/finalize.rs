//! Finalization of an epoch (docs/protocol.md §6): the plurality CID per project,
//! projects sorted and cut into batches, canonical batch documents, their CIDs and
//! both Merkle roots.
//!
//! Everything here depends only on the *set* of accepted submissions: inputs are
//! sorted first, so any arrival order gives byte-identical batches.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::anchor_gas;
use crate::cids::{document_cid, Cid};
use crate::merkle::{self, IncrementalTree, TreeFull};
use crate::rewards::EpochCut;
use crate::submission::SnapshotSubmission;

/// Default ceiling on projects per batch: above what the default gas budget and 256 KiB allow
/// (about 100 projects each), so by default gas and bytes decide.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Default cap on one batch document's JSON: one IPFS chunk, so its CID is the raw
/// CID of its bytes (a single project larger than that gets a UnixFS CID, docs/protocol.md §6).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 256 * 1024;
/// Default gas budget of one batch's `submitSubmissionBatch` ([`crate::anchor_gas`]): four
/// batches fill a 30 M-gas block with the chain client's default 5 % gas-limit margin. A block
/// takes a transaction while the gas used before it plus its limit fit, so k batches of g gas
/// fit when (k − 1 + 1.05) × g ≤ 30 M: four of 7.3 M (29.6 M; the receipts are about 1 %
/// below the model). Three of 9.3 M at a 20 % margin filled 28 M and lost more: a batch cut
/// smaller by `MAX_BATCH_BYTES` (about 7.5 M at 80 projects of five submissions) fell between
/// the two and only three fit a block (42 blocks for 10 000 projects whose gas needs 32,
/// measured on anvil; 34 or 35 now, docs/benchmarks.md). About 78 projects.
pub const DEFAULT_MAX_BATCH_GAS: u64 = 7_300_000;

/// Finalization settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalizeConfig {
    /// At most this many projects per batch.
    pub batch_size: usize,
    /// At most this many bytes of batch JSON. A single project whose submissions
    /// alone exceed it still gets a batch of its own: projects are never split or
    /// dropped.
    pub max_batch_bytes: usize,
    /// At most this much gas to anchor a batch, as [`crate::anchor_gas::batch_gas`] estimates
    /// it (an upper bound of the receipt). A project over it on its own still gets a batch.
    pub max_batch_gas: u64,
    /// Projects with fewer accepted submissions are not finalized.
    pub min_submissions: usize,
}

impl Default for FinalizeConfig {
    fn default() -> Self {
        FinalizeConfig {
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_gas: DEFAULT_MAX_BATCH_GAS,
            min_submissions: 1,
        }
    }
}

/// One accepted submission, as the state store hands it to finalization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub submission_id: String,
    pub submission: SnapshotSubmission,
}

impl Accepted {
    fn project(&self) -> &str {
        &self.submission.request.project_id
    }
    fn slot(&self) -> u64 {
        self.submission.request.slot_id
    }
    fn cid(&self) -> &str {
        &self.submission.request.snapshot_cid
    }
}

/// The consensus of one project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectConsensus {
    pub project_id: String,
    /// The plurality CID; ties go to the lexicographically smallest.
    pub cid: String,
    /// Submissions that named `cid`.
    pub votes: usize,
    /// All accepted submissions of the project.
    pub total: usize,
}

/// The batch document, keys and order exactly as docs/protocol.md §6.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDocument {
    #[serde(rename = "submissionIDs")]
    pub submission_ids: Vec<String>,
    pub submissions: Vec<String>,
    pub roothash: String,
    pub pids: Vec<String>,
    pub cids: Vec<String>,
}

impl BatchDocument {
    /// Canonical bytes: compact JSON, keys in the order above.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Strings and vectors of strings always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One finalized batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// 1-based position in the epoch.
    pub index: u32,
    pub document: BatchDocument,
    /// [`BatchDocument::to_canonical_json`], what is uploaded.
    pub json: Vec<u8>,
    /// [`document_cid`] of `json`: `CIDv1(raw, sha2-256(json))` up to 256 KiB, the UnixFS root
    /// above.
    pub cid: Cid,
    /// Published root of the submission-id tree over batches 1..=index.
    pub roothash: B256,
    /// Published root of the tree over this batch's `cids` (sent on chain).
    pub finalized_cids_root: B256,
    /// Index, in the epoch's submission-id tree, of this batch's first id.
    pub first_leaf_index: u64,
}

/// The result of finalizing one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizedEpoch {
    pub batches: Vec<Batch>,
    /// Projects below the minimum, not finalized.
    pub below_minimum: Vec<String>,
    /// Submissions dropped because another one already held their (project, slot);
    /// the smallest submission id is kept. The state store's first-wins rule makes
    /// this zero in practice.
    pub duplicates_dropped: usize,
    /// Simulation submissions (`epochId` 0) left out: they are never batched.
    pub simulations_skipped: usize,
}

/// Why an epoch cannot be finalized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FinalizeError {
    #[error(transparent)]
    TreeFull(#[from] TreeFull),
    #[error("batch_size must be at least 1")]
    ZeroBatchSize,
}

/// Plurality per project, ties to the smallest CID. `subs` need not be sorted.
pub fn consensus(subs: &[Accepted]) -> BTreeMap<String, ProjectConsensus> {
    consensus_of(subs)
}

fn consensus_of<'a>(
    subs: impl IntoIterator<Item = &'a Accepted>,
) -> BTreeMap<String, ProjectConsensus> {
    // Votes are counted in the canonical spelling (CIDv1, lower-case base32), so other spellings
    // of one CID are one vote and cannot win a tie by sorting first (docs/protocol.md §6).
    let mut counts: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for s in subs {
        *counts
            .entry(s.project())
            .or_default()
            .entry(crate::cids::canonical_cid(s.cid()))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(project, cids)| {
            let total = cids.values().sum();
            // BTreeMap iterates CIDs in ascending order; keep the first maximum.
            let (cid, votes) =
                cids.into_iter().fold(
                    (String::new(), 0),
                    |best, (cid, n)| {
                        if n > best.1 {
                            (cid, n)
                        } else {
                            best
                        }
                    },
                );
            (
                project.to_string(),
                ProjectConsensus {
                    project_id: project.to_string(),
                    cid,
                    votes,
                    total,
                },
            )
        })
        .collect()
}

/// Counts the bytes written through it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// JSON-encoded length of a string (quotes and escapes included), as serde_json writes it,
/// without building the encoded copy.
fn json_str_len(s: &str) -> usize {
    let mut n = ByteCount(0);
    match serde_json::to_writer(&mut n, s) {
        Ok(()) => n.0,
        Err(_) => usize::MAX / 4,
    }
}

/// One project's part of a batch: its consensus and its listed submissions (ids and texts).
struct ProjectPart {
    consensus: ProjectConsensus,
    ids: Vec<String>,
    texts: Vec<String>,
    /// Bytes this project adds to a batch document, separators included.
    bytes: usize,
}

/// Bytes of `{"submissionIDs":[],"submissions":[],"roothash":"0x…64","pids":[],"cids":[]}`.
const DOC_OVERHEAD: usize =
    r#"{"submissionIDs":[],"submissions":[],"roothash":"","pids":[],"cids":[]}"#.len() + 66;

/// What one project adds to a batch: bytes of batch JSON (separators included) and anchoring
/// gas ([`anchor_gas::project_gas`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartCost {
    /// Bytes of the batch document.
    pub bytes: usize,
    /// Gas of `submitSubmissionBatch`.
    pub gas: u64,
}

/// Cuts projects, in their order, into consecutive batches and returns the batch sizes: each
/// batch takes projects while it stays within all three limits (`batch_size` projects,
/// `max_batch_bytes` of JSON with the document's own overhead, `max_batch_gas` with the
/// transaction's own [`anchor_gas::BATCH_BASE_GAS`]); a project over a limit on its own gets
/// a batch of its own (never split, never dropped). Greedy, so no cut in this order has fewer
/// batches, and the epoch's anchoring takes as few transactions, and blocks, as its gas allows.
pub fn cut_batches(parts: &[PartCost], config: &FinalizeConfig) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut start = 0;
    while start < parts.len() {
        let mut end = start;
        let mut bytes = DOC_OVERHEAD;
        let mut gas = anchor_gas::BATCH_BASE_GAS;
        while end < parts.len()
            && end - start < config.batch_size.max(1)
            && (end == start
                || (bytes + parts[end].bytes <= config.max_batch_bytes
                    && gas + parts[end].gas <= config.max_batch_gas))
        {
            bytes += parts[end].bytes;
            gas += parts[end].gas;
            end += 1;
        }
        sizes.push(end - start);
        start = end;
    }
    sizes
}

/// An epoch's accepted set, planned: consensus per project, where the batches are cut, and the
/// text of every submission a batch lists, held once. [`EpochPlan::batches`] then builds the
/// batches one at a time, so a caller that uploads each batch and lets it go never holds more
/// than the texts plus the batches it has in flight.
pub struct EpochPlan {
    parts: Vec<ProjectPart>,
    /// Projects per batch, in order.
    sizes: Vec<usize>,
    /// Projects below the minimum, not finalized.
    pub below_minimum: Vec<String>,
    /// Submissions dropped because another one already held their (project, slot); the
    /// smallest submission id is kept (see [`FinalizedEpoch::duplicates_dropped`]).
    pub duplicates_dropped: usize,
    /// Simulation submissions left out.
    pub simulations_skipped: usize,
    /// Submissions the batches list.
    pub listed: usize,
}

impl std::fmt::Debug for EpochPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochPlan")
            .field("projects", &self.parts.len())
            .field("batches", &self.sizes.len())
            .field("listed", &self.listed)
            .finish_non_exhaustive()
    }
}

/// Plans one epoch's accepted submissions, consuming them: each is turned into its batch text
/// as it is reached, so the set is never held twice.
pub fn plan_epoch(
    mut subs: Vec<Accepted>,
    config: &FinalizeConfig,
) -> Result<EpochPlan, FinalizeError> {
    if config.batch_size == 0 {
        return Err(FinalizeError::ZeroBatchSize);
    }
    // Canonical order: project, slot, submission id; then first-wins per (project, slot).
    let before = subs.len();
    subs.retain(|s| !s.submission.is_simulation());
    let simulations_skipped = before - subs.len();
    subs.sort_unstable_by(|a, b| {
        (a.project(), a.slot(), a.submission_id.as_str()).cmp(&(
            b.project(),
            b.slot(),
            b.submission_id.as_str(),
        ))
    });
    let before = subs.len();
    subs.dedup_by(|b, a| a.project() == b.project() && a.slot() == b.slot());
    let duplicates_dropped = before - subs.len();

    let mut below_minimum = Vec::new();
    let mut parts: Vec<ProjectPart> = Vec::new();
    let mut listed = 0;
    let mut rest = subs.into_iter().peekable();
    while let Some(first) = rest.next() {
        let mut group = vec![first];
        while let Some(next) = rest.next_if(|s| s.project() == group[0].project()) {
            group.push(next);
        }
        let Some((_, c)) = consensus_of(group.iter()).pop_first() else {
            continue;
        };
        if c.total < config.min_submissions.max(1) {
            below_minimum.push(c.project_id);
            continue;
        }
        // Each element costs its JSON length plus one comma (the first comma of each array is
        // over-counted, which only makes the estimate safe).
        let mut bytes = json_str_len(&c.project_id) + 1 + json_str_len(&c.cid) + 1;
        let mut ids = Vec::with_capacity(group.len());
        let mut texts = Vec::with_capacity(group.len());
        for s in group {
            let text = s.submission.to_canonical_json();
            bytes += json_str_len(&s.submission_id) + 1 + json_str_len(&text) + 1;
            ids.push(s.submission_id);
            texts.push(text);
        }
        listed += ids.len();
        parts.push(ProjectPart {
            consensus: c,
            ids,
            texts,
            bytes,
        });
    }

    let costs: Vec<PartCost> = parts
        .iter()
        .map(|p| PartCost {
            bytes: p.bytes,
            gas: anchor_gas::project_gas(&p.consensus.project_id, &p.consensus.cid),
        })
        .collect();
    let sizes = cut_batches(&costs, config);
    Ok(EpochPlan {
        parts,
        sizes,
        below_minimum,
        duplicates_dropped,
        simulations_skipped,
        listed,
    })
}

impl EpochPlan {
    /// Batches the plan makes.
    pub fn batch_count(&self) -> usize {
        self.sizes.len()
    }

    /// How the batches cut the epoch, as rewards read it: the same [`EpochCut`] as adding every
    /// built batch to one, known before any batch is built (every planned project goes into a
    /// batch), so the rewards tally can run beside the batch building.
    pub fn cut(&self) -> EpochCut {
        let mut cut = EpochCut {
            below_minimum: self.below_minimum.iter().cloned().collect(),
            ..EpochCut::default()
        };
        cut.finalized_cid.reserve(self.parts.len());
        cut.listed.reserve(self.listed);
        for p in &self.parts {
            cut.finalized_cid
                .insert(p.consensus.project_id.clone(), p.consensus.cid.clone());
            cut.listed.extend(p.ids.iter().cloned());
        }
        cut
    }

    /// The batches, built one at a time in order (each batch's `roothash` covers the ids of the
    /// batches before it, so they come in order). Each project's texts move into its batch.
    pub fn batches(self) -> Batches {
        Batches {
            parts: self.parts.into_iter(),
            sizes: self.sizes.into_iter(),
            tree: IncrementalTree::new(),
            next_index: 1,
        }
    }
}

/// The batches of an [`EpochPlan`], built as they are asked for.
pub struct Batches {
    parts: std::vec::IntoIter<ProjectPart>,
    sizes: std::vec::IntoIter<usize>,
    tree: IncrementalTree,
    next_index: u32,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("next_index", &self.next_index)
            .field("left", &self.sizes.len())
            .finish_non_exhaustive()
    }
}

impl Batches {
    fn build(&mut self, size: usize) -> Result<Batch, FinalizeError> {
        let first_leaf_index = self.tree.len();
        let mut submission_ids = Vec::new();
        let mut submissions = Vec::new();
        let mut pids = Vec::with_capacity(size);
        let mut cids = Vec::with_capacity(size);
        let mut cid_tree = IncrementalTree::new();
        for part in self.parts.by_ref().take(size) {
            for id in &part.ids {
                self.tree.push(id)?;
            }
            submission_ids.extend(part.ids);
            submissions.extend(part.texts);
            cid_tree.push(&part.consensus.cid)?;
            pids.push(part.consensus.project_id);
            cids.push(part.consensus.cid);
        }
        let roothash = self.tree.published_root();
        let document = BatchDocument {
            submission_ids,
            submissions,
            roothash: roothash.to_string(),
            pids,
            cids,
        };
        let json = document.to_canonical_json();
        let index = self.next_index;
        self.next_index += 1;
        Ok(Batch {
            index,
            cid: document_cid(&json),
            json,
            document,
            roothash,
            finalized_cids_root: cid_tree.published_root(),
            first_leaf_index,
        })
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, FinalizeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let size = self.sizes.next()?;
        Some(self.build(size))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.sizes.size_hint()
    }
}

/// Finalizes one epoch's accepted submissions: [`plan_epoch`] over a copy of them, every batch
/// built.
pub fn finalize_epoch(
    subs: &[Accepted],
    config: &FinalizeConfig,
) -> Result<FinalizedEpoch, FinalizeError> {
    let plan = plan_epoch(subs.to_vec(), config)?;
    let below_minimum = plan.below_minimum.clone();
    let (duplicates_dropped, simulations_skipped) =
        (plan.duplicates_dropped, plan.simulations_skipped);
    Ok(FinalizedEpoch {
        batches: plan.batches().collect::<Result<_, _>>()?,
        below_minimum,
        duplicates_dropped,
        simulations_skipped,
    })
}

/// Recomputed roots of a batch document (for `seqctl batch inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedRoots {
    pub roothash: B256,
    pub finalized_cids_root: B256,
}

/// Recomputes a document's roots; `previous_ids` are the submission ids of the
/// epoch's earlier batches, in order.
pub fn inspect_roots(
    doc: &BatchDocument,
    previous_ids: &[String],
) -> Result<InspectedRoots, TreeFull> {
    let mut tree = IncrementalTree::new();
    for id in previous_ids.iter().chain(&doc.submission_ids) {
        tree.push(id)?;
    }
    Ok(InspectedRoots {
        roothash: tree.published_root(),
        finalized_cids_root: merkle::published_root_of(&doc.cids)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::Request;
    use proptest::prelude::*;

    fn acc(id: &str, project: &str, slot: u64, cid: &str) -> Accepted {
        Accepted {
            submission_id: id.to_string(),
            submission: SnapshotSubmission {
                request: Request {
                    slot_id: slot,
                    deadline: 1,
                    snapshot_cid: cid.to_string(),
                    epoch_id: 9,
                    project_id: project.to_string(),
                },
                signature: "00".repeat(65),
                header: format!("0x{}", "ab".repeat(32)),
                data_market: format!("0x{}", "cd".repeat(20)),
                node_version: None,
                protocol_state: None,
            },
        }
    }

    #[test]
    fn the_plans_cut_is_the_cut_of_its_built_batches() {
        let mut subs = Vec::new();
        for p in 0..40 {
            for slot in 1..=3u64 {
                // Project 7 has one submission only: below a minimum of 2.
                if p == 7 && slot > 1 {
                    continue;
                }
                let cid = if slot == 3 { "bafkother" } else { "bafkwin" };
                subs.push(acc(
                    &format!("id-{p}-{slot}"),
                    &format!("p{p:02}"),
                    slot,
                    cid,
                ));
            }
        }
        let config = FinalizeConfig {
            batch_size: 7,
            min_submissions: 2,
            ..FinalizeConfig::default()
        };
        let plan = plan_epoch(subs, &config).expect("plans");
        let cut = plan.cut();
        let mut built = EpochCut {
            below_minimum: plan.below_minimum.iter().cloned().collect(),
            ..EpochCut::default()
        };
        for b in plan.batches() {
            let b = b.expect("builds");
            let d = &b.document;
            built.add_batch(&d.pids, &d.cids, &d.submission_ids);
        }
        assert_eq!(cut, built);
        assert!(cut.below_minimum.contains("p07"));
        assert_eq!(cut.listed.len(), 39 * 3);
    }

    #[test]
    fn plurality_and_smallest_cid_tie_break() {
        let subs = vec![
            acc("1", "p", 1, "bafkc"),
            acc("2", "p", 2, "bafkb"),
            acc("3", "p", 3, "bafkc"),
            acc("4", "q", 1, "bafkz"),
            acc("5", "q", 2, "bafky"),
        ];
        let c = consensus(&subs);
        assert_eq!(c["p"].cid, "bafkc");
        assert_eq!((c["p"].votes, c["p"].total), (2, 3));
        assert_eq!(c["q"].cid, "bafky");
    }

    #[test]
    fn spellings_of_one_cid_are_one_vote_published_canonically() {
        let v1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        let v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
        let v0_as_v1 = crate::cids::canonical_cid(v0);
        assert!(v0_as_v1.starts_with("bafy"), "{v0_as_v1}");
        let upper = v1.to_uppercase();
        // Three spellings of v0's CID against two votes for `v1`: the v0 CID wins, published as v1.
        let subs = vec![
            acc("1", "p", 1, v0),
            acc("2", "p", 2, &v0_as_v1.to_uppercase()),
            acc("3", "p", 3, &v0_as_v1),
            acc("4", "p", 4, v1),
            acc("5", "p", 5, &upper),
        ];
        let c = consensus(&subs);
        assert_eq!(c["p"].cid, v0_as_v1);
        assert_eq!((c["p"].votes, c["p"].total), (3, 5));
    }

    #[test]
    fn minimum_submissions_excludes_projects() {
        let subs = vec![
            acc("1", "p", 1, "x"),
            acc("2", "p", 2, "x"),
            acc("3", "q", 1, "y"),
        ];
        let cfg = FinalizeConfig {
            min_submissions: 2,
            ..Default::default()
        };
        let f = finalize_epoch(&subs, &cfg).expect("finalizes");
        assert_eq!(f.below_minimum, vec!["q".to_string()]);
        assert_eq!(f.batches.len(), 1);
        assert_eq!(f.batches[0].document.pids, vec!["p".to_string()]);
    }

    #[test]
    fn duplicates_per_project_and_slot_keep_the_smallest_id() {
        let subs = vec![acc("b", "p", 1, "x"), acc("a", "p", 1, "y")];
        let f = finalize_epoch(&subs, &FinalizeConfig::default()).expect("finalizes");
        assert_eq!(f.duplicates_dropped, 1);
        assert_eq!(f.batches[0].document.submission_ids, vec!["a".to_string()]);
        assert_eq!(f.batches[0].document.cids, vec!["y".to_string()]);
    }

    #[test]
    fn simulation_submissions_are_never_batched() {
        let mut sim = acc("s", "p", 2, "y");
        sim.submission.request.epoch_id = 0;
        let subs = vec![acc("1", "p", 1, "x"), sim];
        let f = finalize_epoch(&subs, &FinalizeConfig::default()).expect("finalizes");
        assert_eq!(f.simulations_skipped, 1);
        assert_eq!(f.batches[0].document.submission_ids, vec!["1".to_string()]);
    }

    #[test]
    fn byte_cap_cuts_batches_and_counts_exactly() {
        let subs: Vec<Accepted> = (0..40)
            .map(|i| {
                acc(
                    &format!("id-{i:03}"),
                    &format!("project-{i:03}"),
                    1,
                    "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy",
                )
            })
            .collect();
        let cfg = FinalizeConfig {
            max_batch_bytes: 4096,
            ..Default::default()
        };
        let f = finalize_epoch(&subs, &cfg).expect("finalizes");
        assert!(f.batches.len() > 1);
        for b in &f.batches {
            assert!(
                b.json.len() <= 4096,
                "batch {} has {} bytes",
                b.index,
                b.json.len()
            );
        }
        // Greedy: adding the next batch's first project would have crossed the cap.
        let total: usize = f.batches.iter().map(|b| b.document.pids.len()).sum();
        assert_eq!(total, 40);
    }

    #[test]
    fn an_oversize_project_gets_its_own_batch() {
        let subs: Vec<Accepted> = (0..30)
            .map(|i| acc(&format!("id-{i}"), "big", i, "x"))
            .collect();
        let mut all = subs;
        all.push(acc("z", "small", 1, "y"));
        let cfg = FinalizeConfig {
            max_batch_bytes: 1024,
            ..Default::default()
        };
        let f = finalize_epoch(&all, &cfg).expect("finalizes");
        assert_eq!(f.batches.len(), 2);
        assert_eq!(f.batches[0].document.pids, vec!["big".to_string()]);
        assert_eq!(f.batches[1].document.pids, vec!["small".to_string()]);
    }

    #[test]
    fn a_project_over_one_chunk_gets_a_unixfs_cid_and_others_stay_raw() {
        // ~600 submissions of a 256-byte, escape-heavy project id: well over 256 KiB.
        let big_id = "\"\\".repeat(128);
        let mut subs: Vec<Accepted> = (0..600)
            .map(|i| acc(&format!("id-{i:04}"), &big_id, i, "bafkx"))
            .collect();
        subs.push(acc("small-1", "a-small", 1, "bafky"));
        subs.push(acc("small-2", "zz-small", 1, "bafkz"));
        let f = finalize_epoch(&subs, &FinalizeConfig::default()).expect("finalizes");
        let big = f
            .batches
            .iter()
            .find(|b| b.document.pids == vec![big_id.clone()])
            .expect("the big project has a batch of its own");
        assert!(big.json.len() > crate::cids::MAX_RAW_BLOCK_BYTES);
        assert_eq!(big.cid.codec(), crate::unixfs::DAG_PB_CODEC);
        assert_eq!(big.cid, crate::unixfs::file_cid(&big.json));
        assert_eq!(
            big.document.submission_ids.len(),
            600,
            "never split, never dropped"
        );
        for b in f.batches.iter().filter(|b| b.index != big.index) {
            assert_eq!(b.cid, crate::cids::raw_cid(&b.json));
        }
        let pids: Vec<&str> = f
            .batches
            .iter()
            .flat_map(|b| &b.document.pids)
            .map(String::as_str)
            .collect();
        assert_eq!(pids, vec![big_id.as_str(), "a-small", "zz-small"]);
    }

    #[test]
    fn encoded_lengths_are_serde_jsons() {
        for s in [
            "",
            "plain",
            "quote\" back\\ nl\n tab\t ctl\u{1}",
            "unicodé ✓ 🦀",
            "</script>",
        ] {
            assert_eq!(
                json_str_len(s),
                serde_json::to_string(s).unwrap_or_default().len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_plan_builds_batches_one_at_a_time_as_finalize_epoch_does() {
        let subs: Vec<Accepted> = (0..23)
            .map(|i| acc(&format!("id{i:02}"), &format!("p{:02}", i % 11), i, "x"))
            .collect();
        let cfg = FinalizeConfig {
            batch_size: 3,
            ..Default::default()
        };
        let whole = finalize_epoch(&subs, &cfg).expect("finalizes");
        let plan = plan_epoch(subs, &cfg).expect("plans");
        assert_eq!(plan.batch_count(), whole.batches.len());
        assert_eq!(plan.listed, 23);
        let mut batches = plan.batches();
        assert_eq!(batches.size_hint(), (4, Some(4)));
        let first = batches.next().expect("one").expect("builds");
        assert_eq!(first, whole.batches[0]);
        let rest: Vec<Batch> = batches.map(|b| b.expect("builds")).collect();
        assert_eq!(rest, whole.batches[1..]);
    }

    #[test]
    fn roothash_grows_across_batches() {
        let subs: Vec<Accepted> = (0..7)
            .map(|i| acc(&format!("id{i}"), &format!("p{i}"), 1, "x"))
            .collect();
        let cfg = FinalizeConfig {
            batch_size: 3,
            ..Default::default()
        };
        let f = finalize_epoch(&subs, &cfg).expect("finalizes");
        assert_eq!(f.batches.len(), 3);
        let mut seen: Vec<String> = Vec::new();
        for b in &f.batches {
            assert_eq!(b.first_leaf_index, seen.len() as u64);
            let inspected = inspect_roots(&b.document, &seen).expect("fits");
            assert_eq!(inspected.roothash, b.roothash);
            assert_eq!(inspected.finalized_cids_root, b.finalized_cids_root);
            seen.extend(b.document.submission_ids.iter().cloned());
        }
    }

    fn arb_subs() -> impl Strategy<Value = Vec<Accepted>> {
        proptest::collection::vec((0u8..30, 0u64..8, 0u8..4), 0..150).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (p, slot, c))| {
                    acc(
                        &format!("sub-{i}"),
                        &format!("proj-{p:02}"),
                        slot,
                        &format!("cid-{c}"),
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn every_project_in_exactly_one_sorted_batch(subs in arb_subs(), size in 1usize..8, cap in 300usize..4000) {
            let cfg = FinalizeConfig { batch_size: size, max_batch_bytes: cap, min_submissions: 1, ..Default::default() };
            let f = finalize_epoch(&subs, &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let pids: Vec<&String> = f.batches.iter().flat_map(|b| &b.document.pids).collect();
            let mut expected: Vec<&String> = subs.iter().map(|s| &s.submission.request.project_id).collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(&pids, &expected, "projects sorted, each exactly once");
            for b in &f.batches {
                prop_assert!(b.document.pids.len() <= size);
                prop_assert!(b.json.len() <= cap || b.document.pids.len() == 1);
                let gas = anchor_gas::batch_gas(b.document.pids.iter().map(String::as_str).zip(b.document.cids.iter().map(String::as_str)));
                prop_assert!(gas <= cfg.max_batch_gas || b.document.pids.len() == 1);
                prop_assert_eq!(b.json.clone(), b.document.to_canonical_json());
                prop_assert_eq!(b.cid, document_cid(&b.json));
            }
            let ids: usize = f.batches.iter().map(|b| b.document.submission_ids.len()).sum();
            prop_assert_eq!(ids + f.duplicates_dropped + f.simulations_skipped, subs.len());
        }

        #[test]
        fn a_gas_budget_cuts_batches_by_gas(subs in arb_subs(), projects in 1u64..12) {
            // A budget of `projects` ordinary projects (short ids and CIDs cost less).
            let budget = anchor_gas::BATCH_BASE_GAS + projects * anchor_gas::project_gas("proj-00", "cid-0");
            let cfg = FinalizeConfig { batch_size: 1000, max_batch_bytes: usize::MAX / 2, max_batch_gas: budget, min_submissions: 1 };
            let f = finalize_epoch(&subs, &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (i, b) in f.batches.iter().enumerate() {
                prop_assert_eq!(b.document.pids.len() as u64, if i + 1 < f.batches.len() { projects } else { b.document.pids.len() as u64 });
                prop_assert!(b.document.pids.len() as u64 <= projects);
            }
        }

        #[test]
        fn the_cut_is_within_every_limit_maximal_and_as_short_as_any(
            parts in proptest::collection::vec((1usize..400, 1u64..400_000), 0..40),
            size in 1usize..10,
            cap in 300usize..3000,
            budget in 0u64..3_000_000,
        ) {
            let parts: Vec<PartCost> = parts.into_iter().map(|(bytes, gas)| PartCost { bytes, gas }).collect();
            let cfg = FinalizeConfig { batch_size: size, max_batch_bytes: cap, max_batch_gas: budget, min_submissions: 1 };
            let sizes = cut_batches(&parts, &cfg);
            prop_assert_eq!(sizes.iter().sum::<usize>(), parts.len());
            let fits = |b: &[PartCost]| b.len() <= size
                && DOC_OVERHEAD + b.iter().map(|p| p.bytes).sum::<usize>() <= cap
                && anchor_gas::BATCH_BASE_GAS + b.iter().map(|p| p.gas).sum::<u64>() <= budget;
            let mut start = 0;
            for (k, &n) in sizes.iter().enumerate() {
                prop_assert!(n >= 1);
                let batch = &parts[start..start + n];
                // Within every limit, or one project alone.
                prop_assert!(fits(batch) || n == 1);
                // Maximal: one more project would break a limit.
                if k + 1 < sizes.len() {
                    prop_assert!(!fits(&parts[start..start + n + 1]));
                }
                start += n;
            }
            // As few batches as any cut in this order (dynamic programming over all cuts).
            let mut fewest = vec![usize::MAX; parts.len() + 1];
            fewest[0] = 0;
            for end in 1..=parts.len() {
                for begin in 0..end {
                    if fewest[begin] != usize::MAX && (end - begin == 1 || fits(&parts[begin..end])) {
                        fewest[end] = fewest[end].min(fewest[begin] + 1);
                    }
                }
            }
            prop_assert_eq!(sizes.len(), fewest[parts.len()]);
        }

        #[test]
        fn any_arrival_order_gives_identical_batches(subs in arb_subs(), seed in any::<u64>()) {
            let cfg = FinalizeConfig { batch_size: 4, ..Default::default() };
            let a = finalize_epoch(&subs, &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut shuffled = subs.clone();
            // Deterministic Fisher–Yates from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let b = finalize_epoch(&shuffled, &cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(a, b);
        }
    }
}
