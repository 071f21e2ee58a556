//! Ground truth the actors write as they act (what was sent, by whom, when it reached the
//! ingress, what the head was then), and what the handlers said (invocations and their logged
//! errors). The invariants judge the pipeline's final state against it.

use std::collections::BTreeMap;

use sequencer_core::B256;

/// Who sent a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Actor {
    /// An honest snapshotter.
    Honest,
    /// An honest snapshotter of the one large project.
    BigProject,
    /// A hostile sender, and how.
    Hostile(Attack),
}

/// A hostile message's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attack {
    /// A valid signature of a random key (a signer that owns nothing) over a random slot.
    Garbage,
    /// A slot owner's valid signature over a random header.
    RandomHeader,
    /// A slot owner's valid signature for an epoch far in the future.
    FutureEpoch,
    /// An honest submission sent again under a fresh id.
    Replay,
    /// An honest submission of an epoch past the retention, sent again under a fresh id.
    OldReplay,
    /// Bytes that are no `/collect` message.
    Malformed,
    /// Two different bodies under one submission id, sent at once.
    DuplicateId,
    /// A slot owner over the per-slot cap.
    OverCap,
    /// A flagged signer.
    Flagged,
}

/// What the proof API answered about a submission (`sequencer_handlers::query::Queries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200, with this fate.
    Fate(sequencer_handlers::query::Fate),
    /// 404 `unknown_epoch`.
    UnknownEpoch,
    /// 404 `unknown_submission`.
    UnknownSubmission,
    /// 410 `expired_epoch`: past the retention.
    ExpiredEpoch,
    /// 500: a store failed or the records are inconsistent.
    Failed(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Fate(fate) => write!(f, "200 {fate:?}"),
            Answer::UnknownEpoch => f.write_str("404 unknown_epoch"),
            Answer::UnknownSubmission => f.write_str("404 unknown_submission"),
            Answer::ExpiredEpoch => f.write_str("410 expired_epoch"),
            Answer::Failed(e) => write!(f, "500 {e}"),
        }
    }
}

/// One message sent to the ingress.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Submission id (the UUID before the JSON).
    pub id: String,
    /// Sender.
    pub actor: Actor,
    /// Epoch, project, slot, CID as signed (zero/empty for malformed bytes).
    pub epoch: u64,
    /// Project.
    pub project: String,
    /// Slot.
    pub slot: u64,
    /// Snapshot CID.
    pub cid: String,
    /// The message body.
    pub body: String,
    /// SHA-256 of the body, hex (what receipts record).
    pub digest: String,
    /// The header's block on the canonical chain when it was signed.
    pub header_block: Option<u64>,
    /// The header.
    pub header: Option<B256>,
    /// Virtual ms it left the sender.
    pub sent_at: u64,
    /// Virtual ms the ingress received it.
    pub arrived_at: Option<u64>,
    /// Chain head when the ingress received it.
    pub head_at_arrival: Option<u64>,
    /// The id of the honest message this one replays.
    pub replay_of: Option<String>,
    /// The ingress path: `collect` (a `/collect` stream) or `gossipsub` (a gossip message, its
    /// id the content id, received by more than one ingress replica).
    pub path: &'static str,
}

/// One handler invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Task name (`verify#12`).
    pub task: String,
    /// Started, virtual ms.
    pub started: u64,
    /// Ended, virtual ms (`None`: still running at the end).
    pub ended: Option<u64>,
    /// Message ids handled.
    pub messages: Vec<String>,
    /// Bodies' submission ids or job epochs, parallel to `messages`.
    pub subjects: Vec<String>,
    /// Message ids reported failed (`batchItemFailures`).
    pub failed: Vec<String>,
    /// Killed (`Some("crashed"|"timed out")`) instead of returning.
    pub killed: Option<&'static str>,
}

/// A WARN or ERROR the handlers logged.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Virtual ms.
    pub at: u64,
    /// The logging task.
    pub task: String,
    /// `WARN` or `ERROR`.
    pub level: String,
    /// The event's fields, rendered.
    pub fields: String,
}

/// Everything the actors and the capture recorded.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every message sent, in order.
    pub sent: Vec<Sent>,
    /// Index: submission id → positions in `sent`.
    pub by_id: BTreeMap<String, Vec<usize>>,
    /// Every invocation, in start order.
    pub invocations: Vec<Invocation>,
    /// WARN and ERROR events.
    pub logged: Vec<Logged>,
    /// Releases seen by the epoch manager: epoch → (virtual ms mined, release block).
    pub released: BTreeMap<u64, (u64, u64)>,
    /// Virtual ms at which each epoch's window closed on chain (head passed R + window).
    pub window_closed: BTreeMap<u64, u64>,
    /// Hostile-message cost probes: (attack, port calls by op) for one message each.
    pub probes: Vec<(Attack, String, BTreeMap<String, u64>)>,
    /// Submission ids of the cost probes (their records are no traffic's).
    pub probe_ids: std::collections::BTreeSet<String>,
    /// Proof API answers checked at the end: (submission id, epoch, answer).
    pub proofs: Vec<(String, u64, Answer)>,
    /// Injected events (fault windows, poison messages, reorgs), for the report.
    pub injected: Vec<(u64, String)>,
}

impl Ledger {
    /// Records a sent message.
    pub fn send(&mut self, s: Sent) -> usize {
        let i = self.sent.len();
        self.by_id.entry(s.id.clone()).or_default().push(i);
        self.sent.push(s);
        i
    }

    /// The messages sent under `id`.
    pub fn with_id(&self, id: &str) -> Vec<&Sent> {
        self.by_id
            .get(id)
            .map(|v| v.iter().map(|i| &self.sent[*i]).collect())
            .unwrap_or_default()
    }

    /// Invocations that handled `subject` (a submission id or `epoch N`).
    pub fn invocations_of(&self, subject: &str) -> Vec<&Invocation> {
        self.invocations
            .iter()
            .filter(|i| i.subjects.iter().any(|s| s == subject))
            .collect()
    }
}
