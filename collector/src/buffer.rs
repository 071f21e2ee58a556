//! The bounded buffer between the gRPC side and the upstream writer.
//!
//! A submission is either in the buffer, written upstream, or counted as dropped with its
//! reason; nothing leaves it silently. The bound is a count of messages (each at most
//! [`sequencer_core::collect::MAX_MESSAGE_BYTES`]), so the memory it can hold is bounded too:
//! the default 10 000 × 16 KiB worst case is 160 MiB, real submissions (< 1 KiB) about 10 MiB.
//! A full buffer refuses the submission (gRPC `RESOURCE_EXHAUSTED`), and the node retries it;
//! a message older than the maximum age is dropped when it reaches the head (`expired`), since
//! its epoch's window has closed long before and the sequencer would reject it as late.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics::Stats;

/// One `/collect` message waiting to be written.
#[derive(Debug, Clone)]
pub struct Item {
    /// The exact bytes: UUID then the JSON object.
    pub bytes: Vec<u8>,
    /// When the gRPC side took it.
    pub at: Instant,
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// At capacity.
    Full,
    /// Shutting down.
    Closed,
}

/// Bounded FIFO with a wake-up for the writer.
#[derive(Debug)]
pub struct Buffer {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
    max_age: Duration,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Item>,
    closed: bool,
}

impl Buffer {
    /// A buffer of at most `capacity` messages, each dropped once older than `max_age`.
    pub fn new(capacity: usize, max_age: Duration, stats: Arc<Stats>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            max_age,
            stats,
        }
    }

    /// Capacity in messages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages waiting.
    pub fn depth(&self) -> usize {
        self.lock().items.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere while holding it; the queue itself is
        // still consistent (every operation is a single push or pop).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `bytes`; refused when full or closed (the caller counts and answers it).
    pub fn push(&self, bytes: Vec<u8>) -> Result<(), Refused> {
        let depth = {
            let mut g = self.lock();
            if g.closed {
                return Err(Refused::Closed);
            }
            if g.items.len() >= self.capacity {
                return Err(Refused::Full);
            }
            g.items.push_back(Item {
                bytes,
                at: Instant::now(),
            });
            g.items.len()
        };
        self.stats.depth(depth);
        self.notify.notify_one();
        Ok(())
    }

    /// Puts an item that could not be written back at the head, keeping its age.
    pub fn requeue(&self, item: Item) {
        let depth = {
            let mut g = self.lock();
            g.items.push_front(item);
            g.items.len()
        };
        self.stats.depth(depth);
        self.notify.notify_one();
    }

    /// The next item that is not too old (older ones are dropped and counted), waiting for one;
    /// `None` once closed and empty.
    pub async fn pop(&self) -> Option<Item> {
        loop {
            let notified = self.notify.notified();
            {
                let mut g = self.lock();
                while let Some(item) = g.items.pop_front() {
                    if item.at.elapsed() > self.max_age {
                        self.stats.dropped("expired");
                        continue;
                    }
                    self.stats.depth(g.items.len());
                    return Some(item);
                }
                self.stats.depth(0);
                if g.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Refuses new pushes; `pop` drains what is left, then returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Empties the buffer, counting each message as dropped for `reason`; returns how many.
    pub fn drop_all(&self, reason: &'static str) -> usize {
        let n = {
            let mut g = self.lock();
            let n = g.items.len();
            g.items.clear();
            n
        };
        for _ in 0..n {
            self.stats.dropped(reason);
        }
        self.stats.depth(0);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_fifo_refuses_when_full_and_drops_expired() {
        let stats = Arc::new(Stats::default());
        let b = Buffer::new(2, Duration::from_millis(50), stats.clone());
        b.push(vec![1]).expect("1");
        b.push(vec![2]).expect("2");
        assert_eq!(b.push(vec![3]), Err(Refused::Full));
        let first = b.pop().await.expect("pop");
        assert_eq!(first.bytes, vec![1]);
        b.requeue(first);
        assert_eq!(b.depth(), 2);
        assert_eq!(b.pop().await.expect("pop").bytes, vec![1]);
        tokio::time::sleep(Duration::from_millis(80)).await;
        b.push(vec![4]).expect("4");
        // [2] expired at the head; [4] is fresh.
        assert_eq!(b.pop().await.expect("pop").bytes, vec![4]);
        b.push(vec![5]).expect("5");
        b.close();
        assert_eq!(b.push(vec![6]), Err(Refused::Closed));
        assert_eq!(b.drop_all("shutdown"), 1);
        assert!(b.pop().await.is_none());
        let c = stats.counts();
        assert_eq!((c.dropped["expired"], c.dropped["shutdown"]), (1, 1));
    }
}
