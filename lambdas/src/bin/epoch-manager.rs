//! `epoch-manager` Lambda (EventBridge schedule, every minute, reserved concurrency 1): releases
//! the market's epochs with `sequencer_chain::EpochManager` — the library `seqctl chain
//! release-epochs` and the local runner use — looping on the source head inside the invocation
//! until shortly before its deadline. Its own key (`KMS_KEY_ID` or `SIGNER_PRIVATE_KEY`), not the
//! sequencer's. Environment: `RPC_URL`, `PROTOCOL_STATE_ADDRESS`, `DATA_MARKET_ADDRESS`, the key;
//! optional `SOURCE_RPC_URL` (default: the protocol chain), `FINALITY_OFFSET` (2),
//! `EPOCH_MANAGER_POLL_MS` (500), `CATCH_UP` (`in-order` or `skip`), `CATCH_UP_MAX_PER_SEC` (5),
//! `RELEASE_TIMEOUT_SECS` (20).

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_lambdas::epoch_manager_from_env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let (manager, release_timeout) = epoch_manager_from_env().await?;
    let manager: &'static tokio::sync::Mutex<_> =
        Box::leak(Box::new(tokio::sync::Mutex::new(manager)));
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<serde_json::Value>| async move {
            // A release in flight may take up to its timeout: stop polling that much earlier.
            let left =
                sequencer_lambdas::time_left(&e.context, release_timeout + Duration::from_secs(2));
            let mut m = manager.lock().await;
            let stats = m
                .run_until(
                    Some(std::time::Instant::now() + left),
                    std::future::pending(),
                )
                .await?;
            Ok::<_, Error>(serde_json::json!({
                "released": stats.released,
                "skipped": stats.skipped,
                "retried": stats.retried,
                "raced": stats.raced,
                "errors": stats.errors,
                "metrics": stats.prometheus(m.config().market),
            }))
        },
    ))
    .await
}
