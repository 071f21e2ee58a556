//! Client configuration, read from environment variables (see [`ChainConfig::from_env`]).

use std::{fmt, str::FromStr, time::Duration};

use alloy::primitives::Address;

use crate::ChainError;

/// Where the client's signing key comes from. Never printed: `Debug` redacts the secret.
#[derive(Clone)]
pub enum SignerSource {
    /// A hex secp256k1 private key (`SIGNER_PRIVATE_KEY`, with or without `0x`).
    PrivateKey(String),
    /// An AWS KMS key id or ARN (`KMS_KEY_ID`); needs the `aws-kms` cargo feature.
    Kms(String),
}

impl fmt::Debug for SignerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PrivateKey(_) => f.write_str("PrivateKey(<redacted>)"),
            Self::Kms(id) => f.debug_tuple("Kms").field(id).finish(),
        }
    }
}

/// Everything the chain client needs. `Debug` never shows the private key.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// `RPC_URL` (required): JSON-RPC endpoint of the protocol chain.
    pub rpc_url: String,
    /// `PROTOCOL_STATE_ADDRESS` (required): the ProtocolState contract.
    pub protocol_state: Address,
    /// `DATA_MARKET_ADDRESS` (optional): the market this deployment serves, for callers that
    /// want a default; every client method still takes the market explicitly.
    pub data_market: Option<Address>,
    /// `SIGNER_PRIVATE_KEY` or `KMS_KEY_ID` (optional): without one the client is read-only.
    pub signer: Option<SignerSource>,
    /// `CHAIN_ID` (optional): checked against the node's when set; otherwise read from the node.
    pub chain_id: Option<u64>,
    /// `CONFIRMATIONS` (default 2): an `EpochReleased` in block `b` is reported once
    /// `head >= b + CONFIRMATIONS`, so reorgs shallower than that never show a release that
    /// later vanishes. 0 reports at the head.
    pub confirmations: u64,
    /// `GAS_LIMIT_CEILING` (default 15 000 000): a transaction whose estimate exceeds it is not
    /// sent ([`ChainError::GasAboveCeiling`]); the limit sent is min(estimate × margin, ceiling).
    pub gas_limit_ceiling: u64,
    /// `GAS_MARGIN_PERCENT` (default 120): gas limit = estimate × this / 100.
    pub gas_margin_percent: u64,
    /// `RPC_TIMEOUT_MS` (default 10 000): per HTTP request.
    pub rpc_timeout: Duration,
    /// `RPC_MAX_RETRIES` (default 6): retries of one call on transient errors (connection
    /// refused or reset, timeouts, HTTP 429/5xx, rate-limit error codes). Reverts never retry.
    pub max_retries: u32,
    /// `RPC_BACKOFF_INITIAL_MS` (default 200): first backoff; doubles per retry.
    pub backoff_initial: Duration,
    /// `RPC_BACKOFF_MAX_MS` (default 5 000): backoff cap.
    pub backoff_max: Duration,
    /// `RECEIPT_POLL_MS` (default 250): receipt and pending-nonce polling interval.
    pub receipt_poll: Duration,
    /// `RECEIPT_TIMEOUT_SECS` (default 120): give up waiting for one receipt (retryable error;
    /// the retry finds the transaction pending or anchored and does not send it twice).
    pub receipt_timeout: Duration,
    /// `PENDING_TIMEOUT_SECS` (default 180): how long to wait for transactions from our key
    /// that a previous writer left pending (pending nonce > latest) before sending anything.
    pub pending_timeout: Duration,
    /// `SLOT_CACHE_TTL_SECS` (default 60): how long a slot → snapshotter lookup is cached.
    pub slot_cache_ttl: Duration,
    /// `LOG_RANGE_BLOCKS` (default 5 000): largest block range per `eth_getLogs` call.
    pub log_range: u64,
}

impl ChainConfig {
    /// A config with the defaults above for a node and contract, no signer.
    pub fn new(rpc_url: impl Into<String>, protocol_state: Address) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            protocol_state,
            data_market: None,
            signer: None,
            chain_id: None,
            confirmations: 2,
            gas_limit_ceiling: 15_000_000,
            gas_margin_percent: 120,
            rpc_timeout: Duration::from_millis(10_000),
            max_retries: 6,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_millis(5_000),
            receipt_poll: Duration::from_millis(250),
            receipt_timeout: Duration::from_secs(120),
            pending_timeout: Duration::from_secs(180),
            slot_cache_ttl: Duration::from_secs(60),
            log_range: 5_000,
        }
    }

    /// Sets a local private key signer.
    #[must_use]
    pub fn with_private_key(mut self, key: impl Into<String>) -> Self {
        self.signer = Some(SignerSource::PrivateKey(key.into()));
        self
    }

    /// Reads the process environment; see the field docs for names and defaults.
    pub fn from_env() -> Result<Self, ChainError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Self::from_env`] over any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ChainError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let rpc_url =
            get("RPC_URL").ok_or_else(|| ChainError::Config("RPC_URL is not set".into()))?;
        let protocol_state = parse_address(
            "PROTOCOL_STATE_ADDRESS",
            &get("PROTOCOL_STATE_ADDRESS")
                .ok_or_else(|| ChainError::Config("PROTOCOL_STATE_ADDRESS is not set".into()))?,
        )?;
        let mut c = Self::new(rpc_url, protocol_state);
        if let Some(v) = get("DATA_MARKET_ADDRESS") {
            c.data_market = Some(parse_address("DATA_MARKET_ADDRESS", &v)?);
        }
        c.signer = match (get("SIGNER_PRIVATE_KEY"), get("KMS_KEY_ID")) {
            (Some(_), Some(_)) => {
                return Err(ChainError::Config(
                    "set only one of SIGNER_PRIVATE_KEY and KMS_KEY_ID".into(),
                ))
            }
            (Some(k), None) => Some(SignerSource::PrivateKey(k)),
            (None, Some(id)) => Some(SignerSource::Kms(id)),
            (None, None) => None,
        };
        if let Some(v) = get("CHAIN_ID") {
            c.chain_id = Some(parse_num("CHAIN_ID", &v)?);
        }
        let num = |name: &str, d: u64| -> Result<u64, ChainError> {
            get(name).map_or(Ok(d), |v| parse_num(name, &v))
        };
        c.confirmations = num("CONFIRMATIONS", c.confirmations)?;
        c.gas_limit_ceiling = num("GAS_LIMIT_CEILING", c.gas_limit_ceiling)?;
        c.gas_margin_percent = num("GAS_MARGIN_PERCENT", c.gas_margin_percent)?.max(100);
        c.rpc_timeout = Duration::from_millis(num("RPC_TIMEOUT_MS", 10_000)?);
        c.max_retries = u32::try_from(num("RPC_MAX_RETRIES", u64::from(c.max_retries))?)
            .map_err(|_| ChainError::Config("RPC_MAX_RETRIES is too large".into()))?;
        c.backoff_initial = Duration::from_millis(num("RPC_BACKOFF_INITIAL_MS", 200)?);
        c.backoff_max = Duration::from_millis(num("RPC_BACKOFF_MAX_MS", 5_000)?);
        c.receipt_poll = Duration::from_millis(num("RECEIPT_POLL_MS", 250)?.max(1));
        c.receipt_timeout = Duration::from_secs(num("RECEIPT_TIMEOUT_SECS", 120)?);
        c.pending_timeout = Duration::from_secs(num("PENDING_TIMEOUT_SECS", 180)?);
        c.slot_cache_ttl = Duration::from_secs(num("SLOT_CACHE_TTL_SECS", 60)?);
        c.log_range = num("LOG_RANGE_BLOCKS", c.log_range)?.max(1);
        Ok(c)
    }
}

fn parse_address(name: &str, v: &str) -> Result<Address, ChainError> {
    Address::from_str(v).map_err(|e| ChainError::Config(format!("{name}: not an address: {e}")))
}

fn parse_num(name: &str, v: &str) -> Result<u64, ChainError> {
    v.parse::<u64>()
        .map_err(|e| ChainError::Config(format!("{name}: not a non-negative integer: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn defaults_and_overrides() {
        let c = ChainConfig::from_lookup(lookup(&[
            ("RPC_URL", "http://127.0.0.1:8545"),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            ),
            ("CONFIRMATIONS", "5"),
        ]))
        .expect("config");
        assert_eq!(c.confirmations, 5);
        assert_eq!(c.gas_limit_ceiling, 15_000_000);
        assert!(c.signer.is_none() && c.data_market.is_none());
    }

    #[test]
    fn missing_and_bad_values_are_errors() {
        assert!(ChainConfig::from_lookup(lookup(&[])).is_err());
        let base = [
            ("RPC_URL", "http://x"),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            ),
        ];
        let mut bad = base.to_vec();
        bad.push(("CONFIRMATIONS", "-1"));
        assert!(ChainConfig::from_lookup(lookup(&bad)).is_err());
        let mut both = base.to_vec();
        both.push(("SIGNER_PRIVATE_KEY", KEY));
        both.push(("KMS_KEY_ID", "alias/x"));
        assert!(ChainConfig::from_lookup(lookup(&both)).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = ChainConfig::from_lookup(lookup(&[
            ("RPC_URL", "http://127.0.0.1:8545"),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            ),
            ("SIGNER_PRIVATE_KEY", KEY),
        ]))
        .expect("config");
        let shown = format!("{c:?}");
        assert!(!shown.contains(&KEY[2..]), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
