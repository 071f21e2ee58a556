//! The deterministic executor: one thread, virtual time, a seeded RNG for every choice.
//!
//! Tasks are futures. The executor polls one ready task at a time, chosen by the RNG among all
//! ready tasks, so the seed decides every interleaving. Nothing ever sleeps on the wall clock:
//! when no task is ready, virtual time jumps to the earliest timer. Port calls park on timers
//! ([`Sim::sleep`]) for their latency, so every port call is a scheduling point.
//!
//! A task can be *killed*: dropped between two polls, as Lambda drops an invocation at its
//! timeout or a crash kills it. Killing is how crash faults are injected: the gate
//! ([`crate::gate`]) asks for [`Sim::crash_current`] between two port calls and never returns.
//!
//! Every poll and every port call is folded into a trace hash ([`Sim::trace_hash`]); a seed run
//! twice must give the same hash, which is how determinism is asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::BoxFuture;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// A task's id (spawn order).
pub type TaskId = u64;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// Dropped by a crash fault between two port calls.
    Crashed,
    /// Dropped at its deadline (Lambda's timeout).
    TimedOut,
}

enum Timer {
    Wake(Waker),
    Deadline(TaskId),
}

struct TaskMeta {
    name: String,
    /// Port calls made so far (crash faults count them).
    calls: u32,
    /// Crash at this port call (0-based), if the task is crashable.
    crash_at_call: Option<u32>,
}

struct Shared {
    now: u64,
    seq: u64,
    next_task: TaskId,
    timers: BTreeMap<(u64, u64), Timer>,
    ready: BTreeSet<TaskId>,
    spawned: Vec<(TaskId, BoxFuture<'static, ()>)>,
    meta: BTreeMap<TaskId, TaskMeta>,
    current: Option<TaskId>,
    kill: BTreeMap<TaskId, Killed>,
    ended: BTreeMap<TaskId, Option<Killed>>,
    join_waiters: BTreeMap<TaskId, Vec<Waker>>,
    rng: ChaCha8Rng,
    trace: Sha256,
    events: u64,
    log: Option<Vec<String>>,
}

/// A handle on the simulation's scheduler: virtual time, randomness, spawning, tracing.
/// Cloned into every port and actor.
#[derive(Clone)]
pub struct Sim(Arc<Mutex<Shared>>);

struct TaskWaker {
    id: TaskId,
    sim: std::sync::Weak<Mutex<Shared>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(s) = self.sim.upgrade() {
            let mut g = lock(&s);
            if !g.ended.contains_key(&self.id) {
                g.ready.insert(self.id);
            }
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // One thread: a poisoned lock only follows a panic that fails the run anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why [`Sim::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No task is ready and no timer is set.
    Idle,
    /// The next event lies past the limit.
    Limit,
    /// The stop condition held.
    Condition,
}

impl Sim {
    /// A scheduler seeded with `seed`; `log` keeps a readable line per traced event.
    pub fn new(seed: u64, log: bool) -> Self {
        Sim(Arc::new(Mutex::new(Shared {
            now: 0,
            seq: 0,
            next_task: 0,
            timers: BTreeMap::new(),
            ready: BTreeSet::new(),
            spawned: Vec::new(),
            meta: BTreeMap::new(),
            current: None,
            kill: BTreeMap::new(),
            ended: BTreeMap::new(),
            join_waiters: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            trace: Sha256::new(),
            events: 0,
            log: log.then(Vec::new),
        })))
    }

    fn g(&self) -> MutexGuard<'_, Shared> {
        lock(&self.0)
    }

    /// Virtual milliseconds since the start.
    pub fn now(&self) -> u64 {
        self.g().now
    }

    /// A uniform draw in `range`.
    pub fn rand_range(&self, range: std::ops::Range<u64>) -> u64 {
        if range.is_empty() {
            return range.start;
        }
        self.g().rng.random_range(range)
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.g().rng.random_bool(p.min(1.0))
    }

    /// Random bytes.
    pub fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        self.g().rng.fill(&mut b[..]);
        b
    }

    /// Folds an event into the trace hash (and the log, when kept).
    pub fn trace(&self, what: impl FnOnce() -> String) {
        let mut g = self.g();
        let line = format!("{} {:?} {}", g.now, g.current, what());
        g.trace.update(line.as_bytes());
        g.trace.update(b"\n");
        g.events += 1;
        if let Some(log) = g.log.as_mut() {
            log.push(line);
        }
    }

    /// The trace hash so far and the number of events in it.
    pub fn trace_hash(&self) -> (String, u64) {
        let g = self.g();
        (hex::encode(g.trace.clone().finalize()), g.events)
    }

    /// The kept log lines (empty unless logging was asked for).
    pub fn take_log(&self) -> Vec<String> {
        self.g()
            .log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Sleeps `ms` of virtual time (0: yields to the scheduler).
    pub fn sleep(&self, ms: u64) -> Sleep {
        let at = self.now().saturating_add(ms);
        Sleep {
            sim: self.clone(),
            at,
            key: None,
        }
    }

    /// Sleeps until virtual time `at`.
    pub fn sleep_until(&self, at: u64) -> Sleep {
        Sleep {
            sim: self.clone(),
            at,
            key: None,
        }
    }

    /// Spawns a task that is never killed (an actor).
    pub fn spawn<F>(&self, name: impl Into<String>, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_inner(name.into(), fut, None, None)
    }

    /// Spawns a killable task (a Lambda invocation): dropped at `deadline` (virtual ms) if it
    /// has not finished, and crashed at port call `crash_at_call` if it makes that many.
    pub fn spawn_invocation<F>(
        &self,
        name: impl Into<String>,
        fut: F,
        deadline: u64,
        crash_at_call: Option<u32>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_inner(name.into(), fut, Some(deadline), crash_at_call)
    }

    fn spawn_inner<F>(
        &self,
        name: String,
        fut: F,
        deadline: Option<u64>,
        crash_at_call: Option<u32>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let slot: Arc<Mutex<Option<F::Output>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let wrapped: BoxFuture<'static, ()> = Box::pin(async move {
            let v = fut.await;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        });
        let mut g = self.g();
        let id = g.next_task;
        g.next_task += 1;
        g.spawned.push((id, wrapped));
        g.ready.insert(id);
        g.meta.insert(
            id,
            TaskMeta {
                name,
                calls: 0,
                crash_at_call,
            },
        );
        if let Some(d) = deadline {
            let seq = g.seq;
            g.seq += 1;
            g.timers.insert((d, seq), Timer::Deadline(id));
        }
        JoinHandle {
            sim: self.clone(),
            id,
            slot,
        }
    }

    /// The running task's name (`"-"` outside a task).
    pub fn current_name(&self) -> String {
        let g = self.g();
        g.current
            .and_then(|id| g.meta.get(&id))
            .map_or_else(|| "-".to_string(), |m| m.name.clone())
    }

    /// Counts a port call of the running task; true when the task must crash here.
    pub fn count_call(&self) -> bool {
        let mut g = self.g();
        let Some(id) = g.current else { return false };
        let Some(m) = g.meta.get_mut(&id) else {
            return false;
        };
        let n = m.calls;
        m.calls += 1;
        m.crash_at_call == Some(n)
    }

    /// Kills the running task: it is dropped as soon as this poll returns. Await the result
    /// (it never completes).
    pub fn crash_current(&self) -> Never {
        let mut g = self.g();
        if let Some(id) = g.current {
            g.kill.insert(id, Killed::Crashed);
        }
        Never
    }

    /// Runs until no task is ready and no timer is left, the next event lies past `limit`
    /// (virtual ms), or `stop` holds (checked whenever time advances).
    pub fn run(&self, limit: u64, mut stop: impl FnMut() -> bool) -> Stop {
        let mut tasks: BTreeMap<TaskId, BoxFuture<'static, ()>> = BTreeMap::new();
        loop {
            // Poll ready tasks, one at a time, in an order the RNG chooses.
            loop {
                let next = {
                    let mut g = self.g();
                    for (id, f) in std::mem::take(&mut g.spawned) {
                        tasks.insert(id, f);
                    }
                    if g.ready.is_empty() {
                        None
                    } else {
                        let n = g.ready.len();
                        let i = g.rng.random_range(0..n);
                        let id = *g.ready.iter().nth(i).unwrap_or(&0);
                        g.ready.remove(&id);
                        g.current = Some(id);
                        // Every scheduling decision goes into the trace hash.
                        let now = g.now;
                        g.trace.update(now.to_le_bytes());
                        g.trace.update(id.to_le_bytes());
                        Some(id)
                    }
                };
                let Some(id) = next else { break };
                let done = match tasks.get_mut(&id) {
                    Some(f) => {
                        let waker = Waker::from(Arc::new(TaskWaker {
                            id,
                            sim: Arc::downgrade(&self.0),
                        }));
                        let mut cx = Context::from_waker(&waker);
                        f.as_mut().poll(&mut cx).is_ready()
                    }
                    None => false,
                };
                let killed = {
                    let mut g = self.g();
                    g.current = None;
                    g.kill.remove(&id)
                };
                if done || killed.is_some() {
                    // Dropped outside the lock: a dropped future may touch the scheduler.
                    let f = tasks.remove(&id);
                    drop(f);
                    self.finish(id, killed);
                }
            }
            if stop() {
                return Stop::Condition;
            }
            // Advance time to the earliest timer; fire every timer due then.
            let fired = {
                let mut g = self.g();
                let Some((&(at, _), _)) = g.timers.first_key_value() else {
                    return Stop::Idle;
                };
                if at > limit {
                    return Stop::Limit;
                }
                g.now = g.now.max(at);
                let mut fired = Vec::new();
                while let Some(e) = g.timers.first_entry() {
                    if e.key().0 > at {
                        break;
                    }
                    fired.push(e.remove());
                }
                fired
            };
            for t in fired {
                match t {
                    Timer::Wake(w) => w.wake(),
                    Timer::Deadline(id) => {
                        if tasks.contains_key(&id) {
                            let f = tasks.remove(&id);
                            drop(f);
                            self.trace(|| format!("deadline kills task {id}"));
                            self.finish(id, Some(Killed::TimedOut));
                        }
                    }
                }
            }
        }
    }

    fn finish(&self, id: TaskId, how: Option<Killed>) {
        let waiters = {
            let mut g = self.g();
            g.ended.insert(id, how);
            g.ready.remove(&id);
            g.meta.remove(&id);
            g.join_waiters.remove(&id).unwrap_or_default()
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Tasks alive (spawned, not ended).
    pub fn live_tasks(&self) -> usize {
        self.g().meta.len()
    }
}

/// A future that never completes (the task awaiting it is being killed).
pub struct Never;

impl Future for Never {
    type Output = std::convert::Infallible;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Pending
    }
}

/// [`Sim::sleep`]'s future.
pub struct Sleep {
    sim: Sim,
    at: u64,
    key: Option<(u64, u64)>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.sim.g();
        if let Some(k) = self.key {
            if !g.timers.contains_key(&k) {
                // Fired.
                drop(g);
                self.key = None;
                return Poll::Ready(());
            }
            g.timers.insert(k, Timer::Wake(cx.waker().clone()));
            return Poll::Pending;
        }
        let seq = g.seq;
        g.seq += 1;
        let at = self.at.max(g.now);
        g.timers.insert((at, seq), Timer::Wake(cx.waker().clone()));
        drop(g);
        self.key = Some((at, seq));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.sim.g().timers.remove(&k);
        }
    }
}

/// A spawned task's result: its output, or how it was killed.
pub struct JoinHandle<T> {
    sim: Sim,
    id: TaskId,
    slot: Arc<Mutex<Option<T>>>,
}

impl<T> JoinHandle<T> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Killed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.sim.g();
        match g.ended.get(&self.id) {
            Some(Some(k)) => Poll::Ready(Err(*k)),
            Some(None) => {
                let v = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                // A completed task always stored its output; taking it twice is a bug.
                Poll::Ready(v.ok_or(Killed::Crashed))
            }
            None => {
                g.join_waiters
                    .entry(self.id)
                    .or_default()
                    .push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn interleaving(seed: u64) -> Vec<u64> {
        let sim = Sim::new(seed, false);
        let order = Arc::new(Mutex::new(Vec::new()));
        for t in 0..4u64 {
            let s = sim.clone();
            let o = order.clone();
            sim.spawn(format!("t{t}"), async move {
                for i in 0..3 {
                    o.lock().unwrap_or_else(|p| p.into_inner()).push(t * 10 + i);
                    s.sleep(0).await;
                }
            });
        }
        assert_eq!(sim.run(u64::MAX, || false), Stop::Idle);
        let v = order.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v
    }

    #[test]
    fn the_seed_decides_the_interleaving_and_repeats_it() {
        assert_eq!(interleaving(7), interleaving(7));
        let distinct: BTreeSet<Vec<u64>> = (0..20).map(interleaving).collect();
        assert!(distinct.len() > 5, "seeds give different interleavings");
    }

    #[test]
    fn virtual_time_jumps_to_the_next_timer_and_deadlines_kill() {
        let sim = Sim::new(1, false);
        let s = sim.clone();
        let woke = Arc::new(AtomicU64::new(0));
        let w = woke.clone();
        let h = sim.spawn("sleeper", async move {
            s.sleep(3_600_000).await;
            w.store(s.now(), Ordering::SeqCst);
            7
        });
        let s2 = sim.clone();
        let k = sim.spawn_invocation(
            "slow",
            async move {
                s2.sleep(10_000).await;
                1
            },
            5_000,
            None,
        );
        let results = Arc::new(Mutex::new(None));
        let r = results.clone();
        sim.spawn("joiner", async move {
            let a = h.await;
            let b = k.await;
            *r.lock().unwrap_or_else(|p| p.into_inner()) = Some((a, b));
        });
        let started = std::time::Instant::now();
        assert_eq!(sim.run(u64::MAX, || false), Stop::Idle);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(woke.load(Ordering::SeqCst), 3_600_000);
        assert_eq!(
            *results.lock().unwrap_or_else(|p| p.into_inner()),
            Some((Ok(7), Err(Killed::TimedOut)))
        );
    }

    #[test]
    fn a_crash_drops_the_task_at_its_port_call() {
        let sim = Sim::new(3, false);
        let s = sim.clone();
        let steps = Arc::new(AtomicU64::new(0));
        let st = steps.clone();
        let h = sim.spawn_invocation(
            "victim",
            async move {
                for _ in 0..10 {
                    if s.count_call() {
                        s.crash_current().await;
                    }
                    st.fetch_add(1, Ordering::SeqCst);
                    s.sleep(1).await;
                }
            },
            u64::MAX,
            Some(4),
        );
        let out = Arc::new(Mutex::new(None));
        let o = out.clone();
        sim.spawn("join", async move {
            *o.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.await);
        });
        sim.run(u64::MAX, || false);
        assert_eq!(steps.load(Ordering::SeqCst), 4);
        assert_eq!(
            *out.lock().unwrap_or_else(|p| p.into_inner()),
            Some(Err(Killed::Crashed))
        );
    }
}
