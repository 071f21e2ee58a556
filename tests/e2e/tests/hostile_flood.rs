//! A flood of hostile messages against verify on DynamoDB Local (issue 16 item 4,
//! docs/protocol.md §5 "What a hostile message costs"), counting the DynamoDB requests at the
//! adapter (`DynamoStore::requests`) and the chain's calls (`MemChain::calls`), with the chain
//! behind verify's per-process cache as the Lambdas wire it: random keys over slots out of range,
//! keys that are not the slot's snapshotter over real slots, and far-future epochs cost no
//! write and no chain call.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use sequencer_core::eip712::Domain;
use sequencer_core::{devkeys, Address};
use sequencer_embedded::{BlockDir, Db, QueueOptions, SqliteQueue};
use sequencer_handlers::chain_cache::CachedChain;
use sequencer_handlers::{tick, verify, Pipeline, PipelineConfig, Ports, SystemClock};
use sequencer_ports::Windows;
use sequencer_testsupport::{block_hash_of, signed_message, MemChain};

const SLOTS: u64 = 6;
const FLOOD: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_flood_on_dynamodb_writes_only_decided_marks_and_calls_no_chain() {
    let missing = sequencer_testsupport::missing(
        &["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"],
        &["LOCALSTACK_PYTHON"],
    )
    .await;
    if !sequencer_testsupport::require("a_hostile_flood_on_dynamodb", &missing) {
        return;
    }
    let prefix = format!("hf{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    sequencer_testsupport::create_resources(&prefix).expect("emulator resources");
    let store = Arc::new(sequencer_aws::DynamoStore::from_env(prefix).await);

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("q.sqlite")).unwrap();
    let queue = |name: &str| {
        Arc::new(SqliteQueue::new(
            db.clone(),
            name,
            QueueOptions {
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: None,
                dlq: None,
                fifo: false,
            },
        ))
    };
    let market = devkeys::local_market_address();
    let protocol_state = Address::repeat_byte(0x5a);
    let chain = Arc::new(MemChain::new(
        market,
        Windows {
            snapshot_blocks: 5,
            batch_blocks: 1_000_000,
        },
        SLOTS,
    ));
    let config = PipelineConfig::new(market, protocol_state, 31337);
    let ports = Ports {
        state: store.clone(),
        content: Arc::new(BlockDir::new(dir.path().join("blocks"))),
        chain: CachedChain::wrap(chain.clone(), &config, Arc::new(SystemClock)),
        finalize_queue: queue("finalize"),
        anchor_queue: queue("anchor"),
        submissions_dlq: queue("dlq"),
    };
    let p = Pipeline::new(ports, config);
    let (epoch, r) = chain.release();
    chain.mine(1);
    assert_eq!(tick::step(&p).await.unwrap().opened, vec![epoch]);
    let domain = Domain {
        chain_id: 31337,
        verifying_contract: protocol_state,
    };
    let header = block_hash_of(r + 1);
    let body = |slot: u64, signer: u64, epoch: u64, project: &str| {
        signed_message(
            &domain,
            market,
            &uuid::Uuid::new_v4(),
            slot,
            signer,
            epoch,
            project,
            "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy",
            header,
        )
        .0
    };
    let run = |bodies: Vec<String>| {
        let p = &p;
        async move {
            let mut out = Vec::new();
            for batch in bodies.chunks(10) {
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                for r in verify::verify_batch(p, &refs).await {
                    out.push(r.unwrap());
                }
            }
            out
        }
    };

    // Steady traffic warms the process: one honest submission per slot.
    let warm = run((1..=SLOTS)
        .map(|s| body(s, s, epoch, &format!("w{s}")))
        .collect())
    .await;
    assert!(
        warm.iter().all(|v| *v == verify::Verdict::Accepted),
        "{warm:?}"
    );

    let (reqs, writes, calls) = (
        store.requests().total(),
        store.requests().writes(),
        chain.total_calls(),
    );
    let mut flood = Vec::new();
    for k in 0..FLOOD {
        flood.push(body(10_000 + k * 7_919, 500 + k, epoch, "p")); // out of range
        flood.push(body(k % SLOTS + 1, 500 + k, epoch, "p")); // not the slot's snapshotter
        flood.push(body(k % SLOTS + 1, k % SLOTS + 1, epoch + 1_000 + k, "p")); // far future
    }
    let verdicts = run(flood).await;
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v, verify::Verdict::Dropped(_))),
        "{verdicts:?}"
    );
    let requests = store.requests().total() - reqs;
    // No write of their own: only each batch's one decided mark for the close watermark
    // (docs/protocol.md §4), an UpdateItem ADD of the batch's marks to one set.
    let batches = (3 * FLOOD).div_ceil(10);
    let written = store.requests().writes() - writes;
    assert!(
        written <= batches,
        "{written} DynamoDB writes for {batches} batches"
    );
    assert_eq!(chain.total_calls() - calls, 0, "{:?}", chain.calls());
    // Only the batched read of the messages that get as far as the owner check (one
    // BatchGetItem per SQS batch at most) and that mark.
    assert!(
        requests <= 2 * batches,
        "{requests} DynamoDB requests for {batches} batches: {:?}",
        store.requests().snapshot()
    );
}
