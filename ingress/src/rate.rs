//! Per-peer and per-address state that `/collect` readers consult: token buckets, bans and stream
//! counts. Peer ids cost nothing to make, so every budget a peer has, its address has too
//! ([`AddrKey`]: IPv4 /32, IPv6 /64); a message needs a token from both buckets, a stream a slot in
//! both counts, and a ban of either refuses it. Connection admission is in [`crate::guard`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::limits::EdgeLimits;
use crate::metrics::Metrics;
use crate::reject::Reject;

/// The unit address budgets are kept per: an IPv4 address, or the /64 prefix of an IPv6 address
/// (one customer's allocation: a host gets a whole /64 and can use any address in it, so keying on
/// /128 would let it mint addresses as freely as peer ids). IPv4-mapped IPv6 counts as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    AddrKey(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }

    /// The key of the first IP in `addr` (`None` for an address without one).
    pub fn from_multiaddr(addr: &Multiaddr) -> Option<Self> {
        addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(Self::of(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => Some(Self::of(IpAddr::V6(ip))),
            _ => None,
        })
    }

    /// The address (IPv6: the prefix with the host part zeroed).
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
}

/// Whose connections [`crate::guard::EdgeGuard`] must close after a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every connection of this peer id.
    Peer(PeerId),
    /// Every connection from this address, whatever its peer id.
    Addr(AddrKey),
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    throttled_since: Option<Instant>,
    streams: usize,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            last: now,
            throttled_since: None,
            streams: 0,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<PeerId, Bucket>,
    addrs: HashMap<AddrKey, Bucket>,
    peer_bans: HashMap<PeerId, Instant>,
    addr_bans: HashMap<AddrKey, Instant>,
}

impl State {
    fn banned(&mut self, peer: &PeerId, addr: Option<&AddrKey>, now: Instant) -> bool {
        let peer_banned = match self.peer_bans.get(peer) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.peer_bans.remove(peer);
                false
            }
            None => false,
        };
        let addr_banned = match addr.and_then(|a| self.addr_bans.get(a).map(|u| (a, *u))) {
            Some((_, until)) if until > now => true,
            Some((a, _)) => {
                self.addr_bans.remove(a);
                false
            }
            None => false,
        };
        peer_banned || addr_banned
    }
}

/// Decision of the token buckets for one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// Go on.
    Now,
    /// Wait this long first (the reader sleeps: the peer is slowed, not dropped).
    Wait(Duration),
    /// The peer or its address flooded for too long: close the stream; connections are closing.
    Banned,
}

/// Per-peer and per-address state shared by readers and the connection gate.
pub struct PeerGate {
    limits: EdgeLimits,
    state: Mutex<State>,
    streams_total: Arc<Semaphore>,
    close_tx: mpsc::UnboundedSender<Cut>,
    metrics: Metrics,
    draining: AtomicBool,
}

/// A `/collect` stream slot; released on drop.
pub struct StreamTicket {
    gate: Arc<PeerGate>,
    peer: PeerId,
    addr: Option<AddrKey>,
    _total: OwnedSemaphorePermit,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.gate.metrics.streams_open.dec();
        let mut st = self.gate.lock();
        if let Some(s) = st.peers.get_mut(&self.peer) {
            s.streams = s.streams.saturating_sub(1);
        }
        if let Some(s) = self.addr.and_then(|a| st.addrs.get_mut(&a)) {
            s.streams = s.streams.saturating_sub(1);
        }
    }
}

impl PeerGate {
    /// A gate and the receiver of "close these connections" requests (for
    /// [`crate::guard::EdgeGuard`]).
    pub fn new(limits: EdgeLimits, metrics: Metrics) -> (Arc<Self>, mpsc::UnboundedReceiver<Cut>) {
        let (close_tx, close_rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Self {
            streams_total: Arc::new(Semaphore::new(limits.max_streams_total.max(1))),
            limits,
            state: Mutex::new(State::default()),
            close_tx,
            metrics,
            draining: AtomicBool::new(false),
        });
        (gate, close_rx)
    }

    /// The state, loudly recovering from a poisoned lock: a reader panicked while holding it. The
    /// counters it was updating may be off by one; refusing every peer from now on would be worse.
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                tracing::error!(
                    "rate-limit state lock was poisoned by a panicking task; continuing with its state"
                );
                self.state.clear_poison();
                poisoned.into_inner()
            }
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &EdgeLimits {
        &self.limits
    }

    /// Metric handles.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Refuse all new connections and streams from now on (shutdown).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether `peer` (or, if given, its address) is refused right now.
    pub fn is_banned(&self, peer: &PeerId, addr: Option<&AddrKey>) -> bool {
        self.lock().banned(peer, addr, Instant::now())
    }

    /// Whether the address is refused right now (checked before the handshake: no peer id yet).
    pub fn is_addr_banned(&self, addr: &AddrKey) -> bool {
        let now = Instant::now();
        let mut st = self.lock();
        match st.addr_bans.get(addr) {
            Some(until) if *until > now => true,
            Some(_) => {
                st.addr_bans.remove(addr);
                false
            }
            None => false,
        }
    }

    /// Admits a new `/collect` stream of `peer` from `addr`, or says which limit refused it.
    pub fn open_stream(
        self: &Arc<Self>,
        peer: PeerId,
        addr: Option<AddrKey>,
    ) -> Result<StreamTicket, Reject> {
        if self.is_draining() {
            return Err(Reject::StreamDraining);
        }
        let now = Instant::now();
        let mut st = self.lock();
        if st.banned(&peer, addr.as_ref(), now) {
            return Err(Reject::StreamBanned);
        }
        let l = &self.limits;
        let peer_streams = st.peers.get(&peer).map_or(0, |b| b.streams);
        if peer_streams >= l.max_streams_per_peer {
            return Err(Reject::StreamsPerPeer);
        }
        if let Some(a) = addr {
            if st.addrs.get(&a).map_or(0, |b| b.streams) >= l.max_streams_per_addr {
                return Err(Reject::StreamsPerAddr);
            }
        }
        let total = self
            .streams_total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Reject::StreamsTotal)?;
        st.peers
            .entry(peer)
            .or_insert_with(|| Bucket::full(l.peer_burst, now))
            .streams += 1;
        if let Some(a) = addr {
            st.addrs
                .entry(a)
                .or_insert_with(|| Bucket::full(l.addr_burst, now))
                .streams += 1;
        }
        drop(st);
        self.metrics.streams_open.inc();
        self.metrics.streams_accepted.inc();
        Ok(StreamTicket {
            gate: self.clone(),
            peer,
            addr,
            _total: total,
        })
    }

    /// Takes one token for a message from `peer` at `addr` out of both buckets.
    pub fn admit_message(&self, peer: &PeerId, addr: Option<&AddrKey>) -> Admit {
        let now = Instant::now();
        let l = &self.limits;
        let peer_rate = l.peer_rate.max(f64::MIN_POSITIVE);
        let addr_rate = l.addr_rate.max(f64::MIN_POSITIVE);
        let mut guard = self.lock();
        if guard.banned(peer, addr, now) {
            return Admit::Banned;
        }
        let st = &mut *guard;
        let pb = st
            .peers
            .entry(*peer)
            .or_insert_with(|| Bucket::full(l.peer_burst, now));
        pb.refill(peer_rate, l.peer_burst, now);
        let mut ab = addr.map(|a| {
            st.addrs
                .entry(*a)
                .or_insert_with(|| Bucket::full(l.addr_burst, now))
        });
        if let Some(ab) = ab.as_deref_mut() {
            ab.refill(addr_rate, l.addr_burst, now);
        }
        let addr_ok = ab.as_ref().is_none_or(|b| b.tokens >= 1.0);
        if pb.tokens >= 1.0 && addr_ok {
            pb.tokens -= 1.0;
            pb.throttled_since = None;
            if let Some(ab) = ab {
                ab.tokens -= 1.0;
                ab.throttled_since = None;
            }
            return Admit::Now;
        }
        // Throttled by at least one bucket; a bucket throttled without pause for `abuse_after`
        // earns a ban (a peer's ban also bans its address: see `limits::PEER_ABUSE_AFTER`).
        let peer_abuse = pb.tokens < 1.0
            && now.saturating_duration_since(*pb.throttled_since.get_or_insert(now))
                >= l.abuse_after;
        let addr_abuse = ab.as_deref_mut().is_some_and(|b| {
            b.tokens < 1.0
                && now.saturating_duration_since(*b.throttled_since.get_or_insert(now))
                    >= l.abuse_after
        });
        if peer_abuse || addr_abuse {
            pb.throttled_since = None;
            pb.tokens = 0.0;
            if let Some(ab) = ab {
                ab.throttled_since = None;
                ab.tokens = 0.0;
            }
            let until = now + l.ban_for;
            if peer_abuse {
                st.peer_bans.insert(*peer, until);
            }
            let ban_addr = addr
                .filter(|_| addr_abuse || l.ban_address_with_peer)
                .copied();
            if let Some(a) = ban_addr {
                st.addr_bans.insert(a, until);
            }
            drop(guard);
            self.banned_for_flood(*peer, ban_addr, peer_abuse);
            return Admit::Banned;
        }
        // Reserve the tokens now and wait until they have been earned: concurrent streams queue
        // behind each other, so the peer's and the address's total rates stay at their limits.
        pb.tokens -= 1.0;
        let mut wait = (-pb.tokens / peer_rate).max(0.0);
        if let Some(ab) = ab {
            ab.tokens -= 1.0;
            wait = wait.max(-ab.tokens / addr_rate);
        }
        self.metrics.throttled.inc();
        Admit::Wait(Duration::from_secs_f64(wait.min(60.0)))
    }

    /// Counts and logs a ban and asks the guard to close the banned connections (`addr`: the
    /// address banned, if any).
    fn banned_for_flood(&self, peer: PeerId, addr: Option<AddrKey>, by_peer: bool) {
        self.metrics.reject(Reject::PeerBannedFlood);
        let ban_secs = self.limits.ban_for.as_secs();
        match addr {
            Some(a) => {
                tracing::warn!(%peer, addr = %a, by_peer, ban_secs, "flooded past its rate for too long; address cut off");
                let _ = self.close_tx.send(Cut::Addr(a));
            }
            None => {
                tracing::warn!(%peer, ban_secs, "peer flooded past its rate for too long; cut off");
            }
        }
        if by_peer {
            let _ = self.close_tx.send(Cut::Peer(peer));
        }
    }

    /// Forgets idle peers and addresses whose bucket is full again, and expired bans (keeps the
    /// maps bounded).
    pub fn prune(&self) {
        let now = Instant::now();
        let l = &self.limits;
        let refill =
            |burst: f64, rate: f64| Duration::from_secs_f64(burst / rate.max(f64::MIN_POSITIVE));
        let peer_refill = refill(l.peer_burst, l.peer_rate);
        let addr_refill = refill(l.addr_burst, l.addr_rate);
        let mut st = self.lock();
        st.peers
            .retain(|_, s| s.streams > 0 || now.saturating_duration_since(s.last) < peer_refill);
        st.addrs
            .retain(|_, s| s.streams > 0 || now.saturating_duration_since(s.last) < addr_refill);
        st.peer_bans.retain(|_, until| *until > now);
        st.addr_bans.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddrKey {
        AddrKey::of(s.parse().expect("ip"))
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        // Any host part of one /64 is one address; the next /64 is another.
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2:dead:beef:0:7"), key("2001:db8:1:2::"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        // IPv4-mapped IPv6 is the IPv4 address; IPv4 keeps all 32 bits.
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        let m: Multiaddr = "/ip6/2001:db8:1:2::99/udp/9100/quic-v1"
            .parse()
            .expect("ma");
        assert_eq!(AddrKey::from_multiaddr(&m), Some(key("2001:db8:1:2::5")));
        let none: Multiaddr = "/dns4/example.com/tcp/1".parse().expect("ma");
        assert_eq!(AddrKey::from_multiaddr(&none), None);
    }

    fn gate(limits: EdgeLimits) -> (Arc<PeerGate>, mpsc::UnboundedReceiver<Cut>) {
        PeerGate::new(limits, Metrics::new())
    }

    #[test]
    fn many_peer_ids_share_one_address_bucket() {
        let limits = EdgeLimits {
            peer_rate: 1.0,
            peer_burst: 10.0,
            addr_rate: 1.0,
            addr_burst: 20.0,
            ..EdgeLimits::default()
        };
        let (g, _rx) = gate(limits);
        let a = key("198.51.100.1");
        let mut now_admitted = 0;
        for _ in 0..100 {
            let p = PeerId::random();
            if g.admit_message(&p, Some(&a)) == Admit::Now {
                now_admitted += 1;
            }
        }
        // 100 fresh peer ids, each with a full bucket of 10, get only the address's 20.
        assert_eq!(now_admitted, 20);
        // Another address is untouched.
        assert_eq!(
            g.admit_message(&PeerId::random(), Some(&key("198.51.100.2"))),
            Admit::Now
        );
    }

    #[test]
    fn an_address_flooding_through_fresh_peer_ids_is_banned_as_one() {
        let limits = EdgeLimits {
            addr_rate: 1.0,
            addr_burst: 1.0,
            abuse_after: Duration::ZERO,
            ..EdgeLimits::default()
        };
        let (g, mut rx) = gate(limits);
        let a = key("2001:db8::1");
        let first = PeerId::random();
        assert_eq!(g.admit_message(&first, Some(&a)), Admit::Now);
        // Throttled from now on, and with abuse_after 0 that is a ban at once.
        assert_eq!(g.admit_message(&PeerId::random(), Some(&a)), Admit::Banned);
        assert_eq!(rx.try_recv().ok(), Some(Cut::Addr(a)));
        // Every peer id of the /64, old or new, is refused; other addresses are not.
        let same_64 = key("2001:db8::abcd");
        assert!(g.is_banned(&first, Some(&a)));
        assert!(g.is_banned(&PeerId::random(), Some(&same_64)));
        assert!(g.is_addr_banned(&same_64));
        assert!(!g.is_banned(&first, Some(&key("2001:db8:0:1::1"))));
        assert_eq!(
            g.open_stream(PeerId::random(), Some(same_64)).err(),
            Some(Reject::StreamBanned)
        );
        assert_eq!(g.metrics.reject_count("peer_banned_flood"), 1);
    }

    #[test]
    fn a_peer_ban_extends_to_its_address_unless_one_host_fleet() {
        let flood = EdgeLimits {
            peer_rate: 1.0,
            peer_burst: 1.0,
            abuse_after: Duration::ZERO,
            ..EdgeLimits::default()
        };
        for (limits, addr_banned) in [(flood.clone(), true), (flood.one_host_fleet(), false)] {
            let (g, _rx) = gate(limits);
            let a = key("192.0.2.1");
            let p = PeerId::random();
            assert_eq!(g.admit_message(&p, Some(&a)), Admit::Now);
            assert_eq!(g.admit_message(&p, Some(&a)), Admit::Banned);
            assert!(g.is_banned(&p, None));
            assert_eq!(g.is_addr_banned(&a), addr_banned);
            assert_eq!(g.is_banned(&PeerId::random(), Some(&a)), addr_banned);
        }
    }

    #[test]
    fn stream_budget_is_per_address_across_peer_ids() {
        let limits = EdgeLimits {
            max_streams_per_addr: 5,
            ..EdgeLimits::default()
        };
        let (g, _rx) = gate(limits);
        let a = key("203.0.113.9");
        let tickets: Vec<_> = (0..5)
            .map(|_| {
                g.open_stream(PeerId::random(), Some(a))
                    .expect("within budget")
            })
            .collect();
        assert_eq!(
            g.open_stream(PeerId::random(), Some(a)).err(),
            Some(Reject::StreamsPerAddr)
        );
        assert!(g
            .open_stream(PeerId::random(), Some(key("203.0.113.10")))
            .is_ok());
        drop(tickets);
        assert!(g.open_stream(PeerId::random(), Some(a)).is_ok());
    }
}
