//! The proof and status queries: what snapshotters, validators and operators ask the sequencer,
//! answered read-only from the records and the content store as typed serde views. No HTTP here:
//! `sequencer-api` serves these views (axum, in the `proof` Lambda and the local runner).
//!
//! | query | view |
//! | --- | --- |
//! | [`Queries::submission`] | [`SubmissionView`]: the submission's [`Fate`]: `included` (batch, leaf, 32 siblings, `roothash`, anchoring tx and block), `accepted` (not yet anchored, with the proof once finalized), `not_batched`, `simulation`, `rejected` (reason and when) |
//! | [`Queries::batch_document`] | [`BatchBytes`]: a batch document's exact bytes (what a proof is checked against, by its CID) |
//! | [`Queries::epoch`] | [`EpochStatusView`]: release block, window, state, counts accepted / rejected by reason, batches with CIDs, both roots and transactions |
//! | [`Queries::epochs`] | [`EpochListView`]: recent epochs, newest first; `next_before` pages on |
//! | [`Queries::markets`] | [`MarketsView`]: the market this deployment sequences |
//! | [`Queries::status`] | [`StatusView`]: the live summary: chain head, newest epoch and its age, release lag, recent epochs, anchor failures, dead-letter depth, ingress health ([`IngressHealth`]) |
//!
//! The views are written along their jobs: [`proof`] (a submission's fate and inclusion proof),
//! [`status`] (epochs, their batches and the epoch list) and [`summary`] (the live summary).
//!
//! An answer about an anchored epoch never changes ([`Answer::settled`]): it is cached in memory
//! (bounded, [`CACHE_RESPONSES`]) and may be cached by HTTP caches. Proofs are rebuilt from the
//! batch documents (the content store), the same bytes anyone can fetch by the CIDs on chain; a
//! settled epoch's submission-id lists are kept ([`CACHE_EPOCHS`]) so proving many ids of one
//! epoch reads each document once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::BatchEntry;

mod cache;
pub mod proof;
pub mod status;
pub mod summary;

use cache::Bounded;
pub use proof::{AnchorView, BatchBytes, Fate, SubmissionView};
pub use status::{
    BatchView, CountsView, EpochListView, EpochStatusView, EpochSummary, MarketsView,
};
pub use summary::{
    IngressHealth, IngressPath, IngressReport, LiveSources, StatusView, SUMMARY_EPOCHS, SUMMARY_TTL,
};

/// Default page size of the epoch list.
pub const DEFAULT_LIMIT: u64 = 20;
/// Largest page of the epoch list: one state-store query of at most this many items.
pub const MAX_LIMIT: u64 = 100;
/// Cached answers. Each is a few KiB (a proof is 32 hashes), so 4096 stay under ~16 MiB, well
/// inside the smallest Lambda memory size, and cover every submission of a busy epoch.
pub const CACHE_RESPONSES: usize = 4096;
/// Settled epochs whose submission-id lists are kept (each up to the epoch's ids, ~40 B each).
pub const CACHE_EPOCHS: usize = 8;

/// An answer, and whether it is final (about an anchored epoch: it never changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// The view.
    pub view: T,
    /// Final: caches may keep it for ever.
    pub settled: bool,
}

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No such epoch recorded (not released yet, or never by this sequencer).
    #[error("epoch {0} is not recorded by this sequencer (not released, or expired)")]
    UnknownEpoch(u64),
    /// The epoch is past the retention: its records expired (or are expiring) together.
    #[error(
        "epoch {epoch} is past this sequencer's retention of {days} days: its records expired"
    )]
    ExpiredEpoch {
        /// The epoch.
        epoch: u64,
        /// The retention (`RECORD_TTL_DAYS`).
        days: u64,
    },
    /// No receipt for this id in this (recorded) epoch.
    #[error("no submission {id} was received for epoch {epoch}")]
    UnknownSubmission {
        /// The epoch.
        epoch: u64,
        /// The submission id.
        id: String,
    },
    /// No rewards computed for this day (it has not ended, or its commit has not run yet).
    #[error("day {0}'s rewards are not computed yet (the daily commit runs once the day ended and its epochs are finalized)")]
    UnknownDay(u64),
    /// No batch of this index in this (recorded) epoch (not finalized yet, or fewer batches).
    #[error("epoch {epoch} has no batch {index} (not finalized yet, or fewer batches)")]
    UnknownBatch {
        /// The epoch.
        epoch: u64,
        /// The batch index asked for.
        index: u32,
    },
    /// A store failed, or stored data is inconsistent.
    #[error(transparent)]
    Failed(#[from] PipelineError),
}

/// A settled answer kept in memory.
#[derive(Debug, Clone)]
enum Cached {
    Submission(Arc<SubmissionView>),
    Epoch(Arc<EpochStatusView>),
}

/// An epoch's batches with their documents' submission ids, in order.
type EpochLeaves = Arc<Vec<(BatchEntry, Vec<String>)>>;

/// The queries with their caches; build one per process (a Lambda cold start, the runner).
#[derive(Debug)]
pub struct Queries {
    answers: Mutex<Bounded<Cached>>,
    leaves: Mutex<Bounded<EpochLeaves>>,
    summary: Mutex<Option<(Instant, Arc<StatusView>)>>,
    summary_ttl: Duration,
}

impl Default for Queries {
    fn default() -> Self {
        Self::with_capacity(CACHE_RESPONSES, CACHE_EPOCHS)
    }
}

impl Queries {
    /// With explicit cache sizes (0 disables a cache).
    pub fn with_capacity(answers: usize, epochs: usize) -> Self {
        Self {
            answers: Mutex::new(Bounded::new(answers)),
            leaves: Mutex::new(Bounded::new(epochs)),
            summary: Mutex::new(None),
            summary_ttl: SUMMARY_TTL,
        }
    }

    /// How long a computed status summary is served again (zero: every request computes it).
    pub fn with_summary_ttl(mut self, ttl: Duration) -> Self {
        self.summary_ttl = ttl;
        self
    }

    /// Cached answers right now (tests, metrics).
    pub fn cached(&self) -> usize {
        self.answers.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn hit(&self, p: &Pipeline, key: &str) -> Option<Cached> {
        let hit = self.answers.lock().ok().and_then(|c| c.get(key));
        if hit.is_some() {
            p.metrics.inc(&m::PROOF_CACHE_HITS, []);
        } else {
            p.metrics.inc(&m::PROOF_REQUESTS, []);
        }
        hit
    }

    fn keep(&self, key: String, value: Cached) {
        if let Ok(mut c) = self.answers.lock() {
            c.insert(key, value);
        }
    }
}
