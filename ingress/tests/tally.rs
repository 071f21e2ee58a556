//! Tallies on a running ingress (docs/protocol.md §4, the close watermark): what both paths took
//! in is counted per market and epoch, refusals are not, the counts reach the queue as cumulative
//! numbered tallies beside the submissions, the last one after the drain counts everything (also
//! what was spilled), a replay is not counted again, and a queue that takes no tallies never
//! holds up a submission.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use sequencer_core::tally::Tally;
use sequencer_ingress::edge::EdgePolicy;
use sequencer_ingress::sink::memory::{MemorySink, StoredMessage};
use sequencer_ingress::sink::{EntryResult, Envelope, SinkError, SubmissionSink};
use sequencer_ingress::tally::{TallySettings, KIND};
use snapshotter_sim::gossip::envelope;
use snapshotter_sim::{write_message, SubmissionFactory};

const WAIT: Duration = Duration::from_secs(20);

fn fast() -> Option<TallySettings> {
    Some(TallySettings {
        interval: Duration::from_millis(100),
        heartbeat: Duration::from_millis(500),
    })
}

fn served(settings: &mut sequencer_ingress::Settings) {
    settings.host.edge = EdgePolicy::markets([sequencer_core::devkeys::local_market_address()]);
}

fn tallies(msgs: &[StoredMessage]) -> Vec<Tally> {
    msgs.iter()
        .filter(|m| m.meta.kind == KIND)
        .map(|m| Tally::parse(&m.body).expect("a tally body"))
        .collect()
}

fn submissions(msgs: &[StoredMessage]) -> Vec<&StoredMessage> {
    msgs.iter().filter(|m| m.meta.kind.is_empty()).collect()
}

/// Submissions per epoch among `msgs` (what reached the queue).
fn per_epoch(msgs: &[StoredMessage]) -> Vec<(u64, u64)> {
    let mut m = BTreeMap::new();
    for s in submissions(msgs) {
        *m.entry(s.meta.epoch).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

/// Polls until the newest tally in `sink` says `want`.
async fn newest_tally_says(sink: &MemorySink, want: &[(u64, u64)]) -> Option<Tally> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let t = tallies(&sink.messages()).pop();
        if t.as_ref().is_some_and(|t| t.epochs == want) {
            return t;
        }
        if tokio::time::Instant::now() >= deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json(collect: &[u8]) -> &[u8] {
    &collect[sequencer_core::collect::UUID_LEN..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_are_counted_per_epoch_and_refusals_are_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(MemorySink::new());
    let mut settings = common::gossip_settings(dir.path());
    served(&mut settings);
    settings.tally = fast();
    let ingress = common::start(settings, sink.clone()).await;
    let market = common::local_market();
    let factory = SubmissionFactory::new(3).expect("factory");

    // /collect: the edge cases (good ones at epochs 1 and 2, refused ones at 3..=10) and five
    // more at epoch 20.
    let cases = common::edge_cases(&factory);
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    for c in &cases {
        write_message(&mut s, &c.bytes).await.expect("write");
    }
    for i in 0..5 {
        let (_, m) = factory
            .message(1, 20, &format!("collect_{i}"))
            .expect("sign");
        write_message(&mut s, &m).await.expect("write");
    }
    // gossipsub: three at epoch 20, two at 21, and one refused at the edge (wrong market).
    let peer = common::gossip_peer(&ingress).await;
    for (i, epoch) in [20u64, 20, 20, 21, 21].into_iter().enumerate() {
        let (_, m) = factory
            .message(2, epoch, &format!("gossip_{i}"))
            .expect("sign");
        peer.publish(&peer.all, envelope(epoch, json(&m), &peer.peer_id))
            .await
            .expect("publish");
    }
    let (_, bad) = factory.message(2, 22, "gossip_bad").expect("sign");
    let bad = common::replace(&bad, &market, "0x000000000000000000000000000000000000dead");
    peer.publish(&peer.all, envelope(22, json(&bad), &peer.peer_id))
        .await
        .expect("publish");

    let good = cases.iter().filter(|c| c.reason.is_none()).count() + 10;
    assert!(
        common::eventually(WAIT, || submissions(&sink.messages()).len() >= good).await,
        "every accepted submission reaches the queue"
    );
    let want = vec![(1, 1), (2, 1), (20, 8), (21, 2)];
    assert_eq!(per_epoch(&sink.messages()), want);
    let t = newest_tally_says(&sink, &want)
        .await
        .expect("a tally was sent");
    assert_eq!(
        t.epochs, want,
        "counted once per accepted message, refusals and the foreign market not at all"
    );
    assert_eq!(t.market, market.to_ascii_lowercase());
    let boot = ingress
        .tally
        .as_ref()
        .expect("tallies on")
        .boot()
        .to_owned();
    assert_eq!(t.boot, boot);

    let metrics = ingress.metrics.clone();
    let report = ingress.shutdown().await;
    assert_eq!(report.enqueued as usize, good);
    let all = tallies(&sink.messages());
    assert!(all.iter().all(|t| t.boot == boot));
    assert!(
        all.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "seq goes up by one per tally: {:?}",
        all.iter().map(|t| t.seq).collect::<Vec<_>>()
    );
    assert!(
        all.windows(2)
            .all(|w| w[1].epochs.len() >= w[0].epochs.len()
                && w[0].epochs.iter().all(|(e, n)| w[1].count(*e) >= *n)),
        "cumulative: no count ever goes down"
    );
    assert_eq!(all.last().map(|t| t.epochs.clone()), Some(want));
    assert_eq!(
        metrics
            .tallies_sent
            .get_or_create(&[("outcome", "ok")])
            .get(),
        all.len() as u64,
        "every tally on a healthy queue was acknowledged and counted"
    );
    peer.close().await;
    client.close().await;
}

/// A queue that takes tallies but no submissions (`down`), or the reverse (`tallies_hang`: a
/// tally call never answers).
#[derive(Default)]
struct Split {
    inner: MemorySink,
    down: AtomicBool,
    tallies_hang: AtomicBool,
}

impl Split {
    fn new() -> Self {
        Self {
            inner: MemorySink::new(),
            ..Self::default()
        }
    }
}

impl SubmissionSink for Split {
    fn name(&self) -> &'static str {
        "split"
    }

    fn send_batch<'a>(
        &'a self,
        batch: &'a [Envelope],
    ) -> BoxFuture<'a, Result<Vec<EntryResult>, SinkError>> {
        async move {
            let tally = batch.iter().all(|e| e.meta.kind == KIND);
            if tally && self.tallies_hang.load(Ordering::SeqCst) {
                futures::future::pending::<()>().await;
            }
            if !tally && self.down.load(Ordering::SeqCst) {
                return Err(SinkError::Transport("submissions refused".into()));
            }
            self.inner.send_batch(batch).await
        }
        .boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        self.inner.ready()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_tally_after_the_drain_counts_the_spilled_and_a_replay_is_not_counted_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(Split::new());
    sink.down.store(true, Ordering::SeqCst);
    let mut settings = common::settings(dir.path());
    served(&mut settings);
    settings.drain_timeout = Duration::from_millis(800);
    // Heartbeats only, and rarely: the counts can reach the queue only in the last tally.
    settings.tally = Some(TallySettings {
        interval: Duration::ZERO,
        heartbeat: Duration::from_secs(600),
    });
    let ingress = common::start(settings.clone(), sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    for i in 0..30u64 {
        let (_, m) = factory
            .message(0, 40 + i % 2, &format!("p{i}"))
            .expect("sign");
        write_message(&mut s, &m).await.expect("write");
    }
    assert!(
        common::eventually(WAIT, || ingress.metrics.messages_accepted.get() == 30).await,
        "all taken in"
    );
    let first = tallies(&sink.inner.messages());
    assert_eq!(first.len(), 1, "the start's heartbeat only");
    assert!(first[0].epochs.is_empty(), "a live boot with nothing yet");
    let report = ingress.shutdown().await;
    assert_eq!(report.spilled, 30);
    let t = tallies(&sink.inner.messages());
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].seq, 2);
    assert_eq!(
        t[1].epochs,
        vec![(40, 15), (41, 15)],
        "the last tally counts what was taken in, spilled included"
    );
    client.close().await;

    // Next start: the spill is replayed; the new boot does not count it again.
    sink.down.store(false, Ordering::SeqCst);
    let ingress = common::start(settings, sink.clone()).await;
    assert_eq!(ingress.replaying, 30);
    assert!(
        common::eventually(WAIT, || submissions(&sink.inner.messages()).len() == 30).await,
        "replayed"
    );
    let boot = ingress.tally.as_ref().expect("on").boot().to_owned();
    assert_ne!(boot, t[1].boot, "a new boot id per start");
    assert!(
        common::eventually(WAIT, || tallies(&sink.inner.messages())
            .iter()
            .any(|t| t.boot == boot))
        .await,
        "the new boot's first heartbeat"
    );
    ingress.shutdown().await;
    let last = tallies(&sink.inner.messages()).pop().expect("last tally");
    assert_eq!(last.boot, boot);
    assert_eq!(last.seq, 2, "this boot's own numbering");
    assert!(last.epochs.is_empty(), "replays are not counted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_takes_no_tallies_never_holds_up_submissions_and_the_next_tally_has_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = Arc::new(Split::new());
    sink.tallies_hang.store(true, Ordering::SeqCst);
    let mut settings = common::settings(dir.path());
    served(&mut settings);
    settings.tally = fast();
    let ingress = common::start(settings, sink.clone()).await;
    let factory = SubmissionFactory::new(1).expect("factory");
    let client = common::client(&ingress).await;
    let mut s = client.open().await.expect("open");
    for i in 0..20u64 {
        let (_, m) = factory.message(0, 50, &format!("p{i}")).expect("sign");
        write_message(&mut s, &m).await.expect("write");
    }
    // Every tally call hangs (each is abandoned after 5 s); the submissions flow meanwhile.
    let started = std::time::Instant::now();
    assert!(
        common::eventually(Duration::from_secs(3), || {
            submissions(&sink.inner.messages()).len() == 20
        })
        .await,
        "submissions are not held up by tallies"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(tallies(&sink.inner.messages()).is_empty());
    for i in 20..25u64 {
        let (_, m) = factory.message(0, 51, &format!("p{i}")).expect("sign");
        write_message(&mut s, &m).await.expect("write");
    }
    sink.tallies_hang.store(false, Ordering::SeqCst);
    let t = newest_tally_says(&sink.inner, &[(50, 20), (51, 5)])
        .await
        .expect("a tally once the queue takes them");
    assert_eq!(
        t.epochs,
        vec![(50, 20), (51, 5)],
        "the full cumulative counts"
    );
    assert!(
        ingress
            .metrics
            .tallies_sent
            .get_or_create(&[("outcome", "failed")])
            .get()
            >= 1,
        "the hung call was counted as failed"
    );
    client.close().await;
    ingress.shutdown().await;
}
