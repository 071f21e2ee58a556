//! `tick` (EventBridge, every minute): follows the protocol chain inside one invocation so that
//! epochs shorter than a minute are served.
//!
//! Each step, in the order of what matters: read the head; record every confirmed
//! `EpochReleased` of the market as an `OPEN` epoch, with the window it was released under
//! (`epochWindows(market, epoch)`; the market's current window only on a contract that does not
//! keep it, counted `tick_epoch_windows_fallback_total`); close every open epoch whose window has
//! ended (`head > release + window + grace`) and whose close watermark is met ([`Watermark`]:
//! every ingress boot alive at the window's end has reported a tally since, and verify has
//! decided as many of the epoch's submissions as the boots took in; or no boot reports
//! tallies; or `WATERMARK_MAX_WAIT_MS` passed) through the conditional transition
//! `OPEN → CLOSING`, send its one finalize job, then `CLOSING → CLOSED`; last, with the time
//! left, record the hashes of new blocks (a cache for verify's window checks: verify resolves a
//! header the tick has not recorded against the chain itself). An epoch found in `CLOSING` (a
//! crash between the two) gets its job sent again; finalize is idempotent, so the worst case of a
//! crash is one redundant job, never a lost one.
//!
//! **Progress survives a timeout.** The cursor is saved after each part that moved it (releases,
//! closes, each round of block hashes), so an invocation killed at its timeout keeps what it
//! did. Block hashes are fetched [`BLOCK_HASH_CONCURRENCY`] at a time, at most
//! [`MAX_BLOCKS_PER_STEP`] per step, and no new round starts past the step's deadline: a slow
//! RPC node costs block hashes, never a release or a close.
//!
//! **A failed step does not end the run.** [`run`] counts it (`tick_step_failures_total`, by the
//! part that failed), logs it, pauses ([`failure_pause`]) and goes on until its budget is spent;
//! its report says how many steps failed. Only a run whose every step failed is an error (the
//! Lambda then reports the invocation failed).

use std::time::Duration;

use futures::future::join_all;
use sequencer_ports::Windows;
use serde::Serialize;

use crate::jobs::EpochJob;
use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{EpochMove, EpochRecord, EpochState, TickCursor};

/// Most block hashes recorded per step (bounds RPC calls after a long pause; verify resolves
/// older headers against the chain itself).
pub const MAX_BLOCKS_PER_STEP: u64 = 64;

/// Block hashes fetched at once (one round); the cursor is saved after each round.
pub const BLOCK_HASH_CONCURRENCY: u64 = 8;

/// Longest pause after failed steps ([`failure_pause`]).
pub const MAX_FAILURE_PAUSE: Duration = Duration::from_secs(5);

/// What one step (or a run of steps) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Chain head.
    pub head: u64,
    /// Epochs newly opened.
    pub opened: Vec<u64>,
    /// Epochs closed (finalize job sent).
    pub closed: Vec<u64>,
    /// Block hashes recorded.
    pub blocks_recorded: u64,
    /// Steps run (a run's report; 1 for one step).
    pub steps: u64,
    /// Steps that failed (a run goes on after one).
    pub steps_failed: u64,
    /// The last failure, when a step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The part of a step that failed (the `part` label of `tick_step_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Reading the cursor or the head.
    Head,
    /// Recording releases.
    Releases,
    /// Closing epochs.
    Close,
    /// Recording block hashes.
    Blocks,
}

impl Part {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Part::Head => "head",
            Part::Releases => "releases",
            Part::Close => "close",
            Part::Blocks => "blocks",
        }
    }
}

/// A failed step: where, and why.
#[derive(Debug)]
pub struct StepFailure {
    /// The part that failed.
    pub part: Part,
    /// The error.
    pub error: PipelineError,
    /// What the step did before it failed (saved already).
    pub done: TickReport,
}

/// The pause after the `n`th failed step in a row (1-based): `poll`, doubling, at most
/// [`MAX_FAILURE_PAUSE`] (and at least 100 ms, so a zero poll does not spin on a failing port).
pub fn failure_pause(poll: Duration, n: u32) -> Duration {
    let base = poll.max(Duration::from_millis(100));
    base.saturating_mul(1u32 << n.saturating_sub(1).min(6))
        .min(MAX_FAILURE_PAUSE.max(base))
}

/// Runs steps every `poll` for `budget` (the invocation's time left less a margin), on the
/// pipeline's clock; each step gets the run's deadline. A failed step is counted, logged and
/// followed by a short pause ([`failure_pause`]), and the run goes on. Returns the merged report
/// (with `steps_failed`), or the last error when every step failed.
pub async fn run(
    p: &Pipeline,
    budget: Duration,
    poll: Duration,
) -> Result<TickReport, PipelineError> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let deadline = p.now_ms().saturating_add(ms(budget));
    let mut total = TickReport::default();
    let mut in_a_row = 0u32;
    let mut last_error = None;
    loop {
        total.steps += 1;
        let pause = match step_until(p, deadline).await {
            Ok(r) => {
                merge(&mut total, r);
                in_a_row = 0;
                poll
            }
            Err(f) => {
                merge(&mut total, f.done);
                total.steps_failed += 1;
                in_a_row += 1;
                p.metrics.inc(&m::TICK_STEP_FAILURES, [f.part.label()]);
                let pause = failure_pause(poll, in_a_row);
                tracing::warn!(
                    part = f.part.label(),
                    error = %f.error,
                    retryable = f.error.is_retryable(),
                    failed = total.steps_failed,
                    steps = total.steps,
                    pause_ms = pause.as_millis() as u64,
                    "tick step failed; the run goes on"
                );
                total.last_error = Some(f.error.to_string());
                last_error = Some(f.error);
                pause
            }
        };
        if p.now_ms().saturating_add(ms(pause)) >= deadline {
            break;
        }
        p.clock.sleep(pause).await;
    }
    match last_error {
        Some(e) if total.steps_failed == total.steps => Err(e),
        _ => Ok(total),
    }
}

/// The submission window (blocks) `epoch` was released under: its own windows on chain, else
/// the market's current ones (read once per caller through `market_windows`; counted
/// `tick_epoch_windows_fallback_total`). The tick and verify (for a release the tick has not
/// recorded yet) record an epoch with the same window this way.
pub(crate) async fn release_window(
    p: &Pipeline,
    epoch: u64,
    market_windows: &mut Option<Windows>,
) -> Result<u64, PipelineError> {
    let market = p.config.market;
    if let Some(w) = p.ports.chain.epoch_windows(market, epoch).await? {
        return Ok(w.snapshot_blocks);
    }
    p.metrics.inc(&m::TICK_EPOCH_WINDOWS_FALLBACK, []);
    if let Some(w) = market_windows {
        return Ok(w.snapshot_blocks);
    }
    let w = p.ports.chain.windows(market).await?;
    tracing::warn!(
        epoch,
        snapshot_window = w.snapshot_blocks,
        "no windows stored with the epoch on chain; using the market's current ones"
    );
    *market_windows = Some(w);
    Ok(w.snapshot_blocks)
}

fn merge(total: &mut TickReport, r: TickReport) {
    if r.head > 0 {
        total.head = r.head;
    }
    total.opened.extend(r.opened);
    total.closed.extend(r.closed);
    total.blocks_recorded += r.blocks_recorded;
}

/// One step with no deadline (every new block hash up to [`MAX_BLOCKS_PER_STEP`]).
pub async fn step(p: &Pipeline) -> Result<TickReport, PipelineError> {
    step_until(p, i64::MAX).await.map_err(|f| f.error)
}

/// One step that starts no round of block hashes after its first at or after `deadline_ms`
/// (the pipeline's clock); releases and closes are done first, and the cursor is saved after
/// each part.
pub async fn step_until(p: &Pipeline, deadline_ms: i64) -> Result<TickReport, StepFailure> {
    let mut report = TickReport {
        steps: 1,
        ..TickReport::default()
    };
    let records = p.records();
    macro_rules! at {
        ($part:expr, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(error) => {
                    return Err(StepFailure {
                        part: $part,
                        error: error.into(),
                        done: report,
                    })
                }
            }
        };
    }
    let mut cursor = at!(Part::Head, records.tick_cursor().await);
    report.head = at!(Part::Head, p.ports.chain.head().await);

    let before = cursor.clone();
    at!(Part::Releases, releases(p, &mut cursor, &mut report).await);
    if cursor != before {
        at!(Part::Releases, records.save_tick_cursor(&cursor).await);
    }

    let before = cursor.clone();
    at!(Part::Close, close_due(p, &mut cursor, &mut report).await);
    if cursor != before {
        at!(Part::Close, records.save_tick_cursor(&cursor).await);
    }

    let saved = at!(
        Part::Blocks,
        blocks(p, &mut cursor, &mut report, deadline_ms).await
    );
    // Saved every step at least once: `saved_at_ms` is how fresh the tick is.
    if !saved {
        at!(Part::Blocks, records.save_tick_cursor(&cursor).await);
    }
    Ok(report)
}

/// Records every confirmed release after the cursor as an `OPEN` epoch.
async fn releases(
    p: &Pipeline,
    cursor: &mut TickCursor,
    report: &mut TickReport,
) -> Result<(), PipelineError> {
    let market = p.config.market;
    let records = p.records();
    let chain = &p.ports.chain;
    let page = chain.releases_after(market, cursor.releases_after).await?;
    // Read only when a release has no windows of its own on chain.
    let mut market_windows = None;
    for r in &page.releases {
        let snapshot = release_window(p, r.epoch_id, &mut market_windows).await?;
        let rec = EpochRecord {
            epoch: r.epoch_id,
            begin: r.begin,
            end: r.end,
            release_block: r.block_number,
            window_end: r.block_number.saturating_add(snapshot),
            seen_at_ms: p.now_ms(),
            ..EpochRecord::default()
        };
        if records.open_epoch(&rec).await? {
            tracing::info!(
                epoch = r.epoch_id,
                release_block = r.block_number,
                window_end = rec.window_end,
                "epoch opened"
            );
            p.metrics.inc(&m::TICK_EPOCHS_OPENED, []);
            report.opened.push(r.epoch_id);
        }
        if cursor.low_epoch == 0 {
            cursor.low_epoch = r.epoch_id;
        }
    }
    cursor.releases_after = page.next_cursor;
    Ok(())
}

/// Closes every open epoch whose window (and grace) has passed; re-sends the job of one found
/// `CLOSING`.
async fn close_due(
    p: &Pipeline,
    cursor: &mut TickCursor,
    report: &mut TickReport,
) -> Result<(), PipelineError> {
    let market = p.config.market;
    let records = p.records();
    let mut first_open: Option<u64> = None;
    let mut last_seen: Option<u64> = None;
    let mut watermark = Watermark::default();
    for e in records.epochs_from(cursor.low_epoch).await? {
        let epoch = e.record.epoch;
        let mut rec = e.record;
        if e.state == EpochState::Open && report.head > rec.window_end {
            // When the tick first saw the window over: the ingress boots' tallies must be
            // younger than this to hold everything they took in on time.
            cursor
                .window_passed
                .entry(epoch)
                .or_insert_with(|| p.now_ms());
        }
        let closing = match e.state {
            EpochState::Open
                if report.head > rec.window_end.saturating_add(p.config.close_grace_blocks)
                    && watermark
                        .due(p, epoch, cursor.window_passed.get(&epoch).copied())
                        .await? =>
            {
                rec.closed_at_ms = Some(p.now_ms());
                rec.closed_at_block = Some(report.head);
                records
                    .move_epoch(EpochState::Open, EpochState::Closing, &rec)
                    .await?
                    == EpochMove::Moved
            }
            EpochState::Closing => true,
            _ => false,
        };
        if closing {
            cursor.window_passed.remove(&epoch);
            let job = EpochJob { market, epoch };
            p.ports.finalize_queue.send(&[job.message()?]).await?;
            records
                .move_epoch(EpochState::Closing, EpochState::Closed, &rec)
                .await?;
            tracing::info!(epoch, head = report.head, "epoch closed; finalize job sent");
            p.metrics.inc(&m::TICK_EPOCHS_CLOSED, []);
            report.closed.push(epoch);
        } else if e.state == EpochState::Open && first_open.is_none() {
            first_open = Some(epoch);
        }
        last_seen = Some(epoch);
    }
    // Next time, look from the oldest epoch still open.
    if let Some(low) = first_open.or(last_seen.map(|e| e + 1)) {
        cursor.low_epoch = low;
    }
    Ok(())
}

/// How long after its last tally an ingress boot still counts as alive (three of its
/// heartbeats at the default `TALLY_HEARTBEAT_MS` of 5 s).
pub const BOOT_LIVE_MS: i64 = 15_000;

/// How much younger than the tick's first sight of the window's end a live boot's tally must be
/// to hold every submission it took in on time (clock skew between hosts and the boot's tally
/// interval, 1 s by default).
pub const TALLY_SLACK_MS: i64 = 2_000;

/// Why an epoch's close was allowed (`tick_close_watermark_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBy {
    /// No ingress boot reports tallies: the close waits only for the grace blocks.
    NoTallies,
    /// Every live boot reported after the window and verify decided all they took in.
    Met,
    /// `WATERMARK_MAX_WAIT_MS` passed since the window ended without the watermark.
    Timeout,
}

impl CloseBy {
    fn label(self) -> &'static str {
        match self {
            CloseBy::NoTallies => "no_tallies",
            CloseBy::Met => "met",
            CloseBy::Timeout => "timeout",
        }
    }
}

/// The close watermark (docs/protocol.md §4): what one step read of the ingress tallies.
#[derive(Default)]
struct Watermark {
    tallies: Option<Vec<sequencer_core::tally::Tally>>,
}

impl Watermark {
    /// Whether epoch `epoch`, whose window and grace have passed (first seen over at
    /// `passed_at`), may close now; counted by why.
    async fn due(
        &mut self,
        p: &Pipeline,
        epoch: u64,
        passed_at: Option<i64>,
    ) -> Result<bool, PipelineError> {
        let by = self.check(p, epoch, passed_at).await?;
        if let Some(by) = by {
            p.metrics.inc(&m::TICK_CLOSE_WATERMARK, [by.label()]);
            if by == CloseBy::Timeout {
                tracing::warn!(
                    epoch,
                    "closing without the watermark: WATERMARK_MAX_WAIT_MS passed since the window ended"
                );
            }
        }
        Ok(by.is_some())
    }

    async fn check(
        &mut self,
        p: &Pipeline,
        epoch: u64,
        passed_at: Option<i64>,
    ) -> Result<Option<CloseBy>, PipelineError> {
        if self.tallies.is_none() {
            self.tallies = Some(p.records().tallies().await?);
        }
        let tallies = self.tallies.as_deref().unwrap_or_default();
        if tallies.is_empty() {
            return Ok(Some(CloseBy::NoTallies));
        }
        let now = p.now_ms();
        let passed_at = passed_at.unwrap_or(now);
        let waited = now.saturating_sub(passed_at);
        let max_wait = i64::try_from(p.config.watermark_max_wait.as_millis()).unwrap_or(i64::MAX);
        // Boots alive around the window's end must have reported since; boots gone before it,
        // or that said their tally was their last (a drained shutdown), count with what they
        // last said.
        let reported = tallies
            .iter()
            .filter(|t| !t.last && t.at_ms >= passed_at.saturating_sub(BOOT_LIVE_MS))
            .all(|t| t.at_ms >= passed_at.saturating_add(TALLY_SLACK_MS));
        // A boot whose tally no longer holds the epoch (newer epochs, far-future ones from a
        // hostile sender among them, pushed it out of its newest 64) cannot say what it took
        // in: the watermark cannot be met, and the close waits for the max wait instead of
        // reading the lost count as none and closing on submissions still in flight.
        let unknown = tallies.iter().find(|t| !t.knows(epoch));
        if let Some(t) = unknown {
            tracing::warn!(
                epoch,
                boot = %t.boot,
                "an ingress tally no longer holds this epoch (pushed out by newer epochs); the close waits for WATERMARK_MAX_WAIT_MS"
            );
        }
        if reported && unknown.is_none() {
            let taken_in: u64 = tallies.iter().map(|t| t.count(epoch)).sum();
            let decided = p.records().decided_count(epoch).await?;
            if decided >= taken_in {
                return Ok(Some(CloseBy::Met));
            }
            tracing::debug!(epoch, taken_in, decided, "waiting for verify");
        }
        Ok((waited >= max_wait).then_some(CloseBy::Timeout))
    }
}

/// Records new block hashes, [`BLOCK_HASH_CONCURRENCY`] at a time, while rounds start before
/// `deadline_ms`; saves the cursor after each round that recorded any. Whether it saved.
async fn blocks(
    p: &Pipeline,
    cursor: &mut TickCursor,
    report: &mut TickReport,
    deadline_ms: i64,
) -> Result<bool, PipelineError> {
    let records = p.records();
    let chain = &p.ports.chain;
    let mut next = cursor
        .blocks_up_to
        .saturating_add(1)
        .max(report.head.saturating_sub(MAX_BLOCKS_PER_STEP - 1));
    let mut saved = false;
    // The first round always runs (a step makes progress however short its run), later ones
    // only before the deadline.
    let mut first = true;
    while next <= report.head && (first || p.now_ms() < deadline_ms) {
        first = false;
        let last = next
            .saturating_add(BLOCK_HASH_CONCURRENCY - 1)
            .min(report.head);
        let hashes = join_all((next..=last).map(|n| chain.block_hash(n))).await;
        // The contiguous prefix the node knows (a node behind the head answers `None`).
        let mut known = Vec::new();
        for (n, h) in (next..=last).zip(hashes) {
            match h? {
                Some(hash) => known.push((n, hash)),
                None => break,
            }
        }
        let complete = known.len() as u64 == last - next + 1;
        for r in join_all(known.iter().map(|(n, h)| records.record_block(*h, *n))).await {
            r?;
        }
        if let Some((n, _)) = known.last() {
            cursor.blocks_up_to = *n;
            report.blocks_recorded += known.len() as u64;
            records.save_tick_cursor(cursor).await?;
            saved = true;
        }
        if !complete {
            break;
        }
        next = last + 1;
    }
    Ok(saved)
}
