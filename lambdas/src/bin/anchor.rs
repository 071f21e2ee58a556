//! `anchor` Lambda: SQS `anchor.fifo` → `sequencer_handlers::anchor::handle` → partial batch
//! failures (`ReportBatchItemFailures`); EMF metric lines after each invocation
//! (`sequencer_lambdas::run_sqs`). Environment: see the `sequencer_lambdas` crate docs.

use sequencer_handlers::anchor;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sequencer_lambdas::run_sqs("anchor", anchor::handle).await
}
