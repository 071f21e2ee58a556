//! Finalize under the deployment's timing and concurrency: the Terraform module runs it at
//! concurrency 2 with a 30-minute visibility timeout, and the tick moves epochs CLOSING → CLOSED
//! on its own schedule. Each test mounts one fault at every port call of a run (state store,
//! content store and queue calls, counted by `sequencer_testsupport::gate`):
//!
//! - a second finalizer running entirely between two calls of the first;
//! - the same with a submission accepted in between (the two read different sets);
//! - the tick's CLOSING → CLOSED between two calls;
//! - a crash between two calls, then the redelivered job;
//!
//! and checks after each that the epoch has one batch set, byte for byte the sealed one, and
//! that anchoring it gives batches whose roots recompute from the documents, each project once.
//! Also: a duplicated job through the queue, the in-invocation retry delays under a transient
//! failure and an outage, and a 1 MiB project among ordinary ones, all anchored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sequencer_core::cids::{document_cid, raw_cid};
use sequencer_core::eip712::address_of;
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::{devkeys, B256};
use sequencer_embedded::poller::{drain, sqs_event, PollerConfig};
use sequencer_handlers::finalize::{self, FinalizeReport, SealDocument};
use sequencer_handlers::jobs::EpochJob;
use sequencer_handlers::metrics as m;
use sequencer_handlers::records::{BatchRecord, EpochState, SealRecord, SubmissionRecord};
use sequencer_handlers::{anchor, tick, verify, Pipeline, PipelineError, Ports};
use sequencer_ports::{ContentStore, Item, Key, PortError, Queue, Table};
use sequencer_testsupport::gate::{Gate, GatedContent, GatedQueue, GatedState};
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;

const CIDS: [&str; 2] = [
    "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy",
    "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
];

struct Env {
    h: Harness,
    epoch: u64,
    header: B256,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl Env {
    fn job(&self) -> EpochJob {
        EpochJob {
            market: self.market,
            epoch: self.epoch,
        }
    }

    /// A signed `/collect` message with a fixed id, so every environment has the same bytes.
    fn msg(&self, id: u128, slot: u64, project: &str, cid: &str) -> String {
        signed_message(
            &self.domain,
            self.market,
            &Uuid::from_u128(id),
            slot,
            slot,
            self.epoch,
            project,
            cid,
            self.header,
        )
        .0
    }

    /// Moves the epoch along its lifecycle as the tick does.
    async fn close(&self, to: EpochState) {
        let r = self.p.records();
        let e = r.epoch(self.epoch).await.unwrap().unwrap();
        assert_eq!(e.state, EpochState::Open);
        r.move_epoch(EpochState::Open, EpochState::Closing, &e.record)
            .await
            .unwrap();
        if to == EpochState::Closed {
            r.move_epoch(EpochState::Closing, EpochState::Closed, &e.record)
                .await
                .unwrap();
        }
    }

    /// Accepts `body` the way verify's claim does, whatever the epoch's state: what a verify
    /// that read the epoch OPEN before the close does (the intake side makes that impossible;
    /// the seal must hold without it).
    async fn accept_directly(&self, body: &str) {
        let (id, text) = body.split_at(36);
        let sub: sequencer_core::submission::SnapshotSubmission =
            serde_json::from_str(text).unwrap();
        let rec = SubmissionRecord {
            submission_id: id.to_string(),
            text: text.to_string(),
            signer: address_of(&devkeys::sim_snapshotter_key(sub.request.slot_id).unwrap()),
            header_block: 0,
            verified_at_ms: 0,
        };
        let r = self.p.records();
        let (project, slot) = (&sub.request.project_id, sub.request.slot_id);
        // The claim alone, with no condition on the epoch.
        let claim = sequencer_handlers::records::Write::Claim {
            epoch: self.epoch,
            project: project.clone(),
            slot,
            rec,
            over_pending: false,
        };
        assert_eq!(
            r.write_intake(&[claim], &Default::default()).await.unwrap(),
            None,
            "claimed"
        );
    }
}

/// An epoch with 6 projects × 2 submissions accepted by verify, closed to `state`; batches of 2
/// projects: 3 batches.
async fn epoch(state: EpochState) -> Env {
    epoch_cut(state, 2).await
}

/// [`epoch`] with batches of `batch_size` projects.
async fn epoch_cut(state: EpochState, batch_size: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), batch_size);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    assert_eq!(tick::step(&h.p).await.unwrap().opened, vec![epoch]);
    let e = Env {
        h,
        epoch,
        header: block_hash_of(r + 1),
        _dir: dir,
    };
    for slot in 1..=6u64 {
        for (n, project) in [slot - 1, slot % 6].into_iter().enumerate() {
            let body = e.msg(
                u128::from(slot * 10) + n as u128,
                slot,
                &format!("p{project}"),
                CIDS[(slot as usize + n) % 2],
            );
            assert_eq!(
                verify::verify_body(&e.p, &body).await.unwrap(),
                verify::Verdict::Accepted
            );
        }
    }
    e.chain.mine(10);
    e.close(state).await;
    e
}

/// The pipeline of `e` with every port call through `gate`.
fn gated(e: &Env, gate: &Arc<Gate>) -> Arc<Pipeline> {
    let p = &e.p;
    let ports = Ports {
        state: Arc::new(GatedState::new(gate.clone(), p.ports.state.clone())),
        content: Arc::new(GatedContent::new(gate.clone(), p.ports.content.clone())),
        chain: p.ports.chain.clone(),
        finalize_queue: Arc::new(GatedQueue::new(
            gate.clone(),
            p.ports.finalize_queue.clone(),
        )),
        anchor_queue: Arc::new(GatedQueue::new(gate.clone(), p.ports.anchor_queue.clone())),
        submissions_dlq: p.ports.submissions_dlq.clone(),
    };
    let mut gated = Pipeline::new(ports, p.config.clone());
    // Recorded where the harness reads them (`e.metrics`).
    gated.metrics = p.metrics.clone();
    Arc::new(gated)
}

/// What one finalizer alone makes of the epoch: its seal, its batch records, its port calls.
struct Reference {
    seal: SealRecord,
    batches: Vec<BatchRecord>,
    calls: Vec<String>,
}

async fn reference(state: EpochState) -> Reference {
    let e = epoch(state).await;
    let gate = Gate::new();
    let report = finalize::run(&gated(&e, &gate), e.job()).await.unwrap();
    assert!(report.sealed && !report.already_finalized);
    assert_eq!(report.batches, 3);
    let r = e.p.records();
    Reference {
        seal: r.seal(e.epoch).await.unwrap().unwrap(),
        batches: r
            .batches(e.epoch)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.record)
            .collect(),
        calls: gate.log(),
    }
}

/// The epoch is FINALIZED with exactly the batches its seal lists (and, when given, those of
/// `expected`); then anchoring it puts batches on chain whose roots recompute from their
/// documents, each project once, the submission-id tree growing across them.
async fn check(e: &Env, expected: Option<&Reference>) -> SealDocument {
    let r = e.p.records();
    let ep = r.epoch(e.epoch).await.unwrap().unwrap();
    assert_eq!(ep.state, EpochState::Finalized);
    let seal = r.seal(e.epoch).await.unwrap().expect("sealed");
    let doc: SealDocument =
        serde_json::from_slice(&e.content.get(&seal.cid).await.unwrap().unwrap()).unwrap();
    let recorded: Vec<BatchRecord> = r
        .batches(e.epoch)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.record)
        .collect();
    assert_eq!(
        recorded, doc.batches,
        "the batch records are the sealed ones"
    );
    assert_eq!(ep.record.batches, Some(doc.batches.len() as u32));
    if let Some(x) = expected {
        assert_eq!(
            seal.cid, x.seal.cid,
            "byte for byte the batch set of one finalizer"
        );
        assert_eq!(recorded, x.batches);
    }

    anchor::run(&e.p, e.job()).await.unwrap();
    let on_chain = e.chain.anchored_batches(e.epoch);
    let anchored: Vec<&str> = on_chain.iter().map(|b| b.batch_cid.as_str()).collect();
    let sealed: Vec<&str> = doc.batches.iter().map(|b| b.cid.as_str()).collect();
    assert_eq!(anchored, sealed, "the sealed batches are the anchored ones");
    check_anchored(e, &on_chain).await;
    doc
}

#[tokio::test]
async fn a_second_finalizer_between_any_two_calls_of_the_first_makes_one_batch_set() {
    let x = reference(EpochState::Closed).await;
    for k in 0..x.calls.len() {
        let e = epoch(EpochState::Closed).await;
        let gate = Gate::new();
        gate.pause_before(k);
        let first = gated(&e, &gate);
        let job = e.job();
        let run = tokio::spawn(async move { finalize::run(&first, job).await });
        assert!(
            gate.parked(Duration::from_secs(10)).await,
            "parked before call {k}"
        );
        let second = finalize::run(&e.p, job).await.unwrap();
        gate.release();
        let first = run.await.unwrap().unwrap_or_else(|err| {
            panic!(
                "the first finalizer, parked before call {k} ({}): {err}",
                x.calls[k]
            )
        });
        assert_eq!(
            u8::from(first.sealed) + u8::from(second.sealed),
            1,
            "call {k}: one seal"
        );
        assert_eq!(first.seal_cid, x.seal.cid);
        assert_eq!(second.seal_cid, x.seal.cid);
        assert_eq!(
            u8::from(first.already_finalized) + u8::from(second.already_finalized),
            1,
            "call {k}: one run moved the epoch"
        );
        assert_eq!(
            e.anchor_q.depth().await.unwrap(),
            1,
            "one anchor job (FIFO dedup)"
        );
        check(&e, Some(&x)).await;
    }
}

#[tokio::test]
async fn two_finalizers_that_read_different_sets_converge_on_the_sealed_one() {
    let x = reference(EpochState::Closed).await;
    let mut with_late = 0;
    for k in 0..x.calls.len() {
        let e = epoch(EpochState::Closed).await;
        let gate = Gate::new();
        gate.pause_before(k);
        let first = gated(&e, &gate);
        let job = e.job();
        let run = tokio::spawn(async move { finalize::run(&first, job).await });
        assert!(gate.parked(Duration::from_secs(10)).await);
        // Accepted between the first finalizer's calls: the second reads a larger set.
        e.accept_directly(&e.msg(999, 6, "p-late", CIDS[0])).await;
        let second = finalize::run(&e.p, job).await.unwrap();
        gate.release();
        let first = run.await.unwrap().unwrap_or_else(|err| {
            panic!(
                "the first finalizer, parked before call {k} ({}): {err}",
                x.calls[k]
            )
        });
        assert_eq!(first.seal_cid, second.seal_cid, "call {k}: one seal");
        let doc = check(&e, None).await;
        if doc
            .batches
            .iter()
            .any(|b| b.pids.contains(&"p-late".to_string()))
        {
            with_late += 1;
        } else {
            assert_eq!(first.seal_cid, x.seal.cid);
        }
    }
    // The first finalizer seals what it read unless the second sealed first.
    assert!(with_late > 0 && with_late < x.calls.len(), "{with_late}");
}

#[tokio::test]
async fn the_ticks_close_between_any_two_calls_never_fails_the_job() {
    let x = reference(EpochState::Closing).await;
    // Finalize reads the epoch at its first epochs call and moves it at its one transition: a
    // close parked anywhere after the read, up to the transition, is a race it settles inline.
    let read = x
        .calls
        .iter()
        .position(|c| c == "state get epochs")
        .unwrap();
    let moved = x
        .calls
        .iter()
        .position(|c| c == "state transition epochs")
        .unwrap();
    assert_eq!(
        x.calls
            .iter()
            .filter(|c| *c == "state transition epochs")
            .count(),
        1
    );
    let mut races = 0;
    for k in 0..x.calls.len() {
        let e = epoch(EpochState::Closing).await;
        let gate = Gate::new();
        gate.pause_before(k);
        let p = gated(&e, &gate);
        let (job, run_p) = (e.job(), p.clone());
        let run = tokio::spawn(async move { finalize::run(&run_p, job).await });
        assert!(gate.parked(Duration::from_secs(10)).await);
        // The tick: CLOSING → CLOSED (refused if finalize got there first).
        let r = e.p.records();
        let cur = r.epoch(e.epoch).await.unwrap().unwrap();
        if cur.state == EpochState::Closing {
            r.move_epoch(EpochState::Closing, EpochState::Closed, &cur.record)
                .await
                .unwrap();
        }
        gate.release();
        let report: FinalizeReport = run.await.unwrap().unwrap_or_else(|err| {
            panic!(
                "finalize, the tick's close before call {k} ({}): {err}",
                x.calls[k]
            )
        });
        assert!(!report.already_finalized);
        let raced = e.metrics.counter(&m::FINALIZE_CLOSE_RACES, []);
        let expected = u64::from(k > read && k <= moved);
        assert_eq!(
            raced, expected,
            "the tick's close before call {k} ({})",
            x.calls[k]
        );
        races += raced;
        check(&e, Some(&x)).await;
    }
    assert_eq!(
        races as usize,
        moved - read,
        "every close in the race window was settled inline"
    );
}

#[tokio::test]
async fn a_crash_between_any_two_calls_then_the_redelivery_finishes_the_same_batch_set() {
    let x = reference(EpochState::Closed).await;
    for k in 0..x.calls.len() {
        let e = epoch(EpochState::Closed).await;
        let gate = Gate::new();
        gate.fail_at(k);
        let p = gated(&e, &gate);
        let crashed = finalize::run(&p, e.job()).await;
        assert!(
            matches!(&crashed, Err(err) if err.is_retryable()),
            "a crash before call {k} ({}): {crashed:?}",
            x.calls[k]
        );
        gate.heal();
        let again = finalize::run(&p, e.job()).await.unwrap();
        assert_eq!(again.seal_cid, x.seal.cid, "call {k}");
        check(&e, Some(&x)).await;
    }
}

#[tokio::test]
async fn a_duplicated_job_through_the_queue_finalizes_and_anchors_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    let e = Env {
        h,
        epoch,
        header: block_hash_of(r + 1),
        _dir: dir,
    };
    for slot in 1..=4u64 {
        let body = e.msg(u128::from(slot), slot, &format!("p{slot}"), CIDS[0]);
        verify::verify_body(&e.p, &body).await.unwrap();
    }
    e.chain.mine(10);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![epoch]);
    // Delivered twice (SQS is at least once), both in one batch of the event source mapping.
    e.finalize_q
        .send(&[e.job().message().unwrap()])
        .await
        .unwrap();
    let cfg = PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        batch_size: 10,
    };
    let r = drain(&e.finalize_q, &cfg, 5, |ev| finalize::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!((r.received, r.failed), (2, 0));
    assert_eq!(e.anchor_q.depth().await.unwrap(), 1);
    drain(&e.anchor_q, &cfg, 5, |ev| anchor::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!(e.chain.transactions(), 3, "2 batches + endBatchSubmissions");
    // Redelivered after it all: nothing changes.
    e.finalize_q
        .send(&[e.job().message().unwrap()])
        .await
        .unwrap();
    drain(&e.finalize_q, &cfg, 5, |ev| finalize::handle(&e.p, ev))
        .await
        .unwrap();
    drain(&e.anchor_q, &cfg, 5, |ev| anchor::handle(&e.p, ev))
        .await
        .unwrap();
    assert_eq!(e.chain.transactions(), 3);
    assert_eq!(e.metrics.counter(&m::FINALIZE_EPOCHS, []), 1);
}

/// A transient failure costs the retry delay, inside the invocation: 1 s, not the queue's
/// 30-minute visibility timeout. An outage is retried 1, 2, 4, 8, 16, 30, 30 s (91 s, within the
/// 120 s budget) and then left to the queue.
#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_after_seconds_within_the_invocation() {
    let e = epoch(EpochState::Closed).await;
    let gate = Gate::new();
    gate.fail_at(5);
    let p = gated(&e, &gate);
    let messages = [sequencer_ports::Received {
        message_id: "m1".into(),
        receipt: "r1".into(),
        body: serde_json::to_string(&e.job()).unwrap(),
        attributes: Default::default(),
        receive_count: 1,
        group_id: None,
    }];
    let t = tokio::time::Instant::now();
    let out = finalize::handle(&p, sqs_event("arn:finalize", &messages)).await;
    assert!(out.batch_item_failures.is_empty());
    assert_eq!(t.elapsed(), Duration::from_secs(1));
    assert_eq!(e.metrics.counter(&m::FINALIZE_RETRIES, []), 1);
    check(&e, None).await;

    let e = epoch(EpochState::Closed).await;
    let gate = Gate::new();
    gate.fail_from(2);
    let p = gated(&e, &gate);
    let t = tokio::time::Instant::now();
    let out = finalize::handle(&p, sqs_event("arn:finalize", &messages)).await;
    assert_eq!(out.batch_item_failures.len(), 1, "left to the queue");
    assert_eq!(
        t.elapsed(),
        Duration::from_secs(1 + 2 + 4 + 8 + 16 + 30 + 30)
    );
    assert_eq!(e.metrics.counter(&m::FINALIZE_RETRIES, []), 7);
    // An error no retry can fix is not retried.
    let mut other = e.job();
    other.market = sequencer_core::Address::repeat_byte(0x77);
    let t = tokio::time::Instant::now();
    let err = finalize::run_retrying(&e.p, other).await;
    assert!(matches!(err, Err(PipelineError::Invariant(_))));
    assert_eq!(t.elapsed(), Duration::ZERO);
}

/// One project's submissions alone are over 1 MiB of batch document (a 256-byte project id of
/// quotes, escaped twice in the document): it gets a batch of its own whose CID is the UnixFS
/// root an IPFS node gives, and every project of the epoch is anchored.
#[tokio::test]
async fn a_one_mib_project_is_anchored_with_every_other_project() {
    let dir = tempfile::tempdir().unwrap();
    let slots = 720;
    let h = Harness::with(dir.path(), 50, slots, None);
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    let e = Env {
        h,
        epoch,
        header: block_hash_of(r + 1),
        _dir: dir,
    };
    let big = format!("big:{}", "\"".repeat(252));
    assert_eq!(big.len(), 256);
    for slot in 1..=slots {
        let body = e.msg(
            u128::from(slot),
            slot,
            &big,
            CIDS[usize::from(slot % 3 == 0)],
        );
        assert_eq!(
            verify::verify_body(&e.p, &body).await.unwrap(),
            verify::Verdict::Accepted
        );
    }
    // Two ordinary projects, from slots that have one submission left under the cap of 2.
    for slot in 1..=6u64 {
        let project = if slot <= 3 { "a-small" } else { "zz-small" };
        let body = e.msg(10_000 + u128::from(slot), slot, project, CIDS[1]);
        assert_eq!(
            verify::verify_body(&e.p, &body).await.unwrap(),
            verify::Verdict::Accepted
        );
    }
    e.chain.mine(10);
    assert_eq!(tick::step(&e.p).await.unwrap().closed, vec![epoch]);
    e.run_jobs().await;

    let on_chain = e.chain.anchored_batches(epoch);
    let doc = check_anchored(&e, &on_chain).await;
    let pids: Vec<&str> = doc
        .iter()
        .flat_map(|d| &d.pids)
        .map(String::as_str)
        .collect();
    assert_eq!(
        pids,
        vec!["a-small", big.as_str(), "zz-small"],
        "every project, once"
    );
    let at = doc
        .iter()
        .position(|d| d.pids == vec![big.clone()])
        .expect("the big project has a batch of its own");
    let big_batch = &on_chain[at];
    let bytes = e.blocks.get(&big_batch.batch_cid).await.unwrap().unwrap();
    assert!(bytes.len() > 1024 * 1024, "{} bytes", bytes.len());
    assert!(
        big_batch.batch_cid.starts_with("bafybei"),
        "{}",
        big_batch.batch_cid
    );
    assert_eq!(
        e.blocks.get(&raw_cid(&bytes).to_string()).await.unwrap(),
        None,
        "stored under the node's CID only"
    );
    let listed: usize = doc.iter().map(|d| d.submission_ids.len()).sum();
    assert_eq!(
        listed,
        slots as usize + 6,
        "every accepted submission is batched"
    );
}

/// Every anchored batch's document is stored under its CID, its roots recompute, each project
/// once, and the epoch is ANCHORED.
async fn check_anchored(
    e: &Env,
    on_chain: &[sequencer_ports::AnchoredBatch],
) -> Vec<BatchDocument> {
    let mut previous: Vec<String> = Vec::new();
    let mut projects = BTreeSet::new();
    let mut docs = Vec::new();
    for b in on_chain {
        let bytes = e.content.get(&b.batch_cid).await.unwrap().unwrap();
        assert_eq!(document_cid(&bytes).to_string(), b.batch_cid);
        let d: BatchDocument = serde_json::from_slice(&bytes).unwrap();
        let roots = inspect_roots(&d, &previous).unwrap();
        assert_eq!(roots.finalized_cids_root, b.root);
        assert_eq!(d.roothash, format!("{:#x}", roots.roothash));
        for pid in &d.pids {
            assert!(projects.insert(pid.clone()), "{pid} anchored twice");
        }
        previous.extend(d.submission_ids.iter().cloned());
        docs.push(d);
    }
    assert_eq!(
        e.p.records().epoch(e.epoch).await.unwrap().unwrap().state,
        EpochState::Anchored
    );
    docs
}

/// Calls in flight at once, and the most seen.
#[derive(Default)]
struct Peak {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

impl Peak {
    async fn during<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        // Long enough that a fan-out, if there is one, fills up.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let out = f.await;
        self.now.fetch_sub(1, SeqCst);
        out
    }
    fn max(&self) -> usize {
        self.max.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Uploads through a [`Peak`].
struct PeakContent(Arc<dyn ContentStore>, Arc<Peak>);

#[async_trait::async_trait]
impl ContentStore for PeakContent {
    async fn put(&self, bytes: &[u8]) -> Result<String, sequencer_ports::PortError> {
        self.1.during(self.0.put(bytes)).await
    }
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, sequencer_ports::PortError> {
        self.0.get(cid).await
    }
}

/// Batch record writes (conditional puts on the batches table) through a [`Peak`].
struct PeakBatchWrites(Arc<dyn sequencer_ports::StateStore>, Arc<Peak>);

#[async_trait::async_trait]
impl sequencer_ports::StateStore for PeakBatchWrites {
    async fn get(&self, t: Table, k: &Key) -> Result<Option<Item>, PortError> {
        self.0.get(t, k).await
    }
    async fn put(&self, t: Table, k: &Key, i: &Item) -> Result<(), PortError> {
        self.0.put(t, k, i).await
    }
    async fn put_if_absent(&self, t: Table, k: &Key, i: &Item) -> Result<bool, PortError> {
        if t == Table::Batches {
            self.1.during(self.0.put_if_absent(t, k, i)).await
        } else {
            self.0.put_if_absent(t, k, i).await
        }
    }
    async fn transition(
        &self,
        t: Table,
        k: &Key,
        from: Option<&str>,
        i: &Item,
    ) -> Result<sequencer_ports::Transition, PortError> {
        self.0.transition(t, k, from, i).await
    }
    async fn add_bounded(
        &self,
        t: Table,
        k: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<sequencer_ports::BoundedAdd, PortError> {
        self.0.add_bounded(t, k, member, ceiling).await
    }
    async fn query(
        &self,
        t: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<sequencer_ports::Page, PortError> {
        self.0.query(t, pk, after, limit).await
    }
    async fn delete(&self, t: Table, k: &Key) -> Result<(), PortError> {
        self.0.delete(t, k).await
    }
    async fn transact(
        &self,
        ops: &[sequencer_ports::TxOp],
    ) -> Result<sequencer_ports::TxOutcome, PortError> {
        self.0.transact(ops).await
    }
    async fn batch_get(&self, keys: &[(Table, Key)]) -> Result<Vec<Option<Item>>, PortError> {
        self.0.batch_get(keys).await
    }
    async fn batch_put(&self, items: &[(Table, Key, Item)]) -> Result<(), PortError> {
        self.0.batch_put(items).await
    }
    async fn add_members(
        &self,
        t: Table,
        k: &Key,
        members: &[String],
        ttl: Option<u64>,
    ) -> Result<(), PortError> {
        self.0.add_members(t, k, members, ttl).await
    }
}

/// Issue 19: finalize fans out, bounded. Six batches, `FINALIZE_CONCURRENCY` 3: three uploads
/// and three batch-record writes are in flight at once, never more; at 1 it is one at a time.
/// Either way the batch set is the same, byte for byte.
#[tokio::test]
async fn uploads_and_batch_records_fan_out_up_to_the_configured_bound() {
    let mut seals = BTreeSet::new();
    for concurrency in [1, 3] {
        let e = epoch_cut(EpochState::Closed, 1).await;
        let (uploads, writes) = (Arc::new(Peak::default()), Arc::new(Peak::default()));
        let mut ports = e.p.ports.clone();
        ports.content = Arc::new(PeakContent(ports.content.clone(), uploads.clone()));
        ports.state = Arc::new(PeakBatchWrites(ports.state.clone(), writes.clone()));
        let mut config = e.p.config.clone();
        config.finalize_concurrency = concurrency;
        let p = Pipeline::new(ports, config);
        let report = finalize::run(&p, e.job()).await.unwrap();
        assert_eq!(
            (report.batches, report.uploaded, report.recorded),
            (6, 6, 6)
        );
        assert_eq!(uploads.max(), concurrency, "uploads in flight");
        assert_eq!(writes.max(), concurrency, "batch records in flight");
        seals.insert(report.seal_cid);
        check(&e, None).await;
    }
    assert_eq!(seals.len(), 1, "the same batch set at every concurrency");
}
