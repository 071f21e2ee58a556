//! Connection admission as a libp2p `NetworkBehaviour`: totals, handshakes in progress (globally
//! and per address), connections per peer and per address, bans (an address ban is checked before
//! the handshake, a peer ban after it). Per-peer and per-address stream and rate state is in
//! [`crate::rate`]. Each refusal is counted under `ingress_rejects_total{reason}`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, Stream, StreamProtocol, SubstreamProtocol, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::rate::{AddrKey, Cut, PeerGate};
use crate::reject::Reject;

/// The `/collect` protocol id (defined by core, docs/protocol.md §2).
pub const COLLECT: StreamProtocol = StreamProtocol::new(sequencer_core::collect::PROTOCOL);

/// Refusal of a connection by [`EdgeGuard`].
#[derive(Debug, thiserror::Error)]
#[error("connection refused: {0}")]
pub struct Refused(pub Reject);

/// Inbound `/collect` streams negotiated but not yet picked up by the accept loop. The loop only
/// checks limits and spawns a reader, so it keeps up easily; the queue absorbs a burst of stream
/// opens (many collectors reconnecting after a deploy). When full, new streams are dropped and
/// counted (`stream_queue_full`) rather than held without bound.
pub const ACCEPT_QUEUE: usize = 1024;

/// An inbound `/collect` stream with its peer and the peer's address key.
pub type Inbound = (PeerId, Option<AddrKey>, Stream);

/// Per-connection handler: accepts `/collect` streams and hands them to the accept loop. It never
/// opens streams and does not keep the connection alive by itself: open streams do.
pub struct CollectHandler {
    peer: PeerId,
    addr: Option<AddrKey>,
    tx: mpsc::Sender<Inbound>,
    metrics: Metrics,
    negotiation_timeout: Duration,
}

impl ConnectionHandler for CollectHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<libp2p::StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        SubstreamProtocol::new(ReadyUpgrade::new(COLLECT), ())
            .with_timeout(self.negotiation_timeout)
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
            match self.tx.try_send((self.peer, self.addr, stream)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.reject(Reject::StreamQueueFull)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.metrics.reject(Reject::StreamDraining)
                }
            }
        }
    }
}

/// Connection admission behaviour.
pub struct EdgeGuard {
    gate: Arc<PeerGate>,
    streams_tx: mpsc::Sender<Inbound>,
    close_rx: mpsc::UnboundedReceiver<Cut>,
    negotiation_timeout: Duration,
    pending: HashMap<ConnectionId, Option<AddrKey>>,
    established: HashMap<ConnectionId, (PeerId, Option<AddrKey>)>,
    /// Connections per address, pending or established.
    per_addr: HashMap<AddrKey, usize>,
    /// Connections in the handshake per address.
    pending_per_addr: HashMap<AddrKey, usize>,
    per_peer: HashMap<PeerId, usize>,
    /// Denied after the handshake; their address count is released on ListenFailure.
    denied: HashMap<ConnectionId, Option<AddrKey>>,
    to_close: VecDeque<(PeerId, CloseConnection)>,
}

fn inc(map: &mut HashMap<AddrKey, usize>, key: Option<AddrKey>) {
    if let Some(k) = key {
        *map.entry(k).or_default() += 1;
    }
}

fn dec<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: Option<K>) {
    if let Some(k) = key {
        if let Some(n) = map.get_mut(&k) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&k);
            }
        }
    }
}

impl EdgeGuard {
    /// Behaviour enforcing `gate`'s connection limits (`close_rx` from [`PeerGate::new`]); the
    /// receiver yields admitted connections' inbound `/collect` streams. A stream must negotiate
    /// `/collect` within `negotiation_timeout`.
    pub fn new(
        gate: Arc<PeerGate>,
        close_rx: mpsc::UnboundedReceiver<Cut>,
        negotiation_timeout: Duration,
    ) -> (Self, mpsc::Receiver<Inbound>) {
        let (streams_tx, streams_rx) = mpsc::channel(ACCEPT_QUEUE);
        let guard = Self {
            gate,
            streams_tx,
            close_rx,
            negotiation_timeout,
            pending: HashMap::new(),
            established: HashMap::new(),
            per_addr: HashMap::new(),
            pending_per_addr: HashMap::new(),
            per_peer: HashMap::new(),
            denied: HashMap::new(),
            to_close: VecDeque::new(),
        };
        (guard, streams_rx)
    }

    fn handler(&self, peer: PeerId, addr: Option<AddrKey>) -> CollectHandler {
        CollectHandler {
            peer,
            addr,
            tx: self.streams_tx.clone(),
            metrics: self.gate.metrics().clone(),
            negotiation_timeout: self.negotiation_timeout,
        }
    }

    fn deny(&self, reason: Reject) -> ConnectionDenied {
        self.gate.metrics().reject(reason);
        ConnectionDenied::new(Refused(reason))
    }

    /// Forgets a pending connection (handshake finished or failed).
    fn end_pending(&mut self, connection_id: ConnectionId) -> Option<Option<AddrKey>> {
        let addr = self.pending.remove(&connection_id)?;
        dec(&mut self.pending_per_addr, addr);
        Some(addr)
    }

    fn established_denied(&mut self, connection_id: ConnectionId, addr: Option<AddrKey>) {
        self.denied.insert(connection_id, addr);
    }

    fn cut(&mut self, cut: Cut) {
        match cut {
            Cut::Peer(peer_id) => self.to_close.push_back((peer_id, CloseConnection::All)),
            Cut::Addr(a) => {
                for (id, (peer, addr)) in &self.established {
                    if *addr == Some(a) {
                        self.to_close.push_back((*peer, CloseConnection::One(*id)));
                    }
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
        let l = self.gate.limits();
        if self.gate.is_draining() {
            return Err(self.deny(Reject::ConnDraining));
        }
        let addr = AddrKey::from_multiaddr(remote_addr);
        // A banned address is refused before it costs a handshake.
        if addr.is_some_and(|a| self.gate.is_addr_banned(&a)) {
            return Err(self.deny(Reject::ConnBanned));
        }
        if let Some(a) = addr {
            if self.pending_per_addr.get(&a).copied().unwrap_or(0) >= l.max_pending_per_addr {
                return Err(self.deny(Reject::ConnPendingPerAddrLimit));
            }
        }
        if self.pending.len() >= l.max_pending {
            return Err(self.deny(Reject::ConnPendingLimit));
        }
        if self.pending.len() + self.established.len() >= l.max_connections {
            return Err(self.deny(Reject::ConnTotalLimit));
        }
        if let Some(a) = addr {
            if self.per_addr.get(&a).copied().unwrap_or(0) >= l.max_per_ip {
                return Err(self.deny(Reject::ConnPerIpLimit));
            }
        }
        inc(&mut self.per_addr, addr);
        inc(&mut self.pending_per_addr, addr);
        self.pending.insert(connection_id, addr);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The handshake is over whatever the verdict: free its pending slot now. A denied
        // connection's address count is released by the swarm's ListenFailure.
        let addr = match self.end_pending(connection_id) {
            Some(addr) => addr,
            None => {
                // Not seen pending (should not happen): count it now.
                let addr = AddrKey::from_multiaddr(remote_addr);
                inc(&mut self.per_addr, addr);
                addr
            }
        };
        if self.gate.is_banned(&peer, addr.as_ref()) {
            self.established_denied(connection_id, addr);
            return Err(self.deny(Reject::ConnBanned));
        }
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= self.gate.limits().max_per_peer {
            self.established_denied(connection_id, addr);
            return Err(self.deny(Reject::ConnPerPeerLimit));
        }
        self.established.insert(connection_id, (peer, addr));
        *self.per_peer.entry(peer).or_default() += 1;
        self.gate.metrics().connections_open.inc();
        self.gate.metrics().connections_accepted.inc();
        Ok(self.handler(peer, addr))
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
        Ok(self.handler(peer, None))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(f) => {
                if let Some(addr) = self.end_pending(f.connection_id) {
                    // Handshake failed or timed out.
                    dec(&mut self.per_addr, addr);
                } else if let Some(addr) = self.denied.remove(&f.connection_id) {
                    // Denied right after the handshake.
                    dec(&mut self.per_addr, addr);
                } else if let Some((peer, addr)) = self.established.remove(&f.connection_id) {
                    dec(&mut self.per_addr, addr);
                    dec(&mut self.per_peer, Some(peer));
                    self.gate.metrics().connections_open.dec();
                }
            }
            FromSwarm::ConnectionClosed(c) => {
                if let Some((peer, addr)) = self.established.remove(&c.connection_id) {
                    dec(&mut self.per_addr, addr);
                    dec(&mut self.per_peer, Some(peer));
                    self.gate.metrics().connections_open.dec();
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
        while let Poll::Ready(Some(cut)) = self.close_rx.poll_recv(cx) {
            self.cut(cut);
        }
        if let Some((peer_id, connection)) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection,
            });
        }
        Poll::Pending
    }
}
