//! `seqctl rewards export`: a market's rewards from a sequencer's status API, per slot per day
//! (`/v1/markets/{m}/days/{day}/rewards`) or per slot per epoch with the discarded CIDs
//! (`/v1/markets/{m}/epochs/{e}/rewards`), as CSV or JSON: what an operator pays from.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::args::market_arg;
use crate::env;
use crate::net::{base_url, client, read_body, runtime, url_arg};

/// Largest range exported in one run (one request each).
const MAX_RANGE: u64 = 10_000;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One row per slot and day (or epoch), with a header.
    Csv,
    /// One JSON array of the API's answers.
    Json,
}

/// Rows per day or per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// Per slot per day: eligible, discarded, quota met, and the on-chain commit.
    Day,
    /// Per slot per epoch: eligible, discarded and the discarded CIDs.
    Epoch,
}

/// `seqctl rewards export`'s arguments.
#[derive(Debug, Args)]
pub struct Export {
    /// Status API base URL (the `proof` function URL, or the local runner's HTTP address).
    #[arg(long, env = env::PROOF_API_URL, hide_env_values = true)]
    url: String,
    /// Data market address.
    #[arg(long, env = env::DATA_MARKET_ADDRESS)]
    market: String,
    /// First day (or epoch, with `--by epoch`).
    #[arg(long)]
    from: u64,
    /// Last day (or epoch); default: `--from`.
    #[arg(long)]
    to: Option<u64>,
    /// Per day or per epoch.
    #[arg(long, value_enum, default_value = "day")]
    by: By,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
}

/// `seqctl rewards` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RewardsCmd {
    /// Export rewards per slot per day (or per epoch) as CSV or JSON, from the status API. A day
    /// the sequencer has not computed yet (running, or its epochs not finalized) is an error.
    Export(Export),
}

/// Runs a `seqctl rewards` command: the export goes to stdout.
pub fn run(cmd: RewardsCmd) -> Result<()> {
    let RewardsCmd::Export(a) = cmd;
    let out = export(&a)?;
    print!("{out}");
    Ok(())
}

fn export(a: &Export) -> Result<String> {
    let market = market_arg(&a.market)?;
    let to = a.to.unwrap_or(a.from);
    if a.from == 0 || to < a.from {
        bail!(
            "--from {} --to {to}: a range of positive ids, from ≤ to",
            a.from
        );
    }
    if to - a.from >= MAX_RANGE {
        bail!("--from {} --to {to}: at most {MAX_RANGE} at once", a.from);
    }
    let api = base_url(&url_arg("--url", &a.url)?);
    let what = match a.by {
        By::Day => "days",
        By::Epoch => "epochs",
    };
    let answers: Vec<Value> = runtime()?.block_on(async {
        let http = client()?;
        let mut out = Vec::new();
        for id in a.from..=to {
            let url = api
                .join(&format!("v1/markets/{market:#x}/{what}/{id}/rewards"))
                .context("rewards URL")?;
            let r = http
                .get(url.clone())
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = r.status();
            let body = read_body(r, "status API").await?;
            let v: Value = serde_json::from_slice(&body)
                .with_context(|| format!("{url}: HTTP {status}, not JSON"))?;
            if !status.is_success() {
                let code = v["error"]["code"].as_str().unwrap_or("?");
                let msg = v["error"]["message"].as_str().unwrap_or("");
                bail!("{what} {id}: the sequencer answered HTTP {status} ({code}): {msg}");
            }
            out.push(v);
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    Ok(match a.format {
        Format::Json => format!("{:#}\n", json!(answers)),
        Format::Csv => csv(a.by, &answers)?,
    })
}

/// A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(v: &Value, k: &str) -> Result<u64> {
    v[k].as_u64()
        .with_context(|| format!("the answer has no number {k:?}: {}", clip(v)))
}

fn clip(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

/// The rows of the answers.
fn csv(by: By, answers: &[Value]) -> Result<String> {
    let mut out = String::new();
    match by {
        By::Day => {
            out.push_str(
                "day,first_epoch,last_epoch,quota,slot,eligible,discarded,met_quota,status,committed_txs\n",
            );
            for d in answers {
                let txs = d["committed"]["txs"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let (day, first, last, quota) = (
                    num(d, "day")?,
                    num(d, "first_epoch")?,
                    num(d, "last_epoch")?,
                    num(d, "quota")?,
                );
                let status = d["status"].as_str().unwrap_or("?");
                for s in d["slots"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "{day},{first},{last},{quota},{},{},{},{},{},{}\n",
                        num(s, "slot")?,
                        num(s, "eligible")?,
                        num(s, "discarded")?,
                        s["met_quota"].as_bool().unwrap_or(false),
                        field(status),
                        field(&txs),
                    ));
                }
            }
        }
        By::Epoch => {
            out.push_str("epoch,state,slot,eligible,discarded,discarded_cids\n");
            for e in answers {
                let epoch = num(e, "epoch")?;
                let state = e["state"].as_str().unwrap_or("?");
                for s in e["slots"].as_array().into_iter().flatten() {
                    let discards: Vec<&Value> =
                        s["discards"].as_array().into_iter().flatten().collect();
                    let cids = discards
                        .iter()
                        .map(|d| {
                            format!(
                                "{}:{}:{}",
                                d["project"].as_str().unwrap_or("?"),
                                d["cid"].as_str().unwrap_or("?"),
                                d["reason"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    out.push_str(&format!(
                        "{epoch},{},{},{},{},{}\n",
                        field(state),
                        num(s, "slot")?,
                        num(s, "eligible")?,
                        discards.len(),
                        field(&cids),
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn csv_rows_per_slot_and_fields_quoted() {
        let day = json!({
            "data_market": "0x01", "status": "committed", "day": 3, "first_epoch": 5,
            "last_epoch": 6, "quota": 2, "eligible_nodes": 1,
            "slots": [
                {"slot": 1, "eligible": 3, "discarded": 0, "met_quota": true},
                {"slot": 2, "eligible": 1, "discarded": 1, "met_quota": false}
            ],
            "committed": {"recorded": [1, 2], "already": [], "completed": [1],
                          "txs": ["0xaa"], "at_ms": 1}
        });
        assert_eq!(
            csv(By::Day, &[day]).unwrap(),
            "day,first_epoch,last_epoch,quota,slot,eligible,discarded,met_quota,status,committed_txs\n\
             3,5,6,2,1,3,0,true,committed,0xaa\n\
             3,5,6,2,2,1,1,false,committed,0xaa\n"
        );
        let epoch = json!({
            "data_market": "0x01", "epoch": 9, "state": "ANCHORED",
            "slots": [{"slot": 4, "eligible": 0, "discards": [
                {"project": "a,b", "cid": "bafyB", "finalized_cid": "bafyA", "reason": "outvoted"}
            ]}]
        });
        assert_eq!(
            csv(By::Epoch, &[epoch]).unwrap(),
            "epoch,state,slot,eligible,discarded,discarded_cids\n\
             9,ANCHORED,4,0,1,\"a,b:bafyB:outvoted\"\n"
        );
        // A malformed answer is an error, not a row of zeros.
        assert!(csv(By::Day, &[json!({"day": "x"})]).is_err());
    }
}
