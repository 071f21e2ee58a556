//! [`ContentStore`] as a content-addressed directory.
//!
//! A document is stored whole, as `<dir>/<cid>`, under the CID an IPFS node gives it
//! (`ipfs add --cid-version=1 --raw-leaves`, `sequencer_core::cids::document_cid`): the raw CID up
//! to one 256 KiB chunk, the root of its UnixFS DAG above. So the local pipeline meets exactly
//! the CIDs (and the refusals) a real node gives: a document a node would chunk is never stored
//! under its raw CID here, and `get` by the root answers the whole bytes, as a node's `cat` does.
//! `get` recomputes the CID of what it read and calls a file that does not give it again
//! corrupt.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sequencer_core::cids::document_cid;

use sequencer_ports::{ContentStore, ErrorKind, PortError};

/// Blocks stored as `<dir>/<cid>`.
#[derive(Debug, Clone)]
pub struct BlockDir {
    dir: PathBuf,
}

impl BlockDir {
    /// A blockstore in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, cid: &str) -> Option<PathBuf> {
        // A CID is base32/base58 text: refuse anything that could walk out of the directory.
        (!cid.is_empty() && cid.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| self.dir.join(cid))
    }
}

fn io(e: std::io::Error) -> PortError {
    PortError::content(ErrorKind::Unavailable, format!("blockstore: {e}"))
}

#[async_trait]
impl ContentStore for BlockDir {
    async fn put(&self, bytes: &[u8]) -> Result<String, PortError> {
        let cid = document_cid(bytes).to_string();
        let path = self
            .path_of(&cid)
            .ok_or_else(|| PortError::content(ErrorKind::Corrupt, cid.clone()))?;
        if path.is_file() {
            return Ok(cid);
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let tmp = self.dir.join(format!(".{cid}.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(cid)
    }

    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError> {
        let Some(path) = self.path_of(cid) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                if document_cid(&bytes).to_string() != cid {
                    return Err(PortError::content(ErrorKind::Corrupt, cid.to_string()));
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_and_corruption() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlockDir::new(dir.path().join("blocks"));
        sequencer_ports::conformance::content_store(&store).await;
        let cid = store.put(b"abc").await.expect("put");
        std::fs::write(dir.path().join("blocks").join(&cid), b"abd").expect("tamper");
        assert!(matches!(
            store.get(&cid).await,
            Err(ref e) if *e.kind() == ErrorKind::Corrupt
        ));
        assert_eq!(store.get("../../etc/passwd").await.expect("refused"), None);
    }
}
