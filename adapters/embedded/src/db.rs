//! The SQLite file shared by the embedded state store and queues.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

/// Opening or using the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The connection mutex was poisoned by a panic elsewhere.
    #[error("database lock poisoned")]
    Poisoned,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
    state TEXT, data TEXT NOT NULL, ttl INTEGER,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
-- Which partitions hold items that expire when: one row per (TTL, partition), so the sweeper
-- finds what expired without an index entry per item (an entry per item, under random keys,
-- dirtied a page of its own for most items a verify commit wrote; see `note_expiry` in
-- state.rs).
CREATE TABLE IF NOT EXISTS expiry (
    ttl INTEGER NOT NULL, tbl TEXT NOT NULL, pk TEXT NOT NULL,
    PRIMARY KEY (ttl, tbl, pk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL, member TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL, body TEXT NOT NULL, attrs TEXT NOT NULL,
    group_id TEXT, receive_count INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL, receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, visible_at, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_receipt ON messages (receipt);
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL, dedup_id TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (queue, dedup_id)
) WITHOUT ROWID;
";

/// One SQLite connection behind a mutex. Every operation is one short transaction, so a single
/// connection serves the runner's tasks without contention worth a pool.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, DbError> {
        // WAL + NORMAL: committed transactions survive a killed process; see the module docs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        // Speed without giving up durability (measured by `runner/examples/pipeline_bench.rs`,
        // docs/benchmarks.md): a page cache that holds an epoch's working set (SQLite's default
        // is 2 MiB, so inserts under random keys read pages back from the OS), and checkpoints
        // every ~32 MiB of WAL instead of every 4 MiB (a page rewritten by many transactions is
        // copied into the database once per checkpoint, and the checkpoint's fsync is paid
        // eight times less often).
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "wal_autocheckpoint", 8_192)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.execute_batch(SCHEMA)?;
        migrate_ttl_index(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Connection>, DbError> {
        self.conn.lock().map_err(|_| DbError::Poisoned)
    }
}

/// A database made before the `expiry` table had an index entry per item with a TTL: its
/// partitions are listed in `expiry` and the index dropped, in one transaction (once).
fn migrate_ttl_index(conn: &Connection) -> Result<(), rusqlite::Error> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'items_by_ttl')",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO expiry (ttl, tbl, pk)
                 SELECT DISTINCT ttl, tbl, pk FROM items WHERE ttl IS NOT NULL;
             DROP INDEX items_by_ttl;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
