//! What a hostile message costs verify (issue 16 item 4, docs/protocol.md §5): floods of each
//! kind through a pipeline whose chain port is behind the per-process cache
//! (`sequencer_handlers::chain_cache`), counting the chain's calls (`MemChain::calls`) and the
//! state store's writes (`FaultyState::write_calls`) against the ceilings the docs state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sequencer_core::B256;
use sequencer_handlers::chain_cache::CachedChain;
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::RejectReason;
use sequencer_handlers::{tick, verify, Pipeline, SystemClock};
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;
use verify::Verdict;

const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const SLOTS: u64 = 6;
const FLOOD: usize = 200;

struct Env {
    h: Harness,
    _dir: tempfile::TempDir,
    /// Verify's pipeline: the harness's, with the chain behind the cache.
    p: Arc<Pipeline>,
    epoch: u64,
    header: B256,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::with(dir.path(), 2, SLOTS, None);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    assert_eq!(tick::step(&h.p).await.unwrap().opened, vec![epoch]);
    // The harness's recorder, so its probe sees verify's counters.
    let p = h.pipeline_with(|config, ports| {
        config.epoch_horizon =
            sequencer_handlers::PipelineConfig::new(config.market, config.protocol_state, 1)
                .epoch_horizon;
        ports.chain = CachedChain::wrap(h.chain.clone(), config, Arc::new(SystemClock));
    });
    Env {
        h,
        _dir: dir,
        p,
        epoch,
        header: block_hash_of(r + 1),
    }
}

impl Env {
    /// A body for `slot` signed by `signer_slot`'s key, for `epoch`, with `header`.
    fn body(&self, slot: u64, signer_slot: u64, epoch: u64, project: &str, header: B256) -> String {
        signed_message(
            &self.h.domain,
            self.h.market,
            &Uuid::new_v4(),
            slot,
            signer_slot,
            epoch,
            project,
            CID_A,
            header,
        )
        .0
    }

    /// Verifies `bodies` in SQS-sized batches of 10; the chain calls and state writes it cost.
    async fn flood(&self, bodies: &[String]) -> (Vec<Verdict>, u64, u64) {
        let (calls, writes) = (self.h.chain.total_calls(), self.h.state.write_calls());
        let mut verdicts = Vec::new();
        for batch in bodies.chunks(10) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            for r in verify::verify_batch(&self.p, &refs).await {
                verdicts.push(r.unwrap());
            }
        }
        (
            verdicts,
            self.h.chain.total_calls() - calls,
            self.h.state.write_calls() - writes,
        )
    }

    /// Warms the process's caches as steady traffic does: one honest submission per slot.
    async fn warm(&self) {
        let bodies: Vec<String> = (1..=SLOTS)
            .map(|s| self.body(s, s, self.epoch, &format!("warm{s}"), self.header))
            .collect();
        let (v, _, _) = self.flood(&bodies).await;
        assert!(v.iter().all(|v| *v == Verdict::Accepted), "{v:?}");
    }

    async fn receipts(&self, epoch: u64) -> usize {
        self.p
            .records()
            .tally_receipts(epoch)
            .await
            .map(|c| (c.accepted + c.simulations + c.rejected_total()) as usize)
            .unwrap()
    }
}

#[tokio::test]
async fn random_keys_over_random_slots_cost_no_write_and_no_chain_call() {
    let e = env().await;
    e.warm().await;
    let before = e.receipts(e.epoch).await;
    // A valid signature by a key that owns nothing, over slots far outside the market's range.
    let bodies: Vec<String> = (0..FLOOD as u64)
        .map(|k| e.body(1_000 + k * 7_919, 500 + k, e.epoch, "p", e.header))
        .collect();
    let started = std::time::Instant::now();
    let (v, calls, writes) = e.flood(&bodies).await;
    assert!(
        v.iter()
            .all(|v| *v == Verdict::Dropped(verify::SLOT_OUT_OF_RANGE)),
        "{v:?}"
    );
    // At most one `getTotalNodeCount` a second (is the slot assigned just now?), nothing else.
    // No write of their own: only each batch's one decided mark for the close watermark.
    assert!(writes <= (FLOOD as u64).div_ceil(10), "{writes} writes");
    assert!(
        calls <= 1 + started.elapsed().as_secs(),
        "{:?}",
        e.h.chain.calls()
    );
    assert_eq!(e.receipts(e.epoch).await, before, "nothing stored");
    assert_eq!(
        e.h.metrics
            .counter(&m::VERIFY_DROPPED, [verify::SLOT_OUT_OF_RANGE]),
        FLOOD as u64
    );
}

#[tokio::test]
async fn strangers_over_real_slots_are_counted_not_stored() {
    let e = env().await;
    e.warm().await;
    let before = e.receipts(e.epoch).await;
    // Keys that own nothing over the market's real slots: the owners are cached already.
    let bodies: Vec<String> = (0..FLOOD as u64)
        .map(|k| e.body(k % SLOTS + 1, 500 + k, e.epoch, "p", e.header))
        .collect();
    let started = std::time::Instant::now();
    let (v, calls, writes) = e.flood(&bodies).await;
    assert!(
        v.iter()
            .all(|v| *v == Verdict::Dropped("not_slot_snapshotter")),
        "{v:?}"
    );
    // At most one `slotSnapshotterMapping` per slot a second (was the slot given to this
    // signer just now?), nothing else.
    // No write of their own: only each batch's one decided mark for the close watermark.
    assert!(writes <= (FLOOD as u64).div_ceil(10), "{writes} writes");
    assert!(
        calls <= SLOTS * (1 + started.elapsed().as_secs()),
        "{:?}",
        e.h.chain.calls()
    );
    assert_eq!(e.receipts(e.epoch).await, before);
    // Delivered again: judged the same way, still nothing stored.
    let (again, _, writes) = e.flood(&bodies[..10]).await;
    assert!(again
        .iter()
        .all(|v| *v == Verdict::Dropped("not_slot_snapshotter")));
    assert!(writes <= 1, "at most the batch's decided mark: {writes}");
}

#[tokio::test]
async fn far_future_epochs_cost_nothing_and_leave_no_record() {
    let e = env().await;
    e.warm().await;
    let far = |k: u64| e.epoch + 1_000 + k;
    let bodies: Vec<String> = (0..FLOOD as u64)
        .map(|k| e.body(k % SLOTS + 1, k % SLOTS + 1, far(k), "p", e.header))
        .collect();
    let started = std::time::Instant::now();
    let before = e.h.chain.calls();
    let (v, calls, writes) = e.flood(&bodies).await;
    assert!(
        v.iter()
            .all(|v| *v == Verdict::Dropped(verify::EPOCH_OUT_OF_RANGE)),
        "{v:?}"
    );
    // No write; the only chain call is the market's last released epoch (is the tick behind
    // the chain?), at most once a second however many messages ask.
    assert_eq!(writes, 0);
    let budget = 1 + started.elapsed().as_secs();
    let chain: Vec<_> =
        e.h.chain
            .calls()
            .into_iter()
            .filter(|(k, n)| before.get(k) != Some(n))
            .collect();
    assert!(
        calls <= budget && chain.iter().all(|(k, _)| *k == "market_info"),
        "{calls} calls in {budget} s: {chain:?}"
    );
    for k in [0u64, 57, 199] {
        assert_eq!(e.receipts(far(k)).await, 0);
        assert!(e.p.records().epoch(far(k)).await.unwrap().is_none());
    }
    // Within the horizon the message is judged as before (here: not released on chain).
    let near = e.body(1, 1, e.epoch + 2, "near", e.header);
    let (v, _, _) = e.flood(&[near]).await;
    assert!(matches!(v[0], Verdict::Rejected(_)), "{v:?}");
}

/// A snapshotter given a slot just now (a new slot above the cached count, or a slot moved to
/// another key) is served within a second, not after the cache's lifetime: the cached answer
/// that would refuse it is read again once it is older than `STRANGER_RECHECK`.
#[tokio::test]
async fn a_slot_given_just_now_is_served_within_a_second() {
    let e = env().await;
    e.warm().await;
    let key = |k: u64| {
        sequencer_core::eip712::address_of(
            &sequencer_core::devkeys::sim_snapshotter_key(k).unwrap(),
        )
    };
    // A new slot, and slot 2 moved to another key.
    e.h.chain.assign_slot(SLOTS + 1, key(SLOTS + 1));
    e.h.chain.assign_slot(2, key(50));
    tokio::time::sleep(
        sequencer_handlers::chain_cache::STRANGER_RECHECK + std::time::Duration::from_millis(100),
    )
    .await;
    let bodies = vec![
        e.body(SLOTS + 1, SLOTS + 1, e.epoch, "joined", e.header),
        e.body(2, 50, e.epoch, "moved", e.header),
        e.body(2, 2, e.epoch, "old-key", e.header),
    ];
    let (v, _, _) = e.flood(&bodies).await;
    assert_eq!(
        v,
        vec![
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::Dropped("not_slot_snapshotter")
        ]
    );
}

/// The horizon counts from the chain's last release too: a tick that stopped recording releases
/// (a stalled or failing tick) never makes verify drop the current epoch's honest submissions.
#[tokio::test]
async fn a_tick_behind_the_chain_does_not_move_the_horizon_back() {
    let e = env().await;
    e.warm().await;
    // Twelve releases the tick never records: the newest is past the horizon of the records.
    let mut last = (e.epoch, 0);
    for _ in 0..12 {
        last = e.h.chain.release();
    }
    e.h.chain.mine(1);
    // Releases are seconds apart; the process reads the horizon again at most once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (epoch, release) = last;
    assert!(epoch > e.epoch + e.p.config.epoch_horizon);
    let honest = e.body(1, 1, epoch, "current", block_hash_of(release + 1));
    let (v, _, _) = e.flood(&[honest]).await;
    assert_eq!(v, vec![Verdict::Accepted], "judged on its merits");
    // Far past the chain's last release: still counted, not stored.
    let far = e.body(2, 2, epoch + 1_000, "far", block_hash_of(release + 1));
    let (v, _, writes) = e.flood(&[far]).await;
    assert_eq!(v, vec![Verdict::Dropped(verify::EPOCH_OUT_OF_RANGE)]);
    assert_eq!(writes, 0);
}

#[tokio::test]
async fn random_headers_cost_one_lookup_and_one_receipt_each() {
    let e = env().await;
    e.warm().await;
    // The node's head past the window (not yet closed: inside the close grace). While the head
    // is inside the window an unknown header is "not yet" (the node may lag the sender's), judged
    // again in the invocation's rounds and once more after a redelivery (handlers/tests/arrival.rs);
    // past it, it is unknown for good, which is what a flood costs from then on.
    let window_end =
        e.p.records()
            .epoch(e.epoch)
            .await
            .unwrap()
            .unwrap()
            .record
            .window_end;
    let head = e.h.chain.mine(0);
    e.h.chain.mine(window_end + 1 - head);
    let bodies: Vec<String> = (0..FLOOD as u64)
        .map(|k| {
            let junk = B256::from(uuid_bytes());
            e.body(
                k % SLOTS + 1,
                k % SLOTS + 1,
                e.epoch,
                &format!("h{k}"),
                junk,
            )
        })
        .collect();
    let calls_before = e.h.chain.calls();
    let (v, calls, writes) = e.flood(&bodies).await;
    assert!(
        v.iter()
            .all(|v| *v == Verdict::Rejected(RejectReason::from_code("unknown_header"))),
        "{v:?}"
    );
    let after = e.h.chain.calls();
    let lookups = after.get("block_number").copied().unwrap_or(0)
        - calls_before.get("block_number").copied().unwrap_or(0);
    assert_eq!(
        lookups, FLOOD as u64,
        "one getBlockByHash per unknown header"
    );
    // And the node's head, read once per batch an unknown header is in (is the window over?).
    let heads =
        after.get("head").copied().unwrap_or(0) - calls_before.get("head").copied().unwrap_or(0);
    assert!(heads <= FLOOD.div_ceil(10) as u64, "{heads} head reads");
    assert_eq!(calls, lookups + heads, "nothing else: {after:?}");
    assert!(
        writes <= FLOOD as u64,
        "at most one write (the receipt) each: {writes}"
    );

    // The same unknown header again within UNKNOWN_HEADER_TTL_MS: no second lookup.
    let junk = B256::repeat_byte(0x77);
    let twice: Vec<String> = (0..2u64)
        .map(|k| e.body(k + 1, k + 1, e.epoch, &format!("again{k}"), junk))
        .collect();
    let lookups = || e.h.chain.calls().get("block_number").copied().unwrap_or(0);
    let before = lookups();
    e.flood(&twice[..1]).await;
    assert_eq!(lookups() - before, 1);
    e.flood(&twice[1..]).await;
    assert_eq!(lookups() - before, 1, "the unknown header is remembered");
}

#[tokio::test]
async fn a_slots_simulations_are_capped() {
    let e = env().await;
    e.warm().await;
    let cap = e.p.config.max_simulations_per_slot as usize;
    let bodies: Vec<String> = (0..40u64)
        .map(|k| e.body(k % 2 + 1, k % 2 + 1, 0, &format!("sim{k}"), e.header))
        .collect();
    let (v, calls, _) = e.flood(&bodies).await;
    let stored = v.iter().filter(|v| **v == Verdict::Simulation).count();
    let dropped = v
        .iter()
        .filter(|v| **v == Verdict::Dropped(verify::SIMULATION_CAP))
        .count();
    assert_eq!((stored, dropped), (2 * cap, 40 - 2 * cap), "{v:?}");
    assert_eq!(e.receipts(0).await, 2 * cap);
    assert_eq!(calls, 0, "{:?}", e.h.chain.calls());
    // A stored simulation delivered again is a redelivery, not a drop.
    let first = bodies[0].as_str();
    assert_eq!(
        verify::verify_body(&e.p, first).await.unwrap(),
        Verdict::Redelivered
    );
}

fn uuid_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    b
}
