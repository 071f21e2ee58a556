//! Epochs: the record the pipeline keeps per epoch, its lifecycle, and the tick's cursor.
//!
//! ```text
//!   (released) ──open_epoch──▶ OPEN ──▶ CLOSING ──▶ CLOSED ──▶ FINALIZED ──▶ ANCHORED
//!                                          └──────────────────────▲    └──▶ ANCHOR_FAILED
//!                            (an operator's re-anchor: ANCHOR_FAILED ──▶ FINALIZED)
//! ```
//!
//! [`EpochState::can_become`] is the whole table; [`Records::move_epoch`] refuses any other move
//! before it touches the store, and applies an allowed one only if the epoch is still in the
//! state the caller read (a conditional write), so two runs racing cannot both move it.

use serde::{Deserialize, Serialize};

use sequencer_ports::{Item, Table, Transition};

use super::keys;
use super::receipts::EpochCounts;
use super::Records;
use crate::pipeline::{json, parse, PipelineError};

/// Where an epoch is in its lifecycle (the stored item's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EpochState {
    /// Released; submissions are verified.
    #[serde(rename = "OPEN")]
    Open,
    /// The tick decided to close it and is enqueuing the finalize job.
    #[serde(rename = "CLOSING")]
    Closing,
    /// Closed; the finalize job is queued.
    #[serde(rename = "CLOSED")]
    Closed,
    /// Batches made, uploaded and recorded; the anchor job is queued.
    #[serde(rename = "FINALIZED")]
    Finalized,
    /// Every batch anchored and batch submissions ended.
    #[serde(rename = "ANCHORED")]
    Anchored,
    /// Anchoring hit an error no retry can fix (recorded with its reason).
    #[serde(rename = "ANCHOR_FAILED")]
    Failed,
}

impl EpochState {
    /// Every state, in lifecycle order.
    pub const ALL: [EpochState; 6] = [
        EpochState::Open,
        EpochState::Closing,
        EpochState::Closed,
        EpochState::Finalized,
        EpochState::Anchored,
        EpochState::Failed,
    ];

    /// The stored label.
    pub const fn as_str(self) -> &'static str {
        match self {
            EpochState::Open => "OPEN",
            EpochState::Closing => "CLOSING",
            EpochState::Closed => "CLOSED",
            EpochState::Finalized => "FINALIZED",
            EpochState::Anchored => "ANCHORED",
            EpochState::Failed => "ANCHOR_FAILED",
        }
    }

    /// The state with this stored label.
    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == label)
    }

    /// Whether an epoch in this state may move to `next`: the lifecycle's only edges. Closing
    /// goes straight to finalized when finalize runs before the tick recorded the close (the tick
    /// crashed between its two steps; its finalize job was sent). A failed epoch goes back to
    /// finalized when an operator anchors it again (`anchor::reanchor`).
    pub const fn can_become(self, next: EpochState) -> bool {
        matches!(
            (self, next),
            (EpochState::Open, EpochState::Closing)
                | (EpochState::Closing, EpochState::Closed)
                | (EpochState::Closing, EpochState::Finalized)
                | (EpochState::Closed, EpochState::Finalized)
                | (EpochState::Finalized, EpochState::Anchored)
                | (EpochState::Finalized, EpochState::Failed)
                | (EpochState::Failed, EpochState::Finalized)
        )
    }

    /// Whether finalization has written the epoch's batches (finalized, anchored or failed).
    pub const fn is_finalized(self) -> bool {
        matches!(
            self,
            EpochState::Finalized | EpochState::Anchored | EpochState::Failed
        )
    }

    /// Whether nothing will happen to the epoch any more (anchored or failed).
    pub const fn is_done(self) -> bool {
        matches!(self, EpochState::Anchored | EpochState::Failed)
    }
}

impl std::fmt::Display for EpochState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An epoch as the pipeline tracks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch id.
    pub epoch: u64,
    /// Source-chain range as released.
    pub begin: u64,
    /// Last block of the range.
    pub end: u64,
    /// Protocol-chain block of `EpochReleased` (the window opens here).
    pub release_block: u64,
    /// Last block of the submission window (`release_block + snapshotSubmissionWindow`).
    pub window_end: u64,
    /// When the tick saw the release (ms).
    pub seen_at_ms: i64,
    /// When the tick closed it (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
    /// Head when it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_block: Option<u64>,
    /// When finalization recorded the batches (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_at_ms: Option<i64>,
    /// When the last transaction was mined (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchored_at_ms: Option<i64>,
    /// Outcome counts (set at finalization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<EpochCounts>,
    /// Number of batches (set at finalization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<u32>,
    /// Projects below the minimum submissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub below_minimum: Vec<String>,
    /// `endBatchSubmissions` transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_tx: Option<String>,
    /// Why anchoring failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// An epoch and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEntry {
    /// Its state.
    pub state: EpochState,
    /// Its record.
    pub record: EpochRecord,
}

/// What [`Records::move_epoch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochMove {
    /// The epoch was in the expected state and now is in the new one.
    Moved,
    /// It was not (another run moved it first): the epoch as it is, `None` when absent.
    Refused(Option<Box<EpochEntry>>),
}

/// The tick's position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCursor {
    /// Releases are scanned after this block.
    pub releases_after: u64,
    /// Block hashes are recorded up to this block.
    pub blocks_up_to: u64,
    /// Epochs below this one are closed (or later) and need no look.
    pub low_epoch: u64,
    /// When the tick last saved it (ms; set by [`Records::save_tick_cursor`]): how fresh the
    /// head above is. Absent in cursors saved before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_at_ms: Option<i64>,
    /// Open epochs whose window the tick has seen over, and when (ms): the close watermark's
    /// reference (`tick.rs`). An epoch leaves it when it closes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub window_passed: std::collections::BTreeMap<u64, i64>,
}

/// Items per query page when listing epochs.
const EPOCH_PAGE: usize = 500;

pub(super) fn entry(item: Item) -> Result<EpochEntry, PipelineError> {
    let label = item.state.as_deref().unwrap_or("");
    let state = EpochState::parse(label)
        .ok_or_else(|| PipelineError::Corrupt(format!("epoch state {label:?}")))?;
    Ok(EpochEntry {
        state,
        record: parse("epoch", &item.data)?,
    })
}

impl Records<'_> {
    /// The epoch, `None` when the tick has not recorded it (or it expired).
    pub async fn epoch(&self, epoch: u64) -> Result<Option<EpochEntry>, PipelineError> {
        match self
            .store
            .get(Table::Epochs, &keys::epoch_key(&self.market, epoch))
            .await?
        {
            Some(item) => Ok(Some(entry(item)?)),
            None => Ok(None),
        }
    }

    /// Records a released epoch as open, once: `false` when it was recorded before.
    pub async fn open_epoch(&self, rec: &EpochRecord) -> Result<bool, PipelineError> {
        let item = Item::with_state(EpochState::Open.as_str(), json(rec)?)
            .ttl(Some(self.expiry_of(rec).0));
        Ok(self
            .store
            .put_if_absent(
                Table::Epochs,
                &keys::epoch_key(&self.market, rec.epoch),
                &item,
            )
            .await?)
    }

    /// Moves `rec`'s epoch from `from` to `to` with `rec` as its new record, only if it is still
    /// `from`. A move the lifecycle does not allow is an invariant error and changes nothing.
    /// Every state keeps the epoch's one expiry ([`Records::expiry_of`]), a failed epoch too:
    /// an operator re-anchors it within the retention, while its batches are still stored.
    pub async fn move_epoch(
        &self,
        from: EpochState,
        to: EpochState,
        rec: &EpochRecord,
    ) -> Result<EpochMove, PipelineError> {
        if !from.can_become(to) {
            return Err(PipelineError::Invariant(format!(
                "epoch {}: {from} cannot become {to}",
                rec.epoch
            )));
        }
        let item = Item::with_state(to.as_str(), json(rec)?).ttl(Some(self.expiry_of(rec).0));
        match self
            .store
            .transition(
                Table::Epochs,
                &keys::epoch_key(&self.market, rec.epoch),
                Some(from.as_str()),
                &item,
            )
            .await?
        {
            Transition::Applied => Ok(EpochMove::Moved),
            Transition::Refused(None) => Ok(EpochMove::Refused(None)),
            Transition::Refused(Some(cur)) => Ok(EpochMove::Refused(Some(Box::new(entry(cur)?)))),
        }
    }

    /// Every recorded epoch, in order.
    pub async fn epochs(&self) -> Result<Vec<EpochEntry>, PipelineError> {
        self.epochs_from(0).await
    }

    /// The recorded epochs with ids from `first` on, in order.
    pub async fn epochs_from(&self, first: u64) -> Result<Vec<EpochEntry>, PipelineError> {
        let pk = keys::epochs_pk(&self.market);
        let mut next = (first > 0).then(|| keys::epoch_sk(first - 1));
        let mut out = Vec::new();
        loop {
            let page = self
                .store
                .query(Table::Epochs, &pk, next.as_deref(), EPOCH_PAGE)
                .await?;
            for (sk, item) in page.items {
                if keys::epoch_of_sk(&sk).is_some() {
                    out.push(entry(item)?);
                }
            }
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// At most `limit` recorded epochs with ids from `first` on, in order: one query.
    pub async fn epoch_page(
        &self,
        first: u64,
        limit: usize,
    ) -> Result<Vec<EpochEntry>, PipelineError> {
        let after = (first > 1).then(|| keys::epoch_sk(first - 1));
        let page = self
            .store
            .query(
                Table::Epochs,
                &keys::epochs_pk(&self.market),
                after.as_deref(),
                limit,
            )
            .await?;
        let mut out = Vec::new();
        for (sk, item) in page.items {
            if keys::epoch_of_sk(&sk).is_some() {
                out.push(entry(item)?);
            }
        }
        Ok(out)
    }

    /// The oldest recorded epoch's id: one query of one item.
    pub async fn oldest_epoch(&self) -> Result<Option<u64>, PipelineError> {
        let page = self
            .store
            .query(Table::Epochs, &keys::epochs_pk(&self.market), None, 1)
            .await?;
        Ok(page.items.first().and_then(|(sk, _)| keys::epoch_of_sk(sk)))
    }

    /// The newest recorded epoch's id. The tick's cursor points at the oldest epoch still open
    /// (or one past the newest when none is), so the scan starts just below it and reads a
    /// handful of epochs; without a cursor (never ticked) it scans from the beginning.
    pub async fn newest_epoch(&self) -> Result<Option<u64>, PipelineError> {
        let low = self.tick_cursor().await?.low_epoch;
        let pk = keys::epochs_pk(&self.market);
        let mut next = (low > 2).then(|| keys::epoch_sk(low - 2));
        let mut newest = None;
        loop {
            let page = self
                .store
                .query(Table::Epochs, &pk, next.as_deref(), EPOCH_PAGE)
                .await?;
            if let Some(e) = page
                .items
                .iter()
                .filter_map(|(sk, _)| keys::epoch_of_sk(sk))
                .max()
            {
                newest = newest.max(Some(e));
            }
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(newest),
            }
        }
    }

    /// The tick's cursor (all zero before the first tick).
    pub async fn tick_cursor(&self) -> Result<TickCursor, PipelineError> {
        match self
            .store
            .get(Table::Epochs, &keys::cursor_key(&self.market))
            .await?
        {
            Some(i) => parse("tick cursor", &i.data),
            None => Ok(TickCursor::default()),
        }
    }

    /// Saves the tick's cursor, stamped with the time (the status view's chain-head age).
    pub async fn save_tick_cursor(&self, cursor: &TickCursor) -> Result<(), PipelineError> {
        let stamped = TickCursor {
            saved_at_ms: Some(self.clock.now_ms()),
            ..cursor.clone()
        };
        Ok(self
            .store
            .put(
                Table::Epochs,
                &keys::cursor_key(&self.market),
                &Item::data(json(&stamped)?),
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_allows_only_its_edges() {
        use EpochState::*;
        let allowed = [
            (Open, Closing),
            (Closing, Closed),
            (Closing, Finalized),
            (Closed, Finalized),
            (Finalized, Anchored),
            (Finalized, Failed),
            (Failed, Finalized),
        ];
        for from in EpochState::ALL {
            for to in EpochState::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        for s in EpochState::ALL {
            assert_eq!(EpochState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap_or_default(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(EpochState::parse("open"), None);
    }
}
