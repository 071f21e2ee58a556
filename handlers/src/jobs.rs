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
    /// The job as a FIFO message in `group` (tagged `"job":"rewards"`), deduplicated by market
    /// and day. The attributes say what it is (`kind=rewards`), so operators can tell it from
    /// the epoch jobs.
    pub fn fifo_message(&self, group: &str) -> Result<OutMessage, PipelineError> {
        AnchorJob::Rewards(*self)
            .fifo_message(group, &format!("{:#x}-day-{}", self.market, self.day))
    }
}

/// A job of the anchor FIFO queue: one signing key's writes, one at a time. An enum so other
/// writes of the sequencer's key (the daily rewards update, say) can join the same queue, and the
/// one writer, as variants of their own.
///
/// On the wire a job is a JSON object tagged by `"job"`; an object without the tag is an
/// [`AnchorJob::Epoch`] (what finalize sends: the bare [`EpochJob`]), so messages queued before
/// the tag existed still run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum AnchorJob {
    /// Anchor a finalized epoch's batches, then end its batch submissions.
    Epoch(EpochJob),
    /// Commit an ended day's rewards (`updateRewards`), once.
    Rewards(RewardsJob),
}

impl AnchorJob {
    /// Parses a queue message's body.
    pub fn parse(body: &str) -> Result<Self, PipelineError> {
        let mut v: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| PipelineError::Corrupt(format!("anchor job: {e}")))?;
        if let Some(o) = v.as_object_mut() {
            o.entry("job").or_insert_with(|| "epoch".into());
        }
        serde_json::from_value(v).map_err(|e| PipelineError::Corrupt(format!("anchor job: {e}")))
    }

    /// The job as a FIFO message in `group`. `dedup` names this sending of the job: SQS drops a
    /// message whose deduplication id it saw in the last five minutes.
    pub fn fifo_message(&self, group: &str, dedup: &str) -> Result<OutMessage, PipelineError> {
        let m = OutMessage::new(json(self)?);
        let m = match self {
            AnchorJob::Epoch(e) => m
                .attr("market", format!("{:#x}", e.market))
                .attr("epoch", e.epoch.to_string()),
            AnchorJob::Rewards(r) => m
                .attr("kind", "rewards")
                .attr("market", format!("{:#x}", r.market))
                .attr("day", r.day.to_string()),
        };
        Ok(m.fifo(group, dedup.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untagged_job_is_an_epoch_and_tagged_ones_round_trip() {
        let e = EpochJob {
            market: Address::repeat_byte(7),
            epoch: 42,
        };
        let bare = json(&e).expect("json");
        assert_eq!(AnchorJob::parse(&bare).expect("bare"), AnchorJob::Epoch(e));
        let tagged = json(&AnchorJob::Epoch(e)).expect("json");
        assert!(tagged.contains(r#""job":"epoch""#), "{tagged}");
        assert_eq!(
            AnchorJob::parse(&tagged).expect("tagged"),
            AnchorJob::Epoch(e)
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"job":"nope","epoch":1}"#,
            r#"{"market":1}"#,
        ] {
            assert!(
                matches!(AnchorJob::parse(bad), Err(PipelineError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
