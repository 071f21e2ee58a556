//! Issue 16 item 6: records live as long as the promises about them. One retention
//! (`RECORD_TTL_DAYS`) for every record of an epoch, all with one expiry; past it the proof API
//! answers `expired_epoch`, and an old signed submission replayed under a fresh id is rejected
//! `expired_epoch` at once: no chain call, no write, no dead letter. Time passes on a clock of
//! the test's own; the embedded store's sweeper then deletes what expired, a pass at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sequencer_core::{Address, B256};
use sequencer_embedded::poller::{drain, PollerConfig};
use sequencer_embedded::{Db, SqliteState};
use sequencer_handlers::metrics as m;
use sequencer_handlers::query::{Fate, Queries, QueryError};
use sequencer_handlers::records::{EpochState, RejectReason};
use sequencer_handlers::verify::{self, Verdict};
use sequencer_handlers::{anchor, finalize, tick, Clock, Pipeline, Ports};
use sequencer_ports::chain::*;
use sequencer_ports::{query_all, ChainPort, PortError, Queue, StateStore, Table};
use sequencer_testsupport::metrics::MetricsProbe;
use sequencer_testsupport::{block_hash_of, signed_message, Harness, MemChain};
use uuid::Uuid;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const DAY_S: u64 = 24 * 3600;
const RETENTION_DAYS: u64 = 2;

/// A clock that moves only when told.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        Box::pin(async {})
    }
}

/// The in-memory chain, counting every call made through the port.
struct Counting {
    chain: Arc<MemChain>,
    calls: AtomicU64,
}

impl Counting {
    fn c(&self) -> &MemChain {
        self.calls.fetch_add(1, Ordering::SeqCst);
        &self.chain
    }
}

#[async_trait]
impl ChainPort for Counting {
    async fn head(&self) -> Result<u64, PortError> {
        self.c().head().await
    }
    async fn block_hash(&self, n: u64) -> Result<Option<B256>, PortError> {
        self.c().block_hash(n).await
    }
    async fn block_number(&self, h: B256) -> Result<Option<u64>, PortError> {
        self.c().block_number(h).await
    }
    async fn releases_after(&self, m: Address, c: u64) -> Result<ReleasesPage, PortError> {
        self.c().releases_after(m, c).await
    }
    async fn slot_owner(&self, s: u64) -> Result<Address, PortError> {
        self.c().slot_owner(s).await
    }
    async fn is_flagged(&self, m: Address, w: Address) -> Result<bool, PortError> {
        self.c().is_flagged(m, w).await
    }
    async fn windows(&self, m: Address) -> Result<Windows, PortError> {
        self.c().windows(m).await
    }
    async fn epoch_windows(&self, m: Address, e: u64) -> Result<Option<Windows>, PortError> {
        self.c().epoch_windows(m, e).await
    }
    async fn anchored(&self, m: Address, e: u64) -> Result<EpochAnchors, PortError> {
        self.c().anchored(m, e).await
    }
    async fn submit_batch(
        &self,
        m: Address,
        e: u64,
        cid: &str,
        pids: &[String],
        cids: &[String],
        root: B256,
    ) -> Result<SubmitOutcome, PortError> {
        self.c().submit_batch(m, e, cid, pids, cids, root).await
    }
    async fn end_batch(&self, m: Address, e: u64) -> Result<EndOutcome, PortError> {
        self.c().end_batch(m, e).await
    }
    async fn submit_batches(&self, m: Address, e: u64, b: &[BatchCall]) -> BatchesOutcome {
        self.c().submit_batches(m, e, b).await
    }
    fn signer(&self) -> Option<Address> {
        self.chain.signer()
    }
    async fn market_info(&self, m: Address) -> Result<MarketInfo, PortError> {
        self.c().market_info(m).await
    }
    async fn is_epoch_manager(&self, m: Address, w: Address) -> Result<bool, PortError> {
        self.c().is_epoch_manager(m, w).await
    }
    async fn release_epoch(&self, m: Address, b: u64, e: u64) -> Result<ReleaseOutcome, PortError> {
        self.c().release_epoch(m, b, e).await
    }
    async fn skip_epochs(&self, m: Address, b: u64) -> Result<SentTx, PortError> {
        self.c().skip_epochs(m, b).await
    }
    async fn epoch_details(&self, m: Address, e: u64) -> Result<Option<EpochDetails>, PortError> {
        self.c().epoch_details(m, e).await
    }
    async fn epoch_release(&self, m: Address, e: u64) -> Result<Option<EpochRelease>, PortError> {
        self.c().epoch_release(m, e).await
    }
    async fn transaction_sender(&self, tx: B256) -> Result<Option<Address>, PortError> {
        self.c().transaction_sender(tx).await
    }
    async fn market_days(&self, m: Address) -> Result<MarketDays, PortError> {
        self.c().market_days(m).await
    }
    async fn update_rewards(
        &self,
        m: Address,
        day: u64,
        counts: &[SlotCount],
        eligible: u64,
    ) -> Result<RewardsOutcome, PortError> {
        self.c().update_rewards(m, day, counts, eligible).await
    }
}

struct Env {
    h: Harness,
    p: Pipeline,
    clock: Arc<ManualClock>,
    chain: Arc<Counting>,
    metrics: MetricsProbe,
    dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let chain = Arc::new(Counting {
        chain: h.chain.clone(),
        calls: AtomicU64::new(0),
    });
    let ports = Ports {
        chain: chain.clone(),
        ..h.p.ports.clone()
    };
    let mut config = h.p.config.clone();
    config.record_ttl = Duration::from_secs(RETENTION_DAYS * DAY_S);
    config
        .validate()
        .expect("two days exceed the retry horizon");
    let clock = Arc::new(ManualClock(AtomicI64::new(1_767_225_600_000)));
    let (metrics, recorder) = MetricsProbe::new(h.market);
    let p = Pipeline::new(ports, config)
        .with_clock(clock.clone())
        .with_recorder(recorder);
    Env {
        h,
        p,
        clock,
        chain,
        metrics,
        dir,
    }
}

impl Env {
    fn msg(&self, slot: u64, epoch: u64, project: &str, header: B256) -> String {
        signed_message(
            &self.h.domain,
            self.h.market,
            &Uuid::new_v4(),
            slot,
            slot,
            epoch,
            project,
            CID_A,
            header,
        )
        .0
    }

    fn advance(&self, by: Duration) {
        self.clock
            .0
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    fn calls(&self) -> u64 {
        self.chain.calls.load(Ordering::SeqCst)
    }

    async fn run_jobs(&self) {
        let cfg = PollerConfig {
            wait: Duration::ZERO,
            retry_delay: Duration::ZERO,
            ..PollerConfig::default()
        };
        drain(&self.h.finalize_q, &cfg, 10, |e| {
            finalize::handle(&self.p, e)
        })
        .await
        .unwrap();
        drain(&self.h.anchor_q, &cfg, 10, |e| anchor::handle(&self.p, e))
            .await
            .unwrap();
    }

    /// Releases an epoch, has two slots' submissions accepted, closes, finalizes and anchors
    /// it: the epoch and the accepted bodies.
    async fn anchored_epoch(&self) -> (u64, Vec<String>) {
        let (epoch, r) = self.h.chain.release();
        self.h.chain.mine(1);
        tick::step(&self.p).await.unwrap();
        let h = block_hash_of(r + 1);
        let mut bodies = Vec::new();
        for slot in 1..=2 {
            let body = self.msg(slot, epoch, "p1", h);
            assert_eq!(
                verify::verify_body(&self.p, &body).await.unwrap(),
                Verdict::Accepted
            );
            bodies.push(body);
        }
        self.h.chain.mine(7);
        assert_eq!(tick::step(&self.p).await.unwrap().closed, vec![epoch]);
        self.run_jobs().await;
        let e = self.p.records().epoch(epoch).await.unwrap().unwrap();
        assert_eq!(e.state, EpochState::Anchored);
        (epoch, bodies)
    }

    /// Every item of an epoch in every table, with its TTL (read through the port, keys as
    /// `handlers/src/records/keys.rs` documents them).
    async fn items_of(&self, epoch: u64) -> Vec<(Table, String, Option<u64>)> {
        let m = format!("{:#x}", self.h.market);
        let st: &dyn StateStore = self.p.ports.state.as_ref();
        let mut out = Vec::new();
        let sk = format!("{epoch:020}");
        for (table, pk) in [
            (Table::Epochs, m.clone()),
            (Table::Epochs, format!("{m}#seal")),
            (Table::Epochs, format!("{m}#rewards")),
            (Table::Batches, format!("{m}#{epoch}")),
        ] {
            for (k, item) in query_all(st, table, &pk).await.unwrap() {
                if table != Table::Epochs || k == sk {
                    out.push((table, format!("{pk}|{k}"), item.ttl));
                }
            }
        }
        for shard in 0..sequencer_handlers::records::SHARDS {
            for table in [Table::Submissions, Table::Receipts] {
                let pk = format!("{m}#{epoch}#{shard}");
                for (k, item) in query_all(st, table, &pk).await.unwrap() {
                    out.push((table, format!("{pk}|{k}"), item.ttl));
                }
            }
        }
        for slot in 1..=6 {
            let pk = format!("{m}#{epoch}#{slot}");
            for (k, item) in query_all(st, Table::Counters, &pk).await.unwrap() {
                out.push((Table::Counters, format!("{pk}|{k}"), item.ttl));
            }
        }
        out
    }
}

/// Every record of an anchored epoch carries the one expiry the epoch's release fixes: the
/// epoch, its seal and rewards, its claims, receipts, counters and batches, whenever written.
/// Past it the proof API answers `expired_epoch` (not `unknown_epoch`, not a partial answer),
/// and the epoch's submission replayed under a fresh id is `expired_epoch` at once: no chain
/// call, no receipt, no dead letter, counted. After the sweep the same holds from the oldest
/// epoch kept.
#[tokio::test]
async fn an_epochs_records_expire_together_and_an_old_replay_costs_nothing() {
    let e = env();
    let (epoch, bodies) = e.anchored_epoch().await;
    let rec = e.p.records().epoch(epoch).await.unwrap().unwrap().record;
    let expiry = rec.seen_at_ms as u64 / 1000 + RETENTION_DAYS * DAY_S;
    assert_eq!(e.p.records().expiry_of(&rec).0, expiry);

    let items = e.items_of(epoch).await;
    let tables: std::collections::BTreeSet<&str> = items.iter().map(|(t, _, _)| t.name()).collect();
    assert_eq!(
        tables,
        ["batches", "counters", "epochs", "receipts", "submissions"].into(),
        "every kind of record was written: {items:?}"
    );
    assert!(
        items.len() >= 9,
        "epoch, seal, rewards, batch, 2 claims, 2 receipts, counters: {items:?}"
    );
    for (t, key, ttl) in &items {
        assert_eq!(
            *ttl,
            Some(expiry),
            "{} {key} expires with its epoch",
            t.name()
        );
    }

    // The proof API proves an anchored submission as long as its records live.
    let api = Queries::default();
    let id = &bodies[0][..36];
    let fate = api.submission(&e.p, epoch, id).await.unwrap();
    assert_eq!(fate.view.fate, Fate::Included);

    // A later epoch, still kept when the first is gone.
    e.advance(Duration::from_secs(DAY_S));
    let (later, _) = e.anchored_epoch().await;

    // Past the retention (the store has not swept yet: DynamoDB takes up to days).
    e.advance(Duration::from_secs(DAY_S + 60));
    let fresh = Queries::default();
    assert!(
        matches!(
            fresh.submission(&e.p, epoch, id).await,
            Err(QueryError::ExpiredEpoch { epoch: x, days: RETENTION_DAYS }) if x == epoch
        ),
        "expired, not unknown_epoch nor a partial answer"
    );
    let replay = |body: &str| format!("{}{}", Uuid::new_v4(), &body[36..]);
    let dlq = e.h.submissions.dlq().unwrap();
    let before = e.calls();
    let v = verify::verify_body(&e.p, &replay(&bodies[0]))
        .await
        .unwrap();
    assert_eq!(v, Verdict::Rejected(RejectReason::ExpiredEpoch));
    assert_eq!(e.calls(), before, "no chain call");
    assert_eq!(dlq.depth().await.unwrap(), 0, "nothing dead-lettered");
    assert_eq!(
        e.metrics
            .counter(&m::VERIFY_REJECTED, [RejectReason::EXPIRED_EPOCH]),
        1
    );
    let receipts_before = e.items_of(epoch).await.len();
    assert_eq!(receipts_before, items.len(), "no receipt written");

    // The embedded sweeper deletes what expired, a bounded pass at a time, and nothing else.
    let sweeper = SqliteState::new(Db::open(&e.dir.path().join("seq.sqlite")).unwrap());
    let now_s = (e.clock.now_ms() / 1000) as u64;
    let mut passes = 0;
    while sweeper.sweep_expired(now_s, 3).unwrap() > 0 {
        passes += 1;
        assert!(passes < 100, "the sweep ends");
    }
    assert!(passes >= 3, "several bounded passes ({passes})");
    assert!(
        e.items_of(epoch).await.is_empty(),
        "every record of the epoch went together"
    );
    assert!(
        !e.items_of(later).await.is_empty(),
        "the later epoch is kept"
    );
    assert_eq!(e.p.records().oldest_epoch().await.unwrap(), Some(later));

    // Gone from the store: still expired, still free.
    assert!(matches!(
        fresh.submission(&e.p, epoch, id).await,
        Err(QueryError::ExpiredEpoch { .. })
    ));
    let before = e.calls();
    let v = verify::verify_body(&e.p, &replay(&bodies[1]))
        .await
        .unwrap();
    assert_eq!(v, Verdict::Rejected(RejectReason::ExpiredEpoch));
    assert_eq!(e.calls(), before, "no chain call once swept");
    assert_eq!(dlq.depth().await.unwrap(), 0);
    assert!(e.items_of(epoch).await.is_empty(), "nothing written for it");
}

/// With every epoch expired and swept (a market idle for the retention), an old replay is still
/// rejected at once: the tick's cursor marks the epochs that were closed.
#[tokio::test]
async fn an_old_replay_into_an_empty_store_is_rejected_by_the_ticks_low_mark() {
    let e = env();
    let (epoch, bodies) = e.anchored_epoch().await;
    e.advance(Duration::from_secs(RETENTION_DAYS * DAY_S + 60));
    let sweeper = SqliteState::new(Db::open(&e.dir.path().join("seq.sqlite")).unwrap());
    while sweeper
        .sweep_expired((e.clock.now_ms() / 1000) as u64, 1000)
        .unwrap()
        > 0
    {}
    assert_eq!(e.p.records().oldest_epoch().await.unwrap(), None);
    let before = e.calls();
    let body = format!("{}{}", Uuid::new_v4(), &bodies[0][36..]);
    assert_eq!(
        verify::verify_body(&e.p, &body).await.unwrap(),
        Verdict::Rejected(RejectReason::ExpiredEpoch)
    );
    assert_eq!(e.calls(), before, "no chain call");
    assert!(e.items_of(epoch).await.is_empty());
}
