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

/// Default `CONFIRMATIONS` (release follower depth).
pub const DEFAULT_CONFIRMATIONS: u64 = 2;
/// Default `CHAIN_CONFIRMATIONS`: 1 = a write is done once its block is the canonical head or
/// below it (what automine nodes, the local runner and the tests give without extra blocks).
pub const DEFAULT_CHAIN_CONFIRMATIONS: u64 = 1;
/// Default `GAS_LIMIT_CEILING`.
pub const DEFAULT_GAS_LIMIT_CEILING: u64 = 15_000_000;
/// Default `GAS_MARGIN_PERCENT`.
pub const DEFAULT_GAS_MARGIN_PERCENT: u64 = 105;
/// Default `MAX_FEE_PER_GAS_CEILING_WEI`: 200 gwei. With the default gas ceiling of 15 M, no
/// single transaction can cost more than 3 ETH-equivalent even if every bump runs to the top;
/// operators of a cheap chain should set it far lower for their fee market.
pub const DEFAULT_MAX_FEE_CEILING_WEI: u128 = 200_000_000_000;
/// Default `FEE_BUMP_PERCENT`: geth's pool needs 10 %; 15 leaves room for integer rounding and
/// nodes with a stricter rule, and reaches 2× the first fee in 5 replacements.
pub const DEFAULT_FEE_BUMP_PERCENT: u64 = 15;
/// Smallest `FEE_BUMP_PERCENT`: geth refuses a replacement that raises either fee by less than
/// 10 % (`replacement transaction underpriced`).
pub const MIN_FEE_BUMP_PERCENT: u64 = 10;
/// Default `TX_REPLACE_AFTER_MS`: several blocks at the usual 2–12 s block times, and a quarter
/// of the default `RECEIPT_TIMEOUT_SECS`, so one write gets up to three replacements.
pub const DEFAULT_REPLACE_AFTER_MS: u64 = 30_000;
/// Default `MAX_PENDING_TXS`: geth keeps at least 16 executable transactions per account in
/// its pool (`txpool.accountslots`), so 16 sent and not yet mined are accepted by any node;
/// 16 batches of 3 per block keep five blocks' worth in flight.
pub const DEFAULT_MAX_PENDING_TXS: usize = 16;
const DEFAULT_RPC_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_MAX_RETRIES: u32 = 6;
const DEFAULT_BACKOFF_INITIAL_MS: u64 = 200;
const DEFAULT_CALL_BUDGET_MS: u64 = 60_000;
const DEFAULT_BACKOFF_MAX_MS: u64 = 5_000;
const DEFAULT_RECEIPT_POLL_MS: u64 = 250;
const DEFAULT_RECEIPT_TIMEOUT_SECS: u64 = 120;
const DEFAULT_PENDING_TIMEOUT_SECS: u64 = 180;
const DEFAULT_SLOT_CACHE_TTL_SECS: u64 = 60;
const DEFAULT_LOG_RANGE_BLOCKS: u64 = 5_000;

/// Everything the chain client needs. `Debug` never shows the private key, nor the RPC URL's
/// path, query or userinfo (where hosted nodes put the API key).
#[derive(Clone)]
pub struct ChainConfig {
    /// `RPC_URL` (required): JSON-RPC endpoint of the protocol chain. Treated as a secret: only
    /// its scheme and host are ever shown ([`crate::redact_url`]).
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
    /// `CHAIN_CONFIRMATIONS` (default 1): a write (batch anchored, submissions ended, admin
    /// call) is reported done only once its block is this many blocks deep (1 = the block
    /// itself is canonical, N = `head >= block + N − 1`), and then re-checked: if the block left
    /// the canonical chain the write is not done and is sent again (idempotently). With an
    /// automining node and no other traffic, N > 1 needs someone to mine blocks.
    pub chain_confirmations: u64,
    /// `MAX_FEE_PER_GAS_CEILING_WEI` (default 200 gwei): no transaction is ever signed with a
    /// higher max fee (nor priority fee). At the ceiling a stuck transaction is not replaced
    /// again; the writer keeps waiting for it until `RECEIPT_TIMEOUT_SECS`.
    pub max_fee_ceiling: u128,
    /// `FEE_BUMP_PERCENT` (default 15, at least 10): a replacement raises both the max fee and
    /// the priority fee by at least this much (or to the node's fresh estimate, if higher).
    pub fee_bump_percent: u64,
    /// `TX_REPLACE_AFTER_MS` (default 30 000): a sent transaction without a receipt this long is
    /// replaced (same nonce, bumped fees, same call).
    pub replace_after: Duration,
    /// `GAS_LIMIT_CEILING` (default 15 000 000): a transaction whose estimate exceeds it is not
    /// sent ([`ChainError::GasAboveCeiling`]); the limit sent is min(estimate × margin, ceiling).
    pub gas_limit_ceiling: u64,
    /// `GAS_MARGIN_PERCENT` (default 105): gas limit = estimate × this / 100. A block takes a
    /// transaction while its limit fits, so the margin costs block space (chain/README.md).
    pub gas_margin_percent: u64,
    /// `MAX_PENDING_TXS` (default 16, at least 1): a pipelined write (an epoch's batches) has
    /// at most this many transactions sent and not yet mined.
    pub max_pending_txs: usize,
    /// `RPC_TIMEOUT_MS` (default 10 000): per HTTP request.
    pub rpc_timeout: Duration,
    /// `RPC_MAX_RETRIES` (default 6): retries of one call on transient errors (connection
    /// refused or reset, timeouts, HTTP 429/5xx, rate-limit error codes). Reverts never retry.
    pub max_retries: u32,
    /// `RPC_CALL_BUDGET_MS` (default 60 000): the longest one call may take, its retries,
    /// backoffs and each attempt's wait included; past it the call fails with a retryable error
    /// instead of outliving the function that made it (the Terraform module sets it below each
    /// function's timeout: verify's 30 s gets 8 s).
    pub call_budget: Duration,
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
            confirmations: DEFAULT_CONFIRMATIONS,
            chain_confirmations: DEFAULT_CHAIN_CONFIRMATIONS,
            max_fee_ceiling: DEFAULT_MAX_FEE_CEILING_WEI,
            fee_bump_percent: DEFAULT_FEE_BUMP_PERCENT,
            replace_after: Duration::from_millis(DEFAULT_REPLACE_AFTER_MS),
            gas_limit_ceiling: DEFAULT_GAS_LIMIT_CEILING,
            gas_margin_percent: DEFAULT_GAS_MARGIN_PERCENT,
            max_pending_txs: DEFAULT_MAX_PENDING_TXS,
            rpc_timeout: Duration::from_millis(DEFAULT_RPC_TIMEOUT_MS),
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_initial: Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS),
            call_budget: Duration::from_millis(DEFAULT_CALL_BUDGET_MS),
            backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
            receipt_poll: Duration::from_millis(DEFAULT_RECEIPT_POLL_MS),
            receipt_timeout: Duration::from_secs(DEFAULT_RECEIPT_TIMEOUT_SECS),
            pending_timeout: Duration::from_secs(DEFAULT_PENDING_TIMEOUT_SECS),
            slot_cache_ttl: Duration::from_secs(DEFAULT_SLOT_CACHE_TTL_SECS),
            log_range: DEFAULT_LOG_RANGE_BLOCKS,
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
        c.confirmations = num("CONFIRMATIONS", DEFAULT_CONFIRMATIONS)?;
        c.chain_confirmations = num("CHAIN_CONFIRMATIONS", DEFAULT_CHAIN_CONFIRMATIONS)?.max(1);
        if let Some(v) = get("MAX_FEE_PER_GAS_CEILING_WEI") {
            c.max_fee_ceiling = v.parse::<u128>().map_err(|e| {
                ChainError::Config(format!(
                    "MAX_FEE_PER_GAS_CEILING_WEI: not a non-negative integer: {e}"
                ))
            })?;
        }
        c.fee_bump_percent =
            num("FEE_BUMP_PERCENT", DEFAULT_FEE_BUMP_PERCENT)?.max(MIN_FEE_BUMP_PERCENT);
        c.replace_after =
            Duration::from_millis(num("TX_REPLACE_AFTER_MS", DEFAULT_REPLACE_AFTER_MS)?.max(1));
        c.gas_limit_ceiling = num("GAS_LIMIT_CEILING", DEFAULT_GAS_LIMIT_CEILING)?;
        c.gas_margin_percent = num("GAS_MARGIN_PERCENT", DEFAULT_GAS_MARGIN_PERCENT)?.max(100);
        c.max_pending_txs =
            usize::try_from(num("MAX_PENDING_TXS", DEFAULT_MAX_PENDING_TXS as u64)?.max(1))
                .map_err(|_| ChainError::Config("MAX_PENDING_TXS is too large".into()))?;
        c.rpc_timeout = Duration::from_millis(num("RPC_TIMEOUT_MS", DEFAULT_RPC_TIMEOUT_MS)?);
        c.max_retries = u32::try_from(num("RPC_MAX_RETRIES", u64::from(DEFAULT_MAX_RETRIES))?)
            .map_err(|_| ChainError::Config("RPC_MAX_RETRIES is too large".into()))?;
        c.backoff_initial =
            Duration::from_millis(num("RPC_BACKOFF_INITIAL_MS", DEFAULT_BACKOFF_INITIAL_MS)?);
        c.backoff_max = Duration::from_millis(num("RPC_BACKOFF_MAX_MS", DEFAULT_BACKOFF_MAX_MS)?);
        c.call_budget =
            Duration::from_millis(num("RPC_CALL_BUDGET_MS", DEFAULT_CALL_BUDGET_MS)?.max(1));
        c.receipt_poll =
            Duration::from_millis(num("RECEIPT_POLL_MS", DEFAULT_RECEIPT_POLL_MS)?.max(1));
        c.receipt_timeout =
            Duration::from_secs(num("RECEIPT_TIMEOUT_SECS", DEFAULT_RECEIPT_TIMEOUT_SECS)?);
        c.pending_timeout =
            Duration::from_secs(num("PENDING_TIMEOUT_SECS", DEFAULT_PENDING_TIMEOUT_SECS)?);
        c.slot_cache_ttl =
            Duration::from_secs(num("SLOT_CACHE_TTL_SECS", DEFAULT_SLOT_CACHE_TTL_SECS)?);
        c.log_range = num("LOG_RANGE_BLOCKS", DEFAULT_LOG_RANGE_BLOCKS)?.max(1);
        Ok(c)
    }
}

impl fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainConfig")
            .field("rpc_url", &crate::redact_url(&self.rpc_url))
            .field("protocol_state", &self.protocol_state)
            .field("data_market", &self.data_market)
            .field("signer", &self.signer)
            .field("chain_id", &self.chain_id)
            .field("confirmations", &self.confirmations)
            .field("chain_confirmations", &self.chain_confirmations)
            .field("max_fee_ceiling", &self.max_fee_ceiling)
            .field("fee_bump_percent", &self.fee_bump_percent)
            .field("replace_after", &self.replace_after)
            .field("gas_limit_ceiling", &self.gas_limit_ceiling)
            .field("gas_margin_percent", &self.gas_margin_percent)
            .field("max_pending_txs", &self.max_pending_txs)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("max_retries", &self.max_retries)
            .field("call_budget", &self.call_budget)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("receipt_poll", &self.receipt_poll)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("pending_timeout", &self.pending_timeout)
            .field("slot_cache_ttl", &self.slot_cache_ttl)
            .field("log_range", &self.log_range)
            .finish()
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

    #[test]
    fn debug_never_shows_the_rpc_key() {
        let c = ChainConfig::from_lookup(lookup(&[
            (
                "RPC_URL",
                "https://u:pw@node.example/v3/SECRET1?apikey=SECRET2",
            ),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            ),
        ]))
        .expect("config");
        let shown = format!("{c:?}");
        for secret in ["SECRET1", "SECRET2", "pw"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("https://node.example"), "{shown}");
    }

    #[test]
    fn writer_settings_and_their_floors() {
        let base = [
            ("RPC_URL", "http://x"),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            ),
        ];
        let c = ChainConfig::from_lookup(lookup(&base)).expect("config");
        assert_eq!(c.chain_confirmations, DEFAULT_CHAIN_CONFIRMATIONS);
        assert_eq!(c.max_fee_ceiling, DEFAULT_MAX_FEE_CEILING_WEI);
        assert_eq!(c.fee_bump_percent, DEFAULT_FEE_BUMP_PERCENT);
        let mut v = base.to_vec();
        v.extend([
            ("CHAIN_CONFIRMATIONS", "0"),
            ("FEE_BUMP_PERCENT", "3"),
            (
                "MAX_FEE_PER_GAS_CEILING_WEI",
                "340282366920938463463374607431768211455",
            ),
            ("TX_REPLACE_AFTER_MS", "1500"),
        ]);
        let c = ChainConfig::from_lookup(lookup(&v)).expect("config");
        assert_eq!(c.chain_confirmations, 1, "0 means the block itself");
        assert_eq!(
            c.fee_bump_percent, MIN_FEE_BUMP_PERCENT,
            "below what nodes accept"
        );
        assert_eq!(c.max_fee_ceiling, u128::MAX);
        assert_eq!(c.replace_after, Duration::from_millis(1500));
        let mut bad = base.to_vec();
        bad.push(("MAX_FEE_PER_GAS_CEILING_WEI", "20gwei"));
        assert!(ChainConfig::from_lookup(lookup(&bad)).is_err());
    }
}
