//! [`StateStore`] on SQLite: items in one table, sets in another, every operation one SQLite
//! transaction (a [`StateStore::transact`] too: its conditions are tested and its writes applied
//! inside one `BEGIN IMMEDIATE`), and a sweeper that deletes expired items as DynamoDB's TTL does.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::{Db, DbError};
use sequencer_ports::{
    check_transaction, BoundedAdd, ErrorKind, Item, Key, OpStatus, Page, PortError, StateStore,
    Table, Transition, TxOp, TxOutcome,
};

/// The embedded state store.
#[derive(Debug, Clone)]
pub struct SqliteState {
    db: Db,
}

impl SqliteState {
    /// A state store in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Deletes at most `limit` items whose TTL is before `now` (Unix seconds), each with its
    /// set, as DynamoDB's TTL sweeper does (an expired item is read until the sweep deletes it,
    /// there too); returns how many items went. Partitions are visited by their earliest TTL
    /// (the `expiry` table), oldest first. One short transaction, so a pass never holds the
    /// database for long: the runner sweeps every minute, and again at once while a pass is
    /// full (`runner::services::Loops`).
    pub fn sweep_expired(&self, now: u64, limit: usize) -> Result<u64, PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let now = now.min(i64::MAX as u64) as i64;
        let limit = limit.max(1);
        let sql_limit = |n: usize| n.min(i64::MAX as usize) as i64;
        // At most `limit` partitions a pass too: a listed partition may have nothing left to
        // delete (its items were rewritten with another TTL, or swept with an older listing).
        let groups: Vec<(i64, String, String)> = {
            let mut q = tx
                .prepare_cached(
                    "SELECT ttl, tbl, pk FROM expiry WHERE ttl < ?1 ORDER BY ttl LIMIT ?2",
                )
                .map_err(err)?;
            let rows = q
                .query_map(params![now, sql_limit(limit)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        let mut deleted = 0usize;
        for (ttl, tbl, pk) in &groups {
            let want = limit - deleted;
            if want == 0 {
                break;
            }
            let sks: Vec<String> = {
                let mut q = tx
                    .prepare_cached(
                        "SELECT sk FROM items WHERE tbl = ?1 AND pk = ?2 \
                         AND ttl IS NOT NULL AND ttl < ?3 LIMIT ?4",
                    )
                    .map_err(err)?;
                let rows = q
                    .query_map(params![tbl, pk, now, sql_limit(want)], |r| r.get(0))
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)?
            };
            for sk in &sks {
                tx.prepare_cached("DELETE FROM members WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
                    .map_err(err)?
                    .execute(params![tbl, pk, sk])
                    .map_err(err)?;
                tx.prepare_cached("DELETE FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
                    .map_err(err)?
                    .execute(params![tbl, pk, sk])
                    .map_err(err)?;
            }
            deleted += sks.len();
            if sks.len() < want {
                // Nothing expired is left in the partition.
                tx.prepare_cached("DELETE FROM expiry WHERE ttl = ?1 AND tbl = ?2 AND pk = ?3")
                    .map_err(err)?
                    .execute(params![ttl, tbl, pk])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(deleted as u64)
    }
}

impl From<DbError> for PortError {
    fn from(e: DbError) -> Self {
        PortError::state(ErrorKind::Unavailable, e.to_string())
    }
}

fn err(e: rusqlite::Error) -> PortError {
    PortError::state(ErrorKind::Unavailable, format!("sqlite: {e}"))
}

fn ttl_sql(ttl: Option<u64>) -> Option<i64> {
    ttl.map(|t| t.min(i64::MAX as u64) as i64)
}

/// Lists `key`'s partition under `ttl` for the sweeper. Items of a partition mostly expire
/// together (an epoch's records with the epoch), so this is a lookup that finds the row and
/// writes nothing.
fn note_expiry(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
    ttl: Option<u64>,
) -> Result<(), rusqlite::Error> {
    if let Some(t) = ttl_sql(ttl) {
        conn.prepare_cached("INSERT OR IGNORE INTO expiry (ttl, tbl, pk) VALUES (?1, ?2, ?3)")?
            .execute(params![t, table.name(), key.pk])?;
    }
    Ok(())
}

fn members_of(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
) -> Result<Vec<String>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT member FROM members WHERE tbl = ?1 AND pk = ?2 AND sk = ?3 ORDER BY member",
    )?
    .query_map(params![table.name(), key.pk, key.sk], |r| r.get(0))?
    .collect()
}

fn read(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
) -> Result<Option<Item>, rusqlite::Error> {
    let item = conn
        .prepare_cached(
            "SELECT state, data, ttl FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3",
        )?
        .query_row(params![table.name(), key.pk, key.sk], |r| {
            Ok(Item {
                state: r.get(0)?,
                data: r.get(1)?,
                ttl: r.get::<_, Option<i64>>(2)?.map(|t| t.max(0) as u64),
                members: Vec::new(),
            })
        })
        .optional()?;
    let members = members_of(conn, table, key)?;
    Ok(match item {
        Some(mut i) => {
            i.members = members;
            Some(i)
        }
        // A set written before sets had an item row of their own.
        None if !members.is_empty() => Some(Item {
            members,
            ..Item::default()
        }),
        None => None,
    })
}

/// Replaces the item (its set too, as a whole-item write does on DynamoDB).
fn write(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
    item: &Item,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO items (tbl, pk, sk, state, data, ttl) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        table.name(),
        key.pk,
        key.sk,
        item.state,
        item.data,
        ttl_sql(item.ttl)
    ])?;
    note_expiry(conn, table, key, item.ttl)?;
    drop_members(conn, table, key)
}

fn drop_members(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM members WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")?
        .execute(params![table.name(), key.pk, key.sk])?;
    Ok(())
}

/// Adds members to the set at `key` (its item row created if absent, the TTL set if given).
fn add_to_set(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
    members: &[String],
    ttl: Option<u64>,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO items (tbl, pk, sk, state, data, ttl) VALUES (?1, ?2, ?3, NULL, '', NULL)",
    )?
    .execute(params![table.name(), key.pk, key.sk])?;
    if ttl.is_some() {
        // Only when it changes: rewriting the same row dirties its page for nothing.
        conn.prepare_cached(
            "UPDATE items SET ttl = ?4 WHERE tbl = ?1 AND pk = ?2 AND sk = ?3 AND ttl IS NOT ?4",
        )?
        .execute(params![table.name(), key.pk, key.sk, ttl_sql(ttl)])?;
        note_expiry(conn, table, key, ttl)?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO members (tbl, pk, sk, member) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for m in members {
        insert.execute(params![table.name(), key.pk, key.sk, m])?;
    }
    Ok(())
}

/// One transaction's operations inside an open SQLite transaction: every condition tested
/// first; all hold, so every write is applied, or one does not, so nothing is written.
fn apply(conn: &rusqlite::Connection, ops: &[TxOp]) -> Result<TxOutcome, rusqlite::Error> {
    let mut statuses = Vec::with_capacity(ops.len());
    let mut cancelled = false;
    for op in ops {
        let (table, key) = op.target();
        let current = read(conn, table, key)?;
        if op.holds(current.as_ref()) {
            statuses.push(OpStatus::Ok);
        } else {
            cancelled = true;
            statuses.push(OpStatus::ConditionFailed(current));
        }
    }
    if cancelled {
        return Ok(TxOutcome::Cancelled(statuses));
    }
    for op in ops {
        match op {
            TxOp::Check { .. } => {}
            TxOp::Put {
                table, key, item, ..
            } => write(conn, *table, key, item)?,
            TxOp::AddMembers {
                table,
                key,
                members,
                ttl,
                ..
            } => add_to_set(conn, *table, key, members, *ttl)?,
        }
    }
    Ok(TxOutcome::Committed)
}

#[async_trait]
impl StateStore for SqliteState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        let conn = self.db.lock()?;
        read(&conn, table, key).map_err(err)
    }

    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn.transaction().map_err(err)?;
        write(&tx, table, key, item).map_err(err)?;
        tx.commit().map_err(err)
    }

    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn.transaction().map_err(err)?;
        let n = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO items (tbl, pk, sk, state, data, ttl) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    table.name(),
                    key.pk,
                    key.sk,
                    item.state,
                    item.data,
                    ttl_sql(item.ttl)
                ])
            })
            .map_err(err)?;
        if n == 1 {
            note_expiry(&tx, table, key, item.ttl).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(n == 1)
    }

    async fn transition(
        &self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let current = read(&tx, table, key).map_err(err)?;
        let holds = match (&current, from) {
            (None, None) => true,
            (Some(c), Some(f)) => c.state.as_deref() == Some(f),
            _ => false,
        };
        if !holds {
            return Ok(Transition::Refused(current));
        }
        write(&tx, table, key, item).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Transition::Applied)
    }

    async fn add_bounded(
        &self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let (count, present): (i64, i64) = tx
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(member = ?4), 0) FROM members WHERE tbl = ?1 AND pk = ?2 AND sk = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![table.name(), key.pk, key.sk, member], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .map_err(err)?;
        let count = count.max(0) as u64;
        if present > 0 {
            return Ok(BoundedAdd::Present(count));
        }
        if count >= ceiling {
            return Ok(BoundedAdd::Full(count));
        }
        add_to_set(&tx, table, key, &[member.to_string()], None).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(BoundedAdd::Added(count + 1))
    }

    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        let conn = self.db.lock()?;
        let limit = limit.clamp(1, 10_000);
        let mut stmt = conn
            .prepare_cached(
                "SELECT sk, state, data, ttl FROM items WHERE tbl = ?1 AND pk = ?2 AND sk > ?3 ORDER BY sk LIMIT ?4",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(
                params![table.name(), pk, after.unwrap_or(""), (limit + 1) as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Item {
                            state: r.get(1)?,
                            data: r.get(2)?,
                            ttl: r.get::<_, Option<i64>>(3)?.map(|t| t.max(0) as u64),
                            members: Vec::new(),
                        },
                    ))
                },
            )
            .map_err(err)?;
        let mut items = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(sk, _)| sk.clone())
        } else {
            None
        };
        // The page's sets in one range read (most items have none), not a lookup per item:
        // a lookup per item was a third of reading an epoch's accepted set.
        if let (Some((first, _)), Some((last, _))) = (items.first(), items.last()) {
            let mut q = conn
                .prepare_cached(
                    "SELECT sk, member FROM members WHERE tbl = ?1 AND pk = ?2 AND sk >= ?3 AND sk <= ?4 ORDER BY sk, member",
                )
                .map_err(err)?;
            let rows = q
                .query_map(params![table.name(), pk, first, last], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(err)?;
            for row in rows {
                let (sk, member) = row.map_err(err)?;
                // Items are in `sk` order (SQLite's BINARY collation is Rust's byte order).
                if let Ok(i) = items.binary_search_by(|(s, _)| s.as_str().cmp(sk.as_str())) {
                    items[i].1.members.push(member);
                }
            }
        }
        Ok(Page { items, next })
    }

    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn.transaction().map_err(err)?;
        tx.prepare_cached("DELETE FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
            .and_then(|mut s| s.execute(params![table.name(), key.pk, key.sk]))
            .map_err(err)?;
        drop_members(&tx, table, key).map_err(err)?;
        tx.commit().map_err(err)
    }

    async fn transact(&self, ops: &[TxOp]) -> Result<TxOutcome, PortError> {
        check_transaction(ops)?;
        let mut conn = self.db.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let outcome = apply(&tx, ops).map_err(err)?;
        // Cancelled: nothing was written (every condition is tested before the first write).
        tx.commit().map_err(err)?;
        Ok(outcome)
    }

    async fn transact_each(&self, txs: &[Vec<TxOp>]) -> Vec<Result<TxOutcome, PortError>> {
        let all = || -> Result<Vec<Result<TxOutcome, PortError>>, PortError> {
            let mut conn = self.db.lock()?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let mut out = Vec::with_capacity(txs.len());
            for ops in txs {
                match check_transaction(ops) {
                    // A failed statement may have written part of `ops`: nothing of the whole
                    // commit stays (dropping `tx` rolls it back) and every result is the error.
                    Ok(()) => out.push(Ok(apply(&tx, ops).map_err(err)?)),
                    Err(e) => out.push(Err(e)),
                }
            }
            tx.commit().map_err(err)?;
            Ok(out)
        };
        match all() {
            Ok(out) => out,
            Err(e) => txs.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn batch_get(&self, keys: &[(Table, Key)]) -> Result<Vec<Option<Item>>, PortError> {
        let mut conn = self.db.lock()?;
        // One read transaction: every key as of one moment.
        let tx = conn.transaction().map_err(err)?;
        let mut out = Vec::with_capacity(keys.len());
        for (table, key) in keys {
            out.push(read(&tx, *table, key).map_err(err)?);
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    async fn batch_put(&self, items: &[(Table, Key, Item)]) -> Result<(), PortError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut conn = self.db.lock()?;
        let tx = conn.transaction().map_err(err)?;
        for (table, key, item) in items {
            write(&tx, *table, key, item).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    async fn add_members(
        &self,
        table: Table,
        key: &Key,
        members: &[String],
        ttl: Option<u64>,
    ) -> Result<(), PortError> {
        let mut conn = self.db.lock()?;
        let tx = conn.transaction().map_err(err)?;
        add_to_set(&tx, table, key, members, ttl).map_err(err)?;
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let db = Db::in_memory().expect("db");
        sequencer_ports::conformance::state_store(&SqliteState::new(db), "t").await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.sqlite");
        let k = Key::new("p", "s");
        {
            let s = SqliteState::new(Db::open(&path).expect("open"));
            assert!(s
                .put_if_absent(Table::Epochs, &k, &Item::with_state("OPEN", "{}"))
                .await
                .expect("put"));
        }
        let s = SqliteState::new(Db::open(&path).expect("reopen"));
        assert_eq!(
            s.get(Table::Epochs, &k).await.expect("get"),
            Some(Item::with_state("OPEN", "{}"))
        );
    }

    #[tokio::test]
    async fn the_sweeper_deletes_a_bounded_pass_at_a_time_oldest_first() {
        let s = SqliteState::new(Db::in_memory().expect("db"));
        for i in 0..5u64 {
            let k = Key::new("e", format!("old{i}"));
            s.put(Table::Epochs, &k, &Item::data("{}").ttl(Some(100 + i)))
                .await
                .expect("put");
        }
        s.add_members(
            Table::Counters,
            &Key::new("c", "old"),
            &["a".into()],
            Some(90),
        )
        .await
        .expect("add");
        let young = Key::new("e", "young");
        s.put(Table::Epochs, &young, &Item::data("{}").ttl(Some(500)))
            .await
            .expect("put");
        let passes: Vec<u64> = (0..4)
            .map(|_| s.sweep_expired(200, 2).expect("sweep"))
            .collect();
        assert_eq!(
            passes,
            vec![2, 2, 2, 0],
            "at most 2 a pass, until none is left"
        );
        // Oldest first: the counter (90) went in the first pass, with its set.
        assert_eq!(
            s.get(Table::Counters, &Key::new("c", "old"))
                .await
                .expect("get"),
            None
        );
        let page = s.query(Table::Epochs, "e", None, 10).await.expect("query");
        assert_eq!(page.items.len(), 1, "only the young item is left");
        assert!(s.get(Table::Epochs, &young).await.expect("get").is_some());
    }

    #[tokio::test]
    async fn an_item_given_another_ttl_is_swept_by_its_own_and_a_stale_listing_goes() {
        let s = SqliteState::new(Db::in_memory().expect("db"));
        let moved = Key::new("e", "moved");
        let kept = Key::new("e", "kept");
        s.put(Table::Epochs, &moved, &Item::data("{}").ttl(Some(100)))
            .await
            .expect("put");
        // Rewritten to live longer: its partition is still listed under 100.
        s.put(Table::Epochs, &moved, &Item::data("{}").ttl(Some(900)))
            .await
            .expect("put");
        s.put(Table::Epochs, &kept, &Item::data("{}").ttl(Some(150)))
            .await
            .expect("put");
        assert_eq!(s.sweep_expired(200, 10).expect("sweep"), 1, "only `kept`");
        assert!(s.get(Table::Epochs, &moved).await.expect("get").is_some());
        assert_eq!(s.get(Table::Epochs, &kept).await.expect("get"), None);
        let listed: i64 =
            s.db.lock()
                .expect("lock")
                .query_row("SELECT COUNT(*) FROM expiry WHERE ttl < 200", [], |r| {
                    r.get(0)
                })
                .expect("count");
        assert_eq!(
            listed, 0,
            "the listings with nothing left to sweep are gone"
        );
        assert_eq!(s.sweep_expired(1000, 10).expect("sweep"), 1, "then `moved`");
    }

    #[tokio::test]
    async fn a_database_with_the_old_ttl_index_is_migrated_and_swept() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.sqlite");
        {
            // The schema before the `expiry` table: an index entry per item with a TTL.
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE items (
                    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
                    state TEXT, data TEXT NOT NULL, ttl INTEGER,
                    PRIMARY KEY (tbl, pk, sk)
                 ) WITHOUT ROWID;
                 CREATE INDEX items_by_ttl ON items (ttl) WHERE ttl IS NOT NULL;
                 INSERT INTO items VALUES ('epochs', 'e', 'old', NULL, '{}', 100);
                 INSERT INTO items VALUES ('epochs', 'e', 'young', NULL, '{}', 500);
                 INSERT INTO items VALUES ('epochs', 'e', 'forever', NULL, '{}', NULL);",
            )
            .expect("old schema");
        }
        let s = SqliteState::new(Db::open(&path).expect("migrates"));
        let index: i64 =
            s.db.lock()
                .expect("lock")
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'items_by_ttl'",
                    [],
                    |r| r.get(0),
                )
                .expect("count");
        assert_eq!(index, 0, "the old index is dropped");
        assert_eq!(s.sweep_expired(200, 10).expect("sweep"), 1);
        assert_eq!(s.sweep_expired(600, 10).expect("sweep"), 1);
        assert_eq!(s.sweep_expired(u64::MAX, 10).expect("sweep"), 0);
        let page = s.query(Table::Epochs, "e", None, 10).await.expect("query");
        assert_eq!(page.items.len(), 1, "only the item without a TTL is left");
        // Reopening migrates nothing twice.
        drop(s);
        let s = SqliteState::new(Db::open(&path).expect("reopens"));
        assert!(s
            .get(Table::Epochs, &Key::new("e", "forever"))
            .await
            .expect("get")
            .is_some());
    }

    #[tokio::test]
    async fn the_sweeper_deletes_what_expired_with_its_set_and_nothing_else() {
        let s = SqliteState::new(Db::in_memory().expect("db"));
        let old = Key::new("c", "old");
        let young = Key::new("c", "young");
        let forever = Key::new("e", "forever");
        s.add_members(Table::Counters, &old, &["a".into(), "b".into()], Some(100))
            .await
            .expect("add");
        s.add_members(Table::Counters, &young, &["a".into()], Some(300))
            .await
            .expect("add");
        s.put(Table::Epochs, &forever, &Item::data("{}"))
            .await
            .expect("put");
        assert_eq!(s.sweep_expired(200, 100).expect("sweep"), 1);
        assert_eq!(s.get(Table::Counters, &old).await.expect("get"), None);
        assert!(s.get(Table::Counters, &young).await.expect("get").is_some());
        assert!(s.get(Table::Epochs, &forever).await.expect("get").is_some());
        // The set went with its item: a new set under the old key starts empty.
        s.add_members(Table::Counters, &old, &["c".into()], None)
            .await
            .expect("add");
        assert_eq!(
            s.get(Table::Counters, &old)
                .await
                .expect("get")
                .map(|i| i.members),
            Some(vec!["c".to_string()])
        );
    }
}
