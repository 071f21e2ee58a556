//! The actors the scheduler interleaves: the chain's miner, the epoch manager, the tick schedule,
//! the event source mappings (verify pollers, two finalizers, one anchor writer), the ingress,
//! honest and hostile snapshotters, the TTL sweeper, and injected operator mistakes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sequencer_core::cids::raw_cid;
use sequencer_core::collect::CollectMessage;
use sequencer_core::eip712::sign_request;
use sequencer_core::gossip::content_id;
use sequencer_core::submission::{Request, SnapshotSubmission};
use sequencer_core::B256;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::tick;
use sequencer_ports::{OutMessage, Queue};
use sha2::{Digest, Sha256};

use crate::exec::Sim;
use crate::ledger::{Actor, Attack, Logged, Sent};
use crate::model::state::{now, ReadOnly};
use crate::world::{Func, Slots, World, BASE_MS};

/// The id of project `i`.
pub fn project_id(i: u64) -> String {
    format!("aggregate_pairContract_24h_trade_volume:0x{i:040x}:UNISWAPV2")
}

/// The one large project: 256 bytes, every one of them escaped in JSON (twice inside a batch
/// document, where the submission text is itself a JSON string).
pub fn big_project_id() -> String {
    "\"\\".repeat(128)
}

/// The snapshot CID honest snapshotter `variant` (0: the consensus) computes.
pub fn snapshot_cid(epoch: u64, project: &str, variant: u64) -> String {
    raw_cid(format!("snapshot/{epoch}/{project}/{variant}").as_bytes()).to_string()
}

/// A v4 UUID from the seed.
pub fn uuid(sim: &Sim) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(sim.bytes::<16>()).into_uuid()
}

fn digest(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// A signed `/collect` message: `slot`'s request signed with `signer_slot`'s simulated key (the
/// handlers' test kit builds it).
#[allow(clippy::too_many_arguments)]
pub fn signed(
    w: &World,
    id: &uuid::Uuid,
    slot: u64,
    signer_slot: u64,
    epoch: u64,
    project: &str,
    cid: &str,
    header: B256,
) -> Option<String> {
    sequencer_core::devkeys::sim_snapshotter_key(signer_slot)?;
    let (body, _) = sequencer_testsupport::signed_message(
        &w.domain,
        w.market,
        id,
        slot,
        signer_slot,
        epoch,
        project,
        cid,
        header,
    );
    Some(body)
}

/// A [`Sent`] record for a body.
#[allow(clippy::too_many_arguments)]
fn sent(
    w: &World,
    id: String,
    actor: Actor,
    epoch: u64,
    project: &str,
    slot: u64,
    cid: &str,
    body: String,
    header_block: Option<u64>,
    header: Option<B256>,
) -> Sent {
    Sent {
        id,
        actor,
        epoch,
        project: project.to_string(),
        slot,
        cid: cid.to_string(),
        digest: digest(&body),
        body,
        header_block,
        header,
        sent_at: w.sim.now(),
        arrived_at: None,
        head_at_arrival: None,
        replay_of: None,
        path: PATH_COLLECT,
    }
}

/// The ingress path of a `/collect` stream.
pub const PATH_COLLECT: &str = "collect";
/// The ingress path of a gossipsub message.
pub const PATH_GOSSIP: &str = "gossipsub";

/// The ingress: the message reaches it after a network delay (stamped in the ledger with the
/// head at arrival), lingers 20 ms in its buffer, and is sent to the submissions queue with the
/// attributes the real ingress stamps (`ingress/src/envelope.rs` `EnvelopeMeta::attributes`)
/// until SQS takes it.
pub fn deliver(w: &Arc<World>, s: Sent) {
    deliver_copies(w, s, 1);
}

/// [`deliver`] through `copies` ingress replicas (a gossip message reaches every replica in the
/// mesh, and each sends it to the queue): one message in the ledger, the earliest arrival its.
pub fn deliver_copies(w: &Arc<World>, s: Sent, copies: u64) {
    let idx = w.ledger().send(s.clone());
    // What the ingress derives from a message that parses: the content id, the same on every
    // path (`sequencer_core::gossip::content_id`).
    let content_id = CollectMessage::parse(s.body.as_bytes())
        .ok()
        .map(|m| content_id(&m.submission).to_string());
    for copy in 0..copies.max(1) {
        w.ingress_pending.fetch_add(1, Ordering::SeqCst);
        let (w2, s, content_id) = (w.clone(), s.clone(), content_id.clone());
        w.sim.spawn(format!("ingress#{idx}.{copy}"), async move {
            let sim = w2.sim.clone();
            sim.sleep(sim.rand_range(5..300)).await;
            let head = w2.chain().head();
            // Taken in: counted in the ingress's tally (a message that parses, of an epoch).
            if content_id.is_some() && s.epoch > 0 {
                *w2.ingress_tally
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(s.epoch)
                    .or_default() += 1;
            }
            {
                let mut l = w2.ledger();
                let sent = &mut l.sent[idx];
                if sent.arrived_at.is_none() {
                    sent.arrived_at = Some(sim.now());
                    sent.head_at_arrival = Some(head);
                }
            }
            sim.sleep(20).await;
            let mut msg = OutMessage::new(s.body.clone())
                .attr("market", format!("{:#x}", w2.market))
                .attr("peer", format!("12D3KooWsim{}", s.slot % 1000))
                .attr("path", s.path);
            if s.epoch > 0 {
                msg = msg.attr("epoch", s.epoch.to_string());
            }
            if s.slot > 0 {
                msg = msg.attr("slot", s.slot.to_string());
            }
            if !s.project.is_empty() {
                msg = msg.attr("project", s.project.clone());
            }
            if s.id.len() == 36 {
                msg = msg.attr("submission_id", s.id.clone());
            }
            if let Some(c) = content_id {
                msg = msg.attr("content_id", c);
            }
            w2.ingress_send(msg).await;
            w2.ingress_pending.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Blocks every `block_ms` (±5 %), an occasional shallow reorg, and the moment each window
/// closes on chain (for the ledger).
async fn miner(w: Arc<World>) {
    let sim = w.sim.clone();
    let ms = w.sc.block_ms;
    loop {
        sim.sleep(ms * 95 / 100 + sim.rand_range(0..ms / 10 + 1))
            .await;
        let reorg = w.sc.faults.reorg_depth > 0 && sim.chance(w.sc.faults.reorg_p);
        let depth = if reorg {
            sim.rand_range(1..w.sc.faults.reorg_depth + 1)
        } else {
            0
        };
        let (head, closed) = {
            let mut c = w.chain();
            let head = c.mine();
            if depth > 0 {
                c.reorg(depth, sim.now());
            }
            let closed: Vec<u64> = c
                .releases()
                .into_iter()
                .filter(|(_, r, win)| head > r + win.snapshot_blocks)
                .map(|(e, _, _)| e)
                .collect();
            (head, closed)
        };
        sim.trace(|| format!("block {head} reorg {depth}"));
        let mut l = w.ledger();
        if depth > 0 {
            l.injected.push((
                sim.now(),
                format!("reorg of {depth} block(s) at head {head}"),
            ));
        }
        for e in closed {
            l.window_closed.entry(e).or_insert(sim.now());
        }
    }
}

/// Releases epochs of `epoch_size` blocks of the source chain (the protocol chain here), inside
/// invocations of ~58 s every minute like the scheduled Lambda, until the scenario's epochs are
/// out. The rule is the epoch manager's (`sequencer_chain::epoch_manager::plan`, in order, no
/// finality offset): `[b, b + size − 1]` is due once the head reaches its last block, one
/// release a poll.
async fn epoch_manager(w: Arc<World>) {
    let sim = w.sim.clone();
    let every = w.deploy.schedule_s * 1000;
    let busy = w.deploy.epoch_manager.timeout_s.saturating_sub(22) * 1000;
    let mut minute = 0u64;
    loop {
        let start = minute * every + sim.rand_range(0..500);
        sim.sleep_until(start).await;
        let until = start + busy.min(every);
        while sim.now() + 1_000 < until {
            let released = w.ledger().released.len() as u64;
            if released >= w.sc.epochs {
                return;
            }
            let due = {
                let c = w.chain();
                let begin = c.next_begin();
                let end = begin + w.sc.epoch_size.max(1) - 1;
                (c.head() >= end).then_some((begin, end))
            };
            if let Some((begin, end)) = due {
                let (e, block) = w.chain().release(begin, end);
                sim.trace(|| format!("release epoch {e} in block {block}"));
                w.ledger().released.insert(e, (sim.now(), block));
            }
            sim.sleep(1_000).await;
        }
        minute += 1;
    }
}

/// EventBridge every minute; reserved concurrency 1 throttles a run while the previous one is
/// still going (Lambda retries it until the event is 60 s old); each run is `tick::run` on the
/// pipeline's (virtual) clock, as the tick Lambda calls it: a step, then another every
/// `TICK_POLL_MS`, for the time left less its 5 s margin; killed at the timeout.
async fn tick_schedule(w: Arc<World>) {
    let sim = w.sim.clone();
    let every = w.deploy.schedule_s * 1000;
    let timeout = w.deploy.tick.timeout_s * 1000;
    let margin = w.deploy.tick_margin_s * 1000;
    let poll = w.deploy.tick_poll_ms;
    // The deployment is already running when the simulation starts: the first run is at 0.
    let mut k = 0u64;
    let mut n = 0u64;
    let mut running: Option<crate::exec::JoinHandle<Result<(), String>>> = None;
    loop {
        let at = k * every + sim.rand_range(0..800);
        k += 1;
        sim.sleep_until(at).await;
        if let Some(h) = running.take() {
            let _ = h.await;
            if sim.now() >= at + every {
                continue;
            }
            sim.sleep(sim.rand_range(100..1_000)).await;
        }
        n += 1;
        let task = format!("tick#{n}");
        let start = sim.now();
        let budget = Duration::from_millis(timeout.saturating_sub(margin));
        let poll = Duration::from_millis(poll);
        let p = w.tick.clone();
        let crash = w.crash_point(400);
        w.ledger().invocations.push(crate::ledger::Invocation {
            task: task.clone(),
            started: start,
            ended: None,
            messages: Vec::new(),
            subjects: Vec::new(),
            failed: Vec::new(),
            killed: None,
        });
        let h = sim.spawn_invocation(
            task.clone(),
            async move {
                tick::run(&p, budget, poll)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            start + timeout,
            crash,
        );
        let w2 = w.clone();
        running = Some(sim.spawn(format!("tick-watch#{n}"), async move {
            let r = h.await;
            let mut l = w2.ledger();
            let now = w2.sim.now();
            if let Some(i) = l.invocations.iter_mut().rev().find(|i| i.task == task) {
                i.ended = Some(now);
                if let Err(k) = &r {
                    i.killed = Some(match k {
                        crate::exec::Killed::Crashed => "crashed",
                        crate::exec::Killed::TimedOut => "timed out",
                    });
                }
            }
            if let Ok(Err(e)) = &r {
                l.logged.push(Logged {
                    at: now,
                    task: task.clone(),
                    level: "ERROR".into(),
                    fields: format!("tick invocation failed (no retry; next minute): {e}"),
                });
            }
            Ok(())
        }));
    }
}

/// One poller of Lambda's SQS event source mapping: long-poll, gather up to the batch size
/// within the batching window, invoke, delete what succeeded; a failed message comes back after
/// its visibility timeout, a killed invocation's whole batch too.
async fn poller(w: Arc<World>, f: Func) {
    let sim = w.sim.clone();
    let spec = w.spec(f);
    let q = w.source(f).clone();
    let batch_size = spec.batch_size.unwrap_or(10) as usize;
    let window = spec.batching_window_s.unwrap_or(0) * 1000;
    let wait = Duration::from_secs(w.deploy.long_poll_s);
    loop {
        let mut batch = match q.receive(batch_size.min(10), wait).await {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => continue,
            Err(_) => {
                sim.sleep(1_000).await;
                continue;
            }
        };
        let until = sim.now() + window;
        while batch.len() < batch_size && sim.now() < until {
            let want = (batch_size - batch.len()).min(10);
            match q.receive(want, Duration::ZERO).await {
                Ok(more) if !more.is_empty() => batch.extend(more),
                _ => {
                    sim.sleep(200.min(until.saturating_sub(sim.now())).max(1))
                        .await
                }
            }
        }
        let Some(resp) = w.invoke(f, &batch).await else {
            continue;
        };
        let failed: std::collections::BTreeSet<&str> = resp
            .batch_item_failures
            .iter()
            .map(|x| x.item_identifier.as_str())
            .collect();
        let done: Vec<String> = batch
            .iter()
            .filter(|m| !failed.contains(m.message_id.as_str()))
            .map(|m| m.receipt.clone())
            .collect();
        if !done.is_empty() {
            let _ = q.ack(&done).await;
        }
    }
}

/// Watches the chain for releases and starts each epoch's senders.
async fn watcher(w: Arc<World>) {
    let sim = w.sim.clone();
    let slots = Slots::of(&w.sc);
    let mut seen = 0u64;
    loop {
        sim.sleep(250).await;
        let visible: Vec<(u64, u64)> = {
            let c = w.chain();
            let head = c.head();
            c.releases()
                .into_iter()
                .filter(|(e, r, _)| *e > seen && *r <= head)
                .map(|(e, r, _)| (e, r))
                .collect()
        };
        for (e, r) in visible {
            seen = seen.max(e);
            for slot in slots.honest.0..=slots.honest.1 {
                spawn_sender(
                    &w,
                    format!("snapshotter#{slot}/{e}"),
                    honest(w.clone(), slot, e, r),
                );
            }
            if e == 2 && w.sc.big_project_slots > 0 {
                for slot in slots.big.0..=slots.big.1 {
                    spawn_sender(
                        &w,
                        format!("big#{slot}/{e}"),
                        big_project(w.clone(), slot, e, r),
                    );
                }
            }
            spawn_sender(&w, format!("hostile/{e}"), hostile(w.clone(), slots, e, r));
        }
    }
}

fn spawn_sender<F>(w: &Arc<World>, name: String, f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    w.senders_pending.fetch_add(1, Ordering::SeqCst);
    let w2 = w.clone();
    w.sim.spawn(name, async move {
        f.await;
        w2.senders_pending.fetch_sub(1, Ordering::SeqCst);
    });
}

fn header_now(w: &World, release_block: u64) -> (u64, B256) {
    // The latest block the snapshotter's node has seen (it may be a block behind).
    let head = w.chain().head();
    let n = head
        .saturating_sub(w.sim.rand_range(0..2))
        .max(release_block);
    (n, w.block_hash(n))
}

async fn honest(w: Arc<World>, slot: u64, e: u64, r: u64) {
    let sim = w.sim.clone();
    let ms = w.sc.block_ms;
    if sim.chance(w.sc.straggler_p) {
        // Slow but on time: sends during the window's last block.
        let last = r + w.sc.snapshot_window;
        while w.chain().head() < last {
            sim.sleep(250).await;
        }
        sim.sleep(sim.rand_range(0..ms * 3 / 4)).await;
    } else {
        let (lo, hi) = w.sc.compute_ms;
        let mut delay = sim.rand_range(0..2 * ms) + sim.rand_range(lo..hi.max(lo + 1));
        if sim.chance(w.sc.late_p) {
            delay += w.sc.snapshot_window * ms + sim.rand_range(0..20_000);
        }
        sim.sleep(delay).await;
    }
    let (hb, header) = header_now(&w, r);
    let k = w.sc.projects_per_slot.min(w.sc.projects);
    for j in 0..k {
        let project = project_id((slot + e + j) % w.sc.projects);
        let variant = if sim.chance(w.sc.disagree_p) { slot } else { 0 };
        let cid = snapshot_cid(e, &project, variant);
        send_own(&w, Actor::Honest, slot, e, &project, &cid, (hb, header));
        sim.sleep(sim.rand_range(0..100)).await;
    }
}

async fn big_project(w: Arc<World>, slot: u64, e: u64, r: u64) {
    let sim = w.sim.clone();
    sim.sleep(sim.rand_range(500..10_000)).await;
    let (hb, header) = header_now(&w, r);
    let project = big_project_id();
    let cid = snapshot_cid(e, "big", 0);
    send_own(&w, Actor::BigProject, slot, e, &project, &cid, (hb, header));
}

/// Signs a submission with `slot`'s own key under a fresh id, records it and hands it to the
/// ingress.
fn send_own(
    w: &Arc<World>,
    actor: Actor,
    slot: u64,
    e: u64,
    project: &str,
    cid: &str,
    (hb, header): (u64, B256),
) {
    let id = uuid(&w.sim);
    if let Some(body) = signed(w, &id, slot, slot, e, project, cid, header) {
        let s = sent(
            w,
            id.to_string(),
            actor,
            e,
            project,
            slot,
            cid,
            body,
            Some(hb),
            Some(header),
        );
        let text = s.body[36..].to_string();
        deliver(w, s.clone());
        if w.sim.chance(w.sc.gossip_p) {
            // Published on gossipsub too (docs/protocol.md §10): the same text under its content id,
            // received by every ingress replica.
            if let Ok(g) = sequencer_core::gossip::queue_body(&text) {
                let mut copy = s;
                copy.id = g.submission_id.to_string();
                copy.body = String::from_utf8_lossy(&g.raw).into_owned();
                copy.digest = digest(&copy.body);
                copy.path = PATH_GOSSIP;
                deliver_copies(w, copy, w.sc.ingress_replicas);
            }
        }
    }
}

/// One epoch's hostile traffic, spread over its window.
async fn hostile(w: Arc<World>, slots: Slots, e: u64, r: u64) {
    let sim = w.sim.clone();
    let h = &w.sc.hostile;
    let window = w.sc.snapshot_window * w.sc.block_ms;
    let mut plan: Vec<(u64, Attack)> = Vec::new();
    let mut add = |n: u64, a: Attack| {
        for _ in 0..n {
            plan.push((sim.rand_range(0..window), a));
        }
    };
    add(h.garbage, Attack::Garbage);
    add(h.malformed, Attack::Malformed);
    if slots.hostile.1 >= slots.hostile.0 {
        add(h.random_headers, Attack::RandomHeader);
        add(h.future_epochs, Attack::FutureEpoch);
        add(h.duplicate_ids, Attack::DuplicateId);
        add(h.over_cap, Attack::OverCap);
    }
    if slots.flagged.is_some() {
        add(h.flagged, Attack::Flagged);
    }
    add(h.replays, Attack::Replay);
    plan.sort();
    let start = sim.now();
    for (at, attack) in plan {
        sim.sleep_until(start + at).await;
        attack_once(&w, slots, e, r, attack);
    }
}

fn owned_slot(w: &World, slots: Slots) -> u64 {
    w.sim.rand_range(slots.hostile.0..slots.hostile.1 + 1)
}

/// Sends one hostile message of kind `attack` for epoch `e` (released in block `r`).
pub fn attack_once(w: &Arc<World>, slots: Slots, e: u64, r: u64, attack: Attack) {
    for s in hostile_message(w, slots, e, r, attack) {
        deliver(w, s);
    }
}

/// The message(s) of one attack (two for a duplicate id).
pub fn hostile_message(w: &World, slots: Slots, e: u64, r: u64, attack: Attack) -> Vec<Sent> {
    let sim = &w.sim;
    let actor = Actor::Hostile(attack);
    let (hb, header) = header_now(w, r);
    let project = project_id(sim.rand_range(0..w.sc.projects.max(1)));
    let cid = snapshot_cid(e, &project, 7_777);
    let id = uuid(sim);
    let one = |slot: u64, epoch: u64, project: &str, header: B256, hb: Option<u64>| {
        signed(w, &id, slot, slot, epoch, project, &cid, header).map(|body| {
            sent(
                w,
                id.to_string(),
                actor,
                epoch,
                project,
                slot,
                &cid,
                body,
                hb,
                Some(header),
            )
        })
    };
    match attack {
        Attack::Garbage => {
            // A valid signature by a random key (a signer that owns nothing) over a random slot:
            // it passes every stateless check.
            let slot = sim.rand_range(1..u64::from(u32::MAX));
            let mut secret = sim.bytes::<32>();
            secret[0] = secret[0].clamp(1, 0x7f);
            let Ok(key) = k256::ecdsa::SigningKey::from_slice(&secret) else {
                return Vec::new();
            };
            let request = Request {
                slot_id: slot,
                deadline: e + 100,
                snapshot_cid: cid.clone(),
                epoch_id: e,
                project_id: project.clone(),
            };
            let Ok(signature) = sign_request(&w.domain, &request, &key) else {
                return Vec::new();
            };
            let sub = SnapshotSubmission {
                request,
                signature,
                header: format!("{header:#x}"),
                data_market: format!("{:#x}", w.market),
                node_version: None,
                protocol_state: None,
            };
            let body = String::from_utf8(CollectMessage::encode(&id, &sub)).unwrap_or_default();
            vec![sent(
                w,
                id.to_string(),
                actor,
                e,
                &project,
                slot,
                &cid,
                body,
                Some(hb),
                Some(header),
            )]
        }
        Attack::RandomHeader => {
            let junk = B256::from(sim.bytes::<32>());
            one(owned_slot(w, slots), e, &project, junk, None)
                .into_iter()
                .collect()
        }
        Attack::FutureEpoch => {
            let far = e + 1_000 + sim.rand_range(0..1_000_000);
            one(owned_slot(w, slots), far, &project, header, Some(hb))
                .into_iter()
                .collect()
        }
        Attack::Flagged => match slots.flagged {
            Some(f) => one(f, e, &project, header, Some(hb)).into_iter().collect(),
            None => Vec::new(),
        },
        Attack::OverCap | Attack::DuplicateId => {
            // Over the cap: a burst of four projects from one owned slot. A duplicate id: two
            // valid bodies (two projects) under one id, at the same instant.
            let slot = owned_slot(w, slots);
            let n = if attack == Attack::OverCap { 4 } else { 2 };
            (0..n)
                .filter_map(|j| {
                    let (id, project) = if attack == Attack::OverCap {
                        (uuid(sim), project_id(j % w.sc.projects.max(1)))
                    } else {
                        (id, project_id((j + e) % w.sc.projects.max(1)))
                    };
                    let body = signed(w, &id, slot, slot, e, &project, &cid, header)?;
                    let (hb, h) = (Some(hb), Some(header));
                    Some(sent(
                        w,
                        id.to_string(),
                        actor,
                        e,
                        &project,
                        slot,
                        &cid,
                        body,
                        hb,
                        h,
                    ))
                })
                .collect()
        }
        Attack::Malformed => {
            let body = format!(
                "{id}{{\"request\":{{\"slotId\":{}",
                sim.rand_range(0..1_000)
            );
            vec![sent(
                w,
                id.to_string(),
                actor,
                0,
                "",
                0,
                "",
                body,
                None,
                None,
            )]
        }
        Attack::Replay | Attack::OldReplay => {
            let ttl_ms = w.sc.record_ttl_s.map_or(u64::MAX, |t| t * 1000);
            let now = sim.now();
            let l = w.ledger();
            let pool: Vec<&Sent> = l
                .sent
                .iter()
                .filter(|s| s.actor == Actor::Honest && s.arrived_at.is_some())
                .filter(|s| match attack {
                    Attack::Replay => s.epoch == e,
                    _ => now.saturating_sub(s.sent_at) > ttl_ms.saturating_add(5 * 60 * 1000),
                })
                .collect();
            if pool.is_empty() {
                return Vec::new();
            }
            let orig = pool[sim.rand_range(0..pool.len() as u64) as usize];
            let body = format!("{id}{}", &orig.body[36..]);
            let mut s = sent(
                w,
                id.to_string(),
                actor,
                orig.epoch,
                &orig.project,
                orig.slot,
                &orig.cid,
                body,
                orig.header_block,
                orig.header,
            );
            s.replay_of = Some(orig.id.clone());
            vec![s]
        }
    }
}

/// Replays submissions older than the retention under fresh ids, every 5 minutes once there
/// are such, until 55 minutes past the retention.
async fn old_replayer(w: Arc<World>, ttl_ms: u64) {
    let sim = w.sim.clone();
    let slots = Slots::of(&w.sc);
    while sim.now() < ttl_ms + 55 * 60 * 1000 {
        sim.sleep(5 * 60 * 1000).await;
        for _ in 0..w.sc.hostile.old_replays {
            attack_once(&w, slots, 0, 0, Attack::OldReplay);
        }
    }
}

/// DynamoDB's TTL sweeper: every minute, each expired item goes with some chance.
async fn sweeper(w: Arc<World>) {
    let sim = w.sim.clone();
    loop {
        sim.sleep(60_000).await;
        let now_s = ((BASE_MS as u64) + sim.now()) / 1000;
        let n = {
            let mut st = w.state();
            st.sweep(now_s, || sim.chance(0.3))
        };
        if n > 0 {
            sim.trace(|| format!("ttl sweeper deleted {n} items"));
        }
    }
}

/// An operator redrives a corrupted anchor job into the FIFO group.
async fn poison(w: Arc<World>, at: u64) {
    w.sim.sleep_until(at).await;
    let msg = OutMessage::new(format!(
        "{{\"market\":\"{:#x}\",\"epoch\":\"corrupted\"}}",
        w.market
    ))
    .attr("epoch", "corrupted")
    .fifo(w.anchor.config.anchor_group.clone(), "poison");
    let _ = w
        .queues()
        .send(crate::world::queues::ANCHOR, w.sim.now(), &[msg]);
    w.ledger().injected.push((
        w.sim.now(),
        "a corrupted anchor job is redriven into the FIFO group".into(),
    ));
}

/// Runs the cost probes of the attacks on a live epoch as soon as one is open and recorded by
/// the tick (the first from epoch 2 on), so they meet the checks an open epoch gets.
async fn probe_live(w: Arc<World>) {
    let sim = w.sim.clone();
    for e in 2..=w.sc.epochs {
        loop {
            sim.sleep(500).await;
            let released = w.ledger().released.get(&e).map(|x| x.1);
            let Some(r) = released else { continue };
            let closed = w.ledger().window_closed.contains_key(&e);
            // The replay probe needs an honest submission of the epoch already answered.
            let ids: Vec<String> = w
                .ledger()
                .sent
                .iter()
                .filter(|s| s.actor == Actor::Honest && s.epoch == e)
                .map(|s| s.id.clone())
                .collect();
            let (open, answered) = {
                let st = w.state();
                let view = ReadOnly(&st);
                let records = w.records(&view);
                let open = now(records.epoch(e))
                    .ok()
                    .flatten()
                    .is_some_and(|x| x.state == EpochState::Open);
                let answered = ids
                    .iter()
                    .any(|id| now(records.receipt(e, id)).ok().flatten().is_some());
                (open, answered)
            };
            if open && !closed && answered {
                let slots = Slots::of(&w.sc);
                let mut kinds = vec![
                    Attack::Garbage,
                    Attack::FutureEpoch,
                    Attack::Replay,
                    Attack::RandomHeader,
                ];
                if slots.flagged.is_some() {
                    kinds.push(Attack::Flagged);
                }
                for a in kinds {
                    crate::probe(&w, a, e, r).await;
                }
                return;
            }
            if closed {
                break;
            }
        }
    }
}

/// The ingress's tally sender (`ingress/src/tally.rs`): its cumulative counts through the
/// submissions queue every second while they change, and every 5 s regardless.
async fn tallies(w: Arc<World>) {
    let sim = w.sim.clone();
    let mut seq = 0u64;
    let mut last: Option<std::collections::BTreeMap<u64, u64>> = None;
    let mut since_sent = 0u64;
    loop {
        sim.sleep(1_000).await;
        since_sent += 1_000;
        let now = w
            .ingress_tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if last.as_ref() == Some(&now) && since_sent < 5_000 {
            continue;
        }
        seq += 1;
        let newest: Vec<(u64, u64)> = now
            .iter()
            .rev()
            .take(sequencer_core::tally::MAX_TALLY_EPOCHS)
            .map(|(e, n)| (*e, *n))
            .collect();
        let body = sequencer_core::tally::Tally {
            market: format!("{:#x}", w.market),
            boot: "sim-ingress".into(),
            seq,
            at_ms: crate::world::BASE_MS + sim.now() as i64,
            epochs: newest,
            last: false,
        }
        .to_body();
        w.ingress_send(OutMessage::new(body).attr("kind", "tally"))
            .await;
        last = Some(now);
        since_sent = 0;
    }
}

/// Starts every actor.
pub fn spawn_all(w: &Arc<World>) {
    let s = &w.sim;
    s.spawn("ingress-tally", tallies(w.clone()));
    s.spawn("miner", miner(w.clone()));
    s.spawn("epoch-manager", epoch_manager(w.clone()));
    s.spawn("tick-schedule", tick_schedule(w.clone()));
    let verify_pollers =
        w.sc.verify_workers
            .min(w.deploy.verify.concurrency())
            .max(1);
    for i in 0..verify_pollers {
        s.spawn(format!("esm-verify#{i}"), poller(w.clone(), Func::Verify));
    }
    for i in 0..w.deploy.finalize.concurrency() {
        s.spawn(
            format!("esm-finalize#{i}"),
            poller(w.clone(), Func::Finalize),
        );
    }
    for i in 0..w.deploy.anchor.concurrency() {
        s.spawn(format!("esm-anchor#{i}"), poller(w.clone(), Func::Anchor));
    }
    s.spawn("watcher", watcher(w.clone()));
    s.spawn("ttl-sweeper", sweeper(w.clone()));
    s.spawn("prober", probe_live(w.clone()));
    if let (Some(ttl), true) = (w.sc.record_ttl_s, w.sc.hostile.old_replays > 0) {
        s.spawn("old-replayer", old_replayer(w.clone(), ttl * 1000));
    }
    if let Some(at) = w.sc.poison_anchor_job_at {
        s.spawn("operator", poison(w.clone(), at));
    }
}
