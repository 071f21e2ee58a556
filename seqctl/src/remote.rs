//! Commands that ask others and trust none of them:
//!
//! - `proof get`: fetch a submission's inclusion proof from a sequencer's proof API, then check
//!   it offline (the same checks as `proof verify`), against the batch bytes from IPFS and what
//!   the chain recorded for the epoch, when given.
//! - `proof verify --rpc-url`: the chain half of `proof verify`: the proof's market is registered,
//!   its epoch released, its batch CID one of the epoch's batch CIDs at its position, and the
//!   roots the chain binds (the `finalizedCidsRoot` stored per batch; the roothash through the
//!   anchored document, whose bytes hash to the anchored CID) equal the proof's.
//! - `audit epoch`: recompute an epoch from the chain and the batch documents alone, as a
//!   validator does: each batch's CID from its bytes, both roots, one batch per project, every
//!   listed submission's EIP-712 signer against its slot's owner on chain and its header inside
//!   the window, the plurality per project.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sequencer_chain::{Address, ChainClient, ChainConfig, EpochAnchors};
use sequencer_core::cids::{canonical_cid, raw_cid};
use sequencer_core::eip712::{Domain, Verifier};
use sequencer_core::finalize::{consensus, inspect_roots, Accepted, BatchDocument};
use sequencer_core::proof::InclusionProof;
use sequencer_core::submission::{parse_address, SnapshotSubmission};
use sequencer_core::B256;
use serde_json::{json, Value};

use crate::CheckFailed;

/// Per HTTP request; a batch document is at most 256 KiB.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response read (a batch document fits one 256 KiB chunk; a proof is a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// `seqctl proof get`'s inputs.
pub struct ProofGet {
    pub url: String,
    pub market: String,
    pub epoch: String,
    pub id: String,
    pub ipfs: Option<String>,
    pub rpc_url: Option<String>,
    pub protocol_state: Option<String>,
}

/// `seqctl audit epoch`'s inputs.
pub struct AuditEpoch {
    pub market: String,
    pub epoch: String,
    pub rpc_url: String,
    pub protocol_state: String,
    pub ipfs: String,
    pub chain_id: Option<u64>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn market_arg(s: &str) -> Result<Address> {
    let hex = s.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("market {s:?} is not an address (0x and 40 hex digits)");
    }
    parse_address(s).with_context(|| format!("market {s:?} is not an address"))
}

fn epoch_arg(s: &str) -> Result<u64> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => bail!("epoch {s:?} is not a positive epoch id"),
    }
}

fn id_arg(s: &str) -> Result<String> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !ok {
        bail!("submission id {s:?} is not a UUID (8-4-4-4-12 hex digits)");
    }
    Ok(s.to_ascii_lowercase())
}

fn url_arg(what: &str, s: &str) -> Result<reqwest::Url> {
    let u: reqwest::Url = s
        .parse()
        .with_context(|| format!("{what} {s:?} is not a URL"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        bail!("{what} {s:?} is not an http(s) URL");
    }
    Ok(u)
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .context("HTTP client")
}

async fn read_body(r: reqwest::Response, what: &str) -> Result<Vec<u8>> {
    if r.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        bail!("{what}: response is larger than {MAX_BODY} bytes");
    }
    let bytes = r
        .bytes()
        .await
        .with_context(|| format!("{what}: reading"))?;
    if bytes.len() > MAX_BODY {
        bail!("{what}: response is larger than {MAX_BODY} bytes");
    }
    Ok(bytes.to_vec())
}

/// The exact bytes of `cid` from a Kubo RPC (`POST /api/v0/cat?arg=`); `None` when not found.
async fn ipfs_cat(
    http: &reqwest::Client,
    base: &reqwest::Url,
    cid: &str,
) -> Result<Option<Vec<u8>>> {
    let mut url = base.join("api/v0/cat").context("IPFS URL")?;
    url.query_pairs_mut().append_pair("arg", cid);
    let r = http
        .post(url.clone())
        .send()
        .await
        .with_context(|| format!("IPFS {url}"))?;
    let status = r.status();
    if sequencer_ipfs::cat_not_found(status.as_u16(), "") {
        return Ok(None);
    }
    let body = read_body(r, "IPFS cat").await?;
    if !status.is_success() {
        // The adapter's rule for "the node does not have it" (Kubo and js-ipfs answer 500).
        let text = String::from_utf8_lossy(&body);
        if sequencer_ipfs::cat_not_found(status.as_u16(), &text) {
            return Ok(None);
        }
        bail!(
            "IPFS cat {cid}: HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
    }
    Ok(Some(body))
}

fn base_url(u: &reqwest::Url) -> reqwest::Url {
    let mut b = u.clone();
    if !b.path().ends_with('/') {
        let p = format!("{}/", b.path());
        b.set_path(&p);
    }
    b
}

async fn chain(rpc_url: &str, protocol_state: Address) -> Result<ChainClient> {
    rpc_arg(rpc_url)?;
    ChainClient::connect(ChainConfig::new(rpc_url, protocol_state))
        .await
        .with_context(|| format!("connect to {}", redact_url(rpc_url)))
}

/// `--rpc-url`, checked without echoing it: an RPC URL may carry an API key (in its path, query
/// or user info), so it is never printed.
fn rpc_arg(s: &str) -> Result<reqwest::Url> {
    let u: reqwest::Url = s.parse().map_err(|_| {
        anyhow::anyhow!("--rpc-url is not a URL (not shown: it may hold an API key)")
    })?;
    if !matches!(u.scheme(), "http" | "https" | "ws" | "wss") || u.host_str().is_none() {
        bail!("--rpc-url is not an http(s) or ws(s) URL (not shown: it may hold an API key)");
    }
    Ok(u)
}

/// What may be shown of an RPC URL: scheme, host and port (the chain client's rule).
pub(crate) fn redact_url(s: &str) -> String {
    sequencer_chain::redact_url(s)
}

/// `e` with every trace of `url` (as given, as normalized, its path, query and user info)
/// replaced, by the chain client's [`sequencer_chain::Redactor`]; errors of the HTTP and RPC
/// clients quote their URL. Keeps a [`CheckFailed`] a check failure.
pub(crate) fn scrub(e: anyhow::Error, url: &str) -> anyhow::Error {
    let msg = format!("{e:#}");
    let clean = sequencer_chain::Redactor::new(url).scrub(&msg);
    if clean == msg {
        return e;
    }
    if e.downcast_ref::<CheckFailed>().is_some() {
        CheckFailed(clean).into()
    } else {
        anyhow::anyhow!(clean)
    }
}

/// Checks, in order, printed as they are decided.
struct Report {
    json: bool,
    checks: Vec<Value>,
    failed: usize,
}

impl Report {
    fn new(json: bool) -> Self {
        Self {
            json,
            checks: Vec::new(),
            failed: 0,
        }
    }

    fn check(&mut self, ok: bool, what: &str, detail: impl Into<String>) {
        let detail = detail.into();
        if !ok {
            self.failed += 1;
        }
        if !self.json {
            let mark = if ok { "ok  " } else { "FAIL" };
            if detail.is_empty() {
                println!("{mark} {what}");
            } else {
                println!("{mark} {what}: {detail}");
            }
        }
        self.checks
            .push(json!({"ok": ok, "check": what, "detail": detail}));
    }

    fn info(&self, line: &str) {
        if !self.json {
            println!("     {line}");
        }
    }

    fn finish(self, summary: Value, what: &str) -> Result<()> {
        let total = self.checks.len();
        if self.json {
            let mut s = summary;
            s["ok"] = json!(self.failed == 0);
            s["checks"] = Value::Array(self.checks);
            println!("{s}");
        } else if self.failed == 0 {
            println!("{what}: all {total} checks hold");
        } else {
            println!("{what}: {} of {total} checks FAILED", self.failed);
        }
        if self.failed > 0 {
            bail!(CheckFailed(format!(
                "{what}: {} of {total} checks failed",
                self.failed
            )));
        }
        Ok(())
    }
}

/// `seqctl proof get`.
pub fn proof_get(a: ProofGet, json_out: bool) -> Result<()> {
    let rpc = a.rpc_url.clone().unwrap_or_default();
    proof_get_inner(a, json_out).map_err(|e| if rpc.is_empty() { e } else { scrub(e, &rpc) })
}

fn proof_get_inner(a: ProofGet, json_out: bool) -> Result<()> {
    let market = market_arg(&a.market)?;
    let epoch = epoch_arg(&a.epoch)?;
    let id = id_arg(&a.id)?;
    let api = base_url(&url_arg("--url", &a.url)?);
    let ipfs = a
        .ipfs
        .as_deref()
        .map(|u| url_arg("--ipfs", u).map(|u| base_url(&u)))
        .transpose()?;
    let protocol_state = match (&a.rpc_url, &a.protocol_state) {
        (Some(_), Some(p)) => Some(
            parse_address(p)
                .with_context(|| format!("--protocol-state {p:?} is not an address"))?,
        ),
        (Some(_), None) => bail!("--rpc-url needs --protocol-state"),
        (None, _) => None,
    };
    runtime()?.block_on(async move {
        let http = client()?;
        let url = api
            .join(&format!("v1/markets/{market:#x}/epochs/{epoch}/submissions/{id}"))
            .context("proof URL")?;
        let r = http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = r.status();
        let body = read_body(r, "proof API").await?;
        let v: Value = serde_json::from_slice(&body).with_context(|| {
            format!("{url}: HTTP {status}, not JSON: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>())
        })?;
        if !status.is_success() {
            let code = v["error"]["code"].as_str().unwrap_or("?");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            if status == reqwest::StatusCode::NOT_FOUND {
                bail!(CheckFailed(format!("the sequencer knows no such submission ({code}): {msg}")));
            }
            bail!("the sequencer answered HTTP {status} ({code}): {msg}");
        }
        let fate = v["fate"].as_str().unwrap_or("?").to_string();
        let mut rep = Report::new(json_out);
        rep.info(&format!("fate {fate}: {}", v["message"].as_str().unwrap_or("")));
        let Some(proof_v) = v.get("proof").filter(|p| !p.is_null()) else {
            let why = match fate.as_str() {
                "rejected" => format!(
                    "the submission was rejected ({}) at {} ms: there is no proof",
                    v["reason"].as_str().unwrap_or("?"),
                    v["at_ms"]
                ),
                "accepted" => "the submission was accepted but is not in an anchored batch yet: no proof yet".into(),
                other => format!("no proof: the submission is {other}"),
            };
            if json_out {
                println!("{}", json!({"ok": false, "fate": fate, "answer": v, "error": why}));
            }
            bail!(CheckFailed(why));
        };
        let proof: InclusionProof = serde_json::from_value(proof_v.clone())
            .context("the sequencer's proof is not an inclusion-proof document")?;
        // The answer must be about what was asked.
        rep.check(
            proof.submission_id == id
                && proof.epoch_id == epoch
                && parse_address(&proof.data_market) == Some(market),
            "proof is for the submission asked",
            format!("{} epoch {} market {}", proof.submission_id, proof.epoch_id, proof.data_market),
        );
        rep.check(
            fate == "included",
            "sequencer says included and anchored",
            fate.clone(),
        );
        // The path from the id to the roothash: `proof verify`.
        match proof.verify() {
            Ok(()) => rep.check(true, "Merkle path leads to the roothash", format!("leaf {} under {}", proof.leaf_index, proof.roothash)),
            Err(e) => rep.check(false, "Merkle path leads to the roothash", e.to_string()),
        }
        let mut doc_bytes: Option<Vec<u8>> = None;
        if let Some(ipfs) = &ipfs {
            match ipfs_cat(&http, ipfs, &proof.batch_cid).await? {
                None => rep.check(false, "batch document from IPFS", format!("{} not found", proof.batch_cid)),
                Some(bytes) => {
                    match proof.verify_with_batch(&bytes) {
                        Ok(()) => rep.check(true, "batch document: CID of its bytes, its roothash and its listing match the proof", proof.batch_cid.clone()),
                        Err(e) => rep.check(false, "batch document matches the proof", e.to_string()),
                    }
                    doc_bytes = Some(bytes);
                }
            }
        }
        if let (Some(rpc), Some(ps)) = (&a.rpc_url, protocol_state) {
            let c = chain(rpc, ps).await?;
            check_on_chain(&mut rep, &c, &http, ipfs.as_ref(), &proof, doc_bytes.as_deref()).await?;
        }
        rep.finish(
            json!({"fate": fate, "submission_id": id, "batch_index": proof.batch_index,
                   "batch_cid": proof.batch_cid, "leaf_index": proof.leaf_index,
                   "roothash": proof.roothash.to_string(), "anchor_tx": proof.anchor_tx,
                   "batch_checked": ipfs.is_some(), "chain_checked": a.rpc_url.is_some()}),
            &format!("proof of {id}"),
        )
    })
}

/// `seqctl proof verify --rpc-url`'s chain inputs.
pub struct ProofOnChain {
    pub rpc_url: String,
    pub protocol_state: String,
    /// Kubo RPC to fetch the batch document (when `--batch` is not given) and the epoch's
    /// earlier batch documents from.
    pub ipfs: Option<String>,
}

/// `seqctl proof verify --rpc-url`: the offline checks held (`offline` is their JSON summary);
/// now against the chain. `batch` is the `--batch` document's bytes.
pub fn proof_verify_on_chain(
    proof: &InclusionProof,
    batch: Option<&[u8]>,
    a: ProofOnChain,
    offline: Value,
    json_out: bool,
) -> Result<()> {
    let rpc = a.rpc_url.clone();
    proof_verify_on_chain_inner(proof, batch, a, offline, json_out).map_err(|e| scrub(e, &rpc))
}

fn proof_verify_on_chain_inner(
    proof: &InclusionProof,
    batch: Option<&[u8]>,
    a: ProofOnChain,
    offline: Value,
    json_out: bool,
) -> Result<()> {
    let protocol_state = parse_address(&a.protocol_state)
        .with_context(|| format!("--protocol-state {:?} is not an address", a.protocol_state))?;
    rpc_arg(&a.rpc_url)?;
    let ipfs = a
        .ipfs
        .as_deref()
        .map(|u| url_arg("--ipfs", u).map(|u| base_url(&u)))
        .transpose()?;
    if batch.is_none() && ipfs.is_none() {
        bail!(
            "--rpc-url needs the batch document too (--batch FILE or --ipfs URL): the chain keeps \
             each batch's CID and finalizedCidsRoot, not the roothash; only the anchored document, \
             whose bytes hash to the anchored CID, ties the proof's roothash to the chain"
        );
    }
    runtime()?.block_on(async move {
        let http = client()?;
        let mut rep = Report::new(json_out);
        let fetched;
        let bytes = match batch {
            Some(b) => Some(b),
            None => {
                // `ipfs` is set: checked above.
                let Some(ipfs) = &ipfs else { bail!("no batch document") };
                fetched = ipfs_cat(&http, ipfs, &proof.batch_cid).await?;
                match &fetched {
                    None => rep.check(false, "batch document from IPFS", format!("{} not found", proof.batch_cid)),
                    Some(b) => match proof.verify_with_batch(b) {
                        Ok(()) => rep.check(true, "batch document from IPFS: CID of its bytes, its roothash and its listing match the proof", proof.batch_cid.clone()),
                        Err(e) => rep.check(false, "batch document from IPFS matches the proof", e.to_string()),
                    },
                }
                fetched.as_deref()
            }
        };
        let c = chain(&a.rpc_url, protocol_state).await?;
        check_on_chain(&mut rep, &c, &http, ipfs.as_ref(), proof, bytes).await?;
        let mut summary = offline;
        summary["chain_checked"] = json!(true);
        summary["chain_id"] = json!(c.chain_id());
        summary["protocol_state"] = json!(format!("{protocol_state:#x}"));
        rep.finish(summary, &format!("proof of {} against the chain", proof.submission_id))
    })
}

/// The checks of `proof` against what the chain recorded for its market and epoch. `doc` is the
/// batch document's bytes, when known (already checked against the proof offline by the caller);
/// `ipfs` serves the epoch's earlier documents, to recompute the roothash. Decided checks go into
/// `rep`; an `Err` is a chain read that failed.
async fn check_on_chain(
    rep: &mut Report,
    c: &ChainClient,
    http: &reqwest::Client,
    ipfs: Option<&reqwest::Url>,
    proof: &InclusionProof,
    doc: Option<&[u8]>,
) -> Result<()> {
    let epoch = proof.epoch_id;
    let Some(market) = parse_address(&proof.data_market) else {
        rep.check(false, "market is an address", proof.data_market.clone());
        return Ok(());
    };
    let info = c
        .market_info(market)
        .await
        .context("read the market from the chain")?;
    rep.check(
        info.registered,
        "market is registered on chain",
        format!(
            "{market:#x} at ProtocolState {:#x}, chain {}",
            c.protocol_state(),
            c.chain_id()
        ),
    );
    if !info.registered {
        return Ok(());
    }
    let anchors = c
        .anchored(market, epoch)
        .await
        .context("read the epoch from the chain")?;
    rep.check(
        anchors.release_block.is_some(),
        "epoch is released on chain",
        match anchors.release_block {
            Some(b) => format!("epoch {epoch} in block {b}"),
            None => format!(
                "epoch {epoch} was never released (the market's last epoch is {})",
                info.current_epoch
            ),
        },
    );
    if anchors.release_block.is_none() {
        return Ok(());
    }
    let Some(i) = anchors
        .batches
        .iter()
        .position(|b| b.batch_cid == proof.batch_cid)
    else {
        rep.check(
            false,
            "batch CID is anchored on chain for this epoch",
            format!(
                "{} is not one of epoch {epoch}'s {} batch CIDs on chain{}",
                proof.batch_cid,
                anchors.batches.len(),
                if anchors.batches.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        anchors
                            .batches
                            .iter()
                            .map(|b| b.batch_cid.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        );
        return Ok(());
    };
    let on_chain = &anchors.batches[i];
    rep.check(
        true,
        "batch CID is anchored on chain for this epoch",
        format!(
            "{} is batch {} of {} (block {})",
            proof.batch_cid,
            i + 1,
            anchors.batches.len(),
            on_chain.block
        ),
    );
    rep.check(
        i + 1 == proof.batch_index as usize,
        "batch index is its position on chain",
        format!("the proof says {}, the chain {}", proof.batch_index, i + 1),
    );
    if on_chain.delayed {
        rep.info("the batch is recorded as delayed (anchored past the batch window): the chain lists it, but does not mark its projects submitted");
    }
    match (proof.anchor_tx, on_chain.tx_hash) {
        (Some(p), Some(t)) => rep.check(
            p == t,
            "anchor transaction matches the chain",
            format!("the proof says {p}, the chain {t}"),
        ),
        (Some(p), None) => rep.info(&format!(
            "anchor transaction {p}: its log was not found, not compared"
        )),
        _ => {}
    }
    let Some(bytes) = doc else {
        rep.check(
            false,
            "roots on chain",
            "no batch document: the chain keeps the batch CID and its finalizedCidsRoot; the roothash is only tied to it by the document (--ipfs)",
        );
        return Ok(());
    };
    let cid = raw_cid(bytes).to_string();
    if cid != on_chain.batch_cid {
        rep.check(
            false,
            "batch document is the anchored one",
            format!("its bytes give {cid}, the chain has {}", on_chain.batch_cid),
        );
        return Ok(());
    }
    let d: BatchDocument = match serde_json::from_slice(bytes) {
        Ok(d) => d,
        Err(e) => {
            rep.check(
                false,
                "batch document is the anchored one",
                format!("not a batch document: {e}"),
            );
            return Ok(());
        }
    };
    rep.check(
        d.roothash.parse::<B256>().ok() == Some(proof.roothash)
            && d.submission_ids.contains(&proof.submission_id),
        "anchored document carries the proof's roothash and lists the submission",
        format!("{} in {cid}", d.roothash),
    );
    // The roothash grows over the epoch's batches: recompute it from the earlier documents the
    // chain names. finalizedCidsRoot is over this batch's cids alone.
    let mut previous = Vec::new();
    let mut missing = Vec::new();
    let recompute = i == 0 || ipfs.is_some();
    if let (true, Some(ipfs)) = (i > 0, ipfs) {
        for b in &anchors.batches[..i] {
            match ipfs_cat(http, ipfs, &b.batch_cid)
                .await?
                .and_then(|x| checked_doc(&b.batch_cid, &x))
            {
                Some(pd) => previous.extend(pd.submission_ids),
                None => missing.push(b.batch_cid.clone()),
            }
        }
    }
    match inspect_roots(&d, &previous) {
        Ok(roots) => {
            rep.check(
                roots.finalized_cids_root == on_chain.root,
                "finalizedCidsRoot on chain equals the document's cids root",
                format!(
                    "the chain has {}, the document's cids give {}",
                    on_chain.root, roots.finalized_cids_root
                ),
            );
            if recompute {
                rep.check(
                    missing.is_empty() && roots.roothash == proof.roothash,
                    "roothash recomputed from this and the earlier batches on chain",
                    if !missing.is_empty() {
                        format!(
                            "earlier batch documents missing or altered: {}",
                            missing.join(", ")
                        )
                    } else {
                        format!(
                            "{} over {} ids of batches 1..={}",
                            roots.roothash,
                            previous.len() + d.submission_ids.len(),
                            i + 1
                        )
                    },
                );
            } else {
                rep.info(&format!(
                    "roothash not recomputed over batches 1..={i} (give --ipfs to fetch them): the anchored document's is used"
                ));
            }
        }
        Err(e) => rep.check(false, "roots recomputed", e.to_string()),
    }
    Ok(())
}

/// The document when `bytes` hash to `cid` and parse.
fn checked_doc(cid: &str, bytes: &[u8]) -> Option<BatchDocument> {
    (raw_cid(bytes).to_string() == cid)
        .then(|| serde_json::from_slice(bytes).ok())
        .flatten()
}

/// `seqctl audit epoch`.
pub fn audit_epoch(a: AuditEpoch, json_out: bool) -> Result<()> {
    let rpc = a.rpc_url.clone();
    audit_epoch_inner(a, json_out).map_err(|e| scrub(e, &rpc))
}

fn audit_epoch_inner(a: AuditEpoch, json_out: bool) -> Result<()> {
    let market = market_arg(&a.market)?;
    let epoch = epoch_arg(&a.epoch)?;
    let protocol_state = parse_address(&a.protocol_state)
        .with_context(|| format!("--protocol-state {:?} is not an address", a.protocol_state))?;
    let ipfs = base_url(&url_arg("--ipfs", &a.ipfs)?);
    rpc_arg(&a.rpc_url)?;
    runtime()?.block_on(async move {
        let http = client()?;
        let c = chain(&a.rpc_url, protocol_state).await?;
        let chain_id = a.chain_id.unwrap_or_else(|| c.chain_id());
        let verifier = Verifier::new(Domain { chain_id, verifying_contract: protocol_state });
        let anchors: EpochAnchors = c.anchored(market, epoch).await.context("read the epoch from the chain")?;
        let mut rep = Report::new(json_out);
        let Some(release) = anchors.release_block else {
            if json_out {
                println!("{}", json!({"ok": false, "market": format!("{market:#x}"), "epoch": epoch, "error": "epoch not released"}));
            }
            bail!(CheckFailed(format!(
                "epoch {epoch} of market {market:#x} was never released on chain {chain_id} (ProtocolState {protocol_state:#x}): nothing to audit"
            )));
        };
        // The windows the epoch was released under; a contract without `epochWindows` keeps
        // only the market's current ones, which an audit then says it used.
        let windows = match c.epoch_windows(market, epoch).await.context("epochWindows")? {
            Some(w) => w,
            None => {
                rep.info("this contract keeps no per-epoch windows: using the market's current window");
                c.submission_window(market).await.context("snapshotSubmissionWindow")?
            }
        };
        let window_end = release.saturating_add(windows.snapshot_blocks);
        rep.info(&format!(
            "epoch {epoch} of market {market:#x}: released in block {release}, window [{release}, {window_end}], {} batches on chain, batch submissions {}",
            anchors.batches.len(),
            if anchors.ended { "ended" } else { "not ended" }
        ));
        let mut previous: Vec<String> = Vec::new();
        let mut seen_projects: HashMap<String, usize> = HashMap::new();
        let mut seen_ids: HashSet<String> = HashSet::new();
        let mut owners: HashMap<u64, Address> = HashMap::new();
        let mut headers: HashMap<String, Option<u64>> = HashMap::new();
        let mut last_pid: Option<String> = None;
        for (i, b) in anchors.batches.iter().enumerate() {
            let n = i + 1;
            let Some(bytes) = ipfs_cat(&http, &ipfs, &b.batch_cid).await? else {
                rep.check(false, &format!("batch {n}: document on IPFS"), format!("{} not found", b.batch_cid));
                continue;
            };
            let cid = raw_cid(&bytes).to_string();
            rep.check(cid == b.batch_cid, &format!("batch {n}: CID of its bytes"), if cid == b.batch_cid { cid.clone() } else { format!("bytes give {cid}, the chain says {}", b.batch_cid) });
            let doc: BatchDocument = match serde_json::from_slice(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    rep.check(false, &format!("batch {n}: is a batch document"), e.to_string());
                    continue;
                }
            };
            let parallel = doc.submission_ids.len() == doc.submissions.len() && doc.pids.len() == doc.cids.len();
            rep.check(parallel, &format!("batch {n}: arrays are parallel"), format!("{} ids, {} submissions, {} pids, {} cids", doc.submission_ids.len(), doc.submissions.len(), doc.pids.len(), doc.cids.len()));
            match inspect_roots(&doc, &previous) {
                Ok(roots) => {
                    let doc_root = doc.roothash.parse::<B256>().ok();
                    rep.check(doc_root == Some(roots.roothash), &format!("batch {n}: roothash over the ids of batches 1..={n}"), if doc_root == Some(roots.roothash) { roots.roothash.to_string() } else { format!("the document says {}, its ids give {}", doc.roothash, roots.roothash) });
                    rep.check(roots.finalized_cids_root == b.root, &format!("batch {n}: finalizedCidsRoot on chain"), if roots.finalized_cids_root == b.root { b.root.to_string() } else { format!("the chain has {}, the document's cids give {}", b.root, roots.finalized_cids_root) });
                }
                Err(e) => rep.check(false, &format!("batch {n}: roots"), e.to_string()),
            }
            // Projects: sorted, across batches too, and each in one batch only.
            let mut dup = Vec::new();
            let mut sorted = true;
            for pid in &doc.pids {
                if let Some(prev) = seen_projects.insert(pid.clone(), n) {
                    dup.push(format!("{pid} (also in batch {prev})"));
                }
                if last_pid.as_deref().is_some_and(|l| l >= pid.as_str()) {
                    sorted = false;
                }
                last_pid = Some(pid.clone());
            }
            rep.check(dup.is_empty(), &format!("batch {n}: each project in one batch only"), dup.join(", "));
            rep.check(sorted, &format!("batch {n}: projects in byte order"), "");
            // Submissions.
            let mut accepted: Vec<Accepted> = Vec::new();
            let mut bad_sig = Vec::new();
            let mut bad_window = Vec::new();
            let mut bad_fields = Vec::new();
            let pids: HashSet<&String> = doc.pids.iter().collect();
            for (sid, text) in doc.submission_ids.iter().zip(&doc.submissions) {
                if !seen_ids.insert(sid.clone()) {
                    bad_fields.push(format!("{sid}: id listed twice"));
                }
                let sub: SnapshotSubmission = match serde_json::from_str(text) {
                    Ok(s) => s,
                    Err(e) => {
                        bad_fields.push(format!("{sid}: not a submission ({e})"));
                        continue;
                    }
                };
                let r = &sub.request;
                if r.epoch_id != epoch || parse_address(&sub.data_market) != Some(market) || !pids.contains(&r.project_id) {
                    bad_fields.push(format!("{sid}: epoch {} market {} project {} do not belong here", r.epoch_id, sub.data_market, r.project_id));
                }
                let owner = match owners.get(&r.slot_id) {
                    Some(o) => *o,
                    None => {
                        let o = c.slot_owner(r.slot_id).await.context("slot owner")?;
                        owners.insert(r.slot_id, o);
                        o
                    }
                };
                match verifier.recover(&sub) {
                    Ok(rec) if rec.signer == owner && owner != Address::ZERO => {}
                    Ok(rec) => bad_sig.push(format!("{sid}: signer {} is not slot {}'s owner {}", rec.signer, r.slot_id, owner)),
                    Err(e) => bad_sig.push(format!("{sid}: {e}")),
                }
                let header = sub.header.to_ascii_lowercase();
                let block = match headers.get(&header) {
                    Some(b) => *b,
                    None => {
                        let b = match header.parse::<B256>() {
                            Ok(h) => c.block_number(h).await.context("header block")?,
                            Err(_) => None,
                        };
                        headers.insert(header.clone(), b);
                        b
                    }
                };
                match block {
                    Some(bn) if (release..=window_end).contains(&bn) => {}
                    Some(bn) => bad_window.push(format!("{sid}: header is block {bn}, outside [{release}, {window_end}]")),
                    None => bad_window.push(format!("{sid}: header {header} is no block of this chain")),
                }
                let mut s = sub.clone();
                s.request.snapshot_cid = canonical_cid(&s.request.snapshot_cid);
                accepted.push(Accepted { submission_id: sid.clone(), submission: s });
            }
            let listed = doc.submission_ids.len();
            rep.check(bad_fields.is_empty(), &format!("batch {n}: {listed} submissions belong to this market, epoch and batch, ids unique"), bad_fields.join("; "));
            rep.check(bad_sig.is_empty(), &format!("batch {n}: every EIP-712 signer is its slot's owner on chain"), bad_sig.join("; "));
            rep.check(bad_window.is_empty(), &format!("batch {n}: every header inside the window"), bad_window.join("; "));
            let votes = consensus(&accepted);
            let mut wrong = Vec::new();
            for (pid, cid) in doc.pids.iter().zip(&doc.cids) {
                match votes.get(pid) {
                    Some(v) if v.cid == canonical_cid(cid) => {}
                    Some(v) => wrong.push(format!("{pid}: listed {cid}, plurality {} ({}/{})", v.cid, v.votes, v.total)),
                    None => wrong.push(format!("{pid}: no submission listed")),
                }
            }
            rep.check(wrong.is_empty(), &format!("batch {n}: cids are the plurality per project"), wrong.join("; "));
            previous.extend(doc.submission_ids);
        }
        if anchors.batches.is_empty() {
            rep.info("no batches anchored for this epoch: nothing to recompute");
        }
        let by_batch: BTreeMap<usize, usize> = seen_projects.values().fold(BTreeMap::new(), |mut m, b| {
            *m.entry(*b).or_default() += 1;
            m
        });
        rep.finish(
            json!({"market": format!("{market:#x}"), "epoch": epoch, "release_block": release,
                   "window_end": window_end, "batches": anchors.batches.len(),
                   "projects": seen_projects.len(), "submissions": seen_ids.len(),
                   "projects_per_batch": by_batch, "ended": anchors.ended}),
            &format!("audit of epoch {epoch}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3y-0123456789";

    #[test]
    fn an_rpc_url_shows_only_scheme_host_and_port() {
        for (url, shown) in [
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
            (
                &format!("https://mainnet.example/v3/{KEY}"),
                "https://mainnet.example",
            ),
            (
                &format!("https://rpc.example/?apikey={KEY}"),
                "https://rpc.example",
            ),
            (
                &format!("https://user:{KEY}@rpc.example:8443"),
                "https://rpc.example:8443",
            ),
            (&format!("not a url {KEY}"), "<unparseable url>"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn scrub_removes_the_url_and_its_parts_and_keeps_check_failures() {
        let url = format!("https://user:{KEY}@rpc.example/v3/{KEY}?key={KEY}");
        let plain = format!("https://rpc.example/v3/{KEY}?key={KEY}");
        let e = scrub(
            anyhow::anyhow!("error sending request for url ({plain}): path /v3/{KEY}"),
            &url,
        );
        let msg = format!("{e:#}");
        assert!(!msg.contains(KEY), "{msg}");
        assert!(msg.contains("https://rpc.example"), "{msg}");
        let e = scrub(CheckFailed(format!("seen {url}")).into(), &url);
        assert!(e.downcast_ref::<CheckFailed>().is_some());
        assert!(!e.to_string().contains(KEY));
        // Nothing to hide: the error is returned as it was.
        let e = scrub(CheckFailed("no url here".into()).into(), &url);
        assert_eq!(e.to_string(), "no url here");
    }
}
