//! A 1 MiB project on the emulators (DynamoDB Local, SQS on LocalStack, the IPFS emulator
//! through the Kubo adapter; the chain in memory), through the deployed wiring
//! (`sequencer_lambdas::aws_pipeline`): one project whose submissions alone are over 1 MiB of
//! batch document among ordinary ones, finalized by two finalizers at once (the module's
//! concurrency 2). The IPFS node chunks the big document into 256 KiB raw leaves and answers its
//! UnixFS root, which is the CID finalize computed; one seal, one batch set; every project is
//! anchored once and every document comes back from the node whole.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use sequencer_core::cids::document_cid;
use sequencer_core::eip712::Domain;
use sequencer_core::finalize::{inspect_roots, BatchDocument};
use sequencer_core::{devkeys, Address};
use sequencer_handlers::jobs::EpochJob;
use sequencer_handlers::{anchor, finalize, tick, verify, Pipeline, PipelineConfig};
use sequencer_ports::Windows;
use sequencer_testsupport::{block_hash_of, signed_message, MemChain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_project_on_the_emulators_two_finalizers_one_batch_set() {
    let missing = sequencer_testsupport::missing(
        &[
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "IPFS_API_URL",
        ],
        &["LOCALSTACK_PYTHON"],
    )
    .await;
    if !sequencer_testsupport::require("a_one_mib_project_on_the_emulators", &missing) {
        return;
    }
    let prefix = format!("big{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    sequencer_testsupport::create_resources(&prefix).expect("emulator resources");
    std::env::set_var("SEQ_PREFIX", &prefix);

    let market = devkeys::local_market_address();
    let protocol_state = Address::repeat_byte(0x5a);
    let slots = 720u64;
    let chain = Arc::new(MemChain::new(
        market,
        Windows {
            snapshot_blocks: 5,
            batch_blocks: 1_000_000,
        },
        slots,
    ));
    let config = PipelineConfig::new(market, protocol_state, 31337);
    let (p, queues) = sequencer_lambdas::aws_pipeline(chain.clone(), config.clone())
        .await
        .unwrap();
    // A second finalize Lambda instance: its own process, the same services.
    let p2 = Pipeline::new(p.ports.clone(), config);

    let (epoch, r) = chain.release();
    chain.mine(1);
    assert_eq!(tick::step(&p).await.unwrap().opened, vec![epoch]);
    let domain = Domain {
        chain_id: 31337,
        verifying_contract: protocol_state,
    };
    let msg = |slot: u64, project: &str| {
        signed_message(
            &domain,
            market,
            &uuid::Uuid::new_v4(),
            slot,
            slot,
            epoch,
            project,
            "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy",
            block_hash_of(r + 1),
        )
        .0
    };
    let big = format!("big:{}", "\"".repeat(252));
    let mut bodies: Vec<String> = (1..=slots).map(|s| msg(s, &big)).collect();
    bodies.extend((1..=6).map(|s| msg(s, if s <= 3 { "a-small" } else { "zz-small" })));
    for chunk in bodies.chunks(16) {
        for v in futures::future::join_all(chunk.iter().map(|b| verify::verify_body(&p, b))).await {
            assert_eq!(v.unwrap(), verify::Verdict::Accepted);
        }
    }
    chain.mine(10);
    assert_eq!(tick::step(&p).await.unwrap().closed, vec![epoch]);

    let job = EpochJob { market, epoch };
    let (a, b) = futures::join!(finalize::run(&p, job), finalize::run(&p2, job));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.seal_cid, b.seal_cid, "one seal");
    assert_eq!(u8::from(a.sealed) + u8::from(b.sealed), 1);
    assert_eq!(a.batches, 3);
    anchor::run(&p, job).await.unwrap();

    let on_chain = chain.anchored_batches(epoch);
    assert_eq!(on_chain.len(), 3);
    let mut previous: Vec<String> = Vec::new();
    let mut pids = Vec::new();
    for b in &on_chain {
        let bytes = p
            .ports
            .content
            .get(&b.batch_cid)
            .await
            .unwrap()
            .expect("on the node");
        assert_eq!(document_cid(&bytes).to_string(), b.batch_cid);
        let d: BatchDocument = serde_json::from_slice(&bytes).unwrap();
        if d.pids == vec![big.clone()] {
            assert!(bytes.len() > 1024 * 1024, "{}", bytes.len());
            assert!(b.batch_cid.starts_with("bafybei"), "{}", b.batch_cid);
            assert_eq!(d.submission_ids.len(), slots as usize);
        }
        let roots = inspect_roots(&d, &previous).unwrap();
        assert_eq!(roots.finalized_cids_root, b.root);
        previous.extend(d.submission_ids);
        pids.extend(d.pids);
    }
    assert_eq!(
        pids,
        vec!["a-small".to_string(), big, "zz-small".to_string()]
    );
    drop(queues);
}
