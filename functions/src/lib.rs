//! The sequencer's pipeline (../shared/spec/ARCHITECTURE.md): [`ports`] (queue, state store, content
//! store, chain), the handlers ([`handlers`]: verify, tick, finalize, anchor) as plain async
//! functions over them, the [`embedded`] adapters for one machine with no services, the
//! [`poller`] that stands in for Lambda's SQS event source mapping, and the [`conformance`] suite
//! every adapter passes.

pub mod config;
pub mod conformance;
pub mod embedded;
pub mod handlers;
pub mod pipeline;
pub mod poller;
pub mod ports;
pub mod records;
pub mod testkit;

pub use config::PipelineConfig;
pub use pipeline::{Clock, Counters, Pipeline, PipelineError, Ports, SystemClock};
