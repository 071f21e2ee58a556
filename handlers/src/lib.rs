//! The sequencer's pipeline: the handlers (verify, tick, finalize, anchor) and the proof and
//! status queries, each a plain async function over the ports (`sequencer-ports`), so the same
//! code runs under `lambda_runtime`, in the local runner and in tests.
//!
//! - [`pipeline`]: the context every handler takes ([`Pipeline`]: ports, settings, verifier,
//!   metrics) and the handlers' error ([`PipelineError`]).
//! - [`clock`]: where the handlers read the time and wait ([`Clock`], [`SystemClock`]).
//! - [`metrics`]: every metric the pipeline records (names, labels, units, help) in one table,
//!   recorded through the `metrics` facade with the market as a label on every series.
//! - [`config`]: the settings, from environment variables with documented defaults.
//! - [`records`]: the one typed records layer over the state store: keys, the epoch lifecycle
//!   and its allowed transitions, submissions, receipts and their tally, batches, the tick's
//!   cursor. No handler builds a key or a state label, and none calls another handler: what
//!   two of them read (an epoch's accepted set, its batches, the epoch list) is here.
//! - [`verify`], [`tick`], [`finalize`], [`anchor`]: the functions.
//! - [`epoch_manager`]: releases a market's epochs from its source chain (the planning is in
//!   `sequencer_core::epochs`), over the chain port.
//! - [`rewards`]: the daily rewards commit (`updateRewards`, once per day) from the per-epoch
//!   rewards finalization keeps.
//! - `retention`: verify's check of an epoch past the retention (`expired_epoch`, answered at
//!   once); the policy itself is the records layer's ([`records`]).
//! - [`jobs`]: the finalize, anchor and rewards jobs they send each other.
//! - [`query`]: the proof and status queries as typed serde views (served over HTTP by
//!   `sequencer-api`).
//! - [`sqs`]: running a handler over the records of an SQS event, with partial batch failures.
//!
//! This crate depends on the core, the ports and small pure crates only: no alloy provider, no
//! SQLite, no AWS SDK (`cargo tree -p sequencer-handlers -e normal` shows it).

pub mod anchor;
pub mod chain_cache;
pub mod clock;
pub mod config;
pub mod epoch_manager;
pub mod finalize;
pub mod jobs;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod records;
mod retention;
pub mod rewards;
pub mod sqs;
pub mod tick;
pub mod verify;

pub use config::PipelineConfig;
pub use metrics::Metrics;
pub use pipeline::{Clock, Pipeline, PipelineError, Ports, SystemClock};
