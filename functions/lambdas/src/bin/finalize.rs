//! `finalize` Lambda: SQS event → `sequencer_functions::handlers::finalize::handle` → partial batch
//! failures (`ReportBatchItemFailures`). Environment: see the `sequencer_lambdas` crate docs.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_functions::handlers::{events::SqsEvent, finalize};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let p = sequencer_lambdas::static_pipeline().await?;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(finalize::handle(p, e.payload).await)
    }))
    .await
}
