//! The sequencer's Merkle tree (docs/protocol.md §6): an incremental tree of fixed
//! height 32; leaf = SHA-256(UTF-8 string), node = SHA-256(left ‖ right), empty
//! subtrees are zero hashes (z₀ = 32 zero bytes, zₗ₊₁ = SHA-256(zₗ ‖ zₗ)); the
//! published value is keccak256(root).
//!
//! Roots come from [`IncrementalTree`], a frontier of 32 nodes: appending a leaf
//! costs amortized O(1) hashes and reading the root 32, so the root after each
//! batch of an epoch costs O(n) hashes overall. Proofs come from `rs_merkle` over
//! the leaves padded with z₀ to the next power of two (a complete tree, where
//! `rs_merkle`'s odd-node promotion never applies), extended by the zero hashes above
//! it to height 32.

use std::sync::LazyLock;

use alloy_primitives::{keccak256, B256};
use rs_merkle::{algorithms::Sha256 as RsSha256, MerkleTree};
use sha2::{Digest, Sha256};

/// Tree height: at most 2³² leaves.
pub const TREE_HEIGHT: usize = 32;

/// A 32-byte node.
pub type Node = [u8; 32];

/// z₀ … z₃₂.
pub static ZERO_HASHES: LazyLock<[Node; TREE_HEIGHT + 1]> = LazyLock::new(|| {
    let mut z = [[0u8; 32]; TREE_HEIGHT + 1];
    for l in 0..TREE_HEIGHT {
        z[l + 1] = hash_pair(&z[l], &z[l]);
    }
    z
});

/// SHA-256 of a leaf string.
pub fn leaf_hash(leaf: &str) -> Node {
    Sha256::digest(leaf.as_bytes()).into()
}

/// SHA-256(left ‖ right).
pub fn hash_pair(left: &Node, right: &Node) -> Node {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The published form of a root: keccak256(root).
pub fn publish(root: &Node) -> B256 {
    keccak256(root)
}

/// The tree is full (2³² leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Merkle tree is full ({} leaves)", 1u64 << TREE_HEIGHT)]
pub struct TreeFull;

/// An append-only tree that keeps only its frontier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementalTree {
    branch: [Node; TREE_HEIGHT],
    count: u64,
}

impl Default for IncrementalTree {
    fn default() -> Self {
        Self::new()
    }
}

impl IncrementalTree {
    pub fn new() -> Self {
        IncrementalTree {
            branch: [[0u8; 32]; TREE_HEIGHT],
            count: 0,
        }
    }

    /// Leaves appended so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a leaf string.
    pub fn push(&mut self, leaf: &str) -> Result<(), TreeFull> {
        self.push_hash(leaf_hash(leaf))
    }

    /// Appends a leaf hash.
    pub fn push_hash(&mut self, leaf: Node) -> Result<(), TreeFull> {
        if self.count >= (1u64 << TREE_HEIGHT) - 1 {
            return Err(TreeFull);
        }
        self.count += 1;
        let mut node = leaf;
        let mut size = self.count;
        for h in 0..TREE_HEIGHT {
            if size & 1 == 1 {
                self.branch[h] = node;
                return Ok(());
            }
            node = hash_pair(&self.branch[h], &node);
            size >>= 1;
        }
        Ok(())
    }

    /// The raw SHA-256 root over every leaf so far (32 hashes).
    pub fn root(&self) -> Node {
        let z = &*ZERO_HASHES;
        let mut node = z[0];
        let mut size = self.count;
        for (h, zh) in z.iter().enumerate().take(TREE_HEIGHT) {
            node = if size & 1 == 1 {
                hash_pair(&self.branch[h], &node)
            } else {
                hash_pair(&node, zh)
            };
            size >>= 1;
        }
        node
    }

    /// keccak256 of [`root`](Self::root): the value batches and the chain carry.
    pub fn published_root(&self) -> B256 {
        publish(&self.root())
    }
}

/// Published root over `leaves` (a fresh tree).
pub fn published_root_of<S: AsRef<str>>(leaves: &[S]) -> Result<B256, TreeFull> {
    let mut t = IncrementalTree::new();
    for l in leaves {
        t.push(l.as_ref())?;
    }
    Ok(t.published_root())
}

/// An inclusion proof: the 32 sibling hashes from the leaf up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleProof {
    pub leaf_index: u64,
    pub siblings: Vec<Node>,
}

/// Why a proof cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the leaf count {count}")]
    IndexOutOfRange { index: u64, count: u64 },
    #[error("too many leaves")]
    TooManyLeaves,
}

/// Proves leaf `index` among `leaves` (leaf hashes) in the height-32 tree.
pub fn prove(leaves: &[Node], index: usize) -> Result<MerkleProof, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::IndexOutOfRange {
            index: index as u64,
            count: leaves.len() as u64,
        });
    }
    let width = leaves.len().next_power_of_two();
    let depth = width.trailing_zeros() as usize;
    if depth > TREE_HEIGHT {
        return Err(ProofError::TooManyLeaves);
    }
    let z = &*ZERO_HASHES;
    let mut padded = leaves.to_vec();
    padded.resize(width, z[0]);
    let tree = MerkleTree::<RsSha256>::from_leaves(&padded);
    let mut siblings = tree.proof(&[index]).proof_hashes().to_vec();
    debug_assert_eq!(siblings.len(), depth);
    siblings.extend_from_slice(&z[depth..TREE_HEIGHT]);
    Ok(MerkleProof {
        leaf_index: index as u64,
        siblings,
    })
}

/// The raw root a proof leads to from `leaf`; `None` if it does not have 32 siblings.
pub fn root_from_proof(leaf: &Node, proof: &MerkleProof) -> Option<Node> {
    if proof.siblings.len() != TREE_HEIGHT || proof.leaf_index >> TREE_HEIGHT != 0 {
        return None;
    }
    let mut node = *leaf;
    for (h, sib) in proof.siblings.iter().enumerate() {
        node = if (proof.leaf_index >> h) & 1 == 1 {
            hash_pair(sib, &node)
        } else {
            hash_pair(&node, sib)
        };
    }
    Some(node)
}

/// True when `proof` places `leaf` under the published root `published`.
pub fn verify(leaf: &Node, proof: &MerkleProof, published: &B256) -> bool {
    root_from_proof(leaf, proof).is_some_and(|r| publish(&r) == *published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Level-by-level reference: pad each level with its zero hash.
    fn naive_root(leaves: &[Node]) -> Node {
        let z = &*ZERO_HASHES;
        let mut level = leaves.to_vec();
        for zh in z.iter().take(TREE_HEIGHT) {
            if level.len() % 2 == 1 {
                level.push(*zh);
            }
            if level.is_empty() {
                level.push(*zh);
                level.push(*zh);
            }
            level = level.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
        }
        level[0]
    }

    #[test]
    fn one_leaf_a() {
        assert_eq!(
            published_root_of(&["a"]).expect("fits"),
            "0x11c2aabbbd479c860fcf2ef671a8b9aa08efdaed6ad9008b42970873d55b4aaa"
                .parse::<B256>()
                .expect("hex")
        );
    }

    #[test]
    fn empty_tree_is_z32() {
        assert_eq!(IncrementalTree::new().root(), ZERO_HASHES[TREE_HEIGHT]);
    }

    #[test]
    fn out_of_range_proof() {
        assert_eq!(
            prove(&[leaf_hash("a")], 1),
            Err(ProofError::IndexOutOfRange { index: 1, count: 1 })
        );
    }

    proptest! {
        #[test]
        fn frontier_matches_naive_and_proofs_verify(n in 1usize..200, pick in any::<prop::sample::Index>()) {
            let leaves: Vec<Node> = (0..n).map(|i| leaf_hash(&format!("id-{i}"))).collect();
            let mut t = IncrementalTree::new();
            for l in &leaves {
                t.push_hash(*l).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(t.root(), naive_root(&leaves));
            let i = pick.index(n);
            let proof = prove(&leaves, i).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(verify(&leaves[i], &proof, &t.published_root()));
            // A proof for one leaf does not prove another.
            let other = leaf_hash("not-a-leaf");
            prop_assert!(!verify(&other, &proof, &t.published_root()));
        }
    }
}
