//! Files as `ipfs add --cid-version=1 --raw-leaves` stores them (docs/protocol.md §6): the bytes are
//! cut into 256 KiB chunks, each a raw block (`bafkrei…`); a file of one chunk *is* that block,
//! and a longer one gets UnixFS `File` nodes (dag-pb) over its chunks in IPFS's balanced layout,
//! at most 174 links per node, level above level until one node is left: the root, whose CID
//! (`bafybei…`) is the file's. Kubo and js-ipfs answer the same CIDs for these options, and so
//! does npm's `ipfs-unixfs-importer` (`tests/vectors/unixfs.json`, made by
//! `tests/vectors/gen_unixfs.mjs`, pins them byte for byte).
//!
//! What is written here and why: the dag-pb envelope is `ipld-dagpb`'s (the IPLD team's codec;
//! dag-pb wants `Links` before `Data`, which prost, writing fields in tag order, cannot do); the
//! UnixFS `Data` message is a prost struct of the UnixFS spec's `unixfs.proto`. The layout itself
//! (which chunks go under which node, each link's cumulative size, the `blocksizes` list) is
//! written here: the kept Rust UnixFS crates do not build it with raw leaves (`rust-unixfs`'s
//! `FileAdder` makes CIDv0 UnixFS leaves, which give other CIDs).

use cid::multihash::Multihash;
use sha2::{Digest, Sha256};

use crate::blocks::{raw_cid, Cid, SHA2_256};

/// Bytes per chunk (`ipfs add`'s default `size-262144` chunker).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Most links of one node in the balanced layout (Kubo's and js-ipfs's default).
pub const MAX_LINKS: usize = 174;
/// Multicodec `dag-pb`.
pub const DAG_PB_CODEC: u64 = 0x70;

/// The UnixFS `Data` message (`unixfs.proto`, proto2), the fields a file node uses.
#[derive(Clone, PartialEq, prost::Message)]
struct UnixFsData {
    /// `DataType`: 2 = `File`.
    #[prost(int32, required, tag = "1")]
    kind: i32,
    /// Inline file bytes: none in a node over raw leaves.
    #[prost(bytes = "vec", optional, tag = "2")]
    data: Option<Vec<u8>>,
    /// Bytes of file below this node.
    #[prost(uint64, optional, tag = "3")]
    filesize: Option<u64>,
    /// File bytes below each link, in link order (proto2: not packed).
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    blocksizes: Vec<u64>,
}

/// `DataType.File`.
const UNIXFS_FILE: i32 = 2;

/// A child of a file node: its CID, its cumulative size (the link's `Tsize`: its block's bytes
/// plus those of every block below it) and the file bytes below it.
#[derive(Clone, Copy, Debug)]
struct Child {
    cid: Cid,
    tsize: u64,
    filesize: u64,
}

/// One dag-pb block of a file's DAG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its CID (`CIDv1(dag-pb, sha2-256)`).
    pub cid: Cid,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A file's DAG: the root, its dag-pb nodes (bottom level first) and the CIDs of its raw leaves
/// (the chunks of the file, in order; their bytes are the file's, not copied here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDag {
    /// The file's CID.
    pub root: Cid,
    /// The dag-pb nodes; empty for a file of one chunk.
    pub nodes: Vec<Node>,
    /// The raw leaves' CIDs, one per chunk.
    pub leaves: Vec<Cid>,
}

fn dag_pb_cid(bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
    Cid::new_v1(DAG_PB_CODEC, mh)
}

/// The dag-pb bytes of a UnixFS file node over `children`.
fn file_node(children: &[Child]) -> Vec<u8> {
    let data = UnixFsData {
        kind: UNIXFS_FILE,
        data: None,
        filesize: Some(children.iter().map(|c| c.filesize).sum()),
        blocksizes: children.iter().map(|c| c.filesize).collect(),
    };
    let node = ipld_dagpb::PbNode {
        links: children
            .iter()
            .map(|c| ipld_dagpb::PbLink {
                cid: c.cid,
                // The importers write an empty name, not none: it is part of the bytes.
                name: Some(String::new()),
                size: Some(c.tsize),
            })
            .collect(),
        data: Some(prost::Message::encode_to_vec(&data).into()),
    };
    node.into_bytes()
}

/// Builds the DAG of `bytes`, handing each dag-pb node to `on_node`; returns the root and the
/// leaves' CIDs.
fn build(bytes: &[u8], mut on_node: impl FnMut(Node)) -> (Cid, Vec<Cid>) {
    if bytes.len() <= CHUNK_BYTES {
        let cid = raw_cid(bytes);
        return (cid, vec![cid]);
    }
    let mut level: Vec<Child> = bytes
        .chunks(CHUNK_BYTES)
        .map(|c| Child {
            cid: raw_cid(c),
            tsize: c.len() as u64,
            filesize: c.len() as u64,
        })
        .collect();
    let leaves = level.iter().map(|c| c.cid).collect();
    loop {
        let next: Vec<Child> = level
            .chunks(MAX_LINKS)
            .map(|group| {
                let node = file_node(group);
                let child = Child {
                    cid: dag_pb_cid(&node),
                    tsize: node.len() as u64 + group.iter().map(|c| c.tsize).sum::<u64>(),
                    filesize: group.iter().map(|c| c.filesize).sum(),
                };
                on_node(Node {
                    cid: child.cid,
                    bytes: node,
                });
                child
            })
            .collect();
        if let [root] = next.as_slice() {
            return (root.cid, leaves);
        }
        level = next;
    }
}

/// The CID `ipfs add --cid-version=1 --raw-leaves` gives `bytes`: `CIDv1(raw, sha2-256)` for at
/// most one chunk, else the root of the balanced UnixFS DAG over 256 KiB raw leaves.
pub fn file_cid(bytes: &[u8]) -> Cid {
    build(bytes, |_| {}).0
}

/// The whole DAG `ipfs add --cid-version=1 --raw-leaves` stores for `bytes`.
pub fn file_dag(bytes: &[u8]) -> FileDag {
    let mut nodes = Vec::new();
    let (root, leaves) = build(bytes, |n| nodes.push(n));
    FileDag {
        root,
        nodes,
        leaves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
    }

    #[test]
    fn one_chunk_is_its_raw_block() {
        for len in [0, 1, 12, CHUNK_BYTES] {
            let b = rule(len);
            let dag = file_dag(&b);
            assert_eq!(dag.root, raw_cid(&b), "{len}");
            assert!(dag.nodes.is_empty());
            assert_eq!(dag.leaves, vec![raw_cid(&b)]);
        }
    }

    #[test]
    fn more_chunks_get_a_file_node_that_decodes_to_them() {
        let b = rule(2 * CHUNK_BYTES + 5);
        let dag = file_dag(&b);
        assert_eq!(dag.root.codec(), DAG_PB_CODEC);
        assert_eq!(dag.nodes.len(), 1);
        assert_eq!(dag.leaves.len(), 3);
        let root = &dag.nodes[0];
        assert_eq!(root.cid, dag.root);
        let pb = ipld_dagpb::PbNode::from_bytes(root.bytes.clone().into()).expect("dag-pb");
        let cids: Vec<Cid> = pb.links.iter().map(|l| l.cid).collect();
        assert_eq!(cids, dag.leaves);
        let sizes: Vec<Option<u64>> = pb.links.iter().map(|l| l.size).collect();
        assert_eq!(
            sizes,
            vec![Some(CHUNK_BYTES as u64), Some(CHUNK_BYTES as u64), Some(5)]
        );
        let data: UnixFsData =
            prost::Message::decode(pb.data.expect("data").as_ref()).expect("unixfs");
        assert_eq!(data.kind, UNIXFS_FILE);
        assert_eq!(data.filesize, Some(b.len() as u64));
        assert_eq!(
            data.blocksizes,
            vec![CHUNK_BYTES as u64, CHUNK_BYTES as u64, 5]
        );
        assert_eq!(file_cid(&b), dag.root);
        // Links are written before data, and each link's empty name is kept.
        assert_eq!(root.bytes[0], 0x12, "field 2 (Links) first");
    }

    #[test]
    fn past_174_chunks_the_tree_grows_a_level() {
        // 175 chunks of one byte would need a 175-link node; rebuild with tiny chunks by hand is
        // not possible through the public API, so check the level arithmetic on the real size.
        let b = vec![0u8; (MAX_LINKS + 1) * CHUNK_BYTES];
        let dag = file_dag(&b);
        assert_eq!(dag.leaves.len(), MAX_LINKS + 1);
        // Two nodes over the leaves (174 + 1 links), one root over them.
        assert_eq!(dag.nodes.len(), 3);
        assert_eq!(dag.nodes[2].cid, dag.root);
        let root = ipld_dagpb::PbNode::from_bytes(dag.nodes[2].bytes.clone().into()).expect("pb");
        assert_eq!(root.links.len(), 2);
        assert_eq!(
            root.links[1].size,
            Some(dag.nodes[1].bytes.len() as u64 + CHUNK_BYTES as u64),
            "a link's Tsize counts its node and every block below it"
        );
    }
}
