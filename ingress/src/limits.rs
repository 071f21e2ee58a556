//! Edge-protection defaults (docs/protocol.md §5). Each is a flag and an environment variable
//! (see `config.rs`); the comment says why the default is what it is.

use std::time::Duration;

/// Largest `/collect` message (UUID + JSON). Fixed by the protocol (§2); a real submission is
/// ~0.6–1 KiB, so 16 KiB leaves room for long project ids without letting a peer make us buffer
/// megabytes per stream. Enforced by core's decoder; over it the stream is reset.
pub const MAX_MESSAGE_BYTES: usize = sequencer_core::collect::MAX_MESSAGE_BYTES;

/// Established + pending connections, all peers. What bounds it is memory under attack, not file
/// descriptors: a QUIC connection costs ≈ 64 KiB open and ≈ 58 KiB more with its window full
/// (measured, `docs/benchmarks.md`), so 4 096 of them are ≈ 490 MiB of the 2 GiB task (see
/// [`UNREAD_BUDGET_BYTES`]). Scale out with replicas: the autoscaling target of flows per task
/// must stay below this.
pub const MAX_CONNECTIONS: usize = 4_096;

/// Inbound connections still in the security handshake, all addresses. Noise/TLS handshakes are
/// the costly part (a DH or signature per connection); capping them stops a SYN-and-handshake
/// flood from eating the CPU that established peers need. 256 handshakes finish in well under a
/// second on one core.
pub const MAX_PENDING_INCOMING: usize = 256;

/// Inbound handshakes in progress from one address ([`crate::rate::AddrKey`]). Without it a few
/// hosts opening TCP connections that never finish Noise/TLS hold all [`MAX_PENDING_INCOMING`]
/// slots and lock every collector out (worst right after a deploy, when all reconnect at once).
/// A collector handshakes once per connection, a NAT of many collectors a few at a time; with 8,
/// at least 32 addresses are needed to fill the global cap, each slot held at most
/// [`HANDSHAKE_TIMEOUT`].
pub const MAX_PENDING_PER_ADDR: usize = 8;

/// Time for a new connection's whole upgrade (multistream-select, Noise/TLS, yamux; the QUIC
/// handshake). libp2p's default is 10 s; an honest handshake over a long WAN path takes a few
/// round trips (well under 1 s), so 5 s halves how long a stalled handshake holds a pending slot
/// while leaving slow links a wide margin.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per peer id. A collector needs one; a second or third covers a reconnect racing
/// the old connection's close and a TCP + QUIC pair. More than 4 from one identity is abuse.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

/// Connections per remote address (IPv4 /32, IPv6 /64; pending or established). Peer ids cost
/// nothing to make, addresses do, so this, not the per-peer cap, is what stops one host. Many
/// snapshotters can share one egress IP (a hosting provider's NAT, a cloud VPC), so it is far above
/// the per-peer cap, yet one host cannot take a meaningful share of [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_PER_IP: usize = 64;

/// Concurrent streams per connection (yamux and QUIC stream limit, and libp2p's cap on streams
/// still negotiating their protocol). Deployed collectors keep a small pool of long-lived
/// `/collect` streams; 16 is generous. Over yamux every stream, admitted or still negotiating, may
/// hold [`YAMUX_STREAM_WINDOW`] unread bytes, so this also bounds what one connection can pin
/// before admission refuses its streams.
pub const MAX_STREAMS_PER_CONNECTION: usize = 16;

/// Concurrent `/collect` streams per peer across its connections ([`MAX_CONNECTIONS_PER_PEER`]
/// connections with a few streams each); keeps one identity's reader tasks bounded.
pub const MAX_STREAMS_PER_PEER: usize = 32;

/// Concurrent `/collect` streams from one address, all its peer ids together. Without it ~10
/// hosts with 64 connections × 64 streams each filled the old 40 000-stream total. 128 streams is
/// 32 MiB of yamux windows per address (128 × [`YAMUX_STREAM_WINDOW`]); [`MAX_STREAMS_TOTAL`] then
/// takes 32 addresses to fill, and a NAT of many collectors still gets a few streams each.
pub const MAX_STREAMS_PER_ADDR: usize = 128;

/// Concurrent `/collect` streams in the process. Every admitted stream may hold one full
/// [`YAMUX_STREAM_WINDOW`] while its reader is throttled or the buffer is full: ≈ 290 KiB with
/// buffers (measured, `docs/benchmarks.md`); this cap is what keeps the TCP side inside the budget
/// ([`UNREAD_BUDGET_BYTES`]). One stream for each of [`MAX_CONNECTIONS`].
pub const MAX_STREAMS_TOTAL: usize = 4_096;

/// Receive window of one yamux stream: the yamux specification's initial window, which a sender
/// may fill before any window update. libp2p-yamux does not let it be lowered (and the yamux
/// crate refuses a connection window below streams × this), so the stream caps above are the
/// lever: a stream that is not read never gets a larger window (auto-tuning grows windows only
/// while the reader keeps up), so a throttled stream pins at most this much.
pub const YAMUX_STREAM_WINDOW: usize = 256 * 1024;

/// QUIC receive window per stream (`max_stream_data`): two maximal messages. At a 50 ms round
/// trip a 32 KiB window carries 640 KiB/s, ≈ 800 submissions/s, above [`PEER_RATE_PER_SEC`].
pub const QUIC_STREAM_WINDOW: u32 = 32 * 1024;

/// QUIC receive window per connection (`max_connection_data`), all its streams together. Equal to
/// one stream's window: a collector's streams share it, and every connection fits the budget.
pub const QUIC_CONNECTION_WINDOW: u32 = 32 * 1024;

/// Memory the ingress may hold in data peers sent but it has not read (transport windows), worst
/// case, with the defaults:
///
/// ```text
/// TCP + yamux: MAX_STREAMS_TOTAL × YAMUX_STREAM_WINDOW    = 4 096 × 256 KiB = 1 024 MiB
/// QUIC:        MAX_CONNECTIONS × QUIC_CONNECTION_WINDOW    = 4 096 ×  32 KiB =   128 MiB
///                                                                      total = 1 152 MiB
/// ```
///
/// With the measured overheads (`docs/benchmarks.md`: ≈ 290 KiB per full yamux stream, ≈ 122 KiB
/// per QUIC connection open and full) and [`BUFFER_BYTES`], the process needs about
/// 4 096 × 290 KiB + 4 096 × 122 KiB + 64 MiB ≈ 1.67 GiB, inside the Terraform's 2 GiB ECS task.
/// Not covered: yamux streams still negotiating their protocol on connections with no admitted
/// stream; each is dropped after [`HANDSHAKE_TIMEOUT`], so they hold memory only while an attacker
/// keeps re-opening them; and negotiated streams waiting in `guard::ACCEPT_QUEUE` (normally
/// empty: the accept loop only checks limits). The defaults are checked against this figure at
/// compile time.
pub const UNREAD_BUDGET_BYTES: usize = 1152 * 1024 * 1024;

/// Sustained messages per second from one address, all its peer ids together. Four peers' worth
/// ([`PEER_RATE_PER_SEC`]): a NAT of collectors that each submit once per (project, slot) per
/// epoch stays far below it; a host minting peer ids to multiply its rate does not.
pub const ADDR_RATE_PER_SEC: f64 = 4.0 * PEER_RATE_PER_SEC;

/// Token-bucket burst per address: four peers' bursts ([`PEER_BURST`]).
pub const ADDR_BURST: f64 = 4.0 * PEER_BURST;

/// Sustained messages per second per peer. A snapshotter submits one message per (project, slot)
/// per epoch; even a full node with thousands of projects averages far below this over an epoch.
pub const PEER_RATE_PER_SEC: f64 = 500.0;

/// Token-bucket burst per peer: submissions arrive in a burst right after an epoch is released,
/// so a peer may send this many back to back before being slowed to [`PEER_RATE_PER_SEC`].
pub const PEER_BURST: f64 = 5_000.0;

/// A peer (or an address) that is throttled without pause for this long is not a burst but a
/// flood: its connections are closed and it is refused for [`PEER_BAN`]. A ban earned by a peer id
/// also bans its address (the next peer id from there would otherwise start afresh); behind a
/// shared NAT that cuts off the neighbours too, which is the price of keying on the one thing
/// that is not free. Long enough that an honest peer catching up after an outage (a few bursts)
/// is never cut off.
pub const PEER_ABUSE_AFTER: Duration = Duration::from_secs(30);

/// How long a peer or address cut off for flooding is refused.
pub const PEER_BAN: Duration = Duration::from_secs(300);

/// A connection with no open stream is closed after this. Collectors keep streams open, so only
/// idle or abandoned connections hit it; 2 minutes frees their fd and memory without making a
/// collector reconnect between epochs.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// A `/collect` stream that makes no progress on a message for this long is closed. Only bytes
/// that are part of a message count: whitespace between messages is skipped without touching the
/// timer, so one space every few minutes no longer keeps a stream (and its window) forever.
/// Longer than several epochs, so a quiet but healthy collector keeps its stream; an abandoned one
/// stops holding a reader.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A message that has started must be complete within this time (slowloris guard: one byte a
/// minute would otherwise hold up to 16 KiB per stream forever). Honest writes finish in ms.
pub const PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Read buffer per stream. Small on purpose: it lives as long as the stream, and 10 000 idle
/// streams should cost little; a 1 KiB submission then takes one or two reads.
pub const READ_CHUNK_BYTES: usize = 2 * 1024;

/// Bytes of accepted messages held in memory until the queue acknowledges them (the bounded
/// buffer). When full, readers stop reading and the peers' writes block (backpressure, no drop).
/// 64 MiB is ~80 000 typical submissions: more than a minute of SQS outage at 1 000/s.
pub const BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Limits enforced at the edge by [`crate::guard`] (connections) and [`crate::rate`] (streams,
/// message rate, bans). Defaults: the constants above.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Established + pending inbound connections.
    pub max_connections: usize,
    /// Inbound connections in the handshake, all addresses.
    pub max_pending: usize,
    /// Inbound connections in the handshake per address.
    pub max_pending_per_addr: usize,
    /// Connections per peer id.
    pub max_per_peer: usize,
    /// Connections per remote address (pending or established).
    pub max_per_ip: usize,
    /// `/collect` streams per peer.
    pub max_streams_per_peer: usize,
    /// `/collect` streams per address.
    pub max_streams_per_addr: usize,
    /// `/collect` streams in total.
    pub max_streams_total: usize,
    /// Sustained messages per second per peer.
    pub peer_rate: f64,
    /// Burst per peer.
    pub peer_burst: f64,
    /// Sustained messages per second per address.
    pub addr_rate: f64,
    /// Burst per address.
    pub addr_burst: f64,
    /// Continuous throttling after which a peer or address is cut off.
    pub abuse_after: Duration,
    /// How long a cut-off peer or address is refused.
    pub ban_for: Duration,
    /// Whether a peer's ban also bans its address (see [`PEER_ABUSE_AFTER`]). On in production;
    /// off only for [`EdgeLimits::one_host_fleet`], where one address is everybody.
    pub ban_address_with_peer: bool,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_pending: MAX_PENDING_INCOMING,
            max_pending_per_addr: MAX_PENDING_PER_ADDR,
            max_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_per_ip: MAX_CONNECTIONS_PER_IP,
            max_streams_per_peer: MAX_STREAMS_PER_PEER,
            max_streams_per_addr: MAX_STREAMS_PER_ADDR,
            max_streams_total: MAX_STREAMS_TOTAL,
            peer_rate: PEER_RATE_PER_SEC,
            peer_burst: PEER_BURST,
            addr_rate: ADDR_RATE_PER_SEC,
            addr_burst: ADDR_BURST,
            abuse_after: PEER_ABUSE_AFTER,
            ban_for: PEER_BAN,
            ban_address_with_peer: true,
        }
    }
}

impl EdgeLimits {
    /// These limits with the per-address ones no tighter than the totals, and a peer's ban kept to
    /// the peer: for a fleet that dials from one host on purpose (the local runner's snapshotters,
    /// the load generator, tests), never for an ingress facing the internet.
    pub fn one_host_fleet(mut self) -> Self {
        self.ban_address_with_peer = false;
        self.max_per_ip = self.max_connections;
        self.max_pending_per_addr = self.max_pending;
        self.max_streams_per_addr = self.max_streams_total;
        self.addr_rate = self.peer_rate * self.max_connections as f64;
        self.addr_burst = self.peer_burst * self.max_connections as f64;
        self
    }
}

/// Unread transport data the given limits allow in the worst case, by the arithmetic of
/// [`UNREAD_BUDGET_BYTES`].
pub const fn unread_worst_case(max_streams_total: usize, max_connections: usize) -> usize {
    max_streams_total * YAMUX_STREAM_WINDOW + max_connections * QUIC_CONNECTION_WINDOW as usize
}

// The defaults fit the budget, and a QUIC stream window holds a maximal message (so a stream is
// never stuck); checked when the crate compiles.
const _: () = {
    assert!(unread_worst_case(MAX_STREAMS_TOTAL, MAX_CONNECTIONS) <= UNREAD_BUDGET_BYTES);
    assert!(QUIC_STREAM_WINDOW as usize >= MAX_MESSAGE_BYTES);
    assert!(QUIC_CONNECTION_WINDOW >= QUIC_STREAM_WINDOW);
    assert!(MAX_PENDING_PER_ADDR < MAX_PENDING_INCOMING);
    assert!(MAX_STREAMS_PER_ADDR < MAX_STREAMS_TOTAL);
};

// ---- gossipsub (see the README's "Gossipsub" and "Memory budget") --------------------------------

/// Inbound connections admitted to the peer-to-peer protocols (gossipsub, Kademlia, identify);
/// further connections still serve `/collect` but get no gossipsub handler. A mesh needs
/// `D_hi` = 16 peers per topic; 64 leaves room for every topic peer of a market's mesh while each
/// costs at most ≈ 2.5 MiB (see [`GOSSIP_PEER_WORST_BYTES`]), so the whole set stays a small part
/// of the task's memory.
pub const GOSSIP_MAX_INBOUND: usize = 64;

/// Inbound peer-to-peer connections per address ([`crate::rate::AddrKey`]): a host runs one
/// collector, a NAT a few; 8 means an attacker needs 8 addresses to take the inbound set.
pub const GOSSIP_MAX_INBOUND_PER_ADDR: usize = 8;

/// Outbound peer-to-peer connections (bootstrap peers, peers found through the rendezvous), kept
/// apart from the inbound ones so peers that fill the inbound set cannot eclipse the ones we
/// chose. One mesh's worth (`D_hi`).
pub const GOSSIP_MAX_OUTBOUND: usize = 16;

/// Largest gossipsub RPC (all messages and control in one frame): the deployed peers' 1 MiB
/// (docs/protocol.md §10). Lower would refuse RPCs honest go peers send; it is the decode buffer one
/// peer can make us hold.
pub const GOSSIP_MAX_TRANSMIT_BYTES: usize = 1024 * 1024;

/// Messages (forwards, IHAVE/IWANT) waiting to be written to one peer. The ingress is a sink:
/// forwarding is a courtesy to the mesh, so a slow peer loses forwards (counted by gossipsub as
/// a slow peer) rather than making us buffer for it. 16 × the largest accepted message
/// (`MAX_GOSSIP_MESSAGE_BYTES`, 32 KiB) = 512 KiB per peer.
pub const GOSSIP_SEND_QUEUE: usize = 16;

/// Gossip messages waiting for the validator. Full (by count, or by [`GOSSIP_VALIDATION_BYTES`]):
/// new messages are ignored (no penalty, counted `validation_queue_full`). It absorbs an epoch's
/// burst (≈ 12 000 typical 1.3 KiB envelopes fit the byte bound) and fills only while the buffer
/// pushes back or the validator is behind.
pub const GOSSIP_VALIDATION_QUEUE: usize = 16_384;

/// Bytes of gossip messages waiting for the validator (each is also held in gossipsub's cache
/// until judged): the memory bound of the validation queue, whatever the messages' sizes.
pub const GOSSIP_VALIDATION_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of accepted gossip messages gossipsub may keep for its history window (12 heartbeats of
/// 700 ms ≈ 8.4 s, for IWANT answers). Past it, valid messages are still queued but ignored for
/// propagation (`cache_budget`), so a flood of valid-looking messages cannot grow the cache. 32 MiB
/// is ≈ 25 000 typical submissions in 8.4 s, above any market's epoch burst.
pub const GOSSIP_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Kademlia keys with provider records held (ours: the rendezvous and the four topic namespaces;
/// as a bootstrap node, the collectors' too). Each key holds at most 20 providers of ≤ 16 KiB
/// (the packet cap): 64 keys ≤ 20 MiB.
pub const KAD_MAX_PROVIDER_KEYS: usize = 64;

/// Kademlia value records held (the collectors use none; a server must still answer PUT_VALUE).
pub const KAD_MAX_RECORDS: usize = 64;

/// Largest Kademlia value record.
pub const KAD_MAX_RECORD_BYTES: usize = 4 * 1024;

/// Worst-case memory of one peer-to-peer connection: the gossipsub RPC decode buffer, the windows
/// of its gossipsub and Kademlia streams, and its send queue of maximal messages.
pub const GOSSIP_PEER_WORST_BYTES: usize = GOSSIP_MAX_TRANSMIT_BYTES
    + 2 * YAMUX_STREAM_WINDOW
    + GOSSIP_SEND_QUEUE * sequencer_core::gossip::MAX_GOSSIP_MESSAGE_BYTES;

/// Worst-case memory of gossipsub with the defaults: every peer-to-peer connection at its worst,
/// the validation queue full, the cache budget spent, and the Kademlia stores full:
///
/// ```text
/// (64 + 16) × (1 MiB + 2 × 256 KiB + 16 × 32 KiB) = 80 × 2 MiB = 160 MiB
/// validation queue (by bytes)                                  =  16 MiB
/// accepted-message cache                                        =  32 MiB
/// Kademlia providers 64 × 20 × 16 KiB + records 64 × 4 KiB      ≈  20 MiB
///                                                        total ≈ 229 MiB
/// ```
///
/// Added to the `/collect` worst case (≈ 1.67 GiB) it stays inside the 2 GiB task; checked at
/// compile time below.
pub const GOSSIP_BUDGET_BYTES: usize = 229 * 1024 * 1024;

const _: () = {
    let peers = (GOSSIP_MAX_INBOUND + GOSSIP_MAX_OUTBOUND) * GOSSIP_PEER_WORST_BYTES;
    let queue = GOSSIP_VALIDATION_BYTES;
    let kad = KAD_MAX_PROVIDER_KEYS * 20 * 16 * 1024 + KAD_MAX_RECORDS * KAD_MAX_RECORD_BYTES;
    assert!(peers + queue + GOSSIP_CACHE_BYTES + kad <= GOSSIP_BUDGET_BYTES);
    assert!(GOSSIP_MAX_INBOUND_PER_ADDR < GOSSIP_MAX_INBOUND);
};
