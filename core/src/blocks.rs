//! The CID of one raw block (docs/protocol.md §6): `CIDv1(raw, sha2-256(bytes))`, and the codes
//! it is made of. Both `unixfs` (its leaves) and `cids` (a small document's CID, re-exported
//! there as the public path) use it; it uses neither, so they need not use each other.

use cid::multihash::Multihash;
pub use cid::Cid;
use sha2::{Digest, Sha256};

/// Multicodec `raw`.
pub const RAW_CODEC: u64 = 0x55;
/// Multihash `sha2-256`.
pub const SHA2_256: u64 = 0x12;

/// `CIDv1(raw, sha2-256(bytes))`, as `ipfs add --cid-version=1` returns for a
/// document of at most one chunk (`cids::MAX_RAW_BLOCK_BYTES`) and as `ipfs block put` with the raw
/// codec returns for any size.
pub fn raw_cid(bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
    Cid::new_v1(RAW_CODEC, mh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_matches_ipfs_add() {
        assert_eq!(
            raw_cid(b"hello world\n").to_string(),
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        );
    }
}
