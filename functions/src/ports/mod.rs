//! Ports: the small async traits the handlers need (ARCHITECTURE.md "ports"). Each has an AWS
//! adapter (`sequencer-adapters`: SQS, DynamoDB, IPFS HTTP; the chain through `sequencer-chain`)
//! and an embedded one ([`crate::embedded`]) for one machine with no services. The same handler
//! code runs against either, in Lambda, in the local runner and in tests; one conformance suite
//! ([`crate::conformance`]) runs against every adapter of a port so they cannot drift apart.

pub mod chain;
pub mod content;
pub mod queue;
pub mod state;

pub use chain::{ChainError, ChainPort};
pub use content::{ContentError, ContentStore};
pub use queue::{OutMessage, Queue, QueueError, Received};
pub use state::{
    query_all, BoundedAdd, Item, Key, Page, StateError, StateStore, Table, Transition,
};
