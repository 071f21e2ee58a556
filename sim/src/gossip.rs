//! A simulated gossipsub collector: its own libp2p identity, gossipsub with the deployed peers'
//! parameters (docs/protocol.md §10, StrictSign, their message id), subscribed to `<prefix>/all` and
//! `<prefix>/0`, publishing the newest collectors' envelopes and heartbeats. The load generator,
//! the runner's `--path gossipsub|both` and the ingress tests use it; the independent check of the
//! ingress is the js-libp2p publisher (`ingress/tests/js-gossip`).

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use sequencer_core::gossip::{topics, MESH_FORMATION_PROJECT};
use tokio::sync::{mpsc, oneshot};

use crate::SimError;

/// Messages a peer keeps of what it received (for tests that look at what reached it).
const RECEIVED_KEPT: usize = 10_000;

/// The collectors' envelope of one submission: `{"epoch_id":N,"submissions":[<json>],
/// "snapshotter_id":"<peer id>","signature":null}` (Go's `encoding/json`, fields in this order).
pub fn envelope(epoch: u64, submission_json: &[u8], snapshotter: &PeerId) -> Vec<u8> {
    let mut out = format!("{{\"epoch_id\":{epoch},\"submissions\":[").into_bytes();
    out.extend_from_slice(submission_json);
    out.extend_from_slice(
        format!("],\"snapshotter_id\":\"{snapshotter}\",\"signature\":null}}").as_bytes(),
    );
    out
}

fn heartbeat_signature(kind: &str, n: u64) -> String {
    // Go marshals the []byte signature as standard base64.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    base64::engine::general_purpose::STANDARD.encode(format!("heartbeat-{kind}-{n}-{secs}"))
}

/// The discovery heartbeat the collectors publish on `<prefix>/0` every 10 s.
pub fn discovery_heartbeat(snapshotter: &PeerId, n: u64) -> Vec<u8> {
    format!(
        "{{\"epoch_id\":0,\"submissions\":null,\"snapshotter_id\":\"{snapshotter}\",\"signature\":\"{}\"}}",
        heartbeat_signature("discovery", n)
    )
    .into_bytes()
}

/// The mesh-formation heartbeat the collectors publish on `<prefix>/all` every 10 s.
pub fn mesh_formation_heartbeat(snapshotter: &PeerId, n: u64) -> Vec<u8> {
    format!(
        "{{\"epoch_id\":0,\"submissions\":[{{\"request\":{{\"projectId\":\"{MESH_FORMATION_PROJECT}\"}}}}],\"snapshotter_id\":\"{snapshotter}\",\"signature\":\"{}\"}}",
        heartbeat_signature("submissions", n)
    )
    .into_bytes()
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct PeerBehaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
}

enum Cmd {
    Publish {
        topic: IdentTopic,
        data: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    MeshPeers {
        topic: IdentTopic,
        reply: oneshot::Sender<usize>,
    },
    Received {
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
    Connected {
        reply: oneshot::Sender<bool>,
    },
}

/// A gossipsub collector connected to one peer (the ingress).
pub struct GossipPeer {
    /// Its peer id (the `snapshotter_id` of its envelopes).
    pub peer_id: PeerId,
    /// `<prefix>/0`.
    pub zero: IdentTopic,
    /// `<prefix>/all`.
    pub all: IdentTopic,
    cmd: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

/// How a [`GossipPeer`] dials.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Topic prefix.
    pub prefix: String,
    /// Gossipsub heartbeat (700 ms deployed; tests shorten it).
    pub heartbeat: Duration,
    /// Listen here first and dial from it (QUIC: picks the source address, e.g. 127.0.0.2).
    pub local: Option<Multiaddr>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            prefix: sequencer_core::gossip::DEFAULT_TOPIC_PREFIX.to_owned(),
            heartbeat: Duration::from_millis(700),
            local: None,
        }
    }
}

fn build(key: Keypair, o: &PeerOptions) -> Result<Swarm<PeerBehaviour>, SimError> {
    let err = |e: String| SimError::Build(e);
    let config = sequencer_ingress::gossip::deployed_mesh(o.heartbeat)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .map_err(|e| err(e.to_string()))?;
    let identify =
        identify::Behaviour::new(identify::Config::new("ipfs/0.1.0".into(), key.public()));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| err(e.to_string()))?
        .with_quic()
        .with_behaviour(|_| PeerBehaviour {
            gossipsub,
            identify,
        })
        .map_err(|e| err(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

impl GossipPeer {
    /// Dials `addr` (ending in `/p2p/<id>`, or `server` is appended) with identity `key`,
    /// subscribes to both topics and waits until the connection is up.
    pub async fn connect(
        key: Keypair,
        addr: &Multiaddr,
        server: PeerId,
        o: &PeerOptions,
    ) -> Result<Self, SimError> {
        let peer_id = key.public().to_peer_id();
        let mut swarm = build(key, o)?;
        let (z, a) = topics(&o.prefix);
        let (zero, all) = (IdentTopic::new(z), IdentTopic::new(a));
        for t in [&zero, &all] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(t)
                .map_err(|e| SimError::Build(e.to_string()))?;
        }
        let dial_err = |detail: String| SimError::Dial {
            addr: addr.clone(),
            detail,
        };
        if let Some(local) = &o.local {
            swarm
                .listen_on(local.clone())
                .map_err(|e| dial_err(format!("listen on {local}: {e}")))?;
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some())
                    .await
                    .map_err(|_| dial_err(format!("binding {local} timed out")))?;
                if let SwarmEvent::NewListenAddr { .. } = ev {
                    break;
                }
            }
        }
        let mut full = addr.clone();
        if !matches!(full.iter().last(), Some(Protocol::P2p(_))) {
            full.push(Protocol::P2p(server));
        }
        swarm.dial(full).map_err(|e| dial_err(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .map_err(|_| dial_err("timed out".into()))?;
            match ev {
                SwarmEvent::ConnectionEstablished { peer_id: p, .. } if p == server => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(dial_err(error.to_string()))
                }
                _ => {}
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(run(swarm, rx, server));
        Ok(Self {
            peer_id,
            zero,
            all,
            cmd: tx,
            task,
        })
    }

    /// Publishes `data` on `topic` (flood publish: to every peer subscribed to it).
    pub async fn publish(&self, topic: &IdentTopic, data: Vec<u8>) -> Result<(), SimError> {
        let (done, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Publish {
                topic: topic.clone(),
                data,
                done,
            })
            .await
            .map_err(|_| SimError::Open("gossip peer stopped".into()))?;
        rx.await
            .map_err(|_| SimError::Open("gossip peer stopped".into()))?
            .map_err(SimError::Open)
    }

    /// Mesh peers on `topic`.
    pub async fn mesh_peers(&self, topic: &IdentTopic) -> usize {
        let (reply, rx) = oneshot::channel();
        if self
            .cmd
            .send(Cmd::MeshPeers {
                topic: topic.clone(),
                reply,
            })
            .await
            .is_err()
        {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Waits until `topic`'s mesh has at least `n` peers; false after `within`.
    pub async fn wait_mesh(&self, topic: &IdentTopic, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.mesh_peers(topic).await >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The data of the messages this peer received (the last 10 000).
    pub async fn received(&self) -> Vec<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Received { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Whether the connection to the server is still up.
    pub async fn is_connected(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Connected { reply }).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Stops the peer (its connections close).
    pub async fn close(self) {
        drop(self.cmd);
        let _ = self.task.await;
    }
}

async fn run(mut swarm: Swarm<PeerBehaviour>, mut cmd: mpsc::Receiver<Cmd>, server: PeerId) {
    let mut received: VecDeque<Vec<u8>> = VecDeque::new();
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(PeerBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) = ev {
                    if received.len() == RECEIVED_KEPT {
                        received.pop_front();
                    }
                    received.push_back(message.data);
                }
            }
            c = cmd.recv() => match c {
                None => break,
                Some(Cmd::Publish { topic, data, done }) => {
                    let r = swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic, data)
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    let _ = done.send(r);
                }
                Some(Cmd::MeshPeers { topic, reply }) => {
                    let n = swarm.behaviour().gossipsub.mesh_peers(&topic.hash()).count();
                    let _ = reply.send(n);
                }
                Some(Cmd::Received { reply }) => {
                    let _ = reply.send(received.iter().cloned().collect());
                }
                Some(Cmd::Connected { reply }) => {
                    let _ = reply.send(swarm.is_connected(&server));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequencer_core::gossip::{parse, GossipPayload};

    #[test]
    fn the_collectors_forms_parse_as_they_should() {
        let p = PeerId::random();
        let sub = br#"{"request":{"slotId":1,"snapshotCid":"x","epochId":3,"projectId":"p"},"signature":"aa"}"#;
        let env = envelope(3, sub, &p);
        assert_eq!(
            parse(&env),
            Ok(GossipPayload::Submissions {
                texts: vec![std::str::from_utf8(sub).expect("utf-8")],
                mesh_formation: 0
            })
        );
        assert_eq!(
            parse(&discovery_heartbeat(&p, 1)),
            Ok(GossipPayload::Heartbeat)
        );
        assert_eq!(
            parse(&mesh_formation_heartbeat(&p, 1)),
            Ok(GossipPayload::Submissions {
                texts: vec![],
                mesh_formation: 1
            })
        );
    }
}
