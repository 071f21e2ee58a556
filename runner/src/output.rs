//! What the runner prints on standard output: the table of `report` for people, or with `--json`
//! one JSON object a line for scripts and dashboards:
//!
//! - `{"type":"ready", …}` with `--no-sim`: where to connect (ingress, chain, contract, market,
//!   slots, content and proof API), printed in either mode;
//! - `{"type":"epoch", …}` per anchored epoch: release, lag, accepted, rejected by reason, batches
//!   (CID, both roots, transaction), `endBatchSubmissions`, close → anchored, and the checks;
//! - `{"type":"summary", …}` once at the end: whether every check held, the epochs, the chain
//!   (its RPC URL redacted like every URL the runner shows), counters and the run's length.
//!
//! Progress and warnings go to standard error in both modes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::report::{self, EpochRow};

/// The epochs printed so far, for the summary.
#[derive(Default)]
struct Seen {
    epochs: Vec<u64>,
    failed: Vec<u64>,
}

/// Standard output of one run.
pub struct Output {
    json: bool,
    seen: Mutex<Seen>,
}

/// The chain facts of the summary.
pub struct RunFacts<'a> {
    /// RPC URL (redacted here).
    pub rpc_url: &'a str,
    /// The deployment in use.
    pub deployment: &'a sequencer_chain::deploy::Deployment,
    /// Whether the data directory's deployment was reused (a resumed run).
    pub resumed: bool,
}

impl Output {
    /// `--json` or the table.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The table's header (nothing in JSON).
    pub fn header(&self) {
        if !self.json {
            report::print_header();
        }
    }

    /// One anchored epoch.
    pub fn row(&self, r: &EpochRow) {
        let ok = r.outcomes_ok.0 == r.outcomes_ok.1 && r.proofs_ok.0 == r.proofs_ok.1;
        if let Ok(mut s) = self.seen.lock() {
            s.epochs.push(r.epoch);
            if !ok {
                s.failed.push(r.epoch);
            }
        }
        if self.json {
            println!("{}", epoch_json(r));
        } else {
            report::print_row(r);
        }
    }

    /// The closing object (JSON only; the table's closing lines go to standard error).
    pub fn summary(
        &self,
        code: i32,
        facts: &RunFacts<'_>,
        counters: &BTreeMap<String, u64>,
        elapsed: std::time::Duration,
    ) {
        if !self.json {
            return;
        }
        let (epochs, failed) = match self.seen.lock() {
            Ok(s) => (s.epochs.clone(), s.failed.clone()),
            Err(_) => (Vec::new(), Vec::new()),
        };
        println!(
            "{}",
            summary_json(code, facts, &epochs, &failed, counters, elapsed)
        );
    }
}

fn epoch_json(r: &EpochRow) -> Value {
    json!({
        "type": "epoch",
        "epoch": r.epoch,
        "release_block": r.release_block,
        "release_lag_blocks": r.release_lag_blocks,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "batches": r.batches.iter().enumerate().map(|(i, (cid, roothash, cids_root, tx))| json!({
            "index": i + 1,
            "cid": cid,
            "roothash": roothash,
            "finalized_cids_root": cids_root,
            "tx": tx,
        })).collect::<Vec<_>>(),
        "end_tx": r.end_tx,
        "close_to_anchor_ms": r.close_to_anchor_ms,
        "outcomes_ok": r.outcomes_ok.0,
        "outcomes_checked": r.outcomes_ok.1,
        "proofs_ok": r.proofs_ok.0,
        "proofs_checked": r.proofs_ok.1,
        "ok": r.outcomes_ok.0 == r.outcomes_ok.1 && r.proofs_ok.0 == r.proofs_ok.1,
    })
}

fn summary_json(
    code: i32,
    facts: &RunFacts<'_>,
    epochs: &[u64],
    failed: &[u64],
    counters: &BTreeMap<String, u64>,
    elapsed: std::time::Duration,
) -> Value {
    let d = facts.deployment;
    json!({
        "type": "summary",
        "ok": code == 0,
        "exit_code": code,
        "epochs": epochs,
        "epochs_failed": failed,
        "rpc_url": sequencer_chain::redact_url(facts.rpc_url),
        "chain_id": d.chain_id,
        "protocol_state": d.protocol_state.to_checksum(None),
        "data_market": d.data_market.to_checksum(None),
        "resumed": facts.resumed,
        "counters": counters,
        "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ok: bool) -> EpochRow {
        EpochRow {
            epoch: 7,
            release_block: 40,
            release_lag_blocks: 1,
            accepted: 20,
            rejected: [("late".to_string(), 1)].into_iter().collect(),
            batches: vec![(
                "bafkrei".into(),
                "0x01".into(),
                "0x02".into(),
                "0x03".into(),
            )],
            end_tx: "0x04".into(),
            close_to_anchor_ms: 900,
            outcomes_ok: (21, 21),
            proofs_ok: (if ok { 5 } else { 4 }, 5),
        }
    }

    #[test]
    fn an_epoch_is_one_object_with_named_batch_fields() {
        let v = epoch_json(&row(true));
        assert_eq!(v["type"], "epoch");
        assert_eq!(v["epoch"], 7);
        assert_eq!(v["rejected"]["late"], 1);
        assert_eq!(v["batches"][0]["index"], 1);
        assert_eq!(v["batches"][0]["cid"], "bafkrei");
        assert_eq!(v["batches"][0]["finalized_cids_root"], "0x02");
        assert_eq!(v["ok"], true);
        assert_eq!(epoch_json(&row(false))["ok"], false);
        // One line: a script reads it with a line reader.
        assert!(!v.to_string().contains('\n'));
    }

    #[test]
    fn the_summary_redacts_the_rpc_url() {
        let d = sequencer_chain::deploy::Deployment {
            chain_id: 31337,
            protocol_state: sequencer_chain::Address::repeat_byte(1),
            deploy_block: 1,
            owner: sequencer_chain::Address::ZERO,
            data_market: sequencer_chain::Address::repeat_byte(2),
            sequencer: sequencer_chain::Address::ZERO,
            epoch_manager: sequencer_chain::Address::ZERO,
            epoch_size: 4,
            windows: sequencer_chain::Windows {
                snapshot_blocks: 16,
                batch_blocks: 200,
            },
            slots: vec![],
            settings: Default::default(),
        };
        let facts = RunFacts {
            rpc_url: "https://user:s3cr3t@rpc.example:8443/v3/s3cr3t?key=s3cr3t",
            deployment: &d,
            resumed: true,
        };
        let v = summary_json(
            1,
            &facts,
            &[1, 2],
            &[2],
            &BTreeMap::new(),
            std::time::Duration::from_millis(1500),
        );
        let text = v.to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(v["rpc_url"], "https://rpc.example:8443");
        assert_eq!(v["ok"], false);
        assert_eq!(v["epochs_failed"][0], 2);
        assert_eq!(v["elapsed_ms"], 1500);
    }
}
