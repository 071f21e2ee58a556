//! The local runner (`sequencer-local`): the whole sequencer on one machine with embedded
//! defaults — anvil (spawned; installed by `scripts/tools.sh anvil` when missing), ProtocolState
//! deployed with simulated slots, the epoch manager, the libp2p ingress, verify / tick / finalize
//! / anchor on the embedded adapters (SQLite state and queues, a blockstore directory), and the
//! snapshotter simulator over real libp2p. Prints a row per epoch and checks inclusion proofs
//! against the chain. The same handler code runs in Lambda.

#![recursion_limit = "256"]

pub mod args;
pub mod chain;
pub mod content_http;
pub mod metrics;
pub mod output;
pub mod releaser;
pub mod report;
pub mod services;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use sequencer_core::eip712::Domain;
use sequencer_core::B256;
use sequencer_handlers::records::EpochState;
use sequencer_handlers::PipelineConfig;
use sequencer_ingress::host::HostConfig;
use sequencer_ingress::limits::EdgeLimits;
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::{identity, Ingress, Settings};
use sequencer_ports::ChainPort;

pub use args::Args;

/// Runs the sequencer as `args` say; returns the process exit code (0: every check held).
pub async fn run(args: Args) -> Result<i32> {
    run_until(args, tokio_util::sync::CancellationToken::new()).await
}

/// [`run`], also ending (cleanly, exit code as the run had it) when `stop` is cancelled: for
/// callers that drive the runner as a library, e.g. the outside-collector test.
pub async fn run_until(args: Args, stop: tokio_util::sync::CancellationToken) -> Result<i32> {
    let started = Instant::now();
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("wiping {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let _lock = chain::lock_data_dir(&args.data_dir)?;

    // Chain and contract.
    // An outside collector gets slower blocks (a wider window in time) unless told otherwise.
    let block_ms = args
        .block_ms
        .unwrap_or(if args.no_sim { 1000 } else { 250 });
    let anvil = match &args.rpc_url {
        Some(_) => None,
        None => Some(chain::spawn_anvil_kept(block_ms, &args.data_dir).await?),
    };
    let rpc_url = match (&args.rpc_url, &anvil) {
        (Some(u), _) => u.clone(),
        (None, Some(a)) => a.rpc_url.clone(),
        (None, None) => bail!("no chain"),
    };
    let window = args.window.unwrap_or(if args.no_sim {
        sequencer_chain::market::recommended_snapshot_window(block_ms)
    } else {
        16
    });
    let mut plan = chain::plan(args.slots, args.epoch_size, window, args.batch_window)?;
    // The local source chain is the protocol chain: its block time, and short days.
    plan.source_block_time = block_ms.saturating_mul(sequencer_chain::market::TIME_SCALE) / 1000;
    plan.day_size = plan
        .source_block_time
        .saturating_mul(args.epoch_size)
        .saturating_mul(args.epochs_per_day.max(1));
    plan.daily_snapshot_quota = args.daily_quota.max(1);
    if args.no_sim {
        if let Some(w) = sequencer_chain::market::window_warning(window, block_ms) {
            eprintln!("warning: {w}");
        }
    }
    if let Some(m) = args.market {
        plan.market = m;
    } else if args.aws {
        // Shared tables and queues: a market of its own keeps this run's keys apart.
        let mut b = [0u8; 20];
        b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        plan.market = sequencer_core::Address::from(b);
    }
    let (dep, reused) = chain::deploy_or_reuse(&rpc_url, &args.data_dir, &plan).await?;
    if !args.assign.is_empty() {
        let owner = chain::client(&rpc_url, dep.protocol_state, chain::OWNER_KEY).await?;
        owner
            .assign_slots(&args.assign)
            .await
            .context("assigning --assign slots")?;
    }
    progress(
        started,
        &format!(
            "chain {} (id {}): ProtocolState {} {}, market {}, {} slots, epochs of {} blocks, window {} blocks",
            sequencer_chain::redact_url(&rpc_url),
            dep.chain_id,
            dep.protocol_state,
            if reused { "reused" } else { "deployed" },
            dep.data_market,
            dep.slots.len(),
            dep.epoch_size,
            dep.windows.snapshot_blocks
        ),
    );
    let seq_chain =
        Arc::new(chain::client(&rpc_url, dep.protocol_state, chain::SEQUENCER_KEY).await?);

    // Pipeline on embedded adapters.
    let mut config = PipelineConfig::new(dep.data_market, dep.protocol_state, dep.chain_id);
    config.finalize.batch_size = args.batch_size.max(1);
    let (p, queues) = if args.aws {
        services::aws(seq_chain.clone(), config).await?
    } else {
        services::embedded(&args.data_dir, seq_chain.clone(), config)?
    };
    // One /metrics page for the process: the pipeline's registry and the ingress's.
    let ingress_metrics = Metrics::new();
    let (exporter, recorder) = metrics::Exporter::new(Some(ingress_metrics.clone()));
    let p = Arc::new(p.with_recorder(recorder));
    let blocks = p.ports.content.clone();

    // Ingress → embedded submissions queue.
    let settings = Settings {
        host: HostConfig {
            listen: vec![args.listen.parse().context("--listen is not a multiaddr")?],
            edge: sequencer_ingress::edge::EdgePolicy::markets([dep.data_market]),
            gossip: (args.path != snapshotter_sim::scenario::SimPath::Collect)
                .then(|| sequencer_ingress::gossip::GossipSettings::default().one_host_fleet()),
            ..HostConfig::default()
        },
        // Every simulated snapshotter dials from this host: relax the per-address limits.
        limits: EdgeLimits::default().one_host_fleet(),
        spill_path: args.data_dir.join("ingress-spill.jsonl"),
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        // Tallies for the tick's close watermark (docs/protocol.md §4), as in a deployment.
        tally: Some(sequencer_ingress::tally::TallySettings::default()),
        ..Settings::default()
    };
    let (key, _) = identity::load_or_create(None, &args.data_dir.join("ingress.key"))
        .context("ingress host key")?;
    let sink = Arc::new(services::QueueSink {
        queue: queues.submissions.clone(),
        twice: args.deliver_twice,
    });
    let ingress = Ingress::start(settings, key, sink, ingress_metrics.clone(), None)
        .await
        .context("starting the ingress")?;
    let mut ingress_addr: Multiaddr = ingress
        .listen_addrs
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .or_else(|| ingress.listen_addrs.first())
        .cloned()
        .context("ingress has no listen address")?;
    ingress_addr.push(Protocol::P2p(ingress.peer_id));
    progress(started, &format!("ingress listening on {ingress_addr}"));
    let stop_http = tokio_util::sync::CancellationToken::new();
    let api = sequencer_api::ApiState::new(p.clone())
        .with_config(content_http::api_config().context("status page settings")?)
        .with_dead_letters(queues.dead_letters.clone())
        .with_ingress(Arc::new(content_http::ingress_health(
            format!("local {}", ingress.peer_id),
            ingress_metrics,
        )));
    let content_addr = content_http::serve(
        args.content_listen,
        blocks.clone(),
        Some(api),
        Some(exporter.clone()),
        stop_http.clone(),
    )
    .await
    .context("content HTTP listener")?;
    progress(
        started,
        &format!(
            "status page at http://{content_addr}/status; batch documents at http://{content_addr}/ipfs/<cid> (and the Kubo RPC's /api/v0/cat); proof API at http://{content_addr}/v1/markets/{:#x}/epochs; metrics at http://{content_addr}/metrics",
            dep.data_market
        ),
    );

    // Functions and the epoch manager.
    let loops = services::Loops::start(
        p.clone(),
        &queues,
        Duration::from_millis((block_ms / 2).max(20)),
    );
    let em_chain = chain::client(&rpc_url, dep.protocol_state, chain::OWNER_KEY).await?;
    let first_begin = em_chain.head().await? + 1;
    let releaser = releaser::spawn(
        em_chain,
        dep.data_market,
        first_begin,
        args.finality_offset,
        Duration::from_millis((block_ms / 4).max(10)),
    )
    .await?;

    let out = output::Output::new(args.json);
    let outcome = if args.no_sim {
        let kit = sequencer_chain::market::SnapshotterKit {
            protocol_state: dep.protocol_state.to_checksum(None),
            data_market: dep.data_market.to_checksum(None),
            // Redacted like every URL the runner prints: a hosted URL's key is not for handing
            // out (a local anvil's URL is unchanged by it).
            powerloom_rpc_url: sequencer_chain::redact_url(&rpc_url),
            chain_id: dep.chain_id,
            source_chain_id: dep.settings.source_chain_id,
            sequencer_multiaddr: ingress_addr.to_string(),
            sequencer_peer_id: ingress.peer_id.to_string(),
            local_collector_port: 50051,
            environment: "local".into(),
        };
        let info = serde_json::json!({
            "type": "ready",
            "snapshotter_kit": kit.to_json(),
            "ingress": ingress_addr.to_string(),
            "peer_id": ingress.peer_id.to_string(),
            "rpc_url": sequencer_chain::redact_url(&rpc_url),
            "chain_id": dep.chain_id,
            "protocol_state": dep.protocol_state.to_checksum(None),
            "data_market": dep.data_market.to_checksum(None),
            "owner": dep.owner.to_checksum(None),
            "epoch_size": dep.epoch_size,
            "snapshot_window_blocks": dep.windows.snapshot_blocks,
            "slots": dep.slots.iter().map(|(s, a)| (s.to_string(), a.to_checksum(None))).collect::<std::collections::BTreeMap<_, _>>(),
            "ingress_http": ingress.http_addr.map(|a| format!("http://{a}")),
            "ipfs_api": format!("http://{content_addr}"),
            "proof_api": format!("http://{content_addr}/v1/markets/{:#x}", dep.data_market),
        });
        println!("{info}");
        // The same line in the data directory, for scripts and tests that drive the runner.
        std::fs::write(
            args.data_dir.join("snapshotter-kit.json"),
            serde_json::to_vec_pretty(&info)?,
        )
        .context("writing snapshotter-kit.json")?;
        // Boxed: these futures are large and deep; callers that await `run` inside their own
        // async code would otherwise hit the compiler's layout depth limit.
        Box::pin(serve(&p, &blocks, &args, &out, &stop)).await
    } else {
        Box::pin(simulate(
            &p,
            seq_chain.as_ref(),
            &blocks,
            &args,
            &dep,
            &ingress_addr,
            ingress.peer_id,
            started,
            &out,
        ))
        .await
    };

    let em_stats = releaser.stop().await;
    stop_http.cancel();
    loops.stop().await;
    let report = ingress.shutdown().await;
    if report.lost > 0 {
        eprintln!(
            "ingress: {} accepted messages could not be queued",
            report.lost
        );
    }
    drop(anvil);
    let code = outcome?;
    let counters = exporter.counters();
    eprintln!(
        "counters: {}",
        counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(s) = em_stats {
        eprintln!("epoch manager: {s:?}");
    }
    out.summary(
        code,
        &output::RunFacts {
            rpc_url: &rpc_url,
            deployment: &dep,
            resumed: reused,
        },
        &counters,
        started.elapsed(),
    );
    progress(
        started,
        if code == 0 {
            "every check held"
        } else {
            "SOME CHECKS FAILED"
        },
    );
    Ok(code)
}

fn progress(started: Instant, msg: &str) {
    eprintln!("[{:>6.1}s] {msg}", started.elapsed().as_secs_f64());
}

#[allow(clippy::too_many_arguments)]
async fn simulate(
    p: &Arc<sequencer_handlers::Pipeline>,
    chain: &dyn ChainPort,
    blocks: &Arc<dyn sequencer_ports::ContentStore>,
    args: &Args,
    dep: &sequencer_chain::deploy::Deployment,
    addr: &Multiaddr,
    peer: libp2p::PeerId,
    started: Instant,
    out: &output::Output,
) -> Result<i32> {
    let domain = Domain {
        chain_id: dep.chain_id,
        verifying_contract: dep.protocol_state,
    };
    let mut sim = snapshotter_sim::scenario::Simulator::connect(
        addr,
        peer,
        domain,
        dep.data_market,
        (dep.slots.len() as u64).min(args.slots),
        args.projects,
        4,
        args.path,
    )
    .await?;
    progress(started, "simulator connected (4 libp2p connections)");
    out.header();
    // Epochs released before this run (a resumed data directory) are left alone.
    let known: BTreeSet<u64> = p
        .records()
        .epochs()
        .await?
        .into_iter()
        .map(|e| e.record.epoch)
        .collect();
    let mut sent = Vec::new();
    let mut submitted: BTreeSet<u64> = BTreeSet::new();
    let mut late: BTreeSet<u64> = BTreeSet::new();
    let mut honest: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let mut misbehaved: BTreeSet<u64> = BTreeSet::new();
    let mut printed: BTreeSet<u64> = BTreeSet::new();
    let mut headers: std::collections::BTreeMap<u64, B256> = Default::default();
    let mut failures = 0usize;
    let mut last_progress = Instant::now();
    let deadline_per_epoch = Duration::from_secs(args.epoch_timeout_secs);
    // Ctrl-C or SIGTERM ends the run cleanly (the spawned anvil and the ingress are stopped).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        for entry in p.records().epochs().await? {
            let (e, st, rec) = (entry.record.epoch, entry.state, entry.record);
            if known.contains(&e) {
                continue;
            }
            if st == EpochState::Open && !submitted.contains(&e) {
                let head = chain.head().await?;
                let at = head.min(rec.window_end);
                let header = chain.block_hash(at).await?.context("head block hash")?;
                let batch = sim.submit_epoch(e, header).await?;
                progress(
                    started,
                    &format!(
                        "epoch {e}: released in block {}, window to {}; sent {} honest submissions",
                        rec.release_block,
                        rec.window_end,
                        batch.len()
                    ),
                );
                honest.insert(e, batch.iter().map(|s| s.id.clone()).collect());
                sent.extend(batch);
                headers.insert(e, header);
                submitted.insert(e);
                last_progress = Instant::now();
            }
            // Once the honest submissions are verified, the misbehaving ones (their outcome
            // depends on coming second).
            if st == EpochState::Open && honest.contains_key(&e) {
                let ids = honest.get(&e).cloned().unwrap_or_default();
                let mut all = true;
                for id in &ids {
                    if p.records().receipt(e, id).await?.is_none() {
                        all = false;
                        break;
                    }
                }
                if all {
                    if let Some(h) = headers.get(&e) {
                        let bad = sim.submit_misbehaving(e, *h).await?;
                        progress(
                            started,
                            &format!(
                                "epoch {e}: sent {} misbehaving submissions (+1 replayed)",
                                bad.len()
                            ),
                        );
                        sent.extend(bad);
                    }
                    honest.remove(&e);
                    misbehaved.insert(e);
                }
            }
            if st != EpochState::Open && misbehaved.contains(&e) && !late.contains(&e) {
                if let Some(h) = headers.get(&e) {
                    sent.push(sim.submit_late(e, *h).await?);
                }
                late.insert(e);
            }
            if st == EpochState::Failed && !printed.contains(&e) {
                eprintln!("epoch {e}: anchoring failed: {:?}", rec.failure);
                failures += 1;
                printed.insert(e);
            }
            if st == EpochState::Anchored && submitted.contains(&e) && !printed.contains(&e) {
                // Wait for the late submission's verdict so the row is complete.
                if let Some(s) = sent.iter().rev().find(|s| s.epoch == e) {
                    if p.records().receipt(e, &s.id).await?.is_none() {
                        continue;
                    }
                }
                let row = report::epoch_row(
                    p,
                    blocks.as_ref(),
                    &rec,
                    &sent,
                    args.proofs_per_epoch,
                    args.finality_offset,
                )
                .await?;
                if row.outcomes_ok.0 != row.outcomes_ok.1 || row.proofs_ok.0 != row.proofs_ok.1 {
                    failures += 1;
                }
                out.row(&row);
                printed.insert(e);
                last_progress = Instant::now();
            }
        }
        let done = printed.len() as u64;
        if args.epochs > 0 && done >= args.epochs {
            break;
        }
        if last_progress.elapsed() > deadline_per_epoch {
            eprintln!("no epoch progressed for {deadline_per_epoch:?}: giving up");
            failures += 1;
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = &mut interrupted => { eprintln!("interrupted"); break; }
            _ = term.recv() => { eprintln!("terminated"); break; }
        }
    }
    sim.close().await;
    Ok(if failures == 0 { 0 } else { 1 })
}

async fn serve(
    p: &Arc<sequencer_handlers::Pipeline>,
    blocks: &Arc<dyn sequencer_ports::ContentStore>,
    args: &Args,
    out: &output::Output,
    stop_token: &tokio_util::sync::CancellationToken,
) -> Result<i32> {
    out.header();
    let mut printed: BTreeSet<u64> = BTreeSet::new();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    loop {
        for entry in p.records().epochs().await? {
            let (e, st, rec) = (entry.record.epoch, entry.state, entry.record);
            if st == EpochState::Anchored && !printed.contains(&e) {
                let row = report::epoch_row(
                    p,
                    blocks.as_ref(),
                    &rec,
                    &[],
                    args.proofs_per_epoch,
                    args.finality_offset,
                )
                .await?;
                out.row(&row);
                printed.insert(e);
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(0),
            _ = term.recv() => return Ok(0),
            _ = stop_token.cancelled() => return Ok(0),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
