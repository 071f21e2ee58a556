//! Inclusion proofs (docs/protocol.md §8): given the batches of an epoch and a
//! submission id, the batch CID, the leaf index in the epoch's growing tree, the 32
//! siblings and the batch's `roothash`; verifiable offline with the batch document.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::cids::document_cid;
use crate::finalize::{Batch, BatchDocument};
use crate::merkle::{self, leaf_hash, MerkleProof, Node, TREE_HEIGHT};

/// The proof document `seqctl proof verify` reads and the proof API returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub data_market: String,
    pub epoch_id: u64,
    /// 1-based batch number in the epoch.
    pub batch_index: u32,
    pub batch_cid: String,
    pub submission_id: String,
    /// Position of the submission id among all ids of batches 1..=batch_index.
    pub leaf_index: u64,
    /// 32 sibling hashes, leaf level first.
    pub siblings: Vec<B256>,
    /// The batch's published `roothash`.
    pub roothash: B256,
    /// Transaction that anchored the batch, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_tx: Option<B256>,
}

/// Why a proof does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofCheckError {
    #[error("proof has {0} siblings, expected {TREE_HEIGHT}")]
    SiblingCount(usize),
    #[error("leaf index does not fit the tree")]
    LeafIndex,
    #[error("proof leads to {computed}, not the roothash {expected}")]
    RootMismatch { computed: B256, expected: B256 },
    #[error("batch document's roothash {document} differs from the proof's {proof}")]
    BatchRootMismatch { document: String, proof: B256 },
    #[error("submission id is not in the batch document")]
    NotInBatch,
    #[error("batch bytes are not a batch document: {0}")]
    BadBatchDocument(String),
    #[error("batch document bytes have CID {actual}, the proof names {expected}")]
    BatchCidMismatch { expected: String, actual: String },
}

impl InclusionProof {
    /// Checks the path from the submission id to `roothash`.
    pub fn verify(&self) -> Result<(), ProofCheckError> {
        if self.siblings.len() != TREE_HEIGHT {
            return Err(ProofCheckError::SiblingCount(self.siblings.len()));
        }
        let proof = MerkleProof {
            leaf_index: self.leaf_index,
            siblings: self.siblings.iter().map(|s| s.0).collect(),
        };
        let root = merkle::root_from_proof(&leaf_hash(&self.submission_id), &proof)
            .ok_or(ProofCheckError::LeafIndex)?;
        let computed = merkle::publish(&root);
        if computed != self.roothash {
            return Err(ProofCheckError::RootMismatch {
                computed,
                expected: self.roothash,
            });
        }
        Ok(())
    }

    /// [`verify`](Self::verify), and the batch document (its exact bytes) is the one
    /// the proof names, carries the same roothash and lists the submission id.
    pub fn verify_with_batch(&self, document_bytes: &[u8]) -> Result<(), ProofCheckError> {
        self.verify()?;
        let actual = document_cid(document_bytes).to_string();
        if actual != self.batch_cid {
            return Err(ProofCheckError::BatchCidMismatch {
                expected: self.batch_cid.clone(),
                actual,
            });
        }
        let doc: BatchDocument = serde_json::from_slice(document_bytes)
            .map_err(|e| ProofCheckError::BadBatchDocument(e.to_string()))?;
        if doc.roothash.parse::<B256>().ok() != Some(self.roothash) {
            return Err(ProofCheckError::BatchRootMismatch {
                document: doc.roothash,
                proof: self.roothash,
            });
        }
        if !doc.submission_ids.contains(&self.submission_id) {
            return Err(ProofCheckError::NotInBatch);
        }
        Ok(())
    }
}

/// One anchored (or pending) batch of an epoch, as the state store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochBatch<'a> {
    pub index: u32,
    pub cid: String,
    pub roothash: B256,
    pub submission_ids: &'a [String],
    pub anchor_tx: Option<B256>,
}

impl<'a> From<&'a Batch> for EpochBatch<'a> {
    /// A batch just finalized, not yet anchored.
    fn from(b: &'a Batch) -> Self {
        EpochBatch {
            index: b.index,
            cid: b.cid.to_string(),
            roothash: b.roothash,
            submission_ids: &b.document.submission_ids,
            anchor_tx: None,
        }
    }
}

/// Builds the proof for `submission_id` from the epoch's batches (in order).
/// `None` when no batch lists it.
pub fn prove_inclusion(
    data_market: &str,
    epoch_id: u64,
    batches: &[EpochBatch<'_>],
    submission_id: &str,
) -> Option<InclusionProof> {
    let mut leaves: Vec<Node> = Vec::new();
    for b in batches {
        let found = b.submission_ids.iter().position(|id| id == submission_id);
        leaves.extend(b.submission_ids.iter().map(|id| leaf_hash(id)));
        if let Some(pos) = found {
            let index = leaves.len() - b.submission_ids.len() + pos;
            let proof = merkle::prove(&leaves, index).ok()?;
            return Some(InclusionProof {
                data_market: data_market.to_string(),
                epoch_id,
                batch_index: b.index,
                batch_cid: b.cid.clone(),
                submission_id: submission_id.to_string(),
                leaf_index: proof.leaf_index,
                siblings: proof.siblings.into_iter().map(B256::from).collect(),
                roothash: b.roothash,
                anchor_tx: b.anchor_tx,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finalize::{finalize_epoch, Accepted, FinalizeConfig};
    use crate::submission::{Request, SnapshotSubmission};

    fn epoch() -> Vec<crate::finalize::Batch> {
        let subs: Vec<Accepted> = (0..9)
            .map(|i| Accepted {
                submission_id: format!("00000000-0000-4000-8000-00000000000{i}"),
                submission: SnapshotSubmission {
                    request: Request {
                        slot_id: i,
                        epoch_id: 5,
                        project_id: format!("p{}", i % 5),
                        snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy"
                            .into(),
                        deadline: 1,
                    },
                    ..Default::default()
                },
            })
            .collect();
        let cfg = FinalizeConfig {
            batch_size: 2,
            ..Default::default()
        };
        finalize_epoch(&subs, &cfg).expect("finalizes").batches
    }

    #[test]
    fn proofs_verify_in_every_batch_and_fail_when_tampered() {
        let batches = epoch();
        assert_eq!(batches.len(), 3);
        let refs: Vec<EpochBatch> = batches.iter().map(EpochBatch::from).collect();
        for b in &batches {
            for id in &b.document.submission_ids {
                let p = prove_inclusion("0xmarket", 5, &refs, id).expect("listed");
                assert_eq!(p.batch_index, b.index);
                assert_eq!(p.verify(), Ok(()));
                assert_eq!(p.verify_with_batch(&b.json), Ok(()));
                let json = serde_json::to_string(&p).expect("serializes");
                let back: InclusionProof = serde_json::from_str(&json).expect("parses");
                assert_eq!(back, p);
            }
        }
        let mut p = prove_inclusion("0xmarket", 5, &refs, &batches[1].document.submission_ids[0])
            .expect("listed");
        assert!(matches!(
            p.verify_with_batch(&batches[0].json),
            Err(ProofCheckError::BatchCidMismatch { .. })
        ));
        p.leaf_index += 1;
        assert!(matches!(
            p.verify(),
            Err(ProofCheckError::RootMismatch { .. })
        ));
        p.siblings.pop();
        assert_eq!(p.verify(), Err(ProofCheckError::SiblingCount(31)));
        assert!(prove_inclusion("0xmarket", 5, &refs, "missing").is_none());
    }
}
