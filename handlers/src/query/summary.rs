//! The live status summary an operator keeps open: the chain head as the tick last saw it, the
//! newest epoch with its age, the release lag, the recent epochs (for the trend charts), anchor
//! failures among them, the dead-letter queues' depth, the ingress replicas' health and the
//! newest day with rewards. It
//! changes every block, so it is never settled; a copy is kept for [`SUMMARY_TTL`] so that many
//! open pages cost one set of store reads per interval, not one per page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sequencer_ports::Queue;
use serde::{Deserialize, Serialize};

use super::status::EpochSummary;
use super::{Queries, QueryError};
use crate::metrics as m;
use crate::pipeline::Pipeline;
use crate::records::{EpochState, TickCursor};

/// Epochs the summary carries (newest first): the trend charts' width. One state-store query.
pub const SUMMARY_EPOCHS: u64 = 48;
/// Anchor failures listed with their reasons (all are counted).
pub const LISTED_FAILURES: usize = 5;
/// How long one computed summary is served again (see the module docs).
pub const SUMMARY_TTL: Duration = Duration::from_secs(2);

/// One path's traffic at an ingress replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressPath {
    /// `collect` (`/collect` streams) or `gossipsub`.
    pub path: String,
    /// Submissions accepted on this path since the replica started.
    pub accepted: u64,
    /// Submissions refused on this path since the replica started.
    pub rejected: u64,
    /// Accepted per second over the replica's last sampling interval, when it measured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_per_sec: Option<f64>,
}

/// One ingress replica's health, as the status page shows it: the local runner fills it from its
/// in-process ingress; a deployment from the replicas' heartbeat records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressHealth {
    /// Which replica (a task id, a host name).
    pub replica: String,
    /// When these numbers were taken (ms since the Unix epoch): an old one is a silent replica.
    pub at_ms: i64,
    /// Open libp2p connections.
    pub connections: u64,
    /// Open `/collect` streams.
    pub streams: u64,
    /// Per path.
    pub paths: Vec<IngressPath>,
}

/// Where the ingress numbers come from, and what they said.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum IngressReport {
    /// This deployment has no source of ingress health wired.
    #[default]
    NotWired,
    /// The replicas that reported (none: no replica is reporting).
    Replicas(Vec<IngressHealth>),
    /// The source failed.
    Failed(String),
}

/// What the summary reads besides the records: the dead-letter queues and the ingress report.
#[derive(Clone, Default)]
pub struct LiveSources {
    /// Dead-letter queues whose depth is shown (by their names).
    pub dead_letters: Vec<Arc<dyn Queue>>,
}

impl std::fmt::Debug for LiveSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSources")
            .field(
                "dead_letters",
                &self
                    .dead_letters
                    .iter()
                    .map(|q| q.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The chain head as the tick last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainView {
    /// Last block the tick recorded (`None` before the first tick).
    pub head: Option<u64>,
    /// Releases are scanned up to here.
    pub releases_scanned_to: u64,
    /// When the tick last saved its cursor.
    pub tick_at_ms: Option<i64>,
    /// How long ago that was.
    pub tick_age_ms: Option<i64>,
}

/// The newest epoch, with how old it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestEpochView {
    /// The epoch.
    #[serde(flatten)]
    pub summary: EpochSummary,
    /// Since the tick saw its release.
    pub age_ms: i64,
    /// Since it entered its current state (as far as the record's timestamps tell).
    pub in_state_ms: i64,
}

/// How far behind the releases are: blocks and time since the newest release, against the usual
/// spacing of releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseLagView {
    /// Head − the newest release's block.
    pub blocks: Option<u64>,
    /// Since the tick saw the newest release.
    pub ms: i64,
    /// The median spacing of the recent releases, in blocks (`None` with fewer than two).
    pub typical_blocks: Option<u64>,
}

/// An epoch whose anchoring failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    /// The epoch.
    pub epoch_id: u64,
    /// Why.
    pub failure: Option<String>,
}

/// Anchor failures among the recent epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailuresView {
    /// Epochs looked at (the summary's).
    pub window: u64,
    /// `ANCHOR_FAILED` among them.
    pub count: u64,
    /// The newest few, with their reasons.
    pub latest: Vec<FailureView>,
}

/// A dead-letter queue's depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepthView {
    /// The queue.
    pub queue: String,
    /// Messages in it (approximately), unless reading it failed.
    pub depth: Option<u64>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The live status summary (`no-store`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The market.
    pub data_market: String,
    /// When it was computed (ages below are as of then).
    pub now_ms: i64,
    /// The chain head as the tick saw it.
    pub chain: ChainView,
    /// The newest epoch.
    pub latest: Option<LatestEpochView>,
    /// Blocks and time since the newest release.
    pub release_lag: Option<ReleaseLagView>,
    /// The recent epochs, newest first (at most [`SUMMARY_EPOCHS`]).
    pub epochs: Vec<EpochSummary>,
    /// Pass as `before` to the epoch list for the page older than `epochs`.
    #[serde(rename = "next_before")]
    pub next_before: Option<u64>,
    /// Anchor failures among `epochs`.
    pub anchor_failures: FailuresView,
    /// Dead-letter queues.
    pub dead_letters: Vec<QueueDepthView>,
    /// Ingress replicas; `None` when this deployment has no source wired.
    pub ingress: Option<Vec<IngressHealth>>,
    /// Why the ingress numbers are missing, when their source failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_error: Option<String>,
    /// The newest day with rewards (`/v1/markets/{m}/days/{day}/rewards`); `None` before the
    /// first day's rewards were computed.
    pub latest_rewards_day: Option<u64>,
}

/// When an epoch entered its current state, as far as its timestamps tell (a failure has none
/// of its own: the finalization before it).
fn entered_state_ms(e: &EpochSummary) -> i64 {
    match e.state {
        EpochState::Open => Some(e.seen_at_ms),
        EpochState::Closing | EpochState::Closed => e.closed_at_ms,
        EpochState::Finalized | EpochState::Failed => e.finalized_at_ms,
        EpochState::Anchored => e.anchored_at_ms,
    }
    .unwrap_or(e.seen_at_ms)
}

/// The median gap between consecutive release blocks (`releases` newest first).
fn typical_spacing(releases: &[u64]) -> Option<u64> {
    let mut gaps: Vec<u64> = releases
        .windows(2)
        .filter_map(|w| w[0].checked_sub(w[1]))
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2])
}

fn chain_view(cursor: &TickCursor, now: i64) -> ChainView {
    ChainView {
        head: (cursor.blocks_up_to > 0).then_some(cursor.blocks_up_to),
        releases_scanned_to: cursor.releases_after,
        tick_at_ms: cursor.saved_at_ms,
        tick_age_ms: cursor.saved_at_ms.map(|t| (now - t).max(0)),
    }
}

impl Queries {
    /// The live summary (computed at most once per [`SUMMARY_TTL`] per process; `ingress`, the
    /// caller's report of the ingress replicas, is awaited only when it is computed).
    pub async fn status(
        &self,
        p: &Pipeline,
        sources: &LiveSources,
        ingress: impl std::future::Future<Output = IngressReport>,
    ) -> Result<Arc<StatusView>, QueryError> {
        p.metrics.inc(&m::PROOF_REQUESTS, []);
        if let Ok(kept) = self.summary.lock() {
            if let Some((at, view)) = kept.as_ref() {
                if at.elapsed() < self.summary_ttl {
                    return Ok(view.clone());
                }
            }
        }
        let view = Arc::new(self.status_uncached(p, sources, ingress.await).await?);
        if let Ok(mut kept) = self.summary.lock() {
            *kept = Some((Instant::now(), view.clone()));
        }
        Ok(view)
    }

    async fn status_uncached(
        &self,
        p: &Pipeline,
        sources: &LiveSources,
        ingress: IngressReport,
    ) -> Result<StatusView, QueryError> {
        let records = p.records();
        let cursor = records.tick_cursor().await?;
        let latest_rewards_day = records.latest_rewards_day().await?;
        let now = p.now_ms();
        let chain = chain_view(&cursor, now);
        let page = self.epoch_list(p, None, SUMMARY_EPOCHS).await?;
        let latest = page.epochs.first().map(|e| LatestEpochView {
            summary: e.clone(),
            age_ms: (now - e.seen_at_ms).max(0),
            in_state_ms: (now - entered_state_ms(e)).max(0),
        });
        let releases: Vec<u64> = page.epochs.iter().map(|e| e.release_block).collect();
        let release_lag = page.epochs.first().map(|e| ReleaseLagView {
            blocks: chain.head.map(|h| h.saturating_sub(e.release_block)),
            ms: (now - e.seen_at_ms).max(0),
            typical_blocks: typical_spacing(&releases),
        });
        let failed: Vec<&EpochSummary> = page
            .epochs
            .iter()
            .filter(|e| e.state == EpochState::Failed)
            .collect();
        let anchor_failures = FailuresView {
            window: page.epochs.len() as u64,
            count: failed.len() as u64,
            latest: failed
                .iter()
                .take(LISTED_FAILURES)
                .map(|e| FailureView {
                    epoch_id: e.epoch_id,
                    failure: e.failure.clone(),
                })
                .collect(),
        };
        let depths =
            futures::future::join_all(sources.dead_letters.iter().map(|q| q.depth())).await;
        let dead_letters = sources
            .dead_letters
            .iter()
            .zip(depths)
            .map(|(q, d)| match d {
                Ok(n) => QueueDepthView {
                    queue: q.name().to_string(),
                    depth: Some(n),
                    error: None,
                },
                Err(e) => {
                    tracing::warn!(queue = q.name(), error = %e, "status: DLQ depth unreadable");
                    QueueDepthView {
                        queue: q.name().to_string(),
                        depth: None,
                        error: Some(e.to_string()),
                    }
                }
            })
            .collect();
        let (ingress, ingress_error) = match ingress {
            IngressReport::NotWired => (None, None),
            IngressReport::Replicas(r) => (Some(r), None),
            IngressReport::Failed(e) => (None, Some(e)),
        };
        Ok(StatusView {
            data_market: page.data_market,
            now_ms: now,
            chain,
            latest,
            release_lag,
            epochs: page.epochs,
            next_before: page.next_before,
            anchor_failures,
            dead_letters,
            ingress,
            ingress_error,
            latest_rewards_day,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typical_spacing_is_the_median_gap() {
        assert_eq!(typical_spacing(&[]), None);
        assert_eq!(typical_spacing(&[50]), None);
        assert_eq!(typical_spacing(&[50, 40, 30, 28, 10]), Some(10));
        // A skipped epoch (a long gap) does not move the median.
        assert_eq!(typical_spacing(&[100, 90, 80, 20, 10]), Some(10));
    }

    #[test]
    fn the_head_is_absent_before_the_first_tick() {
        let c = chain_view(&TickCursor::default(), 1_000);
        assert_eq!((c.head, c.tick_age_ms), (None, None));
        let c = chain_view(
            &TickCursor {
                blocks_up_to: 77,
                releases_after: 75,
                low_epoch: 3,
                saved_at_ms: Some(400),
                ..TickCursor::default()
            },
            1_000,
        );
        assert_eq!(
            (c.head, c.releases_scanned_to, c.tick_age_ms),
            (Some(77), 75, Some(600))
        );
    }
}
