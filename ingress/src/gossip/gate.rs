//! [`P2pGate`]: which connections speak the peer-to-peer protocols. Every connection the
//! [`crate::guard::EdgeGuard`] admits can write `/collect`; only up to
//! [`crate::limits::GOSSIP_MAX_INBOUND`] inbound connections (and
//! [`crate::limits::GOSSIP_MAX_INBOUND_PER_ADDR`] per address), plus up to
//! [`crate::limits::GOSSIP_MAX_OUTBOUND`] we dialed, get gossipsub, Kademlia and identify. The rest
//! get a handler that speaks none of them, so the memory those protocols may hold per connection
//! (an RPC decode buffer of up to 1 MiB, stream windows, a send queue) is paid for a bounded number
//! of connections whatever an attacker opens.
//!
//! The wrapped behaviour sees only its own connections: connection events of the others are not
//! passed on, and `other_established` / `remaining_established` count its connections only (a
//! peer may have one admitted and one refused connection).

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll};

use either::Either;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::{GossipSettings, P2p, APP_SCORE};
use crate::metrics::Metrics;
use crate::rate::AddrKey;

/// One admitted connection.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    peer: PeerId,
    addr: Option<AddrKey>,
    inbound: bool,
}

/// Admission of connections to the peer-to-peer protocols.
pub struct P2pGate {
    /// The protocols.
    pub inner: P2p,
    max_inbound: usize,
    max_inbound_per_addr: usize,
    max_outbound: usize,
    admitted: HashMap<ConnectionId, Admitted>,
    inbound: usize,
    outbound: usize,
    per_addr: HashMap<AddrKey, usize>,
    per_peer: HashMap<PeerId, usize>,
    refused: HashSet<ConnectionId>,
    metrics: Metrics,
}

impl P2pGate {
    /// Wraps `inner` with the caps of `s`.
    pub fn new(inner: P2p, s: &GossipSettings, metrics: Metrics) -> Self {
        Self {
            inner,
            max_inbound: s.max_inbound,
            max_inbound_per_addr: s.max_inbound_per_addr,
            max_outbound: s.max_outbound,
            admitted: HashMap::new(),
            inbound: 0,
            outbound: 0,
            per_addr: HashMap::new(),
            per_peer: HashMap::new(),
            refused: HashSet::new(),
            metrics,
        }
    }

    /// The address key of an admitted peer (its first admitted connection's), for the per-address
    /// budgets of messages it forwards.
    pub fn addr_of(&self, peer: &PeerId) -> Option<AddrKey> {
        self.admitted
            .values()
            .find(|a| a.peer == *peer)
            .and_then(|a| a.addr)
    }

    /// Whether `peer` has an admitted connection.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        self.per_peer.contains_key(peer)
    }

    /// Admitted connections (inbound, outbound).
    pub fn counts(&self) -> (usize, usize) {
        (self.inbound, self.outbound)
    }

    /// Whether another outbound connection would be admitted.
    pub fn outbound_room(&self) -> bool {
        self.outbound < self.max_outbound
    }

    fn admit(&mut self, id: ConnectionId, peer: PeerId, remote: &Multiaddr, inbound: bool) -> bool {
        let addr = AddrKey::from_multiaddr(remote);
        if inbound {
            if self.inbound >= self.max_inbound {
                return false;
            }
            if let Some(a) = addr {
                if self.per_addr.get(&a).copied().unwrap_or(0) >= self.max_inbound_per_addr {
                    return false;
                }
            }
        } else if self.outbound >= self.max_outbound {
            return false;
        }
        if inbound {
            self.inbound += 1;
            if let Some(a) = addr {
                *self.per_addr.entry(a).or_default() += 1;
            }
        } else {
            self.outbound += 1;
        }
        *self.per_peer.entry(peer).or_default() += 1;
        self.admitted.insert(
            id,
            Admitted {
                peer,
                addr,
                inbound,
            },
        );
        self.metrics.path.gossip_connections.inc();
        true
    }

    fn release(&mut self, id: ConnectionId) -> Option<Admitted> {
        let a = self.admitted.remove(&id)?;
        if a.inbound {
            self.inbound = self.inbound.saturating_sub(1);
            if let Some(k) = a.addr {
                if let Some(n) = self.per_addr.get_mut(&k) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_addr.remove(&k);
                    }
                }
            }
        } else {
            self.outbound = self.outbound.saturating_sub(1);
        }
        if let Some(n) = self.per_peer.get_mut(&a.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&a.peer);
            }
        }
        self.metrics.path.gossip_connections.dec();
        Some(a)
    }

    fn refuse(&mut self, id: ConnectionId) -> THandler<Self> {
        self.refused.insert(id);
        self.metrics
            .reject(crate::reject::Reject::Gossip("gossip_connections_full"));
        Either::Right(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for P2pGate {
    type ConnectionHandler = Either<THandler<P2p>, dummy::ConnectionHandler>;
    type ToSwarm = <P2p as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.admit(connection_id, peer, remote_addr, true) {
            return Ok(self.refuse(connection_id));
        }
        match self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        ) {
            Ok(h) => Ok(Either::Left(h)),
            Err(e) => {
                self.release(connection_id);
                Err(e)
            }
        }
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.admit(connection_id, peer, addr, false) {
            return Ok(self.refuse(connection_id));
        }
        match self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        ) {
            Ok(h) => Ok(Either::Left(h)),
            Err(e) => {
                self.release(connection_id);
                Err(e)
            }
        }
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(c) => {
                if !self.admitted.contains_key(&c.connection_id) {
                    return;
                }
                let mine = self.per_peer.get(&c.peer_id).copied().unwrap_or(1);
                self.inner.on_swarm_event(FromSwarm::ConnectionEstablished(
                    ConnectionEstablished {
                        other_established: mine.saturating_sub(1),
                        ..c
                    },
                ));
                if mine == 1 {
                    self.inner
                        .gossipsub
                        .set_application_score(&c.peer_id, APP_SCORE);
                }
            }
            FromSwarm::ConnectionClosed(c) => {
                if self.refused.remove(&c.connection_id) {
                    return;
                }
                if self.release(c.connection_id).is_none() {
                    return;
                }
                let remaining = self.per_peer.get(&c.peer_id).copied().unwrap_or(0);
                self.inner
                    .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                        remaining_established: remaining,
                        ..c
                    }));
            }
            FromSwarm::AddressChange(a) => {
                if self.admitted.contains_key(&a.connection_id) {
                    self.inner.on_swarm_event(event);
                }
            }
            FromSwarm::DialFailure(_) | FromSwarm::ListenFailure(_) => {
                // Only established connections are admitted: a failed one was never ours, but
                // Kademlia learns from failed dials which addresses to forget.
                self.inner.on_swarm_event(event);
            }
            other => self.inner.on_swarm_event(other),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(e) => self
                .inner
                .on_connection_handler_event(peer_id, connection_id, e),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx).map(|e| e.map_in(Either::Left))
    }
}
