//! `sequencer-collector`: the local collector Powerloom's snapshotter node (snapshotter-lite-v2)
//! talks to, unchanged. The node dials `snapshotter-lite-local-collector:50051` and calls
//! `submission.Submission/SubmitSnapshot` (unary, plaintext HTTP/2) once per signed submission;
//! this collector takes each one into a bounded buffer ([`buffer`]) and forwards it over libp2p
//! `/collect` (a UUID and the JSON, docs/protocol.md §2) to one configured sequencer whose peer id is
//! pinned ([`upstream`]), redialling with backoff. Nothing is dropped silently: every refusal
//! and drop is counted with its reason ([`metrics`]), and `/health` answers 503 while the
//! sequencer is unreachable, with the buffer's depth.
//!
//! Not here yet: publishing on gossipsub (docs/protocol.md §10) besides `/collect`. It is for a later
//! stage, once the ingress subscribes; `/collect` alone reaches our sequencer.

pub mod buffer;
pub mod grpc;
pub mod metrics;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sequencer_core::Address;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use buffer::Buffer;
use metrics::{Counts, Stats};
use upstream::{Upstream, UpstreamConfig};

/// Configuration, from flags or the environment (the stock collector's variable names where it
/// has one).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sequencer-collector", version)]
pub struct Config {
    /// gRPC port the node dials (`snapshotter-lite-local-collector:<port>`).
    #[arg(long, env = "LOCAL_COLLECTOR_PORT", default_value_t = 50051)]
    pub port: u16,
    /// Address the gRPC listener binds.
    #[arg(long, env = "COLLECTOR_BIND", default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    /// Port of `/health` and `/metrics` (the stock collector's health port).
    #[arg(long, env = "HEALTH_CHECK_PORT", default_value_t = 8080)]
    pub health_port: u16,
    /// The sequencer's libp2p address with its peer id, e.g.
    /// `/dns4/seq.example/tcp/9100/p2p/12D3KooW…` (`seqctl market snapshotter-env` prints it).
    #[arg(long, env = "SEQUENCER_MULTIADDR")]
    pub sequencer: Multiaddr,
    /// The data market; submissions for another market are refused (`wrong_market`).
    #[arg(long, env = "DATA_MARKET_CONTRACT")]
    pub data_market: Option<Address>,
    /// Submissions held while the sequencer is slow or unreachable.
    #[arg(long, env = "COLLECTOR_BUFFER_SIZE", default_value_t = 10_000)]
    pub buffer: usize,
    /// Seconds a submission may wait before it is dropped (`expired`): past any window.
    #[arg(long, env = "COLLECTOR_MAX_AGE_SECS", default_value_t = 600)]
    pub max_age_secs: u64,
    /// `/collect` streams kept open (the stock collector's stream pool size).
    #[arg(long, env = "MAX_STREAM_POOL_SIZE", default_value_t = 2)]
    pub streams: usize,
    /// One write longer than this fails and is retried on a new stream, milliseconds.
    #[arg(long, env = "STREAM_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    pub write_timeout_ms: u64,
    /// First redial delay, milliseconds (doubles per failure up to 30 s).
    #[arg(long, env = "COLLECTOR_BACKOFF_MS", default_value_t = 500)]
    pub backoff_ms: u64,
    /// Seconds to keep forwarding what is buffered after SIGTERM before dropping (`shutdown`).
    #[arg(long, env = "COLLECTOR_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,
}

impl Config {
    /// The pinned peer id: the `/p2p/` component of the sequencer address.
    pub fn sequencer_peer(&self) -> Result<PeerId> {
        match self.sequencer.iter().last() {
            Some(Protocol::P2p(p)) => Ok(p),
            _ => bail!(
                "SEQUENCER_MULTIADDR {} does not end in /p2p/<peer id>: the sequencer's id must be pinned",
                self.sequencer
            ),
        }
    }
}

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder).
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "no Prometheus recorder: another one is installed");
                None
            }
        })
        .as_ref()
}

/// A running collector.
pub struct Collector {
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound `/health` and `/metrics` address.
    pub http_addr: SocketAddr,
    /// This instance's counts.
    pub stats: Arc<Stats>,
    buffer: Arc<Buffer>,
    upstream: Upstream,
    stop_grpc: CancellationToken,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    http_task: JoinHandle<()>,
    stop_http: CancellationToken,
    drain: Duration,
}

#[derive(Clone)]
struct HealthState {
    stats: Arc<Stats>,
    buffer: Arc<Buffer>,
    sequencer: String,
}

async fn health(State(s): State<HealthState>) -> impl IntoResponse {
    let up = s.stats.is_connected();
    let body = json!({
        "status": if up { "ok" } else { "upstream_down" },
        "upstream": { "connected": up, "sequencer": s.sequencer },
        "buffer": { "depth": s.buffer.depth(), "capacity": s.buffer.capacity() },
        "counts": s.stats.counts(),
    });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics_text() -> impl IntoResponse {
    match prometheus() {
        Some(h) => (StatusCode::OK, h.render()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no Prometheus recorder in this process\n".to_string(),
        ),
    }
}

impl Collector {
    /// Binds both listeners and starts forwarding.
    pub async fn start(cfg: Config) -> Result<Self> {
        let peer = cfg.sequencer_peer()?;
        let _ = prometheus();
        let stats = Arc::new(Stats::default());
        let buffer = Arc::new(Buffer::new(
            cfg.buffer,
            Duration::from_secs(cfg.max_age_secs),
            stats.clone(),
        ));
        let upstream = Upstream::start(
            UpstreamConfig {
                addr: cfg.sequencer.clone(),
                peer,
                streams: cfg.streams,
                write_timeout: Duration::from_millis(cfg.write_timeout_ms.max(1)),
                backoff_initial: Duration::from_millis(cfg.backoff_ms.max(1)),
                backoff_max: Duration::from_secs(30),
            },
            // The collector's own identity: the sequencer pins nothing about it, so a fresh
            // one per start is enough.
            libp2p::identity::Keypair::generate_ed25519(),
            buffer.clone(),
            stats.clone(),
        )
        .map_err(|e| anyhow::anyhow!("libp2p: {e}"))?;

        let grpc = tokio::net::TcpListener::bind((cfg.bind, cfg.port))
            .await
            .with_context(|| format!("binding gRPC on {}:{}", cfg.bind, cfg.port))?;
        let grpc_addr = grpc.local_addr()?;
        let svc = grpc::pb::submission_server::SubmissionServer::new(grpc::Service::new(
            buffer.clone(),
            stats.clone(),
            cfg.data_market,
        ))
        .max_decoding_message_size(grpc::MAX_GRPC_MESSAGE_BYTES);
        let stop_grpc = CancellationToken::new();
        let grpc_task = {
            let stop = stop_grpc.clone();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(grpc),
                        async move { stop.cancelled().await },
                    ),
            )
        };

        let http = tokio::net::TcpListener::bind((cfg.bind, cfg.health_port))
            .await
            .with_context(|| format!("binding HTTP on {}:{}", cfg.bind, cfg.health_port))?;
        let http_addr = http.local_addr()?;
        let state = HealthState {
            stats: stats.clone(),
            buffer: buffer.clone(),
            sequencer: cfg.sequencer.to_string(),
        };
        let app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics_text))
            .with_state(state);
        let stop_http = CancellationToken::new();
        let http_task = {
            let stop = stop_http.clone();
            tokio::spawn(async move {
                let _ = axum::serve(http, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            })
        };
        tracing::info!(%grpc_addr, %http_addr, sequencer = %cfg.sequencer, "collector started");
        Ok(Self {
            grpc_addr,
            http_addr,
            stats,
            buffer,
            upstream,
            stop_grpc,
            grpc_task,
            http_task,
            stop_http,
            drain: Duration::from_secs(cfg.drain_secs),
        })
    }

    /// Messages waiting in the buffer.
    pub fn depth(&self) -> usize {
        self.buffer.depth()
    }

    /// Stops taking submissions, forwards what is buffered for up to the drain time, counts
    /// the rest as dropped (`shutdown`), and returns the counts.
    pub async fn shutdown(self) -> Counts {
        self.stop_grpc.cancel();
        let _ = self.grpc_task.await;
        self.buffer.close();
        self.upstream.finish(&self.buffer, self.drain).await;
        let left = self.buffer.drop_all("shutdown");
        if left > 0 {
            tracing::warn!(
                left,
                "submissions still buffered at the drain deadline were dropped"
            );
        }
        self.stop_http.cancel();
        let _ = self.http_task.await;
        self.stats.counts()
    }
}
