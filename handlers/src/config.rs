//! Pipeline settings, from environment variables with documented defaults.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DATA_MARKET_ADDRESS` | (required) | the data market this deployment sequences |
//! | `PROTOCOL_STATE_ADDRESS` | (required) | ProtocolState contract: EIP-712 `verifyingContract` |
//! | `CHAIN_ID` | (required) | protocol chain id: EIP-712 domain |
//! | `MAX_SUBMISSIONS_PER_SLOT` | 2 | accepted submissions per (market, slot, epoch), docs/protocol.md §5 |
//! | `FULL_NODE_ADDRESSES` | empty | comma-separated signers exempt from the per-slot cap |
//! | `CLOSE_GRACE_BLOCKS` | 2 | blocks past the window's end before an epoch is closed |
//! | `BATCH_SIZE` | 500 | ceiling on projects per batch (gas and bytes decide below it) |
//! | `MAX_BATCH_BYTES` | 262144 | bytes of batch JSON per batch |
//! | `MAX_BATCH_GAS` | 7300000 | gas to anchor one batch, as `sequencer_core::anchor_gas` bounds it (four fill a 30 M block at the chain client's 5 % gas margin) |
//! | `ANCHOR_MAX_RECEIVES` | 5 | the anchor queue's `maxReceiveCount`: on its last delivery a funding or nonce failure is recorded `ANCHOR_FAILED` instead of going to the DLQ |
//! | `MIN_SUBMISSIONS_PER_PROJECT` | 1 | projects with fewer accepted submissions are not finalized |
//! | `ANCHOR_GROUP_ID` | `sequencer` | FIFO message group of the anchor queue: one per signing key |
//! | `RECORD_TTL_DAYS` | 30 | the retention: every record of an epoch (epoch, seal, submissions, receipts, counters, batches, rewards) expires this many days after the tick saw its release, all at once; must exceed `RETRY_HORIZON_SECS` |
//! | `RETRY_HORIZON_SECS` | 16500 | longest an epoch's work is retried by its queues: Σ visibility timeout × maxReceiveCount of verify (180 s × 5), finalize (1800 s × 5) and anchor (660 s × 10), as the Terraform module passes it; a retention not above it is refused |
//! | `FINALIZE_CONCURRENCY` | 8 | batch uploads and batch records finalize has in flight at once |
//! | `FINALIZE_RETRY_BUDGET_MS` | 120000 | how long one finalize invocation retries transient failures itself (delays 1 s, doubling to 30 s); 0: never, the queue's visibility timeout decides |
//! | `EPOCH_HORIZON` | 10 | epochs past the newest one the store has recorded that verify still takes up; a message naming a later epoch is counted and not stored |
//! | `MAX_SIMULATIONS_PER_SLOT` | 4 | simulation (epoch 0) receipts kept per slot while they live (`RECORD_TTL_DAYS`); more are counted and not stored |
//! | `CHAIN_CACHE_TTL_SECS` | 60 | how long verify's process keeps a slot's owner, a signer's flag and the slot count |
//! | `CHAIN_CACHE_ENTRIES` | 100000 | entries of each of those caches (owners, flags, unknown headers) |
//! | `UNKNOWN_HEADER_TTL_MS` | 1000 | how long a header the chain did not know is answered "unknown" without asking again |
//!
//! Why `CLOSE_GRACE_BLOCKS` = 2: a submission whose header is the window's last block can still
//! be in the ingress buffer (20 ms linger), in SQS or in a verify batch when the head passes the
//! window. Measured ingress→queue latency is 10–30 ms at p50–p99 on LocalStack and a verify batch
//! takes milliseconds, so two blocks (≥ 2 s on chains with ≥ 1 s blocks, 24 s on Ethereum) cover
//! it with a wide margin while keeping finalization prompt. What arrives after the close is
//! rejected as `late`, never silently dropped.
//!
//! Why `EPOCH_HORIZON` = 10: the tick records a release within seconds, but a stalled tick (a
//! slow RPC node, a failed invocation) can leave a few released epochs unrecorded; ten epochs
//! (minutes on any market) cover that, while a message naming an epoch further out, which no
//! honest snapshotter sends, costs no chain call and leaves no record. `UNKNOWN_HEADER_TTL_MS` is
//! shorter than any protocol chain's block time so that a header which was only "not yet" is
//! asked again at the next try.

use std::collections::BTreeSet;
use std::time::Duration;

use sequencer_core::eip712::{Domain, Verifier};
use sequencer_core::finalize::FinalizeConfig;
use sequencer_core::rules::DEFAULT_MAX_PER_SLOT_EPOCH;
use sequencer_core::Address;

/// Default retention (`RECORD_TTL_DAYS`), days.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;

/// Default retry horizon (`RETRY_HORIZON_SECS`): the Terraform module's queues, verify 180 s × 5
/// receives + finalize 1800 s × 5 + anchor 660 s × 10.
pub const DEFAULT_RETRY_HORIZON_SECS: u64 = 180 * 5 + 1800 * 5 + 660 * 10;

/// A setting that is missing or malformed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Everything the handlers need besides their ports.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The data market.
    pub market: Address,
    /// ProtocolState contract (EIP-712 verifying contract).
    pub protocol_state: Address,
    /// Protocol chain id.
    pub chain_id: u64,
    /// Accepted submissions per (market, slot, epoch).
    pub max_per_slot: u32,
    /// Signers exempt from the cap.
    pub full_nodes: BTreeSet<Address>,
    /// Blocks past the window's end before closing.
    pub close_grace_blocks: u64,
    /// Batching.
    pub finalize: FinalizeConfig,
    /// FIFO group of anchor jobs.
    pub anchor_group: String,
    /// The anchor queue's `maxReceiveCount`: an anchor job's last delivery records a funding or
    /// nonce failure as `ANCHOR_FAILED` (listed and re-anchored with `seqctl epochs`) rather
    /// than leaving the epoch `FINALIZED` behind a job in the DLQ.
    pub anchor_max_receives: u32,
    /// The retention: every record of an epoch expires this long after the tick saw its
    /// release, all together ([`crate::records::Records::expiry_of`]).
    pub record_ttl: Duration,
    /// Longest the queues retry an epoch's work (Σ visibility timeout × maxReceiveCount of the
    /// verify, finalize and anchor queues): the retention must exceed it
    /// ([`PipelineConfig::validate`]).
    pub retry_horizon: Duration,
    /// Batch uploads and batch records finalize has in flight at once.
    pub finalize_concurrency: usize,
    /// How long one finalize invocation retries transient failures itself.
    pub finalize_retry_budget: Duration,
    /// How long one verify invocation waits, in rounds of doubling pauses, for "not yet" answers
    /// (a release or a header block the node has not served yet) before the message goes back
    /// to the queue: `VERIFY_NOT_YET_WAIT_MS`, default 7 000 (well inside verify's 30 s).
    pub verify_not_yet_wait: Duration,
    /// Longest the tick holds an epoch open past its window and grace waiting for the close
    /// watermark (every ingress boot's tally in, verify caught up with them):
    /// `WATERMARK_MAX_WAIT_MS`, default 240 000 (verify's visibility timeout of 180 s plus a
    /// minute, so one redelivery of a submission that met a transient failure still counts;
    /// the Terraform module derives it from that timeout).
    pub watermark_max_wait: Duration,
    /// Epochs past the newest recorded one that verify takes up (the rest: counted, not stored).
    pub epoch_horizon: u64,
    /// Simulation receipts kept per slot (the rest: counted, not stored).
    pub max_simulations_per_slot: u32,
    /// How long slot owners, flags and the slot count are cached (`chain_cache`).
    pub chain_cache_ttl: Duration,
    /// Entries per chain cache.
    pub chain_cache_entries: usize,
    /// How long a header the chain did not know is remembered as unknown.
    pub unknown_header_ttl: Duration,
}

impl PipelineConfig {
    /// Defaults for a market.
    pub fn new(market: Address, protocol_state: Address, chain_id: u64) -> Self {
        Self {
            market,
            protocol_state,
            chain_id,
            max_per_slot: DEFAULT_MAX_PER_SLOT_EPOCH,
            full_nodes: BTreeSet::new(),
            close_grace_blocks: 2,
            finalize: FinalizeConfig::default(),
            anchor_group: "sequencer".into(),
            anchor_max_receives: 5,
            record_ttl: Duration::from_secs(DEFAULT_RETENTION_DAYS * 24 * 3600),
            retry_horizon: Duration::from_secs(DEFAULT_RETRY_HORIZON_SECS),
            finalize_concurrency: 8,
            finalize_retry_budget: Duration::from_secs(120),
            verify_not_yet_wait: Duration::from_millis(7_000),
            watermark_max_wait: Duration::from_millis(240_000),
            epoch_horizon: 10,
            max_simulations_per_slot: 4,
            chain_cache_ttl: Duration::from_secs(60),
            chain_cache_entries: 100_000,
            unknown_header_ttl: Duration::from_millis(1_000),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let addr = |k: &str| -> Result<Address, ConfigError> {
            let v = get(k).ok_or_else(|| ConfigError(format!("{k} is required")))?;
            v.trim()
                .parse()
                .map_err(|_| ConfigError(format!("{k} is not an address: {v:?}")))
        };
        fn num<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            k: &str,
            default: T,
        ) -> Result<T, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError(format!("{k} is not a number: {v:?}"))),
            }
        }
        let mut c = Self::new(
            addr("DATA_MARKET_ADDRESS")?,
            addr("PROTOCOL_STATE_ADDRESS")?,
            num(&get, "CHAIN_ID", 0u64)?,
        );
        if c.chain_id == 0 {
            return Err(ConfigError("CHAIN_ID is required".into()));
        }
        c.max_per_slot = num(&get, "MAX_SUBMISSIONS_PER_SLOT", c.max_per_slot)?;
        c.close_grace_blocks = num(&get, "CLOSE_GRACE_BLOCKS", c.close_grace_blocks)?;
        c.verify_not_yet_wait = Duration::from_millis(num(
            &get,
            "VERIFY_NOT_YET_WAIT_MS",
            u64::try_from(c.verify_not_yet_wait.as_millis()).unwrap_or(u64::MAX),
        )?);
        c.watermark_max_wait = Duration::from_millis(num(
            &get,
            "WATERMARK_MAX_WAIT_MS",
            u64::try_from(c.watermark_max_wait.as_millis()).unwrap_or(u64::MAX),
        )?);
        c.finalize.batch_size = num(&get, "BATCH_SIZE", c.finalize.batch_size)?;
        c.finalize.max_batch_bytes = num(&get, "MAX_BATCH_BYTES", c.finalize.max_batch_bytes)?;
        c.finalize.max_batch_gas = num(&get, "MAX_BATCH_GAS", c.finalize.max_batch_gas)?;
        c.anchor_max_receives = num(&get, "ANCHOR_MAX_RECEIVES", c.anchor_max_receives)?;
        c.finalize.min_submissions = num(
            &get,
            "MIN_SUBMISSIONS_PER_PROJECT",
            c.finalize.min_submissions,
        )?;
        if c.finalize.batch_size == 0 {
            return Err(ConfigError("BATCH_SIZE must be at least 1".into()));
        }
        if let Some(g) = get("ANCHOR_GROUP_ID").filter(|g| !g.trim().is_empty()) {
            c.anchor_group = g.trim().to_string();
        }
        c.finalize_concurrency = num(&get, "FINALIZE_CONCURRENCY", c.finalize_concurrency)?;
        if c.finalize_concurrency == 0 {
            return Err(ConfigError(
                "FINALIZE_CONCURRENCY must be at least 1".into(),
            ));
        }
        let budget_ms: u64 = num(
            &get,
            "FINALIZE_RETRY_BUDGET_MS",
            c.finalize_retry_budget.as_millis() as u64,
        )?;
        c.finalize_retry_budget = Duration::from_millis(budget_ms);
        c.epoch_horizon = num(&get, "EPOCH_HORIZON", c.epoch_horizon)?;
        c.max_simulations_per_slot =
            num(&get, "MAX_SIMULATIONS_PER_SLOT", c.max_simulations_per_slot)?;
        c.chain_cache_ttl = Duration::from_secs(num(
            &get,
            "CHAIN_CACHE_TTL_SECS",
            c.chain_cache_ttl.as_secs(),
        )?);
        c.chain_cache_entries = num(&get, "CHAIN_CACHE_ENTRIES", c.chain_cache_entries)?;
        if c.chain_cache_entries == 0 {
            return Err(ConfigError("CHAIN_CACHE_ENTRIES must be at least 1".into()));
        }
        c.unknown_header_ttl = Duration::from_millis(num(
            &get,
            "UNKNOWN_HEADER_TTL_MS",
            c.unknown_header_ttl.as_millis() as u64,
        )?);
        let days: u64 = num(&get, "RECORD_TTL_DAYS", DEFAULT_RETENTION_DAYS)?;
        c.record_ttl = Duration::from_secs(days.saturating_mul(24 * 3600));
        let horizon: u64 = num(&get, "RETRY_HORIZON_SECS", DEFAULT_RETRY_HORIZON_SECS)?;
        c.retry_horizon = Duration::from_secs(horizon);
        if let Some(list) = get("FULL_NODE_ADDRESSES") {
            for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                c.full_nodes.insert(
                    a.parse()
                        .map_err(|_| ConfigError(format!("FULL_NODE_ADDRESSES: {a:?}")))?,
                );
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Refuses settings that break a promise: a retention not above the retry horizon would
    /// let an epoch's records expire under a job the queues still retry (a finalize job
    /// redelivered after its visibility timeout finding its epoch gone, `not recorded` for
    /// ever).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.record_ttl <= self.retry_horizon {
            return Err(ConfigError(format!(
                "RECORD_TTL_DAYS: a retention of {} s does not exceed the retry horizon of {} s \
                 (RETRY_HORIZON_SECS: the queues' visibility timeouts × maxReceiveCount); an \
                 epoch's records would expire while its jobs are still retried",
                self.record_ttl.as_secs(),
                self.retry_horizon.as_secs()
            )));
        }
        Ok(())
    }

    /// The EIP-712 verifier of this market's protocol chain.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(Domain {
            chain_id: self.chain_id,
            verifying_contract: self.protocol_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects() {
        fn env<'a>(
            pairs: &'a [(&'static str, &'static str)],
        ) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
            }
        }
        let base = [
            (
                "DATA_MARKET_ADDRESS",
                "0x1111111111111111111111111111111111111111",
            ),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x2222222222222222222222222222222222222222",
            ),
            ("CHAIN_ID", "31337"),
            (
                "FULL_NODE_ADDRESSES",
                "0x3333333333333333333333333333333333333333, ",
            ),
            ("BATCH_SIZE", "7"),
            ("MAX_BATCH_GAS", "30000000"),
            ("FINALIZE_RETRY_BUDGET_MS", "0"),
        ];
        let c = PipelineConfig::from_lookup(env(&base)).expect("valid");
        assert_eq!(c.finalize.batch_size, 7);
        assert_eq!(c.finalize.max_batch_gas, 30_000_000);
        assert_eq!(c.anchor_max_receives, 5);
        assert_eq!(c.finalize_retry_budget, Duration::ZERO);
        assert_eq!(c.finalize_concurrency, 8);
        assert_eq!(c.full_nodes.len(), 1);
        assert_eq!(c.max_per_slot, 2);
        assert!(PipelineConfig::from_lookup(env(&base[1..])).is_err());
        let bad = [
            (
                "DATA_MARKET_ADDRESS",
                "0x1111111111111111111111111111111111111111",
            ),
            (
                "PROTOCOL_STATE_ADDRESS",
                "0x2222222222222222222222222222222222222222",
            ),
            ("CHAIN_ID", "31337"),
            ("BATCH_SIZE", "0"),
        ];
        assert!(PipelineConfig::from_lookup(env(&bad)).is_err());
    }

    #[test]
    fn a_retention_inside_the_retry_horizon_is_refused() {
        let get = |over: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                over.iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
                    .or_else(|| match k {
                        "DATA_MARKET_ADDRESS" => {
                            Some("0x1111111111111111111111111111111111111111".into())
                        }
                        "PROTOCOL_STATE_ADDRESS" => {
                            Some("0x2222222222222222222222222222222222222222".into())
                        }
                        "CHAIN_ID" => Some("31337".into()),
                        _ => None,
                    })
            }
        };
        let c = PipelineConfig::from_lookup(get(&[])).expect("defaults");
        assert_eq!(c.record_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(c.retry_horizon, Duration::from_secs(16_500));
        // One day covers the module's 4.6 hours of retries.
        assert!(PipelineConfig::from_lookup(get(&[("RECORD_TTL_DAYS", "1")])).is_ok());
        // A day does not cover a horizon of two.
        let err = PipelineConfig::from_lookup(get(&[
            ("RECORD_TTL_DAYS", "1"),
            ("RETRY_HORIZON_SECS", "172800"),
        ]))
        .expect_err("refused");
        assert!(err.to_string().contains("retry horizon"), "{err}");
        // Zero days: records would expire at once.
        assert!(PipelineConfig::from_lookup(get(&[("RECORD_TTL_DAYS", "0")])).is_err());
        // A retention set in code (the simulator's) is held to the same rule.
        let mut short = c.clone();
        short.record_ttl = Duration::from_secs(15 * 60);
        assert!(short.validate().is_err());
    }
}
