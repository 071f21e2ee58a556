//! `sequencer-collector`: the local collector an unmodified snapshotter node uses (gRPC on
//! :50051 → libp2p `/collect` to one pinned sequencer). Configuration from the environment or
//! flags (`--help`); see collector/README.md.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = sequencer_collector::Config::parse();
    let collector = sequencer_collector::Collector::start(cfg).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let counts = collector.shutdown().await;
    tracing::info!(?counts, "collector stopped");
    Ok(())
}
