//! The libp2p host: TCP with TLS and Noise (Go collectors offer TLS first, then Noise), yamux,
//! and QUIC, with receive windows sized by [`crate::limits::UNREAD_BUDGET_BYTES`]; the
//! [`EdgeGuard`] admission behaviour; the `/collect` readers that feed core's incremental
//! decoder and hand each message to the bounded buffer; and, when configured, gossipsub with
//! Kademlia and identify behind [`P2pGate`] ([`crate::gossip`]) on the same port.
//!
//! Tasks are bounded: one accept loop, one reader per admitted stream (streams are capped per
//! peer, per address and in total by [`PeerGate`]), one swarm task, one gossip validator.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, StreamExt};
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, Multiaddr, PeerId, Swarm};
use sequencer_core::collect::{CollectDecoder, CollectMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::BufferHandle;
use crate::gossip::gate::P2pGate;
use crate::gossip::health::{MeshHealth, SharedHealth};
use crate::gossip::validate::{Job, Validator, Verdict};
use crate::gossip::{GossipSettings, P2pEvent};
use crate::guard::{EdgeGuard, Inbound};
use crate::metrics::{Metrics, Path};
use crate::rate::{AddrKey, Admit, Cut, PeerGate, StreamTicket};
use crate::reject::Reject;
use crate::seen::SeenIds;
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
    /// Gossipsub beside `/collect` (`None`: off, the library default; the binary turns it on).
    pub gossip: Option<GossipSettings>,
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
            gossip: None,
        }
    }
}

/// `/ip4/0.0.0.0/tcp/9100` (docs/protocol.md §2).
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

/// The ingress host's behaviour: admission and `/collect` stream intake, and the peer-to-peer
/// protocols when gossipsub is on. The guard comes first: a connection it refuses never reaches
/// the others.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Behaviour {
    /// Connection admission and `/collect`.
    pub guard: EdgeGuard,
    /// Gossipsub, Kademlia, identify (off: `None`).
    pub p2p: Toggle<P2pGate>,
}

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
    validator_task: Option<tokio::task::JoinHandle<()>>,
    /// Mesh health as the swarm task last saw it (`None` with gossipsub off).
    pub health: SharedHealth,
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
        if let Some(t) = self.validator_task.take() {
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
    seen: Arc<SeenIds>,
}

fn build_swarm(
    key: Keypair,
    cfg: &HostConfig,
    guard: EdgeGuard,
    p2p: Option<P2pGate>,
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
        .with_behaviour(move |_| Behaviour {
            guard,
            p2p: Toggle::from(p2p),
        })
        .map_err(|e| HostError::Build(e.to_string()))?
        .with_swarm_config(move |c| {
            c.with_idle_connection_timeout(idle)
                .with_max_negotiating_inbound_streams(streams)
        })
        .with_connection_timeout(handshake)
        .build();
    Ok(swarm)
}

/// Builds the host, starts listening and serving `/collect` (and gossipsub if configured).
/// Returns once every listen address is bound (so tests can use port 0).
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
    let p2p = match &cfg.gossip {
        Some(g) => Some(P2pGate::new(
            crate::gossip::build(&key, g, &metrics).map_err(|e| HostError::Build(e.to_string()))?,
            g,
            metrics.clone(),
        )),
        None => None,
    };
    let mut swarm = build_swarm(key, &cfg, guard, p2p)?;
    if let Some(g) = &cfg.gossip {
        for a in &g.external_addrs {
            swarm.add_external_address(a.clone());
        }
    }

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
    let seen = Arc::new(SeenIds::default());
    let health = SharedHealth::default();

    let (gossip, validator_task) = match &cfg.gossip {
        Some(g) => {
            let (jobs_tx, jobs_rx) = mpsc::channel(g.validation_queue.max(1));
            let (verdicts_tx, verdicts_rx) = mpsc::channel(g.validation_queue.max(1));
            let pending_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let validator = Validator {
                gate: gate.clone(),
                buffer: buffer.clone(),
                metrics: metrics.clone(),
                policy: cfg.edge.clone(),
                seen: seen.clone(),
                cache_bytes: g.cache_bytes,
                history: g.heartbeat * 12,
                cancel: stop_readers.clone(),
                pending_bytes: pending_bytes.clone(),
            };
            let task = tokio::spawn(validator.run(jobs_rx, verdicts_tx));
            let state = GossipLoop::new(
                g.clone(),
                jobs_tx,
                pending_bytes,
                metrics.clone(),
                health.clone(),
            );
            (Some((state, verdicts_rx)), Some(task))
        }
        None => (None, None),
    };

    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let swarm_task = tokio::spawn(swarm_loop(
        swarm,
        listeners.into_iter().map(|(id, _)| id).collect(),
        gate.clone(),
        stop_accepting.clone(),
        stop_swarm.clone(),
        ready_tx,
        gossip,
    ));
    let _ = ready_rx.await;

    let ctx = Arc::new(ReaderCtx {
        gate,
        buffer,
        metrics,
        cfg,
        cancel: stop_readers.clone(),
        seen,
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
        validator_task,
        health,
    })
}

async fn swarm_loop(
    mut swarm: Swarm<Behaviour>,
    listeners: Vec<libp2p::core::transport::ListenerId>,
    gate: Arc<PeerGate>,
    stop_accepting: CancellationToken,
    stop_swarm: CancellationToken,
    ready: oneshot::Sender<()>,
    gossip: Option<(GossipLoop, mpsc::Receiver<Verdict>)>,
) {
    let (mut gossip, mut verdicts) = match gossip {
        Some((g, v)) => (Some(g), Some(v)),
        None => (None, None),
    };
    let _ = ready.send(());
    let mut prune = tokio::time::interval(Duration::from_secs(30));
    let mut accepting = true;
    if let Some(g) = gossip.as_mut() {
        g.on_start(&mut swarm);
    }
    // Timers of the gossip side (they tick harmlessly when it is off).
    let (advertise_every, discover_every) = gossip
        .as_ref()
        .map(|g| (g.settings.advertise_interval, g.settings.discovery_interval))
        .unwrap_or((Duration::from_secs(3600), Duration::from_secs(3600)));
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let mut advertise = tokio::time::interval_at(Instant::now() + advertise_every, advertise_every);
    let mut discover = tokio::time::interval_at(Instant::now() + discover_every, discover_every);
    loop {
        let on = gossip.is_some();
        let verdict = async {
            match verdicts.as_mut() {
                Some(v) => v.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::P2p(ev)) => {
                    if let Some(g) = gossip.as_mut() {
                        g.on_event(&mut swarm, ev, accepting);
                    }
                }
                SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                    tracing::debug!(remote = %send_back_addr, error = %error, "inbound connection failed or refused");
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    tracing::debug!(peer = %peer_id, remote = %endpoint.get_remote_address(), "connection established");
                    if let Some(g) = gossip.as_mut() {
                        g.on_connected(&mut swarm, peer_id);
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                    tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    tracing::debug!(peer = ?peer_id, error = %error, "outbound connection failed");
                }
                SwarmEvent::ListenerError { error, .. } => {
                    tracing::error!(error = %error, "listener error");
                }
                _ => {}
            },
            Some(v) = verdict => {
                if let Some(g) = gossip.as_mut() {
                    g.report(&mut swarm, v);
                }
            }
            _ = health.tick(), if on => {
                if let Some(g) = gossip.as_mut() {
                    g.observe(&swarm);
                }
            }
            _ = advertise.tick(), if on && accepting => {
                if let Some(g) = gossip.as_mut() {
                    g.advertise(&mut swarm);
                }
            }
            _ = discover.tick(), if on && accepting => {
                if let Some(g) = gossip.as_mut() {
                    g.discover(&mut swarm);
                }
            }
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

/// The swarm task's gossip state: hands messages to the validator, reports its verdicts, keeps
/// the mesh-health snapshot, announces the provider records and looks for peers.
struct GossipLoop {
    settings: GossipSettings,
    jobs: mpsc::Sender<Job>,
    pending_bytes: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Metrics,
    health: SharedHealth,
    zero: (TopicHash, Arc<str>),
    all: (TopicHash, Arc<str>),
    keys: Vec<kad::RecordKey>,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    bootstrapped: bool,
}

impl GossipLoop {
    fn new(
        settings: GossipSettings,
        jobs: mpsc::Sender<Job>,
        pending_bytes: Arc<std::sync::atomic::AtomicUsize>,
        metrics: Metrics,
        health: SharedHealth,
    ) -> Self {
        let (zero, all) = settings.topics();
        let keys = settings
            .namespaces()
            .iter()
            .map(|ns| kad::RecordKey::new(&sequencer_core::gossip::rendezvous_key(ns)))
            .collect();
        let bootstrap = settings
            .bootstrap
            .iter()
            .filter_map(|a| {
                let split = crate::gossip::split_peer(a);
                if split.is_none() {
                    tracing::warn!(address = %a, "bootstrap address without /p2p/<peer id>; ignored");
                }
                split
            })
            .collect();
        Self {
            zero: (zero.hash(), Arc::from(zero.hash().as_str())),
            all: (all.hash(), Arc::from(all.hash().as_str())),
            settings,
            jobs,
            pending_bytes,
            metrics,
            health,
            keys,
            bootstrap,
            bootstrapped: false,
        }
    }

    fn p2p(swarm: &mut Swarm<Behaviour>) -> Option<&mut P2pGate> {
        swarm.behaviour_mut().p2p.as_mut()
    }

    fn on_start(&mut self, swarm: &mut Swarm<Behaviour>) {
        if let Some(p) = Self::p2p(swarm) {
            for (peer, addr) in &self.bootstrap {
                p.inner.kad.add_address(peer, addr.clone());
            }
        }
        self.dial_bootstrap(swarm);
        self.advertise(swarm);
        self.observe(swarm);
    }

    fn dial_bootstrap(&mut self, swarm: &mut Swarm<Behaviour>) {
        for (peer, addr) in self.bootstrap.clone() {
            if swarm.is_connected(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "bootstrap dial not started");
            }
        }
    }

    fn on_connected(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        if !self.bootstrapped && self.bootstrap.iter().any(|(p, _)| *p == peer) {
            if let Some(p) = Self::p2p(swarm) {
                if p.inner.kad.bootstrap().is_ok() {
                    self.bootstrapped = true;
                }
            }
            // The first announcement may have had nobody to go to.
            self.advertise(swarm);
        }
    }

    /// Announces the provider records (as the collectors' `util.Advertise`); in server mode they
    /// are also stored here, so a market without another DHT node still finds the ingress.
    fn advertise(&mut self, swarm: &mut Swarm<Behaviour>) {
        let Some(p) = Self::p2p(swarm) else { return };
        for k in &self.keys {
            if let Err(e) = p.inner.kad.start_providing(k.clone()) {
                tracing::warn!(error = %e, "could not store our provider record");
            }
        }
    }

    /// While the mesh of `<prefix>/all` is below `D_lo`, looks up the rendezvous providers and
    /// dials a few (as the collectors do every 30 s), and re-dials bootstrap peers.
    fn discover(&mut self, swarm: &mut Swarm<Behaviour>) {
        self.dial_bootstrap(swarm);
        let Some(p) = Self::p2p(swarm) else { return };
        let mesh = p.inner.gossipsub.mesh_peers(&self.all.0).count();
        if mesh >= 8 || !p.outbound_room() {
            return;
        }
        if let Some(k) = self.keys.first() {
            p.inner.kad.get_providers(k.clone());
        }
    }

    fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, ev: P2pEvent, accepting: bool) {
        match ev {
            P2pEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let topic = if message.topic == self.all.0 {
                    self.all.1.clone()
                } else {
                    self.zero.1.clone()
                };
                if !accepting {
                    self.ignore_now(swarm, "draining", message_id, propagation_source, topic);
                    return;
                }
                let addr = Self::p2p(swarm).and_then(|p| p.addr_of(&propagation_source));
                let len = message.data.len();
                let held = self
                    .pending_bytes
                    .load(std::sync::atomic::Ordering::Relaxed);
                if held + len > self.settings.validation_bytes {
                    self.ignore_now(
                        swarm,
                        "validation_queue_full",
                        message_id,
                        propagation_source,
                        topic,
                    );
                    return;
                }
                let job = Job {
                    from: propagation_source,
                    addr,
                    id: message_id,
                    topic,
                    author: message.source,
                    data: message.data,
                    received_at: std::time::Instant::now(),
                };
                // Counted before the send: the validator may take the job (and subtract) at once.
                self.pending_bytes
                    .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                match self.jobs.try_send(job) {
                    Ok(()) => self.metrics.path.gossip_validation_queue.inc(),
                    Err(mpsc::error::TrySendError::Full(job))
                    | Err(mpsc::error::TrySendError::Closed(job)) => {
                        self.pending_bytes
                            .fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
                        self.ignore_now(
                            swarm,
                            "validation_queue_full",
                            job.id,
                            job.from,
                            job.topic,
                        );
                    }
                }
            }
            P2pEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            }) => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "gossip peer too slow for its forwards");
            }
            P2pEvent::Gossipsub(_) => {}
            P2pEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            }) => self.dial_found(swarm, providers),
            P2pEvent::Kad(_) => {}
            P2pEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // Peers that serve the DHT go into the routing table with the addresses they
                // listen on (rust-libp2p's Kademlia does not learn them by itself).
                if info.protocols.contains(&crate::gossip::KAD_PROTOCOL) {
                    if let Some(p) = Self::p2p(swarm) {
                        for a in info.listen_addrs {
                            p.inner.kad.add_address(&peer_id, a);
                        }
                    }
                }
            }
            P2pEvent::Identify(_) => {}
        }
    }

    fn dial_found(&mut self, swarm: &mut Swarm<Behaviour>, providers: HashSet<PeerId>) {
        let me = *swarm.local_peer_id();
        let mut dialed = 0;
        for peer in providers {
            if dialed >= crate::gossip::DIALS_PER_ROUND {
                break;
            }
            if peer == me || swarm.is_connected(&peer) {
                continue;
            }
            let room = Self::p2p(swarm).is_some_and(|p| p.outbound_room());
            if !room {
                break;
            }
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if swarm.dial(opts).is_ok() {
                dialed += 1;
            }
        }
        if dialed > 0 {
            tracing::info!(dialed, "dialing peers found through the rendezvous");
        }
    }

    /// Counts an ignored message and tells gossipsub at once.
    fn ignore_now(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        reason: &'static str,
        id: gossipsub::MessageId,
        from: PeerId,
        topic: Arc<str>,
    ) {
        self.metrics.path.ignore(reason);
        self.report_now(swarm, id, from, topic, MessageAcceptance::Ignore);
    }

    fn report_now(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: gossipsub::MessageId,
        from: PeerId,
        topic: Arc<str>,
        acceptance: MessageAcceptance,
    ) {
        self.report(
            swarm,
            Verdict {
                id,
                from,
                topic,
                acceptance,
            },
        );
    }

    fn report(&mut self, swarm: &mut Swarm<Behaviour>, v: Verdict) {
        let label = match v.acceptance {
            MessageAcceptance::Accept => "accept",
            MessageAcceptance::Reject => "reject",
            MessageAcceptance::Ignore => "ignore",
        };
        self.metrics
            .path
            .gossip_verdicts
            .get_or_create(&[("topic", &v.topic), ("verdict", label)])
            .inc();
        if let Some(p) = Self::p2p(swarm) {
            // False when gossipsub already dropped it from its cache (older than the history
            // window): nothing left to forward or penalise.
            let _ =
                p.inner
                    .gossipsub
                    .report_message_validation_result(&v.id, &v.from, v.acceptance);
        }
    }

    /// Updates the gauges and the snapshot `/readyz` reports.
    fn observe(&mut self, swarm: &Swarm<Behaviour>) {
        let Some(p) = swarm.behaviour().p2p.as_ref() else {
            return;
        };
        let g = &p.inner.gossipsub;
        let count = |t: &TopicHash| {
            let mesh = g.mesh_peers(t).count();
            let subscribed = g.all_peers().filter(|(_, ts)| ts.contains(&t)).count();
            (mesh, subscribed)
        };
        let (zm, zs) = count(&self.zero.0);
        let (am, as_) = count(&self.all.0);
        let m = &self.metrics.path;
        for (label, mesh, subs) in [(&self.zero.1, zm, zs), (&self.all.1, am, as_)] {
            m.gossip_mesh_peers
                .get_or_create(&[("topic", label)])
                .set(i64::try_from(mesh).unwrap_or(i64::MAX));
            m.gossip_topic_peers
                .get_or_create(&[("topic", label)])
                .set(i64::try_from(subs).unwrap_or(i64::MAX));
        }
        let queued = self
            .settings
            .validation_queue
            .saturating_sub(self.jobs.capacity());
        self.health.set(MeshHealth {
            all: (self.all.1.to_string(), am, as_),
            zero: (self.zero.1.to_string(), zm, zs),
            connections: p.counts(),
            validation_queue: queued,
        });
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
        content_id: sequencer_core::gossip::content_id(s)
            .hyphenated()
            .to_string(),
        path: Path::Collect.as_str().to_owned(),
        kind: String::new(),
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
        ctx.metrics.path.reject(Path::Collect, why.as_str());
        tracing::debug!(%peer, reason = why.as_str(), error = %why, "refused at the edge");
        return Handed::Refused;
    }
    let content_id = sequencer_core::gossip::content_id(&msg.submission);
    let env = envelope(msg, meta, received_at);
    let handed = tokio::select! {
        r = ctx.buffer.push(env) => match r {
            Ok(()) => Handed::Accepted,
            Err(_) => Handed::Stop(Reject::ShutdownBeforeAccept),
        },
        _ = ctx.cancel.cancelled() => Handed::Stop(Reject::ShutdownBeforeAccept),
    };
    if let Handed::Accepted = handed {
        ctx.metrics.path.count(Path::Collect, "accepted");
        if let Some(first) = ctx.seen.observe(content_id, Path::Collect) {
            ctx.metrics.path.duplicate(Path::Collect, first);
        }
    }
    handed
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
                    ctx.metrics.path.count(Path::Collect, "received");
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
                    ctx.metrics.path.count(Path::Collect, "received");
                    ctx.metrics.path.reject(Path::Collect, reason.as_str());
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
