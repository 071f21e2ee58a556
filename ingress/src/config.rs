//! Command line and environment configuration. Every setting is a flag and an environment
//! variable (`INGRESS_*`); defaults come from [`crate::limits`], [`crate::dispatcher`] and here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use libp2p::Multiaddr;

use crate::dispatcher::{self, DispatcherConfig};
use crate::edge::EdgePolicy;
use crate::gossip::{GossipSettings, KadMode};
use crate::host::HostConfig;
use crate::limits as l;
use crate::limits::EdgeLimits;
use crate::tally::TallySettings;
use crate::Settings;

/// Default spill file (relative to the working directory; mount a volume there in ECS).
pub const DEFAULT_SPILL_PATH: &str = "ingress-spill.jsonl";

/// Host key file used when none is configured; generated on first start (see [`Cli::key_file`]).
pub const DEFAULT_KEY_FILE: &str = "ingress-identity.key";

/// Configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither a market allow-list nor `--any-market`.
    #[error("no data market configured: set --markets / INGRESS_MARKETS (comma-separated addresses) or pass --any-market")]
    NoMarkets,
    /// Both a list and `--any-market`.
    #[error("--markets and --any-market contradict each other")]
    MarketsAndAny,
}

fn parse_market(s: &str) -> Result<sequencer_core::Address, String> {
    sequencer_core::submission::parse_address(s.trim())
        .ok_or_else(|| format!("{s:?} is not a 20-byte hex address"))
}

/// Queue the ingress writes to (the name the Terraform and `localstack/create-resources.sh` use).
pub const DEFAULT_QUEUE_NAME: &str = "seq-submissions";

fn linger_ms_default() -> u64 {
    ms(dispatcher::LINGER)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Kademlia mode flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KadModeArg {
    /// Query the DHT, answer nobody (what the collectors run).
    Client,
    /// Also answer queries and hold provider records: a bootstrap node for the market.
    Server,
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
    /// Host key file (protobuf-encoded libp2p keypair). When set, it must exist (the start fails
    /// otherwise) unless --generate-key is given. When not set, `ingress-identity.key` in the
    /// working directory is used and generated (mode 0600) on first start.
    #[arg(long, env = "INGRESS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Create the key file named by --key-file if it does not exist (never overwrites one).
    #[arg(long, env = "INGRESS_GENERATE_KEY")]
    pub generate_key: bool,
    /// Host key as hex of the protobuf encoding (e.g. from a secret); wins over the key file.
    #[arg(long, env = "INGRESS_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print the peer id for the key and exit.
    #[arg(long)]
    pub print_peer_id: bool,
    /// Operations HTTP address (/healthz, /readyz, /metrics).
    #[arg(long, env = "INGRESS_HTTP_LISTEN", default_value = "0.0.0.0:9101")]
    pub http_listen: SocketAddr,
    /// Data markets served, comma separated (0x addresses). Submissions for any other market are
    /// refused at the edge. Required unless --any-market.
    #[arg(long, env = "INGRESS_MARKETS", value_delimiter = ',', value_parser = parse_market)]
    pub markets: Vec<sequencer_core::Address>,
    /// Serve every data market (no allow-list; the verifier still rejects foreign markets).
    #[arg(long, env = "INGRESS_ANY_MARKET")]
    pub any_market: bool,
    /// Write-ahead log directory: accepted messages are fsynced there (group commit) before they
    /// count as accepted, so a SIGKILL loses none. Off when unset.
    #[arg(long, env = "INGRESS_WAL_PATH")]
    pub wal_path: Option<PathBuf>,
    /// Seconds between queue probes for /readyz.
    #[arg(long, env = "INGRESS_READY_PROBE_SECS", default_value_t = crate::http::READY_PROBE_INTERVAL.as_secs())]
    pub ready_probe_secs: u64,
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
    /// Gossipsub beside /collect on the same listen addresses (`true`/`false`). On by default; it
    /// is off when the topic prefix is empty.
    #[arg(long, env = "INGRESS_GOSSIP", action = clap::ArgAction::Set, default_value_t = true)]
    pub gossip: bool,
    /// Gossipsub topic prefix: `<prefix>/all` (submissions) and `<prefix>/0` (heartbeats).
    #[arg(long, env = "INGRESS_GOSSIP_TOPIC_PREFIX", default_value = sequencer_core::gossip::DEFAULT_TOPIC_PREFIX)]
    pub gossip_topic_prefix: String,
    /// Bootstrap peers (`/ip4/…/tcp/…/p2p/<peer id>`, comma separated). None: this ingress is the
    /// market's bootstrap node (use --gossip-kad-mode server).
    #[arg(long, env = "INGRESS_GOSSIP_BOOTSTRAP", value_delimiter = ',')]
    pub gossip_bootstrap: Vec<Multiaddr>,
    /// Kademlia mode: `server` answers DHT queries and holds provider records (a bootstrap node),
    /// `client` only queries (behind NAT).
    #[arg(
        long,
        env = "INGRESS_GOSSIP_KAD_MODE",
        value_enum,
        default_value = "server"
    )]
    pub gossip_kad_mode: KadModeArg,
    /// Rendezvous string advertised in the DHT (the collectors' RENDEZVOUS_POINT).
    #[arg(long, env = "INGRESS_GOSSIP_RENDEZVOUS", default_value = sequencer_core::gossip::DEFAULT_RENDEZVOUS)]
    pub gossip_rendezvous: String,
    /// Addresses announced to peers (e.g. `/dns4/<load balancer>/tcp/9100`), comma separated.
    #[arg(long, env = "INGRESS_EXTERNAL_ADDRS", value_delimiter = ',')]
    pub external_addrs: Vec<Multiaddr>,
    /// Inbound connections admitted to gossipsub, Kademlia and identify.
    #[arg(long, env = "INGRESS_GOSSIP_MAX_INBOUND", default_value_t = l::GOSSIP_MAX_INBOUND)]
    pub gossip_max_inbound: usize,
    /// The same, per remote address (IPv4, IPv6 /64).
    #[arg(long, env = "INGRESS_GOSSIP_MAX_INBOUND_PER_ADDR", default_value_t = l::GOSSIP_MAX_INBOUND_PER_ADDR)]
    pub gossip_max_inbound_per_addr: usize,
    /// Outbound connections to gossip peers (bootstrap peers, peers found in the DHT).
    #[arg(long, env = "INGRESS_GOSSIP_MAX_OUTBOUND", default_value_t = l::GOSSIP_MAX_OUTBOUND)]
    pub gossip_max_outbound: usize,
    /// Milliseconds between tallies of the submissions taken in (per market and epoch, for the
    /// close watermark) while the counts change; 0: heartbeats only.
    #[arg(long, env = "INGRESS_TALLY_INTERVAL_MS", default_value_t = ms(crate::tally::INTERVAL))]
    pub tally_interval_ms: u64,
    /// Milliseconds between tallies regardless of changes (the boot says it is alive); 0 turns
    /// tallies off entirely.
    #[arg(long, env = "INGRESS_TALLY_HEARTBEAT_MS", default_value_t = ms(crate::tally::HEARTBEAT))]
    pub tally_heartbeat_ms: u64,
    /// Log filter (tracing EnvFilter syntax), JSON output.
    #[arg(long, env = "INGRESS_LOG", default_value = "info")]
    pub log: String,
}

impl Cli {
    /// The market allow-list: a list, or `--any-market`, exactly one of them.
    pub fn edge_policy(&self) -> Result<EdgePolicy, ConfigError> {
        match (self.markets.is_empty(), self.any_market) {
            (true, false) => Err(ConfigError::NoMarkets),
            (false, true) => Err(ConfigError::MarketsAndAny),
            (true, true) => Ok(EdgePolicy::default()),
            (false, false) => Ok(EdgePolicy::markets(self.markets.iter().copied())),
        }
    }

    /// Gossipsub settings from the flags (`None`: off).
    pub fn gossip_settings(&self) -> Option<GossipSettings> {
        if !self.gossip || self.gossip_topic_prefix.trim().is_empty() {
            return None;
        }
        Some(GossipSettings {
            topic_prefix: self.gossip_topic_prefix.trim().to_owned(),
            bootstrap: self.gossip_bootstrap.clone(),
            kad_mode: match self.gossip_kad_mode {
                KadModeArg::Client => KadMode::Client,
                KadModeArg::Server => KadMode::Server,
            },
            rendezvous: self.gossip_rendezvous.clone(),
            external_addrs: self.external_addrs.clone(),
            max_inbound: self.gossip_max_inbound,
            max_inbound_per_addr: self.gossip_max_inbound_per_addr,
            max_outbound: self.gossip_max_outbound,
            ..GossipSettings::default()
        })
    }

    /// Library settings from the flags.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        Ok(Settings {
            host: HostConfig {
                listen: self.listen.clone(),
                idle_connection_timeout: Duration::from_secs(self.idle_connection_timeout_secs),
                stream_idle_timeout: Duration::from_secs(self.stream_idle_timeout_secs),
                partial_message_timeout: Duration::from_secs(self.partial_message_timeout_secs),
                max_streams_per_connection: self.max_streams_per_connection,
                read_chunk_bytes: l::READ_CHUNK_BYTES,
                handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
                edge: self.edge_policy()?,
                gossip: self.gossip_settings(),
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
            wal_path: self.wal_path.clone(),
            ready_probe_interval: Duration::from_secs(self.ready_probe_secs),
            tally: TallySettings::from_millis(self.tally_interval_ms, self.tally_heartbeat_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_match_constants() {
        let cli =
            Cli::try_parse_from(["sequencer-ingress", "--any-market"]).expect("defaults parse");
        assert_eq!(cli.listen, vec![crate::host::default_listen()]);
        let s = cli.settings().expect("settings");
        assert_eq!(s.wal_path, None, "the write-ahead log is off by default");
        assert_eq!(s.ready_probe_interval, crate::http::READY_PROBE_INTERVAL);
        assert_eq!(s.limits.max_connections, l::MAX_CONNECTIONS);
        assert_eq!(s.limits.max_pending_per_addr, l::MAX_PENDING_PER_ADDR);
        assert_eq!(s.limits.max_streams_per_addr, l::MAX_STREAMS_PER_ADDR);
        assert_eq!(s.limits.addr_rate, l::ADDR_RATE_PER_SEC);
        assert_eq!(s.host.handshake_timeout, l::HANDSHAKE_TIMEOUT);
        assert_eq!(s.dispatcher.linger, dispatcher::LINGER);
        assert_eq!(s.drain_timeout, dispatcher::DRAIN_TIMEOUT);
        let g = s
            .host
            .gossip
            .expect("gossipsub is on by default in the binary");
        assert_eq!(g.topic_prefix, sequencer_core::gossip::DEFAULT_TOPIC_PREFIX);
        assert_eq!(g.kad_mode, KadMode::Server);
        assert_eq!(g.max_inbound, l::GOSSIP_MAX_INBOUND);
        assert_eq!(
            s.tally,
            Some(TallySettings::default()),
            "tallies are on in the binary"
        );
        let off = Cli::try_parse_from(["x", "--any-market", "--tally-heartbeat-ms", "0"])
            .expect("parse")
            .settings()
            .expect("settings");
        assert_eq!(off.tally, None, "a zero heartbeat turns tallies off");
    }

    #[test]
    fn gossip_is_off_when_asked_or_without_a_prefix() {
        for args in [
            &["x", "--any-market", "--gossip", "false"][..],
            &["x", "--any-market", "--gossip-topic-prefix", ""][..],
        ] {
            let cli = Cli::try_parse_from(args).expect("parse");
            assert!(
                cli.settings().expect("settings").host.gossip.is_none(),
                "{args:?}"
            );
        }
        let cli = Cli::try_parse_from([
            "x",
            "--any-market",
            "--gossip-topic-prefix",
            "/m/x",
            "--gossip-bootstrap",
            "/ip4/10.0.0.1/tcp/9100/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
            "--gossip-kad-mode",
            "client",
        ])
        .expect("parse");
        let g = cli.settings().expect("settings").host.gossip.expect("on");
        assert_eq!(g.topics().1.hash().as_str(), "/m/x/all");
        assert_eq!(g.bootstrap.len(), 1);
        assert_eq!(g.kad_mode, KadMode::Client);
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

    #[test]
    fn markets_are_required_unless_any_market() {
        let none = Cli::try_parse_from(["x"]).expect("parse");
        assert!(matches!(none.settings(), Err(ConfigError::NoMarkets)));
        let both = Cli::try_parse_from([
            "x",
            "--any-market",
            "--markets",
            "0x00000000000000000000000000000000000000aa",
        ])
        .expect("parse");
        assert!(matches!(both.settings(), Err(ConfigError::MarketsAndAny)));
        let two = Cli::try_parse_from([
            "x",
            "--markets",
            "0x00000000000000000000000000000000000000aa,00000000000000000000000000000000000000BB",
        ])
        .expect("parse");
        let policy = two.settings().expect("settings").host.edge;
        assert_eq!(policy.markets.map(|m| m.len()), Some(2));
        assert!(Cli::try_parse_from(["x", "--markets", "0x12"]).is_err());
    }
}
