//! The layer every in-memory port goes through: it parks each call on the scheduler for a
//! seeded latency (so every call is a scheduling point and the seed decides the interleaving),
//! injects the port's faults, crashes the calling invocation when its crash point is this call,
//! counts calls per function and operation, and traces each call.
//!
//! A call is applied atomically at one instant between its request and its response latency
//! (its linearization point), like a DynamoDB or SQS request: a crash or a lost response after
//! that instant leaves the effect in place.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sequencer_ports::{ErrorKind, Port, PortError};

use crate::exec::Sim;

/// Latency and failures of one port, changeable during a run (fault windows).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Fastest answer, ms (request and response halves each get half of a draw).
    pub min_ms: u64,
    /// Slowest ordinary answer, ms.
    pub max_ms: u64,
    /// Chance that a call is slow.
    pub slow_p: f64,
    /// A slow call takes this long at most, ms.
    pub slow_max_ms: u64,
    /// Chance that a call fails before it is applied.
    pub fail_p: f64,
    /// Chance that a call is applied but its answer is lost (the caller sees a failure).
    pub lost_answer_p: f64,
}

impl Profile {
    /// A port answering in `min..=max` ms, never failing.
    pub const fn fast(min_ms: u64, max_ms: u64) -> Self {
        Self {
            min_ms,
            max_ms,
            slow_p: 0.0,
            slow_max_ms: 0,
            fail_p: 0.0,
            lost_answer_p: 0.0,
        }
    }
}

/// Per function (`verify`, `tick`, …) and operation, how many calls were made.
pub type CallCounts = BTreeMap<(String, String), u64>;

/// What the gate decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Applied, answered.
    Ok,
    /// Failed before being applied.
    Failed,
    /// Applied, answer lost.
    LostAnswer,
}

/// One port's gate.
#[derive(Clone)]
pub struct Gate {
    sim: Sim,
    port: Port,
    profile: Arc<Mutex<Profile>>,
    counts: Arc<Mutex<CallCounts>>,
}

fn port_name(p: Port) -> &'static str {
    match p {
        Port::State => "state",
        Port::Queue => "queue",
        Port::Content => "content",
        Port::Chain => "chain",
    }
}

fn function_of(task: &str) -> String {
    task.split('#').next().unwrap_or(task).to_string()
}

impl Gate {
    /// A gate for `port` with `profile`, counting into `counts`.
    pub fn new(sim: Sim, port: Port, profile: Profile, counts: Arc<Mutex<CallCounts>>) -> Self {
        Self {
            sim,
            port,
            profile: Arc::new(Mutex::new(profile)),
            counts,
        }
    }

    /// The port's short name in counts and traces (`state`, `queue`, `content`, `chain`).
    pub fn name(&self) -> &'static str {
        port_name(self.port)
    }

    /// The scheduler.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Replaces the profile (a fault window opens or closes).
    pub fn set_profile(&self, p: Profile) {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// The current profile.
    pub fn profile(&self) -> Profile {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn latency(&self, p: &Profile) -> u64 {
        let base = self.sim.rand_range(p.min_ms..p.max_ms.max(p.min_ms) + 1);
        if p.slow_max_ms > p.max_ms && self.sim.chance(p.slow_p) {
            self.sim.rand_range(p.max_ms..p.slow_max_ms + 1)
        } else {
            base
        }
    }

    /// Runs one call: waits, maybe crashes the caller, decides the fate, applies `apply`
    /// (synchronously, at one instant) unless the call failed first, waits again, maybe crashes
    /// again. `apply` returns the answer and extra latency (ms) before the caller gets it (a
    /// chain write waits for its block). `what` names the call's arguments and `summary` its
    /// answer in the trace. An injected failure is the port's `Unavailable` (a timeout, a 5xx,
    /// a dropped connection: what every adapter reports a transport failure as).
    pub async fn call<T>(
        &self,
        op: &'static str,
        what: String,
        apply: impl FnOnce() -> (Result<T, PortError>, u64),
        summary: impl Fn(&Result<T, PortError>) -> String,
    ) -> Result<T, PortError> {
        let port = self.name();
        let fail = |why: &str| PortError::new(self.port, ErrorKind::Unavailable, why);
        let task = self.sim.current_name();
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((function_of(&task), format!("{port}.{op}")))
            .or_default() += 1;
        let crash_here = self.sim.count_call();
        // Where a crash lands: before the request leaves, or after it was applied.
        let crash_after_apply = crash_here && self.sim.chance(0.5);
        let mut p = self.profile();
        if task.starts_with("probe") {
            // Cost probes measure calls, not faults.
            p = Profile::fast(p.min_ms, p.max_ms);
        }
        let total = self.latency(&p);
        let first = total / 2;
        self.sim.sleep(first).await;
        if crash_here && !crash_after_apply {
            self.sim
                .trace(|| format!("{task} CRASH before {}.{op} {what}", port));
            match self.sim.crash_current().await {}
        }
        let fate = if self.sim.chance(p.fail_p) {
            Fate::Failed
        } else if self.sim.chance(p.lost_answer_p) {
            Fate::LostAnswer
        } else {
            Fate::Ok
        };
        let (result, extra) = match fate {
            Fate::Failed => (Err(fail("injected failure before the call was applied")), 0),
            Fate::LostAnswer => {
                let (r, extra) = apply();
                let s = summary(&r);
                self.sim
                    .trace(|| format!("{task} {}.{op} {what} applied, answer lost: {s}", port));
                (Err(fail("injected: applied, answer lost")), extra)
            }
            Fate::Ok => apply(),
        };
        let s = summary(&result);
        self.sim
            .trace(|| format!("{task} {}.{op} {what} -> {s}", port));
        self.sim.sleep(total - first + extra).await;
        if crash_after_apply {
            self.sim
                .trace(|| format!("{task} CRASH after {}.{op}", port));
            match self.sim.crash_current().await {}
        }
        result
    }
}
