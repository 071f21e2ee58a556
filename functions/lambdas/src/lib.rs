//! What every Lambda `main` shares: JSON logs, and the pipeline on the AWS adapters built once per
//! cold start from the environment.
//!
//! Environment: the pipeline's (`sequencer_functions::config`: `DATA_MARKET_ADDRESS`,
//! `PROTOCOL_STATE_ADDRESS`, `CHAIN_ID`, …), the adapters' (`SEQ_PREFIX`, `IPFS_API_URL`, AWS
//! endpoints and region, see `sequencer_adapters`), the chain client's (`RPC_URL`,
//! `SIGNER_PRIVATE_KEY` or `KMS_KEY_ID`, see `sequencer_chain::ChainConfig`).

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
