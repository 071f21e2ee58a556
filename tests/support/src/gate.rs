//! Port calls counted, parked or failed one at a time: how a test puts another handler between
//! any two port calls of one run (park the run before its n-th call, let the other go, release
//! it), or crashes a run between its (n−1)-th and n-th call (the n-th fails before it happens).
//!
//! One [`Gate`] counts the calls of one handler's ports ([`GatedState`], [`GatedContent`],
//! [`GatedQueue`] over the real ones), so "the n-th call" means the n-th call of that run across
//! the state store, the content store and the queues.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use sequencer_ports::{
    BoundedAdd, ContentStore, ErrorKind, Item, Key, OutMessage, Page, PortError, Queue, Received,
    StateStore, Table, Transition, TxOp, TxOutcome,
};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Plan {
    calls: usize,
    pause_before: Option<usize>,
    parked: bool,
    fail_at: Option<usize>,
    fail_from: Option<usize>,
    log: Vec<String>,
}

/// Counts the port calls of one handler and parks or fails the one planned.
#[derive(Debug, Default)]
pub struct Gate {
    plan: Mutex<Plan>,
    parked: Notify,
    released: Notify,
}

impl Gate {
    /// A gate that lets every call through.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call `n` (0-based) waits, before it reaches the port, until [`Gate::release`].
    pub fn pause_before(&self, n: usize) {
        self.plan().pause_before = Some(n);
    }

    /// Call `n` (0-based) fails as an unavailable port before it reaches it: a crash between
    /// calls `n − 1` and `n`.
    pub fn fail_at(&self, n: usize) {
        self.plan().fail_at = Some(n);
    }

    /// Every call from `n` on fails (an outage).
    pub fn fail_from(&self, n: usize) {
        self.plan().fail_from = Some(n);
    }

    /// Lets every later call through.
    pub fn heal(&self) {
        let mut p = self.plan();
        p.fail_at = None;
        p.fail_from = None;
    }

    /// Calls made (or parked) so far.
    pub fn calls(&self) -> usize {
        self.plan().calls
    }

    /// What each call was, in order (`"state put_if_absent epochs"`, `"content put"`, …).
    pub fn log(&self) -> Vec<String> {
        self.plan().log.clone()
    }

    /// Waits until the planned call is parked; `false` if it is not parked within `within`
    /// (the run made fewer calls and finished).
    pub async fn parked(&self, within: Duration) -> bool {
        let notified = self.parked.notified();
        if self.plan().parked {
            return true;
        }
        tokio::time::timeout(within, notified).await.is_ok() || self.plan().parked
    }

    /// Releases the parked call.
    pub fn release(&self) {
        let mut p = self.plan();
        p.pause_before = None;
        if p.parked {
            p.parked = false;
            self.released.notify_one();
        }
    }

    async fn enter(
        &self,
        what: String,
        port: fn(ErrorKind, String) -> PortError,
    ) -> Result<(), PortError> {
        let park = {
            let mut p = self.plan();
            let n = p.calls;
            p.calls += 1;
            p.log.push(what.clone());
            if p.fail_at == Some(n) || p.fail_from.is_some_and(|f| n >= f) {
                return Err(port(
                    ErrorKind::Unavailable,
                    format!("injected crash before call {n} ({what})"),
                ));
            }
            let park = p.pause_before == Some(n);
            if park {
                p.parked = true;
            }
            park
        };
        if park {
            let released = self.released.notified();
            self.parked.notify_one();
            released.await;
        }
        Ok(())
    }
}

/// A state store whose calls pass a [`Gate`].
pub struct GatedState {
    /// The gate.
    pub gate: Arc<Gate>,
    inner: Arc<dyn StateStore>,
}

impl GatedState {
    /// `inner` behind `gate`.
    pub fn new(gate: Arc<Gate>, inner: Arc<dyn StateStore>) -> Self {
        Self { gate, inner }
    }
}

fn state_err(kind: ErrorKind, m: String) -> PortError {
    PortError::state(kind, m)
}

#[async_trait]
impl StateStore for GatedState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        self.gate
            .enter(format!("state get {}", table.name()), state_err)
            .await?;
        self.inner.get(table, key).await
    }
    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        self.gate
            .enter(format!("state put {}", table.name()), state_err)
            .await?;
        self.inner.put(table, key, item).await
    }
    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        self.gate
            .enter(format!("state put_if_absent {}", table.name()), state_err)
            .await?;
        self.inner.put_if_absent(table, key, item).await
    }
    async fn transition(
        &self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError> {
        self.gate
            .enter(format!("state transition {}", table.name()), state_err)
            .await?;
        self.inner.transition(table, key, from, item).await
    }
    async fn add_bounded(
        &self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError> {
        self.gate
            .enter(format!("state add_bounded {}", table.name()), state_err)
            .await?;
        self.inner.add_bounded(table, key, member, ceiling).await
    }
    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        self.gate
            .enter(format!("state query {}", table.name()), state_err)
            .await?;
        self.inner.query(table, pk, after, limit).await
    }
    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        self.gate
            .enter(format!("state delete {}", table.name()), state_err)
            .await?;
        self.inner.delete(table, key).await
    }
    async fn transact(&self, ops: &[TxOp]) -> Result<TxOutcome, PortError> {
        self.gate.enter("state transact".into(), state_err).await?;
        self.inner.transact(ops).await
    }
    async fn batch_get(&self, keys: &[(Table, Key)]) -> Result<Vec<Option<Item>>, PortError> {
        self.gate.enter("state batch_get".into(), state_err).await?;
        self.inner.batch_get(keys).await
    }
    async fn batch_put(&self, items: &[(Table, Key, Item)]) -> Result<(), PortError> {
        self.gate.enter("state batch_put".into(), state_err).await?;
        self.inner.batch_put(items).await
    }
    async fn add_members(
        &self,
        table: Table,
        key: &Key,
        members: &[String],
        ttl: Option<u64>,
    ) -> Result<(), PortError> {
        self.gate
            .enter(format!("state add_members {}", table.name()), state_err)
            .await?;
        self.inner.add_members(table, key, members, ttl).await
    }
}

/// A content store whose calls pass a [`Gate`].
pub struct GatedContent {
    gate: Arc<Gate>,
    inner: Arc<dyn ContentStore>,
}

impl GatedContent {
    /// `inner` behind `gate`.
    pub fn new(gate: Arc<Gate>, inner: Arc<dyn ContentStore>) -> Self {
        Self { gate, inner }
    }
}

#[async_trait]
impl ContentStore for GatedContent {
    async fn put(&self, bytes: &[u8]) -> Result<String, PortError> {
        self.gate
            .enter("content put".into(), PortError::content)
            .await?;
        self.inner.put(bytes).await
    }
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError> {
        self.gate
            .enter("content get".into(), PortError::content)
            .await?;
        self.inner.get(cid).await
    }
}

/// A queue whose calls pass a [`Gate`].
pub struct GatedQueue {
    gate: Arc<Gate>,
    inner: Arc<dyn Queue>,
}

impl GatedQueue {
    /// `inner` behind `gate`.
    pub fn new(gate: Arc<Gate>, inner: Arc<dyn Queue>) -> Self {
        Self { gate, inner }
    }
}

#[async_trait]
impl Queue for GatedQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, messages: &[OutMessage]) -> Result<(), PortError> {
        self.gate
            .enter(format!("queue send {}", self.inner.name()), |k, m| {
                PortError::queue(k, m)
            })
            .await?;
        self.inner.send(messages).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        self.gate
            .enter(format!("queue receive {}", self.inner.name()), |k, m| {
                PortError::queue(k, m)
            })
            .await?;
        self.inner.receive(max, wait).await
    }
    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        self.gate
            .enter(format!("queue ack {}", self.inner.name()), |k, m| {
                PortError::queue(k, m)
            })
            .await?;
        self.inner.ack(receipts).await
    }
    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        self.gate
            .enter(format!("queue nack {}", self.inner.name()), |k, m| {
                PortError::queue(k, m)
            })
            .await?;
        self.inner.nack(receipt, delay).await
    }
    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), PortError> {
        self.gate
            .enter(
                format!("queue dead_letter {}", self.inner.name()),
                PortError::queue,
            )
            .await?;
        self.inner.dead_letter(message, reason).await
    }
    async fn depth(&self) -> Result<u64, PortError> {
        self.inner.depth().await
    }
}
