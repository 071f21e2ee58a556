//! Embedded adapters: the whole pipeline on one machine with no services, real enough to trust.
//!
//! - [`SqliteState`] and [`SqliteQueue`] share one SQLite file ([`Db`]). SQLite was chosen over
//!   redb or sled because its durability contract is the one a local sequencer needs and is
//!   widely understood: in WAL mode with `synchronous=NORMAL` every committed transaction
//!   survives a killed process (SIGKILL); only an OS crash or power loss can lose the last
//!   commits, never corrupt the file. Conditional writes are single SQL statements inside a
//!   transaction, so they are atomic across the runner's concurrent tasks. A transaction costs
//!   tens of microseconds (no fsync per commit), which keeps a 50 000-submission epoch fast.
//! - The queue keeps SQS semantics (at-least-once, visibility timeout, receive count,
//!   `maxReceiveCount` → dead-letter queue, FIFO groups) in the same file, so messages the
//!   ingress handed over survive a restart of the runner.
//! - [`BlockDir`] is a content-addressed directory: `<dir>/<cid>`, written to a temporary file,
//!   synced and renamed, so a crash never leaves a torn block under its CID.
//! - [`poller`] stands in for Lambda's SQS event source mapping where no Lambda runs (the local
//!   runner, tests): receive, build the `SqsEvent`, call the handler, delete what succeeded.
//!
//! Each adapter passes its port's conformance suite (`sequencer_ports::conformance`).

mod blockdir;
mod db;
pub mod poller;
mod queue;
mod state;

pub use blockdir::BlockDir;
pub use db::{Db, DbError};
pub use queue::{QueueOptions, SqliteQueue};
pub use state::SqliteState;
