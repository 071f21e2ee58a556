//! A failed finalize or anchor job comes back after a short, growing delay that the handler
//! sets (`ChangeMessageVisibility`), not after the queue's visibility timeout (6 × the function's
//! timeout: 30 minutes for finalize, 11 for anchor, whose FIFO group waits the whole time); and a
//! message is held only a minute at a time while it is worked on, so a crashed invocation gives
//! it back within a minute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sequencer_embedded::poller::{drain, sqs_event, PollerConfig};
use sequencer_handlers::anchor::{
    self, ANCHOR_OPERATIONAL_REDELIVERY, ANCHOR_POISON_REDELIVERY, ANCHOR_REDELIVERY,
};
use sequencer_handlers::finalize::{self, FINALIZE_REDELIVERY};
use sequencer_handlers::records::EpochState;
use sequencer_handlers::sqs::{holding, Redelivery};
use sequencer_handlers::{tick, verify, Clock, Pipeline, Ports};
use sequencer_ports::{ErrorKind, OutMessage, PortError, Queue, Received, Table};
use sequencer_testsupport::faults::Op;
use sequencer_testsupport::{block_hash_of, signed_message, Harness};
use uuid::Uuid;

const CID: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";

/// A queue that records every visibility change it passes on.
struct Recording {
    inner: Arc<dyn Queue>,
    nacks: Mutex<Vec<(String, Duration)>>,
}

impl Recording {
    fn new(inner: Arc<dyn Queue>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            nacks: Mutex::new(Vec::new()),
        })
    }
    fn nacks(&self) -> Vec<(String, Duration)> {
        self.nacks.lock().unwrap().clone()
    }
}

#[async_trait]
impl Queue for Recording {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, m: &[OutMessage]) -> Result<(), PortError> {
        self.inner.send(m).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, PortError> {
        self.inner.receive(max, wait).await
    }
    async fn ack(&self, r: &[String]) -> Result<(), PortError> {
        self.inner.ack(r).await
    }
    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), PortError> {
        self.nacks
            .lock()
            .unwrap()
            .push((receipt.to_string(), delay));
        self.inner.nack(receipt, delay).await
    }
    async fn dead_letter(&self, m: &Received, reason: &str) -> Result<(), PortError> {
        self.inner.dead_letter(m, reason).await
    }
    async fn depth(&self) -> Result<u64, PortError> {
        self.inner.depth().await
    }
}

fn cfg() -> PollerConfig {
    PollerConfig {
        wait: Duration::ZERO,
        retry_delay: Duration::ZERO,
        ..PollerConfig::default()
    }
}

/// The harness's pipeline with its finalize and anchor queues recorded.
fn recorded(h: &Harness) -> (Pipeline, Arc<Recording>, Arc<Recording>) {
    let fq = Recording::new(Arc::new(h.finalize_q.clone()));
    let aq = Recording::new(Arc::new(h.anchor_q.clone()));
    let ports = Ports {
        finalize_queue: fq.clone(),
        anchor_queue: aq.clone(),
        ..h.p.ports.clone()
    };
    let mut config = h.p.config.clone();
    // No retries inside the invocation: the queue's redelivery decides.
    config.finalize_retry_budget = Duration::ZERO;
    (Pipeline::new(ports, config), fq, aq)
}

/// Releases an epoch, accepts `projects` submissions, closes it: its finalize job is queued.
async fn closed_epoch(h: &Harness, projects: usize) -> u64 {
    let (epoch, r) = h.chain.release();
    h.chain.mine(1);
    tick::step(&h.p).await.unwrap();
    for i in 0..projects {
        let slot = 1 + (i as u64) / 2;
        let (body, _) = signed_message(
            &h.domain,
            h.market,
            &Uuid::new_v4(),
            slot,
            slot,
            epoch,
            &format!("proj-{i}"),
            CID,
            block_hash_of(r + 1),
        );
        assert_eq!(
            verify::verify_body(&h.p, &body).await.unwrap(),
            verify::Verdict::Accepted
        );
    }
    h.chain.mine(10);
    assert_eq!(tick::step(&h.p).await.unwrap().closed, vec![epoch]);
    epoch
}

/// The last visibility each receipt was given.
fn last_delay(nacks: &[(String, Duration)], receipt: &str) -> Option<Duration> {
    nacks
        .iter()
        .rev()
        .find(|(r, _)| r == receipt)
        .map(|(_, d)| *d)
}

#[test]
fn delays_start_short_and_grow_to_their_cap() {
    let d = |r: &Redelivery| (1..=10).map(|n| r.delay(n).as_secs()).collect::<Vec<_>>();
    assert_eq!(
        d(&FINALIZE_REDELIVERY)[..5],
        [30, 120, 480, 1800, 1800],
        "finalize: 30 s, 2, 8, 30 minutes"
    );
    assert_eq!(
        d(&ANCHOR_REDELIVERY),
        [5, 20, 80, 320, 660, 660, 660, 660, 660, 660]
    );
    assert_eq!(
        d(&ANCHOR_OPERATIONAL_REDELIVERY),
        [60, 120, 240, 480, 660, 660, 660, 660, 660, 660]
    );
    // A job no retry can help reaches the DLQ quickly instead of holding its FIFO group.
    assert!(d(&ANCHOR_POISON_REDELIVERY).iter().all(|s| *s == 5));
    // Holding renews well before the hold runs out.
    assert!(ANCHOR_REDELIVERY.hold < Duration::from_secs(660));
}

/// `visibility-delay-finalize`: the state store fails finalize's first read; the job is given
/// back after 30 s, not the 30-minute visibility timeout, and succeeds on its next delivery.
#[tokio::test]
async fn a_failed_finalize_job_comes_back_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (p, fq, _) = recorded(&h);
    let epoch = closed_epoch(&h, 2).await;
    h.state.fail_next(Op::Get, Table::Epochs);

    let got = h.finalize_q.receive(1, Duration::ZERO).await.unwrap();
    let receipt = got[0].receipt.clone();
    let resp = finalize::handle(&p, sqs_event("arn:finalize", &got)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    let nacks = fq.nacks();
    assert_eq!(
        nacks[0],
        (receipt.clone(), FINALIZE_REDELIVERY.hold),
        "held before the work starts"
    );
    assert_eq!(
        last_delay(&nacks, &receipt),
        Some(Duration::from_secs(30)),
        "{nacks:?}"
    );

    // Comes back (the delay elapsed: made visible now) and finalizes.
    h.finalize_q.nack(&receipt, Duration::ZERO).await.unwrap();
    drain(&h.finalize_q, &cfg(), 10, |e| finalize::handle(&p, e))
        .await
        .unwrap();
    let e = h.p.records().epoch(epoch).await.unwrap().unwrap();
    assert_eq!(e.state, EpochState::Finalized);
}

/// `visibility-delay-anchor`: a batch transaction fails in transport; the FIFO job is given back
/// after 5 s (its group unblocked), then 20 s; a funding refusal after 60 s.
#[tokio::test]
async fn a_failed_anchor_job_comes_back_in_seconds_and_unblocks_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (p, _, aq) = recorded(&h);
    let epoch = closed_epoch(&h, 2).await;
    drain(&h.finalize_q, &cfg(), 10, |e| finalize::handle(&h.p, e))
        .await
        .unwrap();

    h.chain.fail_next_submits(1);
    let got = h.anchor_q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    let receipt = got[0].receipt.clone();
    let resp = anchor::handle(&p, sqs_event("arn:anchor.fifo", &got)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(
        last_delay(&aq.nacks(), &receipt),
        Some(Duration::from_secs(5))
    );
    // The group is blocked while the job is in flight, and free again once its 5 s pass.
    assert!(h
        .anchor_q
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    let again = h.anchor_q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1, "back after 5 s, not the visibility timeout");

    // A funding refusal on the second delivery: the operator's, a minute.
    h.chain.fail_next_submits_with(
        1,
        PortError::chain(
            ErrorKind::Funds,
            "insufficient funds for gas * price + value",
        )
        .with_retryable(true),
    );
    let receipt = again[0].receipt.clone();
    let resp = anchor::handle(&p, sqs_event("arn:anchor.fifo", &again)).await;
    assert_eq!(resp.batch_item_failures.len(), 1);
    assert_eq!(
        last_delay(&aq.nacks(), &receipt),
        Some(ANCHOR_OPERATIONAL_REDELIVERY.delay(2))
    );
    h.anchor_q.nack(&receipt, Duration::ZERO).await.unwrap();
    drain(&h.anchor_q, &cfg(), 10, |e| anchor::handle(&p, e))
        .await
        .unwrap();
    let e = h.p.records().epoch(epoch).await.unwrap().unwrap();
    assert_eq!(e.state, EpochState::Anchored);
    assert_eq!(h.chain.anchored_batches(epoch).len(), 1, "one transaction");
}

/// The pipeline's clock on tokio time.
struct TokioClock;

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        1_700_000_000_000
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// While a long job runs its message is held a minute at a time, renewed every 20 s: a crash
/// leaves it invisible for at most a minute.
#[tokio::test(start_paused = true)]
async fn a_message_is_held_a_minute_at_a_time_while_its_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), 2);
    let (p, fq, _) = recorded(&h);
    let p = p.with_clock(Arc::new(TokioClock));
    h.finalize_q
        .send(&[OutMessage {
            body: "{}".into(),
            ..OutMessage::default()
        }])
        .await
        .unwrap();
    let got = h.finalize_q.receive(1, Duration::ZERO).await.unwrap();
    let event = sqs_event("arn:finalize", &got);
    let out = holding(
        &p,
        fq.as_ref(),
        &event.records,
        FINALIZE_REDELIVERY.hold,
        async {
            tokio::time::sleep(Duration::from_secs(150)).await;
            7
        },
    )
    .await;
    assert_eq!(out, 7);
    let nacks = fq.nacks();
    assert!(
        (7..=9).contains(&nacks.len()),
        "renewed every 20 s for 150 s: {nacks:?}"
    );
    assert!(nacks.iter().all(|(_, d)| *d == Duration::from_secs(60)));
}
