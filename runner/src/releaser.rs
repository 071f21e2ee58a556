//! The runner's epoch releases: the epoch manager handler (`sequencer_handlers::epoch_manager`,
//! the same code `seqctl chain release-epochs` and the cloud's `epoch-manager` function run) over
//! the chain adapter, on a task.

use std::sync::Arc;
use std::time::Duration;

use sequencer_chain::{Address, ChainClient};
use sequencer_handlers::epoch_manager::{EpochManager, EpochManagerConfig, Stats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running epoch manager.
pub struct Releaser {
    stop: CancellationToken,
    task: JoinHandle<Option<Stats>>,
}

/// Starts releasing `market`'s epochs, the first beginning at `first_begin` when none is released.
pub async fn spawn(
    client: ChainClient,
    market: Address,
    first_begin: u64,
    finality_offset: u64,
    poll: Duration,
) -> anyhow::Result<Releaser> {
    let mut cfg = EpochManagerConfig::new(market);
    cfg.finality_offset = finality_offset;
    cfg.poll_interval = poll;
    cfg.first_begin = Some(first_begin);
    let mut manager = EpochManager::new(Arc::new(client), None, cfg).await?;
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        match manager.run_until(None, s.cancelled_owned()).await {
            Ok(stats) => Some(stats),
            Err(e) => {
                tracing::error!(error = %e, "epoch manager stopped");
                None
            }
        }
    });
    Ok(Releaser { stop, task })
}

impl Releaser {
    /// Stops it; returns its counters.
    pub async fn stop(self) -> Option<Stats> {
        self.stop.cancel();
        self.task.await.ok().flatten()
    }
}
