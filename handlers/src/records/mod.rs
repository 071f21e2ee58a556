//! The one typed records layer over the state store: everything the handlers, the proof and
//! status queries and the local runner keep or read goes through [`Records`].
//!
//! - [`keys`]: the key scheme, private to this module: no other code builds a key.
//! - [`epochs`]: [`EpochRecord`] and its [`EpochState`], whose allowed transitions
//!   (open → closing → closed → finalized → anchored, and failed) are enforced in
//!   [`EpochState::can_become`] and nowhere else; the tick's [`TickCursor`].
//! - [`submissions`]: claims of (project, slot) and accepted submissions ([`SubmissionRecord`]),
//!   the per-slot cap.
//! - [`receipts`]: the outcome of every submission id ([`Receipt`], [`Outcome`],
//!   [`RejectReason`]) and the one tally of an epoch's receipts ([`EpochCounts`]).
//! - [`batches`]: finalized batches ([`BatchRecord`], [`BatchState`]).
//! - [`seals`]: an epoch's seal ([`SealRecord`]): the one batch set finalization made of the
//!   accepted set it read, written once (in the epochs table, a partition of its own).
//! - [`blocks`]: protocol-chain block hashes the tick records for verify.
//! - [`rewards`]: each finalized epoch's per-slot rewards ([`EpochRewards`]) and each day's sums
//!   with their on-chain commit ([`DayRewards`]).
//! - [`intake`]: verify's batched read and its one transaction across the tables (acceptance
//!   conditional on the epoch still open, the claim, the receipt and the slot's cap at once).
//!
//! Retention: every record of an epoch (its record, seal, accepted submissions, receipts, slot
//! counters, batches and rewards) carries one expiry, [`Records::expiry_of`] the epoch: the time
//! the tick saw its release plus the retention (`RECORD_TTL_DAYS`), whenever it is written. So
//! the store's TTL removes an epoch's records together, and an epoch is past the retention
//! ([`Records::is_expired`]) before any of them goes. Records of no one epoch (block hashes, a
//! day's rewards, a receipt of an epoch never recorded) expire the retention after they are
//! written. The tick's cursor never expires.
//!
//! Stored JSON and key formats are those the previous handlers wrote, byte for byte: a state
//! store written before this layer reads the same.
//!
//! Each table's reads and writes are methods of [`Records`] in that table's module, so a reader
//! (and `infra/terraform/check/drift.py`, which derives each function's IAM actions from them)
//! finds every store call of a table in one file.

mod batches;
mod blocks;
mod epochs;
mod intake;
mod keys;
mod receipts;
mod rewards;
mod seals;
mod submissions;
mod watermark;

use std::time::Duration;

use sequencer_core::Address;
use sequencer_ports::StateStore;

use crate::clock::{Clock, SystemClock};

pub use batches::{BatchEntry, BatchRecord, BatchState};
pub use epochs::{EpochEntry, EpochMove, EpochRecord, EpochState, TickCursor};
pub use intake::{Found, Want, Write, WriteStatus};
pub use keys::DECIDED_SHARDS;
pub use keys::{shard_of, SHARDS};
pub use receipts::{EpochCounts, Outcome, Receipt, RejectReason};
pub use rewards::{DayCommit, DayRewards, EpochRewards};
pub use seals::{SealRecord, SealWrite};
pub use submissions::{SubmissionRecord, SubmissionState};
pub use watermark::mark_of;

/// When every record of one epoch expires (Unix seconds): [`Records::expiry_of`] the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(pub u64);

/// The typed records of one market in a state store. Cheap to build (a reference, the market
/// and the expiry of new records); build one where it is needed.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    store: &'a dyn StateStore,
    market: Address,
    ttl: Duration,
    clock: &'a dyn Clock,
}

impl std::fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("market", &self.market)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<'a> Records<'a> {
    /// The records of `market` in `store`; records that expire get `ttl` from the time they are
    /// written.
    pub fn new(store: &'a dyn StateStore, market: Address, ttl: Duration) -> Self {
        Self {
            store,
            market,
            ttl,
            clock: &SystemClock,
        }
    }

    /// The same records reading the time from `clock` (the pipeline's).
    pub fn with_clock(self, clock: &'a dyn Clock) -> Self {
        Self { clock, ..self }
    }

    /// The market.
    pub fn market(&self) -> Address {
        self.market
    }

    /// The time by the records' clock, Unix seconds.
    fn now_s(&self) -> u64 {
        u64::try_from(self.clock.now_ms() / 1000).unwrap_or(0)
    }

    /// Expiry (Unix seconds) of a record of no recorded epoch written now.
    pub fn default_expiry(&self) -> u64 {
        self.now_s().saturating_add(self.ttl.as_secs())
    }

    /// [`Self::default_expiry`], as a record's TTL.
    fn expiry(&self) -> Option<u64> {
        Some(self.default_expiry())
    }

    /// When every record of this epoch expires: the time the tick saw its release plus the
    /// retention, the same whenever a record of it is written. (A record without that time,
    /// which the tick always stamps, counts from now.)
    pub fn expiry_of(&self, rec: &EpochRecord) -> Expiry {
        let seen = u64::try_from(rec.seen_at_ms / 1000)
            .ok()
            .filter(|s| *s > 0)
            .unwrap_or_else(|| self.now_s());
        Expiry(seen.saturating_add(self.ttl.as_secs()))
    }

    /// Whether the epoch is past the retention: its records are expired (the store's sweeper
    /// may not have deleted all of them yet; none of them is to be used).
    pub fn is_expired(&self, rec: &EpochRecord) -> bool {
        self.now_s() >= self.expiry_of(rec).0
    }

    /// The retention.
    pub fn retention(&self) -> Duration {
        self.ttl
    }
}
