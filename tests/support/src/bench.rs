//! What the benchmarks feed the functions: one epoch's submissions signed in advance, and SQS
//! events of them as the event source mapping delivers them (`runner/examples/verify_bench.rs`,
//! `runner/examples/pipeline_bench.rs`).

use std::sync::Arc;

use sequencer_core::eip712::Domain;
use sequencer_core::{devkeys, Address};
use sequencer_handlers::sqs::events::{SqsEvent, SqsMessage};
use sequencer_ports::Windows;

use crate::{block_hash_of, signed_message, MemChain};

/// Snapshot CID the first three snapshotters of a project agree on.
pub const CID_A: &str = "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy";
/// Snapshot CID the others submit.
pub const CID_B: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

/// One released epoch of the local market, its `/collect` bodies, and the chain that knows
/// their slots.
pub struct SignedEpoch {
    /// The in-memory chain: the epoch released, its window open, one block mined.
    pub chain: Arc<MemChain>,
    /// The epoch.
    pub epoch: u64,
    /// Every submission, as a `/collect` message body.
    pub bodies: Vec<String>,
    /// The EIP-712 domain they are signed in.
    pub domain: Domain,
    /// The data market.
    pub market: Address,
}

/// `projects` × `snapshotters` submissions (the first three snapshotters of a project submit
/// [`CID_A`], the others [`CID_B`]), on `projects × snapshotters / 2` slots so every slot is at
/// a cap of 2.
pub fn signed_epoch(projects: u64, snapshotters: u64) -> SignedEpoch {
    let market = devkeys::local_market_address();
    let domain = Domain {
        chain_id: 31337,
        verifying_contract: Address::repeat_byte(0x5a),
    };
    let slots = (projects * snapshotters).div_ceil(2).max(1);
    let chain = Arc::new(MemChain::new(
        market,
        Windows {
            snapshot_blocks: 5,
            batch_blocks: 1_000_000,
        },
        slots,
    ));
    let (epoch, r) = chain.release();
    chain.mine(1);
    let header = block_hash_of(r + 1);
    let mut bodies = Vec::with_capacity(usize::try_from(projects * snapshotters).unwrap_or(0));
    for k in 0..snapshotters {
        for j in 0..projects {
            let slot = (k * projects + j) % slots + 1;
            let cid = if k < 3 { CID_A } else { CID_B };
            let project = format!("aggregate_pairContract_trade_volume:0x{j:040x}:UNISWAPV2");
            let id = uuid::Uuid::new_v4();
            let (body, _) = signed_message(
                &domain, market, &id, slot, slot, epoch, &project, cid, header,
            );
            bodies.push(body);
        }
    }
    SignedEpoch {
        chain,
        epoch,
        bodies,
        domain,
        market,
    }
}

/// SQS events of `batch` records each (message ids `m-<event>-<record>`).
pub fn sqs_events(bodies: &[String], batch: usize) -> Vec<SqsEvent> {
    bodies
        .chunks(batch.max(1))
        .enumerate()
        .map(|(b, chunk)| {
            let mut e = SqsEvent::default();
            e.records = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let mut m = SqsMessage::default();
                    m.message_id = Some(format!("m-{b}-{i}"));
                    m.receipt_handle = Some(format!("r-{b}-{i}"));
                    m.body = Some(body.clone());
                    m
                })
                .collect();
            e
        })
        .collect()
}
