//! The state store port: a DynamoDB-shaped item store (partition key + sort key) with exactly the
//! operations the handlers need: get, put, conditional put, conditional state transitions, an
//! atomic bounded counter that is idempotent per member, and paginated queries of a partition in
//! sort-key order. Values are JSON text; the item's `state` is a separate attribute so that
//! conditions can test it.
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
    /// JSON text.
    pub data: String,
    /// Expiry (Unix seconds) for the store's TTL sweeper, if any.
    pub ttl: Option<u64>,
}

impl Item {
    /// An item with data and no state.
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            state: None,
            data: data.into(),
            ttl: None,
        }
    }

    /// An item with a state.
    pub fn with_state(state: &str, data: impl Into<String>) -> Self {
        Self {
            state: Some(state.to_string()),
            data: data.into(),
            ttl: None,
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
