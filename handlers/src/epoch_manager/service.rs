//! [`EpochManager`]: drives [`plan`] over the chain port: reads the contract and the source head,
//! releases (or skips) what is due, settles anything uncertain from the contract, and reports the
//! days its releases started. The rules are in the [module docs](super).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sequencer_core::epochs::{plan, CatchUp, DayClock, EpochRange, Plan, Skip};
use sequencer_core::{Address, B256};
use sequencer_ports::{ChainPort, ErrorKind, MarketInfo, PortError};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::{EpochManagerConfig, EpochManagerError, Lag, Released, Result, Stats, StepReport};

/// Drives the epoch plan against the chains. See the [module docs](super).
pub struct EpochManager {
    protocol: Arc<dyn ChainPort>,
    source: Arc<dyn ChainPort>,
    cfg: EpochManagerConfig,
    signer: Address,
    /// Highest source head seen.
    max_head: Option<u64>,
    /// (source head, first seen) in increasing head order, for the lag in ms.
    seen: VecDeque<(u64, Instant)>,
    /// First begin chosen before the market's first release.
    first_begin: Option<u64>,
    last_send: Option<Instant>,
    /// A release whose outcome could not be read yet (settled at the next poll).
    unsettled: Option<EpochRange>,
    /// The market's day as last read, with the epoch count it was read at: the clock predicts
    /// when the day rolls, and the contract is read again only then (once a day).
    days: Option<(DayClock, u64)>,
    stats: Stats,
}

impl std::fmt::Debug for EpochManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochManager")
            .field("cfg", &self.cfg)
            .field("signer", &self.signer)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A release found on chain by [`EpochManager::find_release`].
#[derive(Debug, Clone, Copy)]
struct Found {
    epoch_id: u64,
    block: u64,
    tx_hash: Option<B256>,
    ours: bool,
}

/// A release of ours, as sent or as found on chain.
#[derive(Debug, Clone, Copy)]
struct Ours {
    epoch_id: u64,
    block: u64,
    tx_hash: Option<B256>,
    day_started: Option<u64>,
}

/// Whether a failed send leaves the release's outcome unknown, to be read from the contract:
/// the node unreachable or refusing, the receipt late, the nonce or fees refused, or a
/// transaction mined and failed without revert data (a racing manager won).
fn outcome_unknown(e: &PortError) -> bool {
    match e.kind() {
        ErrorKind::Unavailable
        | ErrorKind::Pending
        | ErrorKind::Nonce
        | ErrorKind::Fees
        | ErrorKind::Refused
        | ErrorKind::Funds => true,
        ErrorKind::Reverted => matches!(e.code(), None | Some("TxFailed")),
        _ => false,
    }
}

fn failed_on_chain(e: &PortError) -> bool {
    e.kind() == &ErrorKind::Reverted && e.code() == Some("TxFailed")
}

impl EpochManager {
    /// Checks the market (registered, epoch size > 0) and our key (`isEpochManager`), nothing
    /// sent. `protocol` carries the epoch-manager key; `source` reads the source chain's head
    /// (`None`: the protocol chain is the source).
    pub async fn new(
        protocol: Arc<dyn ChainPort>,
        source: Option<Arc<dyn ChainPort>>,
        cfg: EpochManagerConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let signer = protocol.signer().ok_or(EpochManagerError::NoSigner)?;
        let source = source.unwrap_or_else(|| protocol.clone());
        let mut manager = Self {
            first_begin: cfg.first_begin,
            protocol,
            source,
            cfg,
            signer,
            max_head: None,
            seen: VecDeque::new(),
            last_send: None,
            unsettled: None,
            days: None,
            stats: Stats::default(),
        };
        let info = manager.market_info().await?;
        manager.check_role().await?;
        let market = manager.cfg.market;
        if let Err(e) = manager.read_day(info.current_epoch).await {
            // The day is reported, never needed: a contract without the day views still releases.
            warn!(%market, error = %e, "cannot read the market's day; days are reported from releases only");
        }
        info!(
            %market,
            signer = %signer,
            finality_offset = manager.cfg.finality_offset,
            catch_up = ?manager.cfg.catch_up,
            day = ?manager.stats.day,
            "epoch manager ready"
        );
        Ok(manager)
    }

    /// The configuration.
    pub fn config(&self) -> &EpochManagerConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// One poll: read the contract and the source head, release every epoch due (at most as
    /// many as were due when the step began, paced by the catch-up rate), or skip under
    /// [`CatchUp::SkipToHead`].
    pub async fn step(&mut self) -> Result<StepReport> {
        self.step_inner(None, u64::MAX).await
    }

    /// [`Self::step`] releasing at most `max_releases` epochs (skips do not count), e.g. for a
    /// command that stops after N releases.
    pub async fn step_at_most(&mut self, max_releases: u64) -> Result<StepReport> {
        self.step_inner(None, max_releases).await
    }

    /// The market's epoch size, read from the contract.
    pub async fn epoch_size(&self) -> Result<u64> {
        Ok(self.market_info().await?.epoch_size)
    }

    /// Polls until `deadline` (if any) or until `stop` completes, whichever is first; returns
    /// the counters. Non-fatal errors are logged, counted and retried at the next poll; a fatal
    /// one ([`EpochManagerError::is_fatal`]) is returned. `stop` cancels at once, even mid-release:
    /// an interrupted release is settled from the contract by the next start, as after a crash.
    /// A Lambda passes its deadline minus a margin and `std::future::pending()`; the local runner
    /// a shutdown signal.
    pub async fn run_until(
        &mut self,
        deadline: Option<Instant>,
        stop: impl Future<Output = ()>,
    ) -> Result<Stats> {
        tokio::pin!(stop);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let r = tokio::select! {
                biased;
                () = &mut stop => break,
                r = self.step_inner(deadline, u64::MAX) => r,
            };
            match r {
                Ok(rep) => debug!(
                    source_head = rep.source_head,
                    next_begin = rep.next_begin,
                    released = rep.released.len(),
                    backlog = rep.backlog,
                    next_due_at = rep.next_due_at,
                    "epoch manager step"
                ),
                Err(e) if e.is_fatal() => {
                    error!(error = %e, "epoch manager stops");
                    return Err(e);
                }
                Err(e) => {
                    self.stats.record_error(self.cfg.market);
                    warn!(error = %e, "epoch manager step failed; re-reading the contract at the next poll");
                }
            }
            let mut wait = self.cfg.poll_interval;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        Ok(self.stats.clone())
    }

    async fn market_info(&self) -> Result<MarketInfo> {
        let info = self
            .protocol
            .market_info(self.cfg.market)
            .await
            .map_err(|e| self.map_refusal(e))?;
        if !info.registered {
            return Err(EpochManagerError::UnknownMarket(self.cfg.market));
        }
        if info.epoch_size == 0 {
            return Err(EpochManagerError::ZeroEpochSize(self.cfg.market));
        }
        Ok(info)
    }

    async fn check_role(&self) -> Result<()> {
        if self
            .protocol
            .is_epoch_manager(self.cfg.market, self.signer)
            .await?
        {
            Ok(())
        } else {
            Err(EpochManagerError::NotEpochManager {
                market: self.cfg.market,
                who: self.signer,
            })
        }
    }

    /// Reads the market's day from the contract (`marketSettings`), at `current_epoch` released.
    async fn read_day(&mut self, current_epoch: u64) -> Result<()> {
        let d = self.protocol.market_days(self.cfg.market).await?;
        self.stats.observe_day(self.cfg.market, d.day);
        let clock = DayClock {
            day: d.day,
            day_start_epoch: d.day_start_epoch,
            epochs_in_a_day: d.epochs_in_a_day,
        };
        self.days = Some((clock, current_epoch));
        Ok(())
    }

    /// Keeps [`Stats::day`] true when others release: the day is read again once the epochs
    /// released since the last read reach past that day's last epoch.
    async fn follow_day(&mut self, current_epoch: u64) {
        let Some((clock, read_at)) = self.days else {
            return;
        };
        if current_epoch > read_at && current_epoch > clock.last_epoch_of_day() {
            if let Err(e) = self.read_day(current_epoch).await {
                debug!(error = %e, "cannot read the market's day; next poll");
            }
        }
    }

    /// Source head, checked against the highest seen (a drop up to the finality offset is a
    /// reorg the offset absorbs; more is an error).
    async fn source_head(&mut self) -> Result<u64> {
        let head = self.source.head().await?;
        if let Some(seen) = self.max_head {
            if head.saturating_add(self.cfg.finality_offset) < seen {
                return Err(EpochManagerError::SourceHeadBackwards {
                    seen,
                    now: head,
                    tolerance: self.cfg.finality_offset,
                });
            }
        }
        if self.max_head.is_none_or(|m| head > m) {
            self.max_head = Some(head);
            self.seen.push_back((head, Instant::now()));
            if self.seen.len() > 4096 {
                self.seen.pop_front();
            }
        }
        Ok(head)
    }

    /// When the source head was first seen at or past `block`.
    fn first_seen(&self, block: u64) -> Option<Instant> {
        self.seen.iter().find(|(h, _)| *h >= block).map(|(_, t)| *t)
    }

    /// Reads the source head and the contract, and plans.
    async fn observe(&mut self) -> Result<(u64, MarketInfo, u64, Plan)> {
        let head = self.source_head().await?;
        let info = self.market_info().await?;
        self.follow_day(info.current_epoch).await;
        let next_begin = if info.current_epoch > 0 {
            if head < info.last_epoch_end {
                return Err(EpochManagerError::SourceBehindContract {
                    head,
                    last_epoch_end: info.last_epoch_end,
                });
            }
            info.last_epoch_end + 1
        } else {
            *self.first_begin.get_or_insert(head.saturating_add(1))
        };
        let p = plan(
            next_begin,
            info.epoch_size,
            head,
            self.cfg.finality_offset,
            self.cfg.catch_up,
        )?;
        Ok((head, info, next_begin, p))
    }

    async fn step_inner(
        &mut self,
        deadline: Option<Instant>,
        max_releases: u64,
    ) -> Result<StepReport> {
        let mut report = StepReport::default();
        let mut budget: Option<u64> = None;
        loop {
            let (head, info, next_begin, p) = self.observe().await?;
            self.settle_leftover(&info, &mut report).await?;
            report.source_head = head;
            report.next_begin = next_begin;
            report.next_due_at = p.next_due_at;
            report.backlog = p.due;
            // At most the epochs due when the step began (plus a skip): a step ends even when
            // the source outpaces the catch-up rate.
            let left = *budget.get_or_insert(p.due);
            if left == 0
                || report.released.len() as u64 >= max_releases
                || deadline.is_some_and(|d| Instant::now() >= d)
            {
                break;
            }
            if let Some(skip) = p.skip {
                self.skip(&info, skip, &mut report).await?;
                budget = Some(left.saturating_sub(skip.epochs));
                continue;
            }
            let Some(epoch) = p.release else { break };
            if !self.cfg.send_delay.is_zero() {
                let seen = self.first_seen(epoch.due_at(self.cfg.finality_offset)?);
                let wait = seen.map_or(Duration::ZERO, |t| {
                    (t + self.cfg.send_delay).saturating_duration_since(Instant::now())
                });
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                    continue; // re-read: the primary may have released it meanwhile
                }
            }
            self.pace().await;
            budget = Some(left - 1);
            self.release(epoch, head, &mut report).await?;
        }
        Ok(report)
    }

    async fn pace(&mut self) {
        if let CatchUp::InOrder { max_per_sec } = self.cfg.catch_up {
            let gap = Duration::from_secs(1) / max_per_sec.max(1);
            if let Some(last) = self.last_send {
                let wait = (last + gap).saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.last_send = Some(Instant::now());
    }

    async fn skip(&mut self, info: &MarketInfo, skip: Skip, report: &mut StepReport) -> Result<()> {
        let market = self.cfg.market;
        if info.current_epoch == 0 {
            // Nothing released yet: the first epoch may begin anywhere, so there is no gap to
            // record on chain; the first release simply begins on the grid at the newest epoch.
            warn!(
                %market,
                from_begin = skip.from_begin,
                to_begin = skip.to_begin,
                epochs = skip.epochs,
                "no epoch released yet: starting at the newest due epoch"
            );
            self.first_begin = Some(skip.to_begin);
            self.stats.record_skipped(market, skip.epochs);
            report.skipped.push(skip);
            return Ok(());
        }
        info!(%market, from_begin = skip.from_begin, to_begin = skip.to_begin, epochs = skip.epochs, "sending skipEpochs");
        match self.protocol.skip_epochs(market, skip.to_begin).await {
            Ok(tx) => {
                info!(%market, block = tx.block, tx_hash = %tx.tx_hash, epochs = skip.epochs, "skipped epochs");
                self.stats.record_skipped(market, skip.epochs);
                report.skipped.push(skip);
                Ok(())
            }
            // Someone else moved the market on: re-read at the next iteration.
            Err(e)
                if e.kind() == &ErrorKind::Reverted
                    && matches!(
                        e.code(),
                        Some("InvalidSkip" | "InvalidEpochRange" | "TxFailed")
                    ) =>
            {
                self.stats.record_raced(market);
                report.raced += 1;
                Ok(())
            }
            Err(e) => Err(self.map_refusal(e)),
        }
    }

    async fn release(
        &mut self,
        epoch: EpochRange,
        head: u64,
        report: &mut StepReport,
    ) -> Result<()> {
        let market = self.cfg.market;
        let due_at = epoch.due_at(self.cfg.finality_offset)?;
        debug_assert!(head >= due_at);
        // An earlier send of this very epoch left unsettled is not on chain (the contract was
        // read just now): this send's outcome settles it, and it must not be counted twice.
        if self.unsettled == Some(epoch) {
            self.unsettled = None;
        }
        info!(%market, begin = epoch.begin, end = epoch.end, source_head = head, due_at, "sending releaseEpoch");
        let sent = tokio::time::timeout(
            self.cfg.release_timeout,
            self.protocol.release_epoch(market, epoch.begin, epoch.end),
        )
        .await;
        let outcome = match sent {
            Ok(Ok(r)) => Some(Ours {
                epoch_id: r.epoch_id,
                block: r.block,
                tx_hash: Some(r.tx_hash),
                day_started: r.day_started,
            }),
            Ok(Err(e)) if e.code() == Some("InvalidEpochRange") => {
                // Released meanwhile: by a racing manager, or by a transaction of our key that
                // an earlier poll or a killed predecessor left pending. The contract says which.
                info!(%market, begin = epoch.begin, "epoch already released (contiguity check); reading who released it");
                let info = self.market_info().await?;
                match self.find_release(epoch, &info).await? {
                    Some(found) => self.settled(found, false, report).await?,
                    None => {
                        self.stats.record_raced(market);
                        report.raced += 1;
                        None
                    }
                }
            }
            Ok(Err(e)) if outcome_unknown(&e) => self.settle(epoch, Some(e), report).await?,
            Ok(Err(e)) => return Err(self.map_refusal(e)),
            Err(_elapsed) => self.settle(epoch, None, report).await?,
        };
        if let Some(ours) = outcome {
            self.record_release(epoch, ours, head, report).await?;
        }
        Ok(())
    }

    async fn record_release(
        &mut self,
        epoch: EpochRange,
        ours: Ours,
        head: u64,
        report: &mut StepReport,
    ) -> Result<()> {
        let market = self.cfg.market;
        let due_at = epoch.due_at(self.cfg.finality_offset)?;
        let mined_at = Instant::now();
        let head_after = self.source.head().await.unwrap_or(head).max(head);
        let seen = self.first_seen(due_at).unwrap_or(mined_at);
        let lag = Lag {
            blocks: head_after.saturating_sub(due_at),
            ms: u64::try_from(mined_at.saturating_duration_since(seen).as_millis())
                .unwrap_or(u64::MAX),
        };
        info!(%market, epoch_id = ours.epoch_id, begin = epoch.begin, end = epoch.end, block = ours.block, lag_blocks = lag.blocks, lag_ms = lag.ms, day_started = ?ours.day_started, "released epoch");
        self.stats.record_release(market, lag);
        if let Some(day) = ours.day_started {
            info!(%market, day, epoch_id = ours.epoch_id, block = ours.block, tx_hash = ?ours.tx_hash, "day started");
            self.stats.record_day_started(market, day);
        }
        report.released.push(Released {
            epoch_id: ours.epoch_id,
            range: epoch,
            due_at,
            source_head_at_send: head,
            block: ours.block,
            tx_hash: ours.tx_hash,
            day_started: ours.day_started,
            lag,
            mined_at: Some(mined_at),
        });
        Ok(())
    }

    /// A release whose outcome is unknown (timeout, transient error, failed transaction):
    /// read the contract. Released → ours (`Some`) or someone else's (counted as raced); not
    /// released, or the contract unreadable → the error is returned, the epoch is remembered as
    /// unsettled, and the next poll starts over from the contract (where the writer waits for
    /// our pending transaction before sending anything) and settles it first.
    async fn settle(
        &mut self,
        epoch: EpochRange,
        err: Option<PortError>,
        report: &mut StepReport,
    ) -> Result<Option<Ours>> {
        let on_chain = err.as_ref().is_some_and(failed_on_chain);
        if !on_chain {
            self.stats.record_retried(self.cfg.market);
        }
        let what = err
            .as_ref()
            .map_or_else(|| "release timeout".to_string(), ToString::to_string);
        warn!(market = %self.cfg.market, begin = epoch.begin, error = %what, "release outcome unknown; settling from the contract");
        let into_error = |err: Option<PortError>| match err {
            Some(e) => EpochManagerError::Chain(e),
            None => EpochManagerError::ReleaseTimeout {
                begin: epoch.begin,
                end: epoch.end,
            },
        };
        self.unsettled = Some(epoch);
        let Ok(info) = self.market_info().await else {
            return Err(into_error(err));
        };
        match self.find_release(epoch, &info).await {
            Ok(Some(found)) => self.settled(found, on_chain, report).await,
            Ok(None) | Err(_) => Err(into_error(err)),
        }
    }

    /// Settles a release left unsettled by an earlier poll, once the contract has moved past it.
    async fn settle_leftover(&mut self, info: &MarketInfo, report: &mut StepReport) -> Result<()> {
        let Some(epoch) = self.unsettled else {
            return Ok(());
        };
        if info.current_epoch == 0 || info.last_epoch_end < epoch.end {
            // Not on chain (yet): our transaction, if any, is still pending or was dropped; the
            // writer waits for pending ones before the next send, and the contract decides.
            return Ok(());
        }
        match self.find_release(epoch, info).await? {
            Some(found) => {
                if let Some(ours) = self.settled(found, false, report).await? {
                    let head = self.max_head.unwrap_or_default();
                    self.record_release(epoch, ours, head, report).await?;
                }
            }
            None => {
                self.unsettled = None;
            }
        }
        Ok(())
    }

    /// `Some` if ours (with whether it started a day, read from the contract); counts a racer's
    /// as raced.
    async fn settled(
        &mut self,
        found: Found,
        failed_on_chain: bool,
        report: &mut StepReport,
    ) -> Result<Option<Ours>> {
        let market = self.cfg.market;
        self.unsettled = None;
        let day_started = self.day_started_by(found.epoch_id).await;
        if failed_on_chain || !found.ours {
            info!(%market, epoch_id = found.epoch_id, block = found.block, "release settled: released by someone else");
            if let Some(day) = day_started {
                self.stats.observe_day(market, day);
            }
            self.stats.record_raced(market);
            report.raced += 1;
            return Ok(None);
        }
        info!(%market, epoch_id = found.epoch_id, block = found.block, "release settled: our transaction is on chain");
        Ok(Some(Ours {
            epoch_id: found.epoch_id,
            block: found.block,
            tx_hash: found.tx_hash,
            day_started,
        }))
    }

    /// The day the release of `epoch_id` started, read from the contract: its day is later than
    /// the previous epoch's. Unreadable → `None` (the day is reported, never needed).
    async fn day_started_by(&self, epoch_id: u64) -> Option<u64> {
        if epoch_id <= 1 {
            return None;
        }
        let market = self.cfg.market;
        let this = self.protocol.epoch_details(market, epoch_id).await.ok()??;
        let before = self
            .protocol
            .epoch_details(market, epoch_id - 1)
            .await
            .ok()??;
        (this.day > before.day).then_some(this.day)
    }

    /// The release of `epoch` on chain (epoch id, block, transaction, whether it was ours), or
    /// `None` when the contract moved past it without releasing it (skipped by someone else).
    async fn find_release(&self, epoch: EpochRange, info: &MarketInfo) -> Result<Option<Found>> {
        let market = self.cfg.market;
        let mut found = None;
        for id in (1..=info.current_epoch).rev().take(256) {
            let Some(d) = self.protocol.epoch_details(market, id).await? else {
                continue;
            };
            if d.begin == epoch.begin {
                found = Some(d);
                break;
            }
            if d.begin < epoch.begin {
                break;
            }
        }
        let Some(d) = found else {
            return Ok(None);
        };
        let tx_hash = self
            .protocol
            .epoch_release(market, d.epoch_id)
            .await?
            .map(|r| r.tx_hash);
        let ours = match tx_hash {
            Some(h) => self.protocol.transaction_sender(h).await? == Some(self.signer),
            None => false,
        };
        Ok(Some(Found {
            epoch_id: d.epoch_id,
            block: d.release_block,
            tx_hash,
            ours,
        }))
    }

    /// Maps the contract's refusals to typed errors: a missing role, an unknown market.
    fn map_refusal(&self, e: PortError) -> EpochManagerError {
        match (e.kind(), e.code()) {
            (ErrorKind::Permission, Some("NotEpochManager")) => {
                EpochManagerError::NotEpochManager {
                    market: self.cfg.market,
                    who: self.signer,
                }
            }
            (_, Some("UnknownMarket")) => EpochManagerError::UnknownMarket(self.cfg.market),
            _ => EpochManagerError::Chain(e),
        }
    }
}
