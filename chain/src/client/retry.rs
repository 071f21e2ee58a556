//! The retry loop every RPC call goes through, and the one helper for a retried contract view.

use std::future::Future;

use alloy::sol_types::SolCall;
use tracing::warn;

use super::{ChainClient, Result};
use crate::{error::is_transient, ChainError};

impl ChainClient {
    /// Runs `f` until it succeeds, fails with a non-transient error, or `RPC_MAX_RETRIES`
    /// retries were spent; backoff doubles from `RPC_BACKOFF_INITIAL_MS` to `RPC_BACKOFF_MAX_MS`.
    /// The whole call stays within `RPC_CALL_BUDGET_MS`: an attempt waits at most what is left
    /// of it, and no retry starts that could not finish inside it ([`ChainError::CallBudget`],
    /// retryable), so an RPC outage never outlives the function that made the call.
    /// Errors (returned or logged) have the RPC URL scrubbed.
    pub(super) async fn retry<'a, T, F, Fut>(&'a self, what: &'static str, mut f: F) -> Result<T>
    where
        F: FnMut(&'a Self) -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        let budget = self.cfg.call_budget;
        let out_of_budget = || ChainError::CallBudget {
            what,
            budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
        };
        let started = tokio::time::Instant::now();
        let mut delay = self.cfg.backoff_initial;
        let mut attempt = 0u32;
        loop {
            let left = budget.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(out_of_budget());
            }
            let result = match tokio::time::timeout(left, f(self)).await {
                Ok(r) => r,
                Err(_) => return Err(out_of_budget()),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(ChainError::Rpc(e)) if is_transient(&e) && attempt < self.cfg.max_retries => {
                    attempt += 1;
                    let e = ChainError::Rpc(e).redacted(&self.redactor);
                    if started.elapsed() + delay >= budget {
                        warn!(what, attempt, error = %e, "transient rpc error; no time left in the call budget");
                        return Err(out_of_budget());
                    }
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
