//! `tick` Lambda (EventBridge schedule, every minute): follows the chain head inside the
//! invocation until shortly before its deadline (`TICK_POLL_MS`, default 1000, between steps), so
//! epochs shorter than a minute are served; EMF metric lines after each invocation. A failed step
//! does not end the invocation (`tick::run` counts it in `tick_step_failures_total` and goes on);
//! the invocation reports failure only when every one of its steps failed, and its report says
//! how many failed otherwise. Environment: see the `sequencer_lambdas` crate docs.

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_handlers::tick;

/// Stop this long before the invocation's deadline.
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let (p, emf) = sequencer_lambdas::static_pipeline("tick").await?;
    let poll = Duration::from_millis(
        std::env::var("TICK_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<serde_json::Value>| async move {
            let left = sequencer_lambdas::time_left(&e.context, MARGIN);
            let started = std::time::Instant::now();
            // Err only when every step failed: the invocation is then reported failed.
            let report = tick::run(p, left, poll).await;
            emf.invocation_done(p, started.elapsed());
            Ok::<_, Error>(serde_json::to_value(report?)?)
        },
    ))
    .await
}
