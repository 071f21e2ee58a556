//! The content store port: content-addressed bytes (IPFS in production, a blockstore directory
//! locally). A batch document fits one 256 KiB chunk, so its CID is `CIDv1(raw, sha2-256)`
//! (PROTOCOL.md §6), computed by `sequencer_core::cids::raw_cid`.
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
    /// Stores `bytes`; returns their CID (`bafkrei…`), which must equal `raw_cid(bytes)`.
    /// Storing the same bytes again is a no-op that returns the same CID.
    async fn put(&self, bytes: &[u8]) -> Result<String, PortError>;

    /// The bytes with this CID, `None` if the store does not have them.
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError>;
}
