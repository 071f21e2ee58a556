//! `proof` Lambda behind a function URL: the proof and status API (`sequencer_api`: `GET
//! /v1/markets/{market}/epochs…` → JSON, the status page at `/` and `/status`) served by
//! `lambda_http`. Read-only; answers about anchored epochs are cached per execution environment.
//! EMF metric lines after each request. Environment: see the `sequencer_lambdas` crate docs, and
//! the status page's settings (`STATUS_*`, `sequencer_api::config`). The status summary shows the
//! depth of the three dead-letter queues. Ingress health: the replicas' heartbeat records are
//! read by an `IngressSource` passed here with `ApiState::with_ingress` (until one is, the page
//! says "not reported by this deployment").

use std::sync::Arc;

use lambda_http::Error;
use sequencer_api::{ApiConfig, ApiLimits, ApiState};
use sequencer_ports::Queue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let config = ApiConfig::from_env()?;
    let (p, queues) = Box::pin(sequencer_lambdas::pipeline_and_queues_from_env()).await?;
    let p = Arc::new(p);
    let dead_letters = queues
        .dead_letters
        .into_iter()
        .map(|q| Arc::new(q) as Arc<dyn Queue>)
        .collect();
    let state = ApiState::new(p.clone())
        .with_config(config)
        .with_dead_letters(dead_letters);
    let app = sequencer_api::app(state, &ApiLimits::default());
    let emf = sequencer_lambdas::emf::Emf::leaked("proof");
    lambda_http::run(emf.per_request(app, p)).await
}
