//! Reads of the contract's per-epoch rules: the windows an epoch was released under
//! ([`ChainClient::epoch_windows`]), which fix its deadlines whatever `updateSubmissionWindows`
//! does afterwards.

use alloy::primitives::{Address, U256};
use tracing::{debug, warn};

use crate::{
    bindings::ProtocolState, error::is_transient, ChainClient, ChainError, Result, Revert, Windows,
};

impl ChainClient {
    /// `epochWindows(market, epoch)`: the windows stored with `epoch` at its release, in blocks.
    ///
    /// `None` when they are not available: the epoch is not released, or the contract has no such
    /// view (Powerloom's own protocol state contract, or one deployed before it existed). A caller
    /// then falls back to the market's current windows ([`Self::submission_window`]).
    pub async fn epoch_windows(&self, market: Address, epoch: u64) -> Result<Option<Windows>> {
        let contract = ProtocolState::new(self.protocol_state(), self.provider().clone());
        let cfg = self.config();
        let mut delay = cfg.backoff_initial;
        let mut attempt = 0u32;
        let r = loop {
            match contract
                .epochWindows(market, U256::from(epoch))
                .call()
                .await
                .map_err(ChainError::from_contract)
            {
                Err(ChainError::Rpc(e)) if is_transient(&e) && attempt < cfg.max_retries => {
                    attempt += 1;
                    warn!(what = "epochWindows", attempt, error = %e, "transient rpc error; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(cfg.backoff_max);
                }
                other => break other,
            }
        };
        match r {
            Ok(w) => Ok(Some(Windows {
                snapshot_blocks: to_u64(w.snapshotWindow, "epoch snapshot window")?,
                batch_blocks: to_u64(w.batchWindow, "epoch batch window")?,
            })),
            Err(ChainError::Revert(Revert::EpochNotReleased(_))) => Ok(None),
            // No `epochWindows` on this contract: the call reverts without data we know.
            Err(ChainError::Revert(Revert::Other(why))) => {
                debug!(%market, epoch, %why, "no per-epoch windows on this contract");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn to_u64(v: U256, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| ChainError::Decode(format!("{what} {v} does not fit in u64")))
}
