//! What a run simulates: the market, the snapshotters, the hostile senders, the faults. Presets
//! ([`Scenario::named`]) each aim at a part of the fault model; the seed decides everything else.

use crate::gate::Profile;
use crate::model::chain::ChainFaults;

/// Hostile traffic per epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hostile {
    /// Slots owned by hostile snapshotters (they sign validly, and misbehave).
    pub owned_slots: u64,
    /// Random signatures over random slots.
    pub garbage: u64,
    /// Valid signatures over random headers.
    pub random_headers: u64,
    /// Valid signatures for far-future epochs.
    pub future_epochs: u64,
    /// Honest submissions replayed under fresh ids.
    pub replays: u64,
    /// Bytes that are no message.
    pub malformed: u64,
    /// Pairs of bodies under one id, sent at once.
    pub duplicate_ids: u64,
    /// Submissions over the per-slot cap.
    pub over_cap: u64,
    /// Submissions of a flagged signer.
    pub flagged: u64,
    /// Replays of submissions older than the record retention (retention scenario).
    pub old_replays: u64,
}

/// Faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Chance that a handler invocation crashes, at a port call drawn uniformly.
    pub crash_p: f64,
    /// State store latency and failures.
    pub state: Profile,
    /// Queue latency and failures.
    pub queue: Profile,
    /// Content store latency and failures.
    pub content: Profile,
    /// Chain RPC latency and failures (slow: RPC retries that outlast a handler's timeout).
    pub chain: Profile,
    /// Chain meaning faults (lag, funding, nonce, role).
    pub chain_meaning: ChainFaults,
    /// Chance that a standard queue leaves a duplicate copy of a delivered message.
    pub sqs_duplicate_p: f64,
    /// Chance per block of a reorg.
    pub reorg_p: f64,
    /// Deepest reorg, blocks (kept below the release follower's confirmations).
    pub reorg_depth: u64,
}

impl Faults {
    /// Latencies only: every call answers, nothing crashes.
    pub fn none() -> Self {
        Self {
            crash_p: 0.0,
            state: Profile::fast(2, 12),
            queue: Profile::fast(5, 30),
            content: Profile::fast(20, 150),
            chain: Profile::fast(20, 200),
            chain_meaning: ChainFaults::default(),
            sqs_duplicate_p: 0.0,
            reorg_p: 0.0,
            reorg_depth: 0,
        }
    }

    /// Transport faults at rates a bad day brings: crashes, slow and failing calls of every
    /// port, duplicates, reorgs, a lagging RPC node.
    pub fn rough() -> Self {
        let mut f = Self::none();
        f.crash_p = 0.05;
        f.state = Profile {
            slow_p: 0.002,
            slow_max_ms: 3_000,
            fail_p: 0.002,
            lost_answer_p: 0.001,
            ..f.state
        };
        f.queue = Profile {
            slow_p: 0.01,
            slow_max_ms: 2_000,
            fail_p: 0.005,
            lost_answer_p: 0.002,
            ..f.queue
        };
        f.content = Profile {
            slow_p: 0.05,
            slow_max_ms: 20_000,
            fail_p: 0.05,
            lost_answer_p: 0.01,
            ..f.content
        };
        f.chain = Profile {
            slow_p: 0.01,
            slow_max_ms: 40_000,
            fail_p: 0.01,
            lost_answer_p: 0.0,
            ..f.chain
        };
        f.chain_meaning = ChainFaults {
            lag_p: 0.05,
            max_lag: 2,
            receipt_timeout_p: 0.05,
            ..ChainFaults::default()
        };
        f.sqs_duplicate_p = 0.01;
        f.reorg_p = 0.02;
        f.reorg_depth = 1;
        f
    }
}

/// One simulated deployment and its traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Preset name.
    pub name: String,
    /// Epochs the epoch manager releases.
    pub epochs: u64,
    /// Protocol-chain block time, ms.
    pub block_ms: u64,
    /// Epoch size in blocks (the source chain is the protocol chain).
    pub epoch_size: u64,
    /// `snapshotSubmissionWindow`, blocks.
    pub snapshot_window: u64,
    /// `batchSubmissionWindow`, blocks.
    pub batch_window: u64,
    /// Honest slots.
    pub honest_slots: u64,
    /// Projects.
    pub projects: u64,
    /// Projects each honest slot submits per epoch (at most the per-slot cap).
    pub projects_per_slot: u64,
    /// Chance an honest snapshotter computes slowly and submits after the window.
    pub late_p: f64,
    /// Shortest and longest time an honest snapshotter takes to compute its snapshot after it
    /// saw the release, ms.
    pub compute_ms: (u64, u64),
    /// Chance an honest snapshotter submits in the last block of the window (on time, barely).
    pub straggler_p: f64,
    /// Chance an honest snapshotter's CID differs from the others'.
    pub disagree_p: f64,
    /// Chance an honest submission is also published on gossipsub (its content id as its id),
    /// besides its `/collect` stream: one copy is batched, the other answered `duplicate`.
    pub gossip_p: f64,
    /// Ingress replicas a gossip message reaches (each sends it to the queue).
    pub ingress_replicas: u64,
    /// Hostile traffic.
    pub hostile: Hostile,
    /// Verify event-source pollers (at most the module's maximum concurrency).
    pub verify_workers: u64,
    /// Faults.
    pub faults: Faults,
    /// Slots submitting, in epoch 2, to one project with an escape-heavy 256-byte id: enough
    /// makes its batch document larger than one 256 KiB chunk.
    pub big_project_slots: u64,
    /// `RECORD_TTL` in seconds (None: the default 30 days).
    pub record_ttl_s: Option<u64>,
    /// An anchor job no run can succeed with arrives at this virtual ms (an operator's redrive
    /// of a corrupted message).
    pub poison_anchor_job_at: Option<u64>,
    /// `BATCH_SIZE`.
    pub batch_size: usize,
    /// An epoch must be anchored this long after its window closed.
    pub stuck_bound_ms: u64,
    /// Run at most this long (virtual ms) after the last release.
    pub drain_ms: u64,
}

/// The presets, in the order CI runs them.
pub const PRESETS: [&str; 11] = [
    "quiet",
    "calm",
    "rough",
    "race",
    "finalizers",
    "hostile",
    "big-project",
    "operational",
    "poison",
    "retention",
    "everything",
];

/// The retention preset's `RECORD_TTL`: 5 hours, above the module's retry horizon of 16 500 s.
pub const RETENTION_PRESET_S: u64 = 5 * 60 * 60;

impl Scenario {
    /// Honest traffic, latencies only.
    pub fn calm() -> Self {
        Self {
            name: "calm".into(),
            epochs: 8,
            block_ms: 2_000,
            epoch_size: 10,
            snapshot_window: 20,
            batch_window: 60,
            honest_slots: 6,
            projects: 5,
            projects_per_slot: 2,
            late_p: 0.02,
            compute_ms: (500, 8_000),
            straggler_p: 0.1,
            disagree_p: 0.1,
            gossip_p: 0.2,
            ingress_replicas: 2,
            hostile: Hostile::default(),
            verify_workers: 4,
            faults: Faults::none(),
            big_project_slots: 0,
            record_ttl_s: None,
            poison_anchor_job_at: None,
            batch_size: 2,
            stuck_bound_ms: 15 * 60 * 1000,
            drain_ms: 3 * 60 * 60 * 1000,
        }
    }

    /// A preset by name.
    pub fn named(name: &str) -> Option<Self> {
        let mut s = Self::calm();
        s.name = name.to_string();
        match name {
            "calm" => {}
            "quiet" => {
                // The control: honest snapshotters that submit once the tick has surely
                // recorded the release and well before the window closes, no faults. Only
                // defects built into every run (record TTLs, the cost probes) may show.
                s.compute_ms = (14_000, 22_000);
                s.late_p = 0.0;
                s.straggler_p = 0.0;
            }
            "rough" => {
                s.faults = Faults::rough();
            }
            "race" => {
                // Verify slow right when windows close, finalize jobs delivered twice and
                // crashing: what makes an epoch's input change under its finalizers.
                s.straggler_p = 0.5;
                s.faults = Faults::rough();
                s.faults.state.slow_p = 0.03;
                s.faults.state.slow_max_ms = 8_000;
                s.faults.chain.slow_p = 0.05;
                s.faults.chain.slow_max_ms = 25_000;
                s.faults.sqs_duplicate_p = 0.2;
                s.faults.crash_p = 0.1;
            }
            "finalizers" => {
                // Two finalizers on one epoch whose input still changes: finalize jobs delivered
                // twice while slow uploads keep the first run going, stragglers verified slowly.
                s.straggler_p = 0.6;
                s.faults.state.slow_p = 0.05;
                s.faults.state.slow_max_ms = 10_000;
                s.faults.content.slow_p = 0.4;
                s.faults.content.slow_max_ms = 20_000;
                s.faults.sqs_duplicate_p = 0.5;
            }
            "hostile" => {
                s.hostile = Hostile {
                    owned_slots: 2,
                    garbage: 12,
                    random_headers: 6,
                    future_epochs: 4,
                    replays: 4,
                    malformed: 3,
                    duplicate_ids: 2,
                    over_cap: 2,
                    flagged: 2,
                    old_replays: 0,
                };
            }
            "big-project" => {
                s.epochs = 4;
                s.big_project_slots = 300;
            }
            "operational" => {
                s.epochs = 10;
                s.faults.chain_meaning.funding_outages = vec![(150_000, 330_000)];
                s.faults.chain_meaning.nonce_too_low_p = 0.02;
            }
            "poison" => {
                s.poison_anchor_job_at = Some(90_000);
            }
            "retention" => {
                // The shortest retention the pipeline accepts: just above the retry horizon
                // (Σ visibility × receives of the module's queues, 4 h 35 min). A shorter one
                // (the 15 minutes this preset had) is refused at start: a finalize job retried
                // after its 30-minute visibility timeout would find its epoch expired.
                s.epochs = 12;
                s.record_ttl_s = Some(RETENTION_PRESET_S);
                s.hostile.owned_slots = 1;
                s.hostile.old_replays = 2;
                s.drain_ms = (RETENTION_PRESET_S + 90 * 60) * 1000;
            }
            "everything" => {
                s.epochs = 10;
                s.faults = Faults::rough();
                s.faults.chain_meaning.funding_outages = vec![(200_000, 260_000)];
                s.hostile = Hostile {
                    owned_slots: 2,
                    garbage: 6,
                    random_headers: 3,
                    future_epochs: 2,
                    replays: 2,
                    malformed: 1,
                    duplicate_ids: 1,
                    over_cap: 1,
                    flagged: 1,
                    old_replays: 0,
                };
                s.poison_anchor_job_at = Some(150_000);
            }
            _ => return None,
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::pipeline_config;
    use sequencer_core::Address;

    /// Issue 16 item 6: a retention shorter than the queues' retry horizon (this preset's old 15
    /// minutes, under a finalize visibility timeout of 30) is refused at start, as
    /// `PipelineConfig::from_env` refuses it; every preset's configuration is accepted.
    #[test]
    fn a_retention_inside_the_retry_horizon_is_refused() {
        let (m, ps) = (Address::repeat_byte(1), Address::repeat_byte(2));
        for name in PRESETS {
            let sc = Scenario::named(name).expect("preset");
            assert!(pipeline_config(&sc, m, ps, 1).is_ok(), "{name}");
        }
        let mut sc = Scenario::named("retention").expect("preset");
        sc.record_ttl_s = Some(15 * 60);
        let err = pipeline_config(&sc, m, ps, 1).expect_err("refused");
        assert!(err.to_string().contains("retry horizon"), "{err}");
        sc.record_ttl_s = Some(crate::deploy::MODULE.retry_horizon_ms() / 1000);
        assert!(
            pipeline_config(&sc, m, ps, 1).is_err(),
            "equal is not above"
        );
    }
}
