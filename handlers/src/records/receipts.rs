//! Receipts: the outcome of every processed submission id, written once, and the one tally of an
//! epoch's receipts.
//!
//! Stored as JSON `{"outcome":"accepted"|"simulation"|"rejected","reason"?,"detail"?,"digest",
//! "project","slot","at_ms"}` with the item state `ACCEPTED`, `SIMULATION` or `REJECTED`, as the
//! handlers always wrote them.

use std::collections::BTreeMap;

use sequencer_core::rules::Rejection;
use serde::{Deserialize, Serialize};

use sequencer_ports::{Item, Table};

use super::keys;
use super::{Expiry, Records};
use crate::pipeline::{json, parse, PipelineError};

/// Why a submission was rejected: a rule of the protocol core, or one of the pipeline's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// A rule of the core (`sequencer_core::rules::Rejection::reason()`: fields, signature,
    /// market, slot, flag, header, window, cap, duplicate), by its stable code.
    Rule(String),
    /// The epoch was already closed for finalization when the submission was verified (`late`).
    Late,
    /// The submission id was used before in the epoch with another body
    /// (`duplicate_submission_id`; the first stays).
    DuplicateSubmissionId,
    /// The epoch is past the retention (`expired_epoch`): its records expired, or it is older
    /// than the oldest epoch the store keeps. Answered at once, with no chain call and no
    /// receipt (it would expire at once too).
    ExpiredEpoch,
}

impl RejectReason {
    /// Code of [`RejectReason::Late`].
    pub const LATE: &'static str = "late";
    /// Code of [`RejectReason::DuplicateSubmissionId`].
    pub const DUPLICATE_ID: &'static str = "duplicate_submission_id";
    /// Code of [`RejectReason::ExpiredEpoch`].
    pub const EXPIRED_EPOCH: &'static str = "expired_epoch";

    /// The stable code (stored, counted, shown by the proof API).
    pub fn code(&self) -> &str {
        match self {
            RejectReason::Rule(c) => c,
            RejectReason::Late => Self::LATE,
            RejectReason::DuplicateSubmissionId => Self::DUPLICATE_ID,
            RejectReason::ExpiredEpoch => Self::EXPIRED_EPOCH,
        }
    }

    /// The reason with this code.
    pub fn from_code(code: &str) -> Self {
        match code {
            Self::LATE => RejectReason::Late,
            Self::DUPLICATE_ID => RejectReason::DuplicateSubmissionId,
            Self::EXPIRED_EPOCH => RejectReason::ExpiredEpoch,
            other => RejectReason::Rule(other.to_string()),
        }
    }
}

impl From<&Rejection> for RejectReason {
    fn from(r: &Rejection) -> Self {
        RejectReason::Rule(r.reason().to_string())
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// What became of a submission id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted for its epoch.
    Accepted,
    /// Accepted as a simulation submission (liveness), never batched.
    Simulation,
    /// Rejected.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// In words, for people.
        detail: Option<String>,
    },
}

impl Outcome {
    /// `accepted`, `simulation` or `rejected`.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Simulation => "simulation",
            Outcome::Rejected { .. } => "rejected",
        }
    }

    /// The stored item's state.
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted => "ACCEPTED",
            Outcome::Simulation => "SIMULATION",
            Outcome::Rejected { .. } => "REJECTED",
        }
    }

    /// The rejection reason, if rejected.
    pub fn reason(&self) -> Option<&RejectReason> {
        match self {
            Outcome::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// The outcome of one submission id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// What became of it.
    pub outcome: Outcome,
    /// SHA-256 of the queue message body: a redelivery has the same, a reused id does not.
    pub digest: String,
    /// Project id as sent.
    pub project: String,
    /// Slot id as sent.
    pub slot: u64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// A receipt as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredReceipt {
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    digest: String,
    project: String,
    slot: u64,
    at_ms: i64,
}

impl From<&Receipt> for StoredReceipt {
    fn from(r: &Receipt) -> Self {
        let (reason, detail) = match &r.outcome {
            Outcome::Rejected { reason, detail } => {
                (Some(reason.code().to_string()), detail.clone())
            }
            _ => (None, None),
        };
        Self {
            outcome: r.outcome.code().to_string(),
            reason,
            detail,
            digest: r.digest.clone(),
            project: r.project.clone(),
            slot: r.slot,
            at_ms: r.at_ms,
        }
    }
}

impl From<StoredReceipt> for Receipt {
    /// Any outcome other than `accepted` and `simulation` is a rejection; one without a reason
    /// (never written by this code) counts under its outcome, as the tally always did.
    fn from(s: StoredReceipt) -> Self {
        let outcome = match s.outcome.as_str() {
            "accepted" => Outcome::Accepted,
            "simulation" => Outcome::Simulation,
            other => Outcome::Rejected {
                reason: RejectReason::from_code(s.reason.as_deref().unwrap_or(other)),
                detail: s.detail,
            },
        };
        Self {
            outcome,
            digest: s.digest,
            project: s.project,
            slot: s.slot,
            at_ms: s.at_ms,
        }
    }
}

/// Counts of an epoch's outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochCounts {
    /// Accepted submissions (batched or not).
    pub accepted: u64,
    /// Accepted simulation submissions.
    pub simulations: u64,
    /// Rejected, by reason code.
    pub rejected: BTreeMap<String, u64>,
}

impl EpochCounts {
    /// Counts one outcome.
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Simulation => self.simulations += 1,
            Outcome::Rejected { reason, .. } => {
                *self.rejected.entry(reason.code().to_string()).or_default() += 1
            }
        }
    }

    /// Rejections of every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// A stored receipt's JSON.
pub(super) fn stored_receipt(data: &str) -> Result<Receipt, PipelineError> {
    Ok(parse::<StoredReceipt>("receipt", data)?.into())
}

impl Records<'_> {
    /// A receipt as stored, expiring at `expiry` (its epoch's), or the retention from now when
    /// its epoch is not recorded.
    pub(super) fn receipt_item(
        &self,
        receipt: &Receipt,
        expiry: Option<Expiry>,
    ) -> Result<Item, PipelineError> {
        Ok(Item::with_state(
            receipt.outcome.label(),
            json(&StoredReceipt::from(receipt))?,
        )
        .ttl(expiry.map(|e| e.0).or_else(|| self.expiry())))
    }

    /// The receipt of a submission id in an epoch.
    pub async fn receipt(&self, epoch: u64, id: &str) -> Result<Option<Receipt>, PipelineError> {
        match self
            .store
            .get(Table::Receipts, &keys::receipt_key(&self.market, epoch, id))
            .await?
        {
            Some(item) => Ok(Some(stored_receipt(&item.data)?)),
            None => Ok(None),
        }
    }

    /// Writes the receipt of a submission id once, expiring at `expiry` (its epoch's; `None`:
    /// the retention from now): `false` when one was there (a concurrent delivery of the same
    /// message got there first; the first stays).
    pub async fn write_receipt(
        &self,
        epoch: u64,
        id: &str,
        receipt: &Receipt,
        expiry: Option<Expiry>,
    ) -> Result<bool, PipelineError> {
        let item = self.receipt_item(receipt, expiry)?;
        Ok(self
            .store
            .put_if_absent(
                Table::Receipts,
                &keys::receipt_key(&self.market, epoch, id),
                &item,
            )
            .await?)
    }

    /// The counts of every receipt of an epoch: the shards read at once, each page counted as it
    /// arrives.
    pub async fn tally_receipts(&self, epoch: u64) -> Result<EpochCounts, PipelineError> {
        let shards = futures::future::try_join_all(
            (0..keys::SHARDS).map(|shard| self.tally_shard(epoch, shard)),
        )
        .await?;
        let mut counts = EpochCounts::default();
        for c in shards {
            counts.accepted += c.accepted;
            counts.simulations += c.simulations;
            for (reason, n) in c.rejected {
                *counts.rejected.entry(reason).or_default() += n;
            }
        }
        Ok(counts)
    }

    /// The counts of one shard's receipts, page by page.
    async fn tally_shard(&self, epoch: u64, shard: u32) -> Result<EpochCounts, PipelineError> {
        let pk = keys::epoch_shard_pk(&self.market, epoch, shard);
        let mut counts = EpochCounts::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .query(Table::Receipts, &pk, after.as_deref(), keys::PAGE)
                .await?;
            for (_, item) in page.items {
                let r: Receipt = parse::<StoredReceipt>("receipt", &item.data)?.into();
                counts.count(&r.outcome);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(counts),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_store_as_they_always_did() {
        let r = Receipt {
            outcome: Outcome::Rejected {
                reason: RejectReason::Late,
                detail: Some("closed".into()),
            },
            digest: "d".into(),
            project: "p".into(),
            slot: 3,
            at_ms: 5,
        };
        let text = serde_json::to_string(&StoredReceipt::from(&r)).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"outcome":"rejected","reason":"late","detail":"closed","digest":"d","project":"p","slot":3,"at_ms":5}"#
        );
        let back: StoredReceipt = serde_json::from_str(&text).unwrap_or_else(|_| unreachable!());
        assert_eq!(Receipt::from(back), r);
        let a = Receipt {
            outcome: Outcome::Accepted,
            ..r.clone()
        };
        assert_eq!(
            serde_json::to_string(&StoredReceipt::from(&a)).unwrap_or_default(),
            r#"{"outcome":"accepted","digest":"d","project":"p","slot":3,"at_ms":5}"#
        );
        assert_eq!(a.outcome.label(), "ACCEPTED");
        assert_eq!(r.outcome.label(), "REJECTED");
    }

    #[test]
    fn the_tally_counts_by_outcome_and_reason() {
        let mut c = EpochCounts::default();
        c.count(&Outcome::Accepted);
        c.count(&Outcome::Simulation);
        for reason in ["duplicate", "duplicate", "late"] {
            c.count(&Outcome::Rejected {
                reason: RejectReason::from_code(reason),
                detail: None,
            });
        }
        assert_eq!((c.accepted, c.simulations, c.rejected_total()), (1, 1, 3));
        assert_eq!(c.rejected["duplicate"], 2);
        assert_eq!(RejectReason::from_code("late"), RejectReason::Late);
        assert_eq!(
            RejectReason::from_code("duplicate_submission_id"),
            RejectReason::DuplicateSubmissionId
        );
        assert_eq!(
            RejectReason::from(&Rejection::Duplicate),
            RejectReason::Rule("duplicate".into())
        );
    }
}
