//! Captures the handlers' WARN and ERROR events (e.g. `record failed; it will be redelivered`
//! with its message id and error) into the ledger, stamped with virtual time and the task, so an
//! invariant failure can say which handler failed how.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::exec::Sim;
use crate::ledger::{Ledger, Logged};

/// The layer.
pub struct Capture {
    sim: Sim,
    ledger: Arc<Mutex<Ledger>>,
}

impl Capture {
    /// Captures into `ledger`.
    pub fn new(sim: Sim, ledger: Arc<Mutex<Ledger>>) -> Self {
        Self { sim, ledger }
    }
}

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={}", field.name(), value);
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let logged = Logged {
            at: self.sim.now(),
            task: self.sim.current_name(),
            level: level.to_string(),
            fields: f.0,
        };
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .logged
            .push(logged);
    }
}
