//! Edge protection: connection admission (total, pending handshakes, per peer, per IP, bans) as a
//! libp2p `NetworkBehaviour`, and the per-peer state readers consult (token bucket, stream count).
//! Each refusal is counted under `ingress_rejects_total{reason}`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, Stream, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Limits enforced at the edge (defaults in [`crate::limits`]).
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Established + pending inbound connections.
    pub max_connections: usize,
    /// Inbound connections in the handshake.
    pub max_pending: usize,
    /// Connections per peer id.
    pub max_per_peer: usize,
    /// Connections per remote IP.
    pub max_per_ip: usize,
    /// `/collect` streams per peer.
    pub max_streams_per_peer: usize,
    /// `/collect` streams in total.
    pub max_streams_total: usize,
    /// Sustained messages per second per peer.
    pub peer_rate: f64,
    /// Burst per peer.
    pub peer_burst: f64,
    /// Continuous throttling after which a peer is cut off.
    pub abuse_after: Duration,
    /// How long a cut-off peer is refused.
    pub ban_for: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        use crate::limits as l;
        Self {
            max_connections: l::MAX_CONNECTIONS,
            max_pending: l::MAX_PENDING_INCOMING,
            max_per_peer: l::MAX_CONNECTIONS_PER_PEER,
            max_per_ip: l::MAX_CONNECTIONS_PER_IP,
            max_streams_per_peer: l::MAX_STREAMS_PER_PEER,
            max_streams_total: l::MAX_STREAMS_TOTAL,
            peer_rate: l::PEER_RATE_PER_SEC,
            peer_burst: l::PEER_BURST,
            abuse_after: l::PEER_ABUSE_AFTER,
            ban_for: l::PEER_BAN,
        }
    }
}

#[derive(Debug)]
struct PeerState {
    tokens: f64,
    last: Instant,
    throttled_since: Option<Instant>,
    streams: usize,
}

/// Decision of the token bucket for one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// Go on.
    Now,
    /// Wait this long first (the reader sleeps: the peer is slowed, not dropped).
    Wait(Duration),
    /// The peer flooded for too long: close the stream; its connections are being closed.
    Banned,
}

/// Per-peer state shared by readers and the connection gate.
pub struct PeerGate {
    limits: EdgeLimits,
    peers: Mutex<HashMap<PeerId, PeerState>>,
    bans: Mutex<HashMap<PeerId, Instant>>,
    streams_total: Arc<Semaphore>,
    close_tx: mpsc::UnboundedSender<PeerId>,
    metrics: Metrics,
    draining: AtomicBool,
}

/// A `/collect` stream slot; released on drop.
pub struct StreamTicket {
    gate: Arc<PeerGate>,
    peer: PeerId,
    _total: OwnedSemaphorePermit,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.gate.metrics.streams_open.dec();
        let mut peers = self.gate.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = peers.get_mut(&self.peer) {
            s.streams = s.streams.saturating_sub(1);
        }
    }
}

impl PeerGate {
    /// A gate and the receiver of "close this peer's connections" requests (for [`EdgeGuard`]).
    pub fn new(
        limits: EdgeLimits,
        metrics: Metrics,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<PeerId>) {
        let (close_tx, close_rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Self {
            streams_total: Arc::new(Semaphore::new(limits.max_streams_total.max(1))),
            limits,
            peers: Mutex::new(HashMap::new()),
            bans: Mutex::new(HashMap::new()),
            close_tx,
            metrics,
            draining: AtomicBool::new(false),
        });
        (gate, close_rx)
    }

    /// The limits in force.
    pub fn limits(&self) -> &EdgeLimits {
        &self.limits
    }

    /// Refuse all new connections and streams from now on (shutdown).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn fresh(&self, now: Instant) -> PeerState {
        PeerState {
            tokens: self.limits.peer_burst,
            last: now,
            throttled_since: None,
            streams: 0,
        }
    }

    /// Whether `peer` is refused right now.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        let mut bans = self.bans.lock().unwrap_or_else(|p| p.into_inner());
        match bans.get(peer) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                bans.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Admits a new `/collect` stream of `peer`, or says which limit refused it.
    pub fn open_stream(self: &Arc<Self>, peer: PeerId) -> Result<StreamTicket, &'static str> {
        if self.is_draining() {
            return Err("stream_draining");
        }
        if self.is_banned(&peer) {
            return Err("stream_banned");
        }
        let total = self
            .streams_total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "streams_total")?;
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let st = peers.entry(peer).or_insert_with(|| self.fresh(now));
        if st.streams >= self.limits.max_streams_per_peer {
            return Err("streams_per_peer");
        }
        st.streams += 1;
        self.metrics.streams_open.inc();
        self.metrics.streams_accepted.inc();
        Ok(StreamTicket {
            gate: self.clone(),
            peer,
            _total: total,
        })
    }

    /// Takes one token for a message from `peer`.
    pub fn admit_message(&self, peer: &PeerId) -> Admit {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let st = peers.entry(*peer).or_insert_with(|| self.fresh(now));
        let rate = self.limits.peer_rate.max(f64::MIN_POSITIVE);
        let elapsed = now.saturating_duration_since(st.last).as_secs_f64();
        st.tokens = (st.tokens + elapsed * rate).min(self.limits.peer_burst);
        st.last = now;
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            st.throttled_since = None;
            return Admit::Now;
        }
        let since = *st.throttled_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.limits.abuse_after {
            st.throttled_since = None;
            st.tokens = 0.0;
            drop(peers);
            self.ban(*peer);
            return Admit::Banned;
        }
        // Reserve the token now and wait until it has been earned: concurrent streams of one
        // peer queue behind each other, so the peer's total rate stays at `peer_rate`.
        st.tokens -= 1.0;
        let wait = Duration::from_secs_f64((-st.tokens / rate).min(60.0));
        self.metrics.throttled.inc();
        Admit::Wait(wait)
    }

    fn ban(&self, peer: PeerId) {
        let until = Instant::now() + self.limits.ban_for;
        self.bans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, until);
        self.metrics.reject("peer_banned_flood");
        tracing::warn!(%peer, ban_secs = self.limits.ban_for.as_secs(), "peer flooded past its rate for too long; cut off");
        let _ = self.close_tx.send(peer);
    }

    /// Forgets idle peers whose bucket is full again (keeps the map bounded).
    pub fn prune(&self) {
        let now = Instant::now();
        let refill = Duration::from_secs_f64(
            self.limits.peer_burst / self.limits.peer_rate.max(f64::MIN_POSITIVE),
        );
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.streams > 0 || now.saturating_duration_since(s.last) < refill);
        self.bans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Refusal of a connection by [`EdgeGuard`].
#[derive(Debug, thiserror::Error)]
#[error("connection refused: {0}")]
pub struct Refused(pub &'static str);

/// Inbound `/collect` streams negotiated but not yet picked up by the accept loop. The loop only
/// checks limits and spawns a reader, so it keeps up easily; the queue absorbs a burst of stream
/// opens (many collectors reconnecting after a deploy). When full, new streams are dropped and
/// counted (`stream_queue_full`) rather than held without bound.
pub const ACCEPT_QUEUE: usize = 1024;

/// An inbound `/collect` stream with its peer.
pub type Inbound = (PeerId, Stream);

/// Per-connection handler: accepts `/collect` streams and hands them to the accept loop. It never
/// opens streams and does not keep the connection alive by itself: open streams do.
pub struct CollectHandler {
    peer: PeerId,
    tx: mpsc::Sender<Inbound>,
    metrics: Metrics,
}

impl ConnectionHandler for CollectHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<libp2p::StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        SubstreamProtocol::new(ReadyUpgrade::new(crate::host::COLLECT), ())
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            match self.tx.try_send((self.peer, stream)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.metrics.reject("stream_queue_full"),
                Err(mpsc::error::TrySendError::Closed(_)) => self.metrics.reject("stream_draining"),
            }
        }
    }
}

/// Connection admission behaviour.
pub struct EdgeGuard {
    gate: Arc<PeerGate>,
    streams_tx: mpsc::Sender<Inbound>,
    close_rx: mpsc::UnboundedReceiver<PeerId>,
    pending: HashMap<ConnectionId, Option<IpAddr>>,
    established: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    per_ip: HashMap<IpAddr, usize>,
    per_peer: HashMap<PeerId, usize>,
    to_close: VecDeque<PeerId>,
}

impl EdgeGuard {
    /// Behaviour enforcing `gate`'s connection limits (`close_rx` from [`PeerGate::new`]); the
    /// receiver yields admitted connections' inbound `/collect` streams.
    pub fn new(
        gate: Arc<PeerGate>,
        close_rx: mpsc::UnboundedReceiver<PeerId>,
    ) -> (Self, mpsc::Receiver<Inbound>) {
        let (streams_tx, streams_rx) = mpsc::channel(ACCEPT_QUEUE);
        let guard = Self {
            gate,
            streams_tx,
            close_rx,
            pending: HashMap::new(),
            established: HashMap::new(),
            per_ip: HashMap::new(),
            per_peer: HashMap::new(),
            to_close: VecDeque::new(),
        };
        (guard, streams_rx)
    }

    fn handler(&self, peer: PeerId) -> CollectHandler {
        CollectHandler {
            peer,
            tx: self.streams_tx.clone(),
            metrics: self.gate.metrics.clone(),
        }
    }

    fn deny(&self, reason: &'static str) -> ConnectionDenied {
        self.gate.metrics.reject(reason);
        ConnectionDenied::new(Refused(reason))
    }

    fn release_ip(&mut self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }
}

impl NetworkBehaviour for EdgeGuard {
    type ConnectionHandler = CollectHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let l = &self.gate.limits;
        if self.gate.is_draining() {
            return Err(self.deny("conn_draining"));
        }
        if self.pending.len() >= l.max_pending {
            return Err(self.deny("conn_pending_limit"));
        }
        if self.pending.len() + self.established.len() >= l.max_connections {
            return Err(self.deny("conn_total_limit"));
        }
        let ip = ip_of(remote_addr);
        if let Some(ip) = ip {
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= l.max_per_ip {
                return Err(self.deny("conn_per_ip_limit"));
            }
            *self.per_ip.entry(ip).or_default() += 1;
        }
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Denied connections stay in `pending` until the swarm's ListenFailure cleans them up.
        if self.gate.is_banned(&peer) {
            return Err(self.deny("conn_banned"));
        }
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= self.gate.limits.max_per_peer {
            return Err(self.deny("conn_per_peer_limit"));
        }
        let ip = match self.pending.remove(&connection_id) {
            Some(ip) => ip,
            None => {
                // Not seen pending (should not happen): count it now.
                let ip = ip_of(remote_addr);
                if let Some(ip) = ip {
                    *self.per_ip.entry(ip).or_default() += 1;
                }
                ip
            }
        };
        self.established.insert(connection_id, (peer, ip));
        *self.per_peer.entry(peer).or_default() += 1;
        self.gate.metrics.connections_open.inc();
        self.gate.metrics.connections_accepted.inc();
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The ingress never dials; outbound connections are not limited here.
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(f) => {
                if let Some(ip) = self.pending.remove(&f.connection_id) {
                    self.release_ip(ip);
                } else if let Some((peer, ip)) = self.established.remove(&f.connection_id) {
                    self.release_ip(ip);
                    if let Some(n) = self.per_peer.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                    }
                    self.gate.metrics.connections_open.dec();
                }
            }
            FromSwarm::ConnectionClosed(c) => {
                if let Some((peer, ip)) = self.established.remove(&c.connection_id) {
                    self.release_ip(ip);
                    if let Some(n) = self.per_peer.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.per_peer.remove(&peer);
                        }
                    }
                    self.gate.metrics.connections_open.dec();
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some(peer)) = self.close_rx.poll_recv(cx) {
            self.to_close.push_back(peer);
        }
        if let Some(peer_id) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            });
        }
        Poll::Pending
    }
}
