//! `epoch-manager` Lambda (EventBridge schedule, every minute, reserved concurrency 1): releases
//! the market's epochs with the epoch manager handler (`sequencer_handlers::epoch_manager`, the
//! same code `seqctl chain release-epochs` and the local runner run) over the chain adapter,
//! looping on the source head inside the invocation until shortly before its deadline. Its own
//! key (`KMS_KEY_ID` or `SIGNER_PRIVATE_KEY`), not the sequencer's. Environment: `RPC_URL`,
//! `PROTOCOL_STATE_ADDRESS`, the key; optional `SOURCE_RPC_URL` (default: the protocol chain);
//! the manager's own (`DATA_MARKET_ADDRESS`, `FINALITY_OFFSET`, `EPOCH_MANAGER_POLL_MS`,
//! `CATCH_UP`, `CATCH_UP_MAX_PER_SEC`, `SEND_DELAY_MS`, `RELEASE_TIMEOUT_SECS`: the table in
//! `handlers/src/epoch_manager/config.rs`). Each invocation answers with its counters, the
//! market's day and the days its releases started.

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
                    Some(tokio::time::Instant::now() + left),
                    std::future::pending(),
                )
                .await?;
            Ok::<_, Error>(serde_json::json!({
                "released": stats.released,
                "skipped": stats.skipped,
                "retried": stats.retried,
                "raced": stats.raced,
                "errors": stats.errors,
                "days_started": stats.days_started,
                "day": stats.day,
                "metrics": stats.prometheus(m.config().market),
            }))
        },
    ))
    .await
}
