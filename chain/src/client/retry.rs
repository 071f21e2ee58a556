//! The retry loop every RPC call goes through, and the one helper for a retried contract view.

use std::future::Future;

use alloy::sol_types::SolCall;
use tracing::warn;

use super::{ChainClient, Result};
use crate::{error::is_transient, ChainError};

impl ChainClient {
    /// Runs `f` until it succeeds, fails with a non-transient error, or `RPC_MAX_RETRIES`
    /// retries were spent; backoff doubles from `RPC_BACKOFF_INITIAL_MS` to `RPC_BACKOFF_MAX_MS`.
    /// Errors (returned or logged) have the RPC URL scrubbed.
    pub(super) async fn retry<'a, T, F, Fut>(&'a self, what: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut(&'a Self) -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        let mut delay = self.cfg.backoff_initial;
        let mut attempt = 0u32;
        loop {
            match f(self).await {
                Ok(v) => return Ok(v),
                Err(ChainError::Rpc(e)) if is_transient(&e) && attempt < self.cfg.max_retries => {
                    attempt += 1;
                    let e = ChainError::Rpc(e).redacted(&self.redactor);
                    warn!(what, attempt, error = %e, "transient rpc error; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.backoff_max);
                }
                Err(e) => return Err(e.redacted(&self.redactor)),
            }
        }
    }

    /// Calls the contract view `call` (`eth_call` at the latest block) with [`Self::retry`];
    /// reverts come back typed.
    pub(super) async fn view<C>(&self, call: C) -> Result<C::Return>
    where
        C: SolCall + Clone + Send + Sync,
        C::Return: Send,
    {
        self.retry(C::SIGNATURE, |c| {
            let call = call.clone();
            async move {
                c.contract
                    .call_builder(&call)
                    .call()
                    .await
                    .map_err(ChainError::from_contract)
            }
        })
        .await
    }
}
