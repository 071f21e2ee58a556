//! libp2p `/collect` ingress of the submission sequencer.
//!
//! Collectors dial the host and write `/collect` messages (docs/protocol.md §1–2); [`host`] reads them
//! with core's incremental decoder under the edge limits of [`limits`]: connection admission in
//! [`guard`], per-peer and per-address rates, bans and stream budgets in [`rate`], the stateless
//! checks of [`edge`], every refusal counted under a [`reject::Reject`] reason; accepted messages
//! ([`envelope`]) wait in the bounded buffer of [`dispatcher`] (backpressure when full) and go to a
//! [`sink::SubmissionSink`] (SQS in production) byte-exact; on shutdown the buffer is drained
//! within a deadline and what is left is spilled to a file ([`spill`]) replayed on next start. An
//! optional write-ahead log ([`wal`]) makes accepted messages survive a SIGKILL.

pub mod config;
pub mod dispatcher;
pub mod edge;
pub mod envelope;
pub mod gossip;
pub mod guard;
pub mod host;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod rate;
pub mod reject;
pub mod seen;
pub mod sink;
pub mod spill;
pub mod tally;
pub mod wal;

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
use crate::envelope::Envelope;
use crate::host::{Host, HostConfig};
use crate::limits::EdgeLimits;
use crate::metrics::Metrics;
use crate::rate::PeerGate;
use crate::sink::SubmissionSink;
use crate::wal::Wal;

/// How often histogram samples are drained into their buckets (the exporter keeps raw samples
/// until then): a few seconds of samples at the highest message rates is a few hundred KiB.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

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
    /// Write-ahead log directory (`None`: off, the default; see [`wal`]).
    pub wal_path: Option<PathBuf>,
    /// How often the queue is probed for `/readyz`.
    pub ready_probe_interval: Duration,
    /// Tallies of the submissions taken in, for the close watermark (see [`tally`]); `None`: off
    /// (the library default, so a sink sees only submissions; the binary turns them on).
    pub tally: Option<tally::TallySettings>,
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
            wal_path: None,
            ready_probe_interval: http::READY_PROBE_INTERVAL,
            tally: None,
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
    /// Write-ahead log could not be opened or replayed.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
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
    /// Mesh health (empty with gossipsub off).
    pub gossip_health: gossip::health::SharedHealth,
    /// Messages found in the spill file and the write-ahead log at start and being replayed.
    pub replaying: usize,
    /// This boot's tally sender (`None` with tallies off): its boot id and counts.
    pub tally: Option<Arc<tally::TallySender>>,
    host: Host,
    buffer: Option<BufferHandle>,
    dispatcher: tokio::task::JoinHandle<DrainReport>,
    deadline: watch::Sender<Option<Instant>>,
    draining: Arc<AtomicBool>,
    stop_http: CancellationToken,
    http_task: Option<tokio::task::JoinHandle<()>>,
    replay_tasks: Vec<tokio::task::JoinHandle<()>>,
    drain_timeout: Duration,
    stop_tally: CancellationToken,
    tally_task: Option<tokio::task::JoinHandle<()>>,
}

/// Pushes replayed records into the buffer in a task. Each envelope holds a ticket on the
/// replayed files, which are deleted once every record is settled.
fn spawn_replay(
    replay: spill::Replay,
    buffer: BufferHandle,
    metrics: Metrics,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    let spill::Replay { records, guard, .. } = replay;
    tokio::spawn(async move {
        for (r, bytes) in records {
            let mut env = Envelope::new(bytes, r.meta);
            env.add_ticket(guard.ticket());
            if buffer.push(env).await.is_err() {
                // Buffer closed before this record got in: keep the files so the next start
                // replays again.
                guard.keep();
                tracing::warn!(
                    what,
                    "shutdown during replay; the files will be replayed again"
                );
                return;
            }
            metrics.messages_replayed.inc();
        }
    })
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
        let (wal, wal_replay) = match &settings.wal_path {
            Some(dir) => {
                let (w, r) = Wal::open(dir, metrics.wal.clone())?;
                tracing::info!(dir = %dir.display(), "write-ahead log on");
                (Some(Arc::new(w)), r)
            }
            None => (None, None),
        };
        let (mut buffer, mut dispatcher) = dispatcher::buffer_with_wal(
            settings.dispatcher.clone(),
            metrics.clone(),
            &settings.spill_path,
            wal,
        );
        let stop_tally = CancellationToken::new();
        let tally = match settings.tally {
            Some(t) => {
                let configured = settings
                    .host
                    .edge
                    .markets
                    .iter()
                    .flatten()
                    .map(|a| format!("{a:#x}"));
                let counts = Arc::new(tally::TallyCounts::new(configured));
                buffer = buffer.with_tallies(counts.clone());
                let sender = Arc::new(tally::TallySender::new(
                    counts,
                    sink.clone(),
                    metrics.clone(),
                    t,
                ));
                tracing::info!(
                    boot = sender.boot(),
                    interval_ms = t.interval.as_millis(),
                    heartbeat_ms = t.heartbeat.as_millis(),
                    "tallies on"
                );
                Some(sender)
            }
            None => None,
        };
        if let Some(log) = latency {
            dispatcher = dispatcher.with_latency_log(log);
        }
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let dispatcher_task = tokio::spawn(dispatcher.run(sink.clone(), deadline_rx));

        let mut replaying = 0;
        let mut replay_tasks = Vec::new();
        let spill_replay = spill::take_for_replay(&settings.spill_path)?;
        for (replay, what) in [
            (spill_replay, "spill file"),
            (wal_replay, "write-ahead log"),
        ] {
            let Some(replay) = replay else { continue };
            replaying += replay.records.len();
            metrics.spill_quarantined.inc_by(replay.quarantined as u64);
            if replay.quarantined > 0 {
                tracing::error!(
                    what,
                    lines = replay.quarantined,
                    "damaged lines moved to the quarantine file"
                );
            }
            tracing::info!(
                what,
                messages = replay.records.len(),
                "replaying from a previous run"
            );
            replay_tasks.push(spawn_replay(replay, buffer.clone(), metrics.clone(), what));
        }

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
        // Histogram samples wait in the recorder until drained: keep that bounded.
        {
            let (metrics, stop) = (metrics.clone(), stop_http.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(METRICS_UPKEEP);
                loop {
                    tokio::select! {
                        _ = tick.tick() => metrics.run_upkeep(),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        let (http_addr, http_task) = match settings.http_listen {
            Some(addr) => {
                let readiness = http::Readiness::spawn(
                    sink,
                    settings.ready_probe_interval,
                    metrics.clone(),
                    stop_http.clone(),
                );
                let (a, t) = http::serve(
                    addr,
                    metrics.clone(),
                    readiness,
                    draining.clone(),
                    host.health.clone(),
                    stop_http.clone(),
                )
                .await?;
                (Some(a), Some(t))
            }
            None => (None, None),
        };
        let tally_task = tally
            .as_ref()
            .map(|t| tally::spawn(t.clone(), stop_tally.clone()));
        Ok(Self {
            peer_id: host.peer_id,
            listen_addrs: host.listen_addrs.clone(),
            http_addr,
            gossip_health: host.health.clone(),
            metrics,
            replaying,
            tally,
            host,
            buffer: Some(buffer),
            dispatcher: dispatcher_task,
            deadline: deadline_tx,
            draining,
            stop_http,
            http_task,
            replay_tasks,
            drain_timeout: settings.drain_timeout,
            stop_tally,
            tally_task,
        })
    }

    /// Graceful shutdown: stop accepting, stop readers, drain the buffer to the queue until the
    /// drain deadline, spill what is left, send the boot's last tallies (with tallies on), close
    /// connections. Returns what the drain did.
    pub async fn shutdown(mut self) -> DrainReport {
        let deadline = Instant::now() + self.drain_timeout;
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.draining.set(1);
        self.host.stop_accepting();
        let _ = self.deadline.send(Some(deadline));
        self.host.stop_readers().await;
        self.buffer = None;
        for t in self.replay_tasks.drain(..) {
            // A replay task finishes once its records are in the buffer (which drains).
            if let Err(e) = t.await {
                tracing::error!(error = %e, "replay task failed; its files are kept for the next start");
            }
        }
        let report = match (&mut self.dispatcher).await {
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
                    failed: true,
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
        // Heartbeats went on during the drain (the boot is alive); now nothing more is taken
        // in, so the last tally carries every count of this boot.
        self.stop_tally.cancel();
        if let Some(t) = self.tally_task.take() {
            let _ = t.await;
        }
        if let Some(sender) = &self.tally {
            if tokio::time::timeout(tally::FINAL_TIMEOUT, sender.finish())
                .await
                .is_err()
            {
                tracing::warn!("the last tallies were not all sent in time");
            }
        }
        self.host.shutdown().await;
        self.stop_http.cancel();
        if let Some(t) = self.http_task.take() {
            let _ = t.await;
        }
        report
    }
}
