//! Submissions: the claim of a (project, slot) in an epoch, held by the first submission that
//! passes the rules, written `ACCEPTED` in verify's one transaction ([`super::intake`]) with its
//! receipt and its slot's counted ids; `PENDING` claims are what an earlier verify left between
//! its steps (read, and replaced by a redelivery).

use sequencer_core::finalize::Accepted;
use sequencer_core::submission::SnapshotSubmission;
use sequencer_core::Address;
use serde::{Deserialize, Serialize};

use sequencer_ports::Table;

use super::keys;
use super::Records;
use crate::pipeline::{parse, PipelineError};

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

    pub(super) fn parse(label: Option<&str>) -> Result<Self, PipelineError> {
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

impl Records<'_> {
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
