//! Gossipsub beside `/collect` (docs/protocol.md §10, docs/gossipsub.md): the newest collectors publish
//! every submission on `<prefix>/all` (simulations and heartbeats on `<prefix>/0`). The ingress
//! joins that mesh on the same host and port as `/collect`, as a peer the deployed
//! go-libp2p-pubsub peers keep: the same mesh parameters (D 10, D_lo 8, D_hi 16, D_lazy 10, D_out 4,
//! D_score 6, heartbeat 700 ms, history 12/6, gossip factor 0.25, flood publish), StrictSign, their
//! message id (author ‖ sequence number, as bytes), their score parameters, a 1 MiB RPC cap.
//!
//! Every message is judged before gossipsub may forward it ([`validate`]): taken apart by core's
//! [`sequencer_core::gossip::parse`], charged to the forwarding peer's and its address's token
//! buckets (the same [`crate::rate::PeerGate`] as `/collect`), each submission through the same
//! [`crate::edge::check`]; invalid → `Reject` (it stops here and the sender's score drops),
//! heartbeats and mesh-formation entries → `Ignore` (counted, never queued), valid → queued with its
//! content id as submission id, then `Accept` (forwarded).
//!
//! Discovery is what the collectors do: Kademlia (client or server mode) on the configured
//! bootstrap peers, and provider records ("advertisements") under the rendezvous string and the
//! topic names, re-announced every 5 minutes; with no bootstrap peer the ingress is itself the
//! bootstrap node of its market. Memory is bounded by [`gate::P2pGate`] (how many connections speak
//! these protocols) and the constants of [`crate::limits`] (each says why it is what it is).

pub mod gate;
pub mod health;
pub mod validate;

use std::collections::HashSet;
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageId, TopicHash};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, kad, Multiaddr, PeerId, StreamProtocol};
use sequencer_core::gossip as wire;

use crate::limits as l;
use crate::metrics::Metrics;

/// Heartbeat of the deployed peers' gossipsub (docs/protocol.md §10).
pub const HEARTBEAT: Duration = Duration::from_millis(700);

/// How often the provider records are announced again (what the collectors do: every 5 minutes).
pub const ADVERTISE_INTERVAL: Duration = Duration::from_secs(300);

/// How often the DHT is searched for peers of the market while the mesh is below `D_lo` (the
/// collectors search every 30 s).
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// Peers dialed per discovery round (the collectors connect to at most 10 per round).
pub const DIALS_PER_ROUND: usize = 10;

/// The Kademlia protocol of go-libp2p-kad-dht (and rust-libp2p's default).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");

/// Kademlia mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KadMode {
    /// Queries others, answers none (the collectors' mode).
    Client,
    /// Also answers queries and stores provider records: a bootstrap node for the market.
    Server,
}

/// Gossipsub settings of the ingress.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    /// Topic prefix (`<prefix>/all`, `<prefix>/0`).
    pub topic_prefix: String,
    /// Bootstrap peers, `/…/p2p/<peer id>` multiaddrs.
    pub bootstrap: Vec<Multiaddr>,
    /// Kademlia mode.
    pub kad_mode: KadMode,
    /// Rendezvous string advertised and searched (the collectors' `RENDEZVOUS_POINT`).
    pub rendezvous: String,
    /// Addresses announced to peers (e.g. the load balancer's); listen addresses otherwise.
    pub external_addrs: Vec<Multiaddr>,
    /// Gossipsub heartbeat (700 ms on the deployed peers; tests may shorten it).
    pub heartbeat: Duration,
    /// Provider record re-announcement.
    pub advertise_interval: Duration,
    /// DHT search for peers while the mesh is thin.
    pub discovery_interval: Duration,
    /// Inbound peer-to-peer connections admitted.
    pub max_inbound: usize,
    /// Inbound peer-to-peer connections admitted per address.
    pub max_inbound_per_addr: usize,
    /// Outbound peer-to-peer connections.
    pub max_outbound: usize,
    /// Messages waiting for the validator.
    pub validation_queue: usize,
    /// Bytes of messages waiting for the validator.
    pub validation_bytes: usize,
    /// Bytes of accepted messages kept for gossipsub's history window.
    pub cache_bytes: usize,
}

impl Default for GossipSettings {
    fn default() -> Self {
        Self {
            topic_prefix: wire::DEFAULT_TOPIC_PREFIX.to_owned(),
            bootstrap: Vec::new(),
            kad_mode: KadMode::Server,
            rendezvous: wire::DEFAULT_RENDEZVOUS.to_owned(),
            external_addrs: Vec::new(),
            heartbeat: HEARTBEAT,
            advertise_interval: ADVERTISE_INTERVAL,
            discovery_interval: DISCOVERY_INTERVAL,
            max_inbound: l::GOSSIP_MAX_INBOUND,
            max_inbound_per_addr: l::GOSSIP_MAX_INBOUND_PER_ADDR,
            max_outbound: l::GOSSIP_MAX_OUTBOUND,
            validation_queue: l::GOSSIP_VALIDATION_QUEUE,
            validation_bytes: l::GOSSIP_VALIDATION_BYTES,
            cache_bytes: l::GOSSIP_CACHE_BYTES,
        }
    }
}

impl GossipSettings {
    /// `(<prefix>/0, <prefix>/all)`.
    pub fn topics(&self) -> (IdentTopic, IdentTopic) {
        let (zero, all) = wire::topics(&self.topic_prefix);
        (IdentTopic::new(zero), IdentTopic::new(all))
    }

    /// The namespaces advertised in the DHT, as the collectors do: the rendezvous string, each
    /// topic name (`util.Advertise` on the topic) and `floodsub:<topic>` (go-libp2p-pubsub's own
    /// discovery).
    pub fn namespaces(&self) -> Vec<String> {
        let (zero, all) = wire::topics(&self.topic_prefix);
        let mut ns = Vec::new();
        if !self.rendezvous.is_empty() {
            ns.push(self.rendezvous.clone());
        }
        for t in [&zero, &all] {
            ns.push(t.clone());
            ns.push(format!("floodsub:{t}"));
        }
        ns
    }

    /// These settings with the per-address cap no tighter than the total: for peers that all run
    /// on one host (tests, the local runner), like [`crate::limits::EdgeLimits::one_host_fleet`].
    pub fn one_host_fleet(mut self) -> Self {
        self.max_inbound_per_addr = self.max_inbound;
        self
    }
}

/// Errors building the gossipsub stack.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// Configuration refused by libp2p.
    #[error("gossipsub configuration: {0}")]
    Config(String),
}

/// The deployed peers' message id (go-libp2p-pubsub's default): the author's peer id bytes
/// followed by the 8-byte big-endian sequence number. Matching it keeps IHAVE/IWANT ids the same
/// on both sides, so gossip is not fetched twice.
pub fn message_id(m: &gossipsub::Message) -> MessageId {
    let mut id = m.source.map(|p| p.to_bytes()).unwrap_or_default();
    if let Some(seq) = m.sequence_number {
        id.extend_from_slice(&seq.to_be_bytes());
    }
    MessageId::new(&id)
}

/// The deployed peers' mesh (docs/protocol.md §10, their `gossipconfig`): D 10, D_lo 8, D_hi 16,
/// D_lazy 10, D_out 4, D_score 6, history 12/6, gossip factor 0.25, flood publish, opportunistic
/// graft every 30 heartbeats (4 peers), backoffs 5 min / 30 s, fanout TTL 60 s, 1 MiB, StrictSign,
/// their message id, with `heartbeat`. Shared with the simulator's collectors.
pub fn deployed_mesh(heartbeat: Duration) -> gossipsub::ConfigBuilder {
    let mut b = gossipsub::ConfigBuilder::default();
    b.mesh_n(10)
        .mesh_n_low(8)
        .mesh_n_high(16)
        .gossip_lazy(10)
        .mesh_outbound_min(4)
        .retain_scores(6)
        .heartbeat_interval(heartbeat)
        .history_length(12)
        .history_gossip(6)
        .gossip_factor(0.25)
        .flood_publish(true)
        .opportunistic_graft_ticks(30)
        .opportunistic_graft_peers(4)
        .prune_backoff(Duration::from_secs(300))
        .unsubscribe_backoff(Duration::from_secs(30))
        .fanout_ttl(Duration::from_secs(60))
        .max_transmit_size(l::GOSSIP_MAX_TRANSMIT_BYTES)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(message_id);
    b
}

/// The ingress's gossipsub configuration: the deployed mesh, every message validated by us first,
/// and its own queue bounds.
pub fn gossipsub_config(s: &GossipSettings) -> Result<gossipsub::Config, GossipError> {
    deployed_mesh(s.heartbeat)
        .validate_messages()
        .connection_handler_queue_len(l::GOSSIP_SEND_QUEUE)
        // IDONTWANT is an optimisation for large messages; ours are ≤ 32 KiB and each one would
        // sit in a per-peer control queue, so it is never sent.
        .idontwant_message_size_threshold(l::GOSSIP_MAX_TRANSMIT_BYTES)
        .build()
        .map_err(|e| GossipError::Config(e.to_string()))
}

/// The deployed peers' score parameters (their `gossipconfig` package): mesh-delivery and
/// behaviour penalties off, invalid messages penalised (weight −100 × topic weight 10), very
/// lenient thresholds.
pub fn score_params(
    topics: &[TopicHash],
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 10.0,
        time_in_mesh_weight: 10.0,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10_000.0,
        first_message_deliveries_weight: 100.0,
        first_message_deliveries_decay: 0.999,
        first_message_deliveries_cap: 10_000.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.999,
        mesh_message_deliveries_cap: 1.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_secs(24 * 3600),
        mesh_message_deliveries_activation: Duration::from_secs(24 * 3600),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.9,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
    };
    let params = gossipsub::PeerScoreParams {
        topics: topics.iter().map(|t| (t.clone(), topic.clone())).collect(),
        topic_score_cap: 100_000.0,
        app_specific_weight: 10.0,
        ip_colocation_factor_weight: 0.0,
        ip_colocation_factor_threshold: 1000.0,
        ip_colocation_factor_whitelist: HashSet::new(),
        behaviour_penalty_weight: 0.0,
        behaviour_penalty_threshold: 1000.0,
        behaviour_penalty_decay: 0.999,
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(1800),
        slow_peer_weight: 0.0,
        slow_peer_threshold: 0.0,
        slow_peer_decay: 0.2,
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -100_000.0,
        publish_threshold: -200_000.0,
        graylist_threshold: -500_000.0,
        accept_px_threshold: 0.0,
        opportunistic_graft_threshold: 1.0,
    };
    (params, thresholds)
}

/// The application score every peer gets (the deployed peers' `AppSpecificScore` baseline).
pub const APP_SCORE: f64 = 10_000.0;

/// Refuses, before gossipsub caches it, a message on a topic we do not serve or larger than any
/// message the collectors send: such a message never enters gossipsub's memory cache, and its
/// sender is penalised as for an invalid message.
#[derive(Clone)]
pub struct Transform {
    topics: HashSet<TopicHash>,
    metrics: Metrics,
}

impl gossipsub::DataTransform for Transform {
    fn inbound_transform(
        &self,
        raw: gossipsub::RawMessage,
    ) -> Result<gossipsub::Message, std::io::Error> {
        let refuse = |reason: &'static str| {
            self.metrics.reject(crate::reject::Reject::Gossip(reason));
            self.metrics
                .path
                .gossip_verdicts
                .get_or_create(&[("topic", "other"), ("verdict", "reject")])
                .inc();
            std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
        };
        if !self.topics.contains(&raw.topic) {
            return Err(refuse("gossip_wrong_topic"));
        }
        if raw.data.len() > wire::MAX_GOSSIP_MESSAGE_BYTES {
            return Err(refuse("gossip_oversize"));
        }
        Ok(gossipsub::Message {
            source: raw.source,
            data: raw.data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(
        &self,
        _topic: &TopicHash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, std::io::Error> {
        Ok(data)
    }
}

/// Gossipsub with our transform and a subscription filter that tracks only our two topics (a peer
/// subscribing to a million topics costs nothing).
pub type Gossipsub = gossipsub::Behaviour<Transform, gossipsub::WhitelistSubscriptionFilter>;

/// The peer-to-peer protocols, behind [`gate::P2pGate`].
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct P2p {
    /// Gossipsub.
    pub gossipsub: Gossipsub,
    /// Kademlia.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Identify (js and go peers learn our protocols through it).
    pub identify: identify::Behaviour,
}

/// Builds gossipsub, Kademlia and identify for `key`, subscribed to both topics.
pub fn build(key: &Keypair, s: &GossipSettings, metrics: &Metrics) -> Result<P2p, GossipError> {
    let (zero, all) = s.topics();
    let topics = [zero.hash(), all.hash()];
    let transform = Transform {
        topics: topics.iter().cloned().collect(),
        metrics: metrics.clone(),
    };
    let filter = gossipsub::WhitelistSubscriptionFilter(topics.iter().cloned().collect());
    let mut gossipsub = Gossipsub::new_with_subscription_filter_and_transform(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossipsub_config(s)?,
        filter,
        transform,
    )
    .map_err(|e| GossipError::Config(e.to_string()))?;
    let (params, thresholds) = score_params(&topics);
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(GossipError::Config)?;
    for t in [&zero, &all] {
        gossipsub
            .subscribe(t)
            .map_err(|e| GossipError::Config(e.to_string()))?;
    }

    let peer_id = key.public().to_peer_id();
    let store = kad::store::MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_records: l::KAD_MAX_RECORDS,
            max_value_bytes: l::KAD_MAX_RECORD_BYTES,
            max_provided_keys: l::KAD_MAX_PROVIDER_KEYS,
            max_providers_per_key: 20,
        },
    );
    let mut kcfg = kad::Config::new(KAD_PROTOCOL);
    kcfg.set_query_timeout(Duration::from_secs(30));
    // Records are re-announced by the advertise timer, like the collectors do.
    kcfg.set_provider_publication_interval(None);
    // Refresh the routing table from the bootstrap peers; with none, this node is the bootstrap.
    kcfg.set_periodic_bootstrap_interval(
        (!s.bootstrap.is_empty()).then_some(Duration::from_secs(300)),
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, kcfg);
    kad.set_mode(Some(match s.kad_mode {
        KadMode::Client => kad::Mode::Client,
        KadMode::Server => kad::Mode::Server,
    }));

    let identify = identify::Behaviour::new(
        identify::Config::new("ipfs/0.1.0".into(), key.public())
            .with_agent_version(format!("sequencer-ingress/{}", env!("CARGO_PKG_VERSION"))),
    );
    Ok(P2p {
        gossipsub,
        kad,
        identify,
    })
}

/// Splits `/…/p2p/<id>` into the peer and its address (`None` without a `/p2p` part).
pub fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => Some((p, a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reject labels of the gossip path that are not edge reasons, and every ignore reason.
    const REJECTS: [&str; 5] = [
        "gossip_oversize",
        "gossip_not_envelope",
        "gossip_too_many_submissions",
        "gossip_wrong_topic",
        "gossip_connections_full",
    ];
    const IGNORES: [&str; 11] = [
        "heartbeat",
        "mesh_formation",
        "mesh_formation_message",
        "foreign_market",
        "foreign_market_message",
        "throttled",
        "banned",
        "validation_queue_full",
        "cache_budget",
        "draining",
        "shutdown",
    ];

    #[test]
    fn readme_lists_every_gossip_reason() {
        let readme = include_str!("../../README.md");
        for r in REJECTS.iter().chain(&IGNORES) {
            assert!(
                readme.contains(&format!("`{r}`")),
                "ingress/README.md does not list `{r}`"
            );
        }
        // Core's parse reasons are among them.
        for e in [
            wire::GossipError::Oversize(0),
            wire::GossipError::NotEnvelope(String::new()),
            wire::GossipError::TooManySubmissions(0),
        ] {
            assert!(REJECTS.contains(&e.reason()));
        }
    }

    #[test]
    fn the_deployed_parameters_build_and_namespaces_are_the_collectors() {
        let s = GossipSettings::default();
        let c = gossipsub_config(&s).expect("valid");
        assert_eq!(
            (c.mesh_n(), c.mesh_n_low(), c.mesh_n_high(), c.gossip_lazy()),
            (10, 8, 16, 10)
        );
        assert_eq!((c.history_length(), c.history_gossip()), (12, 6));
        assert_eq!(c.heartbeat_interval(), Duration::from_millis(700));
        assert_eq!(c.max_transmit_size(), 1024 * 1024);
        assert!(c.flood_publish());
        assert_eq!(
            s.namespaces(),
            vec![
                "powerloom-snapshot-sequencer-network",
                "/powerloom/snapshot-submissions/0",
                "floodsub:/powerloom/snapshot-submissions/0",
                "/powerloom/snapshot-submissions/all",
                "floodsub:/powerloom/snapshot-submissions/all",
            ]
        );
        let (params, thresholds) = score_params(&[s.topics().1.hash()]);
        assert!(params.validate().is_ok());
        assert!(thresholds.validate().is_ok());
    }

    #[test]
    fn message_ids_are_go_libp2p_pubsubs() {
        let source = PeerId::random();
        let m = gossipsub::Message {
            source: Some(source),
            data: vec![],
            sequence_number: Some(0x0102_0304_0506_0708),
            topic: TopicHash::from_raw("t"),
        };
        let mut want = source.to_bytes();
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(message_id(&m).0, want);
    }
}
