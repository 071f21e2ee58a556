//! Shared helpers of the anvil-backed tests: find anvil (skip loudly, or fail under
//! `SEQ_REQUIRE_SERVICES=1`), spawn it, deploy and configure a market.

#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use alloy::{
    hex,
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, Bytes, TxHash, B256},
    providers::Provider,
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use sequencer_chain::{
    deploy::{deploy_local, DeployPlan, Deployment},
    market::TIME_SCALE,
    ChainClient, ChainConfig, Windows,
};

/// `ANVIL_BIN`, or a loud skip (a panic under `SEQ_REQUIRE_SERVICES=1`).
pub fn anvil_bin(test: &str) -> Option<PathBuf> {
    sequencer_testsupport::anvil_bin(test)
}

pub fn spawn_anvil(bin: &PathBuf, port: Option<u16>) -> AnvilInstance {
    let mut a = Anvil::new().path(bin);
    if let Some(p) = port {
        a = a.port(p);
    }
    a.try_spawn().expect("spawn anvil")
}

pub fn key_hex(anvil: &AnvilInstance, i: usize) -> String {
    format!("0x{}", hex::encode(anvil.keys()[i].to_bytes()))
}

/// Fast-polling config for local tests.
pub fn test_config(endpoint: &str, key: Option<String>) -> ChainConfig {
    let mut c = ChainConfig::new(endpoint, Address::ZERO);
    c.signer = key.map(sequencer_chain::SignerSource::PrivateKey);
    c.backoff_initial = Duration::from_millis(100);
    c.backoff_max = Duration::from_millis(1_000);
    c.max_retries = 12;
    c.receipt_poll = Duration::from_millis(50);
    c.receipt_timeout = Duration::from_secs(20);
    c.pending_timeout = Duration::from_secs(20);
    c
}

pub struct Env {
    pub anvil: AnvilInstance,
    /// Owner, sequencer and epoch manager (anvil key 0), bound to the deployed contract.
    pub client: ChainClient,
    pub deployment: Deployment,
}

impl Env {
    pub fn market(&self) -> Address {
        self.deployment.data_market
    }

    /// A client for the same contract with anvil key `i` (or none).
    pub async fn client_with_key(&self, i: Option<usize>) -> ChainClient {
        let mut cfg = test_config(&self.anvil.endpoint(), i.map(|i| key_hex(&self.anvil, i)));
        cfg.protocol_state = self.deployment.protocol_state;
        ChainClient::connect(cfg).await.expect("connect")
    }
}

pub async fn deploy(anvil: &AnvilInstance, plan: &DeployPlan) -> (ChainClient, Deployment) {
    let cfg = test_config(&anvil.endpoint(), Some(key_hex(anvil, 0)));
    let client = ChainClient::connect(cfg).await.expect("connect");
    deploy_local(&client, plan).await.expect("deploy")
}

pub async fn setup(test: &str, windows: Windows) -> Option<Env> {
    let bin = anvil_bin(test)?;
    let anvil = spawn_anvil(&bin, None);
    let plan = DeployPlan {
        slots: 5,
        windows,
        ..DeployPlan::default()
    };
    let (client, deployment) = deploy(&anvil, &plan).await;
    Some(Env {
        anvil,
        client,
        deployment,
    })
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

pub fn root(n: u8) -> B256 {
    B256::repeat_byte(n)
}

pub const CID_A: &str = "bafkreiaxlemxcp4g3jmhhdmd6tb5ojtzhmm2wwbkwsbxmhvyyhrwivzz4i";
pub const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

/// Our pending transaction with `nonce` in anvil's pool: (hash, max fee, priority fee).
pub async fn pooled(c: &ChainClient, from: Address, nonce: u64) -> Option<(TxHash, u128, u128)> {
    let pool: serde_json::Value = c
        .provider()
        .raw_request("txpool_content".into(), ())
        .await
        .expect("txpool_content");
    let ours = pool["pending"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&from.to_string()))?
        .1;
    let tx = &ours[nonce.to_string()];
    let hex = |k: &str| u128::from_str_radix(tx[k].as_str()?.trim_start_matches("0x"), 16).ok();
    Some((
        tx["hash"].as_str()?.parse().ok()?,
        hex("maxFeePerGas")?,
        hex("maxPriorityFeePerGas")?,
    ))
}

/// Waits (up to `secs`) for our pooled transaction with `nonce` whose hash is not `not`.
pub async fn wait_pooled(
    c: &ChainClient,
    from: Address,
    nonce: u64,
    not: Option<TxHash>,
    secs: u64,
) -> (TxHash, u128, u128) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = pooled(c, from, nonce).await.filter(|t| Some(t.0) != not) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pooled transaction with nonce {nonce} other than {not:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Calls a view with the raw bytes of `call` and checks that the answer is exactly `C`'s return
/// shape: decoded with validation and re-encoded to the same bytes.
pub async fn exact<C: SolCall>(c: &ChainClient, to: Address, call: C) -> C::Return {
    let req = TransactionRequest::default()
        .to(to)
        .input(Bytes::from(call.abi_encode()).into());
    let raw = c.provider().call(req).await.unwrap_or_else(|e| {
        panic!("{} reverted: {e}", C::SIGNATURE);
    });
    let ret = C::abi_decode_returns_validate(&raw)
        .unwrap_or_else(|e| panic!("{} does not decode in Powerloom's shape: {e}", C::SIGNATURE));
    assert_eq!(
        C::abi_encode_returns(&ret),
        raw.to_vec(),
        "{}: the answer is not exactly Powerloom's shape",
        C::SIGNATURE
    );
    ret
}

/// A market of `epochs_per_day` epochs a day, each `epoch_size` blocks of a 2 s source chain,
/// with daily quota `quota`, 5 simulated slots.
pub fn settings(epoch_size: u64, epochs_per_day: u64, quota: u64) -> DeployPlan {
    DeployPlan {
        slots: 5,
        epoch_size,
        windows: Windows {
            snapshot_blocks: 20,
            batch_blocks: 1_000,
        },
        source_chain_id: Some(8453),
        source_block_time: 2 * TIME_SCALE,
        day_size: epochs_per_day * epoch_size * 2 * TIME_SCALE,
        daily_snapshot_quota: quota,
        ..DeployPlan::default()
    }
}
