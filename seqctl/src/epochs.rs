//! `seqctl epochs …`: the operator's way back for epochs whose anchoring failed.
//!
//! - `failed`: the epochs recorded `ANCHOR_FAILED`, with the reason each failed for (a revoked
//!   sequencer role, an account without gas money on the job's last delivery, a revert);
//! - `reanchor EPOCH`: once the cause is fixed, moves the epoch back to `FINALIZED` and queues its
//!   anchor job again (`sequencer_handlers::anchor::reanchor`). Still one transaction per batch:
//!   batches recorded anchored are skipped and the chain is read before any other is sent.
//!
//! Against the local runner's data directory (`--data-dir`, its SQLite state and queues; the
//! runner may be running) or the AWS deployment (`--aws`: DynamoDB and SQS named with
//! `SEQ_PREFIX`, endpoints from `AWS_ENDPOINT_URL*`, the same wiring as the Lambdas).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sequencer_chain::Address;
use sequencer_handlers::anchor::{failed_epochs, reanchor};
use sequencer_handlers::records::Records;
use sequencer_ports::{Queue, StateStore};
use serde_json::json;

use crate::env;

#[derive(Debug, Subcommand)]
pub enum EpochsCmd {
    /// List the epochs whose anchoring failed (ANCHOR_FAILED), with their reasons.
    Failed {
        #[command(flatten)]
        store: Store,
    },
    /// Anchor an ANCHOR_FAILED epoch again once its cause is fixed (funds, the sequencer role):
    /// back to FINALIZED, its anchor job queued; batches on chain already are not sent again.
    Reanchor {
        #[command(flatten)]
        store: Store,
        /// The epoch.
        epoch: u64,
    },
}

/// Where the deployment keeps its records and queues.
#[derive(Debug, Args)]
pub struct Store {
    /// The local runner's data directory (`sequencer-local --data-dir`).
    #[arg(long, conflicts_with = "aws", required_unless_present = "aws")]
    data_dir: Option<PathBuf>,
    /// The AWS deployment: DynamoDB tables and SQS queues named with SEQ_PREFIX.
    #[arg(long)]
    aws: bool,
    /// Data market (default: the data directory's deployment).
    #[arg(long, env = env::DATA_MARKET_ADDRESS)]
    market: Option<Address>,
    /// FIFO message group of the anchor queue: the deployment's ANCHOR_GROUP_ID (Terraform:
    /// `<prefix>-anchor`, its `anchor_group_id` output).
    #[arg(long, env = env::ANCHOR_GROUP_ID, default_value = "sequencer")]
    anchor_group: String,
    /// Expiry of the records written (the deployment's RECORD_TTL_DAYS).
    #[arg(long, env = env::RECORD_TTL_DAYS, default_value_t = 30)]
    record_ttl_days: u64,
}

struct Opened {
    state: Arc<dyn StateStore>,
    anchor: Arc<dyn Queue>,
    market: Address,
    group: String,
    ttl: Duration,
}

impl Opened {
    fn records(&self) -> Records<'_> {
        Records::new(self.state.as_ref(), self.market, self.ttl)
    }
}

/// The market the runner deployed in `dir`.
fn saved_market(dir: &Path) -> Result<Address> {
    let file = dir.join(sequencer_runner::chain::DEPLOYMENT_FILE);
    let bytes = std::fs::read(&file)
        .with_context(|| format!("{}: pass --market (no deployment here)", file.display()))?;
    let saved: sequencer_runner::chain::Saved =
        serde_json::from_slice(&bytes).with_context(|| format!("{}", file.display()))?;
    Ok(saved.deployment.data_market)
}

async fn open(s: Store) -> Result<Opened> {
    let ttl = Duration::from_secs(s.record_ttl_days.saturating_mul(24 * 3600));
    let (state, anchor, market): (Arc<dyn StateStore>, Arc<dyn Queue>, Address) =
        match (&s.data_dir, s.aws) {
            (Some(dir), _) => {
                let market = match s.market {
                    Some(m) => m,
                    None => saved_market(dir)?,
                };
                let (state, anchor) = sequencer_runner::services::embedded_operator_ports(dir)?;
                (state, anchor, market)
            }
            (None, _) => {
                let market = s
                    .market
                    .context("--market (or DATA_MARKET_ADDRESS) is required with --aws")?;
                let (state, anchor) = Box::pin(sequencer_lambdas::aws_operator_ports())
                    .await
                    .context("the AWS deployment's state and anchor queue")?;
                (Arc::new(state), Arc::new(anchor), market)
            }
        };
    Ok(Opened {
        state,
        anchor,
        market,
        group: s.anchor_group,
        ttl,
    })
}

pub fn run(cmd: EpochsCmd, json: bool) -> Result<()> {
    crate::net::runtime()?.block_on(run_async(cmd, json))
}

async fn run_async(cmd: EpochsCmd, json: bool) -> Result<()> {
    match cmd {
        EpochsCmd::Failed { store } => {
            let o = open(store).await?;
            let failed = failed_epochs(&o.records()).await?;
            if json {
                let list: Vec<_> = failed
                    .iter()
                    .map(|e| {
                        json!({
                            "epoch": e.record.epoch,
                            "batches": e.record.batches,
                            "failure": e.record.failure,
                            "finalized_at_ms": e.record.finalized_at_ms,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({ "ok": true, "market": o.market.to_checksum(None), "failed": list })
                );
            } else if failed.is_empty() {
                println!(
                    "no epoch of {} failed to anchor",
                    o.market.to_checksum(None)
                );
            } else {
                for e in &failed {
                    println!(
                        "epoch {}  ANCHOR_FAILED  batches {}  {}",
                        e.record.epoch,
                        e.record.batches.unwrap_or(0),
                        e.record
                            .failure
                            .as_deref()
                            .unwrap_or("(no reason recorded)")
                    );
                }
            }
            Ok(())
        }
        EpochsCmd::Reanchor { store, epoch } => {
            let o = open(store).await?;
            // Unique per attempt: SQS FIFO drops a deduplication id it saw in 5 minutes.
            let token = format!(
                "{}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
                std::process::id()
            );
            let r = reanchor(&o.records(), o.anchor.as_ref(), &o.group, epoch, &token).await?;
            if json {
                println!(
                    "{}",
                    json!({ "ok": true, "epoch": r.epoch, "queued": r.queued, "failure": r.failure })
                );
            } else {
                println!(
                    "epoch {}: queued to be anchored again (it had failed: {})",
                    r.epoch,
                    r.failure.as_deref().unwrap_or("no reason recorded")
                );
            }
            Ok(())
        }
    }
}
