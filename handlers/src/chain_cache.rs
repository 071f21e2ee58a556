//! A bounded cache in front of the chain port for what verify reads on every message (issue 16
//! item 4, docs/protocol.md §5 "What a hostile message costs"): slot owners, flags, the slot
//! count, and headers the chain does not know.
//!
//! [`CachedChain`] wraps any [`ChainPort`] and is built once per process (a Lambda's cold start,
//! the runner), so a warm Lambda keeps it between invocations. Every other call goes straight
//! through.
//!
//! - `slot_owner(slot)` and `is_flagged(market, who)`: cached for `CHAIN_CACHE_TTL_SECS`, at most
//!   `CHAIN_CACHE_ENTRIES` entries each (expired entries go first, then the oldest). Refreshed by
//!   expiry, and the owner also on demand: before verify refuses a signer that is not the cached
//!   owner it asks again through `slot_owner_fresh` with [`STRANGER_RECHECK`] (an answer older
//!   than that is read again), so a slot given to a new snapshotter is served within a second,
//!   while a flood of strangers costs at most one read per slot per second. (The chain port
//!   exposes no `SnapshotterAddressChanged` events, and the contract has no bulk view of owners.)
//!   A signer flagged on chain is refused within the TTL.
//! - `slot_count()` (`getTotalNodeCount()`): cached for the same TTL; a slot id above the cached
//!   count is checked again with `slot_count_fresh` ([`STRANGER_RECHECK`]), so a slot assigned
//!   just now is in range within a second, and out-of-range floods cost at most one read a
//!   second.
//! - `block_number(hash)` answered "unknown" (`None`): remembered for `UNKNOWN_HEADER_TTL_MS`
//!   (default 1 s, shorter than a block of any chain we serve, so a header that was only "not
//!   yet" is asked again on the next try), at most `CHAIN_CACHE_ENTRIES` hashes. Known headers
//!   are recorded in the state store by verify; they are not cached here.
//!
//! Errors are never cached. The clock is the pipeline's ([`Clock`]), so the simulation's virtual
//! time expires entries as wall time does in a deployment.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sequencer_core::{Address, B256};
use sequencer_ports::{
    BatchCall, BatchesOutcome, ChainPort, EndOutcome, EpochAnchors, EpochDetails, EpochRelease,
    MarketDays, MarketInfo, PortError, ReleaseOutcome, ReleasesPage, RewardsOutcome, SentTx,
    SlotCount, SubmitOutcome, Windows,
};

use crate::config::PipelineConfig;
use crate::pipeline::Clock;

/// How old a cached owner or slot count may be when it is about to refuse a message (module
/// docs): older answers are read again first.
pub const STRANGER_RECHECK: Duration = Duration::from_secs(1);

/// How long entries live and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainCacheConfig {
    /// Slot owners, flags and the slot count.
    pub ttl: Duration,
    /// Headers the chain did not know.
    pub unknown_header_ttl: Duration,
    /// Entries per map (owners, flags, unknown headers).
    pub entries: usize,
}

impl ChainCacheConfig {
    /// The pipeline's settings (`CHAIN_CACHE_TTL_SECS`, `UNKNOWN_HEADER_TTL_MS`,
    /// `CHAIN_CACHE_ENTRIES`).
    pub fn of(c: &PipelineConfig) -> Self {
        Self {
            ttl: c.chain_cache_ttl,
            unknown_header_ttl: c.unknown_header_ttl,
            entries: c.chain_cache_entries,
        }
    }
}

/// A map with a time to live and a size bound: inserting into a full map drops expired entries,
/// then the oldest.
#[derive(Debug)]
struct Bounded<K, V> {
    cap: usize,
    map: HashMap<K, (V, i64)>,
    /// Insertion order, with the time of each insertion (a key inserted again has a stale older
    /// entry here, skipped when it comes up).
    order: VecDeque<(K, i64)>,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, k: &K, now: i64, ttl_ms: i64) -> Option<V> {
        let (v, at) = self.map.get(k)?;
        (now.saturating_sub(*at) < ttl_ms).then(|| v.clone())
    }

    fn insert(&mut self, k: K, v: V, now: i64) {
        while self.map.len() >= self.cap && !self.map.contains_key(&k) {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(_, t)| *t == at) {
                self.map.remove(&old);
            }
        }
        self.map.insert(k.clone(), (v, now));
        self.order.push_back((k, now));
        // Stale order entries (keys inserted again) never outnumber the live ones by much.
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order
                .retain(|(k, at)| map.get(k).is_some_and(|(_, t)| t == at));
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

#[derive(Debug)]
struct Maps {
    owners: Bounded<u64, Address>,
    flags: Bounded<(Address, Address), bool>,
    unknown_headers: Bounded<B256, ()>,
    slot_count: Option<(Option<u64>, i64)>,
}

/// The chain port with verify's reads cached (module docs).
pub struct CachedChain {
    inner: Arc<dyn ChainPort>,
    cfg: ChainCacheConfig,
    clock: Arc<dyn Clock>,
    maps: Mutex<Maps>,
}

impl CachedChain {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ChainPort>, cfg: ChainCacheConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            maps: Mutex::new(Maps {
                owners: Bounded::new(cfg.entries),
                flags: Bounded::new(cfg.entries),
                unknown_headers: Bounded::new(cfg.entries),
                slot_count: None,
            }),
            inner,
            cfg,
            clock,
        }
    }

    /// Wraps `inner` as a port, with the pipeline's settings.
    pub fn wrap(
        inner: Arc<dyn ChainPort>,
        config: &PipelineConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<dyn ChainPort> {
        Arc::new(Self::new(inner, ChainCacheConfig::of(config), clock))
    }

    /// Entries held: (owners, flags, unknown headers).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let m = self.lock();
        (m.owners.len(), m.flags.len(), m.unknown_headers.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn ttl_ms(&self) -> i64 {
        ms(self.cfg.ttl)
    }

    /// The owner of `slot`, cached if the cached answer is younger than `max_age_ms`.
    async fn owner_within(&self, slot: u64, max_age_ms: i64) -> Result<Address, PortError> {
        if let Some(o) = self.lock().owners.get(&slot, self.now(), max_age_ms) {
            return Ok(o);
        }
        let o = self.inner.slot_owner(slot).await?;
        self.lock().owners.insert(slot, o, self.now());
        Ok(o)
    }

    /// The slot count, cached if the cached answer is younger than `max_age_ms`.
    async fn count_within(&self, max_age_ms: i64) -> Result<Option<u64>, PortError> {
        if let Some((n, at)) = self.lock().slot_count {
            if self.now().saturating_sub(at) < max_age_ms {
                return Ok(n);
            }
        }
        let n = self.inner.slot_count().await?;
        self.lock().slot_count = Some((n, self.now()));
        Ok(n)
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

#[async_trait]
impl ChainPort for CachedChain {
    async fn slot_owner(&self, slot: u64) -> Result<Address, PortError> {
        self.owner_within(slot, self.ttl_ms()).await
    }

    async fn slot_owner_fresh(&self, slot: u64, max_age: Duration) -> Result<Address, PortError> {
        self.owner_within(slot, ms(max_age).min(self.ttl_ms()))
            .await
    }

    async fn slot_count_fresh(&self, max_age: Duration) -> Result<Option<u64>, PortError> {
        self.count_within(ms(max_age).min(self.ttl_ms())).await
    }

    async fn is_flagged(&self, market: Address, who: Address) -> Result<bool, PortError> {
        let (now, ttl) = (self.now(), self.ttl_ms());
        if let Some(f) = self.lock().flags.get(&(market, who), now, ttl) {
            return Ok(f);
        }
        let f = self.inner.is_flagged(market, who).await?;
        self.lock().flags.insert((market, who), f, self.now());
        Ok(f)
    }

    async fn slot_count(&self) -> Result<Option<u64>, PortError> {
        self.count_within(self.ttl_ms()).await
    }

    async fn block_number(&self, hash: B256) -> Result<Option<u64>, PortError> {
        let ttl = self
            .cfg
            .unknown_header_ttl
            .as_millis()
            .min(i64::MAX as u128) as i64;
        if self
            .lock()
            .unknown_headers
            .get(&hash, self.now(), ttl)
            .is_some()
        {
            return Ok(None);
        }
        let n = self.inner.block_number(hash).await?;
        if n.is_none() && ttl > 0 {
            self.lock().unknown_headers.insert(hash, (), self.now());
        }
        Ok(n)
    }

    // ---- everything else goes straight through ----------------------------------------------

    async fn head(&self) -> Result<u64, PortError> {
        self.inner.head().await
    }
    async fn block_hash(&self, number: u64) -> Result<Option<B256>, PortError> {
        self.inner.block_hash(number).await
    }
    async fn releases_after(
        &self,
        market: Address,
        cursor: u64,
    ) -> Result<ReleasesPage, PortError> {
        self.inner.releases_after(market, cursor).await
    }
    async fn windows(&self, market: Address) -> Result<Windows, PortError> {
        self.inner.windows(market).await
    }
    async fn epoch_windows(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<Windows>, PortError> {
        self.inner.epoch_windows(market, epoch).await
    }
    async fn anchored(&self, market: Address, epoch: u64) -> Result<EpochAnchors, PortError> {
        self.inner.anchored(market, epoch).await
    }
    async fn submit_batch(
        &self,
        market: Address,
        epoch: u64,
        batch_cid: &str,
        project_ids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError> {
        self.inner
            .submit_batch(market, epoch, batch_cid, project_ids, cids, root)
            .await
    }
    async fn end_batch(&self, market: Address, epoch: u64) -> Result<EndOutcome, PortError> {
        self.inner.end_batch(market, epoch).await
    }
    async fn submit_batches(
        &self,
        market: Address,
        epoch: u64,
        batches: &[BatchCall],
    ) -> BatchesOutcome {
        self.inner.submit_batches(market, epoch, batches).await
    }
    fn signer(&self) -> Option<Address> {
        self.inner.signer()
    }
    async fn market_info(&self, market: Address) -> Result<MarketInfo, PortError> {
        self.inner.market_info(market).await
    }
    async fn is_epoch_manager(&self, market: Address, who: Address) -> Result<bool, PortError> {
        self.inner.is_epoch_manager(market, who).await
    }
    async fn release_epoch(
        &self,
        market: Address,
        begin: u64,
        end: u64,
    ) -> Result<ReleaseOutcome, PortError> {
        self.inner.release_epoch(market, begin, end).await
    }
    async fn skip_epochs(&self, market: Address, new_begin: u64) -> Result<SentTx, PortError> {
        self.inner.skip_epochs(market, new_begin).await
    }
    async fn epoch_details(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<EpochDetails>, PortError> {
        self.inner.epoch_details(market, epoch).await
    }
    async fn epoch_release(
        &self,
        market: Address,
        epoch: u64,
    ) -> Result<Option<EpochRelease>, PortError> {
        self.inner.epoch_release(market, epoch).await
    }
    async fn transaction_sender(&self, tx: B256) -> Result<Option<Address>, PortError> {
        self.inner.transaction_sender(tx).await
    }
    async fn market_days(&self, market: Address) -> Result<MarketDays, PortError> {
        self.inner.market_days(market).await
    }
    async fn update_rewards(
        &self,
        market: Address,
        day: u64,
        counts: &[SlotCount],
        eligible_nodes: u64,
    ) -> Result<RewardsOutcome, PortError> {
        self.inner
            .update_rewards(market, day, counts, eligible_nodes)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_drops_expired_then_oldest_and_stays_bounded() {
        let mut b: Bounded<u64, u64> = Bounded::new(3);
        for k in 0..1_000u64 {
            b.insert(k, k, k as i64);
            assert!(b.len() <= 3);
            assert!(b.order.len() <= 6);
        }
        assert_eq!(b.get(&999, 999, 10), Some(999));
        assert_eq!(b.get(&0, 999, 10), None, "evicted");
        // Re-inserting a key keeps one entry and refreshes its time.
        b.insert(999, 1, 2_000);
        assert_eq!(b.get(&999, 2_005, 10), Some(1));
        assert_eq!(b.get(&999, 2_010, 10), None, "expired after the TTL");
        assert!(b.len() <= 3);
    }
}
