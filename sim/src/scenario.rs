//! The snapshotter simulator's scenario: real keys (the simulated slots of
//! `sequencer_core::devkeys`), real EIP-712 signatures, real libp2p `/collect` streams, and every
//! kind of snapshotter the sequencer must handle each epoch:
//!
//! - honest: slot `i` submits projects `2i mod M` and `2i+1 mod M` (so each project gets
//!   `2N/M` snapshotters and every slot uses its cap of 2);
//! - disagreeing: every fifth slot names another CID for its first project (a minority vote);
//! - badly signed: a submission for slot 1 signed with slot 2's key (`not_slot_snapshotter`:
//!   counted, not stored);
//! - over the cap: slot 3 submits a third project (`slot_epoch_cap`);
//! - twice: slot 4 submits its first project again under a new id (`duplicate`), and one message
//!   is sent twice byte for byte (a redelivery: changes nothing);
//! - not its slot: a slot id past the contract's slots (`slot_out_of_range`: counted, not stored);
//! - late: slot 5 submits after the epoch was closed (`late`).
//!
//! Each submission goes by the chosen [`SimPath`]: `/collect` (the client's UUID is its id),
//! gossipsub (a collector's envelope on `<prefix>/all`; its id is the content id), or both, as a
//! dual-path collector sends it (then one of the two copies is accepted and the other rejected
//! `duplicate`, or both are rejected for the same reason).

use std::collections::BTreeMap;

use crate::gossip::{envelope, GossipPeer, PeerOptions};
use crate::Client;
use anyhow::{Context, Result};
use futures::AsyncWriteExt;
use libp2p::{Multiaddr, PeerId};
use sequencer_core::cids::raw_cid;
use sequencer_core::collect::CollectMessage;
use sequencer_core::devkeys;
use sequencer_core::eip712::{sign_request, Domain};
use sequencer_core::submission::{Request, SnapshotSubmission};
use sequencer_core::{Address, B256};
use uuid::Uuid;

/// What the simulator expects of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Accepted.
    Accepted,
    /// Rejected with this reason.
    Rejected(&'static str),
    /// Counted and not stored (no receipt), for this reason (docs/protocol.md §5).
    Dropped(&'static str),
}

/// Which path the simulated collectors send by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimPath {
    /// `/collect` streams (the reference collectors).
    Collect,
    /// Gossipsub envelopes only (the newest collectors' mesh-only mode).
    Gossipsub,
    /// Both, each submission once per path (the newest collectors' default).
    Both,
}

impl SimPath {
    fn collect(self) -> bool {
        self != SimPath::Gossipsub
    }
    fn gossip(self) -> bool {
        self != SimPath::Collect
    }
}

/// One message the simulator sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Submission id: the `/collect` UUID, or the content id when it went by gossipsub only.
    pub id: String,
    /// The content id of the gossip copy when the submission went by both paths: of `id` and
    /// this, an accepted submission has one accepted and the other a `duplicate`; a rejected one
    /// has both rejected for its reason.
    pub alt_id: Option<String>,
    /// Epoch.
    pub epoch: u64,
    /// What it should become.
    pub expect: Expect,
}

/// What an epoch's misbehaving submissions need from its honest ones: each slot's first
/// project, and one honest message to replay.
type Pending = (BTreeMap<u64, String>, Option<Vec<u8>>);

/// The simulated snapshotters.
pub struct Simulator {
    domain: Domain,
    market: Address,
    slots: u64,
    projects: u64,
    clients: Vec<(Client, libp2p::Stream)>,
    peers: Vec<GossipPeer>,
    path: SimPath,
    /// Per epoch: each slot's first project and one honest message to replay.
    pending: BTreeMap<u64, Pending>,
}

/// The project id of project `j`.
pub fn project_id(j: u64) -> String {
    format!(
        "aggregate_pairContract_trade_volume:0x{:040x}:UNISWAPV2",
        j + 1
    )
}

/// The honest CID of a project in an epoch.
pub fn honest_cid(project: &str, epoch: u64) -> String {
    raw_cid(format!("snapshot {project} epoch {epoch}").as_bytes()).to_string()
}

impl Simulator {
    /// Connects `connections` simulated collectors to the ingress, sending by `path` (gossip
    /// peers wait until the ingress is in their mesh of both topics).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        addr: &Multiaddr,
        server: PeerId,
        domain: Domain,
        market: Address,
        slots: u64,
        projects: u64,
        connections: usize,
        path: SimPath,
    ) -> Result<Self> {
        let mut clients = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..connections.max(1) {
            if path.collect() {
                let c = Client::connect(addr, server)
                    .await
                    .context("simulator connecting to the ingress")?;
                let s = c.open().await.context("opening a /collect stream")?;
                clients.push((c, s));
            }
            if path.gossip() {
                let p = GossipPeer::connect(
                    libp2p::identity::Keypair::generate_ed25519(),
                    addr,
                    server,
                    &PeerOptions::default(),
                )
                .await
                .context("simulator joining the ingress's gossipsub mesh")?;
                for t in [&p.all, &p.zero] {
                    if !p.wait_mesh(t, 1, std::time::Duration::from_secs(20)).await {
                        anyhow::bail!("the ingress did not join the simulator's mesh of {t}");
                    }
                }
                peers.push(p);
            }
        }
        Ok(Self {
            domain,
            market,
            slots,
            projects: projects.max(1),
            clients,
            peers,
            path,
            pending: BTreeMap::new(),
        })
    }

    fn message(
        &self,
        slot: u64,
        signer_slot: u64,
        epoch: u64,
        project: &str,
        cid: &str,
        header: B256,
    ) -> Result<(Sent, Vec<u8>)> {
        let key = devkeys::sim_snapshotter_key(signer_slot).context("simulated key")?;
        let request = Request {
            slot_id: slot,
            deadline: epoch + 1000,
            snapshot_cid: cid.to_string(),
            epoch_id: epoch,
            project_id: project.to_string(),
        };
        let signature = sign_request(&self.domain, &request, &key)
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        let sub = SnapshotSubmission {
            request,
            signature,
            header: format!("{header:#x}"),
            data_market: format!("{:#x}", self.market),
            node_version: Some("sequencer-local-sim".into()),
            protocol_state: None,
        };
        let id = Uuid::new_v4();
        let content = sequencer_core::gossip::content_id(&sub).to_string();
        let sent = match self.path {
            SimPath::Collect => Sent {
                id: id.to_string(),
                alt_id: None,
                epoch,
                expect: Expect::Accepted,
            },
            SimPath::Gossipsub => Sent {
                id: content,
                alt_id: None,
                epoch,
                expect: Expect::Accepted,
            },
            SimPath::Both => Sent {
                id: id.to_string(),
                alt_id: Some(content),
                epoch,
                expect: Expect::Accepted,
            },
        };
        Ok((sent, CollectMessage::encode(&id, &sub)))
    }

    /// Sends one `/collect` message by the chosen path(s): as is on a stream, and/or its
    /// submission in a collector's envelope on gossipsub (`<prefix>/0` for epoch 0).
    async fn write(&mut self, i: usize, bytes: &[u8], epoch: u64) -> Result<()> {
        if self.path.collect() {
            let n = self.clients.len();
            let (_, stream) = &mut self.clients[i % n];
            stream.write_all(bytes).await.context("writing /collect")?;
            stream.flush().await.context("flushing /collect")?;
        }
        if self.path.gossip() {
            let n = self.peers.len();
            let p = &self.peers[i % n];
            let json = bytes
                .get(sequencer_core::collect::UUID_LEN..)
                .unwrap_or_default();
            let topic = if epoch == 0 { &p.zero } else { &p.all };
            p.publish(topic, envelope(epoch, json, &p.peer_id))
                .await
                .context("publishing on gossipsub")?;
        }
        Ok(())
    }

    /// Sends one epoch's honest (and disagreeing) submissions, with `header` a block hash
    /// inside the window. Returns what each should become. The misbehaving ones follow with
    /// [`Self::submit_misbehaving`] once these are verified: which of two submissions of a slot
    /// (or of a project and slot) wins depends on arrival order, so the test of "over the cap"
    /// and "twice" needs the honest ones in first.
    pub async fn submit_epoch(&mut self, epoch: u64, header: B256) -> Result<Vec<Sent>> {
        let mut sent = Vec::new();
        let mut first_project: BTreeMap<u64, String> = BTreeMap::new();
        let mut k = 0usize;
        let mut duplicate: Option<Vec<u8>> = None;
        for i in 0..self.slots {
            let slot = i + 1;
            for (n, j) in [(2 * i) % self.projects, (2 * i + 1) % self.projects]
                .into_iter()
                .enumerate()
            {
                let project = project_id(j);
                let mut cid = honest_cid(&project, epoch);
                if n == 0 {
                    first_project.insert(slot, project.clone());
                    if i % 5 == 4 {
                        cid = honest_cid(&project, epoch + 1_000_000);
                    }
                }
                let (s, bytes) = self.message(slot, slot, epoch, &project, &cid, header)?;
                self.write(k, &bytes, epoch).await?;
                k += 1;
                if duplicate.is_none() {
                    duplicate = Some(bytes);
                }
                sent.push(s);
            }
        }
        self.pending.insert(epoch, (first_project, duplicate));
        Ok(sent)
    }

    /// Sends the epoch's misbehaving submissions (badly signed, over the cap, twice, unassigned
    /// slot) and replays one honest message byte for byte.
    pub async fn submit_misbehaving(&mut self, epoch: u64, header: B256) -> Result<Vec<Sent>> {
        let (first_project, duplicate) = self.pending.remove(&epoch).unwrap_or_default();
        let mut sent = Vec::new();
        let mut k = 0usize;
        let p0 = project_id(0);
        let cid = honest_cid(&p0, epoch);
        let mut bad = Vec::new();
        if self.slots >= 2 {
            bad.push((1, 2, p0.clone(), "not_slot_snapshotter"));
        }
        if self.slots >= 3 {
            bad.push((3, 3, project_id(self.projects + 7), "slot_epoch_cap"));
        }
        if let Some(p) = first_project.get(&4) {
            bad.push((4, 4, p.clone(), "duplicate"));
        }
        let unassigned = self.slots + 1_000;
        bad.push((unassigned, 1, p0.clone(), "slot_out_of_range"));
        for (slot, signer, project, reason) in bad {
            let (s, bytes) = self.message(slot, signer, epoch, &project, &cid, header)?;
            self.write(k, &bytes, epoch).await?;
            k += 1;
            sent.push(Sent {
                expect: match reason {
                    "not_slot_snapshotter" | "slot_out_of_range" => Expect::Dropped(reason),
                    _ => Expect::Rejected(reason),
                },
                ..s
            });
        }
        if let Some(bytes) = duplicate {
            // The same message again (on gossipsub: a new gossip message with the same body):
            // the sequencer must change nothing.
            self.write(k, &bytes, epoch).await?;
        }
        Ok(sent)
    }

    /// The late submission, after the epoch closed.
    pub async fn submit_late(&mut self, epoch: u64, header: B256) -> Result<Sent> {
        let slot = 5.min(self.slots).max(1);
        let project = project_id(self.projects + 3);
        let cid = honest_cid(&project, epoch);
        let (s, bytes) = self.message(slot, slot, epoch, &project, &cid, header)?;
        self.write(0, &bytes, epoch).await?;
        Ok(Sent {
            expect: Expect::Rejected("late"),
            ..s
        })
    }

    /// Closes the connections.
    pub async fn close(self) {
        for (c, mut s) in self.clients {
            let _ = s.close().await;
            c.close().await;
        }
        for p in self.peers {
            p.close().await;
        }
    }
}
