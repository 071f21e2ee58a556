//! Every Lambda binary run the way Lambda runs it: the debug binaries cargo built for this crate
//! (`CARGO_BIN_EXE_*`), each polling the Lambda runtime API that `cargo lambda watch
//! --only-lambda-apis` serves (PyPI `cargo-lambda`, `scripts/tools.sh cargo-lambda`), invoked with
//! `cargo lambda invoke` and real events, against fresh LocalStack SQS queues and DynamoDB Local
//! tables, js-ipfs and an anvil with ProtocolState deployed. So every `main` is proven: its cold
//! start from the environment, its event and response types on the wire, its handler.
//!
//! One released epoch goes all the way through the binaries: `tick` opens it, `verify` accepts a
//! signed `/collect` submission for it (and rejects one for an unreleased epoch), `tick` closes it
//! once its window has passed, `finalize` batches and uploads it, `anchor` submits the batch and
//! ends the epoch on chain, and `proof` (a function URL event) answers that the submission is
//! included. `finalize` and `anchor` given a job for an epoch that does not exist return that
//! record in `batchItemFailures`. `epoch-manager` answers a scheduled event with its stats.
//!
//! Each function gets its own runtime API path (`http://host:port/.rt/<name>`, which the watch
//! server routes per function), so the four binaries share one server. `cargo lambda watch` sends
//! every invocation the fixed `Lambda-Runtime-Deadline-Ms: 600000` (an instant in 1970, not "now
//! plus a timeout"; `--timeout` only bounds the HTTP request), so `tick`, which loops on the head
//! until 5 s before its deadline, runs exactly one step per invocation here, and `epoch-manager`,
//! which stops its release timeout + 2 s before the deadline, runs none (this test releases the
//! epoch itself); both loops are covered by their library tests.
//!
//! Needs `source scripts/env.sh`, `localstack/start.sh`, `scripts/ipfs.sh start` and
//! `scripts/tools.sh anvil cargo-lambda`; skips loudly without them, fails under
//! `SEQ_REQUIRE_SERVICES=1`.
//!
//! Logging as Lambda configures it: every function runs with `AWS_LAMBDA_LOG_FORMAT=JSON` (the
//! Terraform module's `logging_config`) and no `RUST_LOG`; finalize at application log level
//! WARN, anchor at INFO. Their output must be JSON lines only, anchor's with its INFO events and
//! finalize's without.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sequencer_aws::{DynamoStore, QueueKind, SqsQueue};
use sequencer_chain::deploy::deploy_local;
use sequencer_chain::{Address, ChainClient};
use sequencer_core::eip712::Domain;
use sequencer_embedded::poller::sqs_event;
use sequencer_handlers::records::{Outcome, Receipt, Records};
use sequencer_handlers::sqs::events::SqsEvent;
use sequencer_ports::{Queue, Received};
use sequencer_runner::chain::{client, plan, spawn_anvil, OWNER_KEY, SEQUENCER_KEY};
use sequencer_testsupport::events::function_url_request;
use sequencer_testsupport::signed_message;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const CID: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
const BLOCK_MS: u64 = 200;
/// Snapshot window in blocks: long enough for tick + verify after the release (≈ 6 s).
const WINDOW_BLOCKS: u64 = 30;
const INVOKE_TIMEOUT: Duration = Duration::from_secs(40);

/// The services and tools this test needs, or a loud skip (a failure under
/// `SEQ_REQUIRE_SERVICES=1`).
async fn services(test: &str) -> bool {
    let missing = sequencer_testsupport::missing(
        &[
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "IPFS_API_URL",
        ],
        &["ANVIL_BIN", "CARGO_LAMBDA_BIN", "LOCALSTACK_PYTHON"],
    )
    .await;
    sequencer_testsupport::require(test, &missing)
}

/// Creates fresh queues and tables under a prefix of their own.
fn create_resources(prefix: &str) {
    sequencer_testsupport::create_resources(prefix).expect("emulator resources");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A spawned process whose output goes to a log file (killed on drop).
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Panics with the log when the process has exited.
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                tail(&self.log)
            );
        }
    }
}

/// The `cargo lambda watch` server and the four function processes polling it.
struct Lambdas {
    cargo_lambda: PathBuf,
    port: u16,
    dir: PathBuf,
    watch: Proc,
    functions: Vec<Proc>,
}

impl Lambdas {
    /// `env` for every function, `own` on top for one of them.
    async fn start(dir: &Path, env: &[(&str, String)], own: &[(&str, &str, String)]) -> Self {
        let cargo_lambda = PathBuf::from(std::env::var_os("CARGO_LAMBDA_BIN").unwrap());
        let port = free_port();
        let mut cmd = Command::new(&cargo_lambda);
        cmd.args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            // It reads `cargo metadata` to know the function names: never from the network.
            .env("CARGO_NET_OFFLINE", "true")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let mut watch = Proc::spawn("cargo-lambda-watch", cmd, dir);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !sequencer_testsupport::listening(&format!("127.0.0.1:{port}")).await {
            watch.assert_alive();
            assert!(
                tokio::time::Instant::now() < deadline,
                "cargo lambda watch did not listen on {port}:\n{}",
                tail(&watch.log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let bins = [
            ("verify", env!("CARGO_BIN_EXE_verify")),
            ("tick", env!("CARGO_BIN_EXE_tick")),
            ("finalize", env!("CARGO_BIN_EXE_finalize")),
            ("anchor", env!("CARGO_BIN_EXE_anchor")),
            ("proof", env!("CARGO_BIN_EXE_proof")),
            ("epoch-manager", env!("CARGO_BIN_EXE_epoch-manager")),
        ];
        let functions = bins
            .iter()
            .map(|(name, bin)| {
                let mut cmd = Command::new(bin);
                cmd.env_remove("KMS_KEY_ID")
                    // The runtime API of this function on the watch server (what Lambda sets).
                    .env(
                        "AWS_LAMBDA_RUNTIME_API",
                        format!("http://127.0.0.1:{port}/.rt/{name}"),
                    )
                    .env("AWS_LAMBDA_FUNCTION_NAME", name)
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    // The log level comes from the function's logging configuration.
                    .env_remove("RUST_LOG");
                for (k, v) in env {
                    cmd.env(k, v);
                }
                for (_, k, v) in own.iter().filter(|(f, _, _)| f == name) {
                    cmd.env(k, v);
                }
                Proc::spawn(name, cmd, dir)
            })
            .collect();
        Self {
            cargo_lambda,
            port,
            dir: dir.to_path_buf(),
            watch,
            functions,
        }
    }

    /// `cargo lambda invoke <function> --data-file …`: the function's JSON response.
    async fn invoke(&mut self, function: &str, payload: &Value) -> Value {
        let file = self
            .dir
            .join(format!("{function}-{}.json", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, serde_json::to_vec_pretty(payload).unwrap()).unwrap();
        let run = Command::new(&self.cargo_lambda)
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .arg("--invoke-port")
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(&file)
            .args(["--output-format", "json", function])
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(INVOKE_TIMEOUT, run).await {
            Ok(out) => out.unwrap(),
            Err(_) => {
                self.assert_all_alive();
                panic!(
                    "{function}: no response in {INVOKE_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            panic!(
                "{function}: cargo lambda invoke failed ({}): {}{}\n{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{function}: response is not JSON ({e}): {stdout}\n{}",
                self.logs()
            )
        })
    }

    fn assert_all_alive(&mut self) {
        self.watch.assert_alive();
        for f in &mut self.functions {
            f.assert_alive();
        }
    }

    fn logs(&self) -> String {
        std::iter::once(&self.watch)
            .chain(&self.functions)
            .map(|p| format!("----- {} -----\n{}", p.name, tail(&p.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn received(body: String, group: Option<&str>) -> Received {
    Received {
        message_id: uuid::Uuid::new_v4().to_string(),
        receipt: format!("receipt-{}", uuid::Uuid::new_v4().simple()),
        body,
        attributes: Default::default(),
        receive_count: 1,
        group_id: group.map(str::to_string),
    }
}

fn event_json(event: &SqsEvent) -> Value {
    serde_json::to_value(event).unwrap()
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not an SqsBatchResponse: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

async fn wait_for_block(c: &ChainClient, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c.head().await.unwrap() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "block {n} not mined"
        );
        tokio::time::sleep(Duration::from_millis(BLOCK_MS / 2)).await;
    }
}

/// Receives what `queue` holds (at least one message) as the event Lambda would pass.
async fn drain_as_event(queue: &SqsQueue, arn: &str) -> (SqsEvent, Vec<String>) {
    let got = queue.receive(10, Duration::from_secs(5)).await.unwrap();
    assert!(!got.is_empty(), "{arn}: nothing queued");
    let receipts = got.iter().map(|r| r.receipt.clone()).collect();
    (sqs_event(arn, &got), receipts)
}

async fn receipt(store: &DynamoStore, market: &Address, epoch: u64, id: &uuid::Uuid) -> Receipt {
    Records::new(store, *market, Duration::from_secs(3600))
        .receipt(epoch, &id.to_string())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no receipt for submission {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lambda_binary_under_the_runtime_api_of_cargo_lambda_watch() {
    if !services("every_lambda_binary_under_the_runtime_api_of_cargo_lambda_watch").await {
        return;
    }
    let t0 = std::time::Instant::now();
    let dir = std::env::temp_dir().join(format!("seq-lambdas-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = format!("lam{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_resources(&prefix);

    // Chain: anvil, ProtocolState, three slots.
    let anvil = spawn_anvil(BLOCK_MS).await.unwrap();
    let owner = client(&anvil.rpc_url, Address::ZERO, OWNER_KEY)
        .await
        .unwrap();
    let deploy_plan = plan(3, 10, WINDOW_BLOCKS, 200).unwrap();
    let (chain, d) = deploy_local(&owner, &deploy_plan).await.unwrap();
    let market = d.data_market;

    let env: Vec<(&str, String)> = vec![
        ("DATA_MARKET_ADDRESS", format!("{market:#x}")),
        ("PROTOCOL_STATE_ADDRESS", format!("{:#x}", d.protocol_state)),
        ("CHAIN_ID", d.chain_id.to_string()),
        ("RPC_URL", anvil.rpc_url.clone()),
        ("SIGNER_PRIVATE_KEY", SEQUENCER_KEY.to_string()),
        ("SEQ_PREFIX", prefix.clone()),
        // The namespace the Terraform module gives the functions (locals.tf METRICS_NAMESPACE).
        ("METRICS_NAMESPACE", format!("Sequencer/{prefix}")),
        // What Lambda sets for logging_config { log_format = "JSON" } (the Terraform module's).
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_string()),
    ];
    // The epoch manager signs with the EPOCH MANAGER key, not the sequencer's.
    // And application_log_level: WARN for finalize, INFO (the module's default) for anchor.
    let own = [
        ("epoch-manager", "SIGNER_PRIVATE_KEY", OWNER_KEY.to_string()),
        ("finalize", "AWS_LAMBDA_LOG_LEVEL", "WARN".to_string()),
        // The deployment lets finalize retry for 120 s inside its 300 s timeout; an invoke here
        // waits 40 s, and the job for an unreleased epoch below must come back as a failure.
        ("finalize", "FINALIZE_RETRY_BUDGET_MS", "3000".to_string()),
        ("anchor", "AWS_LAMBDA_LOG_LEVEL", "INFO".to_string()),
    ];
    let mut lambdas = Lambdas::start(&dir, &env, &own).await;

    let sdk = sequencer_aws::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = DynamoStore::from_env(prefix.clone()).await;
    let arn = |kind: QueueKind| {
        format!(
            "arn:aws:sqs:us-east-1:000000000000:{}",
            kind.queue_name(&prefix, false)
        )
    };

    // finalize and anchor: a job for an epoch nobody released is a failure to retry.
    for (function, kind, group) in [
        ("finalize", QueueKind::Finalize, None),
        ("anchor", QueueKind::Anchor, Some("sequencer")),
    ] {
        let job = received(json!({"market": market, "epoch": 4242}).to_string(), group);
        let id = job.message_id.clone();
        let r = lambdas
            .invoke(function, &event_json(&sqs_event(&arn(kind), &[job])))
            .await;
        assert_eq!(failures(&r), vec![id], "{function}: {r}");
    }

    // tick (EventBridge scheduled event) opens the epoch released on chain.
    let head = chain.head().await.unwrap();
    let (release, epoch) = chain
        .release_epoch(market, head + 1, head + 10)
        .await
        .unwrap();
    wait_for_block(&chain, release.block + 2).await; // CONFIRMATIONS
    let scheduled = json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:000000000000:rule/{prefix}-tick")],
        "detail": {}
    });
    let r = lambdas.invoke("tick", &scheduled).await;
    assert_eq!(ids(&r["opened"]), vec![epoch], "tick: {r}");
    assert!(
        r["head"].as_u64().unwrap() >= release.block + 2,
        "tick: {r}"
    );
    assert!(r["blocks_recorded"].as_u64().unwrap() > 0, "tick: {r}");

    // verify: a valid submission for the open epoch is accepted; one for an unreleased epoch is
    // rejected with its reason. Neither is a batch item failure.
    let domain = Domain {
        chain_id: d.chain_id,
        verifying_contract: d.protocol_state,
    };
    let header = chain.block_hash(release.block).await.unwrap().unwrap();
    let (good_id, early_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (good, _) = signed_message(&domain, market, &good_id, 1, 1, epoch, "p1", CID, header);
    // Two epochs ahead: within verify's epoch horizon (further ones are counted, not stored).
    let unreleased = epoch + 2;
    let (early, _) = signed_message(
        &domain, market, &early_id, 2, 2, unreleased, "p1", CID, header,
    );
    let verify_event = sqs_event(
        &arn(QueueKind::Submissions),
        &[received(good, None), received(early, None)],
    );
    let r = lambdas.invoke("verify", &event_json(&verify_event)).await;
    assert_eq!(failures(&r), Vec::<String>::new(), "verify: {r}");
    let accepted = receipt(&store, &market, epoch, &good_id).await;
    assert_eq!(accepted.outcome, Outcome::Accepted, "{accepted:?}");
    let rejected = receipt(&store, &market, unreleased, &early_id).await;
    assert_eq!(rejected.outcome.code(), "rejected", "{rejected:?}");
    assert_eq!(
        rejected.outcome.reason().map(|r| r.code()),
        Some("epoch_not_released"),
        "{rejected:?}"
    );

    // tick closes the epoch once its window and the grace have passed, enqueuing finalize.
    wait_for_block(&chain, release.block + WINDOW_BLOCKS + 3).await;
    let r = lambdas.invoke("tick", &json!({})).await;
    assert_eq!(ids(&r["closed"]), vec![epoch], "tick: {r}");

    // finalize: the queued job → a batch on IPFS, anchoring enqueued.
    let finalize_q = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Finalize)
        .await
        .unwrap();
    let (event, receipts) = drain_as_event(&finalize_q, &arn(QueueKind::Finalize)).await;
    let r = lambdas.invoke("finalize", &event_json(&event)).await;
    assert_eq!(failures(&r), Vec::<String>::new(), "finalize: {r}");
    finalize_q.ack(&receipts).await.unwrap();

    // anchor: the batch and the end of the epoch on chain.
    let anchor_q = SqsQueue::for_kind(&sqs, &prefix, QueueKind::Anchor)
        .await
        .unwrap();
    let (event, receipts) = drain_as_event(&anchor_q, &arn(QueueKind::Anchor)).await;
    let r = lambdas.invoke("anchor", &event_json(&event)).await;
    assert_eq!(failures(&r), Vec::<String>::new(), "anchor: {r}");
    anchor_q.ack(&receipts).await.unwrap();
    let on_chain = chain.anchored(market, epoch).await.unwrap();
    assert_eq!(on_chain.batches.len(), 1, "{on_chain:?}");
    assert!(on_chain.ended, "{on_chain:?}");
    let batch = &on_chain.batches[0];
    assert!(batch.batch_cid.starts_with("baf"), "{on_chain:?}");

    // proof (function URL): the accepted submission is included, in the batch on chain (whose
    // root there is the batch's finalized-CIDs root).
    let path = format!("/v1/markets/{market:#x}/epochs/{epoch}/submissions/{good_id}");
    let r = lambdas
        .invoke("proof", &function_url_request("GET", &path))
        .await;
    assert_eq!(r["statusCode"], 200, "proof: {r}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["fate"], "included", "proof: {body}");
    assert_eq!(
        body["batch"]["cid"],
        batch.batch_cid.as_str(),
        "proof: {body}"
    );
    assert_eq!(
        body["batch"]["finalizedCidsRoot"]
            .as_str()
            .map(str::to_lowercase),
        Some(format!("{:#x}", batch.root)),
        "proof: {body}"
    );
    let r = lambdas
        .invoke(
            "proof",
            &function_url_request("GET", "/v1/markets/0x12/epochs"),
        )
        .await;
    assert_eq!(r["statusCode"], 400, "proof: {r}");

    // epoch-manager: a scheduled event → its stats (no step under cargo lambda's deadline).
    let r = lambdas.invoke("epoch-manager", &scheduled).await;
    assert!(
        r["released"].is_u64() && r["errors"] == 0,
        "epoch-manager: {r}"
    );

    // Every process served every invocation without exiting.
    lambdas.assert_all_alive();

    // Logs follow the function's logging configuration: JSON lines only (tracing events and EMF
    // metric lines alike), at its level: anchor logs the INFO event of each anchored batch,
    // finalize at WARN does not log its INFO "epoch finalized".
    let log = |f: &str| std::fs::read_to_string(dir.join(format!("{f}.log"))).unwrap();
    let events = |text: &str| -> Vec<Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect()
    };
    let anchor_log = events(&log("anchor"));
    assert!(
        anchor_log
            .iter()
            .any(|v| v["level"] == "INFO" && v["fields"]["message"] == "batch anchored"),
        "{anchor_log:?}"
    );
    let finalize_log = events(&log("finalize"));
    assert!(
        finalize_log.iter().all(|v| v["level"] != "INFO"),
        "{finalize_log:?}"
    );
    assert!(
        finalize_log.iter().any(|v| v.get("_aws").is_some()),
        "EMF lines still printed: {finalize_log:?}"
    );
    // The EMF documents: the module's namespace, the market the first dimension of every one,
    // and the anchor's epochs counted under its market (what the Terraform alarms read).
    let mk = format!("{market:#x}");
    for f in ["verify", "tick", "finalize", "anchor", "proof"] {
        let docs: Vec<Value> = events(&log(f))
            .into_iter()
            .filter(|v| v.get("_aws").is_some())
            .collect();
        assert!(!docs.is_empty(), "{f}: no EMF document");
        for d in &docs {
            let cw = &d["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(cw["Namespace"], format!("Sequencer/{prefix}"), "{f}: {d}");
            assert_eq!(cw["Dimensions"][0][0], "market", "{f}: {d}");
            assert_eq!(d["market"], mk.as_str(), "{f}: {d}");
        }
        let invocation = format!("{f}_invocation_ms");
        assert!(
            docs.iter().any(|d| d.get(&invocation).is_some()),
            "{f}: no {invocation}: {docs:?}"
        );
    }
    assert!(
        events(&log("anchor"))
            .iter()
            .any(|d| d["anchor_epochs_total"].as_u64() >= Some(1)),
        "anchor_epochs_total never written"
    );
    drop(lambdas);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "lambda binaries: verify, tick, finalize, anchor, proof, epoch-manager proven in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
