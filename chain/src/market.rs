//! A market's settings as Powerloom's snapshotter node reads them (PROTOCOL.md §9), their
//! validation (the contract's rules, checked before anything is sent), and the sizing of the
//! snapshot submission window for unmodified nodes.
//!
//! Units are Powerloom's: the source chain's block time and the day length are **seconds ×
//! 10 000** (`SOURCE_CHAIN_BLOCK_TIME` 120 000 = 12 s; `DAY_SIZE` 864 000 000 = 24 h), the
//! epoch size is in source-chain blocks (1..=255, a `uint8` on chain), and
//! `epochsInADay = DAY_SIZE / (SOURCE_CHAIN_BLOCK_TIME × EPOCH_SIZE)` is derived on chain, as in
//! Powerloom's data market contract: one source of truth, so the node's own arithmetic with the
//! same three numbers always agrees with the view. A short day (for a test market) is a small
//! `DAY_SIZE`, not a separate knob.

use serde::{Deserialize, Serialize};

/// Scale of `SOURCE_CHAIN_BLOCK_TIME` and `DAY_SIZE`: seconds × 10 000.
pub const TIME_SCALE: u64 = 10_000;
/// Powerloom's day: 24 h in seconds × 10 000.
pub const POWERLOOM_DAY_SIZE: u64 = 86_400 * TIME_SCALE;
/// Powerloom's default daily quota (submissions a slot needs per day).
pub const POWERLOOM_DAILY_QUOTA: u64 = 1_000;

/// What a market is registered with (besides its windows), as the contract stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSettings {
    /// Source-chain blocks per epoch, 1..=255.
    pub epoch_size: u64,
    /// Chain id of the market's source chain (> 0).
    pub source_chain_id: u64,
    /// Source-chain block time, seconds × 10 000 (> 0).
    pub source_block_time: u64,
    /// Day length, seconds × 10 000; at least one epoch long.
    pub day_size: u64,
    /// Submissions a slot needs per day for `DailyTaskCompletedEvent` (> 0).
    pub daily_snapshot_quota: u64,
}

impl Default for MarketSettings {
    /// Local development: epochs of 10 blocks of a 1 s chain, Powerloom's day and quota; the
    /// source chain id is filled in by the deployer (the protocol chain's own, by default).
    fn default() -> Self {
        Self {
            epoch_size: 10,
            source_chain_id: 0,
            source_block_time: TIME_SCALE,
            day_size: POWERLOOM_DAY_SIZE,
            daily_snapshot_quota: POWERLOOM_DAILY_QUOTA,
        }
    }
}

/// A setting the contract would refuse (the same rule as its custom error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `InvalidEpochSize`: 0 or above 255.
    #[error("epoch size {0} is not in 1..=255 (EPOCH_SIZE is a uint8)")]
    EpochSize(u64),
    /// `InvalidSourceChain`: 0.
    #[error("source chain id must not be 0")]
    SourceChain,
    /// `InvalidBlockTime`: 0.
    #[error("source block time must be above 0 (seconds × 10 000)")]
    BlockTime,
    /// `InvalidDaySize`: shorter than one epoch.
    #[error("day size {day_size} is shorter than one epoch ({epoch_duration}, seconds × 10 000)")]
    DaySize {
        /// Requested day.
        day_size: u64,
        /// Block time × epoch size.
        epoch_duration: u128,
    },
    /// `InvalidDailyQuota`: 0.
    #[error("daily snapshot quota must be above 0")]
    DailyQuota,
}

impl MarketSettings {
    /// `DAY_SIZE / (SOURCE_CHAIN_BLOCK_TIME × EPOCH_SIZE)`, the contract's `epochsInADay`
    /// (0 when the settings are invalid).
    pub fn epochs_in_a_day(&self) -> u64 {
        let d = u128::from(self.source_block_time) * u128::from(self.epoch_size);
        if d == 0 {
            return 0;
        }
        u64::try_from(u128::from(self.day_size) / d).unwrap_or(u64::MAX)
    }

    /// The contract's checks, in its order.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.epoch_size == 0 || self.epoch_size > 255 {
            return Err(SettingsError::EpochSize(self.epoch_size));
        }
        if self.source_chain_id == 0 {
            return Err(SettingsError::SourceChain);
        }
        if self.source_block_time == 0 {
            return Err(SettingsError::BlockTime);
        }
        if self.epochs_in_a_day() == 0 {
            return Err(SettingsError::DaySize {
                day_size: self.day_size,
                epoch_duration: u128::from(self.source_block_time)
                    * u128::from(self.epoch_size),
            });
        }
        if self.daily_snapshot_quota == 0 {
            return Err(SettingsError::DailyQuota);
        }
        Ok(())
    }

    /// Seconds (decimal) → seconds × 10 000, rounded to the nearest unit; `None` for a negative,
    /// non-finite or too large value.
    pub fn scaled_seconds(seconds: f64) -> Option<u64> {
        let v = (seconds * TIME_SCALE as f64).round();
        (v.is_finite() && v >= 0.0 && v <= u64::MAX as f64).then_some(v as u64)
    }
}

/// The settings and day state a market has on chain (`marketSettings(market)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OnChainSettings {
    /// The settings.
    pub settings: MarketSettings,
    /// `epochsInADay(market)`.
    pub epochs_in_a_day: u64,
    /// `dayCounter(market)`: the current day, from 1.
    pub day: u64,
    /// First epoch id of the current day.
    pub day_start_epoch: u64,
}

// ------------------------------------------------------------------ window sizing

/// Seconds an unmodified snapshotter node (snapshotter-lite-v2) may take from an epoch's
/// release block to its submission reaching the sequencer, by the steps its code takes:
/// it polls the anchor chain for events (its RPC polling interval, up to 10 s assumed), sleeps
/// 20 s after `EpochReleased` before computing, computes and uploads the snapshot (15 s
/// allowed), then signs with the latest anchor block as `header` and sends it through its
/// collector (5 s allowed, the collector's backoff included).
pub const NODE_SUBMIT_BUDGET_MS: u64 = 10_000 + 20_000 + 15_000 + 5_000;

/// Blocks on top of the budget: the release block itself and one block of clock skew.
pub const WINDOW_MARGIN_BLOCKS: u64 = 2;

/// The `snapshotSubmissionWindow` (protocol-chain blocks) a market needs so that an unmodified
/// node's submission, signed [`NODE_SUBMIT_BUDGET_MS`] after the release at the latest, still
/// carries a header inside `[R, R + window]` and arrives while the window is open:
/// `ceil(budget / block time) + margin`. For 2 s blocks: 27; for 12 s blocks: 7; for 1 s: 52.
pub fn recommended_snapshot_window(protocol_block_ms: u64) -> u64 {
    let ms = protocol_block_ms.max(1);
    NODE_SUBMIT_BUDGET_MS.div_ceil(ms) + WINDOW_MARGIN_BLOCKS
}

/// A warning when `window_blocks` at `protocol_block_ms` is shorter than unmodified nodes need
/// ([`recommended_snapshot_window`]); `None` when it is enough.
pub fn window_warning(window_blocks: u64, protocol_block_ms: u64) -> Option<String> {
    let need = recommended_snapshot_window(protocol_block_ms);
    (window_blocks < need).then(|| {
        format!(
            "snapshotSubmissionWindow of {window_blocks} blocks is {:.1} s at {protocol_block_ms} ms per block: \
             unmodified snapshotter nodes need about {:.0} s from the release to their submission \
             (event poll, a 20 s wait, compute, send), i.e. at least {need} blocks; their submissions \
             would be rejected as outside the window",
            window_blocks as f64 * protocol_block_ms as f64 / 1000.0,
            NODE_SUBMIT_BUDGET_MS as f64 / 1000.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> MarketSettings {
        MarketSettings {
            epoch_size: 10,
            source_chain_id: 1,
            source_block_time: 12 * TIME_SCALE,
            day_size: POWERLOOM_DAY_SIZE,
            daily_snapshot_quota: 1000,
        }
    }

    #[test]
    fn epochs_in_a_day_is_powerloom_arithmetic() {
        // Ethereum: 12 s blocks × 10 = 2 min epochs, 720 a day.
        assert_eq!(ok().epochs_in_a_day(), 720);
        // A day shorter than an epoch is no day at all.
        let s = MarketSettings {
            day_size: 119 * TIME_SCALE,
            ..ok()
        };
        assert_eq!(s.epochs_in_a_day(), 0);
        assert!(matches!(s.validate(), Err(SettingsError::DaySize { .. })));
    }

    #[test]
    fn validation_mirrors_the_contract() {
        assert_eq!(ok().validate(), Ok(()));
        for (s, want) in [
            (
                MarketSettings {
                    epoch_size: 0,
                    ..ok()
                },
                SettingsError::EpochSize(0),
            ),
            (
                MarketSettings {
                    epoch_size: 256,
                    ..ok()
                },
                SettingsError::EpochSize(256),
            ),
            (
                MarketSettings {
                    source_chain_id: 0,
                    ..ok()
                },
                SettingsError::SourceChain,
            ),
            (
                MarketSettings {
                    source_block_time: 0,
                    ..ok()
                },
                SettingsError::BlockTime,
            ),
            (
                MarketSettings {
                    daily_snapshot_quota: 0,
                    ..ok()
                },
                SettingsError::DailyQuota,
            ),
        ] {
            assert_eq!(s.validate(), Err(want));
        }
    }

    #[test]
    fn scaled_seconds() {
        assert_eq!(MarketSettings::scaled_seconds(12.0), Some(120_000));
        assert_eq!(MarketSettings::scaled_seconds(0.25), Some(2_500));
        assert_eq!(MarketSettings::scaled_seconds(-1.0), None);
        assert_eq!(MarketSettings::scaled_seconds(f64::NAN), None);
    }

    #[test]
    fn window_sizing_covers_the_node_budget() {
        assert_eq!(recommended_snapshot_window(2_000), 27);
        assert_eq!(recommended_snapshot_window(12_000), 7);
        assert_eq!(recommended_snapshot_window(1_000), 52);
        for ms in [250, 1_000, 2_000, 5_000, 12_000] {
            let w = recommended_snapshot_window(ms);
            assert!(w * ms >= NODE_SUBMIT_BUDGET_MS, "{ms}");
            assert!(window_warning(w, ms).is_none());
            let warn = window_warning(w - 1, ms).expect("one block short warns");
            assert!(warn.contains(&w.to_string()), "{warn}");
        }
        // The local runner's simulator window (16 × 250 ms) is far too short for a real node.
        assert!(window_warning(16, 250).is_some());
    }
}
