//! Submissions: the claim of a (project, slot) in an epoch, held by the first submission that
//! passes the rules, written `ACCEPTED` in verify's one transaction ([`super::intake`]) with its
//! receipt and its slot's counted ids; `PENDING` claims are what an earlier verify left between
//! its steps (read, and replaced by a redelivery).

use sequencer_core::finalize::Accepted;
use sequencer_core::submission::SnapshotSubmission;
use sequencer_core::Address;
use serde::{Deserialize, Serialize};

use sequencer_ports::{query_all, Table};

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
    /// The epoch's accepted submissions, every shard (what finalization batches).
    pub async fn accepted_submissions(&self, epoch: u64) -> Result<Vec<Accepted>, PipelineError> {
        let mut accepted = Vec::new();
        for shard in 0..keys::SHARDS {
            let pk = keys::epoch_shard_pk(&self.market, epoch, shard);
            for (_, item) in query_all(self.store, Table::Submissions, &pk).await? {
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
        }
        Ok(accepted)
    }
}
