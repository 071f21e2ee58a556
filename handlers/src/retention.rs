//! The retention policy where verify meets it: a submission for an epoch past the retention is
//! answered `expired_epoch` at once, before any chain call or write (docs/protocol.md §5,
//! "Retention").
//!
//! An epoch is past the retention when its record is there but expired (the store's TTL sweeper
//! deletes within days, so an expired record may still be read), or when it is not recorded and
//! is older than the oldest epoch the store still keeps (its records are gone; with none kept,
//! below the tick's low mark). The second costs one query of one item (and the cursor when no
//! epoch is kept), only for a batch naming an epoch that is not recorded.

use std::collections::{BTreeMap, BTreeSet};

use crate::pipeline::PipelineError;
use crate::records::{Expiry, Found, Records};

/// What verify learns of the epochs a batch names.
#[derive(Debug, Default)]
pub(crate) struct EpochAges {
    /// Epochs past the retention.
    pub expired: BTreeSet<u64>,
    /// The expiry of every recorded epoch: what its new records carry.
    pub expiries: BTreeMap<u64, Expiry>,
}

/// The ages of the epochs at `epoch_at` (epoch → index of its read in `found`). A failed read
/// decides nothing here (the message meets that failure later).
pub(crate) async fn epoch_ages(
    records: &Records<'_>,
    epoch_at: &BTreeMap<u64, usize>,
    found: &[Result<Found, PipelineError>],
) -> EpochAges {
    let mut ages = EpochAges::default();
    let mut unrecorded = Vec::new();
    for (&e, &ix) in epoch_at {
        match found.get(ix) {
            Some(Ok(Found::Epoch(Some(entry)))) => {
                ages.expiries.insert(e, records.expiry_of(&entry.record));
                if records.is_expired(&entry.record) {
                    ages.expired.insert(e);
                }
            }
            // Epoch 0 is the simulation submissions' (liveness), never recorded.
            Some(Ok(Found::Epoch(None))) if e > 0 => unrecorded.push(e),
            _ => {}
        }
    }
    if unrecorded.is_empty() {
        return ages;
    }
    // The oldest epoch kept; when every epoch expired (a market idle for the retention), the
    // tick's cursor: the epochs below its low mark were all closed, so one not recorded is gone.
    let floor = match records.oldest_epoch().await {
        Ok(Some(oldest)) => Ok(oldest),
        Ok(None) => records.tick_cursor().await.map(|c| c.low_epoch),
        Err(e) => Err(e),
    };
    match floor {
        Ok(floor) => ages
            .expired
            .extend(unrecorded.into_iter().filter(|e| *e < floor)),
        Err(e) => tracing::warn!(error = %e, "could not read the oldest epoch kept"),
    }
    ages
}
