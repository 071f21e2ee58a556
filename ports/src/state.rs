//! The state store port: a DynamoDB-shaped item store (partition key + sort key) with exactly the
//! operations the handlers need: get, put, conditional put, conditional state transitions, an
//! atomic bounded counter that is idempotent per member, paginated queries of a partition in
//! sort-key order, and for whole batches of work: one all-or-nothing transaction of conditional
//! writes ([`StateStore::transact`], DynamoDB's `TransactWriteItems`, one SQLite transaction)
//! that reports which condition failed and why, batched reads ([`StateStore::batch_get`],
//! `BatchGetItem`) and unconditional batched writes ([`StateStore::batch_put`],
//! `BatchWriteItem`). Values are JSON text; the item's `state` is a separate attribute so that
//! conditions can test it, and an item may hold a set of strings ([`Item::members`]).
//!
//! Failures are [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (the store could not be
//! reached or failed: retry) or [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) (the stored
//! data is not what this code wrote, a bug or tampering: do not retry blindly).

use async_trait::async_trait;

use crate::PortError;

/// The tables (names `<prefix>-<name>`, as `localstack/resources.py` creates them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Accepted submissions: pk `market#epoch#shard`, sk `project#slot`.
    Submissions,
    /// Outcome of every processed submission id: pk `market#epoch#shard`, sk submission id.
    Receipts,
    /// Bounded counters: pk `market#epoch#slot`, sk `count`.
    Counters,
    /// Epochs: pk market, sk zero-padded epoch id; plus the tick cursor.
    Epochs,
    /// Protocol-chain block hashes → numbers: pk hash, sk `block`.
    Blocks,
    /// Finalized batches: pk `market#epoch`, sk zero-padded batch index.
    Batches,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 6] = [
        Table::Submissions,
        Table::Receipts,
        Table::Counters,
        Table::Epochs,
        Table::Blocks,
        Table::Batches,
    ];

    /// Base name (without prefix).
    pub fn name(self) -> &'static str {
        match self {
            Table::Submissions => "submissions",
            Table::Receipts => "receipts",
            Table::Counters => "counters",
            Table::Epochs => "epochs",
            Table::Blocks => "blocks",
            Table::Batches => "batches",
        }
    }
}

/// An item's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl Key {
    /// A key.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// An item's value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    /// State label tested by [`StateStore::transition`] (e.g. `OPEN`), if the item has one.
    pub state: Option<String>,
    /// JSON text (empty for an item that is only a set, written by [`StateStore::add_bounded`]
    /// or [`TxOp::AddMembers`]).
    pub data: String,
    /// Expiry (Unix seconds) for the store's TTL sweeper, if any.
    pub ttl: Option<u64>,
    /// The item's set of strings, sorted (what [`StateStore::add_bounded`],
    /// [`StateStore::add_members`] and [`TxOp::AddMembers`] add to); empty when it has none.
    /// A whole-item write ([`StateStore::put`], [`TxOp::Put`], …) replaces the item and drops its
    /// set, as DynamoDB's `PutItem` does.
    pub members: Vec<String>,
}

impl Item {
    /// An item with data and no state.
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// An item with a state.
    pub fn with_state(state: &str, data: impl Into<String>) -> Self {
        Self {
            state: Some(state.to_string()),
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the TTL.
    pub fn ttl(mut self, ttl: Option<u64>) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Result of [`StateStore::transition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The condition held; the item now has the new value.
    Applied,
    /// The condition did not hold; the item as it is (`None`: absent).
    Refused(Option<Item>),
}

/// Result of [`StateStore::add_bounded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundedAdd {
    /// The member was added; the count including it.
    Added(u64),
    /// The member was already counted (a retry); the count.
    Present(u64),
    /// The counter is at its ceiling; nothing changed.
    Full(u64),
}

/// A condition on the item at a key, tested atomically with the write it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No item at the key.
    Absent,
    /// An item whose state is this.
    State(String),
    /// No item, or an item whose state is not this (e.g. a gate that is not `SEALED`).
    NotState(String),
}

impl Condition {
    /// Whether `current` (the item at the key, `None` when absent) satisfies the condition.
    pub fn holds(&self, current: Option<&Item>) -> bool {
        match (self, current) {
            (Condition::Absent, c) => c.is_none(),
            (Condition::State(s), Some(i)) => i.state.as_deref() == Some(s.as_str()),
            (Condition::State(_), None) => false,
            (Condition::NotState(s), Some(i)) => i.state.as_deref() != Some(s.as_str()),
            (Condition::NotState(_), None) => true,
        }
    }
}

/// Most operations in one [`StateStore::transact`] (DynamoDB's `TransactWriteItems` limit).
pub const MAX_TX_OPS: usize = 100;

/// One operation of a transaction ([`StateStore::transact`]). No two operations of one
/// transaction may name the same item (DynamoDB refuses it; the port refuses it everywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOp {
    /// Only tests `condition` on the item (DynamoDB's `ConditionCheck`); writes nothing.
    Check {
        /// Table.
        table: Table,
        /// Key.
        key: Key,
        /// What must hold.
        condition: Condition,
    },
    /// Writes `item` (its state, data and TTL; not its members) if `condition` holds, or
    /// unconditionally.
    Put {
        /// Table.
        table: Table,
        /// Key.
        key: Key,
        /// The new value.
        item: Item,
        /// What must hold first, if anything.
        condition: Option<Condition>,
    },
    /// Adds `members` to the item's set (creating the item if absent; adding a member that is
    /// present changes nothing, so a retry adds it once) and sets its TTL, if the set has at most
    /// `max_before` members first (an absent item has none). A caller bounding a set at `cap`
    /// passes `cap − (members it adds that are not in the set)`, so the set never exceeds `cap`.
    AddMembers {
        /// Table.
        table: Table,
        /// Key.
        key: Key,
        /// Members to add (at least one).
        members: Vec<String>,
        /// Largest set size before the add that is allowed (`None`: no bound).
        max_before: Option<u64>,
        /// Expiry to set.
        ttl: Option<u64>,
    },
}

impl TxOp {
    /// The table and key the operation names.
    pub fn target(&self) -> (Table, &Key) {
        match self {
            TxOp::Check { table, key, .. }
            | TxOp::Put { table, key, .. }
            | TxOp::AddMembers { table, key, .. } => (*table, key),
        }
    }

    /// Whether `current` lets the operation apply.
    pub fn holds(&self, current: Option<&Item>) -> bool {
        match self {
            TxOp::Check { condition, .. } => condition.holds(current),
            TxOp::Put { condition, .. } => condition.as_ref().is_none_or(|c| c.holds(current)),
            TxOp::AddMembers { max_before, .. } => {
                max_before.is_none_or(|m| current.map_or(0, |i| i.members.len() as u64) <= m)
            }
        }
    }
}

/// Why one operation of a cancelled transaction did not apply (DynamoDB's
/// `CancellationReasons`, one per operation, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    /// This operation's condition held; it did not cause the cancellation.
    Ok,
    /// Its condition did not hold: the item as it is (`None`: absent).
    ConditionFailed(Option<Item>),
    /// Another transaction or write held the item at that moment: the transaction may be tried
    /// again as it is.
    Conflict,
}

/// Result of [`StateStore::transact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutcome {
    /// Every operation applied.
    Committed,
    /// Nothing applied; one status per operation, in order.
    Cancelled(Vec<OpStatus>),
}

/// One page of a partition, in sort-key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Items, `(sort key, item)`.
    pub items: Vec<(String, Item)>,
    /// Pass as `after` for the next page; `None` when this was the last.
    pub next: Option<String>,
}

/// The state store.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The item at `key`.
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError>;

    /// Writes `item` at `key` unconditionally.
    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError>;

    /// Writes `item` only if `key` is absent; `false` when it was present (nothing changed).
    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError>;

    /// Writes `item` only if the current item's state is `from` (`None`: the item is absent).
    async fn transition(
        &self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError>;

    /// Atomically adds `member` to the set at `key` unless the set already holds `ceiling`
    /// members; adding a member that is present changes nothing (so retries count once).
    async fn add_bounded(
        &self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError>;

    /// Items of partition `pk` with sort key `> after`, at most `limit`, in sort-key order.
    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError>;

    /// Deletes the item at `key` (absent is fine).
    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError>;

    /// Applies every operation of `ops` or none (at most [`MAX_TX_OPS`], no item twice: anything
    /// else is a [`Refused`](crate::ErrorKind::Refused) error and nothing is written). A
    /// condition that does not hold cancels the whole transaction and is reported with the item
    /// as it is, so the caller can drop what failed and try the rest again.
    async fn transact(&self, ops: &[TxOp]) -> Result<TxOutcome, PortError>;

    /// Applies each of `txs` as [`transact`](Self::transact) would, in order, each all or
    /// nothing on its own and each judged on what the ones before it wrote: one result per
    /// transaction. A store may make them durable together (SQLite: one commit for all, where
    /// a commit's WAL write was most of verify's time); the default sends them one by one.
    async fn transact_each(&self, txs: &[Vec<TxOp>]) -> Vec<Result<TxOutcome, PortError>> {
        let mut out = Vec::with_capacity(txs.len());
        for ops in txs {
            out.push(self.transact(ops).await);
        }
        out
    }

    /// The items at `keys`, in the same order (`None`: absent), as of one moment per store
    /// request: strongly consistent, though not one snapshot across requests (DynamoDB reads up
    /// to 100 keys per request). A key may repeat.
    async fn batch_get(&self, keys: &[(Table, Key)]) -> Result<Vec<Option<Item>>, PortError>;

    /// Writes every item unconditionally (DynamoDB's `BatchWriteItem`, 25 per request; one
    /// SQLite transaction). A key given twice takes the later item.
    async fn batch_put(&self, items: &[(Table, Key, Item)]) -> Result<(), PortError>;

    /// Adds `members` to the set at `key` with no bound (creating the item if absent; present
    /// members change nothing) and sets its TTL: DynamoDB's `UpdateItem` with `ADD`.
    async fn add_members(
        &self,
        table: Table,
        key: &Key,
        members: &[String],
        ttl: Option<u64>,
    ) -> Result<(), PortError>;
}

/// Refuses what no adapter may run: an empty or oversized transaction, an item named twice, an
/// empty member list. Adapters call it first so they all refuse the same.
pub fn check_transaction(ops: &[TxOp]) -> Result<(), PortError> {
    use crate::ErrorKind;
    if ops.is_empty() || ops.len() > MAX_TX_OPS {
        return Err(PortError::state(
            ErrorKind::Refused,
            format!(
                "a transaction has 1..={MAX_TX_OPS} operations, not {}",
                ops.len()
            ),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for op in ops {
        let (table, key) = op.target();
        if !seen.insert((table, key)) {
            return Err(PortError::state(
                ErrorKind::Refused,
                format!(
                    "a transaction names {} {}/{} twice",
                    table.name(),
                    key.pk,
                    key.sk
                ),
            ));
        }
        if let TxOp::AddMembers { members, .. } = op {
            if members.is_empty() {
                return Err(PortError::state(
                    ErrorKind::Refused,
                    "AddMembers with no member",
                ));
            }
        }
    }
    Ok(())
}

/// Every item of partition `pk`, following pagination.
pub async fn query_all(
    store: &dyn StateStore,
    table: Table,
    pk: &str,
) -> Result<Vec<(String, Item)>, PortError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.query(table, pk, after.as_deref(), 1000).await?;
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}
