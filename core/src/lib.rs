//! Pure protocol core of the submission sequencer (docs/protocol.md): submission types
//! and both wire codecs, EIP-712 identity, validation rules with typed rejection
//! reasons, consensus, batch cutting and canonical batch JSON, the incremental
//! Merkle tree and its proofs, CIDs and the UnixFS layout of large documents, the
//! epoch manager's plan and the contract's days (`epochs`), and the rewards tally
//! per slot, epoch and day (`rewards`). No I/O and no async: every function here is
//! deterministic, so the same code runs in Lambda, locally and in tests.

pub mod anchor_gas;
pub mod blocks;
pub mod cids;
pub mod collect;
pub mod devkeys;
pub mod eip712;
pub mod epochs;
pub mod finalize;
pub mod gossip;
pub mod merkle;
pub mod proof;
pub mod rewards;
pub mod rules;
pub mod submission;
pub mod tally;
pub mod unixfs;

pub use alloy_primitives::{Address, B256};
