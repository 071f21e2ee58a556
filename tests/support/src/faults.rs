//! A state store that fails, stalls or counts on demand, over any other: how tests mount a crash
//! between two port calls (a write that never happens), a slow store, or concurrency.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sequencer_ports::{
    BoundedAdd, ErrorKind, Item, Key, Page, PortError, StateStore, Table, Transition,
};

/// A state-store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get`.
    Get,
    /// `put`.
    Put,
    /// `put_if_absent`.
    PutIfAbsent,
    /// `transition`.
    Transition,
    /// `add_bounded`.
    AddBounded,
    /// `query`.
    Query,
    /// `delete`.
    Delete,
}

/// `inner` with faults: each [`FaultyState::fail_next`] makes the next matching call fail as an
/// unavailable store (nothing is written: the crash happened before it), [`FaultyState::delay`]
/// stalls every call, and the peak of calls in flight is kept.
pub struct FaultyState {
    inner: Arc<dyn StateStore>,
    fail: Mutex<VecDeque<(Op, Table)>>,
    delay: Mutex<Option<Duration>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl std::fmt::Debug for FaultyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyState").finish_non_exhaustive()
    }
}

struct InFlight<'a>(&'a FaultyState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FaultyState {
    /// Faults over `inner` (none planned).
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Self {
            inner,
            fail: Mutex::new(VecDeque::new()),
            delay: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The next `op` on `table` fails (in the order planned).
    pub fn fail_next(&self, op: Op, table: Table) {
        self.fail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((op, table));
    }

    /// Every call waits `delay` first (`None`: no wait).
    pub fn delay(&self, delay: Option<Duration>) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// The most calls that were in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    async fn enter(&self, op: Op, table: Table) -> Result<InFlight<'_>, PortError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(self);
        let delay = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut plan = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = plan.iter().position(|p| *p == (op, table)) {
            plan.remove(i);
            return Err(PortError::state(
                ErrorKind::Unavailable,
                format!("injected fault: {op:?} on {}", table.name()),
            ));
        }
        Ok(guard)
    }
}

#[async_trait]
impl StateStore for FaultyState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        let _g = self.enter(Op::Get, table).await?;
        self.inner.get(table, key).await
    }
    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        let _g = self.enter(Op::Put, table).await?;
        self.inner.put(table, key, item).await
    }
    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        let _g = self.enter(Op::PutIfAbsent, table).await?;
        self.inner.put_if_absent(table, key, item).await
    }
    async fn transition(
        &self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError> {
        let _g = self.enter(Op::Transition, table).await?;
        self.inner.transition(table, key, from, item).await
    }
    async fn add_bounded(
        &self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError> {
        let _g = self.enter(Op::AddBounded, table).await?;
        self.inner.add_bounded(table, key, member, ceiling).await
    }
    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        let _g = self.enter(Op::Query, table).await?;
        self.inner.query(table, pk, after, limit).await
    }
    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        let _g = self.enter(Op::Delete, table).await?;
        self.inner.delete(table, key).await
    }
}
