//! `tick` (EventBridge, every minute): follows the protocol chain inside one invocation so that
//! epochs shorter than a minute are served.
//!
//! Each step: read the head; record the hashes of new blocks (window checks need them); record
//! every confirmed `EpochReleased` of the market as an `OPEN` epoch, with the window it was
//! released under (`epochWindows(market, epoch)`; the market's current window only on a contract
//! that does not keep it, counted `tick_epoch_windows_fallback_total`); close every open epoch whose
//! window has ended (`head > release + window + grace`) through the conditional transition
//! `OPEN → CLOSING`, send its one finalize job, then `CLOSING → CLOSED`. An epoch found in
//! `CLOSING` (a crash between the two) gets its job sent again; finalize is idempotent, so the
//! worst case of a crash is one redundant job, never a lost one.

use std::time::Duration;

use sequencer_ports::Windows;
use serde::Serialize;

use crate::jobs::EpochJob;
use crate::metrics as m;
use crate::pipeline::{Pipeline, PipelineError};
use crate::records::{EpochMove, EpochRecord, EpochState};

/// Most block hashes recorded per step (bounds RPC calls after a long pause; verify resolves
/// older headers against the chain itself).
pub const MAX_BLOCKS_PER_STEP: u64 = 64;

/// What one step did.
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
}

/// Runs steps every `poll` for `budget` (the invocation's time left), on the pipeline's clock;
/// returns the merged report.
pub async fn run(
    p: &Pipeline,
    budget: Duration,
    poll: Duration,
) -> Result<TickReport, PipelineError> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let deadline = p.now_ms().saturating_add(ms(budget));
    let mut total = TickReport::default();
    loop {
        let r = step(p).await?;
        total.head = r.head;
        total.opened.extend(r.opened);
        total.closed.extend(r.closed);
        total.blocks_recorded += r.blocks_recorded;
        if p.now_ms().saturating_add(ms(poll)) >= deadline {
            return Ok(total);
        }
        p.clock.sleep(poll).await;
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

/// One step.
pub async fn step(p: &Pipeline) -> Result<TickReport, PipelineError> {
    let market = p.config.market;
    let records = p.records();
    let chain = &p.ports.chain;
    let mut cursor = records.tick_cursor().await?;
    let mut report = TickReport {
        head: chain.head().await?,
        ..TickReport::default()
    };

    // Block hashes.
    let from = cursor
        .blocks_up_to
        .saturating_add(1)
        .max(report.head.saturating_sub(MAX_BLOCKS_PER_STEP - 1));
    for n in from..=report.head {
        let Some(hash) = chain.block_hash(n).await? else {
            break;
        };
        records.record_block(hash, n).await?;
        cursor.blocks_up_to = n;
        report.blocks_recorded += 1;
    }

    // Releases.
    let page = chain.releases_after(market, cursor.releases_after).await?;
    if !page.releases.is_empty() {
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
    }
    cursor.releases_after = page.next_cursor;

    // Close what is due.
    let mut first_open: Option<u64> = None;
    let mut last_seen: Option<u64> = None;
    for e in records.epochs_from(cursor.low_epoch).await? {
        let epoch = e.record.epoch;
        let mut rec = e.record;
        let closing = match e.state {
            EpochState::Open
                if report.head > rec.window_end.saturating_add(p.config.close_grace_blocks) =>
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
    records.save_tick_cursor(&cursor).await?;
    Ok(report)
}
