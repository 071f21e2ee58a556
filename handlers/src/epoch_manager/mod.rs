//! The epoch manager: releases a data market's epochs on the protocol chain as its *source
//! chain* produces them: contiguous, never ahead of the chain, exactly once. A handler over the
//! chain port, so the same code runs in the `epoch-manager` Lambda, the local runner,
//! `seqctl chain release-epochs` and the tests (on the in-memory chain in milliseconds, on anvil).
//!
//! - [`sequencer_core::epochs`]: the pure planning (which epochs are due, catch-up, skips, the
//!   contract's day clock), property-tested;
//! - [`service`]: [`EpochManager`], which drives that plan over the chain port;
//! - [`config`]: [`EpochManagerConfig`], from code or the environment;
//! - [`stats`]: [`Stats`] and the metrics.
//!
//! # Model
//!
//! An epoch is `epochSize` consecutive blocks `[begin, end]` of the market's source chain (by
//! default the protocol chain itself). Epoch E+1 begins at `end(E) + 1`, whatever the block
//! times of the two chains and whenever E was released, so releases never drift. Epoch E is
//! **due** iff the source head is at least `end + finality_offset`; the manager releases it
//! within one poll interval of that and never earlier ([`sequencer_core::epochs::plan`]).
//!
//! # Exactly once, no gap
//!
//! - The next `begin` comes from the contract (`dataMarketInfo`: `lastEpochEnd + 1`) before every
//!   single release (read before send), so a restart, an error or a timeout never works from a
//!   stale cursor; before the first release ever it is [`EpochManagerConfig::first_begin`].
//! - The nonce comes from the chain, and a transaction our key left pending (a crashed
//!   predecessor) is waited for, not replaced: the chain adapter's single writer does both.
//! - A release whose receipt does not arrive in time ([`EpochManagerConfig::release_timeout`] or
//!   the adapter's receipt timeout), or which failed on chain, is settled by reading the
//!   contract, never by sending it again blindly.
//! - A release left unsettled (connection lost after sending, timeout) is attributed at the next
//!   poll from the contract: found released by a transaction of our key → counted as released
//!   (also when a killed predecessor of the same key sent it), by another key → [`Stats::raced`].
//! - Two managers racing on one market: the one that loses finds the epoch released on its next
//!   read, or gets the contract's contiguity revert (`InvalidEpochRange`) or a failed
//!   transaction; each is counted as [`Stats::raced`] and the manager re-reads and continues.
//!   The contiguity check is the backstop: two managers with no delay both send when an epoch
//!   comes due and the loser's transaction fails on chain (gas spent). The plan for two is a
//!   primary and a standby ([`EpochManagerConfig::send_delay`] longer than a protocol block plus
//!   a poll), which sends nothing while the primary is healthy and takes over when it is gone.
//! - Bad input gets a typed error and no transaction: an unregistered market, a key without the
//!   EPOCH MANAGER role (`isEpochManager` is checked before anything is sent), an `epochSize` of
//!   0, and a source RPC that lies about the head (going back by more than `finality_offset`, or
//!   behind an epoch already released).
//!
//! # Days
//!
//! The contract rolls the market's day over inside `releaseEpoch` once `epochsInADay` epochs of
//! the day were released (`dayCounter` + 1 and `DayStartedEvent`, in the release's own
//! transaction), so a day starts exactly once whoever releases and however often a manager
//! restarts: there is nothing for the manager to send. It reports what happened: a release that
//! started a day is logged (`day started`), counted ([`Stats::days_started`],
//! `epoch_manager_days_started_total`) and listed in [`Released::day_started`]; the day as last
//! seen is [`Stats::day`] (`epoch_manager_day`). A release settled from the contract after a
//! timeout is checked the same way from the contract (its epoch's day against the previous
//! epoch's).
//!
//! # Lag
//!
//! The release lag of an epoch is measured from the moment the source chain reached
//! `end + finality_offset` to the moment the release was mined: in source blocks (source head
//! after the receipt minus `end + finality_offset`) and in milliseconds (from the first poll that
//! saw the source head at or past `end + finality_offset`; that poll is at most one poll interval
//! after the block appeared).

pub mod config;
pub mod service;
pub mod stats;

use sequencer_core::epochs::{EpochRange, PlanError, Skip};
use sequencer_core::Address;
use sequencer_ports::PortError;
use serde::Serialize;
use tokio::time::Instant;

pub use config::EpochManagerConfig;
pub use service::EpochManager;
pub use stats::{Lag, Stats};

/// What the epoch manager fails with. [`Self::is_fatal`] says whether polling again can help.
#[derive(Debug, thiserror::Error)]
pub enum EpochManagerError {
    /// Bad configuration.
    #[error("epoch manager config: {0}")]
    Config(String),
    /// The market is not registered on the ProtocolState contract.
    #[error("data market {0} is not registered on this ProtocolState")]
    UnknownMarket(Address),
    /// Our key does not hold the EPOCH MANAGER role of the market.
    #[error("{who} is not an epoch manager of market {market} (grant it with setEpochManager)")]
    NotEpochManager {
        /// The market.
        market: Address,
        /// Our signer.
        who: Address,
    },
    /// The protocol chain adapter has no signer.
    #[error("the protocol chain client has no signer (epoch manager key)")]
    NoSigner,
    /// The market's epoch size is 0.
    #[error("data market {0} has epoch size 0")]
    ZeroEpochSize(Address),
    /// The source head went back by more than the finality offset: a reorg deeper than the
    /// offset, or an RPC that lies. Nothing is sent.
    #[error("source chain head went back from {seen} to {now} (more than the finality offset {tolerance}): deep reorg or lying RPC; nothing sent")]
    SourceHeadBackwards {
        /// Highest head seen.
        seen: u64,
        /// Head now.
        now: u64,
        /// Tolerated drop (the finality offset).
        tolerance: u64,
    },
    /// The source chain is behind blocks the contract already released: wrong source RPC or a
    /// node far behind. Nothing is sent.
    #[error("source chain head {head} is behind the last released epoch end {last_epoch_end}: wrong source chain or lagging node; nothing sent")]
    SourceBehindContract {
        /// Source head.
        head: u64,
        /// `lastEpochEnd` on the contract.
        last_epoch_end: u64,
    },
    /// No receipt for a release within `release_timeout`, and the contract does not show it
    /// yet; the next poll settles it from the contract (nothing is resent blindly).
    #[error("release of epoch [{begin}, {end}] not settled within the release timeout; settling from the contract at the next poll")]
    ReleaseTimeout {
        /// First block.
        begin: u64,
        /// Last block.
        end: u64,
    },
    /// Block arithmetic overflow.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A chain port error.
    #[error(transparent)]
    Chain(#[from] PortError),
}

impl EpochManagerError {
    /// Fatal: polling again cannot help (configuration, role, market); [`EpochManager::run_until`]
    /// returns it. Everything else (RPC down, timeouts, a lying head) is logged, counted in
    /// [`Stats::errors`] and retried at the next poll.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Config(_)
            | Self::UnknownMarket(_)
            | Self::NotEpochManager { .. }
            | Self::NoSigner
            | Self::ZeroEpochSize(_)
            | Self::Plan(_) => true,
            Self::SourceHeadBackwards { .. }
            | Self::SourceBehindContract { .. }
            | Self::ReleaseTimeout { .. } => false,
            Self::Chain(e) => !e.is_retryable(),
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = EpochManagerError> = std::result::Result<T, E>;

/// One epoch this manager released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    /// Epoch id on the contract.
    pub epoch_id: u64,
    /// The epoch.
    pub range: EpochRange,
    /// `end + finality_offset`.
    pub due_at: u64,
    /// Source head read right before sending (≥ `due_at`).
    pub source_head_at_send: u64,
    /// Protocol-chain block of the release.
    pub block: u64,
    /// The release transaction (`None` when a timed-out release was found on chain without it).
    pub tx_hash: Option<sequencer_core::B256>,
    /// The day this release started (`DayStartedEvent` in its transaction), if it did.
    pub day_started: Option<u64>,
    /// Its lag.
    pub lag: Lag,
    /// When it was seen mined (this process's clock).
    #[serde(skip)]
    pub mined_at: Option<Instant>,
}

/// What one [`EpochManager::step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Source head at the last read.
    pub source_head: u64,
    /// The contract's next begin after the step.
    pub next_begin: u64,
    /// Epochs released by this manager, in order.
    pub released: Vec<Released>,
    /// Skips recorded by this manager.
    pub skipped: Vec<Skip>,
    /// Epochs found released by someone else (read before send, contiguity revert, failed tx).
    pub raced: u64,
    /// Epochs still due after the step (rate bound or deadline): the next step takes them.
    pub backlog: u64,
    /// Source block at which the next epoch becomes due.
    pub next_due_at: u64,
}
