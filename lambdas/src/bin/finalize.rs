//! `finalize` Lambda: SQS `finalize` → `sequencer_handlers::finalize::handle` → partial batch
//! failures (`ReportBatchItemFailures`); EMF metric lines after each invocation
//! (`sequencer_lambdas::run_sqs`). Environment: see the `sequencer_lambdas` crate docs.

use sequencer_handlers::finalize;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sequencer_lambdas::run_sqs("finalize", finalize::handle).await
}
