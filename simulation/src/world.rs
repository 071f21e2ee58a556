//! One simulated deployment: the in-memory ports behind their gates, one [`Pipeline`] per
//! function (as each Lambda function has its own process), the queues of the Terraform module,
//! and the plumbing that runs the real handlers as killable invocations.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use sequencer_core::devkeys;
use sequencer_core::eip712::{address_of, Domain};
use sequencer_core::{Address, B256};
use sequencer_handlers::chain_cache::CachedChain;
use sequencer_handlers::records::Records;
use sequencer_handlers::{anchor, finalize, verify};
use sequencer_handlers::{Clock, Pipeline, PipelineConfig, Ports};
use sequencer_ports::{OutMessage, Port, Queue, Received, Windows};

use crate::deploy::{Deployment, Function, MODULE};
use crate::exec::{JoinHandle, Killed, Sim};
use crate::gate::{CallCounts, Gate};
use crate::ledger::{Invocation, Ledger};
use crate::model::chain::{ChainModel, SimChain};
use crate::model::content::{ContentModel, SimContent};
use crate::model::queue::{QueueModel, QueueSpec, SimQueue};
use crate::model::state::{ReadOnly, SimState, StateModel};
use crate::scenario::Scenario;

/// Unix ms at virtual time 0 (2026-01-01T00:00:00Z).
pub const BASE_MS: i64 = 1_767_225_600_000;

/// The SQS queues of the module (`<prefix>-<name>[-dlq][.fifo]`, prefix left out).
pub mod queues {
    /// Submissions (verify).
    pub const SUBMISSIONS: &str = "submissions";
    /// Its DLQ.
    pub const SUBMISSIONS_DLQ: &str = "submissions-dlq";
    /// Finalize jobs.
    pub const FINALIZE: &str = "finalize";
    /// Its DLQ.
    pub const FINALIZE_DLQ: &str = "finalize-dlq";
    /// Anchor jobs (FIFO).
    pub const ANCHOR: &str = "anchor.fifo";
    /// Its DLQ.
    pub const ANCHOR_DLQ: &str = "anchor-dlq.fifo";
}

/// The handlers' clock: virtual time.
struct SimClock(Sim);

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        BASE_MS + self.0.now() as i64
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.0.sleep(d.as_millis() as u64))
    }
}

/// A function the event source mappings invoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// verify.
    Verify,
    /// finalize.
    Finalize,
    /// anchor.
    Anchor,
}

impl Func {
    /// Name.
    pub fn name(self) -> &'static str {
        match self {
            Func::Verify => "verify",
            Func::Finalize => "finalize",
            Func::Anchor => "anchor",
        }
    }
}

/// The gates of the four ports.
#[derive(Clone)]
pub struct Gates {
    /// State store.
    pub state: Gate,
    /// Queues.
    pub queue: Gate,
    /// Content store.
    pub content: Gate,
    /// Chain.
    pub chain: Gate,
}

/// The simulated deployment.
pub struct World {
    /// Scheduler.
    pub sim: Sim,
    /// What is simulated.
    pub sc: Scenario,
    /// Timing and concurrency.
    pub deploy: Deployment,
    /// The market.
    pub market: Address,
    /// EIP-712 domain.
    pub domain: Domain,
    /// State store contents.
    pub state: Arc<Mutex<StateModel>>,
    /// Queues.
    pub queues: Arc<Mutex<QueueModel>>,
    /// Chain.
    pub chain: Arc<Mutex<ChainModel>>,
    /// Content store.
    pub content: Arc<Mutex<ContentModel>>,
    /// Ground truth.
    pub ledger: Arc<Mutex<Ledger>>,
    /// Port calls by function and operation.
    pub counts: Arc<Mutex<CallCounts>>,
    /// Gates.
    pub gates: Gates,
    /// verify's pipeline.
    pub verify: Arc<Pipeline>,
    /// tick's.
    pub tick: Arc<Pipeline>,
    /// finalize's.
    pub finalize: Arc<Pipeline>,
    /// anchor's.
    pub anchor: Arc<Pipeline>,
    /// The proof API's and the probes'.
    pub reader: Arc<Pipeline>,
    /// The submissions queue (the ingress sends here).
    pub submissions: SimQueue,
    /// Finalize jobs.
    pub finalize_q: SimQueue,
    /// Anchor jobs.
    pub anchor_q: SimQueue,
    /// Ingress messages not yet in the queue.
    pub ingress_pending: AtomicU64,
    /// What the ingress took in per epoch (its tally for the close watermark).
    pub ingress_tally: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
    /// Snapshotter tasks still to send.
    pub senders_pending: AtomicU64,
    invocations: AtomicU64,
}

/// Slots: honest `1..=h`, hostile owners after them, the flagged one next, the large project's
/// after that.
#[derive(Debug, Clone, Copy)]
pub struct Slots {
    /// Honest.
    pub honest: (u64, u64),
    /// Hostile owners.
    pub hostile: (u64, u64),
    /// The flagged owner (`None`: none).
    pub flagged: Option<u64>,
    /// The large project's slots.
    pub big: (u64, u64),
}

impl Slots {
    /// The layout of `sc`.
    pub fn of(sc: &Scenario) -> Self {
        let h = sc.honest_slots;
        // At least one: the cost probes sign with it.
        let o = sc.hostile.owned_slots.max(1);
        let flagged = (sc.hostile.flagged > 0).then_some(h + o + 1);
        let after = h + o + u64::from(flagged.is_some());
        Slots {
            honest: (1, h),
            hostile: (h + 1, h + o),
            flagged,
            big: (after + 1, after + sc.big_project_slots),
        }
    }

    /// Every assigned slot.
    pub fn last(&self) -> u64 {
        self.big
            .1
            .max(self.flagged.unwrap_or(0))
            .max(self.hostile.1)
            .max(self.honest.1)
    }
}

/// The pipeline's settings for a preset, as the Terraform module would pass them: the anchor
/// queue's maxReceiveCount, the queues' retry horizon, and the preset's retention. Refused, as
/// `PipelineConfig::from_env` refuses it, when the retention does not exceed the retry horizon.
pub fn pipeline_config(
    sc: &Scenario,
    market: Address,
    protocol_state: Address,
    chain_id: u64,
) -> Result<PipelineConfig, sequencer_handlers::config::ConfigError> {
    let mut config = PipelineConfig::new(market, protocol_state, chain_id);
    config.finalize.batch_size = sc.batch_size;
    config.anchor_group = "sequencer-anchor".into();
    if let Some(n) = MODULE.anchor.max_receive_count {
        config.anchor_max_receives = n as u32;
    }
    config.retry_horizon = Duration::from_millis(MODULE.retry_horizon_ms());
    // The module's WATERMARK_MAX_WAIT_MS: verify's visibility timeout plus a minute.
    config.watermark_max_wait = Duration::from_millis(MODULE.verify.visibility_ms() + 60_000);
    if let Some(t) = sc.record_ttl_s {
        config.record_ttl = Duration::from_secs(t);
    }
    config.validate()?;
    Ok(config)
}

impl World {
    /// Builds the deployment for `sc` on `sim`.
    pub fn new(sim: Sim, sc: Scenario) -> Arc<Self> {
        let deploy = MODULE;
        let market = devkeys::local_market_address();
        let protocol_state = Address::repeat_byte(0x5a);
        let domain = Domain {
            chain_id: 31337,
            verifying_contract: protocol_state,
        };
        let slots = Slots::of(&sc);
        let mut owners = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for s in 1..=slots.last() {
            if let Some(k) = devkeys::sim_snapshotter_key(s) {
                owners.insert(s, address_of(&k));
                keys.insert(s, k);
            }
        }
        let mut chain = ChainModel::new(
            market,
            Windows {
                snapshot_blocks: sc.snapshot_window,
                batch_blocks: sc.batch_window,
            },
            owners,
        );
        chain.block_ms = sc.block_ms;
        chain.faults = sc.faults.chain_meaning.clone();
        if let Some(f) = slots.flagged {
            if let Some(k) = keys.get(&f) {
                chain.flag(address_of(k));
            }
        }
        let chain = Arc::new(Mutex::new(chain));
        let state = Arc::new(Mutex::new(StateModel::default()));
        let content = Arc::new(Mutex::new(ContentModel::default()));
        let mut qm = QueueModel::default();
        qm.duplicate_p = sc.faults.sqs_duplicate_p;
        let spec = |name: &str, fifo: bool, f: &Function, dlq: &str| QueueSpec {
            name: name.into(),
            fifo,
            visibility_ms: f.visibility_ms(),
            redrive: f.max_receive_count.map(|n| (n as u32, dlq.to_string())),
        };
        let dlq = |name: &str, fifo: bool| QueueSpec {
            name: name.into(),
            fifo,
            visibility_ms: 30_000,
            redrive: None,
        };
        qm.add(spec(
            queues::SUBMISSIONS,
            false,
            &deploy.verify,
            queues::SUBMISSIONS_DLQ,
        ));
        qm.add(dlq(queues::SUBMISSIONS_DLQ, false));
        qm.add(spec(
            queues::FINALIZE,
            false,
            &deploy.finalize,
            queues::FINALIZE_DLQ,
        ));
        qm.add(dlq(queues::FINALIZE_DLQ, false));
        qm.add(spec(
            queues::ANCHOR,
            true,
            &deploy.anchor,
            queues::ANCHOR_DLQ,
        ));
        qm.add(dlq(queues::ANCHOR_DLQ, true));
        let queues_m = Arc::new(Mutex::new(qm));

        let counts = Arc::new(Mutex::new(CallCounts::new()));
        let gates = Gates {
            state: Gate::new(
                sim.clone(),
                Port::State,
                sc.faults.state.clone(),
                counts.clone(),
            ),
            queue: Gate::new(
                sim.clone(),
                Port::Queue,
                sc.faults.queue.clone(),
                counts.clone(),
            ),
            content: Gate::new(
                sim.clone(),
                Port::Content,
                sc.faults.content.clone(),
                counts.clone(),
            ),
            chain: Gate::new(
                sim.clone(),
                Port::Chain,
                sc.faults.chain.clone(),
                counts.clone(),
            ),
        };
        let q = |name: &str, dlq: Option<&str>| {
            SimQueue::new(name, dlq, gates.queue.clone(), queues_m.clone())
        };
        let submissions = q(queues::SUBMISSIONS, Some(queues::SUBMISSIONS_DLQ));
        let finalize_q = q(queues::FINALIZE, Some(queues::FINALIZE_DLQ));
        let anchor_q = q(queues::ANCHOR, Some(queues::ANCHOR_DLQ));
        let ports = Ports {
            state: Arc::new(SimState::new(gates.state.clone(), state.clone())),
            content: Arc::new(SimContent::new(gates.content.clone(), content.clone())),
            // One process's caches in front of the chain, shared by every function of the model
            // (verify's, and the probes', which measure a warm verify).
            chain: CachedChain::wrap(
                Arc::new(SimChain::new(gates.chain.clone(), chain.clone())),
                &PipelineConfig::new(market, protocol_state, domain.chain_id),
                Arc::new(SimClock(sim.clone())),
            ),
            finalize_queue: Arc::new(finalize_q.clone()),
            anchor_queue: Arc::new(anchor_q.clone()),
            submissions_dlq: Arc::new(q(queues::SUBMISSIONS_DLQ, None)),
        };
        let config = pipeline_config(&sc, market, protocol_state, domain.chain_id)
            .unwrap_or_else(|e| panic!("preset {}: {e}", sc.name));
        let pipeline = || {
            Arc::new(
                Pipeline::new(ports.clone(), config.clone())
                    .with_clock(Arc::new(SimClock(sim.clone()))),
            )
        };
        Arc::new(World {
            sim: sim.clone(),
            deploy,
            market,
            domain,
            state,
            queues: queues_m,
            chain,
            content,
            ledger: Arc::new(Mutex::new(Ledger::default())),
            counts,
            gates,
            verify: pipeline(),
            tick: pipeline(),
            finalize: pipeline(),
            anchor: pipeline(),
            reader: pipeline(),
            submissions,
            finalize_q,
            anchor_q,
            ingress_pending: AtomicU64::new(0),
            ingress_tally: std::sync::Mutex::default(),
            senders_pending: AtomicU64::new(0),
            invocations: AtomicU64::new(0),
            sc,
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The chain model.
    pub fn chain(&self) -> std::sync::MutexGuard<'_, ChainModel> {
        self.chain.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state model.
    pub fn state(&self) -> std::sync::MutexGuard<'_, StateModel> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue model.
    pub fn queues(&self) -> std::sync::MutexGuard<'_, QueueModel> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The content model.
    pub fn content(&self) -> std::sync::MutexGuard<'_, ContentModel> {
        self.content.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handlers' typed records of the market over a read-only view of the store (no
    /// latency, fault or count): how actors and invariants read what the pipeline keeps,
    /// `crate::model::state::now(w.records(&view).epoch(e))`.
    pub fn records<'a>(&self, view: &'a ReadOnly<'a>) -> Records<'a> {
        Records::new(view, self.market, self.reader.config.record_ttl)
    }

    /// Canonical hash of block `n`.
    pub fn block_hash(&self, n: u64) -> B256 {
        self.chain().hash(n)
    }

    /// Where an invocation that makes about `expected_calls` port calls crashes, if it does.
    pub fn crash_point(&self, expected_calls: u64) -> Option<u32> {
        self.sim
            .chance(self.sc.faults.crash_p)
            .then(|| self.sim.rand_range(0..expected_calls.max(1)) as u32)
    }

    fn next_invocation(&self) -> u64 {
        self.invocations.fetch_add(1, Ordering::SeqCst)
    }

    /// Invocations running now.
    pub fn running_invocations(&self) -> usize {
        self.ledger()
            .invocations
            .iter()
            .filter(|i| i.ended.is_none() && !i.task.starts_with("tick"))
            .count()
    }

    /// Runs `f`'s handler on `batch` as a Lambda invocation (timeout, crash point), records it,
    /// and returns what Lambda's event source mapping gets back (`None`: killed).
    pub async fn invoke(self: &Arc<Self>, f: Func, batch: &[Received]) -> Option<SqsBatchResponse> {
        let spec = match f {
            Func::Verify => self.deploy.verify,
            Func::Finalize => self.deploy.finalize,
            Func::Anchor => self.deploy.anchor,
        };
        let n = self.next_invocation();
        let task = format!("{}#{n}", f.name());
        let subjects = batch
            .iter()
            .map(|m| match f {
                Func::Verify => m.body.get(..36).unwrap_or("").to_string(),
                _ => format!(
                    "epoch {}",
                    m.attributes.get("epoch").map_or("?", String::as_str)
                ),
            })
            .collect();
        let started = self.sim.now();
        let index = {
            let mut l = self.ledger();
            l.invocations.push(Invocation {
                task: task.clone(),
                started,
                ended: None,
                messages: batch.iter().map(|m| m.message_id.clone()).collect(),
                subjects,
                failed: Vec::new(),
                killed: None,
            });
            l.invocations.len() - 1
        };
        let event = self.sqs_event(f, batch);
        let expected = match f {
            Func::Verify => 8 * batch.len() as u64,
            Func::Finalize => 60,
            Func::Anchor => 12 * batch.len() as u64,
        };
        let crash = self.crash_point(expected);
        let deadline = started + spec.timeout_s * 1000;
        let sim = self.sim.clone();
        let p = match f {
            Func::Verify => self.verify.clone(),
            Func::Finalize => self.finalize.clone(),
            Func::Anchor => self.anchor.clone(),
        };
        let cold = if sim.chance(0.05) {
            sim.rand_range(300..1_500)
        } else {
            sim.rand_range(5..40)
        };
        let h: JoinHandle<SqsBatchResponse> = self.sim.spawn_invocation(
            task,
            async move {
                sim.sleep(cold).await;
                match f {
                    Func::Verify => verify::handle(&p, event).await,
                    Func::Finalize => finalize::handle(&p, event).await,
                    Func::Anchor => anchor::handle(&p, event).await,
                }
            },
            deadline,
            crash,
        );
        let r = h.await;
        let mut l = self.ledger();
        let inv = &mut l.invocations[index];
        inv.ended = Some(self.sim.now());
        match r {
            Ok(resp) => {
                inv.failed = resp
                    .batch_item_failures
                    .iter()
                    .map(|x| x.item_identifier.clone())
                    .collect();
                Some(resp)
            }
            Err(k) => {
                inv.killed = Some(match k {
                    Killed::Crashed => "crashed",
                    Killed::TimedOut => "timed out",
                });
                None
            }
        }
    }

    /// The `SqsEvent` Lambda's event source mapping passes `f` for `batch`: the messages with
    /// their attributes, and the system attributes Lambda adds (receive count, FIFO group,
    /// `SentTimestamp` in virtual Unix ms).
    fn sqs_event(&self, f: Func, batch: &[Received]) -> SqsEvent {
        let arn = format!("arn:aws:sqs:sim:000000000000:{}", f.name());
        let now = BASE_MS as u64 + self.sim.now();
        let q = self.queues();
        let mut event = SqsEvent::default();
        event.records = batch
            .iter()
            .map(|r| {
                let sent = q
                    .sent_at
                    .get(&r.message_id)
                    .map_or(now, |t| BASE_MS as u64 + t);
                let mut m = SqsMessage::default();
                m.message_id = Some(r.message_id.clone());
                m.receipt_handle = Some(r.receipt.clone());
                m.body = Some(r.body.clone());
                let mut system = std::collections::HashMap::from([
                    (
                        "ApproximateReceiveCount".to_string(),
                        r.receive_count.to_string(),
                    ),
                    ("SentTimestamp".to_string(), sent.to_string()),
                ]);
                if let Some(g) = &r.group_id {
                    system.insert("MessageGroupId".to_string(), g.clone());
                }
                m.attributes = system;
                m.message_attributes = r
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let mut a = SqsMessageAttribute::default();
                        a.string_value = Some(v.clone());
                        a.data_type = Some("String".to_string());
                        (k.clone(), a)
                    })
                    .collect();
                m.event_source = Some("aws:sqs".to_string());
                m.event_source_arn = Some(arn.clone());
                m
            })
            .collect();
        event
    }

    /// Every queue the pipeline reads is empty.
    pub fn queues_empty(&self) -> bool {
        let q = self.queues();
        [queues::SUBMISSIONS, queues::FINALIZE, queues::ANCHOR]
            .iter()
            .all(|n| q.depth(n) == 0)
    }

    /// The queue port of `f`'s source queue.
    pub fn source(&self, f: Func) -> &SimQueue {
        match f {
            Func::Verify => &self.submissions,
            Func::Finalize => &self.finalize_q,
            Func::Anchor => &self.anchor_q,
        }
    }

    /// The settings of `f`.
    pub fn spec(&self, f: Func) -> Function {
        match f {
            Func::Verify => self.deploy.verify,
            Func::Finalize => self.deploy.finalize,
            Func::Anchor => self.deploy.anchor,
        }
    }

    /// Sends through the ingress's queue port until it succeeds (the ingress keeps a WAL and
    /// never drops an accepted message).
    pub async fn ingress_send(&self, msg: OutMessage) {
        loop {
            if self
                .submissions
                .send(std::slice::from_ref(&msg))
                .await
                .is_ok()
            {
                return;
            }
            self.sim.sleep(200).await;
        }
    }
}
