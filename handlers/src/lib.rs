//! The sequencer's pipeline: the handlers (verify, tick, finalize, anchor) and the proof and
//! status queries, each a plain async function over the ports (`sequencer-ports`), so the same
//! code runs under `lambda_runtime`, in the local runner and in tests.
//!
//! - [`pipeline`]: the context every handler takes ([`Pipeline`]: ports, settings, verifier,
//!   counters) and the handlers' error ([`PipelineError`]).
//! - [`config`]: the settings, from environment variables with documented defaults.
//! - [`records`]: the one typed records layer over the state store: keys, the epoch lifecycle
//!   and its allowed transitions, submissions, receipts and their tally, batches, the tick's
//!   cursor. No handler builds a key or a state label, and none calls another handler: what
//!   two of them read (an epoch's accepted set, its batches, the epoch list) is here.
//! - [`verify`], [`tick`], [`finalize`], [`anchor`]: the functions.
//! - [`jobs`]: the finalize and anchor jobs they send each other.
//! - [`query`]: the proof and status queries as typed serde views (served over HTTP by
//!   `sequencer-api`).
//! - [`sqs`]: running a handler over the records of an SQS event, with partial batch failures.
//!
//! This crate depends on the core, the ports and small pure crates only: no alloy provider, no
//! SQLite, no AWS SDK (`cargo tree -p sequencer-handlers -e normal` shows it).

pub mod anchor;
pub mod config;
pub mod finalize;
pub mod jobs;
pub mod pipeline;
pub mod query;
pub mod records;
pub mod sqs;
pub mod tick;
pub mod verify;

pub use config::PipelineConfig;
pub use pipeline::{Clock, Counters, Pipeline, PipelineError, Ports, SystemClock};
