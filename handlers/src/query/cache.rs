//! The bounded map behind the queries' caches.

use std::collections::{HashMap, VecDeque};

/// A bounded map with first-in-first-out eviction (entries never change once inserted, so
/// recency buys little over insertion order).
#[derive(Debug)]
pub(super) struct Bounded<V> {
    cap: usize,
    map: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V: Clone> Bounded<V> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, k: &str) -> Option<V> {
        self.map.get(k).cloned()
    }

    pub(super) fn insert(&mut self, k: String, v: V) {
        if self.cap == 0 || self.map.contains_key(&k) {
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(k.clone());
        self.map.insert(k, v);
    }
}
