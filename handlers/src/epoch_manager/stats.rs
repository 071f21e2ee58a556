//! What the epoch manager did, for operators: counters and lag in [`Stats`] (returned by every
//! run, rendered as Prometheus text by [`Stats::prometheus`]), and the same numbers through the
//! `metrics` facade with the market as a label, for whatever recorder the process installs.
//!
//! | metric | kind | meaning |
//! | --- | --- | --- |
//! | `epoch_manager_released_total{market}` | counter | epochs released by this manager |
//! | `epoch_manager_skipped_total{market}` | counter | epochs skipped (catch-up policy) |
//! | `epoch_manager_retried_total{market}` | counter | releases settled from the contract after a timeout or error |
//! | `epoch_manager_raced_total{market}` | counter | epochs found released by another manager |
//! | `epoch_manager_errors_total{market}` | counter | polls that failed with a non-fatal error |
//! | `epoch_manager_days_started_total{market}` | counter | days this manager's releases started (`DayStartedEvent`) |
//! | `epoch_manager_day{market}` | gauge | the market's current day (`dayCounter`) as last seen |
//! | `epoch_manager_release_lag_blocks{market}`, `…_lag_ms{market}` | gauge | lag of the last release |

use std::collections::VecDeque;

use sequencer_core::Address;
use serde::Serialize;

/// Release lag of one epoch ([module docs](super#lag)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Lag {
    /// Source blocks past `end + finality_offset` when the release was mined.
    pub blocks: u64,
    /// Milliseconds from the source head reaching `end + finality_offset` (first poll that saw
    /// it) to the release mined.
    pub ms: u64,
}

/// Counters since the manager was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Epochs released by this manager.
    pub released: u64,
    /// Epochs skipped by this manager (on chain, or before the first release).
    pub skipped: u64,
    /// Releases settled after a timeout, a transient error or a failed transaction.
    pub retried: u64,
    /// Epochs found released by someone else.
    pub raced: u64,
    /// Steps that failed with a non-fatal error.
    pub errors: u64,
    /// Days started by this manager's releases (the contract rolls the day inside
    /// `releaseEpoch`, so whoever releases the day's first epoch starts it, once).
    pub days_started: u64,
    /// The market's current day as last seen (`dayCounter`).
    pub day: Option<u64>,
    /// Lag of the last release.
    pub last_lag: Option<Lag>,
    /// Largest lag seen (blocks and ms maximised separately).
    pub max_lag: Option<Lag>,
    /// Lags of the last [`Stats::WINDOW`] releases.
    #[serde(skip)]
    recent: VecDeque<Lag>,
}

fn label(market: Address) -> String {
    format!("{market:#x}")
}

impl Stats {
    /// Releases kept for [`Self::median_lag`].
    pub const WINDOW: usize = 1024;

    /// One release of ours, with its lag.
    pub(super) fn record_release(&mut self, market: Address, lag: Lag) {
        self.released += 1;
        self.last_lag = Some(lag);
        let max = self.max_lag.unwrap_or_default();
        self.max_lag = Some(Lag {
            blocks: max.blocks.max(lag.blocks),
            ms: max.ms.max(lag.ms),
        });
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(lag);
        let m = label(market);
        metrics::counter!("epoch_manager_released_total", "market" => m.clone()).increment(1);
        metrics::gauge!("epoch_manager_release_lag_blocks", "market" => m.clone())
            .set(lag.blocks as f64);
        metrics::gauge!("epoch_manager_release_lag_ms", "market" => m).set(lag.ms as f64);
    }

    /// A day our release started.
    pub(super) fn record_day_started(&mut self, market: Address, day: u64) {
        self.days_started += 1;
        metrics::counter!("epoch_manager_days_started_total", "market" => label(market))
            .increment(1);
        self.observe_day(market, day);
    }

    /// The market's current day, as read or as a release reported it.
    pub(super) fn observe_day(&mut self, market: Address, day: u64) {
        if self.day.is_none_or(|d| day > d) {
            self.day = Some(day);
            metrics::gauge!("epoch_manager_day", "market" => label(market)).set(day as f64);
        }
    }

    /// `n` epochs skipped.
    pub(super) fn record_skipped(&mut self, market: Address, n: u64) {
        self.skipped += n;
        metrics::counter!("epoch_manager_skipped_total", "market" => label(market)).increment(n);
    }

    /// A release settled from the contract.
    pub(super) fn record_retried(&mut self, market: Address) {
        self.retried += 1;
        metrics::counter!("epoch_manager_retried_total", "market" => label(market)).increment(1);
    }

    /// An epoch someone else released (or moved past).
    pub(super) fn record_raced(&mut self, market: Address) {
        self.raced += 1;
        metrics::counter!("epoch_manager_raced_total", "market" => label(market)).increment(1);
    }

    /// A failed poll that the next poll retries.
    pub(super) fn record_error(&mut self, market: Address) {
        self.errors += 1;
        metrics::counter!("epoch_manager_errors_total", "market" => label(market)).increment(1);
    }

    /// Median lag of the last [`Self::WINDOW`] releases (blocks and ms separately).
    pub fn median_lag(&self) -> Option<Lag> {
        if self.recent.is_empty() {
            return None;
        }
        let mut b: Vec<u64> = self.recent.iter().map(|l| l.blocks).collect();
        let mut m: Vec<u64> = self.recent.iter().map(|l| l.ms).collect();
        b.sort_unstable();
        m.sort_unstable();
        Some(Lag {
            blocks: b[b.len() / 2],
            ms: m[m.len() / 2],
        })
    }

    /// The counters and gauges in Prometheus text format, labelled with the market.
    pub fn prometheus(&self, market: Address) -> String {
        let mut out = String::new();
        let l = format!("{{market=\"{market}\"}}");
        for (name, help, v) in [
            (
                "released",
                "Epochs released by this manager.",
                self.released,
            ),
            (
                "skipped",
                "Epochs skipped (catch-up policy skip).",
                self.skipped,
            ),
            (
                "retried",
                "Releases settled after a timeout or error.",
                self.retried,
            ),
            (
                "raced",
                "Epochs found released by another manager.",
                self.raced,
            ),
            (
                "errors",
                "Polls that failed with a non-fatal error.",
                self.errors,
            ),
            (
                "days_started",
                "Days started by this manager's releases (DayStartedEvent).",
                self.days_started,
            ),
        ] {
            out.push_str(&format!(
                "# HELP epoch_manager_{name}_total {help}\n# TYPE epoch_manager_{name}_total counter\nepoch_manager_{name}_total{l} {v}\n"
            ));
        }
        if let Some(day) = self.day {
            out.push_str(&format!(
                "# HELP epoch_manager_day The market's current day (dayCounter) as last seen.\n# TYPE epoch_manager_day gauge\nepoch_manager_day{l} {day}\n"
            ));
        }
        if let Some(lag) = self.last_lag {
            out.push_str(&format!(
                "# HELP epoch_manager_release_lag_blocks Source blocks from due to release mined, last release.\n# TYPE epoch_manager_release_lag_blocks gauge\nepoch_manager_release_lag_blocks{l} {}\n# HELP epoch_manager_release_lag_ms Milliseconds from due to release mined, last release.\n# TYPE epoch_manager_release_lag_ms gauge\nepoch_manager_release_lag_ms{l} {}\n",
                lag.blocks, lag.ms
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_days_and_prometheus() {
        let mut s = Stats::default();
        for (b, ms) in [(1, 100), (3, 300), (2, 200)] {
            s.record_release(Address::ZERO, Lag { blocks: b, ms });
        }
        assert_eq!(s.median_lag(), Some(Lag { blocks: 2, ms: 200 }));
        assert_eq!(s.max_lag, Some(Lag { blocks: 3, ms: 300 }));
        s.observe_day(Address::ZERO, 4);
        s.record_day_started(Address::ZERO, 5);
        s.observe_day(Address::ZERO, 3);
        assert_eq!(
            (s.days_started, s.day),
            (1, Some(5)),
            "the day never goes back"
        );
        let text = s.prometheus(Address::ZERO);
        assert!(text.contains("epoch_manager_released_total{market=\"0x0000000000000000000000000000000000000000\"} 3"), "{text}");
        assert!(text.contains("epoch_manager_days_started_total{market=\"0x0000000000000000000000000000000000000000\"} 1"), "{text}");
        assert!(
            text.contains(
                "epoch_manager_day{market=\"0x0000000000000000000000000000000000000000\"} 5"
            ),
            "{text}"
        );
        assert!(text.contains("epoch_manager_release_lag_blocks"));
    }
}
