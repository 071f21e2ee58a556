//! What every Lambda `main` shares: JSON logs, and the pipeline on the AWS adapters built once per
//! cold start from the environment.
//!
//! Environment: the pipeline's (`sequencer_functions::config`: `DATA_MARKET_ADDRESS`,
//! `PROTOCOL_STATE_ADDRESS`, `CHAIN_ID`, …), the adapters' (`SEQ_PREFIX`, `IPFS_API_URL`, AWS
//! endpoints and region, see `sequencer_adapters`), the chain client's (`RPC_URL`,
//! `SIGNER_PRIVATE_KEY` or `KMS_KEY_ID`, see `sequencer_chain::ChainConfig`).

pub mod emf;

use std::sync::Arc;

use sequencer_adapters::{DynamoStore, KuboContent, QueueKind, SqsQueue};
use sequencer_chain::{ChainClient, ChainConfig};
use sequencer_functions::{Pipeline, PipelineConfig, Ports};

/// A cold start failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Pipeline settings.
    #[error(transparent)]
    Config(#[from] sequencer_functions::config::ConfigError),
    /// Chain client.
    #[error(transparent)]
    Chain(#[from] sequencer_chain::ChainError),
    /// A queue could not be resolved.
    #[error(transparent)]
    Queue(#[from] sequencer_functions::ports::QueueError),
    /// The IPFS client.
    #[error("IPFS: {0}")]
    Ipfs(String),
    /// The epoch manager refused to start (wrong market, key without the role, …).
    #[error("epoch manager: {0}")]
    EpochManager(String),
    /// The submissions queue has no DLQ.
    #[error("the submissions queue has no dead-letter queue")]
    NoDlq,
}

/// JSON logs to stdout (CloudWatch), filter from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .init();
}

/// The pipeline on SQS, DynamoDB, IPFS and the chain, from the environment.
pub async fn pipeline_from_env() -> Result<Pipeline, StartError> {
    let config = PipelineConfig::from_env()?;
    let adapters = sequencer_adapters::Config::from_env();
    let sdk = sequencer_adapters::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let prefix = adapters.prefix.clone();
    let submissions = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Submissions).await?;
    let dlq_url = submissions.dlq_url().ok_or(StartError::NoDlq)?.to_string();
    let ports = Ports {
        state: Arc::new(DynamoStore::from_env(prefix.clone()).await),
        content: Arc::new(
            KuboContent::from_config(&adapters).map_err(|e| StartError::Ipfs(e.to_string()))?,
        ),
        chain: Arc::new(ChainClient::connect(ChainConfig::from_env()?).await?),
        finalize_queue: Arc::new(SqsQueue::for_kind(&sqs, &prefix, QueueKind::Finalize).await?),
        anchor_queue: Arc::new(SqsQueue::for_kind(&sqs, &prefix, QueueKind::Anchor).await?),
        submissions_dlq: Arc::new(SqsQueue::new(sqs.clone(), dlq_url)),
    };
    Ok(Pipeline::new(ports, config))
}

/// Builds the pipeline once and leaks it: it lives as long as the Lambda execution environment.
pub async fn static_pipeline() -> Result<&'static Pipeline, StartError> {
    Ok(Box::leak(Box::new(pipeline_from_env().await?)))
}

/// The epoch manager from the environment (see the `epoch-manager` binary), and its release
/// timeout.
pub async fn epoch_manager_from_env(
) -> Result<(sequencer_chain::EpochManager, std::time::Duration), StartError> {
    use sequencer_chain::epoch_manager::{CatchUp, EpochManagerConfig};
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let num = |k: &str, d: u64| -> Result<u64, StartError> {
        match get(k) {
            None => Ok(d),
            Some(v) => v.trim().parse().map_err(|_| {
                StartError::Config(sequencer_functions::config::ConfigError(format!(
                    "{k} is not a number: {v:?}"
                )))
            }),
        }
    };
    let market = get("DATA_MARKET_ADDRESS")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            StartError::Config(sequencer_functions::config::ConfigError(
                "DATA_MARKET_ADDRESS is required".into(),
            ))
        })?;
    let mut cfg = EpochManagerConfig::new(market);
    cfg.finality_offset = num("FINALITY_OFFSET", cfg.finality_offset)?;
    cfg.poll_interval =
        std::time::Duration::from_millis(num("EPOCH_MANAGER_POLL_MS", 500)?.max(10));
    cfg.release_timeout = std::time::Duration::from_secs(num("RELEASE_TIMEOUT_SECS", 20)?.max(1));
    let rate = u32::try_from(num("CATCH_UP_MAX_PER_SEC", 5)?.max(1)).unwrap_or(u32::MAX);
    cfg.catch_up = match get("CATCH_UP").as_deref().map(str::trim) {
        None | Some("in-order") => CatchUp::InOrder { max_per_sec: rate },
        Some("skip") => CatchUp::SkipToHead { max_backlog: 1 },
        Some(other) => {
            return Err(StartError::Config(
                sequencer_functions::config::ConfigError(format!(
                    "CATCH_UP must be in-order or skip, not {other:?}"
                )),
            ))
        }
    };
    let protocol = ChainClient::connect(ChainConfig::from_env()?).await?;
    let source = match get("SOURCE_RPC_URL") {
        Some(url) => {
            let mut c = ChainConfig::from_env()?;
            c.rpc_url = url;
            c.signer = None;
            Some(ChainClient::connect(c).await?)
        }
        None => None,
    };
    let timeout = cfg.release_timeout;
    let m = sequencer_chain::EpochManager::new(protocol, source, cfg)
        .await
        .map_err(|e| StartError::EpochManager(e.to_string()))?;
    Ok((m, timeout))
}
