//! What the handlers keep in the state store: the key scheme and the JSON records.
//!
//! Keys are spread so that one epoch's writes do not land on one partition: submissions and
//! receipts of an epoch are split over [`SHARDS`] partitions by a stable hash of the project
//! (submissions) or the submission id (receipts); finalization reads all of them.

use std::collections::BTreeMap;

use sequencer_core::Address;
use serde::{Deserialize, Serialize};

use sequencer_ports::Key;

/// Partitions per epoch for submissions and receipts. Changing it needs empty tables.
pub const SHARDS: u32 = 8;

/// Epoch states, in order.
pub mod state {
    /// Released; submissions are verified.
    pub const OPEN: &str = "OPEN";
    /// The tick decided to close it and is enqueuing the finalize job.
    pub const CLOSING: &str = "CLOSING";
    /// Closed; the finalize job is queued.
    pub const CLOSED: &str = "CLOSED";
    /// Batches made, uploaded and recorded; the anchor job is queued.
    pub const FINALIZED: &str = "FINALIZED";
    /// Every batch anchored and batch submissions ended.
    pub const ANCHORED: &str = "ANCHORED";
    /// Anchoring hit an error no retry can fix (recorded with its reason).
    pub const ANCHOR_FAILED: &str = "ANCHOR_FAILED";
    /// A claimed (project, slot) whose submission is still being checked.
    pub const PENDING: &str = "PENDING";
    /// An accepted submission.
    pub const ACCEPTED: &str = "ACCEPTED";
}

/// FNV-1a, stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The shard of a project or submission id.
pub fn shard_of(s: &str) -> u32 {
    fnv1a(s) % SHARDS
}

fn m(market: &Address) -> String {
    format!("{market:#x}")
}

/// Partition of an epoch's submissions (or receipts) in one shard.
pub fn epoch_shard_pk(market: &Address, epoch: u64, shard: u32) -> String {
    format!("{}#{epoch}#{shard}", m(market))
}

/// Key of the accepted submission of (project, slot).
pub fn submission_key(market: &Address, epoch: u64, project: &str, slot: u64) -> Key {
    Key::new(
        epoch_shard_pk(market, epoch, shard_of(project)),
        format!("{project}#{slot:020}"),
    )
}

/// Key of a submission id's receipt.
pub fn receipt_key(market: &Address, epoch: u64, submission_id: &str) -> Key {
    Key::new(
        epoch_shard_pk(market, epoch, shard_of(submission_id)),
        submission_id.to_string(),
    )
}

/// Key of the per-(slot, epoch) accepted counter.
pub fn slot_counter_key(market: &Address, epoch: u64, slot: u64) -> Key {
    Key::new(format!("{}#{epoch}#{slot}", m(market)), "accepted")
}

/// Key of an epoch.
pub fn epoch_key(market: &Address, epoch: u64) -> Key {
    Key::new(m(market), format!("{epoch:020}"))
}

/// Epoch id of an epoch sort key.
pub fn epoch_of_sk(sk: &str) -> Option<u64> {
    sk.parse().ok()
}

/// Key of the tick's cursor.
pub fn cursor_key(market: &Address) -> Key {
    Key::new(format!("{}#cursor", m(market)), "tick")
}

/// Key of a block hash.
pub fn block_key(hash: &str) -> Key {
    Key::new(hash.to_ascii_lowercase(), "block")
}

/// Partition of an epoch's batches.
pub fn batches_pk(market: &Address, epoch: u64) -> String {
    format!("{}#{epoch}", m(market))
}

/// Key of a batch.
pub fn batch_key(market: &Address, epoch: u64, index: u32) -> Key {
    Key::new(batches_pk(market, epoch), format!("{index:06}"))
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

/// The outcome of one submission id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// `accepted`, `simulation` (accepted as liveness, never batched) or `rejected`.
    pub outcome: String,
    /// Reason code, for rejections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail, for rejections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// SHA-256 of the queue message body: a redelivery has the same, a reused id does not.
    pub digest: String,
    /// Project id as sent.
    pub project: String,
    /// Slot id as sent.
    pub slot: u64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// Counts of an epoch's outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochCounts {
    /// Accepted submissions (batched or not).
    pub accepted: u64,
    /// Accepted simulation submissions.
    pub simulations: u64,
    /// Rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
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

/// The tick's position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCursor {
    /// Releases are scanned after this block.
    pub releases_after: u64,
    /// Block hashes are recorded up to this block.
    pub blocks_up_to: u64,
    /// Epochs below this one are closed (or later) and need no look.
    pub low_epoch: u64,
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

/// A finalize or anchor job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochJob {
    /// The market.
    pub market: Address,
    /// The epoch.
    pub epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_and_spread() {
        let a = Address::repeat_byte(1);
        assert!(epoch_key(&a, 9).sk < epoch_key(&a, 10).sk);
        assert_eq!(epoch_of_sk(&epoch_key(&a, 42).sk), Some(42));
        let shards: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| shard_of(&format!("project-{i}")))
            .collect();
        assert_eq!(
            shards.len() as u32,
            SHARDS,
            "projects spread over every shard"
        );
        // Stable forever: changing the hash would orphan stored records.
        assert_eq!(fnv1a("a"), 0xe40c_292c);
    }
}
