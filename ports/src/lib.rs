//! The pipeline's ports: the small async traits the handlers run over, the values they speak and
//! the one error they fail with. Each port has adapters in crates of their own (AWS: SQS and
//! DynamoDB in `sequencer-aws`; IPFS in `sequencer-ipfs`; the chain in `sequencer-chain`; one
//! machine with no services in `sequencer-embedded`), so the same handler code runs in Lambda, in
//! the local runner and in tests.
//!
//! - [`queue`]: [`Queue`] with SQS semantics (at-least-once, visibility timeout, receive count,
//!   dead-letter queue, FIFO groups).
//! - [`state`]: [`StateStore`], a DynamoDB-shaped item store with conditional writes, state
//!   transitions, a bounded idempotent counter, paginated queries, all-or-nothing transactions
//!   that report each failed condition, and batched reads and writes.
//! - [`content`]: [`ContentStore`], content-addressed bytes (IPFS).
//! - [`chain`]: [`ChainPort`], the protocol state contract, and its values ([`EpochRelease`],
//!   [`Windows`], [`EpochAnchors`], [`SubmitOutcome`], …); releasing epochs and committing a
//!   day's rewards in a block of their own ([`MarketInfo`], [`ReleaseOutcome`], [`MarketDays`],
//!   [`RewardsOutcome`], …).
//! - [`error`]: [`PortError`], one error with a retryable flag and a typed [`ErrorKind`].
//! - `conformance` (feature `conformance`): the suite every adapter of a port passes, so the
//!   adapters cannot drift apart.
//!
//! No async runtime beyond `async-trait`, no I/O: values are plain `alloy-primitives` and core
//! types.

pub mod chain;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod content;
pub mod error;
pub mod queue;
pub mod state;

pub use chain::{
    AnchoredBatch, BatchCall, BatchesOutcome, ChainPort, EndOutcome, EpochAnchors, EpochDetails,
    EpochRelease, MarketDays, MarketInfo, ReleaseOutcome, ReleasesPage, RewardsOutcome, SentTx,
    SlotCount, SubmitOutcome, Windows,
};
pub use content::ContentStore;
pub use error::{ErrorKind, Port, PortError};
pub use queue::{send_all, OutMessage, Queue, Received, MAX_MESSAGES_PER_CALL};
pub use state::{
    check_transaction, query_all, BoundedAdd, Condition, Item, Key, OpStatus, Page, StateStore,
    Table, Transition, TxOp, TxOutcome, MAX_TX_OPS,
};
