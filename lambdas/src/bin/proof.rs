//! `proof` Lambda behind a function URL: `GET /v1/markets/{market}/epochs…` → JSON
//! (`sequencer_handlers::proof`), the status page at `/` and `/status`. Read-only; answers about anchored epochs are cached
//! per execution environment. Environment: see the `sequencer_lambdas` crate docs.

use aws_lambda_events::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use sequencer_handlers::proof::{status_page, ProofApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    sequencer_lambdas::init_tracing();
    let p = sequencer_lambdas::static_pipeline().await?;
    let api: &'static ProofApi = Box::leak(Box::default());
    let emf = sequencer_lambdas::emf::Emf::leaked("proof");
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            let http = &e.payload.request_context.http;
            let path = e
                .payload
                .raw_path
                .as_deref()
                .or(http.path.as_deref())
                .unwrap_or("/");
            let query = e.payload.raw_query_string.as_deref().unwrap_or("");
            let mut out = LambdaFunctionUrlResponse::default();
            if let Some(html) = status_page(path) {
                out.status_code = 200;
                out.headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                out.body = Some(html.to_string());
                return Ok(out);
            }
            let started = std::time::Instant::now();
            let r = api
                .handle(p, http.method.as_deref().unwrap_or("GET"), path, query)
                .await;
            out.status_code = i64::from(r.status);
            out.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            out.headers
                .insert(CACHE_CONTROL, HeaderValue::from_static(r.cache_control()));
            out.body = Some(r.body_text());
            emf.emit(&p.counters, started.elapsed());
            Ok::<_, Error>(out)
        },
    ))
    .await
}
