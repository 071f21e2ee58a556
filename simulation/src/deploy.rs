//! The deployment's timing and concurrency, as the Terraform module sets them
//! (`infra/terraform/modules/sequencer/locals.tf` `function_defaults`, `variables.tf`
//! `schedule_expression`, the tick Lambda's margin and poll in `lambdas/src/bin/tick.rs`).
//! A test reads those files and fails when they and this table drift apart.

/// One function's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// `timeout`, seconds.
    pub timeout_s: u64,
    /// `reserved_concurrency` (-1: unreserved).
    pub reserved_concurrency: i64,
    /// Event source mapping `batch_size`.
    pub batch_size: Option<u64>,
    /// `batching_window_secs`.
    pub batching_window_s: Option<u64>,
    /// Event source mapping `maximum_concurrency`.
    pub maximum_concurrency: Option<u64>,
    /// Visibility timeout of its queue = this × `timeout`.
    pub visibility_multiplier: Option<u64>,
    /// Redrive to the DLQ after this many receives.
    pub max_receive_count: Option<u64>,
}

impl Function {
    /// The queue's visibility timeout, ms.
    pub fn visibility_ms(&self) -> u64 {
        self.timeout_s * self.visibility_multiplier.unwrap_or(1) * 1000
    }

    /// Concurrent invocations the event source mapping can have: its maximum concurrency,
    /// bounded by the reserved concurrency when there is one.
    pub fn concurrency(&self) -> u64 {
        let m = self.maximum_concurrency.unwrap_or(1);
        if self.reserved_concurrency > 0 {
            m.min(self.reserved_concurrency as u64)
        } else {
            m
        }
    }
}

impl Deployment {
    /// How long the queues retry an epoch's work, ms: Σ visibility timeout × maxReceiveCount of
    /// verify, finalize and anchor (`locals.tf` `retry_horizon_secs`, `RETRY_HORIZON_SECS`).
    pub fn retry_horizon_ms(&self) -> u64 {
        [self.verify, self.finalize, self.anchor]
            .iter()
            .map(|f| f.visibility_ms() * f.max_receive_count.unwrap_or(1))
            .sum()
    }
}

/// The deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    /// verify (SQS `submissions`).
    pub verify: Function,
    /// tick (scheduled).
    pub tick: Function,
    /// finalize (SQS `finalize`).
    pub finalize: Function,
    /// anchor (SQS FIFO `anchor`).
    pub anchor: Function,
    /// epoch-manager (scheduled).
    pub epoch_manager: Function,
    /// Schedule of tick and epoch-manager, seconds (`rate(1 minute)`).
    pub schedule_s: u64,
    /// The tick Lambda stops this long before its deadline, seconds.
    pub tick_margin_s: u64,
    /// `TICK_POLL_MS` default.
    pub tick_poll_ms: u64,
    /// SQS long-poll wait of the event source mapping, seconds.
    pub long_poll_s: u64,
}

/// The module's defaults.
pub const MODULE: Deployment = Deployment {
    verify: Function {
        timeout_s: 30,
        reserved_concurrency: -1,
        batch_size: Some(100),
        batching_window_s: Some(1),
        maximum_concurrency: Some(50),
        visibility_multiplier: Some(6),
        max_receive_count: Some(5),
    },
    tick: Function {
        timeout_s: 60,
        reserved_concurrency: 1,
        batch_size: None,
        batching_window_s: None,
        maximum_concurrency: None,
        visibility_multiplier: None,
        max_receive_count: None,
    },
    finalize: Function {
        timeout_s: 300,
        reserved_concurrency: 4,
        batch_size: Some(1),
        batching_window_s: Some(0),
        maximum_concurrency: Some(2),
        visibility_multiplier: Some(6),
        max_receive_count: Some(5),
    },
    anchor: Function {
        timeout_s: 330,
        reserved_concurrency: 1,
        batch_size: Some(10),
        batching_window_s: None,
        maximum_concurrency: Some(2),
        visibility_multiplier: Some(2),
        max_receive_count: Some(10),
    },
    epoch_manager: Function {
        timeout_s: 80,
        reserved_concurrency: 1,
        batch_size: None,
        batching_window_s: None,
        maximum_concurrency: None,
        visibility_multiplier: None,
        max_receive_count: None,
    },
    schedule_s: 60,
    tick_margin_s: 5,
    tick_poll_ms: 1000,
    // Lambda's SQS pollers long-poll for up to 20 s.
    long_poll_s: 20,
};

/// Tables whose items the module expires by TTL (`locals.tf` `tables`): every one, one retention
/// for every record of an epoch.
pub const TTL_TABLES: [(&str, bool); 6] = [
    ("submissions", true),
    ("receipts", true),
    ("counters", true),
    ("epochs", true),
    ("blocks", true),
    ("batches", true),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn repo_file(rel: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// `name = { k = v, … }` on one line of `function_defaults`.
    fn function_line(locals: &str, name: &str) -> BTreeMap<String, String> {
        let quoted = format!("\"{name}\"");
        let line = locals
            .lines()
            .map(str::trim)
            .find(|l| {
                (l.starts_with(&format!("{name} ")) || l.starts_with(&quoted))
                    && l.contains("memory_size")
            })
            .unwrap_or_else(|| panic!("no function_defaults line for {name}"));
        let inner = &line[line.find('{').expect("{") + 1..line.rfind('}').expect("}")];
        inner
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    fn num(m: &BTreeMap<String, String>, k: &str) -> Option<i64> {
        let v = m.get(k).unwrap_or_else(|| panic!("{k} missing"));
        if v == "null" {
            None
        } else {
            Some(
                v.parse()
                    .unwrap_or_else(|_| panic!("{k} = {v} is not a number")),
            )
        }
    }

    fn check(locals: &str, name: &str, f: &Function) {
        let m = function_line(locals, name);
        let u = |k: &str| num(&m, k).map(|v| v as u64);
        assert_eq!(u("timeout"), Some(f.timeout_s), "{name} timeout");
        if name != "proof" {
            assert_eq!(
                num(&m, "reserved_concurrency"),
                Some(f.reserved_concurrency),
                "{name} reserved_concurrency"
            );
        }
        assert_eq!(u("batch_size"), f.batch_size, "{name} batch_size");
        assert_eq!(
            u("batching_window_secs"),
            f.batching_window_s,
            "{name} batching_window_secs"
        );
        assert_eq!(
            u("maximum_concurrency"),
            f.maximum_concurrency,
            "{name} maximum_concurrency"
        );
        assert_eq!(
            u("visibility_multiplier"),
            f.visibility_multiplier,
            "{name} visibility_multiplier"
        );
        assert_eq!(
            u("max_receive_count"),
            f.max_receive_count,
            "{name} max_receive_count"
        );
    }

    #[test]
    fn the_simulated_deployment_is_the_terraform_modules() {
        let locals = repo_file("infra/terraform/modules/sequencer/locals.tf");
        check(&locals, "verify", &MODULE.verify);
        check(&locals, "tick", &MODULE.tick);
        check(&locals, "finalize", &MODULE.finalize);
        check(&locals, "anchor", &MODULE.anchor);
        check(&locals, "epoch-manager", &MODULE.epoch_manager);
        // Visibility = multiplier × timeout: verify's 6 × 30 s = 180 s.
        assert_eq!(MODULE.verify.visibility_ms(), 180_000);
        // The retry horizon the module passes (RETRY_HORIZON_SECS) is the handlers' default.
        assert_eq!(
            MODULE.retry_horizon_ms(),
            sequencer_handlers::config::DEFAULT_RETRY_HORIZON_SECS * 1000
        );
        assert!(locals.contains("retry_horizon_secs = sum([for q, c in local.queues : local.visibility[q] * local.fn[c.consumer].max_receive_count])"));

        // Tables with TTL.
        let start = locals.find("tables = {").expect("tables");
        let block = &locals[start..start + locals[start..].find('}').expect("}")];
        for (t, ttl) in TTL_TABLES {
            let line = block
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&format!("{t} ")))
                .unwrap_or_else(|| panic!("table {t}"));
            assert!(line.ends_with(&ttl.to_string()), "table {t}: {line}");
        }

        let vars = repo_file("infra/terraform/modules/sequencer/variables.tf");
        let at = vars
            .find("variable \"schedule_expression\"")
            .expect("schedule");
        assert!(
            vars[at..].contains(&format!(
                "default     = \"rate({} minute)\"",
                MODULE.schedule_s / 60
            )),
            "schedule_expression default"
        );

        let tick = repo_file("lambdas/src/bin/tick.rs");
        assert!(
            tick.contains(&format!(
                "const MARGIN: Duration = Duration::from_secs({});",
                MODULE.tick_margin_s
            )),
            "tick margin"
        );
        assert!(
            tick.contains(&format!(".unwrap_or({})", MODULE.tick_poll_ms)),
            "TICK_POLL_MS default"
        );
    }
}
