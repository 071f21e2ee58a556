//! A state store that fails, loses answers, holds, stalls or counts on demand, over any other:
//! how tests mount a crash between two port calls (a write that never happens, or one that
//! happened but whose answer was lost), a call held at a chosen point while other handlers run,
//! a slow store, or concurrency.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sequencer_ports::{
    BoundedAdd, ErrorKind, Item, Key, Page, PortError, StateStore, Table, Transition, TxOp,
    TxOutcome,
};
use tokio::sync::oneshot;

/// A state-store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// `transact`.
    Transact,
    /// `batch_get`.
    BatchGet,
    /// `batch_put`.
    BatchPut,
    /// `add_members`.
    AddMembers,
}

impl Op {
    /// Whether the operation can write.
    pub fn writes(self) -> bool {
        !matches!(self, Op::Get | Op::Query | Op::BatchGet)
    }
}

/// What happens to a planned call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Fails before it reaches the store: nothing is written (a crash before the call).
    Fail,
    /// Reaches the store, then the answer is lost (a crash or timeout after the call).
    Lose,
}

/// Which calls a fault is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The next call of this operation touching this table.
    Next(Op, Table),
    /// The call with this number (counting every call from the first, 1-based).
    Nth(usize),
}

/// A call held by [`FaultyState::hold`]: wait until it is reached, then let it go.
#[derive(Debug)]
pub struct Held {
    reached: Option<oneshot::Receiver<()>>,
    go: Option<oneshot::Sender<()>>,
}

impl Held {
    /// Waits until the held call is reached (it then waits for [`Held::release`]).
    pub async fn reached(&mut self) {
        if let Some(r) = self.reached.take() {
            let _ = r.await;
        }
    }

    /// Lets the held call go on to the store.
    pub fn release(mut self) {
        if let Some(g) = self.go.take() {
            let _ = g.send(());
        }
    }
}

struct Hold {
    op: Op,
    table: Option<Table>,
    reached: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
}

/// `inner` with faults: [`FaultyState::fail_next`] / [`FaultyState::fail_call`] make a call fail
/// as an unavailable store before it is applied, [`FaultyState::lose_next`] /
/// [`FaultyState::lose_call`] apply it and then fail (the answer never arrives),
/// [`FaultyState::hold`] parks a call until the test lets it go, [`FaultyState::delay`] stalls
/// every call; calls are counted per operation and the peak of calls in flight is kept.
pub struct FaultyState {
    inner: Arc<dyn StateStore>,
    plan: Mutex<VecDeque<(Target, Fault)>>,
    holds: Mutex<Vec<Hold>>,
    delay: Mutex<Option<Duration>>,
    calls: AtomicUsize,
    counts: Mutex<BTreeMap<Op, u64>>,
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

fn tables_of(ops: &[TxOp]) -> Vec<Table> {
    ops.iter().map(|o| o.target().0).collect()
}

fn injected(what: &str, op: Op, tables: &[Table]) -> PortError {
    PortError::state(
        ErrorKind::Unavailable,
        format!(
            "injected fault ({what}): {op:?} on {}",
            tables
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
}

impl FaultyState {
    /// Faults over `inner` (none planned).
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Self {
            inner,
            plan: Mutex::new(VecDeque::new()),
            holds: Mutex::new(Vec::new()),
            delay: Mutex::new(None),
            calls: AtomicUsize::new(0),
            counts: Mutex::new(BTreeMap::new()),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn plan(&self, t: Target, f: Fault) {
        self.plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((t, f));
    }

    /// The next `op` on `table` fails before it reaches the store (in the order planned).
    pub fn fail_next(&self, op: Op, table: Table) {
        self.plan(Target::Next(op, table), Fault::Fail);
    }

    /// The next `op` on `table` reaches the store, then fails: it was applied, the caller does
    /// not know.
    pub fn lose_next(&self, op: Op, table: Table) {
        self.plan(Target::Next(op, table), Fault::Lose);
    }

    /// Call number `n` (1-based, counting every call since this store was made, see
    /// [`FaultyState::calls`]) fails before it reaches the store.
    pub fn fail_call(&self, n: usize) {
        self.plan(Target::Nth(n), Fault::Fail);
    }

    /// Call number `n` reaches the store, then fails.
    pub fn lose_call(&self, n: usize) {
        self.plan(Target::Nth(n), Fault::Lose);
    }

    /// Forgets every planned fault.
    pub fn clear_faults(&self) {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The next `op` (touching `table`, if given) waits before it reaches the store until the
    /// returned handle lets it go.
    pub fn hold(&self, op: Op, table: Option<Table>) -> Held {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Hold {
                op,
                table,
                reached: reached_tx,
                go: go_rx,
            });
        Held {
            reached: Some(reached_rx),
            go: Some(go_tx),
        }
    }

    /// Every call waits `delay` first (`None`: no wait).
    pub fn delay(&self, delay: Option<Duration>) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// The most calls that were in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Calls so far (every operation).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls so far, by operation.
    pub fn counts(&self) -> BTreeMap<Op, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Calls so far of operations that can write.
    pub fn write_calls(&self) -> u64 {
        self.counts()
            .iter()
            .filter(|(op, _)| op.writes())
            .map(|(_, n)| n)
            .sum()
    }

    /// Enters a call: counts it, holds or stalls it, and says what fault (if any) is planned.
    async fn enter(
        &self,
        op: Op,
        tables: &[Table],
    ) -> Result<(InFlight<'_>, Option<Fault>), PortError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default() += 1;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(self);
        let hold = {
            let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
            holds
                .iter()
                .position(|h| h.op == op && h.table.is_none_or(|t| tables.contains(&t)))
                .map(|i| holds.remove(i))
        };
        if let Some(h) = hold {
            let _ = h.reached.send(());
            let _ = h.go.await;
        }
        let delay = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        let hit = plan.iter().position(|(t, _)| match t {
            Target::Next(o, table) => *o == op && tables.contains(table),
            Target::Nth(k) => *k == n,
        });
        let fault = hit.and_then(|i| plan.remove(i)).map(|(_, f)| f);
        if fault == Some(Fault::Fail) {
            return Err(injected("before the call", op, tables));
        }
        Ok((guard, fault))
    }

    /// Runs `call` under the fault plan.
    async fn run<T, F>(&self, op: Op, tables: &[Table], call: F) -> Result<T, PortError>
    where
        F: std::future::Future<Output = Result<T, PortError>>,
    {
        let (_g, fault) = self.enter(op, tables).await?;
        let out = call.await?;
        if fault == Some(Fault::Lose) {
            return Err(injected("answer lost", op, tables));
        }
        Ok(out)
    }
}

#[async_trait]
impl StateStore for FaultyState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        self.run(Op::Get, &[table], self.inner.get(table, key))
            .await
    }
    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        self.run(Op::Put, &[table], self.inner.put(table, key, item))
            .await
    }
    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        self.run(
            Op::PutIfAbsent,
            &[table],
            self.inner.put_if_absent(table, key, item),
        )
        .await
    }
    async fn transition(
        &self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError> {
        self.run(
            Op::Transition,
            &[table],
            self.inner.transition(table, key, from, item),
        )
        .await
    }
    async fn add_bounded(
        &self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError> {
        self.run(
            Op::AddBounded,
            &[table],
            self.inner.add_bounded(table, key, member, ceiling),
        )
        .await
    }
    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        self.run(
            Op::Query,
            &[table],
            self.inner.query(table, pk, after, limit),
        )
        .await
    }
    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        self.run(Op::Delete, &[table], self.inner.delete(table, key))
            .await
    }
    async fn transact(&self, ops: &[TxOp]) -> Result<TxOutcome, PortError> {
        self.run(Op::Transact, &tables_of(ops), self.inner.transact(ops))
            .await
    }
    async fn batch_get(&self, keys: &[(Table, Key)]) -> Result<Vec<Option<Item>>, PortError> {
        let tables: Vec<Table> = keys.iter().map(|(t, _)| *t).collect();
        self.run(Op::BatchGet, &tables, self.inner.batch_get(keys))
            .await
    }
    async fn batch_put(&self, items: &[(Table, Key, Item)]) -> Result<(), PortError> {
        let tables: Vec<Table> = items.iter().map(|(t, _, _)| *t).collect();
        self.run(Op::BatchPut, &tables, self.inner.batch_put(items))
            .await
    }
    async fn add_members(
        &self,
        table: Table,
        key: &Key,
        members: &[String],
        ttl: Option<u64>,
    ) -> Result<(), PortError> {
        self.run(
            Op::AddMembers,
            &[table],
            self.inner.add_members(table, key, members, ttl),
        )
        .await
    }
}

#[cfg(all(test, feature = "harness"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use sequencer_embedded::{Db, SqliteState};

    fn store() -> FaultyState {
        FaultyState::new(Arc::new(SqliteState::new(Db::in_memory().unwrap())))
    }

    #[tokio::test]
    async fn passes_the_conformance_suite_with_no_fault_planned() {
        let s = store();
        sequencer_ports::conformance::state_store(&s, "f").await;
        assert!(s.calls() > 0);
        assert!(s.write_calls() > 0);
    }

    #[tokio::test]
    async fn a_failed_call_writes_nothing_and_a_lost_answer_wrote() {
        let s = store();
        let k = Key::new("p", "s");
        s.fail_next(Op::Put, Table::Epochs);
        assert!(s.put(Table::Epochs, &k, &Item::data("1")).await.is_err());
        assert_eq!(s.get(Table::Epochs, &k).await.unwrap(), None);
        s.lose_next(Op::Put, Table::Epochs);
        assert!(s.put(Table::Epochs, &k, &Item::data("2")).await.is_err());
        assert_eq!(
            s.get(Table::Epochs, &k).await.unwrap(),
            Some(Item::data("2"))
        );
        let next = s.calls() + 1;
        s.fail_call(next);
        assert!(s.get(Table::Epochs, &k).await.is_err());
        assert!(s.get(Table::Epochs, &k).await.is_ok(), "only that call");
    }

    #[tokio::test]
    async fn a_held_call_waits_until_released() {
        let s = Arc::new(store());
        let k = Key::new("p", "held");
        let mut held = s.hold(Op::Put, Some(Table::Epochs));
        let s2 = s.clone();
        let k2 = k.clone();
        let writer =
            tokio::spawn(async move { s2.put(Table::Epochs, &k2, &Item::data("x")).await });
        held.reached().await;
        assert_eq!(s.get(Table::Epochs, &k).await.unwrap(), None, "not yet");
        held.release();
        writer.await.unwrap().unwrap();
        assert!(s.get(Table::Epochs, &k).await.unwrap().is_some());
    }
}
