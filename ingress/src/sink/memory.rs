//! In-memory sink: keeps every message it acknowledges. Used by tests, the simulator and local
//! runs. Can be told to fail (whole calls or single entries) to exercise the dispatcher's retries.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Notify;

use super::{EntryResult, Envelope, EnvelopeMeta, SinkError, SubmissionSink};

/// One acknowledged message, as the queue would hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Message body: the exact `/collect` bytes.
    pub body: Vec<u8>,
    /// Attributes.
    pub meta: EnvelopeMeta,
}

/// Sink that stores messages in a vector.
#[derive(Default)]
pub struct MemorySink {
    stored: Mutex<Vec<StoredMessage>>,
    count: AtomicUsize,
    notify: Notify,
    keep: AtomicBool,
    down: AtomicBool,
    retry_first_entry_calls: AtomicUsize,
    calls: AtomicUsize,
}

impl MemorySink {
    /// A sink that keeps message bodies (tests).
    pub fn new() -> Self {
        let s = Self::default();
        s.keep.store(true, Ordering::Relaxed);
        s
    }

    /// A sink that only counts (benchmarks: no memory growth).
    pub fn counting() -> Self {
        Self::default()
    }

    /// While `true`, every call fails with a transport error (an unreachable queue).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next `n` calls report their first entry as failed and retryable.
    pub fn fail_first_entry_of_next_calls(&self, n: usize) {
        self.retry_first_entry_calls.store(n, Ordering::SeqCst);
    }

    /// Messages acknowledged so far.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether nothing was acknowledged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch calls made (successful or not).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Copy of the stored messages.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `n` messages were acknowledged or `timeout` passes; returns the count.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let have = self.len();
            if have >= n {
                return have;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len();
            }
        }
    }
}

impl SubmissionSink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn send_batch<'a>(
        &'a self,
        batch: &'a [Envelope],
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, SinkError>> {
        async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::Transport("memory sink is down".into()));
            }
            let fail_first = self
                .retry_first_entry_calls
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let mut results = Vec::with_capacity(batch.len());
            let mut accepted = 0;
            {
                let keep = self.keep.load(Ordering::Relaxed);
                let mut stored = self
                    .stored
                    .lock()
                    .map_err(|_| SinkError::Server("poisoned".into()))?;
                for (i, env) in batch.iter().enumerate() {
                    if fail_first && i == 0 {
                        results.push(EntryResult::Retry("injected"));
                        continue;
                    }
                    if keep {
                        stored.push(StoredMessage {
                            body: env.raw.clone(),
                            meta: env.meta.clone(),
                        });
                    }
                    accepted += 1;
                    results.push(EntryResult::Ok);
                }
            }
            self.count.fetch_add(accepted, Ordering::SeqCst);
            self.notify.notify_waiters();
            Ok(results)
        }
        .boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        async move {
            if self.down.load(Ordering::SeqCst) {
                Err(SinkError::Transport("memory sink is down".into()))
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}
