//! The epoch manager: releases a data market's epochs on the protocol chain as its *source
//! chain* produces them: contiguous, never ahead of the chain, exactly once. The one
//! implementation behind `seqctl chain release-epochs`, the local runner and the cloud form.
//!
//! # Model
//!
//! An epoch is `epochSize` consecutive blocks `[begin, end]` of the market's source chain (the
//! chain the market's data comes from; by default the protocol chain itself). Epoch E+1 begins
//! at `end(E) + 1`, whatever the block times of the two chains and whenever E was released, so
//! releases never drift. Epoch E is **due** iff the source head is at least
//! `end + finality_offset`; the manager releases it within one poll interval of that and never
//! earlier ([`plan`] is the rule, pure and property-tested).
//!
//! # Exactly once, no gap
//!
//! - The next `begin` comes from the contract (`dataMarketInfo`: `lastEpochEnd + 1`) before every
//!   single release (read before send), so a restart, an error or a timeout never works from a
//!   stale cursor; before the first release ever it is [`EpochManagerConfig::first_begin`].
//! - The nonce comes from the chain, and a transaction our key left pending (a crashed
//!   predecessor) is waited for, not replaced ([`ChainClient`]'s single writer does both).
//! - A release whose receipt does not arrive in time ([`EpochManagerConfig::release_timeout`] or
//!   the client's receipt timeout), or which failed on chain, is settled by reading the contract,
//!   never by sending it again blindly.
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
//! # Catching up ([`CatchUp`])
//!
//! A manager that was down finds many epochs due at once.
//!
//! - [`CatchUp::InOrder`] (default) releases every missed epoch, oldest first, at most
//!   `max_per_sec` releases a second. For snapshotters: every epoch exists on chain and each gets
//!   its full submission window counted from its own release block, but the epochs are old: their
//!   blocks are history (snapshotters must still be able to read them), they arrive in a burst
//!   paced by `max_per_sec`, and a snapshotter that only follows "the latest epoch" skips them
//!   anyway. The default because nothing is lost and the choice stays reversible: an operator
//!   who prefers the gap can still skip later, while a skipped range can never be released.
//! - [`CatchUp::SkipToHead`] records a skip on chain (`skipEpochs`, event `EpochsSkipped`) over
//!   all missed epochs but the newest, then releases the newest. For snapshotters: the skipped
//!   epochs never exist on chain (no id, no window, nothing to submit or to be rewarded for); the
//!   event tells consumers the gap is deliberate, not lost data. Before the market's first
//!   release there is nothing to skip on chain: the first epoch simply begins on the grid at the
//!   newest due epoch (counted in [`Stats::skipped`], logged).
//!
//! # Lag
//!
//! The release lag of an epoch is measured from the moment the source chain reached
//! `end + finality_offset` to the moment the release was mined: in source blocks (source head
//! after the receipt minus `end + finality_offset`) and in milliseconds (from the first poll that
//! saw the source head at or past `end + finality_offset`; that poll is at most one poll interval
//! after the block appeared).

use std::{
    collections::VecDeque,
    future::Future,
    time::{Duration, Instant},
};

use alloy::primitives::{Address, TxHash};
use serde::Serialize;
use tracing::{debug, error, info, warn};

use crate::{ChainClient, ChainError, MarketInfo, Revert};

// ====================================================================== pure planning

/// One epoch: blocks `[begin, end]` of the source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EpochRange {
    /// First block.
    pub begin: u64,
    /// Last block.
    pub end: u64,
}

impl EpochRange {
    /// The epoch of `size` blocks starting at `begin`.
    pub fn starting_at(begin: u64, size: u64) -> Result<Self, PlanError> {
        if size == 0 {
            return Err(PlanError::ZeroEpochSize);
        }
        let end = begin
            .checked_add(size - 1)
            .ok_or(PlanError::Overflow { begin })?;
        Ok(Self { begin, end })
    }

    /// The source block at which this epoch is due: `end + finality_offset`.
    pub fn due_at(&self, finality_offset: u64) -> Result<u64, PlanError> {
        self.end
            .checked_add(finality_offset)
            .ok_or(PlanError::Overflow { begin: self.begin })
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The market's epoch size is 0.
    #[error("epoch size is 0")]
    ZeroEpochSize,
    /// Block arithmetic past `u64::MAX`.
    #[error("block numbers overflow u64 from begin {begin}")]
    Overflow {
        /// Where it happened.
        begin: u64,
    },
}

/// How a manager that fell behind catches up. See the module docs for what each means for
/// snapshotters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum CatchUp {
    /// Release every missed epoch in order, at most `max_per_sec` releases a second (also the
    /// bound in normal operation, where one epoch is due at a time). Must exceed the source
    /// chain's epoch rate (1 / (epochSize × block time)) or the backlog never drains.
    InOrder {
        /// Releases per second, > 0.
        max_per_sec: u32,
    },
    /// When more than `max_backlog` epochs are due, skip all but the newest on chain
    /// (`skipEpochs`) and release the newest; a backlog up to `max_backlog` is released in order.
    SkipToHead {
        /// Largest backlog released in order, ≥ 1 (1: skip as soon as two epochs are due).
        max_backlog: u64,
    },
}

impl CatchUp {
    /// Default release rate of [`CatchUp::InOrder`]: 5 a second drains a 50-epoch backlog in
    /// about 10 s, far above any real market's epoch rate (Ethereum: 12 s blocks × 10 = one epoch
    /// per 2 minutes), while one release (a transaction and its receipt) per 200 ms keeps a
    /// burst of windows opening at a pace a sequencer finalizes comfortably.
    pub const DEFAULT_MAX_PER_SEC: u32 = 5;
}

impl Default for CatchUp {
    fn default() -> Self {
        Self::InOrder {
            max_per_sec: Self::DEFAULT_MAX_PER_SEC,
        }
    }
}

/// A skip of whole epochs: blocks `[from_begin, to_begin − 1]` get no epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// First skipped block (the next begin before the skip).
    pub from_begin: u64,
    /// The next begin after the skip.
    pub to_begin: u64,
    /// Number of epochs skipped.
    pub epochs: u64,
}

/// What to do at one source head ([`plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Epochs due at this head, counted from the next begin (before any skip).
    pub due: u64,
    /// Under [`CatchUp::SkipToHead`] with a backlog: skip these epochs first.
    pub skip: Option<Skip>,
    /// The epoch to release now (after the skip, if any); `None` when nothing is due.
    pub release: Option<EpochRange>,
    /// The source block at which the first epoch not due yet becomes due.
    pub next_due_at: u64,
}

/// Decides what is due: with the contract's next `begin`, the market's `epoch_size`, the source
/// chain's head and the finality offset, epoch `[b, b + size − 1]` is due iff
/// `source_head ≥ b + size − 1 + finality_offset`. Epochs are counted on the grid
/// `next_begin + k·size` (no drift). Pure: no I/O.
pub fn plan(
    next_begin: u64,
    epoch_size: u64,
    source_head: u64,
    finality_offset: u64,
    catch_up: CatchUp,
) -> Result<Plan, PlanError> {
    let first = EpochRange::starting_at(next_begin, epoch_size)?;
    let first_due = first.due_at(finality_offset)?;
    if source_head < first_due {
        return Ok(Plan {
            due: 0,
            skip: None,
            release: None,
            next_due_at: first_due,
        });
    }
    let due = (source_head - first_due) / epoch_size + 1;
    // first_due + due·size > source_head ≥ first_due, so this fits when the head does, except
    // at the very top of u64.
    let next_due_at = first_due
        .checked_add(due.saturating_mul(epoch_size))
        .ok_or(PlanError::Overflow { begin: next_begin })?;
    let (skip, release) = match catch_up {
        CatchUp::SkipToHead { max_backlog } if due > max_backlog.max(1) => {
            let newest_begin = next_begin + (due - 1) * epoch_size;
            (
                Some(Skip {
                    from_begin: next_begin,
                    to_begin: newest_begin,
                    epochs: due - 1,
                }),
                EpochRange::starting_at(newest_begin, epoch_size)?,
            )
        }
        _ => (None, first),
    };
    Ok(Plan {
        due,
        skip,
        release: Some(release),
        next_due_at,
    })
}

// ====================================================================== configuration

/// Configuration of an [`EpochManager`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochManagerConfig {
    /// The data market.
    pub market: Address,
    /// Blocks the source chain must be past an epoch's end before it is released (default
    /// [`Self::DEFAULT_FINALITY_OFFSET`]).
    pub finality_offset: u64,
    /// Source head polling interval (default 500 ms): the most a release waits after it is due,
    /// besides mining.
    pub poll_interval: Duration,
    /// First block of the first epoch when the market has none released yet. `None`: the block
    /// after the source head seen at the first poll (epochs from now on).
    pub first_begin: Option<u64>,
    /// Catch-up policy (default [`CatchUp::InOrder`] at 5 a second).
    pub catch_up: CatchUp,
    /// Standby delay (default 0): wait this long after an epoch is first seen due, re-read the
    /// contract, and only then send. Two managers with delay 0 both send when an epoch comes due
    /// and the loser's transaction fails on chain (counted as raced, gas spent); a standby with a
    /// delay longer than a protocol-chain block plus a poll never sends while the primary is
    /// healthy, and takes over by itself when it is not.
    pub send_delay: Duration,
    /// Longest wait for one release's receipt before it is settled by reading the contract
    /// (default 90 s).
    pub release_timeout: Duration,
}

impl EpochManagerConfig {
    /// Default finality offset: 2 blocks. The epoch's last block must exist (offset 0 already
    /// guarantees that), and a reorg shallower than the offset must not replace any of its
    /// blocks after release: 2 matches the chain client's `CONFIRMATIONS` default, the depth the
    /// sequencer already trusts for `EpochReleased`, and costs two blocks of lag (a few seconds
    /// on an L2, 24 s on Ethereum). A source chain with deeper reorgs needs a larger offset
    /// (Ethereum finality is ~64 blocks); the default is sized for local chains and fast L2s.
    pub const DEFAULT_FINALITY_OFFSET: u64 = 2;

    /// Defaults for `market`.
    pub fn new(market: Address) -> Self {
        Self {
            market,
            finality_offset: Self::DEFAULT_FINALITY_OFFSET,
            poll_interval: Duration::from_millis(500),
            first_begin: None,
            catch_up: CatchUp::default(),
            send_delay: Duration::ZERO,
            release_timeout: Duration::from_secs(90),
        }
    }

    fn validate(&self) -> Result<(), EpochManagerError> {
        if self.poll_interval.is_zero() {
            return Err(EpochManagerError::Config("poll interval is 0".into()));
        }
        match self.catch_up {
            CatchUp::InOrder { max_per_sec: 0 } => Err(EpochManagerError::Config(
                "catch-up rate max_per_sec is 0".into(),
            )),
            CatchUp::SkipToHead { max_backlog: 0 } => Err(EpochManagerError::Config(
                "skip-to-head max_backlog is 0".into(),
            )),
            _ => Ok(()),
        }
    }
}

// ====================================================================== errors and reports

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
    /// The protocol chain client has no signer.
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
    /// A chain client error.
    #[error(transparent)]
    Chain(#[from] ChainError),
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

/// Release lag of one epoch ([module docs](self#lag)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Lag {
    /// Source blocks past `end + finality_offset` when the release was mined.
    pub blocks: u64,
    /// Milliseconds from the source head reaching `end + finality_offset` (first poll that saw
    /// it) to the release mined.
    pub ms: u64,
}

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
    /// The release transaction (`None` when a timed-out release was found on chain).
    pub tx_hash: Option<TxHash>,
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

/// Counters since the manager was built, for operators (see [`Stats::prometheus`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Epochs released by this manager.
    pub released: u64,
    /// Epochs skipped by this manager (on chain, or before the first release).
    pub skipped: u64,
    /// Releases settled after a timeout, a transient error or a failed transaction.
    pub retried: u64,
    /// Epochs found released by someone else.
    pub raced: u64,
    /// Steps that failed with a non-fatal error.
    pub errors: u64,
    /// Lag of the last release.
    pub last_lag: Option<Lag>,
    /// Largest lag seen (blocks and ms maximised separately).
    pub max_lag: Option<Lag>,
    /// Lags of the last [`Stats::WINDOW`] releases.
    #[serde(skip)]
    recent: VecDeque<Lag>,
}

impl Stats {
    /// Releases kept for [`Self::median_lag`].
    pub const WINDOW: usize = 1024;

    fn record(&mut self, lag: Lag) {
        self.released += 1;
        self.last_lag = Some(lag);
        let max = self.max_lag.unwrap_or_default();
        self.max_lag = Some(Lag {
            blocks: max.blocks.max(lag.blocks),
            ms: max.ms.max(lag.ms),
        });
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(lag);
    }

    /// Median lag of the last [`Self::WINDOW`] releases (blocks and ms separately).
    pub fn median_lag(&self) -> Option<Lag> {
        if self.recent.is_empty() {
            return None;
        }
        let mut b: Vec<u64> = self.recent.iter().map(|l| l.blocks).collect();
        let mut m: Vec<u64> = self.recent.iter().map(|l| l.ms).collect();
        b.sort_unstable();
        m.sort_unstable();
        Some(Lag {
            blocks: b[b.len() / 2],
            ms: m[m.len() / 2],
        })
    }

    /// The counters and lag gauges in Prometheus text format, labelled with the market.
    pub fn prometheus(&self, market: Address) -> String {
        let mut out = String::new();
        let l = format!("{{market=\"{market}\"}}");
        for (name, help, v) in [
            (
                "released",
                "Epochs released by this manager.",
                self.released,
            ),
            (
                "skipped",
                "Epochs skipped (catch-up policy skip).",
                self.skipped,
            ),
            (
                "retried",
                "Releases settled after a timeout or error.",
                self.retried,
            ),
            (
                "raced",
                "Epochs found released by another manager.",
                self.raced,
            ),
            (
                "errors",
                "Polls that failed with a non-fatal error.",
                self.errors,
            ),
        ] {
            out.push_str(&format!(
                "# HELP epoch_manager_{name}_total {help}\n# TYPE epoch_manager_{name}_total counter\nepoch_manager_{name}_total{l} {v}\n"
            ));
        }
        if let Some(lag) = self.last_lag {
            out.push_str(&format!(
                "# HELP epoch_manager_release_lag_blocks Source blocks from due to release mined, last release.\n# TYPE epoch_manager_release_lag_blocks gauge\nepoch_manager_release_lag_blocks{l} {}\n# HELP epoch_manager_release_lag_ms Milliseconds from due to release mined, last release.\n# TYPE epoch_manager_release_lag_ms gauge\nepoch_manager_release_lag_ms{l} {}\n",
                lag.blocks, lag.ms
            ));
        }
        out
    }
}

// ====================================================================== driver

/// Drives [`plan`] against the chains: reads the contract and the source head, releases (or
/// skips) what is due, settles anything uncertain from the contract. See the module docs.
#[derive(Debug)]
pub struct EpochManager {
    protocol: ChainClient,
    source: ChainClient,
    cfg: EpochManagerConfig,
    signer: Address,
    /// Highest source head seen.
    max_head: Option<u64>,
    /// (source head, first seen) in increasing head order, for the lag in ms.
    seen: VecDeque<(u64, Instant)>,
    /// First begin chosen before the market's first release.
    first_begin: Option<u64>,
    last_send: Option<Instant>,
    /// A release whose outcome could not be read yet (settled at the next poll).
    unsettled: Option<EpochRange>,
    stats: Stats,
}

/// A release found on chain by [`EpochManager::find_release`].
#[derive(Debug, Clone, Copy)]
struct Found {
    epoch_id: u64,
    block: u64,
    tx_hash: Option<TxHash>,
    ours: bool,
}

impl EpochManager {
    /// Checks the market (registered, epoch size > 0) and our key (`isEpochManager`), nothing
    /// sent. `protocol` carries the epoch-manager key; `source` reads the source chain's head
    /// (`None`: the protocol chain is the source).
    pub async fn new(
        protocol: ChainClient,
        source: Option<ChainClient>,
        cfg: EpochManagerConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let signer = protocol
            .signer_address()
            .ok_or(EpochManagerError::NoSigner)?;
        let source = source.unwrap_or_else(|| protocol.clone());
        let manager = Self {
            first_begin: cfg.first_begin,
            protocol,
            source,
            cfg,
            signer,
            max_head: None,
            seen: VecDeque::new(),
            last_send: None,
            unsettled: None,
            stats: Stats::default(),
        };
        manager.market_info().await?;
        manager.check_role().await?;
        info!(
            market = %manager.cfg.market,
            signer = %signer,
            finality_offset = manager.cfg.finality_offset,
            catch_up = ?manager.cfg.catch_up,
            "epoch manager ready"
        );
        Ok(manager)
    }

    /// The configuration.
    pub fn config(&self) -> &EpochManagerConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// One poll: read the contract and the source head, release every epoch due (at most as
    /// many as were due when the step began, paced by the catch-up rate), or skip under
    /// [`CatchUp::SkipToHead`].
    pub async fn step(&mut self) -> Result<StepReport> {
        self.step_until(None).await
    }

    /// [`Self::step`] releasing at most `max_releases` epochs (skips do not count), e.g. for a
    /// command that stops after N releases.
    pub async fn step_at_most(&mut self, max_releases: u64) -> Result<StepReport> {
        self.step_inner(None, max_releases).await
    }

    /// The market's epoch size, read from the contract.
    pub async fn epoch_size(&self) -> Result<u64> {
        Ok(self.market_info().await?.epoch_size)
    }

    /// The protocol chain client (with the epoch-manager key).
    pub fn protocol(&self) -> &ChainClient {
        &self.protocol
    }

    /// The source chain client (the protocol chain's when no other was given).
    pub fn source(&self) -> &ChainClient {
        &self.source
    }

    /// Polls until `deadline` (if any) or until `stop` completes, whichever is first; returns
    /// the counters. Non-fatal errors are logged, counted and retried at the next poll; a fatal
    /// one ([`EpochManagerError::is_fatal`]) is returned. `stop` cancels at once, even mid-release:
    /// an interrupted release is settled from the contract by the next start, as after a crash.
    /// A Lambda passes its deadline minus a margin and `std::future::pending()`; the local runner
    /// a shutdown signal.
    pub async fn run_until(
        &mut self,
        deadline: Option<Instant>,
        stop: impl Future<Output = ()>,
    ) -> Result<Stats> {
        tokio::pin!(stop);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let r = tokio::select! {
                biased;
                () = &mut stop => break,
                r = self.step_until(deadline) => r,
            };
            match r {
                Ok(rep) => debug!(
                    source_head = rep.source_head,
                    next_begin = rep.next_begin,
                    released = rep.released.len(),
                    backlog = rep.backlog,
                    next_due_at = rep.next_due_at,
                    "epoch manager step"
                ),
                Err(e) if e.is_fatal() => {
                    error!(error = %e, "epoch manager stops");
                    return Err(e);
                }
                Err(e) => {
                    self.stats.errors += 1;
                    warn!(error = %e, "epoch manager step failed; re-reading the contract at the next poll");
                }
            }
            let mut wait = self.cfg.poll_interval;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        Ok(self.stats.clone())
    }

    async fn market_info(&self) -> Result<MarketInfo> {
        let info = self.protocol.market_info(self.cfg.market).await?;
        if !info.registered {
            return Err(EpochManagerError::UnknownMarket(self.cfg.market));
        }
        if info.epoch_size == 0 {
            return Err(EpochManagerError::ZeroEpochSize(self.cfg.market));
        }
        Ok(info)
    }

    async fn check_role(&self) -> Result<()> {
        if self
            .protocol
            .is_epoch_manager(self.cfg.market, self.signer)
            .await?
        {
            Ok(())
        } else {
            Err(EpochManagerError::NotEpochManager {
                market: self.cfg.market,
                who: self.signer,
            })
        }
    }

    /// Source head, checked against the highest seen (a drop up to the finality offset is a
    /// reorg the offset absorbs; more is an error).
    async fn source_head(&mut self) -> Result<u64> {
        let head = self.source.head().await?;
        if let Some(seen) = self.max_head {
            if head.saturating_add(self.cfg.finality_offset) < seen {
                return Err(EpochManagerError::SourceHeadBackwards {
                    seen,
                    now: head,
                    tolerance: self.cfg.finality_offset,
                });
            }
        }
        if self.max_head.is_none_or(|m| head > m) {
            self.max_head = Some(head);
            self.seen.push_back((head, Instant::now()));
            if self.seen.len() > 4096 {
                self.seen.pop_front();
            }
        }
        Ok(head)
    }

    /// When the source head was first seen at or past `block`.
    fn first_seen(&self, block: u64) -> Option<Instant> {
        self.seen.iter().find(|(h, _)| *h >= block).map(|(_, t)| *t)
    }

    /// Reads the source head and the contract, and plans.
    async fn observe(&mut self) -> Result<(u64, MarketInfo, u64, Plan)> {
        let head = self.source_head().await?;
        let info = self.market_info().await?;
        let next_begin = if info.current_epoch > 0 {
            if head < info.last_epoch_end {
                return Err(EpochManagerError::SourceBehindContract {
                    head,
                    last_epoch_end: info.last_epoch_end,
                });
            }
            info.last_epoch_end + 1
        } else {
            *self.first_begin.get_or_insert(head.saturating_add(1))
        };
        let p = plan(
            next_begin,
            info.epoch_size,
            head,
            self.cfg.finality_offset,
            self.cfg.catch_up,
        )?;
        Ok((head, info, next_begin, p))
    }

    async fn step_until(&mut self, deadline: Option<Instant>) -> Result<StepReport> {
        self.step_inner(deadline, u64::MAX).await
    }

    async fn step_inner(
        &mut self,
        deadline: Option<Instant>,
        max_releases: u64,
    ) -> Result<StepReport> {
        let mut report = StepReport::default();
        let mut budget: Option<u64> = None;
        loop {
            let (head, info, next_begin, p) = self.observe().await?;
            self.settle_leftover(&info, &mut report).await?;
            report.source_head = head;
            report.next_begin = next_begin;
            report.next_due_at = p.next_due_at;
            report.backlog = p.due;
            // At most the epochs due when the step began (plus a skip): a step ends even when
            // the source outpaces the catch-up rate.
            let left = *budget.get_or_insert(p.due);
            if left == 0
                || report.released.len() as u64 >= max_releases
                || deadline.is_some_and(|d| Instant::now() >= d)
            {
                break;
            }
            if let Some(skip) = p.skip {
                self.skip(&info, skip, &mut report).await?;
                budget = Some(left.saturating_sub(skip.epochs));
                continue;
            }
            let Some(epoch) = p.release else { break };
            if !self.cfg.send_delay.is_zero() {
                let seen = self.first_seen(epoch.due_at(self.cfg.finality_offset)?);
                let wait = seen.map_or(Duration::ZERO, |t| {
                    (t + self.cfg.send_delay).saturating_duration_since(Instant::now())
                });
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                    continue; // re-read: the primary may have released it meanwhile
                }
            }
            self.pace().await;
            budget = Some(left - 1);
            self.release(epoch, head, &mut report).await?;
        }
        Ok(report)
    }

    async fn pace(&mut self) {
        if let CatchUp::InOrder { max_per_sec } = self.cfg.catch_up {
            let gap = Duration::from_secs(1) / max_per_sec.max(1);
            if let Some(last) = self.last_send {
                let wait = (last + gap).saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.last_send = Some(Instant::now());
    }

    async fn skip(&mut self, info: &MarketInfo, skip: Skip, report: &mut StepReport) -> Result<()> {
        if info.current_epoch == 0 {
            // Nothing released yet: the first epoch may begin anywhere, so there is no gap to
            // record on chain; the first release simply begins on the grid at the newest epoch.
            warn!(
                market = %self.cfg.market,
                from_begin = skip.from_begin,
                to_begin = skip.to_begin,
                epochs = skip.epochs,
                "no epoch released yet: starting at the newest due epoch"
            );
            self.first_begin = Some(skip.to_begin);
            self.stats.skipped += skip.epochs;
            report.skipped.push(skip);
            return Ok(());
        }
        info!(market = %self.cfg.market, from_begin = skip.from_begin, to_begin = skip.to_begin, epochs = skip.epochs, "sending skipEpochs");
        match self
            .protocol
            .skip_epochs(self.cfg.market, skip.to_begin)
            .await
        {
            Ok(tx) => {
                info!(market = %self.cfg.market, block = tx.block, tx_hash = %tx.tx_hash, epochs = skip.epochs, "skipped epochs");
                self.stats.skipped += skip.epochs;
                report.skipped.push(skip);
                Ok(())
            }
            // Someone else moved the market on: re-read at the next iteration.
            Err(ChainError::Revert(
                Revert::InvalidSkip { .. } | Revert::InvalidEpochRange { .. },
            ))
            | Err(ChainError::TxFailed(_)) => {
                self.stats.raced += 1;
                report.raced += 1;
                Ok(())
            }
            Err(e) => Err(self.map_revert(e)),
        }
    }

    async fn release(
        &mut self,
        epoch: EpochRange,
        head: u64,
        report: &mut StepReport,
    ) -> Result<()> {
        let market = self.cfg.market;
        let due_at = epoch.due_at(self.cfg.finality_offset)?;
        debug_assert!(head >= due_at);
        info!(%market, begin = epoch.begin, end = epoch.end, source_head = head, due_at, "sending releaseEpoch");
        let sent = tokio::time::timeout(
            self.cfg.release_timeout,
            self.protocol.release_epoch(market, epoch.begin, epoch.end),
        )
        .await;
        let outcome = match sent {
            Ok(Ok((tx, epoch_id))) => Some((epoch_id, tx.block, Some(tx.tx_hash))),
            Ok(Err(ChainError::Revert(Revert::InvalidEpochRange { .. }))) => {
                // Released meanwhile: by a racing manager, or by a transaction of our key that
                // an earlier poll or a killed predecessor left pending. The contract says which.
                info!(%market, begin = epoch.begin, "epoch already released (contiguity check); reading who released it");
                let info = self.market_info().await?;
                match self.find_release(epoch, &info).await? {
                    Some(found) => self.settled(found, false, report),
                    None => {
                        self.stats.raced += 1;
                        report.raced += 1;
                        None
                    }
                }
            }
            Ok(Err(e @ (ChainError::TxFailed(_) | ChainError::ReceiptTimeout(_))))
            | Ok(Err(e @ ChainError::Rpc(_)))
            | Ok(Err(e @ (ChainError::PendingTimeout { .. } | ChainError::NonceConflict { .. })))
            | Ok(Err(
                e @ (ChainError::FeeTooLow { .. }
                | ChainError::ReceiptIncomplete { .. }
                | ChainError::ConfirmationTimeout { .. }
                | ChainError::Reorged(_)),
            )) => self.settle(epoch, Some(e), report).await?,
            Ok(Err(e)) => return Err(self.map_revert(e)),
            Err(_elapsed) => self.settle(epoch, None, report).await?,
        };
        if let Some((epoch_id, block, tx_hash)) = outcome {
            self.record_release(epoch, epoch_id, block, tx_hash, head, report)
                .await?;
        }
        Ok(())
    }

    async fn record_release(
        &mut self,
        epoch: EpochRange,
        epoch_id: u64,
        block: u64,
        tx_hash: Option<TxHash>,
        head: u64,
        report: &mut StepReport,
    ) -> Result<()> {
        let market = self.cfg.market;
        let due_at = epoch.due_at(self.cfg.finality_offset)?;
        let mined_at = Instant::now();
        let head_after = self.source.head().await.unwrap_or(head).max(head);
        let seen = self.first_seen(due_at).unwrap_or(mined_at);
        let lag = Lag {
            blocks: head_after.saturating_sub(due_at),
            ms: u64::try_from(mined_at.saturating_duration_since(seen).as_millis())
                .unwrap_or(u64::MAX),
        };
        info!(%market, epoch_id, begin = epoch.begin, end = epoch.end, block, lag_blocks = lag.blocks, lag_ms = lag.ms, "released epoch");
        self.stats.record(lag);
        report.released.push(Released {
            epoch_id,
            range: epoch,
            due_at,
            source_head_at_send: head,
            block,
            tx_hash,
            lag,
            mined_at: Some(mined_at),
        });
        Ok(())
    }

    /// A release whose outcome is unknown (timeout, transient error, failed transaction):
    /// read the contract. Released → ours (`Some`) or someone else's (counted as raced); not
    /// released, or the contract unreadable → the error is returned, the epoch is remembered as
    /// unsettled, and the next poll starts over from the contract (where the client waits for
    /// our pending transaction before sending anything) and settles it first.
    async fn settle(
        &mut self,
        epoch: EpochRange,
        err: Option<ChainError>,
        report: &mut StepReport,
    ) -> Result<Option<(u64, u64, Option<TxHash>)>> {
        let failed_on_chain = matches!(err, Some(ChainError::TxFailed(_)));
        if !failed_on_chain {
            self.stats.retried += 1;
        }
        let what = err
            .as_ref()
            .map_or_else(|| "release timeout".to_string(), ToString::to_string);
        warn!(market = %self.cfg.market, begin = epoch.begin, error = %what, "release outcome unknown; settling from the contract");
        let into_error = |err: Option<ChainError>| match err {
            Some(e) => EpochManagerError::Chain(e),
            None => EpochManagerError::ReleaseTimeout {
                begin: epoch.begin,
                end: epoch.end,
            },
        };
        self.unsettled = Some(epoch);
        let info = match self.market_info().await {
            Ok(i) => i,
            Err(_) => return Err(into_error(err)),
        };
        match self.find_release(epoch, &info).await {
            Ok(Some(found)) => Ok(self.settled(found, failed_on_chain, report)),
            Ok(None) => Err(into_error(err)),
            Err(_) => Err(into_error(err)),
        }
    }

    /// Settles a release left unsettled by an earlier poll, once the contract has moved past it.
    async fn settle_leftover(&mut self, info: &MarketInfo, report: &mut StepReport) -> Result<()> {
        let Some(epoch) = self.unsettled else {
            return Ok(());
        };
        if info.current_epoch == 0 || info.last_epoch_end < epoch.end {
            // Not on chain (yet): our transaction, if any, is still pending or was dropped; the
            // client waits for pending ones before the next send, and the contract decides.
            return Ok(());
        }
        match self.find_release(epoch, info).await? {
            Some(found) => {
                if let Some((epoch_id, block, tx_hash)) = self.settled(found, false, report) {
                    let head = self.max_head.unwrap_or_default();
                    self.record_release(epoch, epoch_id, block, tx_hash, head, report)
                        .await?;
                }
            }
            None => {
                self.unsettled = None;
            }
        }
        Ok(())
    }

    /// `Some` (id, block, tx) if ours; counts a racer's as raced.
    fn settled(
        &mut self,
        found: Found,
        failed_on_chain: bool,
        report: &mut StepReport,
    ) -> Option<(u64, u64, Option<TxHash>)> {
        self.unsettled = None;
        if failed_on_chain || !found.ours {
            info!(market = %self.cfg.market, epoch_id = found.epoch_id, block = found.block, "release settled: released by someone else");
            self.stats.raced += 1;
            report.raced += 1;
            return None;
        }
        info!(market = %self.cfg.market, epoch_id = found.epoch_id, block = found.block, "release settled: our transaction is on chain");
        Some((found.epoch_id, found.block, found.tx_hash))
    }

    /// The release of `epoch` on chain (epoch id, block, transaction, whether it was ours), or
    /// `None` when the contract moved past it without releasing it (skipped by someone else).
    async fn find_release(&self, epoch: EpochRange, info: &MarketInfo) -> Result<Option<Found>> {
        let mut found = None;
        for id in (1..=info.current_epoch).rev().take(256) {
            let a = self.protocol.anchored(self.cfg.market, id).await?;
            if a.begin == epoch.begin {
                found = a.release_block.map(|b| (id, b));
                break;
            }
            if a.begin < epoch.begin {
                break;
            }
        }
        let Some((epoch_id, block)) = found else {
            return Ok(None);
        };
        let tx_hash = self
            .protocol
            .epoch_releases(self.cfg.market, block, block)
            .await?
            .into_iter()
            .find(|r| r.epoch_id == epoch_id)
            .map(|r| r.tx_hash);
        let ours = match tx_hash {
            Some(h) => self.protocol.transaction_sender(h).await? == Some(self.signer),
            None => false,
        };
        Ok(Some(Found {
            epoch_id,
            block,
            tx_hash,
            ours,
        }))
    }

    /// Maps role and market reverts to typed errors.
    fn map_revert(&self, e: ChainError) -> EpochManagerError {
        match e {
            ChainError::Revert(Revert::NotEpochManager(who)) => {
                EpochManagerError::NotEpochManager {
                    market: self.cfg.market,
                    who,
                }
            }
            ChainError::Revert(Revert::UnknownMarket(m)) => EpochManagerError::UnknownMarket(m),
            ChainError::NoSigner => EpochManagerError::NoSigner,
            other => EpochManagerError::Chain(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const IN_ORDER: CatchUp = CatchUp::InOrder { max_per_sec: 5 };

    #[test]
    fn due_exactly_at_end_plus_offset() {
        // Epoch [11, 20], offset 2: due at source head 22, not 21.
        let p = plan(11, 10, 21, 2, IN_ORDER).expect("plan");
        assert_eq!((p.due, p.release, p.next_due_at), (0, None, 22));
        let p = plan(11, 10, 22, 2, IN_ORDER).expect("plan");
        assert_eq!(p.due, 1);
        assert_eq!(p.release, Some(EpochRange { begin: 11, end: 20 }));
        assert_eq!(p.next_due_at, 32);
        // Offset 0: due once its last block exists.
        assert_eq!(plan(1, 10, 10, 0, IN_ORDER).expect("plan").due, 1);
        assert_eq!(plan(1, 10, 9, 0, IN_ORDER).expect("plan").due, 0);
    }

    #[test]
    fn backlog_in_order_and_skip_to_head() {
        // Down from block 1: head 100, size 10, offset 2: epochs ending 10..=90 are due (9);
        // [91, 100] is due at 102.
        let p = plan(1, 10, 100, 2, IN_ORDER).expect("plan");
        assert_eq!((p.due, p.next_due_at), (9, 102));
        assert_eq!(p.skip, None);
        assert_eq!(p.release, Some(EpochRange { begin: 1, end: 10 }));
        let skip = CatchUp::SkipToHead { max_backlog: 1 };
        let p = plan(1, 10, 100, 2, skip).expect("plan");
        assert_eq!(
            p.skip,
            Some(Skip {
                from_begin: 1,
                to_begin: 81,
                epochs: 8
            })
        );
        assert_eq!(p.release, Some(EpochRange { begin: 81, end: 90 }));
        // A backlog within max_backlog is released in order.
        let p = plan(61, 10, 100, 2, CatchUp::SkipToHead { max_backlog: 3 }).expect("plan");
        assert_eq!((p.due, p.skip), (3, None));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(plan(1, 0, 100, 2, IN_ORDER), Err(PlanError::ZeroEpochSize));
        assert!(matches!(
            plan(u64::MAX - 3, 10, u64::MAX, 2, IN_ORDER),
            Err(PlanError::Overflow { .. })
        ));
        assert!(matches!(
            plan(u64::MAX - 20, 10, u64::MAX, 2, IN_ORDER),
            Err(PlanError::Overflow { .. }) | Ok(_)
        ));
        let cfg = EpochManagerConfig {
            catch_up: CatchUp::InOrder { max_per_sec: 0 },
            ..EpochManagerConfig::new(Address::ZERO)
        };
        assert!(matches!(cfg.validate(), Err(EpochManagerError::Config(_))));
    }

    #[test]
    fn stats_median_and_prometheus() {
        let mut s = Stats::default();
        for (b, ms) in [(1, 100), (3, 300), (2, 200)] {
            s.record(Lag { blocks: b, ms });
        }
        assert_eq!(s.median_lag(), Some(Lag { blocks: 2, ms: 200 }));
        assert_eq!(s.max_lag, Some(Lag { blocks: 3, ms: 300 }));
        let text = s.prometheus(Address::ZERO);
        assert!(text.contains("epoch_manager_released_total{market=\"0x0000000000000000000000000000000000000000\"} 3"), "{text}");
        assert!(text.contains("epoch_manager_release_lag_blocks"));
    }

    /// Simulates a manager polling an advancing source head: applies every plan (releases and
    /// skips) and returns (epoch, head at which it was released).
    fn simulate(
        first_begin: u64,
        size: u64,
        offset: u64,
        catch_up: CatchUp,
        heads: &[u64],
    ) -> (Vec<(EpochRange, u64)>, Vec<Skip>) {
        let mut next = first_begin;
        let mut out = Vec::new();
        let mut skips = Vec::new();
        for &head in heads {
            loop {
                let p = plan(next, size, head, offset, catch_up).expect("plan");
                if let Some(s) = p.skip {
                    assert_eq!(s.from_begin, next);
                    skips.push(s);
                    next = s.to_begin;
                }
                let Some(r) = p.release else { break };
                out.push((r, head));
                next = r.end + 1;
            }
        }
        (out, skips)
    }

    proptest! {
        #[test]
        fn never_early_never_late_no_drift(
            first in 0u64..1_000,
            size in 1u64..20,
            offset in 0u64..10,
            steps in proptest::collection::vec(0u64..25, 1..80),
        ) {
            let mut heads = Vec::new();
            let mut h = first;
            for s in steps { h += s; heads.push(h); }
            let (released, _) = simulate(first, size, offset, IN_ORDER, &heads);
            for (k, (r, head)) in released.iter().enumerate() {
                let k = k as u64;
                // No drift: epoch k is exactly on the grid.
                prop_assert_eq!(r.begin, first + k * size);
                prop_assert_eq!(r.end, r.begin + size - 1);
                // Never early.
                prop_assert!(*head >= r.end + offset);
            }
            // Never late: everything due at the last head is released.
            let last = *heads.last().expect("heads");
            let due = if last >= first + size - 1 + offset { (last - (first + size - 1 + offset)) / size + 1 } else { 0 };
            prop_assert_eq!(released.len() as u64, due);
            // And released at the first poll that saw it due.
            let mut prev_head = None;
            let mut i = 0;
            for &head in &heads {
                while i < released.len() && released[i].1 == head {
                    let due_at = released[i].0.end + offset;
                    prop_assert!(head >= due_at);
                    if let Some(p) = prev_head { prop_assert!(p < due_at, "released late: due {} seen at {}", due_at, p); }
                    i += 1;
                }
                prev_head = Some(head);
            }
        }

        #[test]
        fn skip_to_head_keeps_the_grid_and_never_runs_ahead(
            first in 0u64..1_000,
            size in 1u64..20,
            offset in 0u64..10,
            max_backlog in 1u64..4,
            steps in proptest::collection::vec(0u64..80, 1..40),
        ) {
            let mut heads = Vec::new();
            let mut h = first;
            for s in steps { h += s; heads.push(h); }
            let (released, skips) = simulate(first, size, offset, CatchUp::SkipToHead { max_backlog }, &heads);
            // Released and skipped together tile the grid from `first`, without overlap.
            let mut spans: Vec<(u64, u64)> = released.iter().map(|(r, _)| (r.begin, r.end + 1)).collect();
            spans.extend(skips.iter().map(|s| (s.from_begin, s.to_begin)));
            spans.sort_unstable();
            let mut at = first;
            for (b, e) in spans { prop_assert_eq!(b, at); prop_assert_eq!((e - b) % size, 0); at = e; }
            for (r, head) in &released {
                prop_assert!(*head >= r.end + offset);
                prop_assert_eq!((r.begin - first) % size, 0);
            }
            for s in &skips { prop_assert!(s.epochs >= max_backlog); }
        }
    }
}
