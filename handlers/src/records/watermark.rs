//! The close watermark's records (docs/protocol.md §4, "The close watermark").
//!
//! - **Tallies**: the newest tally of each ingress boot ([`Tally`]: its cumulative count of
//!   submissions taken in, per epoch), at `market#tallies` / boot in the epochs table, replaced
//!   only by a tally with a higher `seq` (a conditional write on the stored `seq`, so tallies
//!   delivered out of order or twice never move a count back). They expire a day after they were
//!   written (or the retention, if shorter): only a boot alive around a window's end matters.
//! - **Decided marks**: a short mark per queue message verify decided (accepted, rejected or
//!   dropped), in one of [`DECIDED_SHARDS`](super::keys::DECIDED_SHARDS) sets per epoch in the
//!   counters table. A set, so a message decided twice (a redelivery, a retried write) counts
//!   once; one write per epoch per verify batch (every mark of the batch's epoch goes to the
//!   shard of its first mark).

use sequencer_core::tally::Tally;
use sequencer_ports::{Item, Table, Transition};
use sha2::{Digest, Sha256};

use super::keys;
use super::Records;
use crate::pipeline::{json, parse, PipelineError};

/// How long a stored tally lives (seconds).
const TALLY_TTL_SECS: u64 = 86_400;

/// Attempts at replacing a boot's tally against concurrent writers before giving up (the next
/// tally of that boot carries the same counts and more).
const TALLY_ATTEMPTS: usize = 4;

/// The mark of one queue message (its SQS message id, or its body's digest where there is
/// none): 16 hex digits of its SHA-256, 64 bits, so that an epoch's marks stay small and two
/// messages of one epoch share a mark with a chance of about n²/2⁶⁵.
pub fn mark_of(message: &str) -> String {
    hex::encode(&Sha256::digest(message.as_bytes())[..8])
}

impl Records<'_> {
    /// Stores `t` as its boot's newest tally unless a tally with the same or a higher `seq` is
    /// stored; whether it was stored.
    pub async fn save_tally(&self, t: &Tally) -> Result<bool, PipelineError> {
        let key = sequencer_ports::Key::new(keys::tallies_pk(&self.market), t.boot.clone());
        let item = Item::with_state(&t.seq.to_string(), json(t)?).ttl(Some(
            self.now_s()
                .saturating_add(TALLY_TTL_SECS.min(self.ttl.as_secs())),
        ));
        let mut current = self.store.get(Table::Epochs, &key).await?;
        for _ in 0..TALLY_ATTEMPTS {
            let stored = current
                .as_ref()
                .and_then(|i| i.state.as_deref())
                .and_then(|s| s.parse::<u64>().ok());
            if stored.is_some_and(|s| s >= t.seq) {
                return Ok(false);
            }
            let from = current.as_ref().and_then(|i| i.state.clone());
            match self
                .store
                .transition(Table::Epochs, &key, from.as_deref(), &item)
                .await?
            {
                Transition::Applied => return Ok(true),
                Transition::Refused(now) => current = now,
            }
        }
        Ok(false)
    }

    /// The newest tally of every boot that reported in the last day.
    pub async fn tallies(&self) -> Result<Vec<Tally>, PipelineError> {
        let items =
            sequencer_ports::query_all(self.store, Table::Epochs, &keys::tallies_pk(&self.market))
                .await?;
        items
            .into_iter()
            .map(|(_, i)| parse::<Tally>("tally", &i.data))
            .collect()
    }

    /// Adds the marks of messages of `epoch` that verify decided (one write), expiring at
    /// `expiry` (Unix seconds).
    pub async fn mark_decided(
        &self,
        epoch: u64,
        marks: &[String],
        expiry: Option<u64>,
    ) -> Result<(), PipelineError> {
        let Some(first) = marks.first() else {
            return Ok(());
        };
        let key = keys::decided_key(&self.market, epoch, keys::decided_shard(first));
        Ok(self
            .store
            .add_members(Table::Counters, &key, marks, expiry)
            .await?)
    }

    /// How many distinct messages of `epoch` verify has decided.
    pub async fn decided_count(&self, epoch: u64) -> Result<u64, PipelineError> {
        let keys: Vec<(Table, sequencer_ports::Key)> = (0..keys::DECIDED_SHARDS)
            .map(|s| (Table::Counters, keys::decided_key(&self.market, epoch, s)))
            .collect();
        Ok(self
            .store
            .batch_get(&keys)
            .await?
            .into_iter()
            .flatten()
            .map(|i| i.members.len() as u64)
            .sum())
    }
}
