//! The upstream side: one libp2p connection to the configured sequencer (its peer id pinned:
//! a host answering with another id is refused by the handshake), redialled with exponential
//! backoff, and `streams` writer tasks that each keep one long-lived `/collect` stream and write
//! one message per write, as deployed collectors do (docs/protocol.md §2). A message whose write
//! fails or times out goes back to the head of the buffer; nothing is lost on a reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{identity::Keypair, swarm::SwarmEvent, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::buffer::Buffer;
use crate::metrics::Stats;

/// `/collect` (docs/protocol.md §2).
pub const COLLECT: StreamProtocol = StreamProtocol::new(sequencer_core::collect::PROTOCOL);

/// How the upstream behaves.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The sequencer's multiaddr, ending in `/p2p/<peer id>`.
    pub addr: Multiaddr,
    /// The pinned peer id (the address's `/p2p/` part).
    pub peer: PeerId,
    /// Writer tasks, each with one stream.
    pub streams: usize,
    /// One write (and flush) longer than this fails, and the stream is reopened.
    pub write_timeout: Duration,
    /// First redial delay; doubles per failure.
    pub backoff_initial: Duration,
    /// Redial delay cap.
    pub backoff_max: Duration,
}

/// Running upstream tasks.
pub struct Upstream {
    stop: CancellationToken,
    swarm_task: JoinHandle<()>,
    writers: Vec<JoinHandle<()>>,
}

fn build(key: Keypair) -> Result<Swarm<libp2p_stream::Behaviour>, String> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            (libp2p::tls::Config::new, libp2p::noise::Config::new),
            libp2p::yamux::Config::default,
        )
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(|e| e.to_string())?
        // The connection is long-lived: streams come and go, it stays.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

impl Upstream {
    /// Starts the connection keeper and the writers.
    pub fn start(
        cfg: UpstreamConfig,
        key: Keypair,
        buffer: Arc<Buffer>,
        stats: Arc<Stats>,
    ) -> Result<Self, String> {
        let mut swarm = build(key)?;
        let control = swarm.behaviour().new_control();
        let stop = CancellationToken::new();
        let (up_tx, up_rx) = watch::channel(false);
        stats.upstream(false);
        let swarm_task = {
            let (cfg, stats, stop) = (cfg.clone(), stats.clone(), stop.clone());
            tokio::spawn(async move {
                let mut backoff = cfg.backoff_initial;
                let mut next_dial = tokio::time::Instant::now();
                let mut dialing = false;
                let mut connected = false;
                loop {
                    if !connected && !dialing && tokio::time::Instant::now() >= next_dial {
                        match swarm.dial(cfg.addr.clone()) {
                            Ok(()) => dialing = true,
                            Err(e) => {
                                warn!(error = %e, "cannot dial the sequencer");
                                next_dial = tokio::time::Instant::now() + backoff;
                                backoff = (backoff * 2).min(cfg.backoff_max);
                            }
                        }
                    }
                    let wait = !connected && !dialing;
                    tokio::select! {
                        ev = swarm.select_next_some() => match ev {
                            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == cfg.peer => {
                                dialing = false;
                                if !connected {
                                    info!(sequencer = %cfg.addr, "connected to the sequencer");
                                }
                                connected = true;
                                backoff = cfg.backoff_initial;
                                stats.upstream(true);
                                let _ = up_tx.send(true);
                            }
                            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } if peer_id == cfg.peer => {
                                warn!(cause = ?cause, "connection to the sequencer closed; redialling");
                                connected = false;
                                stats.upstream(false);
                                let _ = up_tx.send(false);
                                next_dial = tokio::time::Instant::now() + backoff;
                                backoff = (backoff * 2).min(cfg.backoff_max);
                            }
                            SwarmEvent::OutgoingConnectionError { error, .. } if !connected => {
                                warn!(error = %error, retry_in = ?backoff, "dialling the sequencer failed");
                                dialing = false;
                                next_dial = tokio::time::Instant::now() + backoff;
                                backoff = (backoff * 2).min(cfg.backoff_max);
                            }
                            _ => {}
                        },
                        _ = tokio::time::sleep_until(next_dial), if wait => {}
                        _ = stop.cancelled() => break,
                    }
                }
                stats.upstream(false);
                let _ = up_tx.send(false);
            })
        };
        let writers = (0..cfg.streams.max(1))
            .map(|_| {
                let (control, buffer, stats, up, stop, cfg) = (
                    control.clone(),
                    buffer.clone(),
                    stats.clone(),
                    up_rx.clone(),
                    stop.clone(),
                    cfg.clone(),
                );
                tokio::spawn(writer(control, cfg, buffer, stats, up, stop))
            })
            .collect();
        Ok(Self {
            stop,
            swarm_task,
            writers,
        })
    }

    /// Waits (up to `deadline`) for the writers to drain a closed buffer, then stops everything.
    pub async fn finish(self, buffer: &Buffer, deadline: Duration) {
        let Self {
            stop,
            swarm_task,
            writers,
        } = self;
        // The writers end once the closed buffer is drained; with the sequencer unreachable
        // they cannot, so the deadline (or an empty buffer) ends the wait.
        let all = futures::future::join_all(writers);
        tokio::pin!(all);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            tokio::select! {
                _ = &mut all => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if buffer.depth() == 0 || tokio::time::Instant::now() >= until {
                        break;
                    }
                }
            }
        }
        stop.cancel();
        let _ = swarm_task.await;
    }
}

async fn writer(
    mut control: libp2p_stream::Control,
    cfg: UpstreamConfig,
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    mut up: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        // Wait for the connection.
        tokio::select! {
            r = up.wait_for(|v| *v) => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let stream = tokio::select! {
            s = tokio::time::timeout(cfg.write_timeout, control.open_stream(cfg.peer, COLLECT)) => s,
            _ = stop.cancelled() => return,
        };
        let mut stream = match stream {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot open a /collect stream");
                tokio::time::sleep(cfg.backoff_initial).await;
                continue;
            }
            Err(_) => {
                warn!("opening a /collect stream timed out");
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                item = buffer.pop() => item,
                // Disconnected while idle: reopen after the reconnect.
                _ = up.wait_for(|v| !*v) => break,
                _ = stop.cancelled() => return,
            };
            let Some(item) = item else {
                // Closed and drained.
                let _ = stream.close().await;
                return;
            };
            let write = async {
                stream.write_all(&item.bytes).await?;
                stream.flush().await
            };
            match tokio::time::timeout(cfg.write_timeout, write).await {
                Ok(Ok(())) => stats.forwarded(),
                Ok(Err(e)) => {
                    warn!(error = %e, "write on /collect failed; message re-queued");
                    stats.write_error();
                    buffer.requeue(item);
                    break;
                }
                Err(_) => {
                    warn!("write on /collect timed out; message re-queued");
                    stats.write_error();
                    buffer.requeue(item);
                    break;
                }
            }
        }
    }
}
