//! [`Queue`] on SQLite, with SQS semantics.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use crate::db::{now_ms, Db};
use sequencer_ports::{ErrorKind, OutMessage, PortError, Queue, Received};

/// Settings of one embedded queue (the SQS queue attributes that matter).
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a received message stays invisible.
    pub visibility_timeout: Duration,
    /// A message received this many times without being deleted moves to the DLQ on its next
    /// receive (SQS `maxReceiveCount`); `None`: never.
    pub max_receive_count: Option<u32>,
    /// Name of the dead-letter queue.
    pub dlq: Option<String>,
    /// FIFO: one message group is delivered in order, blocked while a message of it is in flight;
    /// duplicate `dedup_id`s within five minutes are dropped.
    pub fifo: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: Some(5),
            dlq: None,
            fifo: false,
        }
    }
}

/// SQS FIFO's deduplication interval.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// One embedded queue in a [`Db`].
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Db,
    name: String,
    opts: QueueOptions,
}

impl SqliteQueue {
    /// The queue `name` in `db`.
    pub fn new(db: Db, name: impl Into<String>, opts: QueueOptions) -> Self {
        Self {
            db,
            name: name.into(),
            opts,
        }
    }

    /// Its dead-letter queue as a queue of its own (no redrive).
    pub fn dlq(&self) -> Option<SqliteQueue> {
        self.opts.dlq.as_ref().map(|d| {
            SqliteQueue::new(
                self.db.clone(),
                d.clone(),
                QueueOptions {
                    max_receive_count: None,
                    dlq: None,
                    ..self.opts.clone()
                },
            )
        })
    }

    fn try_receive(&self, max: usize) -> Result<Vec<Received>, PortError> {
        let mut conn = self.db.lock().map_err(unavailable)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let now = now_ms();
        let mut out = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, body, attrs, group_id, receive_count, visible_at FROM messages WHERE queue = ?1 ORDER BY id",
                )
                .map_err(sql)?;
            type Row = (i64, String, String, Option<String>, u32, i64);
            let rows: Vec<Row> = stmt
                .query_map(params![self.name], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            let mut blocked: HashSet<String> = HashSet::new();
            for (id, body, attrs, group, count, visible_at) in rows {
                if out.len() >= max {
                    break;
                }
                if visible_at > now {
                    if let (true, Some(g)) = (self.opts.fifo, &group) {
                        blocked.insert(g.clone());
                    }
                    continue;
                }
                if let Some(g) = &group {
                    if self.opts.fifo && blocked.contains(g) {
                        continue;
                    }
                }
                if let (Some(limit), Some(dlq)) = (self.opts.max_receive_count, &self.opts.dlq) {
                    if count >= limit {
                        let attrs = with_reason(&attrs, "max receive count exceeded");
                        tx.execute(
                            "UPDATE messages SET queue = ?1, attrs = ?2, receive_count = 0, visible_at = 0, receipt = NULL WHERE id = ?3",
                            params![dlq, attrs, id],
                        )
                        .map_err(sql)?;
                        continue;
                    }
                }
                let count = count + 1;
                let receipt = format!("{}:{id}:{count}:{now}", self.name);
                let until = now + self.opts.visibility_timeout.as_millis() as i64;
                tx.execute(
                    "UPDATE messages SET receive_count = ?1, visible_at = ?2, receipt = ?3 WHERE id = ?4",
                    params![count, until, receipt, id],
                )
                .map_err(sql)?;
                let attributes: BTreeMap<String, String> = match serde_json::from_str(&attrs) {
                    Ok(a) => a,
                    Err(e) => {
                        // Only a damaged database gets here (attributes are written as JSON by
                        // `send`). The message is poison: dead-letter it with the reason where
                        // there is a DLQ, otherwise fail loudly rather than deliver it without
                        // its attributes.
                        tracing::error!(queue = %self.name, id, error = %e, "corrupt message attributes");
                        let Some(dlq) = &self.opts.dlq else {
                            return Err(PortError::queue(
                                ErrorKind::Unavailable,
                                format!(
                                    "message {id} of {} has corrupt attributes: {e}",
                                    self.name
                                ),
                            ));
                        };
                        let reason = format!("corrupt attributes: {e}");
                        let attrs = serde_json::to_string(&BTreeMap::from([(
                            "dead_letter_reason".to_string(),
                            reason,
                        )]))
                        .map_err(|e| PortError::queue(ErrorKind::Unavailable, e.to_string()))?;
                        tx.execute(
                            "UPDATE messages SET queue = ?1, attrs = ?2, receive_count = 0, visible_at = 0, receipt = NULL WHERE id = ?3",
                            params![dlq, attrs, id],
                        )
                        .map_err(sql)?;
                        continue;
                    }
                };
                out.push(Received {
                    message_id: format!("{}-{id}", self.name),
                    receipt,
                    body,
                    attributes,
                    receive_count: count,
                    group_id: group,
                });
            }
        }
        tx.commit().map_err(sql)?;
        Ok(out)
    }
}

/// The message's attributes plus `dead_letter_reason`. Attributes that do not parse (a damaged
/// row) are replaced by the reason alone, and the reason says so.
fn with_reason(attrs: &str, reason: &str) -> String {
    let (mut a, reason) = match serde_json::from_str::<BTreeMap<String, String>>(attrs) {
        Ok(a) => (a, reason.to_string()),
        Err(e) => (
            BTreeMap::new(),
            format!("{reason}; corrupt attributes dropped: {e}"),
        ),
    };
    a.insert("dead_letter_reason".into(), reason);
    // A map of strings always serializes; the fallback keeps the reason even so.
    serde_json::to_string(&a)
        .unwrap_or_else(|_| r#"{"dead_letter_reason":"unserializable"}"#.into())
}

fn sql(e: rusqlite::Error) -> PortError {
    PortError::queue(ErrorKind::Unavailable, format!("sqlite: {e}"))
}

fn unavailable(e: crate::DbError) -> PortError {
    PortError::queue(ErrorKind::Unavailable, e.to_string())
}

#[async_trait]
impl Queue for SqliteQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: &[OutMessage]) -> Result<(), PortError> {
        let mut conn = self.db.lock().map_err(unavailable)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let now = now_ms();
        for m in messages {
            if self.opts.fifo {
                let (Some(_), Some(dedup)) = (&m.group_id, &m.dedup_id) else {
                    return Err(PortError::queue(
                        ErrorKind::Refused,
                        "FIFO queue messages need a group id and a dedup id",
                    ));
                };
                tx.execute(
                    "DELETE FROM dedup WHERE queue = ?1 AND at < ?2",
                    params![self.name, now - DEDUP_WINDOW_MS],
                )
                .map_err(sql)?;
                let fresh = tx
                    .execute(
                        "INSERT OR IGNORE INTO dedup (queue, dedup_id, at) VALUES (?1, ?2, ?3)",
                        params![self.name, dedup, now],
                    )
                    .map_err(sql)?;
                if fresh == 0 {
                    continue;
                }
            }
            if m.attributes.values().any(|v| v.is_empty()) {
                return Err(PortError::queue(
                    ErrorKind::Refused,
                    "empty attribute value",
                ));
            }
            let attrs = serde_json::to_string(&m.attributes)
                .map_err(|e| PortError::queue(ErrorKind::Refused, e.to_string()))?;
            tx.execute(
                "INSERT INTO messages (queue, body, attrs, group_id, visible_at) VALUES (?1, ?2, ?3, ?4, 0)",
                params![self.name, m.body, attrs, m.group_id],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.try_receive(max.clamp(1, 10))?;
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn ack(&self, receipts: &[String]) -> Result<(), PortError> {
        let conn = self.db.lock().map_err(unavailable)?;
        for r in receipts {
            conn.execute("DELETE FROM messages WHERE receipt = ?1", params![r])
                .map_err(sql)?;
        }
        Ok(())
    }

    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        let conn = self.db.lock().map_err(unavailable)?;
        conn.execute(
            "UPDATE messages SET visible_at = ?1 WHERE receipt = ?2",
            params![now_ms() + delay.as_millis() as i64, receipt],
        )
        .map_err(sql)?;
        Ok(())
    }

    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), PortError> {
        let Some(dlq) = &self.opts.dlq else {
            return Err(PortError::queue(
                ErrorKind::Refused,
                format!("queue {} has no dead-letter queue", self.name),
            ));
        };
        let conn = self.db.lock().map_err(unavailable)?;
        let attrs = with_reason(
            &serde_json::to_string(&message.attributes).unwrap_or_else(|_| "{}".into()),
            reason,
        );
        conn.execute(
            "UPDATE messages SET queue = ?1, attrs = ?2, receive_count = 0, visible_at = 0, receipt = NULL WHERE receipt = ?3",
            params![dlq, attrs, message.receipt],
        )
        .map_err(sql)?;
        Ok(())
    }

    async fn depth(&self) -> Result<u64, PortError> {
        let conn = self.db.lock().map_err(unavailable)?;
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                params![self.name],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(db: &Db, fifo: bool) -> (SqliteQueue, SqliteQueue) {
        let q = SqliteQueue::new(
            db.clone(),
            if fifo { "q.fifo" } else { "q" },
            QueueOptions {
                visibility_timeout: Duration::from_secs(5),
                max_receive_count: Some(3),
                dlq: Some(if fifo { "q-dlq.fifo" } else { "q-dlq" }.into()),
                fifo,
            },
        );
        let d = q.dlq().expect("dlq");
        (q, d)
    }

    #[tokio::test]
    async fn conformance_standard_and_fifo() {
        let db = Db::in_memory().expect("db");
        let (q, d) = pair(&db, false);
        sequencer_ports::conformance::queue(&q, &d, false).await;
        let (q, d) = pair(&db, true);
        sequencer_ports::conformance::queue(&q, &d, true).await;
    }

    #[tokio::test]
    async fn redrive_after_max_receives_and_restart_keeps_messages() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("q.sqlite");
        {
            let db = Db::open(&path).expect("open");
            let (q, _) = pair(&db, false);
            q.send(&[OutMessage::new("poison")]).await.expect("send");
            for _ in 0..3 {
                let got = q.receive(1, Duration::ZERO).await.expect("receive");
                assert_eq!(got.len(), 1);
                q.nack(&got[0].receipt, Duration::ZERO).await.expect("nack");
            }
            // Fourth receive: over maxReceiveCount, moved to the DLQ instead.
            assert!(q.receive(1, Duration::ZERO).await.expect("r").is_empty());
            q.send(&[OutMessage::new("kept")]).await.expect("send");
        }
        // A new process finds both where they were.
        let db = Db::open(&path).expect("reopen");
        let (q, d) = pair(&db, false);
        let dead = d.receive(10, Duration::ZERO).await.expect("dlq");
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0]
                .attributes
                .get("dead_letter_reason")
                .map(String::as_str),
            Some("max receive count exceeded")
        );
        let kept = q.receive(10, Duration::ZERO).await.expect("q");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].body, "kept");
    }

    #[tokio::test]
    async fn a_row_with_corrupt_attributes_is_dead_lettered_and_the_rest_delivered() {
        let db = Db::in_memory().expect("db");
        let (q, d) = pair(&db, false);
        q.send(&[
            OutMessage::new("damaged").attr("k", "v"),
            OutMessage::new("fine").attr("k", "v"),
        ])
        .await
        .expect("send");
        // Damage the first row as a torn page or a hand edit would.
        db.lock()
            .expect("lock")
            .execute(
                "UPDATE messages SET attrs = '{\"k\": ' WHERE body = 'damaged'",
                [],
            )
            .expect("damage");
        let got = q.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "fine");
        assert_eq!(got[0].attributes.get("k").map(String::as_str), Some("v"));
        let dead = d.receive(10, Duration::ZERO).await.expect("dlq");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, "damaged");
        let reason = dead[0]
            .attributes
            .get("dead_letter_reason")
            .expect("reason");
        assert!(reason.starts_with("corrupt attributes"), "{reason}");
    }

    #[tokio::test]
    async fn without_a_dlq_corrupt_attributes_fail_loudly() {
        let db = Db::in_memory().expect("db");
        let q = SqliteQueue::new(
            db.clone(),
            "plain",
            QueueOptions {
                visibility_timeout: Duration::from_secs(5),
                max_receive_count: None,
                dlq: None,
                fifo: false,
            },
        );
        q.send(&[OutMessage::new("damaged")]).await.expect("send");
        db.lock()
            .expect("lock")
            .execute("UPDATE messages SET attrs = 'not json'", [])
            .expect("damage");
        let err = q
            .receive(10, Duration::ZERO)
            .await
            .expect_err("must not deliver");
        assert!(err.to_string().contains("corrupt attributes"), "{err}");
    }

    #[tokio::test]
    async fn fifo_drops_duplicates_in_the_dedup_window() {
        let db = Db::in_memory().expect("db");
        let (q, _) = pair(&db, true);
        let m = OutMessage::new("x").fifo("g", "same");
        q.send(std::slice::from_ref(&m)).await.expect("send");
        q.send(&[m]).await.expect("send");
        assert_eq!(q.depth().await.expect("depth"), 1);
    }
}
