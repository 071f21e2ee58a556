//! [`StateStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::{Db, DbError};
use sequencer_ports::{
    BoundedAdd, ErrorKind, Item, Key, Page, PortError, StateStore, Table, Transition,
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
}

impl From<DbError> for PortError {
    fn from(e: DbError) -> Self {
        PortError::state(ErrorKind::Unavailable, e.to_string())
    }
}

fn err(e: rusqlite::Error) -> PortError {
    PortError::state(ErrorKind::Unavailable, format!("sqlite: {e}"))
}

fn read(
    conn: &rusqlite::Connection,
    table: Table,
    key: &Key,
) -> Result<Option<Item>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT state, data, ttl FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3",
    )?
    .query_row(params![table.name(), key.pk, key.sk], |r| {
        Ok(Item {
            state: r.get(0)?,
            data: r.get(1)?,
            ttl: r.get::<_, Option<i64>>(2)?.map(|t| t.max(0) as u64),
        })
    })
    .optional()
}

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
        item.ttl.map(|t| t.min(i64::MAX as u64) as i64)
    ])?;
    Ok(())
}

#[async_trait]
impl StateStore for SqliteState {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        let conn = self.db.lock()?;
        read(&conn, table, key).map_err(err)
    }

    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        let conn = self.db.lock()?;
        write(&conn, table, key, item).map_err(err)
    }

    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        let conn = self.db.lock()?;
        let n = conn
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
                    item.ttl.map(|t| t.min(i64::MAX as u64) as i64)
                ])
            })
            .map_err(err)?;
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
        tx.prepare_cached("INSERT INTO members (tbl, pk, sk, member) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![table.name(), key.pk, key.sk, member]))
            .map_err(err)?;
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
        Ok(Page { items, next })
    }

    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        let conn = self.db.lock()?;
        conn.prepare_cached("DELETE FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")
            .and_then(|mut s| s.execute(params![table.name(), key.pk, key.sk]))
            .map_err(err)?;
        Ok(())
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
}
