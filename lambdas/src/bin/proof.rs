//! `proof` Lambda behind a function URL: the proof and status API (`sequencer_api`: `GET
//! /v1/markets/{market}/epochs…` → JSON, the status page at `/` and `/status`) served by
//! `lambda_http`. Read-only; answers about anchored epochs are cached per execution environment.
//! EMF metric lines after each request. Environment: see the `sequencer_lambdas` crate docs.

use std::sync::Arc;

use lambda_http::Error;
use sequencer_api::{ApiLimits, ApiState};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let emf = sequencer_lambdas::emf::Emf::install("proof")?;
    let p = Arc::new(Box::pin(sequencer_lambdas::pipeline_from_env()).await?);
    let app = sequencer_api::app(ApiState::new(p.clone()), &ApiLimits::default());
    lambda_http::run(emf.per_request(app, p)).await
}
