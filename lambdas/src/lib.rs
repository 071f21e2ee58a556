//! What every Lambda `main` shares: logs as the function's logging configuration says, the
//! deadline of an invocation, and the one wiring
//! of the pipeline on the AWS adapters ([`aws_pipeline`]), built once per cold start from the
//! environment ([`pipeline_from_env`]); the local runner's `--aws` mode and the pipeline
//! benchmark reuse [`aws_pipeline`] with a chain of their own.
//!
//! Environment: the pipeline's (`sequencer_handlers::config`: `DATA_MARKET_ADDRESS`,
//! `PROTOCOL_STATE_ADDRESS`, `CHAIN_ID`, …), `METRICS_NAMESPACE` (the CloudWatch namespace of
//! the EMF lines, default `Sequencer`: [`emf`]), the adapters' (`SEQ_PREFIX`, AWS endpoints and
//! region: `sequencer_aws`; `IPFS_API_URL`, …: `sequencer_ipfs`), the chain client's (`RPC_URL`,
//! `SIGNER_PRIVATE_KEY` or `KMS_KEY_ID`, see `sequencer_chain::ChainConfig`).

pub mod emf;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use sequencer_aws::{DynamoStore, QueueKind, SqsQueue};
use sequencer_chain::{ChainClient, ChainConfig};
use sequencer_handlers::chain_cache::CachedChain;
use sequencer_handlers::config::ConfigError;
use sequencer_handlers::epoch_manager::{EpochManager, EpochManagerConfig};
use sequencer_handlers::sqs::events::{SqsBatchResponse, SqsEvent};
use sequencer_handlers::{Pipeline, PipelineConfig, Ports, SystemClock};
use sequencer_ipfs::KuboContent;
use sequencer_ports::{ChainPort, PortError};

/// A cold start failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Pipeline settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Chain client.
    #[error(transparent)]
    Chain(#[from] sequencer_chain::ChainError),
    /// A queue could not be resolved.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The IPFS client.
    #[error("IPFS: {0}")]
    Ipfs(#[from] sequencer_ipfs::KuboConfigError),
    /// The epoch manager refused to start (wrong market, key without the role, …).
    #[error("epoch manager: {0}")]
    EpochManager(String),
    /// The submissions queue has no DLQ.
    #[error("the submissions queue has no dead-letter queue")]
    NoDlq,
    /// The status page's settings.
    #[error(transparent)]
    Status(#[from] sequencer_api::config::ApiConfigError),
    /// The CloudWatch EMF recorder.
    #[error(transparent)]
    Metrics(#[from] emf::EmfError),
}

/// Logs through `lambda_runtime`'s own tracing setup, so the function's logging configuration
/// holds: JSON lines when its log format is JSON (`AWS_LAMBDA_LOG_FORMAT`, which the Terraform
/// module sets), at its application log level (`AWS_LAMBDA_LOG_LEVEL`); `RUST_LOG`, when set,
/// replaces that level with tracing directives; `INFO` when neither is set.
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// How long this invocation may still run, less `margin` (zero when that is past): Lambda gives
/// each invocation its deadline as milliseconds since the Unix epoch (`Context::deadline`).
pub fn time_left(ctx: &lambda_runtime::Context, margin: Duration) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(ctx.deadline.saturating_sub(now_ms)).saturating_sub(margin)
}

/// The pipeline's queues on SQS: where the ingress sends submissions, and the job queues.
#[derive(Debug, Clone)]
pub struct AwsQueues {
    /// Submissions (the verify function's queue; its DLQ takes poison messages).
    pub submissions: SqsQueue,
    /// Finalize jobs.
    pub finalize: SqsQueue,
    /// Anchor jobs (FIFO).
    pub anchor: SqsQueue,
    /// The dead-letter queues of the three (submissions, finalize, anchor): the status summary
    /// shows their depth.
    pub dead_letters: Vec<SqsQueue>,
}

/// The pipeline on SQS, DynamoDB and IPFS over `chain`: queues and tables named with
/// `SEQ_PREFIX` (they must exist; `localstack/resources.py` and the Terraform module create
/// them), endpoints from `AWS_ENDPOINT_URL*` and `IPFS_API_URL`. The one place the AWS
/// deployment is wired: the Lambdas, the local runner's `--aws` mode and the benchmark use it.
pub async fn aws_pipeline(
    chain: Arc<dyn ChainPort>,
    config: PipelineConfig,
) -> Result<(Pipeline, AwsQueues), StartError> {
    let prefix = sequencer_aws::Config::from_env().prefix;
    let ipfs = sequencer_ipfs::Config::from_env();
    let sdk = sequencer_aws::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let submissions = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Submissions).await?;
    let finalize = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Finalize).await?;
    let anchor = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Anchor).await?;
    let dead_letters = [&submissions, &finalize, &anchor]
        .into_iter()
        .filter_map(|q| q.dlq_url())
        .map(|url| SqsQueue::new(sqs.clone(), url))
        .collect();
    let queues = AwsQueues {
        submissions,
        finalize,
        anchor,
        dead_letters,
    };
    let dlq_url = queues.submissions.dlq_url().ok_or(StartError::NoDlq)?;
    let ports = Ports {
        state: Arc::new(DynamoStore::from_sdk(&sdk, prefix.clone())),
        content: Arc::new(KuboContent::from_config(&ipfs)?),
        // Slot owners, flags, the slot count and unknown headers cached per process (a warm
        // Lambda keeps them between invocations): what a hostile message may cost.
        chain: CachedChain::wrap(chain, &config, Arc::new(SystemClock)),
        finalize_queue: Arc::new(queues.finalize.clone()),
        anchor_queue: Arc::new(queues.anchor.clone()),
        submissions_dlq: Arc::new(SqsQueue::new(sqs.clone(), dlq_url)),
    };
    Ok((Pipeline::new(ports, config), queues))
}

/// What an operator's command needs of the AWS deployment (`seqctl epochs`): the state store
/// and the anchor queue, named with `SEQ_PREFIX` like [`aws_pipeline`] names them; no chain.
pub async fn aws_operator_ports() -> Result<(DynamoStore, SqsQueue), StartError> {
    let prefix = sequencer_aws::Config::from_env().prefix;
    let sdk = sequencer_aws::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let anchor = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Anchor).await?;
    Ok((DynamoStore::from_sdk(&sdk, prefix), anchor))
}

/// The pipeline of a Lambda: settings and the chain client from the environment, on
/// [`aws_pipeline`].
pub async fn pipeline_from_env() -> Result<Pipeline, StartError> {
    Ok(Box::pin(pipeline_and_queues_from_env()).await?.0)
}

/// [`pipeline_from_env`] with its queues (the proof function shows their dead-letter depths).
pub async fn pipeline_and_queues_from_env() -> Result<(Pipeline, AwsQueues), StartError> {
    let config = PipelineConfig::from_env()?;
    let chain = Arc::new(ChainClient::connect(ChainConfig::from_env()?).await?);
    // Boxed: the wiring's future is large and deep; a `main` awaiting it inline would hit the
    // compiler's layout depth limit.
    Box::pin(aws_pipeline(chain, config)).await
}

/// The `main` of a queue consumer (verify, finalize, anchor): the EMF writer and the pipeline
/// built once from the environment, then every SQS event through `handler`, whose partial batch
/// failures go back to Lambda (`ReportBatchItemFailures`); EMF metric lines after each
/// invocation.
pub async fn run_sqs<F, Fut>(
    function: &'static str,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    F: Fn(&'static Pipeline, SqsEvent) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = SqsBatchResponse> + Send,
{
    init_tracing();
    let (p, emf) = static_pipeline(function).await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |e: LambdaEvent<SqsEvent>| async move {
            let started = std::time::Instant::now();
            let response = handler(p, e.payload).await;
            emf.invocation_done(p, started.elapsed());
            Ok::<_, lambda_runtime::Error>(response)
        },
    ))
    .await
}

/// Installs the EMF writer for `function` (the facade's global recorder, which the pipeline
/// records into), then builds the pipeline once and leaks it: both live as long as the Lambda
/// execution environment.
pub async fn static_pipeline(
    function: &'static str,
) -> Result<(&'static Pipeline, &'static emf::Emf), StartError> {
    let emf = emf::Emf::install(function)?;
    let p = Box::leak(Box::new(Box::pin(pipeline_from_env()).await?));
    Ok((p, emf))
}

/// The epoch manager from the environment (see the `epoch-manager` binary and
/// `sequencer_handlers::epoch_manager::config`), and its release timeout.
pub async fn epoch_manager_from_env() -> Result<(EpochManager, std::time::Duration), StartError> {
    let cfg = EpochManagerConfig::from_env()?;
    let protocol = ChainClient::connect(ChainConfig::from_env()?).await?;
    let source: Option<Arc<dyn ChainPort>> = match std::env::var("SOURCE_RPC_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(url) => {
            let mut c = ChainConfig::from_env()?;
            c.rpc_url = url;
            c.signer = None;
            Some(Arc::new(ChainClient::connect(c).await?))
        }
        None => None,
    };
    let timeout = cfg.release_timeout;
    let m = EpochManager::new(Arc::new(protocol), source, cfg)
        .await
        .map_err(|e| StartError::EpochManager(e.to_string()))?;
    Ok((m, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_the_deadline_less_the_margin_and_never_negative() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = now_ms + 60_000;
        let left = time_left(&ctx, Duration::from_secs(5));
        assert!(
            left <= Duration::from_secs(55) && left > Duration::from_secs(50),
            "{left:?}"
        );
        ctx.deadline = now_ms + 2_000;
        assert_eq!(time_left(&ctx, Duration::from_secs(5)), Duration::ZERO);
        // cargo lambda watch sends a deadline in 1970: nothing left, not an overflow.
        ctx.deadline = 600_000;
        assert_eq!(time_left(&ctx, Duration::ZERO), Duration::ZERO);
    }
}
