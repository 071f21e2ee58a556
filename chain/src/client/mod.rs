//! [`ChainClient`]: the alloy implementation of the chain port.
//!
//! - [`retry`]: every RPC call retries with exponential backoff on transient errors (node down
//!   or restarting, timeouts, HTTP 429/5xx) and comes back with the RPC URL scrubbed; one helper
//!   ([`ChainClient::view`]) does the retried contract view call.
//! - [`reads`]: chain and contract reads (head, blocks, releases, slots, anchors).
//! - [`engine`]: the transaction engine, the single writer. It waits for anything our key left
//!   pending, asks whether the write's effect is already on chain, estimates gas (reverts
//!   decoded, nothing sent), signs with an explicit nonce, and waits for the receipt; a
//!   transaction stuck past `TX_REPLACE_AFTER_MS` is replaced (same nonce, fees bumped, never
//!   above `MAX_FEE_PER_GAS_CEILING_WEI`); a write is reported only once `CHAIN_CONFIRMATIONS`
//!   deep and still canonical.
//! - [`anchoring`]: what anchoring means on chain (a batch recorded for its epoch, an epoch
//!   ended) and the exactly-once `submit_batch` / `end_batch_submissions` over the engine.
//! - [`admin`]: typed owner / epoch-manager calls and local-chain administration.
//! - [`market`]: market settings, the views Powerloom's node reads, day starts, and the
//!   once-per-(market, slot, day) bulk `updateRewards`.

mod admin;
mod anchoring;
mod engine;
mod fees;
mod market;
mod reads;
mod retry;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Instant,
};

use alloy::{
    network::EthereumWallet,
    primitives::Address,
    providers::{Provider, RootProvider},
    rpc::client::RpcClient,
    signers::local::PrivateKeySigner,
    transports::http::reqwest,
};

pub use engine::WriterCounters;
pub use market::{DayStart, SnapshotStatus, REWARD_SLOTS_PER_TX};

use crate::{
    bindings::ProtocolState::{self, ProtocolStateInstance},
    config::{ChainConfig, SignerSource},
    redact::{redact_url, Redactor},
    transport::QuietHttp,
    ChainError,
};

/// Result alias of this crate.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// Alloy client of the ProtocolState contract. Cheap to share behind an `Arc`; all methods
/// take `&self`. Neither `Debug` nor any error it returns shows more of `RPC_URL` than its
/// scheme and host.
#[derive(Clone)]
pub struct ChainClient {
    cfg: Arc<ChainConfig>,
    redactor: Arc<Redactor>,
    provider: RootProvider,
    contract: ProtocolStateInstance<RootProvider>,
    chain_id: u64,
    wallet: Option<(EthereumWallet, Address)>,
    writer: Arc<tokio::sync::Mutex<Vec<engine::InFlight>>>,
    counters: Arc<Mutex<WriterCounters>>,
    slots: Arc<Mutex<HashMap<u64, (Address, Instant)>>>,
}

impl fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainClient")
            .field("rpc_url", &redact_url(&self.cfg.rpc_url))
            .field("protocol_state", &self.cfg.protocol_state)
            .field("chain_id", &self.chain_id)
            .field("signer", &self.wallet.as_ref().map(|(_, a)| *a))
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// Connects (reads the chain id, with retries) and builds the signer if one is configured.
    pub async fn connect(cfg: ChainConfig) -> Result<Self> {
        let redactor = Arc::new(Redactor::new(&cfg.rpc_url));
        // The parse error is not echoed with the URL, only its kind.
        let url: reqwest::Url = cfg
            .rpc_url
            .trim()
            .parse()
            .map_err(|e| ChainError::Config(format!("RPC_URL: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.rpc_timeout)
            .build()
            .map_err(|e| ChainError::Config(redactor.scrub(&format!("http client: {e}"))))?;
        let is_local = alloy::transports::utils::guess_local_url(url.as_str());
        let provider = RootProvider::new(RpcClient::new(QuietHttp::new(http, url), is_local));
        let contract = ProtocolState::new(cfg.protocol_state, provider.clone());
        let mut client = Self {
            cfg: Arc::new(cfg),
            redactor,
            provider,
            contract,
            chain_id: 0,
            wallet: None,
            writer: Arc::default(),
            counters: Arc::default(),
            slots: Arc::default(),
        };
        let node_chain_id = client
            .retry("eth_chainId", |c| async move {
                c.provider
                    .get_chain_id()
                    .await
                    .map_err(ChainError::from_rpc)
            })
            .await?;
        if let Some(want) = client.cfg.chain_id {
            if want != node_chain_id {
                return Err(ChainError::Config(format!(
                    "CHAIN_ID is {want} but the node at {} serves chain {node_chain_id}",
                    redact_url(&client.cfg.rpc_url)
                )));
            }
        }
        client.chain_id = node_chain_id;
        if let Some(src) = client.cfg.signer.clone() {
            client.wallet = Some(make_wallet(&src, node_chain_id).await?);
        }
        Ok(client)
    }

    /// The same client (connection, signer and single writer) pointed at another contract
    /// address, e.g. right after [`Self::deploy_protocol_state`].
    #[must_use]
    pub fn with_contract(&self, protocol_state: Address) -> Self {
        let mut cfg = (*self.cfg).clone();
        cfg.protocol_state = protocol_state;
        Self {
            cfg: Arc::new(cfg),
            contract: ProtocolState::new(protocol_state, self.provider.clone()),
            slots: Arc::default(),
            ..self.clone()
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ChainConfig {
        &self.cfg
    }

    /// The node's chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The ProtocolState address.
    pub fn protocol_state(&self) -> Address {
        self.cfg.protocol_state
    }

    /// Our signing address, if a signer is configured.
    pub fn signer_address(&self) -> Option<Address> {
        self.wallet.as_ref().map(|(_, a)| *a)
    }

    /// The underlying provider, for calls this client does not wrap. It runs over the same
    /// transport, whose errors name only the URL's scheme and host.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// `RPC_URL` as it may be shown: scheme and host only.
    pub fn rpc_url_redacted(&self) -> String {
        redact_url(&self.cfg.rpc_url)
    }

    fn wallet(&self) -> Result<(&EthereumWallet, Address)> {
        self.wallet
            .as_ref()
            .map(|(w, a)| (w, *a))
            .ok_or(ChainError::NoSigner)
    }
}

async fn make_wallet(src: &SignerSource, chain_id: u64) -> Result<(EthereumWallet, Address)> {
    match src {
        SignerSource::PrivateKey(key) => {
            // The parse error is not echoed: it could quote the key.
            let signer: PrivateKeySigner = key.trim().parse().map_err(|_| {
                ChainError::Signer("SIGNER_PRIVATE_KEY is not a valid secp256k1 private key".into())
            })?;
            let _ = chain_id;
            let address = signer.address();
            Ok((EthereumWallet::new(signer), address))
        }
        #[cfg(feature = "aws-kms")]
        SignerSource::Kms(key_id) => {
            use alloy::signers::{aws::AwsSigner, Signer as _};
            let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let kms = aws_sdk_kms::Client::new(&conf);
            let signer = AwsSigner::new(kms, key_id.clone(), Some(chain_id))
                .await
                .map_err(|e| ChainError::Signer(format!("KMS key {key_id}: {e}")))?;
            let address = signer.address();
            Ok((EthereumWallet::new(signer), address))
        }
        #[cfg(not(feature = "aws-kms"))]
        SignerSource::Kms(_) => {
            let _ = chain_id;
            Err(ChainError::Config(
                "KMS_KEY_ID needs sequencer-chain built with the `aws-kms` feature".into(),
            ))
        }
    }
}
