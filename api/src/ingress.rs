//! Where the status summary gets the ingress replicas' health ([`IngressHealth`]): an
//! [`IngressSource`] in the API's state.
//!
//! - The local runner runs the ingress in its own process and passes a closure over the
//!   ingress's metrics (`runner/src/content_http.rs`).
//! - On AWS the replicas are ECS tasks; each writes a heartbeat record to the state store, and the
//!   `proof` Lambda's source reads those records (wired in `lambdas/src/bin/proof.rs`, next to
//!   the dead-letter queues). Without a source the summary says "not wired" rather than "no
//!   replica".
//!
//! Rates: a source reports cumulative counts; [`Rates`] turns successive reports of a replica
//! into accepted-per-second over the interval between them (at least [`MIN_INTERVAL_MS`]), for
//! sources that do not measure a rate themselves.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

pub use sequencer_handlers::query::{IngressHealth, IngressPath};

/// What a source answers: the replicas that reported, or why it could not tell.
pub type IngressResult = Result<Vec<IngressHealth>, String>;

/// A source of ingress health.
pub trait IngressSource: Send + Sync {
    /// The replicas' current health.
    fn replicas(&self) -> Pin<Box<dyn Future<Output = IngressResult> + Send + '_>>;
}

/// A closure answering at once (an in-process ingress) is a source.
impl<F> IngressSource for F
where
    F: Fn() -> IngressResult + Send + Sync,
{
    fn replicas(&self) -> Pin<Box<dyn Future<Output = IngressResult> + Send + '_>> {
        let r = self();
        Box::pin(async move { r })
    }
}

/// Shortest interval a rate is measured over: shorter ones keep the previous rate.
pub const MIN_INTERVAL_MS: i64 = 1_000;

/// The last sample of one (replica, path).
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    accepted: u64,
    rate: Option<f64>,
}

/// Accepted-per-second from successive cumulative reports (see the module docs).
#[derive(Debug, Default)]
pub struct Rates {
    last: Mutex<HashMap<(String, String), Sample>>,
}

impl Rates {
    /// Fills `accepted_per_sec` where a source left it empty. A counter that went down (the
    /// replica restarted) starts over without a rate.
    pub fn fill(&self, replicas: &mut [IngressHealth]) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        for r in replicas.iter_mut() {
            for p in r.paths.iter_mut() {
                let key = (r.replica.clone(), p.path.clone());
                let prev = last.get(&key).copied();
                let sample = match prev {
                    Some(s) if r.at_ms - s.at_ms >= MIN_INTERVAL_MS && p.accepted >= s.accepted => {
                        let secs = (r.at_ms - s.at_ms) as f64 / 1000.0;
                        Sample {
                            at_ms: r.at_ms,
                            accepted: p.accepted,
                            rate: Some((p.accepted - s.accepted) as f64 / secs),
                        }
                    }
                    Some(s) if r.at_ms >= s.at_ms && p.accepted >= s.accepted => s,
                    _ => Sample {
                        at_ms: r.at_ms,
                        accepted: p.accepted,
                        rate: None,
                    },
                };
                last.insert(key, sample);
                if p.accepted_per_sec.is_none() {
                    p.accepted_per_sec = sample.rate;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(at_ms: i64, accepted: u64) -> Vec<IngressHealth> {
        vec![IngressHealth {
            replica: "r1".into(),
            at_ms,
            connections: 1,
            streams: 1,
            paths: vec![IngressPath {
                path: "collect".into(),
                accepted,
                rejected: 0,
                accepted_per_sec: None,
            }],
        }]
    }

    fn rate(r: &[IngressHealth]) -> Option<f64> {
        r[0].paths[0].accepted_per_sec
    }

    #[test]
    fn rates_come_from_successive_reports() {
        let rates = Rates::default();
        let mut a = report(10_000, 100);
        rates.fill(&mut a);
        assert_eq!(rate(&a), None, "one report has no rate");
        let mut b = report(10_400, 120);
        rates.fill(&mut b);
        assert_eq!(rate(&b), None, "under a second: not measured yet");
        let mut c = report(12_000, 300);
        rates.fill(&mut c);
        assert_eq!(rate(&c), Some(100.0), "200 over 2 s");
        let mut d = report(12_500, 320);
        rates.fill(&mut d);
        assert_eq!(rate(&d), Some(100.0), "the last rate until the next second");
        // A restarted replica (its counter went down) starts over.
        let mut e = report(14_000, 5);
        rates.fill(&mut e);
        assert_eq!(rate(&e), None);
        // A source's own rate wins.
        let mut f = report(16_000, 205);
        f[0].paths[0].accepted_per_sec = Some(7.0);
        rates.fill(&mut f);
        assert_eq!(rate(&f), Some(7.0));
    }
}
