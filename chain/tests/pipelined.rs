//! Pipelined anchoring (`ChainClient::submit_batches`) against a real anvil node, with each
//! fault of exactly-once mounted: the batches go out with consecutive nonces before any receipt
//! (automine off); a crash after any number of sends (a new client reads the chain and sends
//! only the rest); a dropped transaction that leaves a nonce gap (filled by a replacement); a
//! nonce taken by another writer on our key (a retryable conflict, the retry sends the rest
//! once); a reorg of every batch before its confirmations (`evm_snapshot` / `evm_revert`: sent
//! again, once); an epoch on a chain with 1 s blocks taking no more blocks than its gas; and a
//! transaction the node drops from its pool (anvil, a later nonce that fits a block's leftover
//! gas) sent again at the next block, not after the replacement delay.

mod common;

use std::time::Duration;

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, TxHash, U256},
    providers::{ext::AnvilApi, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use common::*;
use sequencer_chain::{BatchCall, ChainClient, ChainConfig, ChainError, SubmitOutcome, Windows};

const WINDOWS: Windows = Windows {
    snapshot_blocks: 20,
    batch_blocks: 1_000,
};

/// A client of the deployed contract (anvil key 0, the sequencer) with `tune` applied.
async fn writer(env: &Env, tune: impl FnOnce(&mut ChainConfig)) -> ChainClient {
    let mut cfg = test_config(&env.anvil.endpoint(), Some(key_hex(&env.anvil, 0)));
    cfg.protocol_state = env.deployment.protocol_state;
    tune(&mut cfg);
    ChainClient::connect(cfg).await.expect("connect")
}

/// `n` batches of `projects` projects each, distinct per `tag`.
fn batches(tag: &str, n: usize, projects: usize) -> Vec<BatchCall> {
    (0..n)
        .map(|i| BatchCall {
            batch_cid: format!("batch-{tag}-{i:03}"),
            project_ids: (0..projects)
                .map(|p| format!("{tag}-{i:03}-p{p:03}"))
                .collect(),
            cids: (0..projects)
                .map(|p| if p % 2 == 0 { CID_A } else { CID_B }.to_string())
                .collect(),
            root: root(i as u8 + 1),
        })
        .collect()
}

/// Releases the next epoch; returns its id.
async fn release(env: &Env, begin: u64) -> u64 {
    let (_, epoch) = env
        .client
        .release_epoch(env.market(), begin, begin + 9)
        .await
        .expect("release");
    epoch
}

async fn nonce_of(c: &ChainClient, from: Address) -> u64 {
    c.provider()
        .get_transaction_count(from)
        .await
        .expect("nonce")
}

/// How many transactions of `from` the pool holds.
async fn pooled_count(c: &ChainClient, from: Address) -> usize {
    let pool: serde_json::Value = c
        .provider()
        .raw_request("txpool_content".into(), ())
        .await
        .expect("txpool_content");
    pool["pending"]
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&from.to_string()))
                .and_then(|(_, v)| v.as_object().map(|o| o.len()))
        })
        .unwrap_or(0)
}

/// Mines a block every `every` until dropped.
struct Miner(tokio::task::JoinHandle<()>);

impl Miner {
    fn start(c: &ChainClient, every: Duration) -> Self {
        let p = c.provider().clone();
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if p.anvil_mine(Some(1), None).await.is_err() {
                    return;
                }
            }
        }))
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The epoch's batches on chain are exactly `want`, in that order, each anchored by a distinct
/// transaction.
async fn assert_on_chain_once(c: &ChainClient, market: Address, epoch: u64, want: &[BatchCall]) {
    let a = c.anchored(market, epoch).await.expect("anchored");
    let got: Vec<&str> = a.batches.iter().map(|b| b.batch_cid.as_str()).collect();
    let want_cids: Vec<&str> = want.iter().map(|b| b.batch_cid.as_str()).collect();
    assert_eq!(got, want_cids, "batches on chain, in order");
    let mut txs: Vec<TxHash> = a
        .batches
        .iter()
        .map(|b| b.tx_hash.expect("log found"))
        .collect();
    txs.sort();
    txs.dedup();
    assert_eq!(txs.len(), want.len(), "one transaction per batch");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_epochs_batches_go_out_with_consecutive_nonces_before_any_receipt() {
    let Some(env) = setup(
        "an_epochs_batches_go_out_with_consecutive_nonces_before_any_receipt",
        WINDOWS,
    )
    .await
    else {
        return;
    };
    let market = env.market();
    let epoch = release(&env, 1).await;
    let c = writer(&env, |_| {}).await;
    let from = c.signer_address().expect("signer");
    let n0 = nonce_of(&c, from).await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");
    let want = batches("seq", 6, 3);
    let task = {
        let (c, want) = (c.clone(), want.clone());
        tokio::spawn(async move { c.submit_batches(market, epoch, &want).await })
    };
    // Nothing is mined, yet all six are sent: nobody waited for a receipt.
    until("six transactions pooled", 10, || async {
        pooled_count(&c, from).await == 6
    })
    .await;
    for k in 0..6 {
        assert!(pooled(&c, from, n0 + k).await.is_some(), "nonce {}", n0 + k);
    }
    assert!(!task.is_finished(), "reported before anything was mined");
    p.evm_mine(None).await.expect("mine");
    let out = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("finished")
        .expect("join");
    assert!(out.error.is_none(), "{:?}", out.error);
    let blocks: Vec<u64> = out
        .outcomes
        .iter()
        .map(|o| match o {
            Some(SubmitOutcome::Anchored { block, .. }) => *block,
            other => panic!("expected Anchored, got {other:?}"),
        })
        .collect();
    assert!(
        blocks.iter().all(|b| *b == blocks[0]),
        "one block: {blocks:?}"
    );
    assert_eq!(nonce_of(&c, from).await, n0 + 6);
    assert_on_chain_once(&c, market, epoch, &want).await;
    // The same epoch again: everything is found on chain, nothing is sent.
    p.anvil_set_auto_mine(true).await.expect("automine on");
    let again = c.submit_batches(market, epoch, &want).await;
    assert!(again.error.is_none(), "{:?}", again.error);
    assert!(again
        .outcomes
        .iter()
        .all(|o| matches!(o, Some(SubmitOutcome::AlreadyAnchored { .. }))));
    assert_eq!(nonce_of(&c, from).await, n0 + 6);
    eprintln!(
        "6 batches sent before any receipt, mined in block {}; counters {:?}",
        blocks[0],
        c.writer_counters()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_any_send_sends_no_batch_twice() {
    let Some(env) = setup("a_crash_after_any_send_sends_no_batch_twice", WINDOWS).await else {
        return;
    };
    let market = env.market();
    let p = env.client.provider().clone();
    for (round, crash_after) in [1usize, 3, 5].into_iter().enumerate() {
        let epoch = release(&env, 1 + 10 * round as u64).await;
        let want = batches(&format!("crash{crash_after}"), 5, 2);
        // The first writer may have `crash_after` transactions unmined: it sends that many,
        // then waits for receipts that do not come, and dies.
        let a = writer(&env, |cfg| cfg.max_pending_txs = crash_after).await;
        let from = a.signer_address().expect("signer");
        let n0 = nonce_of(&a, from).await;
        p.anvil_set_auto_mine(false).await.expect("automine off");
        let task = {
            let (a, want) = (a.clone(), want.clone());
            tokio::spawn(async move { a.submit_batches(market, epoch, &want).await })
        };
        until("the first writer's sends", 10, || async {
            pooled_count(&a, from).await == crash_after
        })
        .await;
        task.abort();
        let _ = task.await;
        drop(a);
        // A new process with the same key: it waits for what is pending, reads the chain, and
        // sends only what is missing.
        let b = writer(&env, |_| {}).await;
        let miner = Miner::start(&b, Duration::from_millis(100));
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            b.submit_batches(market, epoch, &want),
        )
        .await
        .expect("finished");
        drop(miner);
        assert!(out.error.is_none(), "{:?}", out.error);
        let already = out
            .outcomes
            .iter()
            .filter(|o| matches!(o, Some(SubmitOutcome::AlreadyAnchored { .. })))
            .count();
        let sent = out
            .outcomes
            .iter()
            .filter(|o| matches!(o, Some(SubmitOutcome::Anchored { .. })))
            .count();
        assert_eq!((already, sent), (crash_after, 5 - crash_after));
        assert_eq!(nonce_of(&b, from).await, n0 + 5, "five transactions in all");
        assert_on_chain_once(&b, market, epoch, &want).await;
        p.anvil_set_auto_mine(true).await.expect("automine on");
        eprintln!("crash after {crash_after} sends: {already} found on chain, {sent} sent by the next writer");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_transaction_leaves_a_nonce_gap_that_a_replacement_fills() {
    let Some(env) = setup(
        "a_dropped_transaction_leaves_a_nonce_gap_that_a_replacement_fills",
        WINDOWS,
    )
    .await
    else {
        return;
    };
    let market = env.market();
    let epoch = release(&env, 1).await;
    let c = writer(&env, |cfg| cfg.replace_after = Duration::from_millis(600)).await;
    let from = c.signer_address().expect("signer");
    let n0 = nonce_of(&c, from).await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");
    let want = batches("gap", 5, 2);
    let task = {
        let (c, want) = (c.clone(), want.clone());
        tokio::spawn(async move { c.submit_batches(market, epoch, &want).await })
    };
    until("five pooled", 10, || async {
        pooled_count(&c, from).await == 5
    })
    .await;
    // The node forgets the third one (evicted from its pool): a nonce gap.
    let (dropped, _, _) = pooled(&c, from, n0 + 2).await.expect("pooled");
    p.anvil_drop_transaction(dropped).await.expect("drop");
    p.evm_mine(None).await.expect("mine");
    assert_eq!(
        nonce_of(&c, from).await,
        n0 + 2,
        "two mined, the rest behind the gap"
    );
    // Past TX_REPLACE_AFTER_MS the writer re-signs the missing nonce (with higher fees).
    let (filled, _, _) = wait_pooled(&c, from, n0 + 2, Some(dropped), 10).await;
    p.evm_mine(None).await.expect("mine");
    let miner = Miner::start(&c, Duration::from_millis(150));
    let out = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("finished")
        .expect("join");
    drop(miner);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        matches!(out.outcomes[2], Some(SubmitOutcome::Anchored { tx_hash, .. }) if tx_hash == filled),
        "{:?}",
        out.outcomes[2]
    );
    assert_eq!(nonce_of(&c, from).await, n0 + 5);
    assert_on_chain_once(&c, market, epoch, &want).await;
    let n = c.writer_counters();
    assert!(n.replaced >= 1, "{n:?}");
    p.anvil_set_auto_mine(true).await.expect("automine on");
    eprintln!(
        "gap at nonce {}: filled by {filled}; counters {n:?}",
        n0 + 2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stuck_batches_are_all_replaced_with_the_same_nonces_and_mined_once() {
    let Some(env) = setup(
        "stuck_batches_are_all_replaced_with_the_same_nonces_and_mined_once",
        WINDOWS,
    )
    .await
    else {
        return;
    };
    let market = env.market();
    let epoch = release(&env, 1).await;
    let c = writer(&env, |cfg| cfg.replace_after = Duration::from_millis(400)).await;
    let from = c.signer_address().expect("signer");
    let n0 = nonce_of(&c, from).await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");
    let want = batches("stuck", 4, 2);
    let task = {
        let (c, want) = (c.clone(), want.clone());
        tokio::spawn(async move { c.submit_batches(market, epoch, &want).await })
    };
    until("four pooled", 10, || async {
        pooled_count(&c, from).await == 4
    })
    .await;
    let mut first = Vec::new();
    for k in 0..4 {
        first.push(pooled(&c, from, n0 + k).await.expect("pooled"));
    }
    // Nothing mines them: each is replaced (same nonce, ≥ 10 % higher fees).
    for (k, (hash, fee, tip)) in first.iter().enumerate() {
        let (_, fee2, tip2) = wait_pooled(&c, from, n0 + k as u64, Some(*hash), 10).await;
        assert!(
            fee2 * 100 >= fee * 110 && tip2 * 100 >= tip * 110,
            "nonce {k}"
        );
    }
    p.evm_mine(None).await.expect("mine");
    let out = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("finished")
        .expect("join");
    assert!(out.error.is_none(), "{:?}", out.error);
    for (o, (hash, _, _)) in out.outcomes.iter().zip(&first) {
        let Some(SubmitOutcome::Anchored { tx_hash, .. }) = o else {
            panic!("{o:?}")
        };
        assert_ne!(tx_hash, hash, "the replaced original cannot be mined");
    }
    assert_eq!(nonce_of(&c, from).await, n0 + 4);
    assert_on_chain_once(&c, market, epoch, &want).await;
    p.anvil_set_auto_mine(true).await.expect("automine on");
    eprintln!(
        "4 stuck batches replaced and mined once; counters {:?}",
        c.writer_counters()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_taken_by_another_writer_is_a_retryable_conflict_and_the_retry_sends_the_rest_once()
{
    let Some(env) = setup(
        "a_nonce_taken_by_another_writer_is_a_retryable_conflict_and_the_retry_sends_the_rest_once",
        WINDOWS,
    )
    .await
    else {
        return;
    };
    let market = env.market();
    let epoch = release(&env, 1).await;
    let c = writer(&env, |cfg| cfg.max_pending_txs = 2).await;
    let from = c.signer_address().expect("signer");
    let n0 = nonce_of(&c, from).await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");
    let want = batches("nonce", 5, 2);
    let task = {
        let (c, want) = (c.clone(), want.clone());
        tokio::spawn(async move { c.submit_batches(market, epoch, &want).await })
    };
    until("two pooled", 10, || async {
        pooled_count(&c, from).await == 2
    })
    .await;
    // Another process with our key takes the next nonce (a plain transfer to itself).
    let signer: PrivateKeySigner = key_hex(&env.anvil, 0).parse().expect("key");
    let other = ProviderBuilder::new()
        .wallet(EthereumWallet::new(signer))
        .connect_http(env.anvil.endpoint_url());
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(from)
        .with_value(U256::ZERO)
        .with_nonce(n0 + 2)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(100_000_000_000)
        .with_max_priority_fee_per_gas(1_000_000_000)
        .with_chain_id(c.chain_id());
    let _pending = other.send_transaction(tx).await.expect("foreign send");
    p.evm_mine(None).await.expect("mine");
    p.anvil_set_auto_mine(true).await.expect("automine on");
    let out = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("finished")
        .expect("join");
    let err = out.error.expect("the third nonce was taken");
    assert!(matches!(err, ChainError::NonceConflict { .. }), "{err:?}");
    assert!(err.is_retryable());
    let port = sequencer_ports::PortError::from(err);
    assert_eq!(port.kind(), &sequencer_ports::ErrorKind::Nonce);
    assert!(port.is_retryable(), "never final: {port}");
    assert!(out.outcomes[..2].iter().all(Option::is_some));
    assert!(
        out.outcomes[2..].iter().all(Option::is_none),
        "nothing sent after the conflict"
    );
    // The retry reads the chain: the first two are there, the rest go out once.
    let again = c.submit_batches(market, epoch, &want).await;
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!(
        nonce_of(&c, from).await,
        n0 + 6,
        "five batches and the foreign transfer"
    );
    assert_on_chain_once(&c, market, epoch, &want).await;
    eprintln!("nonce {} taken by another writer: {port}", n0 + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_of_every_batch_before_its_confirmations_sends_each_again_once() {
    let Some(env) = setup(
        "a_reorg_of_every_batch_before_its_confirmations_sends_each_again_once",
        WINDOWS,
    )
    .await
    else {
        return;
    };
    let market = env.market();
    let epoch = release(&env, 1).await;
    let c = writer(&env, |cfg| cfg.chain_confirmations = 3).await;
    let from = c.signer_address().expect("signer");
    let n0 = nonce_of(&c, from).await;
    let p = c.provider().clone();
    let snapshot = p.anvil_snapshot().await.expect("evm_snapshot");
    let want = batches("reorg", 4, 2);
    let task = {
        let (c, want) = (c.clone(), want.clone());
        tokio::spawn(async move { c.submit_batches(market, epoch, &want).await })
    };
    until("all four mined", 10, || async {
        nonce_of(&c, from).await == n0 + 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "reported before 3 confirmations");
    // Every block with a batch leaves the chain.
    assert!(p.anvil_revert(snapshot).await.expect("evm_revert"));
    assert!(c
        .anchored(market, epoch)
        .await
        .expect("anchored")
        .batches
        .is_empty());
    let miner = Miner::start(&c, Duration::from_millis(150));
    let out = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("finished")
        .expect("join");
    drop(miner);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(out.outcomes.iter().all(Option::is_some));
    let n = c.writer_counters();
    assert!(n.reorged >= 1, "reorg not noticed: {n:?}");
    assert_eq!(
        nonce_of(&c, from).await,
        n0 + 4,
        "one transaction per batch on the canonical chain"
    );
    assert_on_chain_once(&c, market, epoch, &want).await;
    let head = p.get_block_number().await.expect("head");
    for o in out.outcomes.iter().flatten() {
        let block = match o {
            SubmitOutcome::Anchored { block, .. }
            | SubmitOutcome::AlreadyAnchored { block, .. } => *block,
        };
        assert!(head >= block + 2, "3 deep: head {head}, block {block}");
    }
    eprintln!("reorg of 4 batches: sent again once; counters {n:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_chain_with_1s_blocks_an_epoch_takes_no_more_blocks_than_its_gas_needs_plus_two() {
    let test =
        "on_a_chain_with_1s_blocks_an_epoch_takes_no_more_blocks_than_its_gas_needs_plus_two";
    let Some(bin) = anvil_bin(test) else {
        return;
    };
    // Deployed on automine (fast), then a block every second.
    let anvil = spawn_anvil(&bin, None);
    let plan = sequencer_chain::deploy::DeployPlan {
        slots: 1,
        windows: WINDOWS,
        ..sequencer_chain::deploy::DeployPlan::default()
    };
    let (_, deployment) = deploy(&anvil, &plan).await;
    let mut cfg = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 0)));
    cfg.protocol_state = deployment.protocol_state;
    let c = ChainClient::connect(cfg).await.expect("connect");
    let market = deployment.data_market;
    let (_, epoch) = c.release_epoch(market, 1, 10).await.expect("release");
    c.provider()
        .anvil_set_interval_mining(1)
        .await
        .expect("1 s blocks");
    // 24 batches of 50 projects (≈ 4.8 M gas each).
    let want = batches("blocks", 24, 50);
    let out = c.submit_batches(market, epoch, &want).await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let mut gas = 0u64;
    let mut blocks = std::collections::BTreeSet::new();
    for o in out.outcomes.iter().flatten() {
        let SubmitOutcome::Anchored {
            gas_used, block, ..
        } = o
        else {
            panic!("{o:?}")
        };
        gas += gas_used;
        blocks.insert(*block);
    }
    let block_gas = c
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .expect("block")
        .expect("latest")
        .header
        .gas_limit;
    let bound = gas.div_ceil(block_gas);
    let taken = blocks.last().expect("blocks") - blocks.first().expect("blocks") + 1;
    eprintln!("24 batches, {gas} gas, block gas limit {block_gas}: gas bound {bound} blocks, took {taken} ({blocks:?})");
    assert!(taken <= bound + 2, "took {taken} blocks, gas needs {bound}");
    assert_on_chain_once(&c, market, epoch, &want).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_nonce_the_node_drops_is_sent_again_at_once_not_after_the_replacement_delay() {
    // The fault, as anvil mounts it on its own: 12 batches of ≈ 7.2 M gas (limits ≈ 8.6 M with
    // the margin: 3 fit a 30 M block, the 4th does not) and a last, small one. Building a
    // block, anvil skips the 4th for want of gas but executes the small last one, whose gas
    // still fits, out of nonce order: "nonce too high", and it drops it from its pool. Nothing
    // would mine that nonce again until its replacement, `TX_REPLACE_AFTER_MS` (30 s) later.
    let test = "a_later_nonce_the_node_drops_is_sent_again_at_once";
    let Some(bin) = anvil_bin(test) else {
        return;
    };
    let anvil = spawn_anvil(&bin, None);
    let plan = sequencer_chain::deploy::DeployPlan {
        slots: 1,
        windows: WINDOWS,
        ..sequencer_chain::deploy::DeployPlan::default()
    };
    let (_, deployment) = deploy(&anvil, &plan).await;
    let mut cfg = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 0)));
    cfg.protocol_state = deployment.protocol_state;
    cfg.receipt_timeout = Duration::from_secs(60);
    // The fault needs limits that leave a 4th batch out of a block: a 20 % margin (the default
    // is 5 %, at which four of these fit and anvil drops nothing).
    cfg.gas_margin_percent = 120;
    let replace_after = cfg.replace_after;
    assert_eq!(replace_after, Duration::from_secs(30), "the default");
    let c = ChainClient::connect(cfg).await.expect("connect");
    let market = deployment.data_market;
    let (_, epoch) = c.release_epoch(market, 1, 10).await.expect("release");
    c.provider()
        .anvil_set_interval_mining(1)
        .await
        .expect("1 s blocks");
    let mut want = batches("drop", 12, 77);
    want.extend(batches("droptail", 1, 19));
    let head = c.head().await.expect("head");
    let t = std::time::Instant::now();
    let out = c.submit_batches(market, epoch, &want).await;
    let took = t.elapsed();
    assert!(out.error.is_none(), "{:?}", out.error);
    let n = c.writer_counters();
    let mut gas = 0u64;
    let mut last = head;
    for o in out.outcomes.iter().flatten() {
        let SubmitOutcome::Anchored {
            gas_used, block, ..
        } = o
        else {
            panic!("{o:?}")
        };
        gas += gas_used;
        last = last.max(*block);
    }
    let bound = gas.div_ceil(30_000_000);
    let taken = last - head;
    eprintln!("13 batches, {gas} gas: bound {bound} blocks, took {taken} blocks in {took:?}; counters {n:?}");
    assert!(
        n.rebroadcast >= 1,
        "the node lost a transaction (the fault was mounted): {n:?}"
    );
    assert_eq!(n.replaced, 0, "nothing waited for its replacement: {n:?}");
    assert!(taken <= bound + 2, "took {taken} blocks, gas needs {bound}");
    // 1 s blocks: the blocks taken are seconds, far under the 30 s a replacement waits.
    assert!(
        Duration::from_secs(taken) < replace_after / 3,
        "took {taken} blocks of 1 s"
    );
    assert_on_chain_once(&c, market, epoch, &want).await;
}

/// `n` projects with ids of `pid_len` bytes and CIDs of `cid_len` bytes, distinct within `tag`.
/// One-byte ids start at letter `first`.
fn shaped(
    tag: usize,
    first: u8,
    n: usize,
    pid_len: usize,
    cid_len: usize,
) -> (Vec<String>, Vec<String>) {
    let pids = (0..n)
        .map(|i| {
            if pid_len == 1 {
                char::from(b'a' + first + i as u8).to_string()
            } else {
                format!("{:0>pid_len$}", format!("{tag}x{i}"))
            }
        })
        .collect();
    let cids = (0..n)
        .map(|i| format!("{:b>cid_len$}", format!("{tag}y{i}")))
        .collect();
    (pids, cids)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gas_model_finalize_cuts_by_bounds_every_receipt_and_stays_close() {
    // `sequencer_core::anchor_gas::batch_gas` is what finalize cuts batches by: it must never be
    // below a receipt (a batch would not fit the budget it was cut for) and, for real shapes
    // (CIDv1 of 59 bytes, batches of many projects), within 1.5 % of it (else blocks go unfilled).
    let Some(env) = setup("the_gas_model_bounds_every_receipt", WINDOWS).await else {
        return;
    };
    let c = writer(&env, |_| {}).await;
    let market = env.market();
    let mut shape = 0usize;
    for pid_len in [1usize, 32, 89, 256] {
        for cid_len in [31usize, 32, 59, 100] {
            shape += 1;
            let epoch = release(&env, 1 + 10 * shape as u64).await;
            for (k, n) in [(0usize, 1usize), (1, 20)] {
                let (pids, cids) = shaped(shape * 10 + k, k as u8, n, pid_len, cid_len);
                let out = c
                    .submit_batch(
                        market,
                        epoch,
                        &format!("gas-{shape}-{k}"),
                        &pids,
                        &cids,
                        root(k as u8 + 1),
                    )
                    .await
                    .expect("anchored");
                let SubmitOutcome::Anchored { gas_used, .. } = out else {
                    panic!("{out:?}")
                };
                let model = sequencer_core::anchor_gas::batch_gas(
                    pids.iter()
                        .map(String::as_str)
                        .zip(cids.iter().map(String::as_str)),
                );
                eprintln!("ids {pid_len} B, CIDs {cid_len} B, {n} projects: receipt {gas_used}, model {model}");
                assert!(
                    model >= gas_used,
                    "ids {pid_len} B, CIDs {cid_len} B, {n} projects: model {model} < receipt {gas_used}"
                );
                if n == 20 && cid_len >= 59 {
                    assert!(
                        model * 1000 <= gas_used * 1015,
                        "ids {pid_len} B, CIDs {cid_len} B: model {model} > 1.5 % above {gas_used}"
                    );
                }
            }
        }
    }
}
