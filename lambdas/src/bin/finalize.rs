//! `finalize` Lambda: SQS event → `sequencer_handlers::finalize::handle` → partial batch
//! failures (`ReportBatchItemFailures`); EMF metric lines after each invocation. Environment: see the `sequencer_lambdas` crate docs.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_handlers::{finalize, sqs::events::SqsEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let p = sequencer_lambdas::static_pipeline().await?;
    let emf = sequencer_lambdas::emf::Emf::leaked("finalize");
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| async move {
        let started = std::time::Instant::now();
        let response = finalize::handle(p, e.payload).await;
        emf.emit(&p.counters, started.elapsed());
        Ok::<_, Error>(response)
    }))
    .await
}
