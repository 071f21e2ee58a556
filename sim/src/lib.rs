//! The snapshotter simulator, shared by the local runner, the benchmarks and the tests: signed
//! submissions made with core's EIP-712 signer and the reproducible simulated slot keys, a libp2p
//! client (TCP + Noise/TLS + yamux, or QUIC) that opens long-lived `/collect` streams the way
//! deployed collectors do, and [`scenario`], the runner's cast of honest and misbehaving
//! snapshotters. The `snapshotter-sim` binary is the ingress's load generator.

pub mod bench;
pub mod gossip;
pub mod scenario;

use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use k256::ecdsa::SigningKey;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use sequencer_core::collect::CollectMessage;
use sequencer_core::devkeys;
use sequencer_core::eip712::{sign_request, Domain};
use sequencer_core::submission::{Request, SnapshotSubmission};
use sequencer_core::Address;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The `/collect` protocol id (core's, docs/protocol.md §2).
const COLLECT: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new(sequencer_core::collect::PROTOCOL);

/// Errors of the simulator client.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Building the client host.
    #[error("building client: {0}")]
    Build(String),
    /// Dialing the ingress.
    #[error("dial {addr}: {detail}")]
    Dial {
        /// Address.
        addr: Multiaddr,
        /// Cause.
        detail: String,
    },
    /// Opening a stream.
    #[error("open /collect stream: {0}")]
    Open(String),
    /// Writing.
    #[error("write: {0}")]
    Write(#[from] std::io::Error),
    /// Signing.
    #[error("sign: {0}")]
    Sign(String),
}

/// Makes real signed submissions for a set of slots.
pub struct SubmissionFactory {
    domain: Domain,
    market: String,
    keys: Vec<SigningKey>,
}

impl SubmissionFactory {
    /// Keys of slots `1..=slots`, the simulated snapshotters `seqctl chain deploy`
    /// assigns (`sequencer_core::devkeys`), for a local test domain and the local market.
    pub fn new(slots: usize) -> Result<Self, SimError> {
        let domain = Domain {
            chain_id: 31_337,
            verifying_contract: Address::repeat_byte(0x5a),
        };
        let keys = (1..=slots.max(1) as u64)
            .map(|slot| {
                devkeys::sim_snapshotter_key(slot)
                    .ok_or_else(|| SimError::Sign(format!("no simulated key for slot {slot}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            domain,
            market: format!("{:#x}", devkeys::local_market_address()),
            keys,
        })
    }

    /// One `/collect` message (UUID + Go-style JSON), signed by the slot's key.
    pub fn message(
        &self,
        slot: usize,
        epoch: u64,
        project: &str,
    ) -> Result<(Uuid, Vec<u8>), SimError> {
        let key = &self.keys[slot % self.keys.len()];
        let request = Request {
            slot_id: slot as u64 + 1,
            deadline: epoch + 100,
            snapshot_cid: "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4".to_owned(),
            epoch_id: epoch,
            project_id: project.to_owned(),
        };
        let signature =
            sign_request(&self.domain, &request, key).map_err(|e| SimError::Sign(e.to_string()))?;
        let submission = SnapshotSubmission {
            request,
            signature,
            header: format!("0x{}", "ab".repeat(32)),
            data_market: self.market.clone(),
            node_version: Some("v0.1.0-sim".to_owned()),
            protocol_state: None,
        };
        let id = Uuid::new_v4();
        Ok((id, CollectMessage::encode(&id, &submission)))
    }
}

/// A simulated collector: one libp2p identity with one connection to the ingress.
pub struct Client {
    /// Client peer id.
    pub peer_id: PeerId,
    server: PeerId,
    control: libp2p_stream::Control,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Security protocols a client offers on TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS first, then Noise, as Go collectors offer them (TLS is negotiated).
    TlsThenNoise,
    /// Noise only.
    Noise,
    /// TLS only.
    Tls,
}

fn build(key: Keypair, security: Security) -> Result<Swarm<libp2p_stream::Behaviour>, SimError> {
    let tcp = || libp2p::tcp::Config::default().nodelay(true);
    let err = |e: String| SimError::Build(e);
    let builder = libp2p::SwarmBuilder::with_existing_identity(key).with_tokio();
    let finish =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(3600));
    let swarm = match security {
        Security::TlsThenNoise => builder
            .with_tcp(
                tcp(),
                (libp2p::tls::Config::new, libp2p::noise::Config::new),
                libp2p::yamux::Config::default,
            )
            .map_err(|e| err(e.to_string()))?
            .with_quic()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .map_err(|e| err(e.to_string()))?
            .with_swarm_config(finish)
            .build(),
        Security::Noise => builder
            .with_tcp(
                tcp(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| err(e.to_string()))?
            .with_quic()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .map_err(|e| err(e.to_string()))?
            .with_swarm_config(finish)
            .build(),
        Security::Tls => builder
            .with_tcp(
                tcp(),
                libp2p::tls::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| err(e.to_string()))?
            .with_quic()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .map_err(|e| err(e.to_string()))?
            .with_swarm_config(finish)
            .build(),
    };
    Ok(swarm)
}

impl Client {
    /// Dials `addr` (which may end in `/p2p/<id>`; else `server` is used) with a fresh identity.
    pub async fn connect(addr: &Multiaddr, server: PeerId) -> Result<Self, SimError> {
        Self::connect_with(Keypair::generate_ed25519(), addr, server).await
    }

    /// Dials with a given identity.
    pub async fn connect_with(
        key: Keypair,
        addr: &Multiaddr,
        server: PeerId,
    ) -> Result<Self, SimError> {
        Self::connect_using(key, Security::TlsThenNoise, addr, server).await
    }

    /// Dials with a given identity, offering only `security` on TCP.
    pub async fn connect_using(
        key: Keypair,
        security: Security,
        addr: &Multiaddr,
        server: PeerId,
    ) -> Result<Self, SimError> {
        Self::connect_inner(key, security, None, addr, server).await
    }

    /// Dials a QUIC `addr` from the local QUIC address `local` (e.g.
    /// `/ip4/127.0.0.2/udp/0/quic-v1`): the client listens there first and libp2p's QUIC dials
    /// from that socket, so the ingress sees `local`'s IP. Tests use it to be a second host on
    /// loopback (all of 127/8 is local on Linux); libp2p's TCP dialer cannot pick a source IP.
    pub async fn connect_from(
        key: Keypair,
        local: &Multiaddr,
        addr: &Multiaddr,
        server: PeerId,
    ) -> Result<Self, SimError> {
        Self::connect_inner(key, Security::TlsThenNoise, Some(local), addr, server).await
    }

    async fn connect_inner(
        key: Keypair,
        security: Security,
        local: Option<&Multiaddr>,
        addr: &Multiaddr,
        server: PeerId,
    ) -> Result<Self, SimError> {
        let peer_id = key.public().to_peer_id();
        let mut swarm = build(key, security)?;
        if let Some(local) = local {
            let dial_err = |detail: String| SimError::Dial {
                addr: addr.clone(),
                detail,
            };
            swarm
                .listen_on(local.clone())
                .map_err(|e| dial_err(format!("listen on {local}: {e}")))?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                    .await
                    .map_err(|_| dial_err(format!("binding {local} timed out")))?;
                match ev {
                    SwarmEvent::NewListenAddr { .. } => break,
                    SwarmEvent::ListenerError { error, .. } => {
                        return Err(dial_err(format!("listen on {local}: {error}")))
                    }
                    _ => {}
                }
            }
        }
        let mut full = addr.clone();
        if !matches!(full.iter().last(), Some(Protocol::P2p(_))) {
            full.push(Protocol::P2p(server));
        }
        swarm.dial(full).map_err(|e| SimError::Dial {
            addr: addr.clone(),
            detail: e.to_string(),
        })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .map_err(|_| SimError::Dial {
                    addr: addr.clone(),
                    detail: "timed out".into(),
                })?;
            match ev {
                SwarmEvent::ConnectionEstablished { peer_id: p, .. } if p == server => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(SimError::Dial {
                        addr: addr.clone(),
                        detail: error.to_string(),
                    });
                }
                _ => {}
            }
        }
        let control = swarm.behaviour().new_control();
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    _ = s2.cancelled() => break,
                }
            }
        });
        Ok(Self {
            peer_id,
            server,
            control,
            stop,
            task,
        })
    }

    /// Opens a `/collect` stream.
    pub async fn open(&self) -> Result<libp2p::Stream, SimError> {
        let mut c = self.control.clone();
        c.open_stream(self.server, COLLECT)
            .await
            .map_err(|e| SimError::Open(e.to_string()))
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Writes `msg` as one write, as the Go collectors do, and flushes.
pub async fn write_message(stream: &mut libp2p::Stream, msg: &[u8]) -> Result<(), SimError> {
    stream.write_all(msg).await?;
    stream.flush().await?;
    Ok(())
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Resident set size of a process in KiB (Linux `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system) this process has used so far (Linux `/proc/self/stat`, 100 Hz ticks).
pub fn process_cpu_seconds() -> Option<f64> {
    bench::cpu_seconds_of(std::process::id())
}
