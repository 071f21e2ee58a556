//! The libp2p host: TCP with TLS and Noise (Go collectors offer TLS first, then Noise), yamux,
//! and QUIC, with receive windows sized by [`crate::limits::UNREAD_BUDGET_BYTES`]; the
//! [`EdgeGuard`] admission behaviour; and the `/collect` readers that feed core's incremental
//! decoder and hand each message to the bounded buffer.
//!
//! Tasks are bounded: one accept loop, one reader per admitted stream (streams are capped per
//! peer, per address and in total by [`PeerGate`]), one swarm task.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use sequencer_core::collect::{CollectDecoder, CollectMessage};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::BufferHandle;
use crate::guard::{EdgeGuard, Inbound};
use crate::metrics::Metrics;
use crate::rate::{AddrKey, Admit, Cut, PeerGate, StreamTicket};
use crate::reject::Reject;
use crate::sink::{Envelope, EnvelopeMeta};

pub use crate::guard::COLLECT;

/// Settings of the host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Close connections without streams after this.
    pub idle_connection_timeout: Duration,
    /// Close a stream that sends nothing for this long.
    pub stream_idle_timeout: Duration,
    /// A started message must complete within this.
    pub partial_message_timeout: Duration,
    /// yamux / QUIC streams per connection.
    pub max_streams_per_connection: usize,
    /// Read buffer per stream.
    pub read_chunk_bytes: usize,
    /// A connection's upgrade (security + muxer, or the QUIC handshake) and a stream's protocol
    /// negotiation must finish within this.
    pub handshake_timeout: Duration,
    /// Stateless checks run on each message after it is charged to the peer's budget.
    pub edge: crate::edge::EdgePolicy,
}

impl Default for HostConfig {
    fn default() -> Self {
        use crate::limits as l;
        Self {
            listen: vec![default_listen()],
            idle_connection_timeout: l::IDLE_CONNECTION_TIMEOUT,
            stream_idle_timeout: l::STREAM_IDLE_TIMEOUT,
            partial_message_timeout: l::PARTIAL_MESSAGE_TIMEOUT,
            max_streams_per_connection: l::MAX_STREAMS_PER_CONNECTION,
            read_chunk_bytes: l::READ_CHUNK_BYTES,
            handshake_timeout: l::HANDSHAKE_TIMEOUT,
            edge: crate::edge::EdgePolicy::default(),
        }
    }
}

/// `/ip4/0.0.0.0/tcp/9100` (PROTOCOL.md §2).
pub fn default_listen() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(
            std::net::Ipv4Addr::UNSPECIFIED,
        ))
        .with(libp2p::multiaddr::Protocol::Tcp(9100))
}

/// Errors starting the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Transport or behaviour construction failed.
    #[error("building the libp2p host: {0}")]
    Build(String),
    /// A listen address could not be bound.
    #[error("listening on {addr}: {detail}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Cause.
        detail: String,
    },
}

/// The ingress host's behaviour: admission and `/collect` stream intake in one.
pub type Behaviour = EdgeGuard;

/// A running host.
pub struct Host {
    /// This host's peer id.
    pub peer_id: PeerId,
    /// Addresses actually listened on (ports resolved).
    pub listen_addrs: Vec<Multiaddr>,
    stop_accepting: CancellationToken,
    stop_readers: CancellationToken,
    stop_swarm: CancellationToken,
    swarm_task: tokio::task::JoinHandle<()>,
    accept_task: Option<tokio::task::JoinHandle<()>>,
}

impl Host {
    /// Stops accepting connections and streams (listeners closed, new connections refused).
    pub fn stop_accepting(&self) {
        self.stop_accepting.cancel();
    }

    /// Stops every reader: messages not yet in the buffer are not accepted; those in it stay.
    pub async fn stop_readers(&mut self) {
        self.stop_accepting.cancel();
        self.stop_readers.cancel();
        if let Some(t) = self.accept_task.take() {
            let _ = t.await;
        }
    }

    /// Closes all connections and ends the swarm task.
    pub async fn shutdown(mut self) {
        self.stop_readers().await;
        self.stop_swarm.cancel();
        let _ = self.swarm_task.await;
    }
}

struct ReaderCtx {
    gate: Arc<PeerGate>,
    buffer: BufferHandle,
    metrics: Metrics,
    cfg: HostConfig,
    cancel: CancellationToken,
}

fn build_swarm(
    key: Keypair,
    cfg: &HostConfig,
    guard: EdgeGuard,
) -> Result<Swarm<Behaviour>, HostError> {
    use crate::limits as l;
    let streams = cfg.max_streams_per_connection.max(1);
    let idle = cfg.idle_connection_timeout;
    let handshake = cfg.handshake_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            // TLS first, then Noise: the order Go collectors offer them.
            (libp2p::tls::Config::new, libp2p::noise::Config::new),
            move || {
                // Each stream's receive window is yamux's fixed 256 KiB
                // (`limits::YAMUX_STREAM_WINDOW`); the stream caps bound how many there are.
                let mut y = libp2p::yamux::Config::default();
                y.set_max_num_streams(streams);
                y
            },
        )
        .map_err(|e| HostError::Build(e.to_string()))?
        .with_quic_config(move |mut q| {
            q.max_concurrent_stream_limit = u32::try_from(streams).unwrap_or(u32::MAX);
            q.max_stream_data = l::QUIC_STREAM_WINDOW;
            q.max_connection_data = l::QUIC_CONNECTION_WINDOW;
            q.handshake_timeout = handshake;
            q
        })
        .with_behaviour(move |_| guard)
        .map_err(|e| HostError::Build(e.to_string()))?
        .with_swarm_config(move |c| {
            c.with_idle_connection_timeout(idle)
                .with_max_negotiating_inbound_streams(streams)
        })
        .with_connection_timeout(handshake)
        .build();
    Ok(swarm)
}

/// Builds the host, starts listening and serving `/collect`. Returns once every listen address
/// is bound (so tests can use port 0).
pub async fn start(
    key: Keypair,
    cfg: HostConfig,
    gate: Arc<PeerGate>,
    close_rx: tokio::sync::mpsc::UnboundedReceiver<Cut>,
    buffer: BufferHandle,
    metrics: Metrics,
) -> Result<Host, HostError> {
    let peer_id = key.public().to_peer_id();
    let (guard, incoming) = EdgeGuard::new(gate.clone(), close_rx, cfg.handshake_timeout);
    let mut swarm = build_swarm(key, &cfg, guard)?;

    let mut listeners = Vec::new();
    for addr in &cfg.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| HostError::Listen {
                addr: addr.clone(),
                detail: e.to_string(),
            })?;
        listeners.push((id, addr.clone()));
    }
    // Wait until each listener reports an address (or fails).
    let mut bound: Vec<Multiaddr> = Vec::new();
    let mut waiting: Vec<_> = listeners.iter().map(|(id, _)| *id).collect();
    let wait_until = Instant::now() + Duration::from_secs(10);
    while !waiting.is_empty() {
        let ev = tokio::time::timeout_at(wait_until, swarm.select_next_some())
            .await
            .map_err(|_| HostError::Listen {
                addr: cfg.listen[0].clone(),
                detail: "timed out binding".into(),
            })?;
        match ev {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                bound.push(address);
                waiting.retain(|w| *w != listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                return Err(listen_failed(
                    &listeners,
                    listener_id,
                    format!("{reason:?}"),
                ))
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                return Err(listen_failed(&listeners, listener_id, error.to_string()))
            }
            _ => {}
        }
    }

    let stop_accepting = CancellationToken::new();
    let stop_readers = CancellationToken::new();
    let stop_swarm = CancellationToken::new();

    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let swarm_task = tokio::spawn(swarm_loop(
        swarm,
        listeners.into_iter().map(|(id, _)| id).collect(),
        gate.clone(),
        stop_accepting.clone(),
        stop_swarm.clone(),
        ready_tx,
    ));
    let _ = ready_rx.await;

    let ctx = Arc::new(ReaderCtx {
        gate,
        buffer,
        metrics,
        cfg,
        cancel: stop_readers.clone(),
    });
    let accept_task = Some(tokio::spawn(accept_loop(
        incoming,
        ctx,
        stop_accepting.clone(),
    )));
    for a in &bound {
        tracing::info!(address = %a, %peer_id, "listening");
    }
    Ok(Host {
        peer_id,
        listen_addrs: bound,
        stop_accepting,
        stop_readers,
        stop_swarm,
        swarm_task,
        accept_task,
    })
}

async fn swarm_loop(
    mut swarm: Swarm<Behaviour>,
    listeners: Vec<libp2p::core::transport::ListenerId>,
    gate: Arc<PeerGate>,
    stop_accepting: CancellationToken,
    stop_swarm: CancellationToken,
    ready: oneshot::Sender<()>,
) {
    let _ = ready.send(());
    let mut prune = tokio::time::interval(Duration::from_secs(30));
    let mut accepting = true;
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                    tracing::debug!(remote = %send_back_addr, error = %error, "inbound connection failed or refused");
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    tracing::debug!(peer = %peer_id, remote = %endpoint.get_remote_address(), "connection established");
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                    tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                }
                SwarmEvent::ListenerError { error, .. } => {
                    tracing::error!(error = %error, "listener error");
                }
                _ => {}
            },
            _ = stop_accepting.cancelled(), if accepting => {
                accepting = false;
                gate.start_draining();
                for id in &listeners {
                    swarm.remove_listener(*id);
                }
                tracing::info!("stopped accepting connections and streams");
            }
            _ = prune.tick() => gate.prune(),
            _ = stop_swarm.cancelled() => break,
        }
    }
}

async fn accept_loop(
    mut incoming: tokio::sync::mpsc::Receiver<Inbound>,
    ctx: Arc<ReaderCtx>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            n = incoming.recv() => n,
            _ = stop.cancelled() => None,
        };
        let Some((peer, addr, stream)) = next else {
            break;
        };
        match ctx.gate.open_stream(peer, addr) {
            Ok(ticket) => {
                tokio::spawn(read_stream(peer, addr, stream, ticket, ctx.clone()));
            }
            Err(reason) => {
                ctx.metrics.reject(reason);
                tracing::debug!(%peer, %reason, "stream refused");
                drop(stream);
            }
        }
    }
}

fn meta(msg: &CollectMessage, peer: &PeerId) -> EnvelopeMeta {
    let s = &msg.submission;
    EnvelopeMeta {
        submission_id: msg.submission_id.hyphenated().to_string(),
        peer: peer.to_string(),
        market: s.data_market.clone(),
        epoch: s.request.epoch_id,
        slot: s.request.slot_id,
        project: s.request.project_id.clone(),
    }
}

fn envelope(msg: CollectMessage, meta: EnvelopeMeta, received_at: std::time::Instant) -> Envelope {
    let mut env = Envelope::new(msg.raw, meta);
    env.received_at = received_at;
    env
}

/// Outcome of handing one decoded message on.
enum Handed {
    Accepted,
    /// Refused by the edge checks (counted); the stream goes on.
    Refused,
    Stop(Reject),
}

/// Charges one message (well formed or not) to the peer's and its address's rate budgets,
/// waiting if they are spent.
async fn charge(ctx: &ReaderCtx, peer: &PeerId, addr: Option<&AddrKey>) -> Result<(), Reject> {
    match ctx.gate.admit_message(peer, addr) {
        Admit::Now => Ok(()),
        Admit::Wait(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => Ok(()),
                _ = ctx.cancel.cancelled() => Err(Reject::ShutdownBeforeAccept),
            }
        }
        Admit::Banned => Err(Reject::PeerBannedMessage),
    }
}

async fn hand_over(
    ctx: &ReaderCtx,
    peer: &PeerId,
    addr: Option<&AddrKey>,
    msg: CollectMessage,
    received_at: std::time::Instant,
) -> Handed {
    if let Err(reason) = charge(ctx, peer, addr).await {
        return Handed::Stop(reason);
    }
    let meta = meta(&msg, peer);
    if let Err(why) = crate::edge::check(&ctx.cfg.edge, &msg, &meta.attributes()) {
        ctx.metrics.reject(Reject::Edge(why.as_str()));
        tracing::debug!(%peer, reason = why.as_str(), error = %why, "refused at the edge");
        return Handed::Refused;
    }
    let env = envelope(msg, meta, received_at);
    tokio::select! {
        r = ctx.buffer.push(env) => match r {
            Ok(()) => Handed::Accepted,
            Err(_) => Handed::Stop(Reject::ShutdownBeforeAccept),
        },
        _ = ctx.cancel.cancelled() => Handed::Stop(Reject::ShutdownBeforeAccept),
    }
}

async fn read_stream(
    peer: PeerId,
    addr: Option<AddrKey>,
    mut stream: libp2p::Stream,
    ticket: StreamTicket,
    ctx: Arc<ReaderCtx>,
) {
    let _ticket = ticket;
    let mut decoder = CollectDecoder::new();
    let mut buf = vec![0u8; ctx.cfg.read_chunk_bytes.max(64)];
    let mut partial_since: Option<Instant> = None;
    // Last progress on a message (a message completed or bytes of one buffered). Bytes that are
    // not part of a message (whitespace between messages) do not move it: see
    // `limits::STREAM_IDLE_TIMEOUT`.
    let mut active_at = Instant::now();
    loop {
        let idle_at = active_at + ctx.cfg.stream_idle_timeout;
        let read_until = match partial_since {
            Some(t) => idle_at.min(t + ctx.cfg.partial_message_timeout),
            None => idle_at,
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(read_until, stream.read(&mut buf)) => r,
            _ = ctx.cancel.cancelled() => return,
        };
        let n = match read {
            Err(_) => {
                let reason = if partial_since.is_some() {
                    Reject::PartialMessageTimeout
                } else {
                    Reject::StreamIdleTimeout
                };
                ctx.metrics.reject(reason);
                tracing::debug!(%peer, %reason, "closing stream");
                return;
            }
            Ok(Err(e)) => {
                if decoder.finish().is_err() {
                    ctx.metrics.reject(Reject::Truncated);
                }
                tracing::debug!(%peer, error = %e, "stream read failed");
                return;
            }
            Ok(Ok(0)) => {
                if let Err(e) = decoder.finish() {
                    ctx.metrics.reject(Reject::from(&e));
                }
                return;
            }
            Ok(Ok(n)) => n,
        };
        let received_at = std::time::Instant::now();
        ctx.metrics.bytes_received.inc_by(n as u64);
        decoder.push(&buf[..n]);
        let mut completed = false;
        while let Some(item) = decoder.next_message() {
            match item {
                Ok(msg) => {
                    completed = true;
                    ctx.metrics.messages_received.inc();
                    if let Handed::Stop(reason) =
                        hand_over(&ctx, &peer, addr.as_ref(), msg, received_at).await
                    {
                        ctx.metrics.reject(reason);
                        return;
                    }
                }
                Err(e) => {
                    let reason = Reject::from(&e);
                    ctx.metrics.reject(reason);
                    if e.is_fatal() {
                        tracing::debug!(%peer, %reason, "resetting stream");
                        return;
                    }
                    // A complete but malformed message costs the peer's budget like a good one.
                    if let Err(reason) = charge(&ctx, &peer, addr.as_ref()).await {
                        ctx.metrics.reject(reason);
                        return;
                    }
                    completed = true;
                }
            }
        }
        // `next_message` has skipped whitespace between messages, so `buffered` counts only
        // bytes of a message in progress.
        let in_message = decoder.buffered() > 0;
        if completed || in_message {
            active_at = Instant::now();
        }
        partial_since = if !in_message {
            None
        } else if completed {
            Some(Instant::now())
        } else {
            partial_since.or(Some(Instant::now()))
        };
    }
}

/// The listen error for `listener_id`, naming the address it was asked to bind.
fn listen_failed(
    listeners: &[(libp2p::core::transport::ListenerId, Multiaddr)],
    listener_id: libp2p::core::transport::ListenerId,
    detail: String,
) -> HostError {
    let addr = listeners
        .iter()
        .find(|(id, _)| *id == listener_id)
        .map(|(_, a)| a.clone());
    HostError::Listen {
        addr: addr.unwrap_or_else(Multiaddr::empty),
        detail,
    }
}
