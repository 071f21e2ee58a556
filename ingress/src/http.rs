//! Operations endpoints: `/healthz` (process up), `/readyz` (accepting and the queue is reachable),
//! `/metrics` (Prometheus text format).
//!
//! `/readyz` never calls the queue: a background task probes it every
//! [`READY_PROBE_INTERVAL`] (each probe bounded by [`READY_TIMEOUT`]) and caches the outcome, so
//! a load balancer polling `/readyz` cannot pile up SDK calls or wait on a dead endpoint. The
//! body's first line is a reason code only (`ready`, `draining`, `starting`, `queue_throttled`,
//! `queue_server`, `queue_transport`, `queue_client`, `queue_timeout`, `probe_stale`); the SDK's
//! error text goes to the log, never to the answer. With gossipsub on, a second line gives the
//! mesh health ([`crate::gossip::health::MeshHealth::detail`]); it never changes the status:
//! `/collect` serves without a mesh.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gossip::health::SharedHealth;
use crate::metrics::Metrics;
use crate::sink::SubmissionSink;

/// Longest one queue probe may take before it counts as "not ready".
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the queue is probed. A load balancer's health check runs every 5–30 s; probing
/// every 5 s keeps the answer at most one probe old at the cost of 12 calls a minute per replica.
pub const READY_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// A cached probe older than this many intervals means the probe task is stuck or gone.
const STALE_AFTER_INTERVALS: u32 = 3;

/// Last outcome of the queue probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No probe has finished yet.
    Starting,
    /// The queue answered.
    Ready,
    /// The queue did not answer in time.
    TimedOut,
    /// The queue call failed; the reason code of [`crate::sink::SinkError::reason`].
    Failed(&'static str),
}

/// The cached readiness of the queue, updated by a background probe task.
pub struct Readiness {
    last: Mutex<(Probe, Instant)>,
    interval: Duration,
}

impl Readiness {
    /// Starts the probe task (until `stop`) and returns the cache it fills.
    pub fn spawn(
        sink: Arc<dyn SubmissionSink>,
        interval: Duration,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let interval = interval.max(Duration::from_millis(10));
        let r = Arc::new(Self {
            last: Mutex::new((Probe::Starting, Instant::now())),
            interval,
        });
        let cache = r.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let probe = match tokio::time::timeout(READY_TIMEOUT, sink.ready()).await {
                    Ok(Ok(())) => Probe::Ready,
                    Ok(Err(e)) => {
                        tracing::warn!(sink = sink.name(), error = %e, "queue probe failed");
                        Probe::Failed(e.reason())
                    }
                    Err(_) => {
                        tracing::warn!(sink = sink.name(), timeout = ?READY_TIMEOUT, "queue probe timed out");
                        Probe::TimedOut
                    }
                };
                metrics.queue_ready.set(i64::from(probe == Probe::Ready));
                cache.set(probe);
            }
        });
        r
    }

    fn set(&self, p: Probe) {
        let mut g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != p {
            tracing::info!(from = ?g.0, to = ?p, "queue readiness changed");
        }
        *g = (p, Instant::now());
    }

    /// The cached answer: status and reason code.
    pub fn answer(&self) -> (bool, &'static str) {
        let (probe, at) = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        if probe != Probe::Starting
            && at.elapsed() > self.interval * STALE_AFTER_INTERVALS + READY_TIMEOUT
        {
            return (false, "probe_stale");
        }
        match probe {
            Probe::Ready => (true, "ready"),
            Probe::Starting => (false, "starting"),
            Probe::TimedOut => (false, "queue_timeout"),
            Probe::Failed("throttled") => (false, "queue_throttled"),
            Probe::Failed("server") => (false, "queue_server"),
            Probe::Failed("transport") => (false, "queue_transport"),
            Probe::Failed(_) => (false, "queue_client"),
        }
    }
}

struct HttpState {
    metrics: Metrics,
    readiness: Arc<Readiness>,
    draining: Arc<AtomicBool>,
    health: SharedHealth,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<HttpState>>) -> (StatusCode, String) {
    let (status, code) = if s.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        match s.readiness.answer() {
            (true, code) => (StatusCode::OK, code),
            (false, code) => (StatusCode::SERVICE_UNAVAILABLE, code),
        }
    };
    let detail = s
        .health
        .get()
        .map(|h| format!("{}\n", h.detail()))
        .unwrap_or_default();
    (status, format!("{code}\n{detail}"))
}

async fn metrics_text(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
#[error("HTTP listener {addr}: {source}")]
pub struct HttpError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr` and serves until `stop` is cancelled. Returns the bound address and the task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    draining: Arc<AtomicBool>,
    health: SharedHealth,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError { addr, source })?;
    let state = Arc::new(HttpState {
        metrics,
        readiness,
        draining,
        health,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok((bound, task))
}
