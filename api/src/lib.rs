//! The proof and status HTTP API: `GET`, JSON, over the queries of `sequencer_handlers::query`.
//! The same [`app`] is served by `lambda_http` in the `proof` Lambda (a function URL) and by
//! [`serve::serve`] (hyper) in the local runner.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/markets/{market}/epochs/{epoch}/submissions/{id}` | the submission's fate (`SubmissionView`): `included` with its proof, `accepted`, `not_batched`, `simulation`, `rejected` |
//! | `GET /v1/markets/{market}/epochs/{epoch}` | epoch status with batches (`EpochStatusView`) |
//! | `GET /v1/markets/{market}/epochs?before=&limit=` | recent epochs, newest first (`EpochListView`) |
//! | `GET /v1/markets/{market}/epochs/{epoch}/batches/{index}/document` | a batch document's exact bytes (what a proof is checked against; they hash to the batch CID) |
//! | `GET /v1/markets/{market}/status` | the live summary (`StatusView` and the page's [`ApiConfig`] under `page`): chain head, newest epoch and its age, release lag, recent epochs, anchor failures, dead-letter depth, ingress health, the newest day with rewards (`latestRewardsDay`) |
//! | `GET /v1/markets/{market}/epochs/{epoch}/rewards` | the epoch's rewards per slot: eligible, discarded with the CIDs (`EpochRewardsView`) |
//! | `GET /v1/markets/{market}/days/{day}/rewards` | the day's rewards per slot, the quota and the `updateRewards` commit (`DayRewardsView`) |
//! | `GET /v1/markets` | the market this deployment sequences |
//! | `GET /`, `/status` | the status page ([`STATUS_PAGE`]) |
//!
//! - [`params`]: the typed path and query values; each bad value is refused with its own code
//!   ([`codes`]) before any lookup.
//! - [`error`]: `{"error":{"code","message"}}` with the right status.
//! - [`config`]: the status page's settings (explorer and gateway links, poll interval) from
//!   the environment.
//! - [`ingress`]: where the summary's ingress health comes from ([`IngressSource`]).
//! - [`page`]: the status page, rendered once from its files and the vendored chart and hash
//!   libraries (no build step).
//! - [`with_limits`]: a request timeout (`503 unavailable`) and a limit on requests in flight
//!   (tower-http, tower); [`serve`] adds a header-read timeout and a connection limit where the
//!   runner serves it.
//!
//! Answers about an anchored epoch are final: cached in memory (bounded, by the queries) and sent
//! with `Cache-Control: public, max-age=31536000, immutable`, and so are batch documents (a CID
//! names its bytes); the live summary and everything else is `no-store`; the page is `no-cache`.

pub mod config;
pub mod error;
pub mod ingress;
pub mod page;
pub mod params;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sequencer_handlers::query::{
    Answer, IngressReport, LiveSources, Queries, StatusView, DEFAULT_LIMIT,
};
use sequencer_handlers::{rewards, Pipeline};
use sequencer_ports::Queue;
use serde::Serialize;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::normalize_path::NormalizePath;
use tower_http::timeout::TimeoutLayer;

pub use config::ApiConfig;
pub use error::{codes, ApiError};
pub use ingress::IngressSource;
pub use page::STATUS_PAGE;

/// Longest path served; anything longer is not one of ours (refused before routing).
pub const MAX_PATH_BYTES: usize = 256;

/// `Cache-Control` of a final answer.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of every other answer.
pub const NO_STORE: &str = "no-store";
/// `Cache-Control` of the status page: a browser asks again each time it loads it (a new
/// deployment's page shows at once).
pub const NO_CACHE: &str = "no-cache";

/// What the handlers answer from: the pipeline (its ports, market and counters), the queries with
/// their caches (one per process), the status page's settings, and what the live summary reads
/// besides the records (dead-letter queues, the ingress's health).
#[derive(Clone)]
pub struct ApiState {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The queries and their caches.
    pub queries: Arc<Queries>,
    /// The status page's settings.
    pub config: Arc<ApiConfig>,
    /// Dead-letter queues shown by the summary.
    pub live: LiveSources,
    /// The ingress's health, when this deployment has a source of it.
    pub ingress: Option<Arc<dyn IngressSource>>,
    rates: Arc<ingress::Rates>,
}

impl ApiState {
    /// State over `pipeline` with fresh caches, the default page settings, the pipeline's
    /// submissions DLQ as the dead-letter queue shown and no ingress source.
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        let live = LiveSources {
            dead_letters: vec![pipeline.ports.submissions_dlq.clone()],
        };
        Self {
            pipeline,
            queries: Arc::new(Queries::default()),
            config: Arc::new(ApiConfig::default()),
            live,
            ingress: None,
            rates: Arc::new(ingress::Rates::default()),
        }
    }

    /// With these page settings.
    pub fn with_config(mut self, config: ApiConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// With these dead-letter queues shown (every queue's, in a deployment).
    pub fn with_dead_letters(mut self, queues: Vec<Arc<dyn Queue>>) -> Self {
        self.live.dead_letters = queues;
        self
    }

    /// With a source of the ingress replicas' health.
    pub fn with_ingress(mut self, source: Arc<dyn IngressSource>) -> Self {
        self.ingress = Some(source);
        self
    }

    /// With these queries (e.g. another summary interval).
    pub fn with_queries(mut self, queries: Queries) -> Self {
        self.queries = Arc::new(queries);
        self
    }

    /// The ingress report: the source's replicas with rates filled in, or why not.
    async fn ingress_report(&self) -> IngressReport {
        let Some(source) = &self.ingress else {
            return IngressReport::NotWired;
        };
        match source.replicas().await {
            Ok(mut replicas) => {
                self.rates.fill(&mut replicas);
                IngressReport::Replicas(replicas)
            }
            Err(e) => {
                tracing::warn!(error = %e, "status: the ingress source failed");
                IngressReport::Failed(e)
            }
        }
    }
}

/// Limits every server of the API applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// A request not answered within this gets `503 unavailable` (waiting for a slot included).
    pub request_timeout: Duration,
    /// Requests handled at once; more wait (within their timeout).
    pub max_in_flight: usize,
}

impl Default for ApiLimits {
    /// 10 s (under the proof Lambda's 15 s timeout, well above a cold proof: a few store reads
    /// and one document per batch) and 64 requests in flight (each holds at most one epoch's
    /// submission ids).
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
        }
    }
}

/// The API's routes, without limits (merge other routes into it, then [`with_limits`]). A
/// trailing slash is ignored (`/status/` is `/status`).
pub fn router(state: ApiState) -> Router {
    let routes = Router::new()
        .route("/", get(status_page))
        .route("/status", get(status_page))
        .route("/v1/markets", get(markets))
        .route("/v1/markets/{market}/epochs", get(epochs))
        .route("/v1/markets/{market}/epochs/{epoch}", get(epoch))
        .route(
            "/v1/markets/{market}/epochs/{epoch}/submissions/{id}",
            get(submission),
        )
        .route(
            "/v1/markets/{market}/epochs/{epoch}/batches/{index}/document",
            get(batch_document),
        )
        .route("/v1/markets/{market}/status", get(status))
        .route(
            "/v1/markets/{market}/epochs/{epoch}/rewards",
            get(epoch_rewards),
        )
        .route("/v1/markets/{market}/days/{day}/rewards", get(day_rewards))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_long_paths,
        ))
        .with_state(state);
    // Routing happens inside: the trailing slash goes before a route is chosen.
    Router::new().fallback_service(NormalizePath::trim_trailing_slash(routes))
}

/// `app` with the limits: at most `max_in_flight` requests handled at once, each answered within
/// `request_timeout` (else `503 unavailable`, a JSON error like every other).
pub fn with_limits(app: Router, limits: &ApiLimits) -> Router {
    app.layer(GlobalConcurrencyLimitLayer::new(
        limits.max_in_flight.max(1),
    ))
    .layer(TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        limits.request_timeout,
    ))
    .layer(middleware::map_response(json_timeouts))
}

/// The API with its limits: what the proof Lambda and the runner serve.
pub fn app(state: ApiState, limits: &ApiLimits) -> Router {
    with_limits(router(state), limits)
}

/// A path longer than [`MAX_PATH_BYTES`] is not one of ours: refused before it is parsed.
async fn refuse_long_paths(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if req.uri().path().len() > MAX_PATH_BYTES {
        return refuse(&s, ApiError::not_found(codes::NOT_FOUND, "path too long"));
    }
    next.run(req).await
}

/// The timeout layer answers with an empty body: give it the API's JSON error.
async fn json_timeouts(r: Response) -> Response {
    let empty = axum::body::HttpBody::size_hint(r.body()).exact() == Some(0);
    if r.status() == StatusCode::SERVICE_UNAVAILABLE && empty {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "the request took too long; retry",
        )
        .into_response();
    }
    r
}

/// A successful answer: JSON, cacheable for ever when settled.
fn answer<T: Serialize>(a: Answer<T>) -> Response {
    let cache = if a.settled { IMMUTABLE } else { NO_STORE };
    ([(header::CACHE_CONTROL, cache)], Json(a.view)).into_response()
}

/// Counts an error answer by code (`proof_errors_total{code=…}`) and sends it.
fn refuse(state: &ApiState, e: ApiError) -> Response {
    state
        .pipeline
        .metrics
        .inc(&sequencer_handlers::metrics::PROOF_ERRORS, [e.code]);
    e.into_response()
}

fn respond<T: Serialize>(state: &ApiState, r: Result<Answer<T>, ApiError>) -> Response {
    match r {
        Ok(a) => answer(a),
        Err(e) => refuse(state, e),
    }
}

/// A path that did not deserialize: a segment that is not UTF-8 once percent-decoded is refused
/// with the code of the value it stands for.
fn path_rejection(r: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let text = error::clip(&r.body_text());
    let code = match &r {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::DeserializeError { key, .. } => match key.as_str() {
                "market" => codes::BAD_MARKET_ADDRESS,
                "epoch" => codes::BAD_EPOCH,
                "day" => codes::BAD_DAY,
                "id" => codes::BAD_SUBMISSION_ID,
                "index" => codes::BAD_BATCH_INDEX,
                _ => codes::NOT_FOUND,
            },
            _ => codes::NOT_FOUND,
        },
        _ => codes::NOT_FOUND,
    };
    if code == codes::NOT_FOUND {
        return ApiError::not_found(code, format!("bad path: {text}"));
    }
    ApiError::bad_request(code, format!("bad path: {text}"))
}

/// A query that did not deserialize: unknown or repeated parameters.
fn query_rejection(r: QueryRejection) -> ApiError {
    let text = r.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::bad_request(
        codes::BAD_QUERY,
        format!("bad query: {}", error::clip(detail)),
    )
}

/// The market of the path, if it is this deployment's.
fn our_market(state: &ApiState, market: params::Param<params::Market>) -> Result<(), ApiError> {
    let params::Market(m) = market.get()?;
    let ours = state.pipeline.config.market;
    if m != ours {
        return Err(ApiError::not_found(
            codes::UNKNOWN_MARKET,
            format!("this sequencer serves market {ours:#x}, not {m:#x}"),
        ));
    }
    Ok(())
}

async fn status_page() -> Response {
    (
        [(header::CACHE_CONTROL, NO_CACHE)],
        Html(STATUS_PAGE.as_str()),
    )
        .into_response()
}

/// The live summary with the page's settings: what an open status page polls.
#[derive(Serialize)]
struct StatusAnswer {
    #[serde(flatten)]
    status: Arc<StatusView>,
    page: Arc<ApiConfig>,
}

async fn status(
    State(s): State<ApiState>,
    path: Result<Path<params::MarketPath>, PathRejection>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        query.map_err(query_rejection)?;
        let status = s
            .queries
            .status(&s.pipeline, &s.live, s.ingress_report())
            .await?;
        Ok(Answer {
            view: StatusAnswer {
                status,
                page: s.config.clone(),
            },
            settled: false,
        })
    }
    .await;
    respond(&s, r)
}

async fn batch_document(
    State(s): State<ApiState>,
    path: Result<Path<params::BatchPath>, PathRejection>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        let params::Epoch(epoch) = p.epoch.get()?;
        let params::BatchIndex(index) = p.index.get()?;
        query.map_err(query_rejection)?;
        Ok::<_, ApiError>(s.queries.batch_document(&s.pipeline, epoch, index).await?)
    }
    .await;
    match r {
        // Settled: a CID names its bytes. JSON, byte for byte as stored (never re-encoded).
        Ok(a) => (
            [
                (header::CACHE_CONTROL, IMMUTABLE),
                (header::CONTENT_TYPE, "application/json"),
            ],
            a.view.bytes,
        )
            .into_response(),
        Err(e) => refuse(&s, e),
    }
}

async fn markets(
    State(s): State<ApiState>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = query {
        return refuse(&s, query_rejection(r));
    }
    answer(Answer {
        view: s.queries.markets(&s.pipeline),
        settled: false,
    })
}

async fn epochs(
    State(s): State<ApiState>,
    path: Result<Path<params::MarketPath>, PathRejection>,
    query: Result<Query<params::ListQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        let Query(q) = query.map_err(query_rejection)?;
        let before = q.before.map(params::Param::get).transpose()?;
        let limit = q.limit.map(params::Param::get).transpose()?;
        Ok(s.queries
            .epochs(
                &s.pipeline,
                before.map(|b| b.0),
                limit.map_or(DEFAULT_LIMIT, |l| l.0),
            )
            .await?)
    }
    .await;
    respond(&s, r)
}

async fn epoch(
    State(s): State<ApiState>,
    path: Result<Path<params::EpochPath>, PathRejection>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        let params::Epoch(epoch) = p.epoch.get()?;
        query.map_err(query_rejection)?;
        Ok(s.queries.epoch(&s.pipeline, epoch).await?)
    }
    .await;
    respond(&s, r)
}

async fn submission(
    State(s): State<ApiState>,
    path: Result<Path<params::SubmissionPath>, PathRejection>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        let params::SubmissionEpoch(epoch) = p.epoch.get()?;
        let params::SubmissionId(id) = p.id.get()?;
        query.map_err(query_rejection)?;
        Ok(s.queries.submission(&s.pipeline, epoch, &id).await?)
    }
    .await;
    respond(&s, r)
}

async fn epoch_rewards(
    State(s): State<ApiState>,
    path: Result<Path<params::EpochPath>, PathRejection>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        let params::Epoch(epoch) = p.epoch.get()?;
        query.map_err(query_rejection)?;
        s.pipeline
            .metrics
            .inc(&sequencer_handlers::metrics::PROOF_REQUESTS, []);
        Ok(rewards::epoch_view(&s.pipeline, epoch).await?)
    }
    .await;
    respond(&s, r)
}

async fn day_rewards(
    State(s): State<ApiState>,
    path: Result<Path<params::DayPath>, PathRejection>,
    query: Result<Query<params::NoQuery>, QueryRejection>,
) -> Response {
    let r = async {
        let Path(p) = path.map_err(path_rejection)?;
        our_market(&s, p.market)?;
        let params::Day(day) = p.day.get()?;
        query.map_err(query_rejection)?;
        s.pipeline
            .metrics
            .inc(&sequencer_handlers::metrics::PROOF_REQUESTS, []);
        Ok(rewards::day_view(&s.pipeline, day).await?)
    }
    .await;
    respond(&s, r)
}

async fn not_found(State(s): State<ApiState>, uri: Uri) -> Response {
    refuse(
        &s,
        ApiError::not_found(
            codes::NOT_FOUND,
            format!(
                "no route {}; try /v1/markets/{{market}}/status or /v1/markets/{{market}}/epochs[/{{epoch}}[/submissions/{{id}}]]",
                error::clip(uri.path())
            ),
        ),
    )
}

async fn method_not_allowed(State(s): State<ApiState>, method: Method) -> Response {
    refuse(
        &s,
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            format!("{method} is not served; use GET"),
        ),
    )
}
