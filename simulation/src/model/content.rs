//! The content store as an IPFS node behaves for `POST /api/v0/add?cid-version=1&raw-leaves=true`
//! (`adapters/ipfs/src/kubo.rs`): a document of at most one 256 KiB chunk is stored as one raw block
//! and its CID is `CIDv1(raw, sha2-256)`; a larger one is chunked into 256 KiB raw leaves under a
//! UnixFS file node (dag-pb) and the node answers that root's CID (`bafybei…`). The embedded
//! blockstore accepts any size as one raw block; a real node does not, which is what this model
//! keeps (issue 16 item 3).
//!
//! The dag-pb encoding is written by hand: prost writes fields in field-number order, but dag-pb
//! requires `Links` (field 2) before `Data` (field 1). Checked against js-ipfs in the tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sequencer_core::cids::{raw_cid, Cid, MAX_RAW_BLOCK_BYTES, SHA2_256};
use sequencer_ports::{ContentStore, ErrorKind, PortError};
use sha2::{Digest, Sha256};

use crate::gate::Gate;

/// Multicodec `dag-pb`.
const DAG_PB: u64 = 0x70;
/// Most links of one UnixFS node in the balanced layout (kubo's and js-ipfs's default).
const MAX_LINKS: usize = 174;

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn field_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn field_varint(field: u64, n: u64, out: &mut Vec<u8>) {
    varint(field << 3, out);
    varint(n, out);
}

fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// A UnixFS file node over `children` = (CID, encoded block size, file bytes below it).
fn file_node(children: &[(Cid, u64, u64)]) -> (Vec<u8>, u64) {
    let mut node = Vec::new();
    for (cid, tsize, _) in children {
        let mut link = Vec::new();
        field_bytes(1, &cid.to_bytes(), &mut link);
        field_bytes(2, b"", &mut link);
        field_varint(3, *tsize, &mut link);
        field_bytes(2, &link, &mut node);
    }
    let filesize: u64 = children.iter().map(|c| c.2).sum();
    let mut data = Vec::new();
    field_varint(1, 2, &mut data); // Type = File
    field_varint(3, filesize, &mut data);
    for c in children {
        field_varint(4, c.2, &mut data); // blocksizes, not packed (proto2)
    }
    field_bytes(1, &data, &mut node);
    (node, filesize)
}

/// The CID an IPFS node answers for `bytes` added with CIDv1 and raw leaves: the raw CID up to
/// one chunk, else the root of the balanced UnixFS DAG of 256 KiB raw leaves.
pub fn node_cid(bytes: &[u8]) -> Cid {
    if bytes.len() <= MAX_RAW_BLOCK_BYTES {
        return raw_cid(bytes);
    }
    // Level 0: raw leaves (cid, tsize = block bytes, file bytes).
    let mut level: Vec<(Cid, u64, u64)> = bytes
        .chunks(MAX_RAW_BLOCK_BYTES)
        .map(|c| (raw_cid(c), c.len() as u64, c.len() as u64))
        .collect();
    loop {
        let mut next = Vec::new();
        for group in level.chunks(MAX_LINKS) {
            let (node, filesize) = file_node(group);
            let tsize = node.len() as u64 + group.iter().map(|c| c.1).sum::<u64>();
            next.push((cid_of(DAG_PB, &node), tsize, filesize));
        }
        if next.len() == 1 {
            return next[0].0;
        }
        level = next;
    }
}

/// The node's blocks, and what the Kubo adapter makes of the node's answers.
#[derive(Debug, Default)]
pub struct ContentModel {
    docs: BTreeMap<String, Vec<u8>>,
}

impl ContentModel {
    /// The document with this CID (for the invariants).
    pub fn peek(&self, cid: &str) -> Option<Vec<u8>> {
        self.docs.get(cid).cloned()
    }

    // ---- The port's operations, one per `ContentStore` method. ----

    /// `add?cid-version=1&raw-leaves=true` as the Kubo adapter sees it: the node stores the
    /// document under its own CID ([`node_cid`]); the adapter refuses an answer other than the
    /// locally computed raw CID (`CidMismatch`).
    pub fn put(&mut self, bytes: &[u8]) -> Result<String, PortError> {
        let got = node_cid(bytes).to_string();
        self.docs.insert(got.clone(), bytes.to_vec());
        let expected = raw_cid(bytes).to_string();
        if got == expected {
            Ok(got)
        } else {
            Err(PortError::content(
                ErrorKind::CidMismatch { expected, got },
                "IPFS add answered another CID than the document's",
            ))
        }
    }

    /// `cat`.
    pub fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.docs.get(cid).cloned())
    }
}

/// The content port over a [`ContentModel`], through a [`Gate`]. A new `ContentStore` method
/// is a model method above and one line in `impl ContentStore for SimContent`.
#[derive(Clone)]
pub struct SimContent {
    gate: Gate,
    model: Arc<Mutex<ContentModel>>,
}

impl SimContent {
    /// A content store.
    pub fn new(gate: Gate, model: Arc<Mutex<ContentModel>>) -> Self {
        Self { gate, model }
    }

    /// The gate (fault windows).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Runs one operation of the model through the gate, at one instant; `extra_ms` more before
    /// the answer (a large upload).
    async fn op<T>(
        &self,
        op: &'static str,
        what: String,
        extra_ms: u64,
        f: impl FnOnce(&mut ContentModel) -> Result<T, PortError>,
        summary: impl Fn(&T) -> String,
    ) -> Result<T, PortError> {
        self.gate
            .call(
                op,
                what,
                || {
                    let r = f(&mut self.model.lock().unwrap_or_else(|e| e.into_inner()));
                    (r, extra_ms)
                },
                |r| match r {
                    Ok(v) => summary(v),
                    Err(e) => e.to_string(),
                },
            )
            .await
    }
}

#[async_trait]
impl ContentStore for SimContent {
    async fn put(&self, bytes: &[u8]) -> Result<String, PortError> {
        let what = format!("{} bytes", bytes.len());
        let extra = bytes.len() as u64 / 100_000;
        self.op("put", what, extra, |m| m.put(bytes), String::clone)
            .await
    }

    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.op(
            "get",
            cid.to_string(),
            0,
            |m| m.get(cid),
            |d| {
                d.as_ref()
                    .map_or("none".into(), |d| format!("{} bytes", d.len()))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_documents_are_raw_blocks() {
        assert_eq!(
            node_cid(b"hello world\n").to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
        let one_chunk = vec![7u8; MAX_RAW_BLOCK_BYTES];
        assert_eq!(node_cid(&one_chunk), raw_cid(&one_chunk));
    }

    /// What js-ipfs (the IPFS emulator, `/api/v0/add?cid-version=1&raw-leaves=true`) answered
    /// for these bytes (python: `bytes((i*7+3)%251 for i in range(300*1024))` and
    /// `bytes((i*13+1)%256 for i in range(1024*1024+5))`).
    #[test]
    fn larger_documents_get_the_unixfs_root_an_ipfs_node_answers() {
        let a: Vec<u8> = (0..300 * 1024u32)
            .map(|i| ((i * 7 + 3) % 251) as u8)
            .collect();
        assert_eq!(
            node_cid(&a).to_string(),
            "bafybeifrdasshsfwx7jzd65bo7kz2i3gpiho3jepsgdbgnxrf5n4tav6va"
        );
        let b: Vec<u8> = (0..1024 * 1024 + 5u32)
            .map(|i| ((i * 13 + 1) % 256) as u8)
            .collect();
        assert_eq!(
            node_cid(&b).to_string(),
            "bafybeicxum22silv3zvjptadcwygd6s6bbemahwxglsfigiqrmmbukoglm"
        );
    }
}
