//! Queues with SQS semantics.
//!
//! Standard queues: at-least-once (a delivered message can come again: a duplicate copy stays
//! receivable with a small chance, as SQS's distributed copies do), any order (each receive takes
//! a random sample of the visible messages), visibility timeout, receive count, and the redrive
//! policy: a receive that would exceed `maxReceiveCount` moves the message to the DLQ instead.
//! FIFO queues: one message group is delivered in order and is blocked while any of its messages
//! is in flight; a deduplication id seen in the last 5 minutes is dropped at send.
//! Deleting or changing the visibility with a stale receipt handle (one from an earlier
//! delivery) succeeds and does nothing, as SQS documents.
//!
//! Two halves, as in every model: [`QueueModel`] holds the semantics (one synchronous method per
//! `Queue` operation, taking the queue's name and the time), [`SimQueue`] is the port, each
//! trait method one [`SimQueue::op`] line through the gate. A new `Queue` method is a model
//! method and one line in `impl Queue for SimQueue`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sequencer_ports::{ErrorKind, OutMessage, PortError, Queue, Received};

use crate::exec::Sim;
use crate::gate::Gate;

/// SQS's FIFO deduplication interval.
pub const DEDUP_INTERVAL_MS: u64 = 5 * 60 * 1000;

fn refused(why: impl Into<String>) -> PortError {
    PortError::queue(ErrorKind::Refused, why)
}

/// A queue's settings (from the Terraform module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Name.
    pub name: String,
    /// FIFO.
    pub fifo: bool,
    /// Visibility timeout, ms.
    pub visibility_ms: u64,
    /// Redrive after this many receives, and where to.
    pub redrive: Option<(u32, String)>,
}

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    group: Option<String>,
    visible_at: u64,
    receive_count: u32,
    receipt: Option<String>,
    in_flight_until: Option<u64>,
}

#[derive(Debug)]
struct Q {
    spec: QueueSpec,
    msgs: BTreeMap<u64, Msg>,
    dedup: BTreeMap<String, u64>,
}

/// Every queue of the deployment.
#[derive(Debug, Default)]
pub struct QueueModel {
    queues: BTreeMap<String, Q>,
    seq: u64,
    receipts: u64,
    /// Chance that a delivered standard message leaves a duplicate copy behind.
    pub duplicate_p: f64,
    /// Messages moved to a DLQ by the redrive policy: (time, queue, message id).
    pub redriven: Vec<(u64, String, String)>,
    /// When each message was sent (virtual ms): its `SentTimestamp`.
    pub sent_at: BTreeMap<String, u64>,
}

/// A message as it sits in a queue (for the invariants).
#[derive(Debug, Clone)]
pub struct Peeked {
    /// Message id.
    pub id: String,
    /// Body.
    pub body: String,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Receives so far.
    pub receive_count: u32,
}

impl QueueModel {
    /// Adds a queue.
    pub fn add(&mut self, spec: QueueSpec) {
        self.queues.insert(
            spec.name.clone(),
            Q {
                spec,
                msgs: BTreeMap::new(),
                dedup: BTreeMap::new(),
            },
        );
    }

    /// Messages in `queue`, visible or not.
    pub fn peek(&self, queue: &str) -> Vec<Peeked> {
        self.queues
            .get(queue)
            .map(|q| {
                q.msgs
                    .values()
                    .map(|m| Peeked {
                        id: m.id.clone(),
                        body: m.body.clone(),
                        attributes: m.attributes.clone(),
                        receive_count: m.receive_count,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Messages in `queue` (visible or in flight).
    pub fn depth(&self, queue: &str) -> usize {
        self.queues.get(queue).map_or(0, |q| q.msgs.len())
    }

    fn q(&mut self, name: &str) -> Result<&mut Q, PortError> {
        self.queues
            .get_mut(name)
            .ok_or_else(|| refused(format!("AWS.SimpleQueueService.NonExistentQueue: {name}")))
    }

    /// `SendMessageBatch`.
    pub fn send(
        &mut self,
        name: &str,
        now: u64,
        messages: &[OutMessage],
    ) -> Result<Vec<String>, PortError> {
        if messages.len() > 10 {
            return Err(refused(
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            ));
        }
        let fifo = self.q(name)?.spec.fifo;
        for m in messages {
            if m.body.len()
                + m.attributes
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                > 256 * 1024
            {
                return Err(refused("AWS.SimpleQueueService.BatchRequestTooLong"));
            }
            if m.attributes.values().any(String::is_empty) {
                return Err(refused("InvalidParameterValue: empty attribute"));
            }
            if fifo && (m.group_id.is_none() || m.dedup_id.is_none()) {
                return Err(refused(
                    "MissingParameter: MessageGroupId/MessageDeduplicationId",
                ));
            }
        }
        let mut ids = Vec::new();
        for m in messages {
            self.seq += 1;
            let seq = self.seq;
            let id = format!("{name}-m{seq}");
            let q = self.q(name)?;
            if fifo {
                q.dedup.retain(|_, at| now < *at + DEDUP_INTERVAL_MS);
                let d = m.dedup_id.clone().unwrap_or_default();
                if q.dedup.contains_key(&d) {
                    // Accepted and dropped: a duplicate within the interval.
                    ids.push(format!("{id}(dedup)"));
                    continue;
                }
                q.dedup.insert(d, now);
            }
            self.sent_at.insert(id.clone(), now);
            let q = self.q(name)?;
            q.msgs.insert(
                seq,
                Msg {
                    id: id.clone(),
                    body: m.body.clone(),
                    attributes: m.attributes.clone(),
                    group: if fifo { m.group_id.clone() } else { None },
                    visible_at: now,
                    receive_count: 0,
                    receipt: None,
                    in_flight_until: None,
                },
            );
            ids.push(id);
        }
        Ok(ids)
    }

    /// `ReceiveMessage` (up to `max`), with the redrive policy applied.
    pub fn receive(
        &mut self,
        name: &str,
        now: u64,
        max: usize,
        sim: &Sim,
    ) -> Result<Vec<Received>, PortError> {
        let max = max.clamp(1, 10);
        let dup_p = self.duplicate_p;
        let (spec, candidates): (QueueSpec, Vec<u64>) = {
            let q = self.q(name)?;
            for m in q.msgs.values_mut() {
                if m.in_flight_until.is_some_and(|t| t <= now) {
                    m.in_flight_until = None;
                }
            }
            let spec = q.spec.clone();
            let cands = if spec.fifo {
                // Groups in order of their oldest message; a group with a message in flight is
                // blocked; take from the head of each open group, in order.
                let mut blocked = std::collections::BTreeSet::new();
                for m in q.msgs.values() {
                    if m.in_flight_until.is_some() || m.visible_at > now {
                        blocked.insert(m.group.clone());
                    }
                }
                q.msgs
                    .iter()
                    .filter(|(_, m)| !blocked.contains(&m.group))
                    .map(|(s, _)| *s)
                    .collect()
            } else {
                q.msgs
                    .iter()
                    .filter(|(_, m)| m.visible_at <= now && m.in_flight_until.is_none())
                    .map(|(s, _)| *s)
                    .collect()
            };
            (spec, cands)
        };
        let picked: Vec<u64> = if spec.fifo {
            candidates
        } else {
            // A random sample, in random order.
            let mut c = candidates;
            let mut out = Vec::new();
            while !c.is_empty() && out.len() < max * 3 {
                let i = sim.rand_range(0..c.len() as u64) as usize;
                out.push(c.swap_remove(i));
            }
            out
        };
        let mut got = Vec::new();
        for seq in picked {
            if got.len() >= max {
                break;
            }
            self.receipts += 1;
            let receipt = format!("{name}-r{}", self.receipts);
            let q = self.q(name)?;
            let Some(m) = q.msgs.get_mut(&seq) else {
                continue;
            };
            if let Some((max_receives, dlq)) = &q.spec.redrive {
                if m.receive_count >= *max_receives {
                    let moved = q.msgs.remove(&seq);
                    let dlq = dlq.clone();
                    if let Some(m) = moved {
                        self.redriven.push((now, name.to_string(), m.id.clone()));
                        self.seq += 1;
                        let s = self.seq;
                        if let Ok(d) = self.q(&dlq) {
                            d.msgs.insert(
                                s,
                                Msg {
                                    receipt: None,
                                    in_flight_until: None,
                                    visible_at: now,
                                    ..m
                                },
                            );
                        }
                    }
                    continue;
                }
            }
            m.receive_count += 1;
            m.receipt = Some(receipt.clone());
            m.in_flight_until = Some(now + spec.visibility_ms);
            m.visible_at = now + spec.visibility_ms;
            let r = Received {
                message_id: m.id.clone(),
                receipt,
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                receive_count: m.receive_count,
                group_id: m.group.clone(),
            };
            let copy = (!spec.fifo && sim.chance(dup_p)).then(|| m.clone());
            got.push(r);
            if let Some(mut c) = copy {
                // Another server still holds a copy: it becomes receivable a little later.
                c.receipt = None;
                c.in_flight_until = None;
                c.visible_at = now + 1_000 + sim.rand_range(0..30_000);
                self.seq += 1;
                let s = self.seq;
                self.q(name)?.msgs.insert(s, c);
            }
            if spec.fifo && got.len() >= max {
                break;
            }
        }
        Ok(got)
    }

    /// `DeleteMessageBatch`: deletes the deliveries whose handle is current.
    pub fn ack(&mut self, name: &str, receipts: &[String]) -> Result<(), PortError> {
        let q = self.q(name)?;
        q.msgs
            .retain(|_, m| !m.receipt.as_ref().is_some_and(|r| receipts.contains(r)));
        Ok(())
    }

    /// `ChangeMessageVisibility`.
    pub fn nack(
        &mut self,
        name: &str,
        now: u64,
        receipt: &str,
        delay_ms: u64,
    ) -> Result<(), PortError> {
        let q = self.q(name)?;
        for m in q.msgs.values_mut() {
            if m.receipt.as_deref() == Some(receipt) {
                m.visible_at = now + delay_ms;
                m.in_flight_until = Some(now + delay_ms);
            }
        }
        Ok(())
    }

    /// What the handlers' `dead_letter` does on SQS: the message, with its reason as an
    /// attribute, sent to `dlq`, and deleted here.
    pub fn dead_letter(
        &mut self,
        name: &str,
        dlq: &str,
        now: u64,
        message: &Received,
        reason: &str,
    ) -> Result<(), PortError> {
        let mut attributes = message.attributes.clone();
        attributes.insert("dead_letter_reason".into(), reason.to_string());
        let out = OutMessage {
            body: message.body.clone(),
            attributes,
            group_id: message.group_id.clone(),
            dedup_id: message
                .group_id
                .as_ref()
                .map(|_| message.message_id.clone()),
        };
        self.send(dlq, now, &[out])?;
        self.ack(name, std::slice::from_ref(&message.receipt))
    }
}

/// The queue port over a [`QueueModel`] queue, through a [`Gate`].
#[derive(Clone)]
pub struct SimQueue {
    name: String,
    dlq: Option<String>,
    gate: Gate,
    model: Arc<Mutex<QueueModel>>,
}

impl SimQueue {
    /// The port of queue `name` (whose DLQ is `dlq`).
    pub fn new(name: &str, dlq: Option<&str>, gate: Gate, model: Arc<Mutex<QueueModel>>) -> Self {
        Self {
            name: name.to_string(),
            dlq: dlq.map(str::to_string),
            gate,
            model,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut QueueModel) -> T) -> T {
        f(&mut self.model.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl SimQueue {
    /// Runs one operation of the model through the gate, at one instant.
    async fn op<T: std::fmt::Debug>(
        &self,
        op: &'static str,
        what: String,
        f: impl FnOnce(&mut QueueModel, u64) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let now = self.gate.sim().now();
        self.gate
            .call(
                op,
                format!("{} {what}", self.name),
                || (self.with(|m| f(m, now)), 0),
                |r| format!("{r:?}"),
            )
            .await
    }
}

#[async_trait]
impl Queue for SimQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: &[OutMessage]) -> Result<(), PortError> {
        let what = format!("x{}", messages.len());
        self.op("send", what, |m, now| {
            m.send(&self.name, now, messages).map(|_| ())
        })
        .await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        // Long polling: look again every second of the wait until something is visible.
        let sim = self.gate.sim().clone();
        let until = sim.now() + wait.as_millis() as u64;
        loop {
            let got = self
                .gate
                .call(
                    "receive",
                    format!("{} max {max}", self.name),
                    || {
                        let now = sim.now();
                        (self.with(|m| m.receive(&self.name, now, max, &sim)), 0)
                    },
                    |r| match r {
                        Ok(v) => format!(
                            "{:?}",
                            v.iter()
                                .map(|m| format!("{}x{}", m.message_id, m.receive_count))
                                .collect::<Vec<_>>()
                        ),
                        Err(e) => format!("{e}"),
                    },
                )
                .await?;
            if !got.is_empty() || sim.now() >= until {
                return Ok(got);
            }
            sim.sleep(1_000.min(until - sim.now())).await;
        }
    }

    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        self.op("ack", format!("{receipts:?}"), |m, _| {
            m.ack(&self.name, receipts)
        })
        .await
    }

    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        let ms = delay.as_millis() as u64;
        self.op("nack", format!("{receipt} +{delay:?}"), |m, now| {
            m.nack(&self.name, now, receipt, ms)
        })
        .await
    }

    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), PortError> {
        let Some(dlq) = self.dlq.clone() else {
            return Err(refused(format!("{} has no dead-letter queue", self.name)));
        };
        let what = format!("{} {reason}", message.message_id);
        self.op("dead_letter", what, |m, now| {
            m.dead_letter(&self.name, &dlq, now, message, reason)
        })
        .await
    }

    async fn depth(&self) -> Result<u64, PortError> {
        self.op(
            "depth",
            String::new(),
            |m, _| Ok(m.depth(&self.name) as u64),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QueueModel {
        let mut m = QueueModel::default();
        m.add(QueueSpec {
            name: "q".into(),
            fifo: false,
            visibility_ms: 180_000,
            redrive: Some((2, "q-dlq".into())),
        });
        m.add(QueueSpec {
            name: "q-dlq".into(),
            fifo: false,
            visibility_ms: 30_000,
            redrive: None,
        });
        m.add(QueueSpec {
            name: "f.fifo".into(),
            fifo: true,
            visibility_ms: 60_000,
            redrive: Some((3, "f-dlq.fifo".into())),
        });
        m.add(QueueSpec {
            name: "f-dlq.fifo".into(),
            fifo: true,
            visibility_ms: 60_000,
            redrive: None,
        });
        m
    }

    #[test]
    fn visibility_receive_count_and_redrive() {
        let sim = Sim::new(1, false);
        let mut m = model();
        m.send("q", 0, &[OutMessage::new("a")]).expect("send");
        let r = m.receive("q", 0, 10, &sim).expect("receive");
        assert_eq!(r.len(), 1);
        assert!(
            m.receive("q", 179_999, 10, &sim).expect("r").is_empty(),
            "invisible"
        );
        let again = m.receive("q", 180_000, 10, &sim).expect("r");
        assert_eq!(again[0].receive_count, 2);
        // A stale handle deletes nothing.
        m.ack("q", std::slice::from_ref(&r[0].receipt))
            .expect("ack");
        assert_eq!(m.depth("q"), 1);
        // The third receive exceeds maxReceiveCount 2: moved to the DLQ.
        assert!(m.receive("q", 360_000, 10, &sim).expect("r").is_empty());
        assert_eq!(m.depth("q"), 0);
        assert_eq!(m.depth("q-dlq"), 1);
    }

    #[test]
    fn fifo_groups_in_order_blocked_while_in_flight_and_deduplicated() {
        let sim = Sim::new(1, false);
        let mut m = model();
        for i in 0..3 {
            m.send(
                "f.fifo",
                0,
                &[OutMessage::new(format!("{i}")).fifo("g", format!("d{i}"))],
            )
            .expect("send");
        }
        m.send("f.fifo", 10, &[OutMessage::new("dup").fifo("g", "d1")])
            .expect("dedup");
        assert_eq!(m.depth("f.fifo"), 3);
        let r = m.receive("f.fifo", 0, 2, &sim).expect("r");
        assert_eq!(
            r.iter().map(|x| x.body.as_str()).collect::<Vec<_>>(),
            ["0", "1"]
        );
        assert!(
            m.receive("f.fifo", 1, 10, &sim).expect("r").is_empty(),
            "group blocked"
        );
        m.ack("f.fifo", &[r[0].receipt.clone(), r[1].receipt.clone()])
            .expect("ack");
        assert_eq!(m.receive("f.fifo", 2, 10, &sim).expect("r")[0].body, "2");
    }
}
