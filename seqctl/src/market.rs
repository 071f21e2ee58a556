//! `seqctl market …`: what a market's operator hands to snapshotter operators.
//!
//! - `snapshotter-env`: reads the market from the chain (registered, its settings and window),
//!   and prints the kit an unmodified snapshotter node and its collector need
//!   ([`sequencer_chain::market::SnapshotterKit`]): `PROTOCOL_STATE_CONTRACT` (EIP-55),
//!   `DATA_MARKET_CONTRACT`, `POWERLOOM_RPC_URL`, the chain ids, the sequencer's multiaddr with
//!   its peer id, the collector settings, and a `sequencers.json` entry in the stock collector's
//!   format. Warns (stderr, and `warnings` in `--json`) when the market's snapshot window is too
//!   short for the node's timing ([`sequencer_chain::market::window_warning`]).
//!
//! `--rpc-url` (read, never printed: it may carry a key) and `--public-rpc-url` (printed: the
//! one snapshotters use) are separate on purpose.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sequencer_chain::market::{window_warning, SnapshotterKit};
use sequencer_chain::{Address, ChainClient, ChainConfig};

#[derive(Debug, Subcommand)]
pub enum MarketCmd {
    /// Print the environment a snapshotter node and its collector need for this market.
    SnapshotterEnv {
        /// JSON-RPC endpoint to read the chain from (never printed).
        #[arg(long, env = "RPC_URL")]
        rpc_url: String,
        /// The protocol chain's RPC as snapshotters should use it (printed as POWERLOOM_RPC_URL).
        #[arg(long, env = "POWERLOOM_RPC_URL")]
        public_rpc_url: String,
        /// ProtocolState contract.
        #[arg(long, env = "PROTOCOL_STATE_ADDRESS")]
        protocol_state: Address,
        /// Data market.
        #[arg(long, env = "DATA_MARKET_ADDRESS")]
        market: Address,
        /// The sequencer ingress's public libp2p address, ending in /p2p/<peer id>.
        #[arg(long, env = "SEQUENCER_MULTIADDR")]
        sequencer_multiaddr: String,
        /// gRPC port the node dials its collector on.
        #[arg(long, default_value_t = 50051)]
        collector_port: u16,
        /// `environment` of the sequencers.json entry.
        #[arg(long, default_value = "prod")]
        environment: String,
        /// Protocol chain block time in ms for the window check (default: measured on the chain).
        #[arg(long)]
        block_ms: Option<u64>,
    },
}

/// The peer id of a `/p2p/<id>`-terminated multiaddr (text form; the chain crate has no
/// libp2p).
fn peer_id_of(maddr: &str) -> Result<String> {
    let parts: Vec<&str> = maddr.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [.., "p2p", id] if !id.is_empty() => Ok((*id).to_string()),
        _ => bail!("--sequencer-multiaddr {maddr:?} does not end in /p2p/<peer id>: collectors pin the sequencer by it"),
    }
}

pub fn run(cmd: MarketCmd, json: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run_async(cmd, json))
}

async fn run_async(cmd: MarketCmd, json: bool) -> Result<()> {
    match cmd {
        MarketCmd::SnapshotterEnv {
            rpc_url,
            public_rpc_url,
            protocol_state,
            market,
            sequencer_multiaddr,
            collector_port,
            environment,
            block_ms,
        } => {
            let peer = peer_id_of(&sequencer_multiaddr)?;
            let c = ChainClient::connect(ChainConfig::new(&rpc_url, protocol_state))
                .await
                .context("connecting to the chain")?;
            let info = c.market_info(market).await.context("dataMarketInfo")?;
            if !info.registered {
                bail!("market {market} is not registered on {protocol_state}");
            }
            let on = c
                .market_settings(market)
                .await
                .context("marketSettings (a ProtocolState without market settings cannot serve unmodified nodes)")?;
            let block_ms = match block_ms {
                Some(b) => Some(b),
                None => c.measured_block_ms(100).await?,
            };
            let mut warnings = Vec::new();
            match block_ms {
                Some(ms) => {
                    if let Some(w) = window_warning(info.windows.snapshot_blocks, ms) {
                        warnings.push(w);
                    }
                }
                None => warnings.push(
                    "could not measure the protocol chain's block time (give --block-ms): the window was not checked"
                        .to_string(),
                ),
            }
            let kit = SnapshotterKit {
                protocol_state: protocol_state.to_checksum(None),
                data_market: market.to_checksum(None),
                powerloom_rpc_url: public_rpc_url,
                chain_id: c.chain_id(),
                source_chain_id: on.settings.source_chain_id,
                sequencer_multiaddr,
                sequencer_peer_id: peer,
                local_collector_port: collector_port,
                environment,
            };
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if json {
                let mut v = kit.to_json();
                v["settings"] = serde_json::to_value(on)?;
                v["snapshot_window_blocks"] = info.windows.snapshot_blocks.into();
                v["protocol_block_ms"] = serde_json::to_value(block_ms)?;
                v["warnings"] = serde_json::to_value(&warnings)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "# snapshotter-lite-v2 .env for data market {} (epochs of {} blocks, {} a day, quota {} a day; window {} blocks)",
                    kit.data_market,
                    on.settings.epoch_size,
                    on.epochs_in_a_day,
                    on.settings.daily_snapshot_quota,
                    info.windows.snapshot_blocks
                );
                for l in kit.env_lines() {
                    println!("{l}");
                }
                println!("# sequencers.json (the stock collector's discovery file):");
                println!("# {}", kit.sequencers_json());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_must_be_pinned() {
        assert_eq!(
            peer_id_of("/ip4/1.2.3.4/tcp/9100/p2p/12D3KooWabc").expect("id"),
            "12D3KooWabc"
        );
        assert!(peer_id_of("/ip4/1.2.3.4/tcp/9100").is_err());
    }
}
