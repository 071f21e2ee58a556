//! Where the handlers read the time and wait. A module of its own, below both the records layer
//! (`records`, which stamps records with the time) and the pipeline context (`pipeline`, which
//! holds the clock and builds the records), so the records layer does not reach up into the
//! context for it; `pipeline` and the crate root re-export both names as before.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Where the handlers read the time and wait (record timestamps and expiries, the tick's loop):
/// the system clock in every deployment; the deterministic simulation (`sequencer-simulation`)
/// runs them on virtual time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}
