//! `verify` Lambda: SQS event → `sequencer_functions::handlers::verify::handle` → partial batch
//! failures (`ReportBatchItemFailures`). Environment: see the `sequencer_lambdas` crate docs.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_functions::handlers::{events::SqsEvent, verify};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let p = sequencer_lambdas::static_pipeline().await?;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(verify::handle(p, e.payload).await)
    }))
    .await
}
