//! Verify's part of the close watermark (docs/protocol.md §4, "The close watermark"): it keeps
//! each ingress boot's newest tally, and marks every message it decided in its epoch's decided
//! set, so the tick can tell when verify has decided as many of an epoch's submissions as the
//! ingress took in.

use std::collections::BTreeMap;

use super::{port_err, Batch, Plan, Verdict};
use crate::pipeline::PipelineError;
use crate::records::{mark_of, RejectReason};

/// Reason of a tally for another market than the pipeline's.
pub const TALLY_OTHER_MARKET: &str = "tally_other_market";

impl Batch<'_> {
    /// Stores the batch's tallies (each boot's newest wins).
    pub(super) async fn save_tallies(&mut self) {
        let tallies = std::mem::take(&mut self.tallies);
        if tallies.is_empty() {
            return;
        }
        let market = format!("{:#x}", self.p.config.market);
        let records = self.p.records();
        for (i, t) in tallies {
            if !t.market.eq_ignore_ascii_case(&market) {
                self.plans[i] = Plan::Done(Ok(Verdict::Dropped(TALLY_OTHER_MARKET)));
                continue;
            }
            if let Err(e) = records.save_tally(&t).await {
                self.plans[i] = Plan::Done(Err(e));
            }
        }
    }

    /// Adds the mark of every message of a recorded epoch that this batch decided (accepted,
    /// rejected, dropped or found decided before) to the epoch's decided set: one write per
    /// epoch. A message of an epoch already closed (`late`) or past the retention is not
    /// counted: the tick needs the count only before the close. A mark that cannot be written
    /// turns its messages into failures, so the queue brings them back and they are marked then.
    pub(super) async fn mark_decided(&self, out: &mut [Result<Verdict, PipelineError>]) {
        let mut by_epoch: BTreeMap<u64, Vec<(usize, String)>> = BTreeMap::new();
        for (i, r) in out.iter().enumerate() {
            let Some(m) = self.msgs.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let decided = match r {
                // Past the horizon: never an epoch the tick will close soon; nothing written.
                Ok(Verdict::Dropped(super::EPOCH_OUT_OF_RANGE)) => false,
                Ok(Verdict::Rejected(RejectReason::Late | RejectReason::ExpiredEpoch)) => false,
                Ok(
                    Verdict::Accepted
                    | Verdict::Rejected(_)
                    | Verdict::Redelivered
                    | Verdict::Dropped(_),
                ) => true,
                // Given back after the rounds for a header the node has not served: counted as
                // decided, so a header no node will ever serve (a forged one) does not hold the
                // close until the queue's redelivery; an honest one the node serves later is
                // judged then (`late` if the epoch closed meanwhile: counted and alarmed).
                Err(PipelineError::NotReady(_)) => self.unserved_header.contains(&i),
                _ => false,
            };
            if m.epoch == 0 || !decided {
                continue;
            }
            let key = self
                .message_ids
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| m.digest.clone());
            by_epoch
                .entry(m.epoch)
                .or_default()
                .push((i, mark_of(&key)));
        }
        if by_epoch.is_empty() {
            return;
        }
        let records = self.p.records();
        for (epoch, marked) in by_epoch {
            let expiry = match self.expiries.get(&epoch) {
                Some(e) => e.0,
                None => match records.epoch(epoch).await {
                    Ok(Some(e)) => records.expiry_of(&e.record).0,
                    // Not recorded yet (within the horizon: e.g. `epoch_not_released`): the
                    // ingress counted it under that epoch, so its close must count it too.
                    Ok(None) => records.default_expiry(),
                    Err(e) => {
                        for (i, _) in &marked {
                            out[*i] = Err(port_err(&e));
                        }
                        continue;
                    }
                },
            };
            let marks: Vec<String> = marked.iter().map(|(_, m)| m.clone()).collect();
            if let Err(e) = records.mark_decided(epoch, &marks, Some(expiry)).await {
                tracing::warn!(epoch, error = %e, "decided marks not written; the messages come back");
                for (i, _) in &marked {
                    if out[*i].is_ok() {
                        out[*i] = Err(port_err(&e));
                    }
                }
            }
        }
    }
}
