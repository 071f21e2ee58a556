//! The epoch manager's settings, with documented defaults, from code or from environment
//! variables (the `epoch-manager` Lambda, [`EpochManagerConfig::from_env`]).
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DATA_MARKET_ADDRESS` | (required) | the market whose epochs are released |
//! | `FINALITY_OFFSET` | 2 | source blocks past an epoch's end before it is released |
//! | `EPOCH_MANAGER_POLL_MS` | 500 (at least 10) | source head polling interval |
//! | `CATCH_UP` | `in-order` | `in-order` (every missed epoch, paced) or `skip` (one `skipEpochs` to the newest) |
//! | `CATCH_UP_MAX_PER_SEC` | 5 (at least 1) | in-order releases per second |
//! | `SEND_DELAY_MS` | 0 | standby delay: a second manager that only takes over when the first is gone |
//! | `RELEASE_TIMEOUT_SECS` | 20 (at least 1) | longest wait for one release's receipt before it is settled from the contract; 20 fits a release inside the Lambda's one-minute run (code default: 90) |

use std::time::Duration;

use sequencer_core::epochs::CatchUp;
use sequencer_core::Address;

use super::EpochManagerError;
use crate::config::ConfigError;

/// Configuration of an [`EpochManager`](super::EpochManager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochManagerConfig {
    /// The data market.
    pub market: Address,
    /// Blocks the source chain must be past an epoch's end before it is released (default
    /// [`Self::DEFAULT_FINALITY_OFFSET`]).
    pub finality_offset: u64,
    /// Source head polling interval (default 500 ms): the most a release waits after it is due,
    /// besides mining.
    pub poll_interval: Duration,
    /// First block of the first epoch when the market has none released yet. `None`: the block
    /// after the source head seen at the first poll (epochs from now on).
    pub first_begin: Option<u64>,
    /// Catch-up policy (default [`CatchUp::InOrder`] at 5 a second).
    pub catch_up: CatchUp,
    /// Standby delay (default 0): wait this long after an epoch is first seen due, re-read the
    /// contract, and only then send. Two managers with delay 0 both send when an epoch comes due
    /// and the loser's transaction fails on chain (counted as raced, gas spent); a standby with a
    /// delay longer than a protocol-chain block plus a poll never sends while the primary is
    /// healthy, and takes over by itself when it is not.
    pub send_delay: Duration,
    /// Longest wait for one release's receipt before it is settled by reading the contract
    /// (default 90 s).
    pub release_timeout: Duration,
}

impl EpochManagerConfig {
    /// Default finality offset: 2 blocks. The epoch's last block must exist (offset 0 already
    /// guarantees that), and a reorg shallower than the offset must not replace any of its
    /// blocks after release: 2 matches the chain client's `CONFIRMATIONS` default, the depth the
    /// sequencer already trusts for `EpochReleased`, and costs two blocks of lag (a few seconds
    /// on an L2, 24 s on Ethereum). A source chain with deeper reorgs needs a larger offset
    /// (Ethereum finality is ~64 blocks); the default is sized for local chains and fast L2s.
    pub const DEFAULT_FINALITY_OFFSET: u64 = 2;

    /// Release timeout read from the environment when `RELEASE_TIMEOUT_SECS` is not set: a
    /// release and its settling fit inside the Lambda's one-minute run.
    pub const ENV_RELEASE_TIMEOUT: Duration = Duration::from_secs(20);

    /// Defaults for `market`.
    pub fn new(market: Address) -> Self {
        Self {
            market,
            finality_offset: Self::DEFAULT_FINALITY_OFFSET,
            poll_interval: Duration::from_millis(500),
            first_begin: None,
            catch_up: CatchUp::default(),
            send_delay: Duration::ZERO,
            release_timeout: Duration::from_secs(90),
        }
    }

    /// From the process environment (the table in the module docs).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let num = |k: &str, d: u64| -> Result<u64, ConfigError> {
            match get(k) {
                None => Ok(d),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError(format!("{k} is not a number: {v:?}"))),
            }
        };
        let market = get("DATA_MARKET_ADDRESS")
            .ok_or_else(|| ConfigError("DATA_MARKET_ADDRESS is required".into()))?;
        let market: Address = market.trim().parse().map_err(|_| {
            ConfigError(format!("DATA_MARKET_ADDRESS is not an address: {market:?}"))
        })?;
        let mut cfg = Self::new(market);
        cfg.finality_offset = num("FINALITY_OFFSET", cfg.finality_offset)?;
        cfg.poll_interval = Duration::from_millis(num("EPOCH_MANAGER_POLL_MS", 500)?.max(10));
        cfg.send_delay = Duration::from_millis(num("SEND_DELAY_MS", 0)?);
        cfg.release_timeout = Duration::from_secs(
            num("RELEASE_TIMEOUT_SECS", Self::ENV_RELEASE_TIMEOUT.as_secs())?.max(1),
        );
        let rate = u32::try_from(
            num(
                "CATCH_UP_MAX_PER_SEC",
                u64::from(CatchUp::DEFAULT_MAX_PER_SEC),
            )?
            .max(1),
        )
        .unwrap_or(u32::MAX);
        cfg.catch_up = match get("CATCH_UP").as_deref().map(str::trim) {
            None | Some("in-order") => CatchUp::InOrder { max_per_sec: rate },
            Some("skip") => CatchUp::SkipToHead { max_backlog: 1 },
            Some(other) => {
                return Err(ConfigError(format!(
                    "CATCH_UP must be in-order or skip, not {other:?}"
                )))
            }
        };
        Ok(cfg)
    }

    /// Settings no poll can work with: a zero poll interval or a zero catch-up bound.
    pub(super) fn validate(&self) -> Result<(), EpochManagerError> {
        if self.poll_interval.is_zero() {
            return Err(EpochManagerError::Config("poll interval is 0".into()));
        }
        match self.catch_up {
            CatchUp::InOrder { max_per_sec: 0 } => Err(EpochManagerError::Config(
                "catch-up rate max_per_sec is 0".into(),
            )),
            CatchUp::SkipToHead { max_backlog: 0 } => Err(EpochManagerError::Config(
                "skip-to-head max_backlog is 0".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k: &str| {
            pairs
                .iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const MARKET: (&str, &str) = (
        "DATA_MARKET_ADDRESS",
        "0x1111111111111111111111111111111111111111",
    );

    #[test]
    fn defaults_from_an_empty_environment_and_every_override() {
        let c = EpochManagerConfig::from_lookup(env(&[MARKET])).expect("valid");
        assert_eq!(c.finality_offset, 2);
        assert_eq!(c.poll_interval, Duration::from_millis(500));
        assert_eq!(c.release_timeout, Duration::from_secs(20));
        assert_eq!(c.catch_up, CatchUp::InOrder { max_per_sec: 5 });
        assert_eq!(c.send_delay, Duration::ZERO);
        assert_eq!(c.first_begin, None);
        let c = EpochManagerConfig::from_lookup(env(&[
            MARKET,
            ("FINALITY_OFFSET", "6"),
            ("EPOCH_MANAGER_POLL_MS", "1"),
            ("CATCH_UP", "skip"),
            ("SEND_DELAY_MS", "1500"),
            ("RELEASE_TIMEOUT_SECS", "0"),
        ]))
        .expect("valid");
        assert_eq!(c.finality_offset, 6);
        assert_eq!(c.poll_interval, Duration::from_millis(10), "at least 10 ms");
        assert_eq!(c.catch_up, CatchUp::SkipToHead { max_backlog: 1 });
        assert_eq!(c.send_delay, Duration::from_millis(1500));
        assert_eq!(c.release_timeout, Duration::from_secs(1), "at least 1 s");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        for (pairs, what) in [
            (vec![], "DATA_MARKET_ADDRESS"),
            (vec![("DATA_MARKET_ADDRESS", "0x12")], "DATA_MARKET_ADDRESS"),
            (vec![MARKET, ("FINALITY_OFFSET", "-1")], "FINALITY_OFFSET"),
            (vec![MARKET, ("CATCH_UP", "fast")], "CATCH_UP"),
        ] {
            let e = EpochManagerConfig::from_lookup(env(&pairs)).expect_err(what);
            assert!(e.to_string().contains(what), "{e}");
        }
        let zero = EpochManagerConfig {
            catch_up: CatchUp::InOrder { max_per_sec: 0 },
            ..EpochManagerConfig::new(Address::ZERO)
        };
        assert!(matches!(zero.validate(), Err(EpochManagerError::Config(_))));
        let zero = EpochManagerConfig {
            poll_interval: Duration::ZERO,
            ..EpochManagerConfig::new(Address::ZERO)
        };
        assert!(matches!(zero.validate(), Err(EpochManagerError::Config(_))));
    }
}
