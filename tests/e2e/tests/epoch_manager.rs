//! The epoch manager handler (`sequencer_handlers::epoch_manager`) over the chain adapter against
//! real anvil nodes: 100 epochs without drift on one chain and on two (source and protocol chains
//! with different block times); two managers at once; the RPC unreachable for a while; a
//! source-chain reorg inside the finality offset and a head that goes back further; both
//! catch-up policies; bad input; the day rolling over once across a restart and two racing
//! managers, as the managers report it. Every test checks on chain that each epoch was released
//! exactly once, contiguous, and never before `end + finality_offset`. (The
//! SIGKILL-between-send-and-receipt drill runs `seqctl` as a child process:
//! `seqctl/tests/release_epochs_kill.rs`; the same rules on the in-memory chain, in milliseconds:
//! `handlers/tests/epoch_manager.rs`.)

// The chain crate's anvil helpers (spawn, deploy, keys), shared rather than copied.
#[path = "../../../chain/tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::{keccak256, Address, B256, U256},
    providers::{ext::AnvilApi, Provider},
    sol_types::SolEvent,
};
use common::*;
use sequencer_chain::{
    bindings::ProtocolState, deploy::DeployPlan, ChainClient, ChainError, EpochRelease, Revert,
    Windows,
};
use sequencer_core::epochs::CatchUp;
use sequencer_handlers::epoch_manager::{
    EpochManager, EpochManagerConfig, EpochManagerError, Released,
};
use sequencer_ports::ChainPort;

const WINDOWS: Windows = Windows {
    snapshot_blocks: 20,
    batch_blocks: 60,
};

fn anvil_with(bin: &std::path::PathBuf, args: &[&str]) -> AnvilInstance {
    Anvil::new()
        .path(bin)
        .args(args.iter().copied())
        .try_spawn()
        .expect("spawn anvil")
}

async fn deploy_market(anvil: &AnvilInstance, epoch_size: u64) -> (ChainClient, Address) {
    let plan = DeployPlan {
        slots: 1,
        epoch_size,
        windows: WINDOWS,
        ..DeployPlan::default()
    };
    let (client, d) = deploy(anvil, &plan).await;
    (client, d.data_market)
}

/// The chain adapter as the handler takes it.
fn port(c: &ChainClient) -> Arc<dyn ChainPort> {
    Arc::new(c.clone())
}

async fn reader(endpoint: &str) -> ChainClient {
    ChainClient::connect(test_config(endpoint, None))
        .await
        .expect("connect source")
}

fn cfg(market: Address, offset: u64, first_begin: u64) -> EpochManagerConfig {
    EpochManagerConfig {
        finality_offset: offset,
        poll_interval: Duration::from_millis(20),
        first_begin: Some(first_begin),
        catch_up: CatchUp::InOrder { max_per_sec: 50 },
        release_timeout: Duration::from_secs(20),
        ..EpochManagerConfig::new(market)
    }
}

async fn events(c: &ChainClient, market: Address) -> Vec<EpochRelease> {
    let head = c.head().await.expect("head");
    c.epoch_releases(market, 0, head).await.expect("releases")
}

/// Ids 1..=n, each once, ranges contiguous on the grid from `first_begin`.
fn assert_contiguous(ev: &[EpochRelease], size: u64, first_begin: u64) {
    for (k, e) in ev.iter().enumerate() {
        let k = k as u64;
        assert_eq!(e.epoch_id, k + 1, "epoch ids: {ev:#?}");
        assert_eq!(
            e.begin,
            first_begin + k * size,
            "epoch {} begin",
            e.epoch_id
        );
        assert_eq!(e.end, e.begin + size - 1, "epoch {} end", e.epoch_id);
    }
}

fn assert_never_early(released: &[Released], offset: u64) {
    for r in released {
        assert_eq!(r.due_at, r.range.end + offset);
        assert!(
            r.source_head_at_send >= r.due_at,
            "epoch {} sent at source head {} before {}",
            r.epoch_id,
            r.source_head_at_send,
            r.due_at
        );
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Lag bounded and not growing: the median of the last 30 releases is at most the median of
/// the first 30 plus `slack` blocks, and no release lags more than `max` blocks.
fn assert_lag_bounded(released: &[Released], max: u64, slack: u64) {
    let lags: Vec<u64> = released.iter().map(|r| r.lag.blocks).collect();
    let first = median(lags[..30].to_vec());
    let last = median(lags[lags.len() - 30..].to_vec());
    let worst = lags.iter().copied().max().unwrap_or(0);
    eprintln!(
        "lag blocks: first-30 median {first}, last-30 median {last}, max {worst}; ms: median {}",
        median(released.iter().map(|r| r.lag.ms).collect())
    );
    assert!(
        last <= first + slack,
        "lag grew: {first} -> {last} ({lags:?})"
    );
    assert!(worst <= max, "lag {worst} > {max} blocks ({lags:?})");
}

async fn run_until_released(m: &mut EpochManager, n: usize, limit: Duration) -> Vec<Released> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            start.elapsed() < limit,
            "only {} of {n} released in {limit:?}",
            out.len()
        );
        match m.step_at_most((n - out.len()) as u64).await {
            Ok(r) => out.extend(r.released),
            Err(e) => panic!("step: {e}"),
        }
        tokio::time::sleep(m.config().poll_interval).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_epochs_without_drift_on_one_chain() {
    let Some(bin) = anvil_bin("hundred_epochs_without_drift_on_one_chain") else {
        return;
    };
    let anvil = anvil_with(&bin, &["--block-time", "0.1"]);
    let (client, market) = deploy_market(&anvil, 3).await;
    let first = client.head().await.expect("head") + 1;
    let offset = 2;
    let mut m = EpochManager::new(port(&client), None, cfg(market, offset, first))
        .await
        .expect("manager");
    let released = run_until_released(&mut m, 100, Duration::from_secs(90)).await;

    let ev = events(&client, market).await;
    assert_eq!(ev.len(), 100);
    assert_contiguous(&ev, 3, first);
    assert_never_early(&released, offset);
    for (r, e) in released.iter().zip(&ev) {
        assert_eq!(
            (r.epoch_id, r.block, r.tx_hash),
            (e.epoch_id, e.block_number, Some(e.tx_hash))
        );
        // One chain: the release block itself comes after the due block.
        assert!(
            e.block_number > r.due_at,
            "epoch {} released in block {} <= due {}",
            e.epoch_id,
            e.block_number,
            r.due_at
        );
    }
    assert_lag_bounded(&released, 8, 2);
    let s = m.stats();
    assert_eq!((s.released, s.skipped, s.raced), (100, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_epochs_without_drift_on_two_chains() {
    let Some(bin) = anvil_bin("hundred_epochs_without_drift_on_two_chains") else {
        return;
    };
    // Source: 100 ms blocks; protocol chain: 150 ms blocks.
    let source_node = anvil_with(&bin, &["--block-time", "0.1"]);
    let protocol_node = anvil_with(&bin, &["--block-time", "0.15"]);
    let (client, market) = deploy_market(&protocol_node, 3).await;
    let source = reader(&source_node.endpoint()).await;
    let first = source.head().await.expect("head") + 1;
    let offset = 2;
    let mut m = EpochManager::new(
        port(&client),
        Some(port(&source)),
        cfg(market, offset, first),
    )
    .await
    .expect("manager");
    let released = run_until_released(&mut m, 100, Duration::from_secs(90)).await;

    let ev = events(&client, market).await;
    assert_eq!(ev.len(), 100);
    assert_contiguous(&ev, 3, first);
    assert_never_early(&released, offset);
    // The grid follows the source chain, not the protocol chain: the last epoch ends near the
    // source head, far from the protocol chain's.
    let source_head = source.head().await.expect("head");
    let last = ev.last().expect("last").end;
    assert!(
        last + offset <= source_head && source_head < last + offset + 3 + 10,
        "last end {last}, source head {source_head}"
    );
    assert_lag_bounded(&released, 10, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_managers_at_once_release_each_epoch_once() {
    let Some(bin) = anvil_bin("two_managers_at_once_release_each_epoch_once") else {
        return;
    };
    let anvil = anvil_with(&bin, &["--block-time", "0.1"]);
    let (client, market) = deploy_market(&anvil, 2).await;
    let mut cfg1 = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 1)));
    cfg1.protocol_state = client.protocol_state();
    let other = ChainClient::connect(cfg1).await.expect("connect");
    client
        .set_epoch_manager(market, other.signer_address().expect("signer"), true)
        .await
        .expect("grant");
    let first = client.head().await.expect("head") + 1;
    let offset = 1;
    let mut a = EpochManager::new(port(&client), None, cfg(market, offset, first))
        .await
        .expect("a");
    let mut b = EpochManager::new(port(&other), None, cfg(market, offset, first))
        .await
        .expect("b");
    let deadline = Instant::now() + Duration::from_secs(8);
    let (sa, sb) = tokio::join!(
        a.run_until(Some(deadline), std::future::pending()),
        b.run_until(Some(deadline), std::future::pending())
    );
    let (sa, sb) = (sa.expect("a"), sb.expect("b"));
    let ev = events(&client, market).await;
    eprintln!("a: {sa:?}\nb: {sb:?}\n{} epochs", ev.len());
    assert!(ev.len() >= 10, "{} epochs in 8 s", ev.len());
    assert_contiguous(&ev, 2, first);
    assert_eq!(
        sa.released + sb.released,
        ev.len() as u64,
        "each epoch counted once"
    );
    for e in &ev {
        assert!(
            e.block_number > e.end + offset,
            "epoch {} early",
            e.epoch_id
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_manager_sends_nothing_while_the_primary_is_healthy() {
    let Some(bin) = anvil_bin("standby_manager_sends_nothing_while_the_primary_is_healthy") else {
        return;
    };
    let anvil = anvil_with(&bin, &["--block-time", "0.1"]);
    let (client, market) = deploy_market(&anvil, 2).await;
    let mut cfg1 = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 1)));
    cfg1.protocol_state = client.protocol_state();
    let other = ChainClient::connect(cfg1).await.expect("connect");
    let standby_key = other.signer_address().expect("signer");
    client
        .set_epoch_manager(market, standby_key, true)
        .await
        .expect("grant");
    let first = client.head().await.expect("head") + 1;
    let offset = 1;
    let mut primary = EpochManager::new(port(&client), None, cfg(market, offset, first))
        .await
        .expect("primary");
    let mut scfg = cfg(market, offset, first);
    scfg.send_delay = Duration::from_millis(500);
    let mut standby = EpochManager::new(port(&other), None, scfg)
        .await
        .expect("standby");
    let nonce = other
        .provider()
        .get_transaction_count(standby_key)
        .await
        .expect("nonce");
    let deadline = Instant::now() + Duration::from_secs(4);
    let (sp, ss) = tokio::join!(
        primary.run_until(Some(deadline), std::future::pending()),
        standby.run_until(Some(deadline), std::future::pending())
    );
    let (sp, ss) = (sp.expect("primary"), ss.expect("standby"));
    assert!(sp.released >= 8, "{sp:?}");
    assert_eq!((ss.released, ss.raced), (0, 0), "{ss:?}");
    assert_eq!(
        other
            .provider()
            .get_transaction_count(standby_key)
            .await
            .expect("nonce"),
        nonce,
        "the standby sent nothing"
    );
    // The primary is gone: the standby takes over, half a second late per epoch.
    let ss = standby
        .run_until(
            Some(Instant::now() + Duration::from_secs(3)),
            std::future::pending(),
        )
        .await
        .expect("standby alone");
    assert!(ss.released >= 3, "{ss:?}");
    let ev = events(&client, market).await;
    assert_contiguous(&ev, 2, first);
    assert_eq!(sp.released + ss.released, ev.len() as u64);
}

/// A TCP proxy in front of a node that can be cut (existing connections dropped, new ones
/// refused) and restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, cs) = (cut.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                cs.lock().expect("lock").push(h.abort_handle());
            }
        });
        Self {
            port,
            cut,
            conns,
            task,
        }
    }

    fn set_cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
        if on {
            for h in self.conns.lock().expect("lock").drain(..) {
                h.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_unreachable_for_a_while() {
    let Some(bin) = anvil_bin("rpc_unreachable_for_a_while") else {
        return;
    };
    let anvil = anvil_with(&bin, &["--block-time", "0.1"]);
    let (client, market) = deploy_market(&anvil, 2).await;
    let proxy = Proxy::start(anvil.port()).await;
    let mut pcfg = test_config(
        &format!("http://127.0.0.1:{}", proxy.port),
        Some(key_hex(&anvil, 0)),
    );
    pcfg.protocol_state = client.protocol_state();
    pcfg.max_retries = 3;
    pcfg.backoff_max = Duration::from_millis(300);
    let via_proxy = ChainClient::connect(pcfg).await.expect("connect via proxy");
    let first = client.head().await.expect("head") + 1;
    let offset = 1;
    let mut m = EpochManager::new(port(&via_proxy), None, cfg(market, offset, first))
        .await
        .expect("manager");
    let run = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(9);
        let s = m.run_until(Some(deadline), std::future::pending()).await;
        (m, s)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = events(&client, market).await.len();
    proxy.set_cut(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = events(&client, market).await.len();
    proxy.set_cut(false);
    let (m, stats) = run.await.expect("join");
    let stats = stats.expect("run_until survives the outage");
    let ev = events(&client, market).await;
    eprintln!(
        "before cut {before}, after cut {during}, end {}: {stats:?}",
        ev.len()
    );
    assert!(before >= 3, "{before} released before the cut");
    assert!(
        during <= before + 1,
        "released while cut: {before} -> {during}"
    );
    assert!(stats.errors >= 1, "the outage was noticed: {stats:?}");
    assert_contiguous(&ev, 2, first);
    // A release whose connection was cut after sending is settled from the contract at the
    // next poll (counted as ours, never resent).
    assert_eq!(stats.released + stats.raced, ev.len() as u64, "{stats:?}");
    assert_eq!(stats.raced, 0);
    // Caught up after the outage: everything due at the end of the run is released.
    let head = client.head().await.expect("head");
    let next_due = ev.last().expect("last").end + 2 + offset;
    assert!(
        head < next_due + 2 * 5 + 4,
        "backlog left: head {head}, next due {next_due}"
    );
    for e in &ev {
        assert!(e.block_number > e.end + offset);
    }
    drop(m);
}

#[tokio::test(flavor = "multi_thread")]
async fn source_reorg_inside_the_finality_offset() {
    let Some(bin) = anvil_bin("source_reorg_inside_the_finality_offset") else {
        return;
    };
    let protocol_node = anvil_with(&bin, &[]);
    let source_node = anvil_with(&bin, &["--no-mining"]);
    let (client, market) = deploy_market(&protocol_node, 2).await;
    let source = reader(&source_node.endpoint()).await;
    let sp = source.provider().clone();
    let offset = 3;
    let mut m = EpochManager::new(port(&client), Some(port(&source)), cfg(market, offset, 1))
        .await
        .expect("manager");
    let from = client.signer_address().expect("signer");
    let prov = client.provider().clone();
    let nonce = || {
        let prov = prov.clone();
        async move { prov.get_transaction_count(from).await.expect("nonce") }
    };

    sp.anvil_mine(Some(4), None).await.expect("mine");
    let deep = sp.anvil_snapshot().await.expect("snapshot");
    sp.anvil_mine(Some(6), None).await.expect("mine"); // head 10
    let r = m.step().await.expect("step");
    let got: Vec<u64> = r.released.iter().map(|x| x.range.end).collect();
    assert_eq!(got, [2, 4, 6], "due at 5, 7, 9 <= 10");

    // Blocks 11, 12 come and are reorged away; [7, 8] (due at 11) is released on them, but its
    // own blocks are 3 deep then and survive the 2-block reorg.
    let shallow = sp.anvil_snapshot().await.expect("snapshot");
    sp.anvil_mine(Some(2), None).await.expect("mine"); // head 12
    let r = m.step().await.expect("step");
    assert_eq!(
        r.released.iter().map(|x| x.range.end).collect::<Vec<_>>(),
        [8]
    );
    assert!(sp.anvil_revert(shallow).await.expect("revert"));
    assert_eq!(source.head().await.expect("head"), 10);
    let n0 = nonce().await;
    let r = m
        .step()
        .await
        .expect("a reorg within the offset is no error");
    assert!(r.released.is_empty());
    sp.anvil_mine(Some(2), None).await.expect("mine"); // head 12, [9, 10] due at 13
    assert!(m.step().await.expect("step").released.is_empty());
    assert_eq!(
        nonce().await,
        n0,
        "nothing sent before the new chain reached the due block"
    );
    sp.anvil_mine(Some(1), None).await.expect("mine"); // head 13
    let r = m.step().await.expect("step");
    assert_eq!(
        r.released
            .iter()
            .map(|x| (x.range.end, x.source_head_at_send))
            .collect::<Vec<_>>(),
        [(10, 13)]
    );

    // A drop deeper than the offset (13 -> 4): a lying or broken source; error, nothing sent.
    assert!(sp.anvil_revert(deep).await.expect("revert"));
    let n1 = nonce().await;
    let err = m.step().await.expect_err("deep drop");
    assert!(
        matches!(
            err,
            EpochManagerError::SourceHeadBackwards {
                seen: 13,
                now: 4,
                tolerance: 3
            }
        ),
        "{err}"
    );
    assert!(!err.is_fatal());
    assert_eq!(nonce().await, n1);

    let ev = events(&client, market).await;
    assert_contiguous(&ev, 2, 1);
    assert_eq!(ev.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_in_order_and_by_skip() {
    let Some(bin) = anvil_bin("catch_up_in_order_and_by_skip") else {
        return;
    };
    let anvil = anvil_with(&bin, &[]);
    let (client, market) = deploy_market(&anvil, 2).await;
    let p = client.provider().clone();
    let first = client.head().await.expect("head") + 1;
    let offset = 1;

    // In order: the manager was down for 20 epochs; all are released, oldest first, paced.
    let mut c = cfg(market, offset, first);
    c.catch_up = CatchUp::InOrder { max_per_sec: 40 };
    let mut m = EpochManager::new(port(&client), None, c.clone())
        .await
        .expect("manager");
    p.anvil_mine(Some(40 + offset), None).await.expect("mine");
    let t = Instant::now();
    let r = m.step().await.expect("step");
    let took = t.elapsed();
    assert_eq!(r.released.len(), 20, "{r:?}");
    assert!(
        took >= Duration::from_millis(19 * 1000 / 40),
        "rate bound: 20 releases in {took:?}"
    );
    assert_contiguous(&events(&client, market).await, 2, first);

    // Skip: down again for 25 epochs; one skip on chain, then the newest epoch.
    c.catch_up = CatchUp::SkipToHead { max_backlog: 1 };
    let mut m = EpochManager::new(port(&client), None, c)
        .await
        .expect("manager");
    let next_begin = first + 40;
    let head = client.head().await.expect("head");
    p.anvil_mine(Some(50 + next_begin - head), None)
        .await
        .expect("mine");
    let r = m.step().await.expect("step");
    let [skip] = r.skipped[..] else {
        panic!("one skip: {r:?}")
    };
    assert_eq!(skip.from_begin, next_begin);
    assert_eq!((skip.to_begin - skip.from_begin) % 2, 0);
    assert!(skip.epochs >= 24, "{skip:?}");
    assert_eq!(r.released.len(), 1);
    assert_eq!(r.released[0].range.begin, skip.to_begin);
    assert_eq!(m.stats().skipped, skip.epochs);
    let ev = events(&client, market).await;
    assert_eq!(ev.len(), 21);
    assert_eq!(ev[20].begin, skip.to_begin);
    // The skip is recorded with its own event.
    let filter = alloy::rpc::types::Filter::new()
        .address(client.protocol_state())
        .event_signature(ProtocolState::EpochsSkipped::SIGNATURE_HASH)
        .from_block(0);
    let logs = p.get_logs(&filter).await.expect("logs");
    assert_eq!(logs.len(), 1);
    let e = logs[0]
        .log_decode::<ProtocolState::EpochsSkipped>()
        .expect("decode");
    assert_eq!(
        (
            e.inner.data.dataMarketAddress,
            e.inner.data.fromBegin,
            e.inner.data.toBegin
        ),
        (
            market,
            U256::from(skip.from_begin),
            U256::from(skip.to_begin)
        )
    );

    // skipEpochs: owner or epoch manager only, whole epochs only.
    let stranger = {
        let mut c3 = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 3)));
        c3.protocol_state = client.protocol_state();
        ChainClient::connect(c3).await.expect("connect")
    };
    let next = client
        .market_info(market)
        .await
        .expect("info")
        .last_epoch_end
        + 1;
    let who = stranger.signer_address().expect("signer");
    assert!(
        matches!(stranger.skip_epochs(market, next + 2).await, Err(ChainError::Revert(Revert::NotEpochManager(a))) if a == who)
    );
    assert!(matches!(
        client.skip_epochs(market, next + 3).await,
        Err(ChainError::Revert(Revert::InvalidSkip { .. }))
    ));
    assert!(matches!(
        client.skip_epochs(market, next).await,
        Err(ChainError::Revert(Revert::InvalidSkip { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_typed_error_and_no_transaction() {
    let Some(bin) = anvil_bin("bad_input_gets_a_typed_error_and_no_transaction") else {
        return;
    };
    let anvil = anvil_with(&bin, &[]);
    let (client, market) = deploy_market(&anvil, 2).await;
    let from = client.signer_address().expect("signer");
    let nonce_start = client
        .provider()
        .get_transaction_count(from)
        .await
        .expect("nonce");

    let wrong = Address::repeat_byte(0x42);
    let e = EpochManager::new(port(&client), None, cfg(wrong, 1, 1))
        .await
        .expect_err("wrong market");
    assert!(
        matches!(e, EpochManagerError::UnknownMarket(m) if m == wrong),
        "{e}"
    );
    assert!(e.is_fatal());

    let mut c3 = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 3)));
    c3.protocol_state = client.protocol_state();
    let stranger = ChainClient::connect(c3).await.expect("connect");
    let e = EpochManager::new(port(&stranger), None, cfg(market, 1, 1))
        .await
        .expect_err("no role");
    assert!(
        matches!(e, EpochManagerError::NotEpochManager { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("is not an epoch manager"), "{e}");

    let mut ro = test_config(&anvil.endpoint(), None);
    ro.protocol_state = client.protocol_state();
    let ro = ChainClient::connect(ro).await.expect("connect");
    let e = EpochManager::new(port(&ro), None, cfg(market, 1, 1))
        .await
        .expect_err("no signer");
    assert!(matches!(e, EpochManagerError::NoSigner), "{e}");

    assert_eq!(
        client
            .provider()
            .get_transaction_count(from)
            .await
            .expect("nonce"),
        nonce_start,
        "nothing sent for a wrong market, a key without the role, no signer"
    );
    // Role revoked after start: refused at estimation, typed, nothing sent.
    let mut c2 = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 2)));
    c2.protocol_state = client.protocol_state();
    let revoked = ChainClient::connect(c2).await.expect("connect");
    let who = revoked.signer_address().expect("signer");
    client
        .set_epoch_manager(market, who, true)
        .await
        .expect("grant");
    let mut m2 = EpochManager::new(port(&revoked), None, cfg(market, 1, 1))
        .await
        .expect("manager with the role");
    client
        .set_epoch_manager(market, who, false)
        .await
        .expect("revoke");
    client
        .provider()
        .anvil_mine(Some(5), None)
        .await
        .expect("mine");
    let e = m2.step().await.expect_err("role revoked");
    assert!(
        matches!(e, EpochManagerError::NotEpochManager { who: w, .. } if w == who),
        "{e}"
    );
    assert!(e.is_fatal());
    assert_eq!(
        revoked
            .provider()
            .get_transaction_count(who)
            .await
            .expect("nonce"),
        0
    );
    let nonce0 = client
        .provider()
        .get_transaction_count(from)
        .await
        .expect("nonce");

    let mut m = EpochManager::new(port(&client), None, cfg(market, 1, 1))
        .await
        .expect("manager");
    client
        .provider()
        .anvil_mine(Some(5), None)
        .await
        .expect("mine");
    // epochSize 0 (impossible through registerDataMarket; a foreign contract could say so):
    // write it into storage. markets is slot 1; Market.epochSize is the uint8 right after the
    // `registered` flag in the struct's first word (byte 1 from the low end).
    let base = keccak256([market.into_word().0, B256::from(U256::from(1)).0].concat());
    let slot = U256::from_be_bytes(base.0);
    let nonce1 = client
        .provider()
        .get_transaction_count(from)
        .await
        .expect("nonce");
    let word: U256 = client
        .provider()
        .get_storage_at(client.protocol_state(), slot)
        .await
        .expect("storage");
    assert_eq!(
        (word >> 8usize) & U256::from(0xffu64),
        U256::from(2u64),
        "epochSize where expected"
    );
    let mask: U256 = U256::from(0xffu64) << 8usize;
    let cleared: U256 = word & !mask;
    client
        .provider()
        .anvil_set_storage_at(client.protocol_state(), slot, B256::from(cleared))
        .await
        .expect("set storage");
    assert_eq!(
        client.market_info(market).await.expect("info").epoch_size,
        0
    );
    let e = m.step().await.expect_err("epoch size 0");
    assert!(
        matches!(e, EpochManagerError::ZeroEpochSize(x) if x == market),
        "{e}"
    );
    assert_eq!(
        client
            .provider()
            .get_transaction_count(from)
            .await
            .expect("nonce"),
        nonce1
    );
    assert_eq!(nonce1, nonce0, "no transaction for any bad input");
}

fn anvil_fast(bin: &std::path::PathBuf) -> AnvilInstance {
    Anvil::new()
        .path(bin)
        .args(["--block-time", "0.1"])
        .try_spawn()
        .expect("spawn anvil")
}

fn manager_cfg(market: Address, first: u64) -> EpochManagerConfig {
    EpochManagerConfig {
        finality_offset: 1,
        poll_interval: Duration::from_millis(20),
        first_begin: Some(first),
        catch_up: CatchUp::InOrder { max_per_sec: 50 },
        release_timeout: Duration::from_secs(20),
        ..EpochManagerConfig::new(market)
    }
}

/// Every epoch's day is (id − 1) / per_day + 1; day d > 1 started once, in the transaction
/// that released its first epoch; `dayCounter` is the last epoch's day.
async fn assert_days(c: &ChainClient, market: Address, per_day: u64) -> u64 {
    let head = c.head().await.expect("head");
    let releases = c.epoch_releases(market, 0, head).await.expect("releases");
    let starts = c.day_starts(market, 0, head).await.expect("day starts");
    let last = releases.last().expect("some epochs").epoch_id;
    let want_days = (last - 1) / per_day + 1;
    assert_eq!(
        starts.iter().map(|s| s.day).collect::<Vec<_>>(),
        (2..=want_days).collect::<Vec<_>>(),
        "each day started once, in order"
    );
    for s in &starts {
        let first = (s.day - 1) * per_day + 1;
        let r = releases
            .iter()
            .find(|r| r.epoch_id == first)
            .expect("first epoch of the day");
        assert_eq!(
            s.tx_hash, r.tx_hash,
            "day {} started by the release of epoch {first}",
            s.day
        );
    }
    for r in &releases {
        assert_eq!(
            c.epoch_day(market, r.epoch_id).await.expect("day"),
            Some((r.epoch_id - 1) / per_day + 1),
            "epoch {}",
            r.epoch_id
        );
    }
    assert_eq!(c.day_counter(market).await.expect("day"), want_days);
    // The node's own view agrees.
    let ps = c.protocol_state();
    assert_eq!(
        exact(c, ps, ProtocolState::dayCounterCall { dataMarket: market }).await,
        U256::from(want_days)
    );
    want_days
}

#[tokio::test(flavor = "multi_thread")]
async fn days_roll_over_once_across_a_restart_and_two_racing_managers() {
    let Some(bin) = anvil_bin("days_roll_over_once_across_a_restart_and_two_racing_managers")
    else {
        return;
    };
    let anvil = anvil_fast(&bin);
    // 3 epochs a day, epochs of 2 blocks.
    let (client, d) = deploy(&anvil, &settings(2, 3, 1)).await;
    let market = d.data_market;
    let first = client.head().await.expect("head") + 1;

    // One manager, then it is gone (a restart: a new manager with nothing in memory).
    let mut a = EpochManager::new(port(&client), None, manager_cfg(market, first))
        .await
        .expect("a");
    let sa = a
        .run_until(
            Some(Instant::now() + Duration::from_secs(3)),
            std::future::pending(),
        )
        .await
        .expect("a");
    drop(a);
    assert!(sa.released >= 4, "{sa:?}");
    let mut restarted = EpochManager::new(port(&client), None, manager_cfg(market, first))
        .await
        .expect("restarted");
    let sr = restarted
        .run_until(
            Some(Instant::now() + Duration::from_secs(3)),
            std::future::pending(),
        )
        .await
        .expect("restarted");
    assert!(sr.released >= 4, "{sr:?}");

    // Two managers with two keys racing on the same market.
    let mut cfg1 = test_config(&anvil.endpoint(), Some(key_hex(&anvil, 1)));
    cfg1.protocol_state = client.protocol_state();
    let other = ChainClient::connect(cfg1).await.expect("connect");
    client
        .set_epoch_manager(market, other.signer_address().expect("signer"), true)
        .await
        .expect("grant");
    let mut x = EpochManager::new(port(&client), None, manager_cfg(market, first))
        .await
        .expect("x");
    let mut y = EpochManager::new(port(&other), None, manager_cfg(market, first))
        .await
        .expect("y");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (sx, sy) = tokio::join!(
        x.run_until(Some(deadline), std::future::pending()),
        y.run_until(Some(deadline), std::future::pending())
    );
    let (sx, sy) = (sx.expect("x"), sy.expect("y"));
    eprintln!("a {sa:?}\nrestarted {sr:?}\nx {sx:?}\ny {sy:?}");
    let days = assert_days(&client, market, 3).await;
    assert!(days >= 5, "several days passed ({days})");
    // The managers report exactly the days their own releases started: together, each day
    // after the first once, and the last day each of them saw is the contract's.
    assert_eq!(
        sa.days_started + sr.days_started + sx.days_started + sy.days_started,
        days - 1,
        "{sa:?} {sr:?} {sx:?} {sy:?}"
    );
    assert!(
        sa.days_started >= 1 && sr.days_started >= 1,
        "{sa:?} {sr:?}"
    );
    let day_now = client.day_counter(market).await.expect("day");
    for s in [&sx, &sy] {
        assert!(
            s.day.is_some_and(|d| d + 1 >= day_now && d <= day_now),
            "{s:?}, day {day_now}"
        );
    }
}
