//! Content ids seen recently, to count a submission that arrives twice (on both paths, or twice on
//! one): `ingress_path_duplicates_total{path,first_seen}`. Counting only: every copy still goes to
//! the queue, where the verifier keeps one per (project, slot) and treats a byte-identical body
//! under the same id as a redelivery. Bounded by entries and age, so it costs a fixed few MiB.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::metrics::Path;

/// Entries kept (≈ 100 bytes each: ≈ 10 MiB). At 1 000 submissions/s the window is then 100 s,
/// still far longer than the gap between a collector's two writes of one submission.
pub const SEEN_CAPACITY: usize = 100_000;

/// Longest an entry is kept.
pub const SEEN_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct Inner {
    first: HashMap<Uuid, (Path, Instant)>,
    order: VecDeque<(Uuid, Instant)>,
}

/// The recent content ids and the path each was first seen on.
#[derive(Debug)]
pub struct SeenIds {
    inner: Mutex<Inner>,
    capacity: usize,
    window: Duration,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::new(SEEN_CAPACITY, SEEN_WINDOW)
    }
}

impl SeenIds {
    /// A set of at most `capacity` ids, each kept at most `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            window,
        }
    }

    /// Records `id` arriving by `path`; returns the path it was first seen on if it was seen
    /// within the window.
    pub fn observe(&self, id: Uuid, path: Path) -> Option<Path> {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *g;
        while let Some((old, at)) = st.order.front().copied() {
            if st.order.len() < self.capacity && now.saturating_duration_since(at) < self.window {
                break;
            }
            st.order.pop_front();
            if st.first.get(&old).is_some_and(|(_, t)| *t == at) {
                st.first.remove(&old);
            }
        }
        if let Some((p, _)) = st.first.get(&id) {
            return Some(*p);
        }
        st.first.insert(id, (path, now));
        st.order.push_back((id, now));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_path_is_remembered_within_bounds() {
        let s = SeenIds::new(2, Duration::from_secs(60));
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert_eq!(s.observe(a, Path::Collect), None);
        assert_eq!(s.observe(a, Path::Gossipsub), Some(Path::Collect));
        assert_eq!(s.observe(b, Path::Gossipsub), None);
        // Capacity 2: c pushes a out.
        assert_eq!(s.observe(c, Path::Gossipsub), None);
        assert_eq!(s.observe(a, Path::Gossipsub), None);
        let expired = SeenIds::new(10, Duration::ZERO);
        assert_eq!(expired.observe(a, Path::Collect), None);
        assert_eq!(expired.observe(a, Path::Collect), None);
    }
}
