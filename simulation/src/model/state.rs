//! The state store as DynamoDB behaves for the operations the port uses (adapters/src/dynamo.rs):
//! strongly consistent reads; `put_if_absent` = `attribute_not_exists(pk)`; `transition` = a
//! condition on `state` returning the old item on failure (`ALL_OLD`); `add_bounded` = `ADD` to a
//! string set under `size < :cap OR contains(:member)`; `query` pages in sort-key order that stop
//! at `limit` items or 1 MB, whichever comes first; items up to 400 KB; TTL expiry is lazy (an
//! expired item is still read until the sweeper deletes it, as DynamoDB deletes within days).
//! Every write is journaled for the invariants' explanations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sequencer_functions::ports::{
    BoundedAdd, Item, Key, Page, StateError, StateStore, Table, Transition,
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

    /// Whether anything of a partition is still stored in `table`.
    pub fn has_partition(&self, table: Table, pk: &str) -> bool {
        self.items
            .range((table, pk.to_string(), String::new())..)
            .next()
            .is_some_and(|((t, p, _), _)| *t == table && p == pk)
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

    fn check_size(key: &Key, item: &Item, members: &BTreeSet<String>) -> Result<(), StateError> {
        let n = size(key, item, members);
        if n > MAX_ITEM_BYTES {
            return Err(StateError::Unavailable(format!(
                "ValidationException: Item size {n} has exceeded the maximum allowed size"
            )));
        }
        Ok(())
    }

    fn get(&self, table: Table, key: &Key) -> Option<Item> {
        self.peek(table, key)
    }

    fn put(&mut self, table: Table, key: &Key, item: &Item) -> Result<(), StateError> {
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

    fn put_if_absent(&mut self, table: Table, key: &Key, item: &Item) -> Result<bool, StateError> {
        if self.items.contains_key(&Self::k(table, key)) {
            return Ok(false);
        }
        self.put(table, key, item)?;
        Ok(true)
    }

    fn transition(
        &mut self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, StateError> {
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

    fn add_bounded(
        &mut self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, StateError> {
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

    fn query(&self, table: Table, pk: &str, after: Option<&str>, limit: usize) -> Page {
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
        Page { items, next }
    }

    fn delete(&mut self, table: Table, key: &Key) {
        self.items.remove(&Self::k(table, key));
    }
}

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

    fn journal(&self, op: &'static str, table: Table, key: &Key, applied: bool) {
        let at = self.gate.sim().now();
        let task = self.gate.sim().current_name();
        self.with(|m| m.log(at, &task, op, table, key, applied));
    }
}

fn unavailable(why: &'static str) -> StateError {
    StateError::Unavailable(why.to_string())
}

fn what(table: Table, key: &Key) -> String {
    format!("{}[{}|{}]", table.name(), key.pk, key.sk)
}

fn item_summary(i: &Item) -> String {
    format!("{}:{}B", i.state.as_deref().unwrap_or("-"), i.data.len())
}

#[async_trait]
impl StateStore for SimState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StateError> {
        self.gate
            .call(
                "get",
                what(table, key),
                unavailable,
                || (Ok(self.with(|m| m.get(table, key))), 0),
                |r| match r {
                    Ok(Some(i)) => item_summary(i),
                    Ok(None) => "none".into(),
                    Err(e) => format!("{e}"),
                },
            )
            .await
    }

    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), StateError> {
        self.gate
            .call(
                "put",
                format!("{} {}", what(table, key), item_summary(item)),
                unavailable,
                || {
                    let r = self.with(|m| m.put(table, key, item));
                    self.journal("put", table, key, r.is_ok());
                    (r, 0)
                },
                |r| format!("{r:?}"),
            )
            .await
    }

    async fn put_if_absent(
        &self,
        table: Table,
        key: &Key,
        item: &Item,
    ) -> Result<bool, StateError> {
        self.gate
            .call(
                "put_if_absent",
                format!("{} {}", what(table, key), item_summary(item)),
                unavailable,
                || {
                    let r = self.with(|m| m.put_if_absent(table, key, item));
                    self.journal("put_if_absent", table, key, matches!(r, Ok(true)));
                    (r, 0)
                },
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
    ) -> Result<Transition, StateError> {
        self.gate
            .call(
                "transition",
                format!("{} {from:?}->{}", what(table, key), item_summary(item)),
                unavailable,
                || {
                    let r = self.with(|m| m.transition(table, key, from, item));
                    self.journal(
                        "transition",
                        table,
                        key,
                        matches!(r, Ok(Transition::Applied)),
                    );
                    (r, 0)
                },
                |r| match r {
                    Ok(Transition::Applied) => "applied".into(),
                    Ok(Transition::Refused(i)) => format!(
                        "refused({})",
                        i.as_ref().map_or("absent".into(), item_summary)
                    ),
                    Err(e) => format!("{e}"),
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
    ) -> Result<BoundedAdd, StateError> {
        self.gate
            .call(
                "add_bounded",
                format!("{} +{member} cap {ceiling}", what(table, key)),
                unavailable,
                || {
                    let r = self.with(|m| m.add_bounded(table, key, member, ceiling));
                    self.journal(
                        "add_bounded",
                        table,
                        key,
                        matches!(r, Ok(BoundedAdd::Added(_))),
                    );
                    (r, 0)
                },
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
    ) -> Result<Page, StateError> {
        self.gate
            .call(
                "query",
                format!("{}[{pk}] after {after:?} limit {limit}", table.name()),
                unavailable,
                || (Ok(self.with(|m| m.query(table, pk, after, limit))), 0),
                |r| match r {
                    Ok(p) => format!("{} items next {:?}", p.items.len(), p.next),
                    Err(e) => format!("{e}"),
                },
            )
            .await
    }

    async fn delete(&self, table: Table, key: &Key) -> Result<(), StateError> {
        self.gate
            .call(
                "delete",
                what(table, key),
                unavailable,
                || {
                    self.with(|m| m.delete(table, key));
                    self.journal("delete", table, key, true);
                    (Ok(()), 0)
                },
                |r| format!("{r:?}"),
            )
            .await
    }
}
