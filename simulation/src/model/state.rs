//! The state store as DynamoDB behaves for the operations the port uses
//! (`adapters/aws/src/dynamo.rs`):
//! strongly consistent reads; `put_if_absent` = `attribute_not_exists(pk)`; `transition` = a
//! condition on `state` returning the old item on failure (`ALL_OLD`); `add_bounded` = `ADD` to a
//! string set under `size < :cap OR contains(:member)`; `query` pages in sort-key order that stop
//! at `limit` items or 1 MB, whichever comes first; items up to 400 KB; TTL expiry is lazy (an
//! expired item is still read until the sweeper deletes it, as DynamoDB deletes within days).
//! Every write is journaled for the invariants' explanations.
//!
//! Two halves: [`StateModel`] holds the semantics, one synchronous method per port operation
//! with the trait method's name and arguments; [`SimState`] is the port, each trait method one
//! [`SimState::op`] line that runs the model's method through the gate (latency, faults, crash
//! points, counting, the journal, the trace). A new `StateStore` method is a model method and one
//! line in the `impl StateStore for SimState` below (the compiler points there).
//! [`ReadOnly`] is the view the invariants read through the handlers' typed records layer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sequencer_ports::{
    BoundedAdd, ErrorKind, Item, Key, Page, PortError, StateStore, Table, Transition,
};

use crate::gate::Gate;

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's page size limit for `Query`.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// One write to the store.
#[derive(Debug, Clone)]
pub struct Write {
    /// Virtual ms.
    pub at: u64,
    /// The task that wrote (`verify#12`).
    pub task: String,
    /// Operation.
    pub op: &'static str,
    /// Table.
    pub table: Table,
    /// Key.
    pub key: Key,
    /// Whether it changed the item.
    pub applied: bool,
    /// The item's state after the write, if any.
    pub state: Option<String>,
}

#[derive(Debug, Clone)]
struct Stored {
    item: Item,
    members: BTreeSet<String>,
}

/// The store's contents and journal.
#[derive(Debug, Default)]
pub struct StateModel {
    items: BTreeMap<(Table, String, String), Stored>,
    /// Items the TTL sweeper deleted, as they were (the invariants judge the pipeline on what
    /// it wrote, and the retention on what is left).
    expired: BTreeMap<(Table, String, String), Item>,
    /// Every write, in order.
    pub journal: Vec<Write>,
}

fn size(key: &Key, item: &Item, members: &BTreeSet<String>) -> usize {
    key.pk.len()
        + key.sk.len()
        + item.data.len()
        + item.state.as_ref().map_or(0, String::len)
        + members.iter().map(String::len).sum::<usize>()
        + 64
}

impl StateModel {
    fn k(table: Table, key: &Key) -> (Table, String, String) {
        (table, key.pk.clone(), key.sk.clone())
    }

    /// The item at `key` (no latency, no faults: for the invariants).
    pub fn peek(&self, table: Table, key: &Key) -> Option<Item> {
        self.items.get(&Self::k(table, key)).map(|s| s.item.clone())
    }

    /// Every item of a table, `(pk, sk, item)`, in key order.
    pub fn scan(&self, table: Table) -> Vec<(String, String, Item)> {
        self.items
            .iter()
            .filter(|((t, _, _), _)| *t == table)
            .map(|((_, pk, sk), s)| (pk.clone(), sk.clone(), s.item.clone()))
            .collect()
    }

    /// Every item of a table, those the TTL sweeper deleted included (the live one wins).
    pub fn scan_with_expired(&self, table: Table) -> Vec<(String, String, Item)> {
        let mut all: BTreeMap<(String, String), Item> = self
            .expired
            .iter()
            .filter(|((t, _, _), _)| *t == table)
            .map(|((_, pk, sk), i)| ((pk.clone(), sk.clone()), i.clone()))
            .collect();
        for (pk, sk, i) in self.scan(table) {
            all.insert((pk, sk), i);
        }
        all.into_iter().map(|((pk, sk), i)| (pk, sk, i)).collect()
    }

    /// Members of a bounded counter.
    pub fn members(&self, table: Table, key: &Key) -> BTreeSet<String> {
        self.items
            .get(&Self::k(table, key))
            .map(|s| s.members.clone())
            .unwrap_or_default()
    }

    /// Deletes items whose TTL passed (`now_s`, Unix seconds) with probability `p` each: the
    /// sweeper runs every so often and DynamoDB deletes expired items within days, not at once.
    pub fn sweep(&mut self, now_s: u64, mut pick: impl FnMut() -> bool) -> usize {
        let expired: Vec<_> = self
            .items
            .iter()
            .filter(|(_, s)| s.item.ttl.is_some_and(|t| t < now_s))
            .map(|(k, _)| k.clone())
            .collect();
        let mut n = 0;
        for k in expired {
            if pick() {
                if let Some(s) = self.items.remove(&k) {
                    self.expired.insert(k, s.item);
                }
                n += 1;
            }
        }
        n
    }

    fn log(
        &mut self,
        at: u64,
        task: &str,
        op: &'static str,
        table: Table,
        key: &Key,
        applied: bool,
    ) {
        let state = self
            .items
            .get(&Self::k(table, key))
            .and_then(|s| s.item.state.clone());
        self.journal.push(Write {
            at,
            task: task.to_string(),
            op,
            table,
            key: key.clone(),
            applied,
            state,
        });
    }

    fn check_size(key: &Key, item: &Item, members: &BTreeSet<String>) -> Result<(), PortError> {
        let n = size(key, item, members);
        if n > MAX_ITEM_BYTES {
            // The DynamoDB adapter reports every SDK error as unavailable.
            return Err(PortError::state(
                ErrorKind::Unavailable,
                format!("ValidationException: Item size {n} has exceeded the maximum allowed size"),
            )
            .with_code("ValidationException"));
        }
        Ok(())
    }

    // ---- The port's operations, one per `StateStore` method, same names and arguments. ----

    /// `GetItem`, strongly consistent.
    pub fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        Ok(self.peek(table, key))
    }

    /// `PutItem`.
    pub fn put(&mut self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        Self::check_size(key, item, &BTreeSet::new())?;
        self.items.insert(
            Self::k(table, key),
            Stored {
                item: item.clone(),
                members: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// `PutItem` with `attribute_not_exists(pk)`.
    pub fn put_if_absent(
        &mut self,
        table: Table,
        key: &Key,
        item: &Item,
    ) -> Result<bool, PortError> {
        if self.items.contains_key(&Self::k(table, key)) {
            return Ok(false);
        }
        self.put(table, key, item)?;
        Ok(true)
    }

    /// `PutItem` conditioned on `state` (or on absence), `ALL_OLD` on a failed condition.
    pub fn transition(
        &mut self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError> {
        let cur = self.items.get(&Self::k(table, key));
        let holds = match (from, cur) {
            (None, None) => true,
            (Some(f), Some(c)) => c.item.state.as_deref() == Some(f),
            _ => false,
        };
        if !holds {
            return Ok(Transition::Refused(cur.map(|c| c.item.clone())));
        }
        let members = cur.map(|c| c.members.clone()).unwrap_or_default();
        Self::check_size(key, item, &members)?;
        self.items.insert(
            Self::k(table, key),
            Stored {
                item: item.clone(),
                members,
            },
        );
        Ok(Transition::Applied)
    }

    /// `UpdateItem ADD` to a string set under `size < :cap OR contains(:member)`.
    pub fn add_bounded(
        &mut self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError> {
        let k = Self::k(table, key);
        let entry = self.items.entry(k).or_insert_with(|| Stored {
            // `UpdateItem` creates the item with only its key and the set: no data, no TTL.
            item: Item::default(),
            members: BTreeSet::new(),
        });
        let n = entry.members.len() as u64;
        if entry.members.contains(member) {
            return Ok(BoundedAdd::Present(n));
        }
        if n >= ceiling {
            if n == 0 {
                // Nothing was written (the condition failed on an absent item).
                self.items.remove(&Self::k(table, key));
            }
            return Ok(BoundedAdd::Full(n));
        }
        entry.members.insert(member.to_string());
        Ok(BoundedAdd::Added(n + 1))
    }

    /// `Query` of a partition: pages cut at `limit` items or 1 MB.
    pub fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        let lo = (table, pk.to_string(), after.unwrap_or("").to_string());
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let mut more = false;
        for ((t, p, sk), s) in self.items.range(lo..) {
            if *t != table || p != pk {
                break;
            }
            if after.is_some_and(|a| sk.as_str() <= a) {
                continue;
            }
            if items.len() >= limit.max(1) || bytes >= MAX_PAGE_BYTES {
                more = true;
                break;
            }
            bytes += size(&Key::new(p, sk), &s.item, &s.members);
            items.push((sk.clone(), s.item.clone()));
        }
        // DynamoDB answers a LastEvaluatedKey whenever it stopped at the limit.
        let next = (more || items.len() >= limit.max(1))
            .then(|| items.last().map(|(sk, _)| sk.clone()))
            .flatten();
        Ok(Page { items, next })
    }

    /// `DeleteItem`.
    pub fn delete(&mut self, table: Table, key: &Key) -> Result<(), PortError> {
        self.items.remove(&Self::k(table, key));
        Ok(())
    }

    /// A copy with the items the TTL sweeper deleted back in (a live item wins): what the
    /// pipeline wrote, for the invariants, so an expired record does not hide it.
    pub fn with_expired(&self) -> StateModel {
        let mut items = self.items.clone();
        for (k, i) in &self.expired {
            items.entry(k.clone()).or_insert_with(|| Stored {
                item: i.clone(),
                members: BTreeSet::new(),
            });
        }
        StateModel {
            items,
            ..StateModel::default()
        }
    }
}

/// A write to journal: its table and key, and whether an answer means it changed the item.
type Journaled<'k, T> = (Table, &'k Key, fn(&T) -> bool);

/// The state port over a [`StateModel`], through a [`Gate`].
#[derive(Clone)]
pub struct SimState {
    gate: Gate,
    model: Arc<Mutex<StateModel>>,
}

impl SimState {
    /// A store.
    pub fn new(gate: Gate, model: Arc<Mutex<StateModel>>) -> Self {
        Self { gate, model }
    }

    /// The gate (fault windows).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    fn with<T>(&self, f: impl FnOnce(&mut StateModel) -> T) -> T {
        f(&mut self.model.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs one operation of the model through the gate, at one instant. A write (`write`:
    /// the table and key it writes, and whether an answer means it changed the item) is
    /// journaled.
    async fn op<T>(
        &self,
        op: &'static str,
        what: String,
        write: Option<Journaled<'_, T>>,
        f: impl FnOnce(&mut StateModel) -> Result<T, PortError>,
        summary: impl Fn(&T) -> String,
    ) -> Result<T, PortError> {
        self.gate
            .call(
                op,
                what,
                || {
                    let at = self.gate.sim().now();
                    let task = self.gate.sim().current_name();
                    let r = self.with(|m| {
                        let r = f(m);
                        if let Some((table, key, changed)) = write {
                            let applied = r.as_ref().is_ok_and(changed);
                            m.log(at, &task, op, table, key, applied);
                        }
                        r
                    });
                    (r, 0)
                },
                |r| match r {
                    Ok(v) => summary(v),
                    Err(e) => e.to_string(),
                },
            )
            .await
    }
}

fn what(table: Table, key: &Key) -> String {
    format!("{}[{}|{}]", table.name(), key.pk, key.sk)
}

fn item_summary(i: &Item) -> String {
    format!("{}:{}B", i.state.as_deref().unwrap_or("-"), i.data.len())
}

fn written(what: String, item: &Item) -> String {
    format!("{what} {}", item_summary(item))
}

#[async_trait]
impl StateStore for SimState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        let w = what(table, key);
        self.op(
            "get",
            w,
            None,
            |m| m.get(table, key),
            |r| r.as_ref().map_or("none".into(), item_summary),
        )
        .await
    }

    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        let w = written(what(table, key), item);
        let write = Some((table, key, (|_| true) as fn(&()) -> bool));
        self.op(
            "put",
            w,
            write,
            |m| m.put(table, key, item),
            |r| format!("{r:?}"),
        )
        .await
    }

    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        let w = written(what(table, key), item);
        let write = Some((table, key, (|r| *r) as fn(&bool) -> bool));
        self.op(
            "put_if_absent",
            w,
            write,
            |m| m.put_if_absent(table, key, item),
            |r| format!("{r:?}"),
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
        let w = format!("{} {from:?}->{}", what(table, key), item_summary(item));
        let applied = (|r| matches!(r, Transition::Applied)) as fn(&Transition) -> bool;
        self.op(
            "transition",
            w,
            Some((table, key, applied)),
            |m| m.transition(table, key, from, item),
            |r| match r {
                Transition::Applied => "applied".into(),
                Transition::Refused(i) => format!(
                    "refused({})",
                    i.as_ref().map_or("absent".into(), item_summary)
                ),
            },
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
        let w = format!("{} +{member} cap {ceiling}", what(table, key));
        let added = (|r| matches!(r, BoundedAdd::Added(_))) as fn(&BoundedAdd) -> bool;
        self.op(
            "add_bounded",
            w,
            Some((table, key, added)),
            |m| m.add_bounded(table, key, member, ceiling),
            |r| format!("{r:?}"),
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
        let w = format!("{}[{pk}] after {after:?} limit {limit}", table.name());
        self.op(
            "query",
            w,
            None,
            |m| m.query(table, pk, after, limit),
            |p| format!("{} items next {:?}", p.items.len(), p.next),
        )
        .await
    }

    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        let write = Some((table, key, (|_| true) as fn(&()) -> bool));
        self.op(
            "delete",
            what(table, key),
            write,
            |m| m.delete(table, key),
            |r| format!("{r:?}"),
        )
        .await
    }
}

/// A read-only view of a [`StateModel`]: a `StateStore` whose reads answer at once, with no
/// latency, fault or count, and whose writes are refused. The invariants and the actors read
/// the pipeline's records through it and the handlers' typed records layer
/// (`sequencer_handlers::records::Records`, see `World::records`), so they follow the key
/// scheme and the stored formats wherever the handlers take them. Poll its futures with [`now`].
pub struct ReadOnly<'a>(pub &'a StateModel);

fn read_only() -> PortError {
    PortError::state(ErrorKind::Refused, "a read-only view of the store")
}

#[async_trait]
impl StateStore for ReadOnly<'_> {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        self.0.get(table, key)
    }
    async fn put(&self, _: Table, _: &Key, _: &Item) -> Result<(), PortError> {
        Err(read_only())
    }
    async fn put_if_absent(&self, _: Table, _: &Key, _: &Item) -> Result<bool, PortError> {
        Err(read_only())
    }
    async fn transition(
        &self,
        _: Table,
        _: &Key,
        _: Option<&str>,
        _: &Item,
    ) -> Result<Transition, PortError> {
        Err(read_only())
    }
    async fn add_bounded(
        &self,
        _: Table,
        _: &Key,
        _: &str,
        _: u64,
    ) -> Result<BoundedAdd, PortError> {
        Err(read_only())
    }
    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        self.0.query(table, pk, after, limit)
    }
    async fn delete(&self, _: Table, _: &Key) -> Result<(), PortError> {
        Err(read_only())
    }
}

/// The answer of a future that never waits (a read through a [`ReadOnly`] view).
pub fn now<T>(
    f: impl std::future::Future<Output = Result<T, sequencer_handlers::PipelineError>>,
) -> Result<T, sequencer_handlers::PipelineError> {
    use futures::FutureExt as _;
    f.now_or_never().unwrap_or_else(|| {
        Err(sequencer_handlers::PipelineError::Invariant(
            "a read of a read-only view waited".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(sk: &str) -> Key {
        Key::new("p", sk)
    }

    /// The DynamoDB semantics the handlers rely on. A new operation gets its case here.
    #[test]
    fn conditional_writes_bounded_sets_pages_and_lazy_expiry() {
        let mut m = StateModel::default();
        let t = Table::Epochs;
        let open = Item::with_state("OPEN", "{}").ttl(Some(100));
        assert_eq!(m.put_if_absent(t, &k("a"), &open), Ok(true));
        assert_eq!(m.put_if_absent(t, &k("a"), &Item::data("x")), Ok(false));
        // A transition whose condition fails returns the item as it is (ALL_OLD).
        let closed = Item::with_state("CLOSED", "{}");
        assert_eq!(
            m.transition(t, &k("a"), Some("CLOSING"), &closed),
            Ok(Transition::Refused(Some(open.clone())))
        );
        assert_eq!(
            m.transition(t, &k("a"), Some("OPEN"), &closed),
            Ok(Transition::Applied)
        );
        assert_eq!(
            m.transition(t, &k("b"), Some("OPEN"), &closed),
            Ok(Transition::Refused(None))
        );
        // A bounded set counts a member once and refuses past its ceiling.
        let c = Table::Counters;
        assert_eq!(m.add_bounded(c, &k("n"), "x", 2), Ok(BoundedAdd::Added(1)));
        assert_eq!(
            m.add_bounded(c, &k("n"), "x", 2),
            Ok(BoundedAdd::Present(1))
        );
        assert_eq!(m.add_bounded(c, &k("n"), "y", 2), Ok(BoundedAdd::Added(2)));
        assert_eq!(m.add_bounded(c, &k("n"), "z", 2), Ok(BoundedAdd::Full(2)));
        // Pages stop at the limit with a next key.
        for i in 0..5 {
            m.put(Table::Receipts, &k(&format!("{i}")), &Item::data("{}"))
                .expect("put");
        }
        let p1 = m.query(Table::Receipts, "p", None, 3).expect("query");
        assert_eq!((p1.items.len(), p1.next.as_deref()), (3, Some("2")));
        let p2 = m
            .query(Table::Receipts, "p", p1.next.as_deref(), 3)
            .expect("q");
        assert_eq!((p2.items.len(), p2.next), (2, None));
        // Too large an item is refused.
        let big = Item::data("x".repeat(MAX_ITEM_BYTES));
        assert!(m.put(t, &k("big"), &big).is_err());
        // Expired items stay readable until the sweeper takes them, and the invariants still
        // see them after.
        m.put(t, &k("old"), &Item::data("{}").ttl(Some(10)))
            .expect("put");
        assert!(m.get(t, &k("old")).expect("get").is_some());
        assert_eq!(m.sweep(11, || true), 1);
        assert!(m.get(t, &k("old")).expect("get").is_none());
        assert!(m.with_expired().get(t, &k("old")).expect("get").is_some());
    }
}
