//! Mesh health, as the swarm task sees it every second: what `/readyz` reports in its detail and
//! the `gossip_*` gauges show. States follow the collectors' own monitor: `healthy` (at least 2
//! mesh peers on both topics), `degraded` (fewer on one), `pruned` (none on either), plus `alone`
//! (no gossip peer connected at all: normal for a market whose only peer is this ingress).
//! Gossipsub never makes the ingress unready: `/collect` works without it.

use std::sync::{Arc, Mutex};

/// One snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshHealth {
    /// `<prefix>/all`: (topic, mesh peers, subscribed peers).
    pub all: (String, usize, usize),
    /// `<prefix>/0`: (topic, mesh peers, subscribed peers).
    pub zero: (String, usize, usize),
    /// Connections admitted to the peer-to-peer protocols (inbound, outbound).
    pub connections: (usize, usize),
    /// Messages waiting for the validator.
    pub validation_queue: usize,
}

impl MeshHealth {
    /// `healthy`, `degraded`, `pruned` or `alone`.
    pub fn state(&self) -> &'static str {
        let (all, zero) = (self.all.1, self.zero.1);
        if self.connections == (0, 0) {
            "alone"
        } else if all == 0 && zero == 0 {
            "pruned"
        } else if all < 2 || zero < 2 {
            "degraded"
        } else {
            "healthy"
        }
    }

    /// The detail line of `/readyz`.
    pub fn detail(&self) -> String {
        format!(
            "gossipsub {}: mesh {}={} {}={}; subscribed {}={} {}={}; connections in={} out={}; validation_queue={}",
            self.state(),
            self.all.0,
            self.all.1,
            self.zero.0,
            self.zero.1,
            self.all.0,
            self.all.2,
            self.zero.0,
            self.zero.2,
            self.connections.0,
            self.connections.1,
            self.validation_queue,
        )
    }
}

/// The latest snapshot, shared between the swarm task (writer) and `/readyz` (reader).
#[derive(Debug, Clone, Default)]
pub struct SharedHealth(Arc<Mutex<Option<MeshHealth>>>);

impl SharedHealth {
    /// Replaces the snapshot.
    pub fn set(&self, h: MeshHealth) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    /// The latest snapshot (`None` before the first, or with gossipsub off).
    pub fn get(&self) -> Option<MeshHealth> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let mut h = MeshHealth {
            all: ("/p/all".into(), 3, 4),
            zero: ("/p/0".into(), 2, 4),
            connections: (4, 0),
            validation_queue: 0,
        };
        assert_eq!(h.state(), "healthy");
        h.zero.1 = 1;
        assert_eq!(h.state(), "degraded");
        h.zero.1 = 0;
        h.all.1 = 0;
        assert_eq!(h.state(), "pruned");
        h.connections = (0, 0);
        assert_eq!(h.state(), "alone");
        assert!(h
            .detail()
            .starts_with("gossipsub alone: mesh /p/all=0 /p/0=0;"));
    }
}
