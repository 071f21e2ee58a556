//! Edge-protection defaults (PROTOCOL.md §5). Each is a flag and an environment variable
//! (see `config.rs`); the comment says why the default is what it is.

use std::time::Duration;

/// Largest `/collect` message (UUID + JSON). Fixed by the protocol (§2); a real submission is
/// ~0.6–1 KiB, so 16 KiB leaves room for long project ids without letting a peer make us buffer
/// megabytes per stream. Enforced by core's decoder; over it the stream is reset.
pub const MAX_MESSAGE_BYTES: usize = sequencer_core::collect::MAX_MESSAGE_BYTES;

/// Established + pending connections, all peers. Each open connection costs one file descriptor
/// and a few tens of KiB (see docs/benchmarks.md); 20 000 fits the container's 64 Ki fd limit
/// with room for HTTP and SQS sockets and keeps memory well under 1 GiB. Scale out with replicas.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Inbound connections still in the security handshake. Noise/TLS handshakes are the costly part
/// (a DH or signature per connection); capping them stops a SYN-and-handshake flood from eating
/// the CPU that established peers need. 256 handshakes finish in well under a second on one core.
pub const MAX_PENDING_INCOMING: usize = 256;

/// Connections per peer id. A collector needs one; a second or third covers a reconnect racing
/// the old connection's close and a TCP + QUIC pair. More than 4 from one identity is abuse.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

/// Connections per remote IP (pending or established). Many snapshotters can share one egress IP
/// (a hosting provider's NAT, a cloud VPC), so this is far above the per-peer cap, yet it stops one
/// host from taking a meaningful share of [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_PER_IP: usize = 64;

/// Concurrent streams per connection (yamux window and QUIC stream limit). Deployed collectors
/// keep a small pool of long-lived `/collect` streams; 64 is generous, and it bounds the per-stream
/// receive windows a single connection can make us hold.
pub const MAX_STREAMS_PER_CONNECTION: usize = 64;

/// Concurrent `/collect` streams per peer across its connections: the per-connection cap times
/// the per-peer connection cap would allow 256; 128 keeps one peer's reader tasks bounded.
pub const MAX_STREAMS_PER_PEER: usize = 128;

/// Concurrent `/collect` streams in the process. Every stream is one reader task with a small read
/// buffer and a decoder; 40 000 covers [`MAX_CONNECTIONS`] with two streams each.
pub const MAX_STREAMS_TOTAL: usize = 40_000;

/// Sustained messages per second per peer. A snapshotter submits one message per (project, slot)
/// per epoch; even a full node with thousands of projects averages far below this over an epoch.
pub const PEER_RATE_PER_SEC: f64 = 500.0;

/// Token-bucket burst per peer: submissions arrive in a burst right after an epoch is released,
/// so a peer may send this many back to back before being slowed to [`PEER_RATE_PER_SEC`].
pub const PEER_BURST: f64 = 5_000.0;

/// A peer that is throttled without pause for this long is not a burst but a flood: its
/// connections are closed and it is refused for [`PEER_BAN`]. Long enough that an honest peer
/// catching up after an outage (a few bursts) is never cut off.
pub const PEER_ABUSE_AFTER: Duration = Duration::from_secs(30);

/// How long a peer cut off for flooding is refused.
pub const PEER_BAN: Duration = Duration::from_secs(300);

/// A connection with no open stream is closed after this. Collectors keep streams open, so only
/// idle or abandoned connections hit it; 2 minutes frees their fd and memory without making a
/// collector reconnect between epochs.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// A `/collect` stream that delivers no byte for this long is closed. Longer than several epochs,
/// so a quiet but healthy collector keeps its stream; an abandoned one stops holding a reader.
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
