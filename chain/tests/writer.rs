//! The writer against a real anvil node, with the faults mounted: a transaction stuck in the
//! pool (automine off) is replaced with the same nonce and bumped fees; at the fee ceiling it is
//! not raised further; a base fee above the ceiling is refused and reported, never overpaid; a
//! reorg (`evm_snapshot` / `evm_revert`) before the confirmations makes the batch not anchored
//! and it is sent again, once; the RPC URL's key shows in no `Debug`, error or log line.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::{
    network::TransactionResponse as _,
    primitives::{Address, B256},
    providers::{ext::AnvilApi, Provider},
};
use common::*;
use sequencer_chain::{ChainClient, ChainConfig, ChainError, FeeRejection, SubmitOutcome, Windows};

const WINDOWS: Windows = Windows {
    snapshot_blocks: 20,
    batch_blocks: 60,
};
const GWEI: u128 = 1_000_000_000;

/// A client of the deployed contract (anvil key 0, the sequencer) with `tune` applied.
async fn writer(env: &Env, tune: impl FnOnce(&mut ChainConfig)) -> ChainClient {
    let mut cfg = test_config(&env.anvil.endpoint(), Some(key_hex(&env.anvil, 0)));
    cfg.protocol_state = env.deployment.protocol_state;
    tune(&mut cfg);
    ChainClient::connect(cfg).await.expect("connect")
}

fn max_fee(tx: &alloy::rpc::types::Transaction) -> u128 {
    alloy::consensus::Transaction::max_fee_per_gas(tx)
}

fn tx_nonce(tx: &alloy::rpc::types::Transaction) -> u64 {
    alloy::consensus::Transaction::nonce(tx)
}

async fn released(name: &str) -> Option<(Env, Address, Address, u64)> {
    let env = setup(name, WINDOWS).await?;
    let market = env.market();
    env.client
        .release_epoch(market, 1, 10)
        .await
        .expect("release");
    let from = env.client.signer_address().expect("signer");
    let nonce = env
        .client
        .provider()
        .get_transaction_count(from)
        .await
        .expect("nonce");
    Some((env, market, from, nonce))
}

fn batch() -> (Vec<String>, Vec<String>) {
    (strings(&["p1", "p2"]), strings(&[CID_A, CID_B]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_transaction_is_replaced_with_the_same_nonce_and_higher_fees() {
    let Some((env, market, from, nonce)) =
        released("a_stuck_transaction_is_replaced_with_the_same_nonce_and_higher_fees").await
    else {
        return;
    };
    let ceiling = 50 * GWEI;
    let c = writer(&env, |cfg| {
        cfg.replace_after = Duration::from_millis(400);
        cfg.max_fee_ceiling = ceiling;
    })
    .await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");

    let (projects, cids) = batch();
    let task = {
        let c = c.clone();
        tokio::spawn(async move {
            c.submit_batch(market, 1, "batch-stuck", &projects, &cids, root(1))
                .await
        })
    };
    // The first transaction sits in the pool: nothing mines it.
    let (first_hash, first_fee, first_tip) = wait_pooled(&c, from, nonce, None, 10).await;
    // Past TX_REPLACE_AFTER_MS the writer replaces it: another hash, same nonce, in the pool.
    let (_, fee2, tip2) = wait_pooled(&c, from, nonce, Some(first_hash), 10).await;
    assert!(
        fee2 * 100 >= first_fee * 110,
        "max fee {first_fee} -> {fee2}: under +10 %"
    );
    assert!(
        tip2 * 100 >= first_tip * 110,
        "priority {first_tip} -> {tip2}: under +10 %"
    );
    assert!(!task.is_finished(), "reported before anything was mined");

    p.evm_mine(None).await.expect("mine");
    let out = task.await.expect("join").expect("submit");
    let SubmitOutcome::Anchored { tx_hash, .. } = out else {
        panic!("expected Anchored, got {out:?}")
    };
    assert_ne!(
        tx_hash, first_hash,
        "the original cannot be mined: it was replaced"
    );
    let tx = p
        .get_transaction_by_hash(tx_hash)
        .await
        .expect("tx")
        .expect("known");
    assert_eq!(tx_nonce(&tx), nonce, "same nonce");
    assert_eq!(tx.from(), from);
    assert!(max_fee(&tx) >= fee2 && max_fee(&tx) <= ceiling, "{tx:?}");
    assert!(p
        .get_transaction_receipt(first_hash)
        .await
        .expect("receipt")
        .is_none());
    // Exactly one transaction for the batch, and it is the anchoring one.
    assert_eq!(
        p.get_transaction_count(from).await.expect("nonce"),
        nonce + 1
    );
    let a = c.anchored(market, 1).await.expect("anchored");
    assert_eq!(a.batches.len(), 1);
    assert_eq!(a.batches[0].tx_hash, Some(tx_hash));
    let n = c.writer_counters();
    assert!(n.replaced >= 1 && n.max_fee_signed <= ceiling, "{n:?}");
    eprintln!("stuck: first max fee {first_fee} wei, mined with {} wei after {} replacements; counters {n:?}", max_fee(&tx), n.replaced);
    p.anvil_set_auto_mine(true).await.expect("automine on");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_fee_ceiling_it_keeps_waiting_and_never_signs_higher() {
    let Some((env, market, from, nonce)) =
        released("at_the_fee_ceiling_it_keeps_waiting_and_never_signs_higher").await
    else {
        return;
    };
    // anvil's first estimate is 2 × base fee (1 gwei) + 1 wei; leave room for one or two bumps.
    let ceiling = 5 * GWEI / 2;
    let c = writer(&env, |cfg| {
        cfg.replace_after = Duration::from_millis(200);
        cfg.max_fee_ceiling = ceiling;
        cfg.receipt_timeout = Duration::from_secs(3);
    })
    .await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");
    let (projects, cids) = batch();
    let err = c
        .submit_batch(market, 1, "batch-ceiling", &projects, &cids, root(2))
        .await
        .expect_err("nothing mines: no receipt");
    assert!(matches!(err, ChainError::ReceiptTimeout(_)), "{err:?}");
    assert!(err.is_retryable());
    let n = c.writer_counters();
    assert!(n.at_ceiling >= 2, "kept waiting at the ceiling: {n:?}");
    assert!(
        n.max_fee_signed <= ceiling,
        "signed above the ceiling: {n:?}"
    );
    let (pool_hash, pool_fee, _) = pooled(&c, from, nonce).await.expect("still pooled");
    assert!(
        pool_fee <= ceiling && pool_fee * 100 >= ceiling * 90,
        "{pool_fee} vs {ceiling}"
    );
    eprintln!("ceiling {ceiling}: pooled max fee {pool_fee}; counters {n:?}");

    // It lands; the retry of the same write finds it and sends nothing new.
    p.evm_mine(None).await.expect("mine");
    let out = c
        .submit_batch(market, 1, "batch-ceiling", &projects, &cids, root(2))
        .await
        .expect("retry");
    assert!(
        matches!(out, SubmitOutcome::AlreadyAnchored { tx_hash: Some(h), .. } if h == pool_hash),
        "{out:?}"
    );
    assert_eq!(
        p.get_transaction_count(from).await.expect("nonce"),
        nonce + 1
    );
    p.anvil_set_auto_mine(true).await.expect("automine on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_resumes_and_replaces_its_own_stuck_transaction() {
    let Some((env, market, from, nonce)) =
        released("a_retry_resumes_and_replaces_its_own_stuck_transaction").await
    else {
        return;
    };
    let c = writer(&env, |cfg| {
        cfg.replace_after = Duration::from_secs(60);
        cfg.receipt_timeout = Duration::from_millis(600);
        cfg.pending_timeout = Duration::from_secs(2);
    })
    .await;
    let p = c.provider().clone();
    p.anvil_set_auto_mine(false).await.expect("automine off");
    let (projects, cids) = batch();
    let err = c
        .submit_batch(market, 1, "batch-resume", &projects, &cids, root(3))
        .await
        .expect_err("no receipt");
    let ChainError::ReceiptTimeout(first) = err else {
        panic!("{err:?}")
    };
    // Without resuming, the retry would only wait for this pending transaction (and time out
    // with PendingTimeout). It replaces it at once instead.
    let task = {
        let c = c.clone();
        tokio::spawn(async move {
            c.submit_batch(market, 1, "batch-resume", &projects, &cids, root(3))
                .await
        })
    };
    let (replaced, _, _) = wait_pooled(&c, from, nonce, Some(first), 5).await;
    p.evm_mine(None).await.expect("mine");
    let out = task.await.expect("join").expect("retry");
    assert!(
        matches!(out, SubmitOutcome::Anchored { tx_hash, .. } if tx_hash == replaced),
        "{out:?}"
    );
    assert_eq!(
        p.get_transaction_count(from).await.expect("nonce"),
        nonce + 1
    );
    p.anvil_set_auto_mine(true).await.expect("automine on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_fee_above_the_ceiling_is_refused_and_reported_not_overpaid() {
    let Some((env, market, from, nonce)) =
        released("a_base_fee_above_the_ceiling_is_refused_and_reported_not_overpaid").await
    else {
        return;
    };
    let ceiling = 5 * GWEI;
    let c = writer(&env, |cfg| {
        cfg.replace_after = Duration::from_millis(150);
        cfg.max_fee_ceiling = ceiling;
        cfg.receipt_timeout = Duration::from_secs(2);
    })
    .await;
    let p = c.provider().clone();
    p.anvil_set_next_block_base_fee_per_gas(20 * GWEI)
        .await
        .expect("base fee");
    let (projects, cids) = batch();
    let err = c
        .submit_batch(market, 1, "batch-basefee", &projects, &cids, root(4))
        .await
        .expect_err("the base fee is above the ceiling");
    assert!(
        matches!(
            err,
            ChainError::FeeTooLow {
                kind: FeeRejection::BelowBaseFee,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let n = c.writer_counters();
    assert!(
        n.fee_refused >= 2 && n.sent == 0 && n.max_fee_signed <= ceiling,
        "{n:?}"
    );
    assert_eq!(p.get_transaction_count(from).await.expect("nonce"), nonce);
    eprintln!("base fee 20 gwei, ceiling {ceiling}: {err}; counters {n:?}");

    // With room under a higher ceiling the same batch goes through, priced over the base fee.
    let c2 = writer(&env, |cfg| {
        cfg.replace_after = Duration::from_millis(150);
        cfg.max_fee_ceiling = 100 * GWEI;
    })
    .await;
    let out = c2
        .submit_batch(market, 1, "batch-basefee", &projects, &cids, root(4))
        .await
        .expect("submit");
    let SubmitOutcome::Anchored { tx_hash, .. } = out else {
        panic!("{out:?}")
    };
    let tx = p
        .get_transaction_by_hash(tx_hash)
        .await
        .expect("tx")
        .expect("known");
    assert!(
        max_fee(&tx) >= 20 * GWEI && max_fee(&tx) <= 100 * GWEI,
        "{tx:?}"
    );
    eprintln!(
        "then mined with max fee {} wei; counters {:?}",
        max_fee(&tx),
        c2.writer_counters()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_before_the_confirmations_means_not_anchored_and_it_is_sent_again_once() {
    let Some((env, market, from, nonce)) =
        released("a_reorg_before_the_confirmations_means_not_anchored_and_it_is_sent_again_once")
            .await
    else {
        return;
    };
    let c = writer(&env, |cfg| cfg.chain_confirmations = 3).await;
    let p = c.provider().clone();
    let snapshot = p.anvil_snapshot().await.expect("evm_snapshot");
    let (projects, cids) = batch();
    let task = {
        let c = c.clone();
        tokio::spawn(async move {
            c.submit_batch(market, 1, "batch-reorg", &projects, &cids, root(5))
                .await
        })
    };
    until("first transaction mined", 10, || async {
        p.get_transaction_count(from).await.expect("nonce") == nonce + 1
    })
    .await;
    let first_block = p.get_block_number().await.expect("head");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "reported at depth 1 of 3");
    // The block with the batch leaves the chain.
    assert!(p.anvil_revert(snapshot).await.expect("evm_revert"));
    assert_eq!(
        c.anchored(market, 1).await.expect("anchored").batches.len(),
        0
    );
    // Blocks keep coming; the writer must find its receipt gone, send again, and confirm.
    let miner = {
        let p = p.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                if p.anvil_mine(Some(1), None).await.is_err() {
                    return;
                }
            }
        })
    };
    let out = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("writer finished")
        .expect("join")
        .expect("submit");
    miner.abort();
    let (tx_hash, block) = match out {
        SubmitOutcome::Anchored { tx_hash, block, .. } => (tx_hash, block),
        SubmitOutcome::AlreadyAnchored { tx_hash, block, .. } => {
            (tx_hash.expect("log found"), block)
        }
    };
    let n = c.writer_counters();
    assert!(n.reorged >= 1, "reorg not noticed: {n:?}");
    // Exactly one batch on the canonical chain, at least 3 deep, in the block its receipt says.
    let a = c.anchored(market, 1).await.expect("anchored");
    assert_eq!(a.batches.len(), 1);
    assert_eq!(a.batches[0].tx_hash, Some(tx_hash));
    let receipt = p
        .get_transaction_receipt(tx_hash)
        .await
        .expect("receipt")
        .expect("mined");
    assert_eq!(receipt.block_number, Some(block));
    assert_eq!(c.block_hash(block).await.expect("hash"), receipt.block_hash);
    assert!(p.get_block_number().await.expect("head") >= block + 2);
    assert_eq!(
        p.get_transaction_count(from).await.expect("nonce"),
        nonce + 1
    );
    eprintln!("reorg: first mined at {first_block}, anchored again at {block}; counters {n:?}");
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRETS: [&str; 3] = ["PATHKEY123", "QUERYKEY456", "PASSWORD789"];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows {s}: {text}");
    }
}

fn error_text(e: &ChainError) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(&format!(" | {s} | {s:?}"));
        cur = s.source();
    }
    out
}

// Single-threaded so the thread-local log subscriber sees every line the client writes.
#[tokio::test(flavor = "current_thread")]
async fn the_rpc_url_key_shows_in_no_debug_error_or_log_line() {
    let Some(bin) = anvil_bin("the_rpc_url_key_shows_in_no_debug_error_or_log_line") else {
        return;
    };
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let anvil = spawn_anvil(&bin, None);
    let port = anvil.port();
    // anvil serves JSON-RPC on `/` whatever the query and userinfo, and 404 on other paths.
    let url = format!(
        "http://user:{}@127.0.0.1:{port}/?apikey={}",
        SECRETS[2], SECRETS[1]
    );
    let mut cfg = test_config(&url, Some(key_hex(&anvil, 0)));
    cfg.max_retries = 2;
    cfg.backoff_initial = Duration::from_millis(20);
    assert_clean("config Debug", &format!("{cfg:?}"));
    let c = ChainClient::connect(cfg.clone()).await.expect("connect");
    assert_clean("client Debug", &format!("{c:?}"));
    assert_eq!(c.rpc_url_redacted(), format!("http://127.0.0.1:{port}"));
    c.head().await.expect("head");

    // A key in the path and the query: the node answers 404, an HTTP error.
    let mut with_path = cfg.clone();
    with_path.rpc_url = format!(
        "http://127.0.0.1:{port}/v3/{}?apikey={}",
        SECRETS[0], SECRETS[1]
    );
    assert_clean("config Debug", &format!("{with_path:?}"));
    let err = ChainClient::connect(with_path)
        .await
        .expect_err("404 on that path");
    assert!(matches!(err, ChainError::Rpc(_)), "{err:?}");
    assert_clean("http error", &error_text(&err));

    // The node goes away: transport errors (reqwest's embed the request URL) after retries
    // that are logged.
    drop(anvil);
    let err = c.head().await.expect_err("node is down");
    assert!(err.is_retryable(), "{err:?}");
    let shown = error_text(&err);
    assert_clean("transport error", &shown);
    assert!(
        shown.contains(&format!("127.0.0.1:{port}")),
        "still says which node: {shown}"
    );
    let err = c
        .submit_batch(
            Address::ZERO,
            1,
            "b",
            &strings(&["p"]),
            &strings(&[CID_A]),
            B256::ZERO,
        )
        .await
        .expect_err("node is down");
    assert_clean("write error", &error_text(&err));
    let err = ChainClient::connect(cfg).await.expect_err("node is down");
    assert_clean("connect error", &error_text(&err));
    eprintln!("transport error as shown: {shown}");

    let lines = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf8");
    assert!(
        lines.contains("transient rpc error; retrying"),
        "retries were logged: {lines}"
    );
    assert_clean("log lines", &lines);
}
