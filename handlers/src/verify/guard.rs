//! What a hostile message may cost verify (issue 16 item 4; docs/protocol.md §5, "What a hostile
//! message costs"): the checks that decide a message before it costs a chain call or a write,
//! and the messages that are counted (`verify_dropped_total{reason}`) and never stored.
//!
//! - **Ranges first** ([`Batch::screen`]), before the batch's read, any chain call or any write: a
//!   slot id outside `1..=getTotalNodeCount()` (`slot_out_of_range`), an epoch more than
//!   `EPOCH_HORIZON` epochs past the newest one the store has recorded (`epoch_out_of_range`).
//!   The slot count comes from the chain port (cached per process by `chain_cache`); the newest
//!   epoch from the records, or the chain's last released epoch (`dataMarketInfo`) when the
//!   records do not cover the message (none yet, or a tick behind the chain), kept per process
//!   ([`Horizon`]) and read again at most once a second, only when a message names an epoch
//!   beyond it: a hostile far-future epoch costs at most one read and one chain call per second.
//! - **Strangers** ([`Batch::drop_strangers`]): a signer that is not the slot's snapshotter (or a
//!   slot without one) is dropped once the owners are known, before the epoch's chain reads,
//!   flags, headers or any write. No receipt: a redelivery is judged again, the same way.
//! - **Simulations** ([`Batch::simulation_units`]): at most `MAX_SIMULATIONS_PER_SLOT` receipts per
//!   slot, counted in the slot's counter of epoch 0 in the same transaction as the receipt (so
//!   concurrent verifiers keep the cap); the counter and the receipts expire together
//!   (`RECORD_TTL_DAYS`), after which a slot has room again. Further ones are dropped.
//!
//! Nothing here answers "not yet": a message is dropped only for what a later delivery would
//! find the same way (the slot count and the newest epoch only grow).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use sequencer_core::rules::{self, Rejection};
use sequencer_core::Address;
use sequencer_ports::PortError;

use super::{Batch, Plan, Role, Unit, Verdict};
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{Outcome, Write};

/// Reason of a slot id above the contract's slot count (or 0).
pub const SLOT_OUT_OF_RANGE: &str = "slot_out_of_range";
/// Reason of an epoch beyond the newest recorded one plus `EPOCH_HORIZON`.
pub const EPOCH_OUT_OF_RANGE: &str = "epoch_out_of_range";
/// Reason of a slot's simulation over `MAX_SIMULATIONS_PER_SLOT`.
pub const SIMULATION_CAP: &str = "simulation_cap";

/// How often the newest recorded epoch may be read again for messages beyond the horizon.
const HORIZON_REFRESH_MS: i64 = 1_000;

/// The newest epoch the store has recorded, as this process last read it (and when).
#[derive(Debug, Default)]
pub struct Horizon {
    newest: Mutex<Option<(Option<u64>, i64)>>,
}

impl Horizon {
    /// The newest recorded epoch, read again only when `furthest` lies beyond what the last read
    /// allows and that read is older than [`HORIZON_REFRESH_MS`].
    async fn newest(&self, p: &Pipeline, furthest: u64) -> Result<Option<u64>, PipelineError> {
        let now = p.now_ms();
        let cached = *self.newest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, at)) = cached {
            let covers = n.is_some_and(|n| furthest <= n.saturating_add(p.config.epoch_horizon));
            if covers || now.saturating_sub(at) < HORIZON_REFRESH_MS {
                return Ok(n);
            }
        }
        let mut n = p.records().newest_epoch().await?;
        if n.is_none_or(|n| furthest > n.saturating_add(p.config.epoch_horizon)) {
            // The tick has recorded nothing yet, or is behind the chain (a stalled tick must
            // not make verify drop the current epoch's honest submissions): the chain's last
            // released epoch, when it is newer. A failure leaves the batch to the queue's
            // redelivery, as any chain failure does.
            let info = p.ports.chain.market_info(p.config.market).await?;
            if info.current_epoch > 0 && n.is_none_or(|n| info.current_epoch > n) {
                n = Some(info.current_epoch);
            }
        }
        *self.newest.lock().unwrap_or_else(|e| e.into_inner()) = Some((n, now));
        Ok(n)
    }
}

impl Batch<'_> {
    fn dropped(&mut self, i: usize, reason: &'static str) {
        self.plans[i] = Plan::Done(Ok(Verdict::Dropped(reason)));
    }

    /// Drops every undecided message whose slot or epoch is out of range (module docs).
    pub(super) async fn screen(&mut self) {
        let open: Vec<(usize, u64, u64)> = (0..self.plans.len())
            .filter(|i| matches!(self.plans[*i], Plan::Open))
            .filter_map(|i| self.msgs[i].as_ref().map(|m| (i, m.slot, m.epoch)))
            .collect();
        if open.is_empty() {
            return;
        }
        let p = self.p;
        let mut slots = p.ports.chain.slot_count().await;
        if let Ok(Some(n)) = slots {
            // A slot above the cached count: the count asked again when older than
            // `STRANGER_RECHECK` (a slot assigned just now), before any message is refused.
            if open.iter().any(|(_, s, _)| *s > n) {
                slots = p
                    .ports
                    .chain
                    .slot_count_fresh(crate::chain_cache::STRANGER_RECHECK)
                    .await;
            }
        }
        let furthest = open.iter().map(|(_, _, e)| *e).max().unwrap_or(0);
        let newest = p.verify_horizon.newest(p, furthest).await;
        for (i, slot, epoch) in open {
            match &slots {
                Ok(Some(n)) if slot == 0 || slot > *n => {
                    self.dropped(i, SLOT_OUT_OF_RANGE);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    self.plans[i] = Plan::Done(Err(PipelineError::Port(e.clone())));
                    continue;
                }
            }
            // Epoch 0 is a simulation: no epoch of its own.
            match &newest {
                Ok(Some(n)) if epoch > n.saturating_add(p.config.epoch_horizon) => {
                    self.dropped(i, EPOCH_OUT_OF_RANGE)
                }
                Ok(_) => {}
                Err(e) => self.plans[i] = Plan::Done(Err(super::port_err(e))),
            }
        }
    }

    /// Drops the messages of `still` whose signer is not their slot's snapshotter (or whose slot
    /// has none), and takes them out of `still`.
    pub(super) fn drop_strangers(
        &mut self,
        still: &mut Vec<usize>,
        owners: &BTreeMap<u64, Result<Address, PortError>>,
        signer: &BTreeMap<usize, Address>,
    ) {
        still.retain(|&i| {
            let (Some(m), Some(&sig)) = (&self.msgs[i], signer.get(&i)) else {
                return true;
            };
            let Some(Ok(owner)) = owners.get(&m.slot) else {
                return true;
            };
            match rules::check_signer(m.slot, sig, Some(*owner), false) {
                Err(e @ (Rejection::UnknownSlot { .. } | Rejection::NotSlotSnapshotter { .. })) => {
                    self.plans[i] = Plan::Done(Ok(Verdict::Dropped(e.reason())));
                    false
                }
                _ => true,
            }
        });
    }

    /// The units of the batch's simulation receipts: per slot, each receipt with the slot's
    /// counter of epoch 0, within `MAX_SIMULATIONS_PER_SLOT`; the rest are dropped.
    pub(super) fn simulation_units(&mut self) -> Vec<Unit> {
        let cap = u64::from(self.p.config.max_simulations_per_slot);
        let mut by_slot: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for i in 0..self.plans.len() {
            if let (Plan::Record(Outcome::Simulation, _), Some(m)) = (&self.plans[i], &self.msgs[i])
            {
                by_slot.entry(m.slot).or_default().push(i);
            }
        }
        let mut units = Vec::new();
        for (slot, ix) in by_slot {
            let set: BTreeSet<String> = self.members.get(&(0, slot)).cloned().unwrap_or_default();
            let mut fresh = 0u64;
            let mut ok = Vec::new();
            for i in ix {
                let Some(m) = &self.msgs[i] else { continue };
                if set.contains(&m.id) {
                    ok.push(i);
                } else if (set.len() as u64).saturating_add(fresh) < cap {
                    fresh += 1;
                    ok.push(i);
                } else {
                    self.dropped(i, SIMULATION_CAP);
                }
            }
            // A unit stays well under a transaction's operations, whatever the cap.
            for part in ok.chunks(super::UNIT_ACCEPTS) {
                let mut writes = Vec::new();
                let mut ids = Vec::new();
                for &i in part {
                    let (Some(m), Some(receipt)) =
                        (&self.msgs[i], self.receipt_of(i, Outcome::Simulation))
                    else {
                        continue;
                    };
                    if !set.contains(&m.id) {
                        ids.push(m.id.clone());
                    }
                    writes.push((
                        Write::Receipt {
                            epoch: 0,
                            id: m.id.clone(),
                            receipt,
                        },
                        Role::Receipt(i),
                    ));
                }
                if !ids.is_empty() {
                    let n = ids.len() as u64;
                    writes.push((
                        Write::Count {
                            epoch: 0,
                            slot,
                            ids,
                            max_before: cap.saturating_sub(n),
                        },
                        Role::Count(0, slot),
                    ));
                }
                units.push(Unit {
                    epoch: None,
                    writes,
                });
            }
        }
        units
    }
}
