//! A pipeline on the embedded adapters and an in-memory chain: what handler tests start from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use sequencer_core::devkeys;
use sequencer_core::eip712::Domain;
use sequencer_core::Address;
use sequencer_embedded::poller::{drain, PollerConfig};
use sequencer_embedded::{BlockDir, Db, QueueOptions, SqliteQueue, SqliteState};
use sequencer_handlers::{anchor, finalize, Pipeline, PipelineConfig, Ports};
use sequencer_ports::{ContentStore, ErrorKind, PortError, Windows};

use crate::faults::FaultyState;
use crate::metrics::MetricsProbe;
use crate::MemChain;

/// A pipeline on the embedded adapters (one SQLite file and a blockstore under `dir`) and a
/// [`MemChain`] with 6 simulated slots, windows of 5 blocks: what handler tests start from.
pub struct Harness {
    /// The pipeline.
    pub p: Arc<Pipeline>,
    /// What the pipeline recorded (its metrics go to a recorder of this harness's own).
    pub metrics: MetricsProbe,
    /// Its chain.
    pub chain: Arc<MemChain>,
    /// The submissions queue (its DLQ is the pipeline's `submissions_dlq`).
    pub submissions: SqliteQueue,
    /// Finalize jobs.
    pub finalize_q: SqliteQueue,
    /// Anchor jobs (FIFO).
    pub anchor_q: SqliteQueue,
    /// The blockstore directory (the content store unless another was given).
    pub blocks: BlockDir,
    /// The content store the pipeline uses.
    pub content: Arc<dyn ContentStore>,
    /// The state store, with faults on demand (over SQLite).
    pub state: Arc<FaultyState>,
    /// The EIP-712 domain submissions are signed for.
    pub domain: Domain,
    /// The market.
    pub market: Address,
}

impl Harness {
    /// A harness under `dir` cutting batches of `batch_size` projects.
    pub fn new(dir: &std::path::Path, batch_size: usize) -> Self {
        Self::with(dir, batch_size, 6, None)
    }

    /// A harness with `slots` simulated slots and, when given, another content store than the
    /// blockstore directory (an IPFS node).
    pub fn with(
        dir: &std::path::Path,
        batch_size: usize,
        slots: u64,
        content: Option<Arc<dyn ContentStore>>,
    ) -> Self {
        let db = Db::open(&dir.join("seq.sqlite")).unwrap();
        let queue = |name: &str, fifo: bool| {
            SqliteQueue::new(
                db.clone(),
                name,
                QueueOptions {
                    visibility_timeout: Duration::from_secs(30),
                    max_receive_count: Some(3),
                    dlq: Some(format!("{name}-dlq")),
                    fifo,
                },
            )
        };
        let market = devkeys::local_market_address();
        let protocol_state = Address::repeat_byte(0x5a);
        let chain = Arc::new(MemChain::new(
            market,
            Windows {
                snapshot_blocks: 5,
                batch_blocks: 100,
            },
            slots,
        ));
        let submissions = queue("submissions", false);
        let finalize_q = queue("finalize", false);
        let anchor_q = queue("anchor.fifo", true);
        let blocks = BlockDir::new(dir.join("blocks"));
        let content = content.unwrap_or_else(|| Arc::new(blocks.clone()));
        let mut config = PipelineConfig::new(market, protocol_state, 31337);
        config.finalize.batch_size = batch_size;
        // The anchor queue's maxReceiveCount, as the deployment passes it.
        config.anchor_max_receives = 3;
        // Tests run many epochs a second, faster than verify reads the newest epoch again
        // (once a second); the horizon's own tests (handlers/tests/hostile.rs) set the default.
        config.epoch_horizon = 1_000;
        let state = Arc::new(FaultyState::new(Arc::new(SqliteState::new(db.clone()))));
        let ports = Ports {
            state: state.clone(),
            content: content.clone(),
            chain: chain.clone(),
            finalize_queue: Arc::new(finalize_q.clone()),
            anchor_queue: Arc::new(anchor_q.clone()),
            submissions_dlq: Arc::new(submissions.dlq().unwrap()),
        };
        let (metrics, recorder) = MetricsProbe::new(market);
        Self {
            p: Arc::new(Pipeline::new(ports, config).with_recorder(recorder)),
            metrics,
            state,
            chain,
            submissions,
            finalize_q,
            anchor_q,
            blocks,
            content,
            domain: Domain {
                chain_id: 31337,
                verifying_contract: protocol_state,
            },
            market,
        }
    }

    /// The harness's pipeline with its config and ports changed by `change`: the same clock and
    /// metrics (the harness's probe sees its counters), a verify horizon of its own.
    pub fn pipeline_with(
        &self,
        change: impl FnOnce(&mut PipelineConfig, &mut Ports),
    ) -> Arc<Pipeline> {
        let (mut config, mut ports) = (self.p.config.clone(), self.p.ports.clone());
        change(&mut config, &mut ports);
        let mut p = Pipeline::new(ports, config).with_clock(self.p.clock.clone());
        p.metrics = self.p.metrics.clone();
        Arc::new(p)
    }

    /// Runs the queued finalize jobs, then the anchor jobs, through the poller.
    pub async fn run_jobs(&self) {
        let cfg = PollerConfig {
            wait: Duration::ZERO,
            retry_delay: Duration::ZERO,
            ..PollerConfig::default()
        };
        drain(&self.finalize_q, &cfg, 10, |e| finalize::handle(&self.p, e))
            .await
            .unwrap();
        drain(&self.anchor_q, &cfg, 10, |e| anchor::handle(&self.p, e))
            .await
            .unwrap();
    }
}

/// A read-only content store over fixed documents by CID, whatever their bytes: what an honest
/// or a lying IPFS node serves to the tests that audit or verify against one.
#[derive(Debug, Default)]
pub struct ServedContent(pub BTreeMap<String, Vec<u8>>);

#[async_trait]
impl ContentStore for ServedContent {
    async fn put(&self, _bytes: &[u8]) -> Result<String, PortError> {
        Err(PortError::content(ErrorKind::Unavailable, "read-only"))
    }
    async fn get(&self, cid: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.0.get(cid).cloned())
    }
}
