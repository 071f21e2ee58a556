//! Submissions: the claim of a (project, slot) in an epoch, held by the first submission that
//! passes the rules (`PENDING` while its per-slot cap is checked, then `ACCEPTED`), and the
//! per-(slot, epoch) cap as a bounded set of submission ids.

use sequencer_core::finalize::Accepted;
use sequencer_core::submission::SnapshotSubmission;
use sequencer_core::Address;
use serde::{Deserialize, Serialize};

use sequencer_ports::{BoundedAdd, Item, Table, Transition};

use super::keys;
use super::Records;
use crate::pipeline::{json, parse, PipelineError};

/// Where a claim is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubmissionState {
    /// Claimed; its per-slot cap is being checked.
    Pending,
    /// Accepted: finalization batches it.
    Accepted,
}

impl SubmissionState {
    /// The stored label.
    pub const fn as_str(self) -> &'static str {
        match self {
            SubmissionState::Pending => "PENDING",
            SubmissionState::Accepted => "ACCEPTED",
        }
    }

    fn parse(label: Option<&str>) -> Result<Self, PipelineError> {
        match label {
            Some("PENDING") => Ok(SubmissionState::Pending),
            Some("ACCEPTED") => Ok(SubmissionState::Accepted),
            other => Err(PipelineError::Corrupt(format!(
                "submission state {other:?}"
            ))),
        }
    }
}

/// An accepted (or pending) submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    /// Client-chosen id.
    pub submission_id: String,
    /// The submission's JSON text as received (after the UUID).
    pub text: String,
    /// Recovered signer.
    pub signer: Address,
    /// Block number of the header.
    pub header_block: u64,
    /// When it was verified (ms since the Unix epoch).
    pub verified_at_ms: i64,
}

/// What [`Records::accept_claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptClaim {
    /// The pending claim is now accepted.
    Accepted,
    /// It was accepted already (a redelivery finishing a crashed run).
    AlreadyAccepted,
    /// It is gone or was never ours: the claim as it is.
    Changed(Option<(SubmissionState, SubmissionRecord)>),
}

impl Records<'_> {
    /// Claims (project, slot) of an epoch for `rec` (`PENDING`), if nobody holds it: `false`
    /// when it is held (by this submission or another).
    pub async fn claim_submission(
        &self,
        epoch: u64,
        project: &str,
        slot: u64,
        rec: &SubmissionRecord,
    ) -> Result<bool, PipelineError> {
        let item = Item::with_state(SubmissionState::Pending.as_str(), json(rec)?);
        Ok(self
            .store
            .put_if_absent(
                Table::Submissions,
                &keys::submission_key(&self.market, epoch, project, slot),
                &item,
            )
            .await?)
    }

    /// Who holds (project, slot) of an epoch.
    pub async fn claim_holder(
        &self,
        epoch: u64,
        project: &str,
        slot: u64,
    ) -> Result<Option<(SubmissionState, SubmissionRecord)>, PipelineError> {
        match self
            .store
            .get(
                Table::Submissions,
                &keys::submission_key(&self.market, epoch, project, slot),
            )
            .await?
        {
            Some(item) => Ok(Some((
                SubmissionState::parse(item.state.as_deref())?,
                parse("submission", &item.data)?,
            ))),
            None => Ok(None),
        }
    }

    /// Moves the pending claim of (project, slot) to `ACCEPTED`.
    pub async fn accept_claim(
        &self,
        epoch: u64,
        project: &str,
        slot: u64,
        rec: &SubmissionRecord,
    ) -> Result<AcceptClaim, PipelineError> {
        let item = Item::with_state(SubmissionState::Accepted.as_str(), json(rec)?);
        match self
            .store
            .transition(
                Table::Submissions,
                &keys::submission_key(&self.market, epoch, project, slot),
                Some(SubmissionState::Pending.as_str()),
                &item,
            )
            .await?
        {
            Transition::Applied => Ok(AcceptClaim::Accepted),
            Transition::Refused(Some(cur))
                if cur.state.as_deref() == Some(SubmissionState::Accepted.as_str()) =>
            {
                Ok(AcceptClaim::AlreadyAccepted)
            }
            Transition::Refused(Some(cur)) => Ok(AcceptClaim::Changed(Some((
                SubmissionState::parse(cur.state.as_deref())?,
                parse("submission", &cur.data)?,
            )))),
            Transition::Refused(None) => Ok(AcceptClaim::Changed(None)),
        }
    }

    /// Gives up the claim of (project, slot) so it is never finalized.
    pub async fn release_claim(
        &self,
        epoch: u64,
        project: &str,
        slot: u64,
    ) -> Result<(), PipelineError> {
        Ok(self
            .store
            .delete(
                Table::Submissions,
                &keys::submission_key(&self.market, epoch, project, slot),
            )
            .await?)
    }

    /// Counts submission `id` toward the slot's cap in the epoch: atomic across concurrent
    /// verifiers, and a retry of the same id counts once.
    pub async fn count_toward_cap(
        &self,
        epoch: u64,
        slot: u64,
        id: &str,
        cap: u64,
    ) -> Result<BoundedAdd, PipelineError> {
        Ok(self
            .store
            .add_bounded(
                Table::Counters,
                &keys::slot_counter_key(&self.market, epoch, slot),
                id,
                cap,
            )
            .await?)
    }

    /// The epoch's accepted submissions, every shard (what finalization batches). The shards are
    /// read at once, each page by page; a page is parsed as it arrives and its stored items let
    /// go, so the set is held once, parsed, plus one page per shard.
    pub async fn accepted_submissions(&self, epoch: u64) -> Result<Vec<Accepted>, PipelineError> {
        let shards = futures::future::try_join_all(
            (0..keys::SHARDS).map(|shard| self.accepted_in_shard(epoch, shard)),
        )
        .await?;
        Ok(shards.into_iter().flatten().collect())
    }

    /// One shard's accepted submissions, page by page.
    async fn accepted_in_shard(
        &self,
        epoch: u64,
        shard: u32,
    ) -> Result<Vec<Accepted>, PipelineError> {
        let pk = keys::epoch_shard_pk(&self.market, epoch, shard);
        let mut accepted = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .query(Table::Submissions, &pk, after.as_deref(), keys::PAGE)
                .await?;
            for (_, item) in page.items {
                if SubmissionState::parse(item.state.as_deref())? != SubmissionState::Accepted {
                    continue;
                }
                let r: SubmissionRecord = parse("submission", &item.data)?;
                let submission: SnapshotSubmission =
                    serde_json::from_str(&r.text).map_err(|e| {
                        PipelineError::Corrupt(format!("submission {}: {e}", r.submission_id))
                    })?;
                accepted.push(Accepted {
                    submission_id: r.submission_id,
                    submission,
                });
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(accepted),
            }
        }
    }
}
