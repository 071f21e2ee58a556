//! `sequencer-local`: the whole sequencer on one machine with embedded defaults (no AWS account,
//! no Docker): anvil, the contract, the epoch manager, the libp2p ingress, every function on the
//! embedded adapters and a snapshotter simulator; prints what each epoch did. `--help` for flags.

#![recursion_limit = "256"]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = sequencer_runner::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log)?)
        .init();
    let code = sequencer_runner::run(args).await?;
    std::process::exit(code);
}
