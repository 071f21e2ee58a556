//! The sequencer's services on one machine: the embedded adapters, the ingress feeding the
//! embedded submissions queue, and the loops that stand in for Lambda (SQS pollers for verify,
//! finalize and anchor; the tick's schedule).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use sequencer_embedded::poller::{poll_once, PollerConfig};
use sequencer_embedded::{BlockDir, Db, QueueOptions, SqliteQueue, SqliteState};
use sequencer_handlers::chain_cache::CachedChain;
use sequencer_handlers::{anchor, finalize, tick, verify};
use sequencer_handlers::{Pipeline, PipelineConfig, Ports, SystemClock};
use sequencer_ingress::sink::{EntryResult, Envelope, SinkError, SubmissionSink};
use sequencer_ports::{ChainPort, OutMessage, Queue};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Queue names, as `localstack/resources.py` names them (prefix `seq`).
pub const SUBMISSIONS: &str = "seq-submissions";
/// Finalize jobs.
pub const FINALIZE: &str = "seq-finalize";
/// Anchor jobs (FIFO).
pub const ANCHOR: &str = "seq-anchor.fifo";

/// The pipeline's queues.
#[derive(Clone)]
pub struct Queues {
    /// Submissions (from the ingress).
    pub submissions: Arc<dyn Queue>,
    /// Finalize jobs.
    pub finalize: Arc<dyn Queue>,
    /// Anchor jobs.
    pub anchor: Arc<dyn Queue>,
    /// The three queues' dead-letter queues (the status page shows their depth).
    pub dead_letters: Vec<Arc<dyn Queue>>,
    /// The embedded state store, whose expired records the runner's sweeper deletes (DynamoDB
    /// sweeps its own: `None` there).
    pub sweep: Option<Arc<SqliteState>>,
}

/// Items the embedded sweeper deletes per pass (one short SQLite transaction).
pub const SWEEP_PER_PASS: usize = 2_000;

/// How often the embedded sweeper looks for expired records.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

fn queue(db: &Db, name: &str, fifo: bool) -> SqliteQueue {
    let dlq = match name.strip_suffix(".fifo") {
        Some(base) => format!("{base}-dlq.fifo"),
        None => format!("{name}-dlq"),
    };
    SqliteQueue::new(
        db.clone(),
        name,
        QueueOptions {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: Some(5),
            dlq: Some(dlq),
            fifo,
        },
    )
}

/// Opens the embedded adapters in `data_dir` and builds the pipeline (recording into the
/// facade's recorder until given its own: `Pipeline::with_recorder`).
pub fn embedded(
    data_dir: &Path,
    chain: Arc<dyn ChainPort>,
    config: PipelineConfig,
) -> Result<(Pipeline, Queues)> {
    let db = Db::open(&data_dir.join("sequencer.sqlite")).context("opening the state database")?;
    let submissions = queue(&db, SUBMISSIONS, false);
    let finalize = queue(&db, FINALIZE, false);
    let anchor = queue(&db, ANCHOR, true);
    let dlq = submissions.dlq().context("submissions queue has a DLQ")?;
    let dead_letters = [&submissions, &finalize, &anchor]
        .into_iter()
        .filter_map(|q| q.dlq())
        .map(|q| Arc::new(q) as Arc<dyn Queue>)
        .collect();
    let state = Arc::new(SqliteState::new(db));
    let queues = Queues {
        submissions: Arc::new(submissions),
        finalize: Arc::new(finalize),
        anchor: Arc::new(anchor),
        dead_letters,
        sweep: Some(state.clone()),
    };
    let ports = Ports {
        state,
        content: Arc::new(BlockDir::new(data_dir.join("blocks"))),
        chain: CachedChain::wrap(chain, &config, Arc::new(SystemClock)),
        finalize_queue: queues.finalize.clone(),
        anchor_queue: queues.anchor.clone(),
        submissions_dlq: Arc::new(dlq),
    };
    Ok((Pipeline::new(ports, config), queues))
}

/// What an operator's command needs of a runner's data directory (`seqctl epochs`): its state
/// store and its anchor queue, opened as [`embedded`] opens them (the runner may be running: they
/// share the SQLite file safely); no chain.
pub fn embedded_operator_ports(data_dir: &Path) -> Result<(Arc<SqliteState>, Arc<SqliteQueue>)> {
    let file = data_dir.join("sequencer.sqlite");
    anyhow::ensure!(
        file.is_file(),
        "{} has no state database (sequencer.sqlite): not a runner's data directory",
        data_dir.display()
    );
    let db = Db::open(&file).context("opening the state database")?;
    Ok((
        Arc::new(SqliteState::new(db.clone())),
        Arc::new(queue(&db, ANCHOR, true)),
    ))
}

/// The pipeline on the AWS adapters (SQS, DynamoDB, IPFS HTTP) against `AWS_ENDPOINT_URL*` and
/// `IPFS_API_URL`, wired exactly as the Lambdas wire it (`sequencer_lambdas::aws_pipeline`);
/// queues and tables named with `SEQ_PREFIX` must exist (`localstack/resources.py` creates them).
pub async fn aws(chain: Arc<dyn ChainPort>, config: PipelineConfig) -> Result<(Pipeline, Queues)> {
    let (p, q) = sequencer_lambdas::aws_pipeline(chain, config)
        .await
        .context("the pipeline on the AWS adapters")?;
    let queues = Queues {
        submissions: Arc::new(q.submissions),
        finalize: Arc::new(q.finalize),
        anchor: Arc::new(q.anchor),
        dead_letters: q
            .dead_letters
            .into_iter()
            .map(|q| Arc::new(q) as Arc<dyn Queue>)
            .collect(),
        sweep: None,
    };
    Ok((p, queues))
}

/// The ingress's sink: the submissions queue (any adapter), body byte-exact, the ingress's
/// attributes. `twice` sends every message two times (a fault drill: SQS delivers at least
/// once, so everything downstream must be idempotent).
pub struct QueueSink {
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// Send each message twice.
    pub twice: bool,
}

impl SubmissionSink for QueueSink {
    fn name(&self) -> &'static str {
        "embedded-queue"
    }

    fn send_batch<'a>(
        &'a self,
        batch: &'a [Envelope],
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, SinkError>> {
        Box::pin(async move {
            let mut msgs = Vec::with_capacity(batch.len());
            let mut results = Vec::with_capacity(batch.len());
            for e in batch {
                match std::str::from_utf8(&e.raw) {
                    Ok(body) => {
                        let mut m = OutMessage::new(body);
                        for (k, v) in e.attributes() {
                            m.attributes.insert(k.to_string(), v);
                        }
                        msgs.push(m);
                        results.push(EntryResult::Ok);
                    }
                    Err(_) => results.push(EntryResult::Reject("body is not UTF-8".into())),
                }
            }
            self.queue
                .send(&msgs)
                .await
                .map_err(|e| SinkError::Transport(e.to_string()))?;
            if self.twice {
                self.queue
                    .send(&msgs)
                    .await
                    .map_err(|e| SinkError::Transport(e.to_string()))?;
            }
            Ok(results)
        })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The pipeline's loops, stopped together.
pub struct Loops {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Loops {
    /// Starts verify (two pollers, as Lambda would run concurrent invocations), finalize and
    /// anchor pollers and the tick every `tick_every`.
    pub fn start(p: Arc<Pipeline>, q: &Queues, tick_every: Duration) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let cfg = PollerConfig {
            wait: Duration::from_millis(50),
            retry_delay: Duration::from_millis(300),
            ..PollerConfig::default()
        };
        for _ in 0..2 {
            let (p, q, cfg, stop) = (p.clone(), q.submissions.clone(), cfg.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                poll_loop(&q, &cfg, &stop, |e| verify::handle(&p, e)).await;
            }));
        }
        {
            let (p, q, cfg, stop) = (p.clone(), q.finalize.clone(), cfg.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                poll_loop(&q, &cfg, &stop, |e| finalize::handle(&p, e)).await;
            }));
        }
        {
            let (p, q, cfg, stop) = (p.clone(), q.anchor.clone(), cfg.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                poll_loop(&q, &cfg, &stop, |e| anchor::handle(&p, e)).await;
            }));
        }
        {
            let (p, stop) = (p.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    if let Err(e) = tick::step(&p).await {
                        tracing::warn!(error = %e, "tick failed; retrying");
                        p.metrics.inc(&sequencer_handlers::metrics::TICK_ERRORS, []);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(tick_every) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }));
        }
        if let Some(state) = q.sweep.clone() {
            let (p, stop) = (p.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                sweep_loop(&state, &p, SWEEP_EVERY, SWEEP_PER_PASS, &stop).await;
            }));
        }
        Self { stop, tasks }
    }

    /// Stops every loop (in-flight handler calls finish first).
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The embedded store's TTL sweeper (DynamoDB's runs in the service): a pass of at most
/// `per_pass` expired items every `every`, the next at once while a pass is full, by the
/// pipeline's clock. A failed pass is logged and tried again at the next.
pub async fn sweep_loop(
    state: &SqliteState,
    p: &Pipeline,
    every: Duration,
    per_pass: usize,
    stop: &CancellationToken,
) {
    while !stop.is_cancelled() {
        let now_s = u64::try_from(p.now_ms() / 1000).unwrap_or(0);
        let full = match state.sweep_expired(now_s, per_pass) {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(deleted = n, "swept expired records");
                }
                n as usize >= per_pass
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired records failed");
                false
            }
        };
        let pause = if full {
            Duration::from_millis(10)
        } else {
            every
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => {}
        }
    }
}

async fn poll_loop<F, Fut>(q: &Arc<dyn Queue>, cfg: &PollerConfig, stop: &CancellationToken, f: F)
where
    F: Fn(aws_events::SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_events::SqsBatchResponse>,
{
    while !stop.is_cancelled() {
        match poll_once(q.as_ref(), cfg, &f).await {
            Ok(r) if r.received > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(queue = q.name(), error = %e, "poll failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// The Lambda event types, as re-exported by the handlers crate.
mod aws_events {
    pub use sequencer_handlers::sqs::events::{SqsBatchResponse, SqsEvent};
}
