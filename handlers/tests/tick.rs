//! The tick run under faults: a failed step does not end the run, a slow RPC node costs block
//! hashes but never a release or a close, and progress is saved part by part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sequencer_handlers::metrics as m;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::{tick, Clock, Pipeline};
use sequencer_ports::Queue;
use sequencer_testsupport::{Harness, MetricsProbe};

/// The pipeline's clock on tokio time: on a paused runtime, sleeps and slow calls advance it.
struct TokioClock {
    base: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        1_700_000_000_000 + self.base.elapsed().as_millis() as i64
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The harness's ports and settings on tokio time, with a metrics probe of its own.
fn on_tokio_time(h: &Harness) -> (Pipeline, MetricsProbe) {
    let (metrics, recorder) = MetricsProbe::new(h.market);
    let p = Pipeline::new(h.p.ports.clone(), h.p.config.clone())
        .with_clock(Arc::new(TokioClock {
            base: tokio::time::Instant::now(),
        }))
        .with_recorder(recorder);
    (p, metrics)
}

fn harness() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Harness::new(dir.path(), 2), dir)
}

/// `tick-error-ends-run`: the RPC node fails the head read of the first steps; the run counts
/// them, pauses, goes on, and opens and closes the epoch within the same invocation.
#[tokio::test(start_paused = true)]
async fn a_failed_step_is_counted_and_the_run_goes_on() {
    let (h, _dir) = harness();
    let (p, metrics) = on_tokio_time(&h);
    let (epoch, _) = h.chain.release();
    h.chain.mine(20); // past the window (5 blocks) and the grace
    h.chain.fail_next_heads(3);

    let report = tick::run(&p, Duration::from_secs(20), Duration::from_secs(1))
        .await
        .expect("not every step failed");
    assert_eq!(report.steps_failed, 3, "{report:?}");
    assert!(report.steps > 3, "{report:?}");
    assert!(report
        .last_error
        .as_deref()
        .unwrap()
        .contains("unavailable"));
    assert_eq!(report.opened, vec![epoch]);
    assert_eq!(report.closed, vec![epoch]);
    assert_eq!(metrics.counter(&m::TICK_STEP_FAILURES, ["head"]), 3);
    let e = h.p.records().epoch(epoch).await.unwrap().unwrap();
    assert_eq!(e.state, EpochState::Closed);
}

/// Every step of the run failed: the run (and so the Lambda invocation) reports failure.
#[tokio::test(start_paused = true)]
async fn a_run_whose_every_step_failed_is_an_error() {
    let (h, _dir) = harness();
    let (p, metrics) = on_tokio_time(&h);
    h.chain.fail_next_heads(u32::MAX);
    let started = tokio::time::Instant::now();
    let err = tick::run(&p, Duration::from_secs(20), Duration::from_secs(1))
        .await
        .expect_err("every step failed");
    assert!(err.to_string().contains("unavailable"), "{err}");
    // Paused, not spinning: pauses double from the poll to 5 s, the budget is kept.
    let failed = metrics.counter(&m::TICK_STEP_FAILURES, ["head"]);
    assert!((4..=8).contains(&failed), "{failed} steps in 20 s");
    assert!(started.elapsed() <= Duration::from_secs(20));
}

/// `tick-stall`: every block-hash call takes 10 s and 64 blocks are new. The step records the
/// release and closes the due epoch first, stops recording block hashes at its deadline, and
/// what it recorded is saved (the next step goes on from there).
#[tokio::test(start_paused = true)]
async fn a_slow_rpc_node_costs_block_hashes_never_a_release_or_a_close() {
    let (h, _dir) = harness();
    let (p, _metrics) = on_tokio_time(&h);
    let (first, _) = h.chain.release();
    h.chain.mine(20);
    tick::step(&p).await.unwrap(); // opens and closes `first`, records blocks to the head
    let (second, _) = h.chain.release();
    h.chain.mine(63);
    h.chain.set_block_hash_delay(Some(Duration::from_secs(10)));
    let calls = h.chain.block_hash_calls();
    let before = h.p.records().tick_cursor().await.unwrap().blocks_up_to;

    // A run of 25 s: the old step (64 sequential 10 s calls before the releases, cursor saved
    // last) would record nothing in it.
    let started = tokio::time::Instant::now();
    let report = tick::run(&p, Duration::from_secs(25), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(40), "bounded");
    assert_eq!(report.opened, vec![second]);
    assert_eq!(report.closed, vec![second]);
    assert_eq!(report.steps_failed, 0);
    let rounds = (h.chain.block_hash_calls() - calls) / tick::BLOCK_HASH_CONCURRENCY;
    assert!(
        rounds <= 3,
        "{rounds} rounds of block hashes in a 25 s budget"
    );
    let cursor = h.p.records().tick_cursor().await.unwrap();
    assert!(
        cursor.blocks_up_to > before && cursor.blocks_up_to < h.chain.head_now(),
        "what was recorded is saved: {before} → {} of {}",
        cursor.blocks_up_to,
        h.chain.head_now()
    );
    assert!(report.blocks_recorded >= tick::BLOCK_HASH_CONCURRENCY);
    assert_eq!(
        h.p.records().epoch(first).await.unwrap().unwrap().state,
        EpochState::Closed
    );
}

/// A step killed by the Lambda timeout while recording block hashes keeps the releases and
/// closes it did (the cursor was saved after each part).
#[tokio::test(start_paused = true)]
async fn a_step_killed_in_its_block_hashes_keeps_its_releases_and_closes() {
    let (h, _dir) = harness();
    let (p, _metrics) = on_tokio_time(&h);
    let (epoch, _) = h.chain.release();
    h.chain.mine(20);
    h.chain.set_block_hash_delay(Some(Duration::from_secs(30)));
    // Killed after 5 s: in the first round of block hashes.
    let killed = tokio::time::timeout(Duration::from_secs(5), tick::step(&p)).await;
    assert!(killed.is_err(), "the step was still fetching block hashes");
    let e = h.p.records().epoch(epoch).await.unwrap().unwrap();
    assert_eq!(
        e.state,
        EpochState::Closed,
        "closed before the block hashes"
    );
    let cursor = h.p.records().tick_cursor().await.unwrap();
    assert!(cursor.releases_after > 0, "the release cursor was saved");
    assert_eq!(h.finalize_q.depth().await.unwrap(), 1, "one finalize job");
}
