//! `proof` (a Lambda behind a function URL; the local runner serves the same handler): what
//! snapshotters and validators ask the sequencer, JSON over HTTP, read-only over the ports.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/markets/{market}/epochs/{epoch}/submissions/{id}` | the submission's fate: `included` (batch, leaf, 32 siblings, `roothash`, anchoring tx and block), `accepted` (not yet anchored, with the proof once finalized), `not_batched`, `simulation`, `rejected` (reason and when) |
//! | `GET /v1/markets/{market}/epochs/{epoch}` | epoch status: release block, window, state, counts accepted / rejected by reason, batches with CIDs, both roots and transactions |
//! | `GET /v1/markets/{market}/epochs?before=&limit=` | recent epochs, newest first; `next_before` pages on |
//! | `GET /v1/markets` | the market this deployment sequences |
//! | `GET /` or `/status` | the status page ([`STATUS_PAGE`]) |
//!
//! Input is validated before any lookup; errors are `{"error":{"code":…,"message":…}}` with a
//! stable code and the right status ([`codes`]). Answers about an `ANCHORED` epoch never change,
//! so they are cached in memory ([`ProofApi`], bounded) and marked cacheable for HTTP caches.
//!
//! Proofs are rebuilt from the batch documents (the content store), the same bytes anyone can
//! fetch by the CIDs on chain; a finalized epoch's submission-id lists are kept in a small cache
//! so proving many ids of one epoch reads each document once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sequencer_core::finalize::BatchDocument;
use sequencer_core::proof::{prove_inclusion, EpochBatch};
use sequencer_core::{Address, B256};
use serde_json::{json, Value};

use crate::pipeline::{parse, Pipeline, PipelineError};
use crate::records::{self, state, BatchRecord, EpochCounts, EpochRecord, Receipt, TickCursor};
use sequencer_ports::{query_all, Table};

/// Default page size of the epoch list.
pub const DEFAULT_LIMIT: u64 = 20;
/// Largest page of the epoch list: one state-store query of at most this many items.
pub const MAX_LIMIT: u64 = 100;
/// Cached responses. Each is a few KiB (a proof is 32 hashes), so 4096 stay under ~16 MiB, well
/// inside the smallest Lambda memory size, and cover every submission of a busy epoch.
pub const CACHE_RESPONSES: usize = 4096;
/// Finalized epochs whose submission-id lists are kept (each up to the epoch's ids, ~40 B each).
pub const CACHE_EPOCHS: usize = 8;
/// Longest path accepted; anything longer is not one of ours (checked before parsing).
pub const MAX_PATH_BYTES: usize = 256;

/// The status page (plain HTML, CSS and a little JavaScript over this API): recent epochs at a
/// glance, one epoch's batches, a submission's fate. Served at `/` and `/status` next to the API.
pub const STATUS_PAGE: &str = include_str!("status.html");

/// The status page, when `path` asks for it.
pub fn status_page(path: &str) -> Option<&'static str> {
    matches!(path, "/" | "/status" | "/status/").then_some(STATUS_PAGE)
}

/// Stable error codes.
pub mod codes {
    /// The market is not a 20-byte hex address.
    pub const BAD_MARKET_ADDRESS: &str = "bad_market_address";
    /// A well-formed market this deployment does not sequence.
    pub const UNKNOWN_MARKET: &str = "unknown_market";
    /// The epoch is not a positive integer.
    pub const BAD_EPOCH: &str = "bad_epoch";
    /// No such epoch recorded.
    pub const UNKNOWN_EPOCH: &str = "unknown_epoch";
    /// The submission id is not a UUID.
    pub const BAD_SUBMISSION_ID: &str = "bad_submission_id";
    /// No receipt for this id in this epoch.
    pub const UNKNOWN_SUBMISSION: &str = "unknown_submission";
    /// A query parameter is malformed or unknown.
    pub const BAD_QUERY: &str = "bad_query";
    /// No such route.
    pub const NOT_FOUND: &str = "not_found";
    /// Only GET (and HEAD) are served.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// A store or the chain failed; retry.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Stored data is inconsistent (a bug or tampering).
    pub const INTERNAL: &str = "internal";
}

/// One answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// The answer is final (an anchored epoch): HTTP caches may keep it.
    pub immutable: bool,
}

impl ApiResponse {
    fn ok(body: Value, immutable: bool) -> Self {
        Self {
            status: 200,
            body,
            immutable,
        }
    }

    fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": {"code": code, "message": message.into()}}),
            immutable: false,
        }
    }

    /// `Cache-Control` for this answer.
    pub fn cache_control(&self) -> &'static str {
        if self.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-store"
        }
    }

    /// The body as text.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }
}

impl From<PipelineError> for ApiResponse {
    fn from(e: PipelineError) -> Self {
        if e.is_retryable() {
            tracing::warn!(error = %e, "proof API: a port failed");
            ApiResponse::error(503, codes::UNAVAILABLE, e.to_string())
        } else {
            tracing::error!(error = %e, "proof API: inconsistent data");
            ApiResponse::error(500, codes::INTERNAL, e.to_string())
        }
    }
}

/// A bounded map with first-in-first-out eviction (entries never change once inserted, so
/// recency buys little over insertion order).
#[derive(Debug)]
struct Bounded<V> {
    cap: usize,
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V: Clone> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, k: &str) -> Option<V> {
        self.map.get(k).cloned()
    }

    fn insert(&mut self, k: String, v: V) {
        if self.cap == 0 || self.map.contains_key(&k) {
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(k.clone());
        self.map.insert(k, v);
    }
}

/// An epoch's batches with their documents' submission ids, in order.
type EpochLeaves = Arc<Vec<(String, BatchRecord, Vec<String>)>>;

/// The handler with its caches; build one per process (a Lambda cold start, the runner).
#[derive(Debug)]
pub struct ProofApi {
    responses: Mutex<Bounded<Value>>,
    leaves: Mutex<Bounded<EpochLeaves>>,
}

impl Default for ProofApi {
    fn default() -> Self {
        Self::with_capacity(CACHE_RESPONSES, CACHE_EPOCHS)
    }
}

/// A parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Submission(u64, String),
    Epoch(u64),
    Epochs { before: Option<u64>, limit: u64 },
    Markets,
}

impl ProofApi {
    /// With explicit cache sizes (0 disables a cache).
    pub fn with_capacity(responses: usize, epochs: usize) -> Self {
        Self {
            responses: Mutex::new(Bounded::new(responses)),
            leaves: Mutex::new(Bounded::new(epochs)),
        }
    }

    /// Cached responses right now (tests, metrics).
    pub fn cached(&self) -> usize {
        self.responses.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    /// Answers one request. `path` is the URL path, `query` the raw query string (no `?`).
    pub async fn handle(&self, p: &Pipeline, method: &str, path: &str, query: &str) -> ApiResponse {
        if !method.eq_ignore_ascii_case("GET") && !method.eq_ignore_ascii_case("HEAD") {
            return ApiResponse::error(
                405,
                codes::METHOD_NOT_ALLOWED,
                format!("{method} is not served; use GET"),
            );
        }
        let route = match parse_route(p, path, query) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let key = match &route {
            Route::Submission(e, id) => Some(format!("s/{e}/{id}")),
            Route::Epoch(e) => Some(format!("e/{e}")),
            Route::Epochs { .. } | Route::Markets => None,
        };
        if let Some(k) = &key {
            if let Some(hit) = self.responses.lock().ok().and_then(|c| c.get(k)) {
                p.counters.inc("proof_cache_hits_total");
                return ApiResponse::ok(hit, true);
            }
        }
        p.counters.inc("proof_requests_total");
        let answer = match route {
            Route::Submission(epoch, id) => self.submission(p, epoch, &id).await,
            Route::Epoch(epoch) => epoch_status(p, epoch).await,
            Route::Epochs { before, limit } => epoch_list(p, before, limit).await,
            Route::Markets => Ok(ApiResponse::ok(
                json!({"markets": [format!("{:#x}", p.config.market)]}),
                false,
            )),
        };
        let answer = answer.unwrap_or_else(ApiResponse::from);
        if answer.status >= 400 {
            p.counters.inc(&format!(
                "proof_errors_total{{code={}}}",
                error_code(&answer)
            ));
        }
        if let (Some(k), true) = (key, answer.immutable && answer.status == 200) {
            if let Ok(mut c) = self.responses.lock() {
                c.insert(k, answer.body.clone());
            }
        }
        answer
    }

    async fn submission(
        &self,
        p: &Pipeline,
        epoch: u64,
        id: &str,
    ) -> Result<ApiResponse, PipelineError> {
        let market = p.config.market;
        let receipt = match p
            .ports
            .state
            .get(Table::Receipts, &records::receipt_key(&market, epoch, id))
            .await?
        {
            Some(i) => parse::<Receipt>("receipt", &i.data)?,
            None => {
                return Ok(match read_epoch_record(p, epoch).await? {
                    None => unknown_epoch(epoch),
                    Some(_) => ApiResponse::error(
                        404,
                        codes::UNKNOWN_SUBMISSION,
                        format!("no submission {id} was received for epoch {epoch}"),
                    ),
                })
            }
        };
        let mut body = json!({
            "dataMarket": format!("{market:#x}"),
            "epochId": epoch,
            "submissionId": id,
            "projectId": receipt.project,
            "slotId": receipt.slot,
            "outcome": receipt.outcome,
            "at_ms": receipt.at_ms,
        });
        match receipt.outcome.as_str() {
            "accepted" => {}
            "simulation" => {
                body["fate"] = json!("simulation");
                body["message"] = json!("accepted as a simulation submission (liveness); simulation submissions are never batched");
                // A receipt never changes once written.
                return Ok(ApiResponse::ok(body, true));
            }
            _ => {
                body["fate"] = json!("rejected");
                body["reason"] = json!(receipt.reason);
                body["detail"] = json!(receipt.detail);
                body["message"] = json!(format!(
                    "rejected: {}",
                    receipt.reason.as_deref().unwrap_or("unknown reason")
                ));
                return Ok(ApiResponse::ok(body, true));
            }
        }
        let Some((st, rec)) = read_epoch_record(p, epoch).await? else {
            body["fate"] = json!("accepted");
            body["message"] = json!("accepted; the epoch is not recorded (yet)");
            return Ok(ApiResponse::ok(body, false));
        };
        body["epochState"] = json!(st);
        match st.as_str() {
            state::FINALIZED | state::ANCHORED | state::ANCHOR_FAILED => {}
            _ => {
                body["fate"] = json!("accepted");
                body["message"] = json!(format!(
                    "accepted; the epoch is {st}, not finalized yet: no batch or proof yet"
                ));
                return Ok(ApiResponse::ok(body, false));
            }
        }
        let leaves = self.leaves(p, epoch, &st).await?;
        let refs: Vec<EpochBatch> = leaves
            .iter()
            .map(|(_, b, ids)| EpochBatch {
                index: b.index,
                cid: b.cid.clone(),
                roothash: b.roothash.parse().unwrap_or(B256::ZERO),
                submission_ids: ids,
                anchor_tx: b.tx_hash.as_deref().and_then(|t| t.parse().ok()),
            })
            .collect();
        let Some(proof) = prove_inclusion(&format!("{market:#x}"), epoch, &refs, id) else {
            body["fate"] = json!("not_batched");
            let below = rec.below_minimum.contains(&receipt.project);
            body["message"] = json!(if below {
                "accepted, but its project had fewer submissions than the minimum and was not finalized"
            } else {
                "accepted, but listed in no batch (another submission held its project and slot)"
            });
            return Ok(ApiResponse::ok(body, st == state::ANCHORED));
        };
        let (bst, batch, _) = &leaves[(proof.batch_index as usize).saturating_sub(1)];
        let anchored = bst == state::ANCHORED && batch.tx_hash.is_some();
        body["fate"] = json!(if anchored { "included" } else { "accepted" });
        body["message"] = json!(if anchored {
            "included and anchored: verify the proof against the batch document and the chain"
        } else if st == state::ANCHOR_FAILED {
            "batched, but anchoring the epoch failed"
        } else {
            "batched; not anchored yet"
        });
        body["batch"] = batch_json(bst, batch);
        body["anchor"] = json!({"txHash": batch.tx_hash, "block": batch.block});
        body["proof"] = serde_json::to_value(&proof).unwrap_or(Value::Null);
        Ok(ApiResponse::ok(body, st == state::ANCHORED && anchored))
    }

    /// A finalized epoch's batches and their documents' ids (cached once anchored).
    async fn leaves(
        &self,
        p: &Pipeline,
        epoch: u64,
        epoch_state: &str,
    ) -> Result<EpochLeaves, PipelineError> {
        let key = epoch.to_string();
        if let Some(hit) = self.leaves.lock().ok().and_then(|c| c.get(&key)) {
            return Ok(hit);
        }
        let mut out = Vec::new();
        for (st, b) in crate::finalize::batches(p, epoch).await? {
            let bytes = p.ports.content.get(&b.cid).await?.ok_or_else(|| {
                PipelineError::NotReady(format!(
                    "batch {} ({}) is not in the content store",
                    b.index, b.cid
                ))
            })?;
            let doc: BatchDocument = serde_json::from_slice(&bytes)
                .map_err(|e| PipelineError::Corrupt(format!("batch document {}: {e}", b.cid)))?;
            out.push((st, b, doc.submission_ids));
        }
        let out = Arc::new(out);
        let settled = out.iter().all(|(st, _, _)| st == state::ANCHORED);
        if epoch_state == state::ANCHORED && settled {
            if let Ok(mut c) = self.leaves.lock() {
                c.insert(key, out.clone());
            }
        }
        Ok(out)
    }
}

fn error_code(r: &ApiResponse) -> String {
    r.body["error"]["code"]
        .as_str()
        .unwrap_or("unknown")
        .to_string()
}

fn unknown_epoch(epoch: u64) -> ApiResponse {
    ApiResponse::error(
        404,
        codes::UNKNOWN_EPOCH,
        format!("epoch {epoch} is not recorded by this sequencer (not released, or expired)"),
    )
}

/// Validates the whole request before any lookup.
fn parse_route(p: &Pipeline, path: &str, query: &str) -> Result<Route, ApiResponse> {
    if path.len() > MAX_PATH_BYTES {
        return Err(ApiResponse::error(404, codes::NOT_FOUND, "path too long"));
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let not_found = || {
        ApiResponse::error(
            404,
            codes::NOT_FOUND,
            format!(
                "no route {path}; try /v1/markets/{{market}}/epochs[/{{epoch}}[/submissions/{{id}}]]"
            ),
        )
    };
    if parts.as_slice() == ["", "v1", "markets"] {
        return match parse_query(query)?.first() {
            None => Ok(Route::Markets),
            Some((k, _)) => Err(ApiResponse::error(
                400,
                codes::BAD_QUERY,
                format!("unknown query parameter {k:?}"),
            )),
        };
    }
    let ["", "v1", "markets", market, "epochs", rest @ ..] = parts.as_slice() else {
        return Err(not_found());
    };
    let market = parse_market(market)?;
    if market != p.config.market {
        return Err(ApiResponse::error(
            404,
            codes::UNKNOWN_MARKET,
            format!(
                "this sequencer serves market {:#x}, not {market:#x}",
                p.config.market
            ),
        ));
    }
    let params = parse_query(query)?;
    let route = match rest {
        [] => {
            let mut before = None;
            let mut limit = DEFAULT_LIMIT;
            for (k, v) in &params {
                match *k {
                    "before" => before = Some(parse_epoch(v, "before")?),
                    "limit" => {
                        limit = match v.parse::<u64>() {
                            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                            _ => {
                                return Err(ApiResponse::error(
                                    400,
                                    codes::BAD_QUERY,
                                    format!("limit must be 1..={MAX_LIMIT}, got {v:?}"),
                                ))
                            }
                        }
                    }
                    other => {
                        return Err(ApiResponse::error(
                            400,
                            codes::BAD_QUERY,
                            format!("unknown query parameter {other:?} (before, limit)"),
                        ))
                    }
                }
            }
            Route::Epochs { before, limit }
        }
        [epoch] => Route::Epoch(parse_epoch(epoch, "epoch")?),
        [epoch, "submissions", id] => {
            let epoch = parse_epoch(epoch, SIMULATION_EPOCH)?;
            Route::Submission(epoch, parse_id(id)?)
        }
        _ => return Err(not_found()),
    };
    if !matches!(route, Route::Epochs { .. }) {
        if let Some((k, _)) = params.first() {
            return Err(ApiResponse::error(
                400,
                codes::BAD_QUERY,
                format!("unknown query parameter {k:?}"),
            ));
        }
    }
    Ok(route)
}

fn parse_market(s: &str) -> Result<Address, ApiResponse> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    match hex {
        Some(h) if h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            h.parse::<Address>().map_err(|_| bad_market(s))
        }
        _ => Err(bad_market(s)),
    }
}

fn bad_market(s: &str) -> ApiResponse {
    ApiResponse::error(
        400,
        codes::BAD_MARKET_ADDRESS,
        format!("{:?} is not an address (0x and 40 hex digits)", clip(s)),
    )
}

fn parse_epoch(s: &str, what: &str) -> Result<u64, ApiResponse> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        Ok(0) if what == SIMULATION_EPOCH => Ok(0),
        _ => Err(ApiResponse::error(
            400,
            codes::BAD_EPOCH,
            format!("{what} {:?} is not a positive epoch id", clip(s)),
        )),
    }
}

/// Simulation submissions (`epochId` 0) have receipts under epoch 0: the submission route takes it.
const SIMULATION_EPOCH: &str = "epoch (0 for simulation submissions)";

fn parse_id(s: &str) -> Result<String, ApiResponse> {
    // Ids are stored as lower-case hyphenated UUIDs (as the ingress parses them).
    if s.len() == 36 {
        if let Ok(u) = uuid::Uuid::try_parse(s) {
            return Ok(u.to_string());
        }
    }
    Err(ApiResponse::error(
        400,
        codes::BAD_SUBMISSION_ID,
        format!(
            "{:?} is not a submission id (a hyphenated UUID, 36 characters)",
            clip(s)
        ),
    ))
}

fn parse_query(q: &str) -> Result<Vec<(&str, &str)>, ApiResponse> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if out.len() >= 4 || out.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiResponse::error(
                400,
                codes::BAD_QUERY,
                "repeated or too many query parameters",
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// At most 80 characters of untrusted input, for messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

async fn read_epoch_record(
    p: &Pipeline,
    epoch: u64,
) -> Result<Option<(String, EpochRecord)>, PipelineError> {
    match p
        .ports
        .state
        .get(Table::Epochs, &records::epoch_key(&p.config.market, epoch))
        .await?
    {
        Some(i) => Ok(Some((
            i.state.unwrap_or_default(),
            parse("epoch", &i.data)?,
        ))),
        None => Ok(None),
    }
}

fn batch_json(st: &str, b: &BatchRecord) -> Value {
    json!({
        "index": b.index,
        "cid": b.cid,
        "state": st,
        "roothash": b.roothash,
        "finalizedCidsRoot": b.finalized_cids_root,
        "firstLeafIndex": b.first_leaf_index,
        "projects": b.pids.len(),
        "submissions": b.submissions,
        "bytes": b.bytes,
        "txHash": b.tx_hash,
        "block": b.block,
        "delayed": b.delayed,
    })
}

fn epoch_summary(st: &str, rec: &EpochRecord, counts: &EpochCounts) -> Value {
    json!({
        "epochId": rec.epoch,
        "state": st,
        "begin": rec.begin,
        "end": rec.end,
        "releaseBlock": rec.release_block,
        "windowEnd": rec.window_end,
        "seenAtMs": rec.seen_at_ms,
        "closedAtMs": rec.closed_at_ms,
        "closedAtBlock": rec.closed_at_block,
        "finalizedAtMs": rec.finalized_at_ms,
        "anchoredAtMs": rec.anchored_at_ms,
        "closeToAnchoredMs": match (rec.closed_at_ms, rec.anchored_at_ms) {
            (Some(c), Some(a)) => Some(a - c),
            _ => None,
        },
        "counts": {
            "accepted": counts.accepted,
            "simulations": counts.simulations,
            "rejected": counts.rejected.values().sum::<u64>(),
            "rejectedByReason": counts.rejected,
        },
        "countsFinal": rec.counts.is_some(),
        "batchCount": rec.batches,
        "belowMinimum": rec.below_minimum,
        "endTx": rec.end_tx,
        "failure": rec.failure,
    })
}

/// Counts of an epoch's receipts, for epochs not finalized yet (finalization records them).
/// Costs one query per shard; an open epoch's receipts are bounded by the slot cap.
async fn live_counts(p: &Pipeline, epoch: u64) -> Result<EpochCounts, PipelineError> {
    let mut counts = EpochCounts::default();
    for shard in 0..records::SHARDS {
        let pk = records::epoch_shard_pk(&p.config.market, epoch, shard);
        for (_, item) in query_all(p.ports.state.as_ref(), Table::Receipts, &pk).await? {
            let r: Receipt = parse("receipt", &item.data)?;
            match (r.outcome.as_str(), r.reason) {
                ("accepted", _) => counts.accepted += 1,
                ("simulation", _) => counts.simulations += 1,
                (_, Some(reason)) => *counts.rejected.entry(reason).or_default() += 1,
                (other, None) => *counts.rejected.entry(other.to_string()).or_default() += 1,
            }
        }
    }
    Ok(counts)
}

async fn epoch_status(p: &Pipeline, epoch: u64) -> Result<ApiResponse, PipelineError> {
    let Some((st, rec)) = read_epoch_record(p, epoch).await? else {
        return Ok(unknown_epoch(epoch));
    };
    let counts = match &rec.counts {
        Some(c) => c.clone(),
        None => live_counts(p, epoch).await?,
    };
    let mut body = epoch_summary(&st, &rec, &counts);
    body["dataMarket"] = json!(format!("{:#x}", p.config.market));
    let batches = crate::finalize::batches(p, epoch).await?;
    let settled = batches.iter().all(|(s, _)| s == state::ANCHORED);
    body["batches"] = Value::Array(batches.iter().map(|(s, b)| batch_json(s, b)).collect());
    Ok(ApiResponse::ok(body, st == state::ANCHORED && settled))
}

async fn epoch_list(
    p: &Pipeline,
    before: Option<u64>,
    limit: u64,
) -> Result<ApiResponse, PipelineError> {
    let market = p.config.market;
    let store = p.ports.state.as_ref();
    let pk = records::epoch_key(&market, 0).pk;
    let sk = |e: u64| records::epoch_key(&market, e).sk;
    let before = match before {
        Some(b) => b,
        None => {
            // The newest epoch: the tick's cursor points at the oldest epoch still open, or one
            // past the newest when none is; from the one before it there are a handful of
            // epochs. Without a cursor (never ticked) the scan starts at the beginning.
            let low = match store
                .get(Table::Epochs, &records::cursor_key(&market))
                .await?
            {
                Some(i) => parse::<TickCursor>("tick cursor", &i.data)?.low_epoch,
                None => 0,
            };
            let after = (low > 2).then(|| sk(low - 2));
            let mut newest = 0;
            let mut next = after;
            loop {
                let page = store
                    .query(Table::Epochs, &pk, next.as_deref(), 500)
                    .await?;
                if let Some(e) = page
                    .items
                    .iter()
                    .filter_map(|(k, _)| records::epoch_of_sk(k))
                    .max()
                {
                    newest = newest.max(e);
                }
                match page.next {
                    Some(n) => next = Some(n),
                    None => break,
                }
            }
            newest.saturating_add(1)
        }
    };
    // Epochs [lowest, before): one query from just below `lowest`.
    let lowest = before.saturating_sub(limit).max(1);
    let after = (lowest > 1).then(|| sk(lowest - 1));
    let page = store
        .query(Table::Epochs, &pk, after.as_deref(), limit as usize)
        .await?;
    let mut epochs = Vec::new();
    for (k, item) in page.items {
        let Some(e) = records::epoch_of_sk(&k) else {
            continue;
        };
        if e >= before {
            continue;
        }
        let rec: EpochRecord = parse("epoch", &item.data)?;
        // Not finalized yet: count its receipts. Only epochs inside their window (a handful,
        // however long the list) have no recorded counts.
        let counts = match &rec.counts {
            Some(c) => c.clone(),
            None => live_counts(p, e).await?,
        };
        epochs.push(epoch_summary(
            &item.state.unwrap_or_default(),
            &rec,
            &counts,
        ));
    }
    epochs.reverse();
    let oldest = store.query(Table::Epochs, &pk, None, 1).await?;
    let oldest = oldest
        .items
        .first()
        .and_then(|(k, _)| records::epoch_of_sk(k));
    let next_before = match oldest {
        Some(o) if o < lowest => Some(lowest),
        _ => None,
    };
    Ok(ApiResponse::ok(
        json!({
            "dataMarket": format!("{market:#x}"),
            "epochs": epochs,
            "next_before": next_before,
        }),
        false,
    ))
}
