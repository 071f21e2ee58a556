//! Chain adapter of the submission sequencer: an [alloy] client of the ProtocolState contract
//! (`contracts/`), shaped as the implementation of the chain port the Lambda handlers use:
//!
//! | port method | here |
//! | --- | --- |
//! | `head() -> u64` | [`ChainClient::head`] |
//! | `block_number(hash) -> Option<u64>` | [`ChainClient::block_number`] |
//! | `epoch_releases(market, from, to)` | [`ChainClient::epoch_releases`], reorg-safe follower [`ChainClient::releases_after`] |
//! | `slot_owner(slot)` | [`ChainClient::slot_owner`] (TTL cache) |
//! | `is_flagged(market, addr)` | [`ChainClient::is_flagged`] |
//! | `submission_window(market)` | [`ChainClient::submission_window`] |
//! | `epoch_windows(market, epoch)` | [`ChainClient::epoch_windows`] (the windows stored at release) |
//! | `submit_batch(..) -> Anchored \| AlreadyAnchored` | [`ChainClient::submit_batch`] |
//! | `end_batch_submissions(market, epoch)` | [`ChainClient::end_batch_submissions`] |
//! | `anchored(market, epoch)` | [`ChainClient::anchored`] |
//! | `market_info(market)`, `is_epoch_manager(market, who)` | [`ChainClient::market_info`], [`ChainClient::is_epoch_manager`] |
//! | `release_epoch(market, begin, end)`, `skip_epochs(market, begin)` | [`ChainClient::release_epoch`] (+ its `DayStartedEvent`), [`ChainClient::skip_epochs`] |
//! | `epoch_details(market, epoch)`, `epoch_release(market, epoch)` | [`ChainClient::epoch_details`], [`ChainClient::epoch_releases`] |
//! | `market_days(market)` | [`ChainClient::market_settings`] |
//! | `update_rewards(market, day, counts)` | [`ChainClient::update_rewards`] (once per slot and day) |
//!
//! Market settings (source chain, block time, day, quota) and the sizing of the submission
//! window for unmodified snapshotter nodes: [`market`].
//!
//! [`ChainClient`] implements the chain port (`sequencer_ports::ChainPort`) in `port.rs`, where a
//! [`ChainError`] becomes the port's error (its kind, the contract's error name, its
//! retryability). The values the port speaks ([`EpochRelease`], [`Windows`], [`EpochAnchors`],
//! [`SubmitOutcome`], …) are the port's, re-exported here.
//!
//! This crate is I/O only: the epoch manager that releases a market's epochs is a handler over
//! the chain port (`sequencer_handlers::epoch_manager`, its planning in
//! `sequencer_core::epochs`); what it needs to be exactly once (the nonce from the chain, a
//! pending transaction of our key waited for and never replaced) is this client's single writer.
//!
//! Configuration comes from the environment ([`ChainConfig::from_env`]); errors are typed
//! ([`ChainError`], contract reverts as [`Revert`]) and say whether a retry can help.

pub mod bindings;
mod client;
mod config;
pub mod deploy;
mod error;
pub mod market;
mod port;
mod redact;
mod transport;
mod types;

pub use client::{
    ChainClient, DayStart, Result, SnapshotStatus, WriterCounters, REWARD_SLOTS_PER_TX,
};
pub use config::{ChainConfig, SignerSource};
pub use error::{ChainError, FeeRejection, Revert};
pub use redact::{redact_url, Redactor};
pub use types::{
    AnchoredBatch, BatchCall, BatchesWritten, EndOutcome, EpochAnchors, EpochDetails, EpochRelease,
    MarketDays, MarketInfo, ReleaseOutcome, ReleasesPage, RewardsOutcome, SentTx, SlotCount,
    SubmitOutcome, TxOutcome, Windows,
};

pub use alloy::primitives::{Address, B256, U256};
