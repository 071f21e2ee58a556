//! Into the AWS emulator's SQS (`AWS_ENDPOINT_URL`, see scripts/env.sh and localstack/): byte-exact
//! bodies and attributes, the queue endpoint going away mid-stream and coming back, and SIGTERM of
//! the real binary with a full buffer. Each test writes to a private queue it creates and deletes,
//! so concurrent tests and other crates' consumers of `seq-submissions` do not interfere.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use sequencer_ingress::config::DEFAULT_QUEUE_NAME;
use sequencer_ingress::sink::sqs::SqsSink;
use snapshotter_sim::{write_message, Client as P2pClient, SubmissionFactory};

struct Queue {
    client: Client,
    url: String,
}

impl Queue {
    async fn create(client: &Client) -> Self {
        let name = format!("ingress-test-{}", uuid::Uuid::new_v4().simple());
        let out = client
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("create queue");
        Self {
            client: client.clone(),
            url: out.queue_url().expect("url").to_owned(),
        }
    }

    /// Receives until `n` distinct bodies were seen or `timeout`; deletes what it receives.
    /// Returns every message received, duplicates included (delivery is at least once).
    async fn receive(&self, n: usize, timeout: Duration) -> Vec<(String, HashMap<String, String>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
        let mut distinct = HashSet::new();
        while distinct.len() < n && tokio::time::Instant::now() < deadline {
            let r = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive");
            for m in r.messages() {
                let attrs = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.string_value().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let body = m.body().unwrap_or("").to_owned();
                // The ingress's own tallies (the close watermark's counts) are not submissions.
                if common::is_tally(body.as_bytes()) {
                    continue;
                }
                distinct.insert(body.clone());
                out.push((body, attrs));
                if let Some(h) = m.receipt_handle() {
                    let _ = self
                        .client
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(h)
                        .send()
                        .await;
                }
            }
        }
        out
    }

    async fn delete(self) {
        let _ = self.client.delete_queue().queue_url(&self.url).send().await;
    }
}

/// The emulator client, or `None` (after a loud skip) when no emulator answers.
async fn emulator() -> Option<(Client, String)> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let reachable = match &endpoint {
        Some(e) => {
            let hostport = e
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_owned();
            tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(hostport),
            )
            .await
            .is_ok_and(|r| r.is_ok())
        }
        None => false,
    };
    if !common::require("the SQS emulator (AWS_ENDPOINT_URL)", reachable) {
        return None;
    }
    let endpoint = endpoint?;
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Some((SqsSink::client_from_env().await, hostport))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_into_sqs_byte_exact_with_attributes() {
    let Some((client, _)) = emulator().await else {
        return;
    };
    // The queue the resources script creates is there (the deployed ingress writes to it).
    SqsSink::resolve_queue_url(&client, DEFAULT_QUEUE_NAME)
        .await
        .expect("seq-submissions exists (localstack/create-resources.sh)");
    let queue = Queue::create(&client).await;
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(SqsSink::new(client.clone(), queue.url.clone()));
    let ingress = common::start(common::settings(dir.path()), sink).await;
    let factory = SubmissionFactory::new(4).expect("factory");
    let mut sent = Vec::new();
    for c in 0..2 {
        let p2p = common::client(&ingress).await;
        for s in 0..2 {
            let msgs = common::messages(&factory, c * 2 + s, 60);
            let mut stream = p2p.open().await.expect("open");
            for m in &msgs {
                write_message(&mut stream, m).await.expect("write");
            }
            sent.extend(msgs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = queue.receive(sent.len(), Duration::from_secs(60)).await;
    let bodies: HashSet<Vec<u8>> = got.iter().map(|(b, _)| b.as_bytes().to_vec()).collect();
    common::assert_same(
        bodies,
        sent.iter().cloned(),
        "queue holds the /collect bytes exactly",
    );
    assert_eq!(got.len(), sent.len());
    let (body, attrs) = &got[0];
    let msg = sequencer_core::collect::CollectMessage::parse(body.as_bytes()).expect("body parses");
    assert_eq!(
        attrs["submission_id"],
        msg.submission_id.hyphenated().to_string()
    );
    assert_eq!(attrs["epoch"], msg.submission.request.epoch_id.to_string());
    assert_eq!(attrs["slot"], msg.submission.request.slot_id.to_string());
    assert_eq!(attrs["project"], msg.submission.request.project_id);
    assert_eq!(attrs["market"], msg.submission.data_market);
    assert!(attrs["peer"].starts_with("12D3"));
    let report = ingress.shutdown().await;
    assert_eq!(report.enqueued, sent.len() as u64);
    queue.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_endpoint_down_and_back_mid_stream_loses_nothing() {
    let Some((client, hostport)) = emulator().await else {
        return;
    };
    let queue = Queue::create(&client).await;
    let proxy = common::Flaky::start(hostport).await;
    let proxied = SqsSink::client_with_endpoint(Some(&proxy.url)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let ingress = common::start(
        common::settings(dir.path()),
        Arc::new(SqsSink::new(proxied, queue.url.clone())),
    )
    .await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 300);
    let p2p = common::client(&ingress).await;
    let mut stream = p2p.open().await.expect("open");
    let writer = {
        let msgs = msgs.clone();
        tokio::spawn(async move {
            for m in &msgs {
                write_message(&mut stream, m).await.expect("write");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stream
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.set_up(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        ingress
            .metrics
            .sink_retries
            .get_or_create(&[("reason", "transport")])
            .get()
            > 0,
        "calls failed while down"
    );
    proxy.set_up(true);
    let _stream = writer.await.expect("writer");
    let got = queue.receive(msgs.len(), Duration::from_secs(60)).await;
    let bodies: HashSet<Vec<u8>> = got.iter().map(|(b, _)| b.as_bytes().to_vec()).collect();
    common::assert_same(
        bodies.iter().cloned(),
        msgs.iter().cloned(),
        "nothing accepted was lost",
    );
    eprintln!(
        "received {} messages for {} sent ({} duplicates from calls cut mid-flight)",
        got.len(),
        msgs.len(),
        got.len() - bodies.len()
    );
    ingress.shutdown().await;
    queue.delete().await;
}

async fn scrape(http: &str, metric: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn http_status(http: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    body.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_full_buffer_of_the_real_binary_into_sqs() {
    let Some((client, hostport)) = emulator().await else {
        return;
    };
    let queue = Queue::create(&client).await;
    let proxy = common::Flaky::start(hostport).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (p2p_port, http_port) = (free_port(), free_port());
    let http = format!("127.0.0.1:{http_port}");
    let key = libp2p::identity::Keypair::generate_ed25519();
    let server = key.public().to_peer_id();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sequencer-ingress"))
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env(
            "INGRESS_KEY",
            hex::encode(key.to_protobuf_encoding().expect("key")),
        )
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
        .args(["--markets", &common::local_market()])
        .args([
            "--http-listen",
            &http,
            "--queue-url",
            &queue.url,
            "--buffer-bytes",
            "32768",
        ])
        .args(["--drain-timeout-secs", "15", "--ready-probe-secs", "1"])
        .arg("--spill-path")
        .arg(dir.path().join("spill.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ingress");
    let mut up = false;
    for _ in 0..100 {
        if http_status(&http, "/readyz").await == Some(200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "binary became ready");
    assert_eq!(http_status(&http, "/healthz").await, Some(200));
    proxy.set_up(false);
    // The cached probe notices within one probe interval (1 s here) plus its timeout.
    let mut status = None;
    for _ in 0..50 {
        status = http_status(&http, "/readyz").await;
        if status == Some(503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        Some(503),
        "not ready while the queue is unreachable"
    );

    let addr: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{p2p_port}")
        .parse()
        .expect("addr");
    let p2p = P2pClient::connect(&addr, server).await.expect("connect");
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 200);
    let mut stream = p2p.open().await.expect("open");
    let writer = tokio::spawn(async move {
        for m in &msgs {
            if write_message(&mut stream, m).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut waits = 0.0;
    for _ in 0..100 {
        waits = scrape(&http, "ingress_backpressure_waits_total")
            .await
            .unwrap_or(0.0);
        if waits > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waits > 0.0, "buffer full, readers pushed back");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = scrape(&http, "ingress_messages_accepted_total")
        .await
        .expect("accepted metric") as usize;
    assert!(accepted > 0);

    let pid = child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set_up(true);
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits before the deadline")
        .expect("wait");
    assert!(exit.success(), "clean exit: {exit:?}");
    let got = queue.receive(accepted, Duration::from_secs(60)).await;
    let distinct: HashSet<&String> = got.iter().map(|(b, _)| b).collect();
    assert_eq!(
        distinct.len(),
        accepted,
        "every accepted message reached the queue"
    );
    assert!(!dir.path().join("spill.jsonl").exists(), "nothing spilled");
    writer.abort();
    queue.delete().await;
}

/// Starts the real binary against `queue_url` through `endpoint`; returns it once `/healthz` answers.
async fn spawn_binary(
    endpoint: &str,
    queue_url: &str,
    key: &libp2p::identity::Keypair,
    spill: &std::path::Path,
    drain_secs: u64,
) -> (tokio::process::Child, libp2p::Multiaddr, String) {
    let (p2p_port, http_port) = (free_port(), free_port());
    let http = format!("127.0.0.1:{http_port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sequencer-ingress"))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env(
            "INGRESS_KEY",
            hex::encode(key.to_protobuf_encoding().expect("key")),
        )
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p_port}")])
        .args(["--markets", &common::local_market()])
        .args(["--http-listen", &http, "--queue-url", queue_url])
        .args(["--drain-timeout-secs", &drain_secs.to_string()])
        .arg("--spill-path")
        .arg(spill)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ingress");
    for _ in 0..100 {
        if http_status(&http, "/healthz").await == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr = format!("/ip4/127.0.0.1/tcp/{p2p_port}")
        .parse()
        .expect("addr");
    (child, addr, http)
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_down_past_the_deadline_spills_and_the_next_start_replays_into_sqs() {
    let Some((client, hostport)) = emulator().await else {
        return;
    };
    let queue = Queue::create(&client).await;
    let proxy = common::Flaky::start(hostport).await;
    proxy.set_up(false);
    let dir = tempfile::tempdir().expect("tmp");
    let spill = dir.path().join("spill.jsonl");
    let key = libp2p::identity::Keypair::generate_ed25519();
    let server = key.public().to_peer_id();

    let (mut child, addr, http) = spawn_binary(&proxy.url, &queue.url, &key, &spill, 1).await;
    let p2p = P2pClient::connect(&addr, server).await.expect("connect");
    let factory = SubmissionFactory::new(1).expect("factory");
    let msgs = common::messages(&factory, 0, 40);
    let mut stream = p2p.open().await.expect("open");
    for m in &msgs {
        write_message(&mut stream, m).await.expect("write");
    }
    let mut accepted = 0.0;
    for _ in 0..100 {
        accepted = scrape(&http, "ingress_messages_accepted_total")
            .await
            .unwrap_or(0.0);
        if accepted >= 40.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted, 40.0, "all accepted while the queue is down");
    sigterm(&child);
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after the deadline")
        .expect("wait");
    assert!(exit.success(), "a spill is a clean exit: {exit:?}");
    let records = sequencer_ingress::spill::read_file(&spill).expect("spill file");
    common::assert_same(
        records.iter().map(|r| r.bytes().expect("record body")),
        msgs.iter().cloned(),
        "spilled byte-exact",
    );
    p2p.close().await;

    // Next start with the queue reachable: the spill goes to SQS and the file is removed.
    proxy.set_up(true);
    let (mut child, _addr, _http) = spawn_binary(&proxy.url, &queue.url, &key, &spill, 5).await;
    let got = queue.receive(msgs.len(), Duration::from_secs(60)).await;
    let bodies: HashSet<Vec<u8>> = got.iter().map(|(b, _)| b.as_bytes().to_vec()).collect();
    common::assert_same(
        bodies,
        msgs.iter().cloned(),
        "replayed into the queue byte-exact",
    );
    let peer = got[0].1.get("peer").cloned().unwrap_or_default();
    assert!(
        peer.parse::<libp2p::PeerId>().is_ok(),
        "attributes survive the spill: peer {peer}"
    );
    let left = common::spill_files_left(dir.path(), Duration::from_secs(10)).await;
    assert_eq!(left, 0, "spill file removed after the replay");
    sigterm(&child);
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(exit.success());
    queue.delete().await;
}

/// What the emulator does with one message sent directly (not through the ingress).
#[derive(Debug, PartialEq, Eq)]
enum Direct {
    /// Stored, and the body and attribute read back equal what was sent.
    StoredExact,
    /// Stored, but the body or attribute read back differs from what was sent.
    StoredAltered,
    /// Refused with this error code.
    Refused(String),
}

async fn send_direct(queue: &Queue, body: &str, attr: &str) -> Direct {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    use aws_sdk_sqs::types::MessageAttributeValue;
    let v = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(attr)
        .build()
        .expect("attribute");
    let sent = queue
        .client
        .send_message()
        .queue_url(&queue.url)
        .message_body(body)
        .message_attributes("project", v)
        .send()
        .await;
    if let Err(e) = sent {
        let code = e.code().unwrap_or("no code").to_owned();
        eprintln!("  refused: {code}: {}", e.message().unwrap_or(""));
        return Direct::Refused(code);
    }
    let got = queue.receive(1, Duration::from_secs(10)).await;
    let Some((b, attrs)) = got.into_iter().next() else {
        return Direct::Refused("not received".into());
    };
    if b == body && attrs.get("project").map(String::as_str) == Some(attr) {
        Direct::StoredExact
    } else {
        eprintln!(
            "  altered: body {:?} attribute {:?}",
            b.escape_debug().to_string(),
            attrs.get("project")
        );
        Direct::StoredAltered
    }
}

/// What the emulator's SQS does with NUL and U+FFFF in a body and in a string attribute when a
/// client sends them directly. The findings are written in ingress/README.md ("Edge checks").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_sqs_does_with_nul_and_u_ffff_sent_directly() {
    let Some((client, _)) = emulator().await else {
        return;
    };
    let queue = Queue::create(&client).await;
    let cases: [(&str, &str, &str); 6] = [
        ("plain", "{\"a\":\"b\"}", "ok"),
        (
            "\\u0000 escape in the body (ASCII)",
            "{\"a\":\"\\u0000\"}",
            "ok",
        ),
        ("raw NUL in the body", "{\"a\":\"\u{0}\"}", "ok"),
        ("raw U+FFFF in the body", "{\"a\":\"\u{FFFF}\"}", "ok"),
        ("raw NUL in an attribute", "{\"a\":\"b\"}", "a\u{0}b"),
        ("raw U+FFFF in an attribute", "{\"a\":\"b\"}", "a\u{FFFF}b"),
    ];
    let mut outcomes = Vec::new();
    for (name, body, attr) in cases {
        eprintln!("{name}:");
        let o = send_direct(&queue, body, attr).await;
        eprintln!("  => {o:?}");
        outcomes.push((name, o));
    }
    let get = |n: &str| &outcomes.iter().find(|(m, _)| *m == n).expect("case").1;
    assert_eq!(get("plain"), &Direct::StoredExact);
    assert_eq!(
        get("\\u0000 escape in the body (ASCII)"),
        &Direct::StoredExact
    );
    // The whole call is refused (nothing stored, nothing rewritten), with these codes.
    for (refused, code) in [
        ("raw NUL in the body", "InvalidMessageContents"),
        ("raw U+FFFF in the body", "InvalidMessageContents"),
        ("raw NUL in an attribute", "InvalidParameterValue"),
        ("raw U+FFFF in an attribute", "InvalidParameterValue"),
    ] {
        assert_eq!(get(refused), &Direct::Refused(code.into()), "{refused}");
    }

    // In a batch (what the ingress sends): does one bad entry fail alone or take the call down?
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let entry = |id: &str, body: &str| {
        SendMessageBatchRequestEntry::builder()
            .id(id)
            .message_body(body)
            .build()
            .expect("entry")
    };
    let batch = queue
        .client
        .send_message_batch()
        .queue_url(&queue.url)
        .entries(entry("good", "{\"a\":\"b\"}"))
        .entries(entry("bad", "{\"a\":\"\u{FFFF}\"}"))
        .send()
        .await;
    let stored = queue.receive(1, Duration::from_secs(3)).await.len();
    match &batch {
        Ok(out) => eprintln!(
            "batch: call ok, failed entries {:?}, stored {stored}",
            out.failed()
                .iter()
                .map(|f| (f.id(), f.code(), f.sender_fault()))
                .collect::<Vec<_>>()
        ),
        Err(e) => {
            use aws_sdk_sqs::error::ProvideErrorMetadata;
            eprintln!("batch: whole call refused: {:?}, stored {stored}", e.code());
        }
    }
    let whole_call_refused = batch.is_err();
    eprintln!(
        "batch with one bad entry: whole call refused = {whole_call_refused}, stored = {stored}"
    );
    // Measured on LocalStack: the call succeeds, the good entry is stored, and the bad one fails
    // alone with InvalidMessageContents but SenderFault false (the sink treats it as the
    // message's fault anyway, see the next test).
    assert!(!whole_call_refused);
    assert_eq!(stored, 1, "the good entry is stored");
    let failed: Vec<(String, String, bool)> = batch
        .map(|o| {
            o.failed()
                .iter()
                .map(|f| (f.id().to_owned(), f.code().to_owned(), f.sender_fault()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        failed,
        vec![("bad".to_owned(), "InvalidMessageContents".to_owned(), false)]
    );
    queue.delete().await;
}

/// Behind the edge (a message that skipped it, e.g. replayed from an old spill file): an entry
/// SQS refuses for its characters goes to the rejected file once, it is not retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_sqs_refuses_for_its_characters_is_rejected_not_retried() {
    use sequencer_ingress::dispatcher::{self, DispatcherConfig};
    use sequencer_ingress::envelope::{Envelope, EnvelopeMeta};
    let Some((client, _)) = emulator().await else {
        return;
    };
    let queue = Queue::create(&client).await;
    let dir = tempfile::tempdir().expect("tmp");
    let spill = dir.path().join("spill.jsonl");
    let metrics = sequencer_ingress::metrics::Metrics::new();
    let sink = Arc::new(SqsSink::new(client.clone(), queue.url.clone()));
    let (handle, d) = dispatcher::buffer(DispatcherConfig::default(), metrics.clone(), &spill);
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let run = tokio::spawn(d.run(sink, rx));
    let meta = EnvelopeMeta {
        submission_id: "00000000-0000-0000-0000-000000000001".into(),
        ..Default::default()
    };
    for body in ["{\"a\":\"\u{FFFF}\"}", "{\"a\":\"ok\"}"] {
        handle
            .push(Envelope::new(body.as_bytes().to_vec(), meta.clone()))
            .await
            .expect("push");
    }
    drop(handle);
    let report = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("not retried forever")
        .expect("dispatcher");
    assert_eq!((report.enqueued, report.rejected), (1, 1), "{report:?}");
    let mut rejected = spill.as_os_str().to_owned();
    rejected.push(".rejected.jsonl");
    let records = sequencer_ingress::spill::read_file(std::path::Path::new(&rejected))
        .expect("rejected file");
    assert_eq!(records.len(), 1);
    assert!(records[0]
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("InvalidMessageContents")));
    queue.delete().await;
}

/// Through the ingress into SQS: the unsafe cases are refused at the edge with a reason (none
/// reaches SQS), and every accepted message arrives byte-exact, the ASCII `\u0000` escape too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_refuses_unsafe_characters_at_the_edge_and_the_rest_arrive_byte_exact() {
    let Some((client, _)) = emulator().await else {
        return;
    };
    let queue = Queue::create(&client).await;
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(SqsSink::new(client.clone(), queue.url.clone()));
    let mut settings = common::settings(dir.path());
    settings.host.edge = sequencer_ingress::edge::EdgePolicy::markets([
        sequencer_core::devkeys::local_market_address(),
    ]);
    let ingress = common::start(settings, sink).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let cases = common::edge_cases(&factory);
    let p2p = common::client(&ingress).await;
    let mut stream = p2p.open().await.expect("open");
    for c in &cases {
        write_message(&mut stream, &c.bytes).await.expect("write");
    }
    let good: Vec<Vec<u8>> = cases
        .iter()
        .filter(|c| c.reason.is_none())
        .map(|c| c.bytes.clone())
        .collect();
    let got = queue.receive(good.len(), Duration::from_secs(30)).await;
    // Wait a little longer: a refused message must not show up late either.
    let late = queue.receive(usize::MAX, Duration::from_secs(2)).await;
    common::assert_same(
        got.iter()
            .chain(late.iter())
            .map(|(b, _)| b.as_bytes().to_vec()),
        good.iter().cloned(),
        "only plausible submissions reach SQS, byte-exact",
    );
    let m = &ingress.metrics;
    for (c, r) in cases.iter().filter_map(|c| c.reason.map(|r| (c, r))) {
        assert!(m.reject_count(r) >= 1, "{}: no {r} counted", c.name);
    }
    assert_eq!(m.reject_count("queue_rejected"), 0, "SQS refused nothing");
    p2p.close().await;
    let report = ingress.shutdown().await;
    assert_eq!(report.enqueued, good.len() as u64);
    queue.delete().await;
}
