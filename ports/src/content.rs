//! The content store port: content-addressed bytes (IPFS in production, a blockstore directory
//! locally). A document's CID is what `ipfs add --cid-version=1 --raw-leaves` gives for its bytes
//! (docs/protocol.md §6), computed by `sequencer_core::cids::document_cid`: `CIDv1(raw, sha2-256)`
//! for one 256 KiB chunk or less, the root of the balanced UnixFS DAG of 256 KiB raw leaves
//! above that. Every adapter answers exactly that CID and serves the whole document by it.
//!
//! Failures: [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (retry),
//! [`ErrorKind::CidMismatch`](crate::ErrorKind::CidMismatch) (the store answered another CID:
//! the upload is refused), [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) (stored bytes do not
//! hash to their CID).

use async_trait::async_trait;

use crate::PortError;

/// A content-addressed store.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Stores `bytes`; returns their CID, which must equal `document_cid(bytes)` (`bafkrei…` up
    /// to 256 KiB, `bafybei…` above). Storing the same bytes again is a no-op that returns the
    /// same CID.
    async fn put(&self, bytes: &[u8]) -> Result<String, PortError>;

    /// The bytes with this CID (the whole document, also when it was chunked), `None` if the
    /// store does not have them.
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError>;
}
