//! `verify` Lambda: SQS `submissions` → `sequencer_handlers::verify::handle` → partial batch
//! failures (`ReportBatchItemFailures`); EMF metric lines after each invocation
//! (`sequencer_lambdas::run_sqs`). Environment: see the `sequencer_lambdas` crate docs.

use sequencer_handlers::verify;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sequencer_lambdas::run_sqs("verify", verify::handle).await
}
