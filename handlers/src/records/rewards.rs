//! Rewards: what each slot earned in each finalized epoch ([`EpochRewards`], written by
//! finalization) and each day's sums with what was committed on chain ([`DayRewards`], written by
//! the daily rewards commit, `crate::rewards`). Both live in the epochs table, in partitions of
//! their own (`market#rewards` by epoch, `market#rewards-day` by day). An epoch's rewards expire
//! with the epoch; a day's expire the retention after the day's commit computed them (it runs
//! once the day ended, so the day's sums outlive its epochs; the chain keeps what was
//! committed). Beside them, one small item names the newest day with rewards
//! ([`Records::latest_rewards_day`]), so the live summary learns it with one read instead of
//! listing every day.
//!
//! A market's records grow with its slots (a slot with discards costs ~250 bytes of JSON), past
//! what one DynamoDB item holds (400 KB) at a few thousand slots. A record whose JSON exceeds
//! [`ONE_ITEM_BYTES`] is stored in parts: the main item (at the record's key, as before) holds
//! everything but the slots and says how many parts follow; the slots go to parts of at most
//! [`PART_BYTES`] each, at the main item's sort key + `#0001`, `#0002`, … (sorted right after
//! it). Parts are written before the main item, so a reader that finds the main item finds its
//! parts; a re-run writes the same bytes.

use serde::{Deserialize, Serialize};

use sequencer_core::rewards::{DaySlot, SlotTally};
use sequencer_core::B256;
use sequencer_ports::{Item, RewardsOutcome, Table};

use super::keys;
use super::{Expiry, Records};
use crate::pipeline::{json, parse, PipelineError};

/// The largest record JSON stored as one item (DynamoDB's item limit is 400 KB, keys and
/// attribute names included).
pub const ONE_ITEM_BYTES: usize = 350_000;
/// The largest JSON of one part's slots.
pub const PART_BYTES: usize = 300_000;

/// The main item of a record stored in parts: the record with its slots moved to the parts.
#[derive(Serialize, Deserialize)]
struct Main<T> {
    #[serde(flatten)]
    rec: T,
    /// Parts that hold the slots (absent: the record is whole in this item).
    #[serde(default)]
    parts: u32,
}

/// One part: slots of a record stored in parts.
#[derive(Serialize, Deserialize)]
struct Part<S> {
    slots: Vec<S>,
}

/// Slots cut into runs whose JSON stays within [`PART_BYTES`] (a single larger slot is a part
/// of its own), from each slot's JSON length: the index ranges of the parts.
fn cut(lens: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, len) in lens.iter().enumerate() {
        let n = len + 1;
        match parts.last_mut() {
            Some(p) if size + n <= PART_BYTES => {
                p.end = i + 1;
                size += n;
            }
            _ => {
                parts.push(i..i + 1);
                size = n + 16;
            }
        }
    }
    parts
}

/// The JSON of a [`Part`] holding the slots whose JSON texts are `texts`: what serde writes for
/// it, assembled from texts made once (a record of 25 000 slots was serialized four times).
fn part_json(texts: &[String]) -> String {
    let mut out = String::with_capacity(texts.iter().map(|t| t.len() + 1).sum::<usize>() + 12);
    out.push_str(r#"{"slots":["#);
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(t);
    }
    out.push_str("]}");
    out
}

/// The length of a record's compact JSON, from the record without its slots and each slot's
/// text: the texts go into its empty list, a comma between two.
fn whole_len<T: Serialize>(bare: &T, texts: &[String]) -> Result<usize, PipelineError> {
    Ok(json(bare)?.len()
        + texts.iter().map(String::len).sum::<usize>()
        + texts.len().saturating_sub(1))
}

/// A record with a list of slots, stored whole or in parts.
trait Parted: Serialize + for<'de> Deserialize<'de> {
    type Slot: Serialize + for<'de> Deserialize<'de>;
    fn slots(&self) -> &[Self::Slot];
    fn slots_mut(&mut self) -> &mut Vec<Self::Slot>;
    /// The record without its slots.
    fn bare(&self) -> Self;
}

impl Parted for EpochRewards {
    type Slot = SlotTally;
    fn slots(&self) -> &[SlotTally] {
        &self.slots
    }
    fn slots_mut(&mut self) -> &mut Vec<SlotTally> {
        &mut self.slots
    }
    fn bare(&self) -> Self {
        Self {
            epoch: self.epoch,
            slots: Vec::new(),
        }
    }
}

impl Parted for DayRewards {
    type Slot = DaySlot;
    fn slots(&self) -> &[DaySlot] {
        &self.slots
    }
    fn slots_mut(&mut self) -> &mut Vec<DaySlot> {
        &mut self.slots
    }
    fn bare(&self) -> Self {
        Self {
            day: self.day,
            first_epoch: self.first_epoch,
            last_epoch: self.last_epoch,
            quota: self.quota,
            slots: Vec::new(),
            eligible_nodes: self.eligible_nodes,
            committed: self.committed.clone(),
        }
    }
}

fn part_key(main: &sequencer_ports::Key, i: u32) -> sequencer_ports::Key {
    sequencer_ports::Key::new(main.pk.clone(), format!("{}#{i:04}", main.sk))
}

/// Whether `sk` is a part's sort key (`<main sk>#NNNN`).
fn is_part(sk: &str) -> bool {
    sk.contains('#')
}

/// One finalized epoch's rewards: every slot with an accepted submission, eligible (voted for
/// its project's finalized CID) and discarded (with the CIDs and why).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRewards {
    /// Epoch id.
    pub epoch: u64,
    /// By slot id.
    pub slots: Vec<SlotTally>,
}

/// One day's rewards: the sums over its epochs, and the `updateRewards` commit once sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayRewards {
    /// The market's day (`dayCounter` while it ran).
    pub day: u64,
    /// Its first and last epoch ids.
    pub first_epoch: u64,
    /// Last epoch id.
    pub last_epoch: u64,
    /// `dailySnapshotQuota` the sums were held against.
    pub quota: u64,
    /// By slot id.
    pub slots: Vec<DaySlot>,
    /// Slots that met the quota (`eligibleNodes`).
    pub eligible_nodes: u64,
    /// What the commit did on chain; `None` until it was sent and mined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<DayCommit>,
}

/// What the day's `updateRewards` commit did on chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCommit {
    /// Slots our transactions recorded.
    pub recorded: Vec<u64>,
    /// Slots found recorded already (an earlier, interrupted run): not sent again.
    pub already: Vec<u64>,
    /// Slots whose `DailyTaskCompletedEvent` our transactions emitted.
    pub completed: Vec<u64>,
    /// Our transactions, in order.
    pub txs: Vec<B256>,
    /// When the commit was seen mined (ms since the Unix epoch).
    pub at_ms: i64,
}

impl DayCommit {
    /// The record of `outcome`, at `at_ms`.
    pub fn of(outcome: &RewardsOutcome, at_ms: i64) -> Self {
        Self {
            recorded: outcome.recorded.clone(),
            already: outcome.already.clone(),
            completed: outcome.completed.iter().map(|(slot, _)| *slot).collect(),
            txs: outcome.txs.iter().map(|t| t.tx_hash).collect(),
            at_ms,
        }
    }
}

/// The newest day with rewards (`market#rewards-latest`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LatestDay {
    day: u64,
}

impl Records<'_> {
    /// Records epoch `epoch`'s rewards: the tally finalize sealed with the batches
    /// (`core::rewards::tally_votes` over the sealed set), so a redelivered finalize job, or a
    /// second finalizer, writes the same bytes. Finalize's one call.
    pub async fn record_epoch_rewards(
        &self,
        epoch: u64,
        slots: &[SlotTally],
        expiry: Expiry,
    ) -> Result<EpochRewards, PipelineError> {
        let rec = EpochRewards {
            epoch,
            slots: slots.to_vec(),
        };
        self.put_parted(
            &keys::epoch_rewards_key(&self.market, epoch),
            &rec,
            Some(expiry.0),
        )
        .await?;
        Ok(rec)
    }

    /// Stores `rec` at `key`, whole or in parts (the module's doc).
    async fn put_parted<T: Parted>(
        &self,
        key: &sequencer_ports::Key,
        rec: &T,
        ttl: Option<u64>,
    ) -> Result<(), PipelineError> {
        // Each slot's JSON made once, the whole record's length and its parts from those.
        let texts: Vec<String> = rec.slots().iter().map(json).collect::<Result<_, _>>()?;
        let bare = rec.bare();
        if whole_len(&bare, &texts)? <= ONE_ITEM_BYTES {
            return Ok(self
                .store
                .put(Table::Epochs, key, &Item::data(json(rec)?).ttl(ttl))
                .await?);
        }
        let lens: Vec<usize> = texts.iter().map(String::len).collect();
        let parts = cut(&lens);
        for (i, r) in parts.iter().enumerate() {
            let i = u32::try_from(i + 1)
                .map_err(|_| PipelineError::Invariant("a record of more than 2^32 parts".into()))?;
            self.store
                .put(
                    Table::Epochs,
                    &part_key(key, i),
                    &Item::data(part_json(&texts[r.clone()])).ttl(ttl),
                )
                .await?;
        }
        let main = Main {
            rec: bare,
            parts: u32::try_from(parts.len()).unwrap_or(u32::MAX),
        };
        Ok(self
            .store
            .put(Table::Epochs, key, &Item::data(json(&main)?).ttl(ttl))
            .await?)
    }

    /// The record at `key` with its parts' slots, `None` when absent.
    async fn get_parted<T: Parted>(
        &self,
        key: &sequencer_ports::Key,
        what: &str,
    ) -> Result<Option<T>, PipelineError> {
        let Some(item) = self.store.get(Table::Epochs, key).await? else {
            return Ok(None);
        };
        let main: Main<T> = parse(what, &item.data)?;
        let mut rec = main.rec;
        if main.parts > 0 {
            let page = self
                .store
                .query(
                    Table::Epochs,
                    &key.pk,
                    Some(&key.sk),
                    usize::try_from(main.parts).unwrap_or(usize::MAX),
                )
                .await?;
            let prefix = format!("{}#", key.sk);
            let mut found = 0u32;
            for (sk, item) in &page.items {
                if !sk.starts_with(&prefix) {
                    break;
                }
                let part: Part<T::Slot> = parse(what, &item.data)?;
                rec.slots_mut().extend(part.slots);
                found += 1;
            }
            if found != main.parts {
                return Err(PipelineError::Corrupt(format!(
                    "{what} at {}: {found} of its {} parts",
                    key.sk, main.parts
                )));
            }
        }
        Ok(Some(rec))
    }

    /// Epoch `epoch`'s rewards, `None` when it was not finalized (or finalized before rewards
    /// were kept).
    pub async fn epoch_rewards(&self, epoch: u64) -> Result<Option<EpochRewards>, PipelineError> {
        self.get_parted(
            &keys::epoch_rewards_key(&self.market, epoch),
            "epoch rewards",
        )
        .await
    }

    /// The rewards of the epochs `first..=last` that have them, in epoch order.
    pub async fn epochs_rewards(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<EpochRewards>, PipelineError> {
        let pk = keys::epoch_rewards_pk(&self.market);
        let mut out: Vec<EpochRewards> = Vec::new();
        // Sort keys are zero-padded epoch ids: start just before `first`.
        let mut after = first.checked_sub(1).map(keys::epoch_sk);
        'pages: loop {
            let page = self
                .store
                .query(Table::Epochs, &pk, after.as_deref(), 1000)
                .await?;
            for (sk, item) in &page.items {
                if is_part(sk) {
                    // The slots of the record just read (its main item sorts first).
                    let part: Part<SlotTally> = parse("epoch rewards", &item.data)?;
                    match out.last_mut() {
                        Some(rec) if sk.starts_with(&format!("{}#", keys::epoch_sk(rec.epoch))) => {
                            rec.slots.extend(part.slots)
                        }
                        _ => {}
                    }
                    continue;
                }
                match keys::epoch_of_sk(sk) {
                    Some(e) if e > last => break 'pages,
                    Some(_) => {
                        let main: Main<EpochRewards> = parse("epoch rewards", &item.data)?;
                        out.push(main.rec);
                    }
                    None => return Err(PipelineError::Corrupt(format!("epoch rewards key {sk}"))),
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(out)
    }

    /// Day `day`'s rewards, `None` before the daily commit computed them.
    pub async fn day_rewards(&self, day: u64) -> Result<Option<DayRewards>, PipelineError> {
        self.get_parted(&keys::day_rewards_key(&self.market, day), "day rewards")
            .await
    }

    /// Saves day `day`'s rewards (computed, then again with the commit's outcome), and names it
    /// the newest day with rewards unless a later one is named already. Days are committed one
    /// job at a time on the anchor FIFO's group, so the read-then-write does not race in
    /// practice; if it ever did, the next day saved moves the name on again.
    pub async fn save_day_rewards(&self, rec: &DayRewards) -> Result<(), PipelineError> {
        self.put_parted(
            &keys::day_rewards_key(&self.market, rec.day),
            rec,
            self.expiry(),
        )
        .await?;
        if self.latest_rewards_day().await?.is_none_or(|d| d < rec.day) {
            self.store
                .put(
                    Table::Epochs,
                    &keys::latest_rewards_day_key(&self.market),
                    &Item::data(json(&LatestDay { day: rec.day })?),
                )
                .await?;
        }
        Ok(())
    }

    /// The newest day with rewards (computed, committed or not), `None` before the first: one
    /// read. Days saved before this name was kept are named from the next day saved on.
    pub async fn latest_rewards_day(&self) -> Result<Option<u64>, PipelineError> {
        Ok(self
            .store
            .get(Table::Epochs, &keys::latest_rewards_day_key(&self.market))
            .await?
            .map(|i| parse::<LatestDay>("latest rewards day", &i.data))
            .transpose()?
            .map(|l| l.day))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequencer_core::rewards::{Discard, DiscardReason};

    fn tally(slot: u64, discards: usize) -> SlotTally {
        SlotTally {
            slot,
            eligible: slot % 7,
            discards: (0..discards)
                .map(|i| Discard {
                    project: format!("p\"{i}\\"),
                    cid: format!("bafk{i}"),
                    finalized_cid: (i % 2 == 0).then(|| "bafkwin".to_string()),
                    reason: DiscardReason::Outvoted,
                })
                .collect(),
        }
    }

    #[test]
    fn parts_assembled_from_slot_texts_are_what_serde_writes() {
        let slots: Vec<SlotTally> = (0..5).map(|s| tally(s, s as usize)).collect();
        let texts: Vec<String> = slots.iter().map(|s| json(s).expect("json")).collect();
        for r in [0..0, 0..1, 1..5, 0..5] {
            let part = Part {
                slots: slots[r.clone()].to_vec(),
            };
            assert_eq!(part_json(&texts[r]), json(&part).expect("json"));
        }
    }

    #[test]
    fn the_whole_length_is_the_bare_records_plus_its_slot_texts() {
        let epoch = EpochRewards {
            epoch: 9,
            slots: (0..4).map(|s| tally(s, 2)).collect(),
        };
        let day = DayRewards {
            day: 3,
            first_epoch: 1,
            last_epoch: 9,
            quota: 2,
            slots: (0..3)
                .map(|s| DaySlot {
                    slot: s,
                    eligible: s,
                    discarded: 1,
                    met_quota: s > 1,
                })
                .collect(),
            eligible_nodes: 1,
            committed: Some(DayCommit::default()),
        };
        fn whole<T: Parted>(rec: &T) -> usize {
            let texts: Vec<String> = rec.slots().iter().map(|s| json(s).expect("json")).collect();
            whole_len(&rec.bare(), &texts).expect("json")
        }
        assert_eq!(whole(&epoch), json(&epoch).expect("json").len());
        assert_eq!(whole(&day), json(&day).expect("json").len());
        let empty = EpochRewards::default();
        assert_eq!(whole(&empty), json(&empty).expect("json").len());
    }

    #[test]
    fn parts_stay_within_the_part_size_and_a_larger_slot_is_alone() {
        let lens = [100_000, 150_000, 60_000, 400_000, 10, 20];
        let parts = cut(&lens);
        assert_eq!(parts, vec![0..2, 2..3, 3..4, 4..6]);
        for r in &parts {
            let size: usize = lens[r.clone()].iter().map(|n| n + 1).sum();
            assert!(size <= PART_BYTES || r.len() == 1, "{r:?}: {size}");
        }
        assert!(cut(&[]).is_empty());
    }
}
