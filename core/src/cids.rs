//! Content identifiers (docs/protocol.md §6): document CIDs and snapshot CID parsing.
//!
//! The CID of one raw block ([`raw_cid`]) lives in `blocks`, below both this module and `unixfs`,
//! and is re-exported here; this module sits above the UnixFS layout, so a
//! document's CID ([`document_cid`]) can pick between the two without the modules importing each
//! other.

pub use crate::blocks::{raw_cid, Cid, RAW_CODEC, SHA2_256};

/// Largest document `ipfs add --cid-version=1` stores as one raw block (its default
/// chunk size); up to this size the CID is `CIDv1(raw, sha2-256(bytes))`, above it the root of a
/// UnixFS DAG ([`document_cid`]).
pub const MAX_RAW_BLOCK_BYTES: usize = crate::unixfs::CHUNK_BYTES;

/// A string that is not a CID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CidError(String);

/// The CID of a document (a batch, a seal): what `ipfs add --cid-version=1 --raw-leaves` gives
/// for its bytes (docs/protocol.md §6): [`raw_cid`] up to [`MAX_RAW_BLOCK_BYTES`], else the root of
/// the balanced UnixFS DAG of 256 KiB raw leaves (`bafybei…`, [`crate::unixfs`]). The one rule
/// every writer and checker of a document's CID uses: finalize, the content stores, the proofs,
/// `seqctl`.
pub fn document_cid(bytes: &[u8]) -> Cid {
    crate::unixfs::file_cid(bytes)
}

/// Parses a bare CIDv0 (`Qm…`) or CIDv1 (multibase) string. It decodes the text itself rather
/// than with `Cid::try_from(&str)`, which also reads past an `/ipfs/` prefix (a path or gateway
/// URL) and ignores bytes after the CID; `multiformats` rejects both
/// (`tests/vectors/cids.json`, `invalidSpellings`), and so does this.
pub fn parse_cid(s: &str) -> Result<Cid, CidError> {
    if s.is_empty() {
        return Err(CidError("empty CID".into()));
    }
    let bytes = if cid::Version::is_v0_str(s) {
        cid::multibase::Base::Base58Btc.decode(s)
    } else {
        cid::multibase::decode(s).map(|(_, b)| b)
    }
    .map_err(|e| CidError(format!("not multibase text: {e}")))?;
    let c = Cid::try_from(bytes.as_slice()).map_err(|e| CidError(e.to_string()))?;
    if bytes.len() != c.encoded_len() {
        return Err(CidError(format!(
            "{} bytes after the CID",
            bytes.len().saturating_sub(c.encoded_len())
        )));
    }
    Ok(c)
}

/// The canonical spelling of a CID (docs/protocol.md §6): CIDv1 in lower-case base32; a CIDv0
/// becomes its CIDv1 (dag-pb) form. Text that does not parse is returned as is (verify rejects
/// such a submission before it can be accepted).
pub fn canonical_cid(s: &str) -> String {
    match parse_cid(s) {
        Ok(c) if c.version() == cid::Version::V0 => Cid::new_v1(c.codec(), *c.hash()).to_string(),
        Ok(c) => c.to_string(),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v0_and_v1_and_rejects_junk() {
        let v0 = parse_cid("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG").expect("v0");
        assert_eq!(v0.version(), cid::Version::V0);
        let v1 =
            parse_cid("bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy").expect("v1");
        assert_eq!(v1.codec(), RAW_CODEC);
        for junk in ["", "Qm123", "bafkreinotacid", "0x1234"] {
            assert!(parse_cid(junk).is_err(), "{junk}");
        }
    }
}
