//! libp2p `/collect` ingress of the submission sequencer.
//!
//! Collectors dial the host and write `/collect` messages (PROTOCOL.md §1–2); [`host`] reads them
//! with core's incremental decoder under the edge limits of [`limits`]: connection admission in
//! [`guard`], per-peer and per-address rates, bans and stream budgets in [`rate`], every refusal
//! counted under a [`reject::Reject`] reason; accepted
//! messages wait in the bounded buffer of [`dispatcher`] (backpressure when full) and go to a
//! [`sink::SubmissionSink`] (SQS in production) byte-exact; on shutdown the buffer is drained
//! within a deadline and what is left is spilled to a file ([`spill`]) replayed on next start.

pub mod config;
pub mod dispatcher;
pub mod guard;
pub mod host;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod rate;
pub mod reject;
pub mod sink;
pub mod spill;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::{BufferHandle, DispatcherConfig, DrainReport, LatencyLog};
use crate::host::{Host, HostConfig};
use crate::limits::EdgeLimits;
use crate::metrics::Metrics;
use crate::rate::PeerGate;
use crate::sink::{Envelope, SubmissionSink};

/// Everything the ingress needs besides its key and sink.
#[derive(Debug, Clone)]
pub struct Settings {
    /// libp2p host.
    pub host: HostConfig,
    /// Edge limits.
    pub limits: EdgeLimits,
    /// Buffer and queue batching.
    pub dispatcher: DispatcherConfig,
    /// Spill file (JSON lines) for what the queue has not taken at the drain deadline.
    pub spill_path: PathBuf,
    /// Drain deadline after shutdown begins.
    pub drain_timeout: Duration,
    /// Operations HTTP listener (`None`: no HTTP server).
    pub http_listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: HostConfig::default(),
            limits: EdgeLimits::default(),
            dispatcher: DispatcherConfig::default(),
            spill_path: PathBuf::from(config::DEFAULT_SPILL_PATH),
            drain_timeout: dispatcher::DRAIN_TIMEOUT,
            http_listen: None,
        }
    }
}

/// Errors starting the ingress.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// libp2p host.
    #[error(transparent)]
    Host(#[from] host::HostError),
    /// HTTP server.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// Spill file could not be read for replay.
    #[error(transparent)]
    Spill(#[from] spill::SpillError),
}

/// A running ingress.
pub struct Ingress {
    /// Peer id of the host.
    pub peer_id: PeerId,
    /// Bound libp2p addresses.
    pub listen_addrs: Vec<Multiaddr>,
    /// Bound HTTP address, if any.
    pub http_addr: Option<SocketAddr>,
    /// Metric handles.
    pub metrics: Metrics,
    /// Messages found in the spill file at start and being replayed.
    pub replaying: usize,
    host: Host,
    buffer: Option<BufferHandle>,
    dispatcher: tokio::task::JoinHandle<DrainReport>,
    deadline: watch::Sender<Option<Instant>>,
    draining: Arc<AtomicBool>,
    stop_http: CancellationToken,
    http_task: Option<tokio::task::JoinHandle<()>>,
    replay_task: Option<tokio::task::JoinHandle<()>>,
    drain_timeout: Duration,
}

impl Ingress {
    /// Starts the ingress: replays any spill file, then serves `/collect` (and HTTP if set).
    pub async fn start(
        settings: Settings,
        key: Keypair,
        sink: Arc<dyn SubmissionSink>,
        metrics: Metrics,
        latency: Option<LatencyLog>,
    ) -> Result<Self, IngressError> {
        let (buffer, mut dispatcher) = dispatcher::buffer(
            settings.dispatcher.clone(),
            metrics.clone(),
            &settings.spill_path,
        );
        if let Some(log) = latency {
            dispatcher = dispatcher.with_latency_log(log);
        }
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let dispatcher_task = tokio::spawn(dispatcher.run(sink.clone(), deadline_rx));

        let mut replaying = 0;
        let replay_task = match spill::take_for_replay(&settings.spill_path)? {
            Some((records, guard)) => {
                replaying = records.len();
                tracing::info!(
                    messages = replaying,
                    "replaying spill file from a previous run"
                );
                let buffer = buffer.clone();
                let metrics = metrics.clone();
                Some(tokio::spawn(async move {
                    for r in records {
                        let mut env = Envelope::new(r.bytes(), r.meta.clone());
                        env.replay = Some(guard.clone());
                        if buffer.push(env).await.is_err() {
                            // Buffer closed before this record got in: leave the replay file in place
                            // (the guard is leaked on purpose) so the next start replays again.
                            std::mem::forget(guard);
                            tracing::warn!(
                                "shutdown during replay; the spill file will be replayed again"
                            );
                            return;
                        }
                        metrics.messages_replayed.inc();
                    }
                }))
            }
            None => None,
        };

        let (gate, close_rx) = PeerGate::new(settings.limits.clone(), metrics.clone());
        let host = host::start(
            key,
            settings.host.clone(),
            gate,
            close_rx,
            buffer.clone(),
            metrics.clone(),
        )
        .await?;

        let draining = Arc::new(AtomicBool::new(false));
        let stop_http = CancellationToken::new();
        let (http_addr, http_task) = match settings.http_listen {
            Some(addr) => {
                let (a, t) = http::serve(
                    addr,
                    metrics.registry(),
                    sink,
                    draining.clone(),
                    stop_http.clone(),
                )
                .await?;
                (Some(a), Some(t))
            }
            None => (None, None),
        };
        Ok(Self {
            peer_id: host.peer_id,
            listen_addrs: host.listen_addrs.clone(),
            http_addr,
            metrics,
            replaying,
            host,
            buffer: Some(buffer),
            dispatcher: dispatcher_task,
            deadline: deadline_tx,
            draining,
            stop_http,
            http_task,
            replay_task,
            drain_timeout: settings.drain_timeout,
        })
    }

    /// Graceful shutdown: stop accepting, stop readers, drain the buffer to the queue until the
    /// drain deadline, spill what is left, close connections. Returns what the drain did.
    pub async fn shutdown(mut self) -> DrainReport {
        let deadline = Instant::now() + self.drain_timeout;
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.draining.set(1);
        self.host.stop_accepting();
        let _ = self.deadline.send(Some(deadline));
        self.host.stop_readers().await;
        self.buffer = None;
        if let Some(t) = self.replay_task.take() {
            // The replay task finishes once its records are in the buffer (which drains).
            let _ = t.await;
        }
        let report = match self.dispatcher.await {
            Ok(r) => r,
            Err(e) => {
                // Whatever was still buffered is gone: report it as lost (the binary then exits
                // non-zero) instead of an empty, successful-looking report. At least one, since
                // the gauge may already be decremented for a batch that was in flight.
                let lost = u64::try_from(self.metrics.buffer_messages.get())
                    .unwrap_or(0)
                    .max(1);
                tracing::error!(error = %e, lost, "dispatcher task panicked or was cancelled; buffered messages are lost");
                DrainReport {
                    lost,
                    ..DrainReport::default()
                }
            }
        };
        tracing::info!(
            enqueued = report.enqueued,
            spilled = report.spilled,
            rejected = report.rejected,
            lost = report.lost,
            "drained"
        );
        self.host.shutdown().await;
        self.stop_http.cancel();
        if let Some(t) = self.http_task.take() {
            let _ = t.await;
        }
        report
    }
}
