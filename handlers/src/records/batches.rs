//! Batches: what finalization recorded for each batch of an epoch (`PENDING`) and what anchoring
//! found on chain for it (`ANCHORED`). Both expire with their epoch.

use serde::{Deserialize, Serialize};

use sequencer_ports::{query_all, Item, Table, Transition};

use super::keys;
use super::{Expiry, Records};
use crate::pipeline::{json, parse, PipelineError};

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatchState {
    /// Recorded by finalization; not on chain (as far as this record knows).
    #[serde(rename = "PENDING")]
    Pending,
    /// On chain, with its transaction.
    #[serde(rename = "ANCHORED")]
    Anchored,
}

impl BatchState {
    /// The stored label.
    pub const fn as_str(self) -> &'static str {
        match self {
            BatchState::Pending => "PENDING",
            BatchState::Anchored => "ANCHORED",
        }
    }

    fn parse(label: Option<&str>) -> Result<Self, PipelineError> {
        match label {
            Some("PENDING") => Ok(BatchState::Pending),
            Some("ANCHORED") => Ok(BatchState::Anchored),
            other => Err(PipelineError::Corrupt(format!("batch state {other:?}"))),
        }
    }
}

/// A finalized batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// 1-based index in the epoch.
    pub index: u32,
    /// Batch CID.
    pub cid: String,
    /// Published root over the submission ids of batches 1..=index.
    pub roothash: String,
    /// Published root over this batch's `cids` (sent on chain).
    pub finalized_cids_root: String,
    /// Project ids.
    pub pids: Vec<String>,
    /// Finalized CIDs, parallel to `pids`.
    pub cids: Vec<String>,
    /// Leaf index of this batch's first submission id in the epoch's tree.
    pub first_leaf_index: u64,
    /// Submissions listed.
    pub submissions: u64,
    /// Bytes of the batch document.
    pub bytes: u64,
    /// Anchoring transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Its block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// Recorded as delayed on chain.
    #[serde(default)]
    pub delayed: bool,
}

impl BatchRecord {
    /// Whether `other` records the same batch as finalization made it (index, CID, roots,
    /// projects, CIDs, leaves, sizes), whatever anchoring added since.
    pub fn same_batch(&self, other: &BatchRecord) -> bool {
        let finalized = |b: &BatchRecord| BatchRecord {
            tx_hash: None,
            block: None,
            delayed: false,
            ..b.clone()
        };
        finalized(self) == finalized(other)
    }
}

/// A batch and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// Its state.
    pub state: BatchState,
    /// Its record.
    pub record: BatchRecord,
}

fn entry(item: Item) -> Result<BatchEntry, PipelineError> {
    Ok(BatchEntry {
        state: BatchState::parse(item.state.as_deref())?,
        record: parse("batch", &item.data)?,
    })
}

impl Records<'_> {
    /// Batch `index` of an epoch.
    pub async fn batch(&self, epoch: u64, index: u32) -> Result<Option<BatchEntry>, PipelineError> {
        match self
            .store
            .get(Table::Batches, &keys::batch_key(&self.market, epoch, index))
            .await?
        {
            Some(item) => Ok(Some(entry(item)?)),
            None => Ok(None),
        }
    }

    /// Records a batch (`PENDING`) once: `false` when that index was recorded before.
    pub async fn record_batch(
        &self,
        epoch: u64,
        batch: &BatchRecord,
        expiry: Expiry,
    ) -> Result<bool, PipelineError> {
        Ok(self
            .store
            .put_if_absent(
                Table::Batches,
                &keys::batch_key(&self.market, epoch, batch.index),
                &Item::with_state(BatchState::Pending.as_str(), json(batch)?).ttl(Some(expiry.0)),
            )
            .await?)
    }

    /// The epoch's batches, in order.
    pub async fn batches(&self, epoch: u64) -> Result<Vec<BatchEntry>, PipelineError> {
        let pk = keys::batches_pk(&self.market, epoch);
        let mut out = Vec::new();
        for (_, item) in query_all(self.store, Table::Batches, &pk).await? {
            out.push(entry(item)?);
        }
        Ok(out)
    }

    /// Records a pending batch as anchored with `batch` (its transaction): `false` when it was
    /// not pending (recorded by another run).
    pub async fn mark_batch_anchored(
        &self,
        epoch: u64,
        batch: &BatchRecord,
        expiry: Expiry,
    ) -> Result<bool, PipelineError> {
        Ok(matches!(
            self.store
                .transition(
                    Table::Batches,
                    &keys::batch_key(&self.market, epoch, batch.index),
                    Some(BatchState::Pending.as_str()),
                    &Item::with_state(BatchState::Anchored.as_str(), json(batch)?)
                        .ttl(Some(expiry.0)),
                )
                .await?,
            Transition::Applied
        ))
    }
}
