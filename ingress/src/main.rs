//! `sequencer-ingress`: the libp2p front door of the sequencer. Collectors dial it and write
//! `/collect` messages; it enforces the edge limits, pushes each message byte-exact to SQS with
//! `SendMessageBatch`, serves `/healthz` `/readyz` `/metrics`, and on SIGTERM drains to SQS within
//! a deadline, spilling any remainder to a file it replays on the next start. Configuration:
//! flags or `INGRESS_*` environment variables (`--help`, ingress/README.md).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sequencer_ingress::config::{Cli, SinkKind, DEFAULT_KEY_FILE};
use sequencer_ingress::identity;
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::sink::sqs::SqsSink;
use sequencer_ingress::sink::SubmissionSink;
use sequencer_ingress::Ingress;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).context("bad --log filter")?,
        )
        .with_current_span(false)
        .init();

    let default_key = std::path::PathBuf::from(DEFAULT_KEY_FILE);
    let key_file = match &cli.key_file {
        Some(path) => identity::KeyFile::Configured {
            path,
            generate: cli.generate_key,
        },
        None => identity::KeyFile::Default(&default_key),
    };
    let (key, source) = identity::load(cli.key.as_deref(), key_file).context("loading host key")?;
    let peer_id = key.public().to_peer_id();
    if cli.print_peer_id {
        println!("{peer_id}");
        return Ok(());
    }
    tracing::info!(%peer_id, key_source = ?source, "host identity");
    let settings = cli.settings().context("configuration")?;
    match &settings.host.edge.markets {
        Some(m) => tracing::info!(markets = ?m, "serving data markets"),
        None => tracing::warn!("--any-market: no market allow-list at the edge"),
    }
    match &settings.host.gossip {
        Some(g) => tracing::info!(
            prefix = %g.topic_prefix,
            kad_mode = ?g.kad_mode,
            bootstrap = g.bootstrap.len(),
            rendezvous = %g.rendezvous,
            "gossipsub on (same listen addresses)"
        ),
        None => tracing::info!("gossipsub off"),
    }

    let sink: Arc<dyn SubmissionSink> = match cli.sink {
        SinkKind::Memory => Arc::new(MemorySink::counting()),
        SinkKind::Sqs => {
            let client = SqsSink::client_from_env().await;
            let url = match &cli.queue_url {
                Some(u) => u.clone(),
                None => SqsSink::resolve_queue_url(&client, &cli.queue_name)
                    .await
                    .with_context(|| format!("looking up SQS queue {}", cli.queue_name))?,
            };
            tracing::info!(queue_url = %url, "SQS sink");
            Arc::new(SqsSink::new(client, url))
        }
    };

    let ingress = Ingress::start(settings, key, sink, Metrics::new(), None)
        .await
        .context("starting ingress")?;
    if let Some(a) = ingress.http_addr {
        tracing::info!(address = %a, "operations HTTP listening");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    let report = ingress.shutdown().await;
    if report.failed {
        anyhow::bail!("the dispatcher failed during the drain; accepted messages may be lost");
    }
    if report.lost > 0 {
        anyhow::bail!(
            "{} accepted messages could not be delivered or spilled",
            report.lost
        );
    }
    Ok(())
}
