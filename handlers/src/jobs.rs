//! The jobs the functions hand each other over queues: the tick's finalize job and finalize's
//! anchor job, both `{"market","epoch"}`, with the attributes operators filter on.

use sequencer_core::Address;
use serde::{Deserialize, Serialize};

use sequencer_ports::OutMessage;

use crate::pipeline::{json, PipelineError};

/// A finalize or anchor job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochJob {
    /// The market.
    pub market: Address,
    /// The epoch.
    pub epoch: u64,
}

impl EpochJob {
    /// The job as a queue message (standard queue).
    pub fn message(&self) -> Result<OutMessage, PipelineError> {
        Ok(OutMessage::new(json(self)?)
            .attr("market", format!("{:#x}", self.market))
            .attr("epoch", self.epoch.to_string()))
    }

    /// The job as a FIFO message in `group`, deduplicated by market and epoch (a repeat within
    /// the queue's deduplication interval is dropped).
    pub fn fifo_message(&self, group: &str) -> Result<OutMessage, PipelineError> {
        Ok(self
            .message()?
            .fifo(group, format!("{:#x}-{}", self.market, self.epoch)))
    }
}

/// A daily rewards job: commit day `day` of `market` on chain (`crate::rewards::run`), once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardsJob {
    /// The market.
    pub market: Address,
    /// The market's day (`dayCounter`), ended.
    pub day: u64,
}

impl RewardsJob {
    /// The job as a FIFO message in `group`, deduplicated by market and day. The attributes say
    /// what it is (`kind=rewards`), so operators can tell it from the epoch jobs.
    pub fn fifo_message(&self, group: &str) -> Result<OutMessage, PipelineError> {
        Ok(OutMessage::new(json(self)?)
            .attr("kind", "rewards")
            .attr("market", format!("{:#x}", self.market))
            .attr("day", self.day.to_string())
            .fifo(group, format!("{:#x}-day-{}", self.market, self.day)))
    }
}

/// What the anchor FIFO carries: both send with the sequencer's key, so they share its message
/// group and that key has one writer. Told apart by their fields (`epoch` or `day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnchorJob {
    /// Anchor a finalized epoch's batches.
    Epoch(EpochJob),
    /// Commit an ended day's rewards (`updateRewards`).
    Rewards(RewardsJob),
}
