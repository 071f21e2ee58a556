//! A market's settings as Powerloom's snapshotter node reads them (docs/protocol.md §9), their
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
                epoch_duration: u128::from(self.source_block_time) * u128::from(self.epoch_size),
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

// ------------------------------------------------------------------ the operator's kit

/// What a snapshotter operator needs to point an unmodified node (snapshotter-lite-v2) and a
/// collector at a market: printed by `seqctl market snapshotter-env`, the local runner's
/// outside-collector mode and the Terraform outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotterKit {
    /// `PROTOCOL_STATE_CONTRACT`, EIP-55 (the node signs with it as `verifyingContract`).
    pub protocol_state: String,
    /// `DATA_MARKET_CONTRACT`, EIP-55 (the stock collector compares it to `sequencers.json`
    /// case-sensitively, so both are written the same way).
    pub data_market: String,
    /// `POWERLOOM_RPC_URL`: the public RPC of the protocol chain, as the operator hands it out.
    pub powerloom_rpc_url: String,
    /// The protocol chain's id (the EIP-712 domain's `chainId`; the node reads it from the RPC).
    pub chain_id: u64,
    /// `SOURCE_CHAIN_ID` of the market (what `SOURCE_RPC_URL` must serve).
    pub source_chain_id: u64,
    /// The sequencer's libp2p address with `/p2p/<peer id>`.
    pub sequencer_multiaddr: String,
    /// The sequencer's peer id.
    pub sequencer_peer_id: String,
    /// `LOCAL_COLLECTOR_PORT` the node dials.
    pub local_collector_port: u16,
    /// `environment` of the `sequencers.json` entry.
    pub environment: String,
}

impl SnapshotterKit {
    /// `KEY=value` lines: the node's `.env` entries and the collector's.
    pub fn env_lines(&self) -> Vec<String> {
        vec![
            format!("PROTOCOL_STATE_CONTRACT={}", self.protocol_state),
            format!("DATA_MARKET_CONTRACT={}", self.data_market),
            format!("POWERLOOM_RPC_URL={}", self.powerloom_rpc_url),
            format!("POWERLOOM_CHAIN_ID={}", self.chain_id),
            format!("SOURCE_CHAIN_ID={}", self.source_chain_id),
            format!("LOCAL_COLLECTOR_PORT={}", self.local_collector_port),
            "DATA_MARKET_IN_REQUEST=true".to_string(),
            format!("SEQUENCER_MULTIADDR={}", self.sequencer_multiaddr),
            format!("SEQUENCER_PEER_ID={}", self.sequencer_peer_id),
        ]
    }

    /// The entry for the stock collector's `sequencers.json`: an array of
    /// `{id, maddr, dataMarketAddress, environment}`, as its discovery code reads it.
    pub fn sequencers_json(&self) -> serde_json::Value {
        serde_json::json!([{
            "id": self.sequencer_peer_id,
            "maddr": self.sequencer_multiaddr,
            "dataMarketAddress": self.data_market,
            "environment": self.environment,
        }])
    }

    /// Everything as one JSON object (`env`, `sequencers_json`, and the fields).
    pub fn to_json(&self) -> serde_json::Value {
        let env: serde_json::Map<String, serde_json::Value> = self
            .env_lines()
            .into_iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            })
            .collect();
        serde_json::json!({
            "env": env,
            "sequencers_json": self.sequencers_json(),
            "kit": self,
        })
    }
}

#[cfg(test)]
mod kit_tests {
    use super::*;

    #[test]
    fn sequencers_json_has_the_stock_collectors_keys() {
        let k = SnapshotterKit {
            protocol_state: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            data_market: "0x0C2E22fe7526fAeF28E7A58c84f8723dEFcE200c".into(),
            powerloom_rpc_url: "https://rpc.example".into(),
            chain_id: 31337,
            source_chain_id: 1,
            sequencer_multiaddr: "/dns4/seq.example/tcp/9100/p2p/12D3KooWA".into(),
            sequencer_peer_id: "12D3KooWA".into(),
            local_collector_port: 50051,
            environment: "prod".into(),
        };
        let j = k.sequencers_json();
        let e = &j[0];
        let mut keys: Vec<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["dataMarketAddress", "environment", "id", "maddr"]);
        assert_eq!(e["dataMarketAddress"], k.data_market);
        assert!(k.env_lines().contains(
            &"PROTOCOL_STATE_CONTRACT=0x5FbDB2315678afecb367f032d93F642f64180aa3".to_string()
        ));
    }
}
