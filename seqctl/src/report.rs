//! The check report of the commands that trust no one: each check printed as it is decided
//! (`ok  ` / `FAIL`), or collected into one JSON object; any failed check makes the command fail
//! with [`CheckFailed`] (exit status 1).

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::CheckFailed;

/// Checks, in order, printed as they are decided.
pub(crate) struct Report {
    json: bool,
    checks: Vec<Value>,
    failed: usize,
}

impl Report {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            json,
            checks: Vec::new(),
            failed: 0,
        }
    }

    pub(crate) fn check(&mut self, ok: bool, what: &str, detail: impl Into<String>) {
        let detail = detail.into();
        if !ok {
            self.failed += 1;
        }
        if !self.json {
            let mark = if ok { "ok  " } else { "FAIL" };
            if detail.is_empty() {
                println!("{mark} {what}");
            } else {
                println!("{mark} {what}: {detail}");
            }
        }
        self.checks
            .push(json!({"ok": ok, "check": what, "detail": detail}));
    }

    pub(crate) fn info(&self, line: &str) {
        if !self.json {
            println!("     {line}");
        }
    }

    pub(crate) fn finish(self, summary: Value, what: &str) -> Result<()> {
        let total = self.checks.len();
        if self.json {
            let mut s = summary;
            s["ok"] = json!(self.failed == 0);
            s["checks"] = Value::Array(self.checks);
            println!("{s}");
        } else if self.failed == 0 {
            println!("{what}: all {total} checks hold");
        } else {
            println!("{what}: {} of {total} checks FAILED", self.failed);
        }
        if self.failed > 0 {
            bail!(CheckFailed(format!(
                "{what}: {} of {total} checks failed",
                self.failed
            )));
        }
        Ok(())
    }
}
