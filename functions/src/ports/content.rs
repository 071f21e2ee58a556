//! The content store port: content-addressed bytes (IPFS in production, a blockstore directory
//! locally). A batch document fits one 256 KiB chunk, so its CID is `CIDv1(raw, sha2-256)`
//! (PROTOCOL.md §6), computed by `sequencer_core::cids::raw_cid`.

use async_trait::async_trait;

/// Content store failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContentError {
    /// The store could not be reached or failed; retry.
    #[error("content store unavailable: {0}")]
    Unavailable(String),
    /// The store returned a CID other than the one computed locally; the upload is refused.
    #[error("content store returned CID {got}, expected {expected}")]
    CidMismatch {
        /// Computed locally.
        expected: String,
        /// Returned by the store.
        got: String,
    },
    /// Stored bytes do not hash to their CID.
    #[error("content for {0} does not match its CID")]
    Corrupt(String),
}

/// A content-addressed store.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Stores `bytes`; returns their CID (`bafkrei…`), which must equal `raw_cid(bytes)`.
    /// Storing the same bytes again is a no-op that returns the same CID.
    async fn put(&self, bytes: &[u8]) -> Result<String, ContentError>;

    /// The bytes with this CID, `None` if the store does not have them.
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, ContentError>;
}
