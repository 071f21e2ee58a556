//! Command line and environment configuration. Every setting is a flag and an environment
//! variable (`INGRESS_*`); defaults come from [`crate::limits`], [`crate::dispatcher`] and here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use libp2p::Multiaddr;

use crate::dispatcher::{self, DispatcherConfig};
use crate::host::HostConfig;
use crate::limits as l;
use crate::limits::EdgeLimits;
use crate::Settings;

/// Default spill file (relative to the working directory; mount a volume there in ECS).
pub const DEFAULT_SPILL_PATH: &str = "ingress-spill.jsonl";

/// Queue the ingress writes to (the name the Terraform and `localstack/create-resources.sh` use).
pub const DEFAULT_QUEUE_NAME: &str = "seq-submissions";

fn linger_ms_default() -> u64 {
    u64::try_from(dispatcher::LINGER.as_millis()).unwrap_or(u64::MAX)
}

/// Which sink to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// Amazon SQS (or an emulator via `AWS_ENDPOINT_URL`).
    Sqs,
    /// In memory, counting only (local runs and benchmarks; nothing leaves the process).
    Memory,
}

/// `sequencer-ingress` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sequencer-ingress",
    version,
    about = "libp2p /collect ingress: edge limits, SQS batches, graceful drain"
)]
pub struct Cli {
    /// libp2p listen addresses, comma separated (add /ip4/0.0.0.0/udp/9100/quic-v1 for QUIC).
    #[arg(
        long,
        env = "INGRESS_LISTEN",
        value_delimiter = ',',
        default_value = "/ip4/0.0.0.0/tcp/9100"
    )]
    pub listen: Vec<Multiaddr>,
    /// Host key file (protobuf-encoded libp2p keypair); generated with mode 0600 if absent.
    #[arg(long, env = "INGRESS_KEY_FILE", default_value = "ingress-identity.key")]
    pub key_file: PathBuf,
    /// Host key as hex of the protobuf encoding (e.g. from a secret); wins over the key file.
    #[arg(long, env = "INGRESS_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print the peer id for the key and exit.
    #[arg(long)]
    pub print_peer_id: bool,
    /// Operations HTTP address (/healthz, /readyz, /metrics).
    #[arg(long, env = "INGRESS_HTTP_LISTEN", default_value = "0.0.0.0:9101")]
    pub http_listen: SocketAddr,
    /// Where accepted submissions go.
    #[arg(long, env = "INGRESS_SINK", value_enum, default_value = "sqs")]
    pub sink: SinkKind,
    /// SQS queue URL; if absent it is looked up by --queue-name.
    #[arg(long, env = "INGRESS_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// SQS queue name, used when no URL is given.
    #[arg(long, env = "INGRESS_QUEUE_NAME", default_value = DEFAULT_QUEUE_NAME)]
    pub queue_name: String,
    /// Spill file for messages the queue has not taken at the drain deadline (replayed on start).
    #[arg(long, env = "INGRESS_SPILL_PATH", default_value = DEFAULT_SPILL_PATH)]
    pub spill_path: PathBuf,
    /// Seconds to drain the buffer after SIGTERM before spilling.
    #[arg(long, env = "INGRESS_DRAIN_TIMEOUT_SECS", default_value_t = dispatcher::DRAIN_TIMEOUT.as_secs())]
    pub drain_timeout_secs: u64,
    /// Connections (established + pending), all peers.
    #[arg(long, env = "INGRESS_MAX_CONNECTIONS", default_value_t = l::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Inbound connections in the handshake.
    #[arg(long, env = "INGRESS_MAX_PENDING", default_value_t = l::MAX_PENDING_INCOMING)]
    pub max_pending: usize,
    /// Inbound connections in the handshake per remote address (IPv4, IPv6 /64).
    #[arg(long, env = "INGRESS_MAX_PENDING_PER_ADDR", default_value_t = l::MAX_PENDING_PER_ADDR)]
    pub max_pending_per_addr: usize,
    /// Seconds for a connection's handshake and a stream's protocol negotiation.
    #[arg(long, env = "INGRESS_HANDSHAKE_TIMEOUT_SECS", default_value_t = l::HANDSHAKE_TIMEOUT.as_secs())]
    pub handshake_timeout_secs: u64,
    /// Connections per peer id.
    #[arg(long, env = "INGRESS_MAX_CONNECTIONS_PER_PEER", default_value_t = l::MAX_CONNECTIONS_PER_PEER)]
    pub max_connections_per_peer: usize,
    /// Connections per remote address (IPv4, IPv6 /64).
    #[arg(long, env = "INGRESS_MAX_CONNECTIONS_PER_IP", default_value_t = l::MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Streams per connection (yamux, QUIC).
    #[arg(long, env = "INGRESS_MAX_STREAMS_PER_CONNECTION", default_value_t = l::MAX_STREAMS_PER_CONNECTION)]
    pub max_streams_per_connection: usize,
    /// /collect streams per peer.
    #[arg(long, env = "INGRESS_MAX_STREAMS_PER_PEER", default_value_t = l::MAX_STREAMS_PER_PEER)]
    pub max_streams_per_peer: usize,
    /// /collect streams per remote address, all its peer ids together.
    #[arg(long, env = "INGRESS_MAX_STREAMS_PER_ADDR", default_value_t = l::MAX_STREAMS_PER_ADDR)]
    pub max_streams_per_addr: usize,
    /// /collect streams in total.
    #[arg(long, env = "INGRESS_MAX_STREAMS_TOTAL", default_value_t = l::MAX_STREAMS_TOTAL)]
    pub max_streams_total: usize,
    /// Sustained messages per second per peer (token bucket rate).
    #[arg(long, env = "INGRESS_PEER_RATE", default_value_t = l::PEER_RATE_PER_SEC)]
    pub peer_rate: f64,
    /// Token bucket burst per peer.
    #[arg(long, env = "INGRESS_PEER_BURST", default_value_t = l::PEER_BURST)]
    pub peer_burst: f64,
    /// Sustained messages per second per remote address, all its peer ids together.
    #[arg(long, env = "INGRESS_ADDR_RATE", default_value_t = l::ADDR_RATE_PER_SEC)]
    pub addr_rate: f64,
    /// Token bucket burst per remote address.
    #[arg(long, env = "INGRESS_ADDR_BURST", default_value_t = l::ADDR_BURST)]
    pub addr_burst: f64,
    /// Seconds of continuous throttling after which a peer (and its address) is cut off.
    #[arg(long, env = "INGRESS_PEER_ABUSE_AFTER_SECS", default_value_t = l::PEER_ABUSE_AFTER.as_secs())]
    pub peer_abuse_after_secs: u64,
    /// Whether a peer's flood ban also bans its address (`true`/`false`; see limits.rs).
    #[arg(long, env = "INGRESS_BAN_ADDRESS_WITH_PEER", action = clap::ArgAction::Set, default_value_t = EdgeLimits::default().ban_address_with_peer)]
    pub ban_address_with_peer: bool,
    /// Seconds a cut-off peer or address is refused.
    #[arg(long, env = "INGRESS_PEER_BAN_SECS", default_value_t = l::PEER_BAN.as_secs())]
    pub peer_ban_secs: u64,
    /// Seconds before a connection without streams is closed.
    #[arg(long, env = "INGRESS_IDLE_CONNECTION_TIMEOUT_SECS", default_value_t = l::IDLE_CONNECTION_TIMEOUT.as_secs())]
    pub idle_connection_timeout_secs: u64,
    /// Seconds before a silent stream is closed.
    #[arg(long, env = "INGRESS_STREAM_IDLE_TIMEOUT_SECS", default_value_t = l::STREAM_IDLE_TIMEOUT.as_secs())]
    pub stream_idle_timeout_secs: u64,
    /// Seconds within which a started message must complete.
    #[arg(long, env = "INGRESS_PARTIAL_MESSAGE_TIMEOUT_SECS", default_value_t = l::PARTIAL_MESSAGE_TIMEOUT.as_secs())]
    pub partial_message_timeout_secs: u64,
    /// Bytes buffered before readers stop reading (backpressure).
    #[arg(long, env = "INGRESS_BUFFER_BYTES", default_value_t = l::BUFFER_BYTES)]
    pub buffer_bytes: usize,
    /// Milliseconds a partial batch waits for more messages.
    #[arg(long, env = "INGRESS_LINGER_MS", default_value_t = linger_ms_default())]
    pub linger_ms: u64,
    /// Queue calls in flight.
    #[arg(long, env = "INGRESS_MAX_IN_FLIGHT", default_value_t = dispatcher::MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Log filter (tracing EnvFilter syntax), JSON output.
    #[arg(long, env = "INGRESS_LOG", default_value = "info")]
    pub log: String,
}

impl Cli {
    /// Library settings from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            host: HostConfig {
                listen: self.listen.clone(),
                idle_connection_timeout: Duration::from_secs(self.idle_connection_timeout_secs),
                stream_idle_timeout: Duration::from_secs(self.stream_idle_timeout_secs),
                partial_message_timeout: Duration::from_secs(self.partial_message_timeout_secs),
                max_streams_per_connection: self.max_streams_per_connection,
                read_chunk_bytes: l::READ_CHUNK_BYTES,
                handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            },
            limits: EdgeLimits {
                max_connections: self.max_connections,
                max_pending: self.max_pending,
                max_pending_per_addr: self.max_pending_per_addr,
                max_per_peer: self.max_connections_per_peer,
                max_per_ip: self.max_connections_per_ip,
                max_streams_per_peer: self.max_streams_per_peer,
                max_streams_per_addr: self.max_streams_per_addr,
                max_streams_total: self.max_streams_total,
                peer_rate: self.peer_rate,
                peer_burst: self.peer_burst,
                addr_rate: self.addr_rate,
                addr_burst: self.addr_burst,
                abuse_after: Duration::from_secs(self.peer_abuse_after_secs),
                ban_for: Duration::from_secs(self.peer_ban_secs),
                ban_address_with_peer: self.ban_address_with_peer,
            },
            dispatcher: DispatcherConfig {
                linger: Duration::from_millis(self.linger_ms),
                max_in_flight: self.max_in_flight,
                buffer_bytes: self.buffer_bytes,
                ..DispatcherConfig::default()
            },
            spill_path: self.spill_path.clone(),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            http_listen: Some(self.http_listen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_constants() {
        let cli = Cli::try_parse_from(["sequencer-ingress"]).expect("defaults parse");
        assert_eq!(cli.listen, vec![crate::host::default_listen()]);
        let s = cli.settings();
        assert_eq!(s.limits.max_connections, l::MAX_CONNECTIONS);
        assert_eq!(s.limits.max_pending_per_addr, l::MAX_PENDING_PER_ADDR);
        assert_eq!(s.limits.max_streams_per_addr, l::MAX_STREAMS_PER_ADDR);
        assert_eq!(s.limits.addr_rate, l::ADDR_RATE_PER_SEC);
        assert_eq!(s.host.handshake_timeout, l::HANDSHAKE_TIMEOUT);
        assert_eq!(s.dispatcher.linger, dispatcher::LINGER);
        assert_eq!(s.drain_timeout, dispatcher::DRAIN_TIMEOUT);
    }

    #[test]
    fn listen_list_is_comma_separated() {
        let cli = Cli::try_parse_from([
            "x",
            "--listen",
            "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .expect("parse");
        assert_eq!(cli.listen.len(), 2);
    }
}
