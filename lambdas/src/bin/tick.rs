//! `tick` Lambda (EventBridge schedule, every minute): follows the chain head inside the
//! invocation until shortly before its deadline (`TICK_POLL_MS`, default 1000, between steps), so
//! epochs shorter than a minute are served. Environment: see the `sequencer_lambdas` crate docs.

use std::time::Duration;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_handlers::tick;

/// Stop this long before the invocation's deadline.
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let p = sequencer_lambdas::static_pipeline().await?;
    let poll = Duration::from_millis(
        std::env::var("TICK_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let emf = sequencer_lambdas::emf::Emf::leaked("tick");
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<serde_json::Value>| async move {
            let left = sequencer_lambdas::time_left(&e.context, MARGIN);
            let started = std::time::Instant::now();
            let report = tick::run(p, left, poll).await;
            emf.emit(&p.counters, started.elapsed());
            Ok::<_, Error>(serde_json::to_value(report?)?)
        },
    ))
    .await
}
