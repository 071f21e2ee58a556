//! Pure protocol core of the submission sequencer (PROTOCOL.md): submission types
//! and both wire codecs, EIP-712 identity, validation rules with typed rejection
//! reasons, consensus, batch cutting and canonical batch JSON, the incremental
//! Merkle tree and its proofs, CIDs and the UnixFS layout of large documents. No I/O and no async: every function here
//! is deterministic, so the same code runs in Lambda, locally and in tests.

pub mod cids;
pub mod collect;
pub mod devkeys;
pub mod eip712;
pub mod finalize;
pub mod gossip;
pub mod merkle;
pub mod proof;
pub mod rules;
pub mod submission;
pub mod unixfs;

pub use alloy_primitives::{Address, B256};
