//! Circuit breaker per (app, service): fail fast while the service is failing.
//!
//! Rules this module keeps (docs/style.md habit 7):
//! * The state machine ([`Machine`]) is pure and runs on its own task; the request path only
//!   reads a lock-free [`Gate`] (one atomic load when closed) and sends the outcome of each call
//!   on a channel. The task is owned by the [`Breaker`]: it ends when the breaker is dropped
//!   (it left the table) because the channel closes.
//! * Failures are: no connection, a timeout, a send failure, or a 502/503/504 from the service.
//!   A call slower than `slow_call.threshold_ms` is slow.
//! * Closed → open when, in the last `window_ms`, at least `min_requests` calls were seen and
//!   failures / calls ≥ `failure_ratio` (or slow / calls ≥ `slow_call.ratio`). Open answers
//!   503 `circuit_open` without calling the service. After `open_for_ms` it is half-open: exactly
//!   `half_open_probes` calls go through; all succeed → closed (fresh window), any fails → open.
//!   A probe abandoned by its client gives its slot back.
//! * Time is `tokio::time` (habit 8): tests of the machine run with `start_paused`.

use berth_core::policy::CircuitBreaker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::lock;

/// The breaker is open: the service is not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen;

/// The state as the gate shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }
}

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success {
        slow: bool,
    },
    Failure,
    /// The client went away before the call ended: says nothing about the service.
    Abandoned,
}

/// What the request path reads: the state and, when half-open, the probe slots left.
#[derive(Debug)]
pub struct Gate {
    state: AtomicU8,
    probes: AtomicU32,
}

impl Gate {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(State::Closed as u8),
            probes: AtomicU32::new(0),
        }
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, state: State, probes: u32) {
        self.probes.store(probes, Ordering::Release);
        self.state.store(state as u8, Ordering::Release);
    }

    /// May a call go through? `Some(true)` for a half-open probe.
    fn admit(&self) -> Option<bool> {
        match self.state() {
            State::Closed => Some(false),
            State::Open => None,
            State::HalfOpen => self
                .probes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
                .ok()
                .map(|_| true),
        }
    }
}

/// An event the task receives.
#[derive(Debug, Clone, Copy)]
struct Event {
    outcome: Outcome,
    probe: bool,
    at: Instant,
}

/// One service's breaker.
pub struct Breaker {
    /// The policy it enforces (compared on table swaps).
    pub config: CircuitBreaker,
    gate: Arc<Gate>,
    tx: mpsc::UnboundedSender<Event>,
    /// Taken by the task when the first call is admitted (the registry may be built outside a
    /// runtime; every request runs inside one).
    rx: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    started: AtomicBool,
}

/// A call let through the breaker. Report its outcome with [`Ticket::finish`]; dropped
/// unreported it counts as [`Outcome::Abandoned`].
pub struct Ticket {
    tx: mpsc::UnboundedSender<Event>,
    probe: bool,
    done: bool,
}

impl Ticket {
    /// Report how the call ended.
    pub fn finish(mut self, outcome: Outcome) {
        self.send(outcome);
    }

    fn send(&mut self, outcome: Outcome) {
        self.done = true;
        let _ = self.tx.send(Event {
            outcome,
            probe: self.probe,
            at: Instant::now(),
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.send(Outcome::Abandoned);
        }
    }
}

impl Breaker {
    /// A closed breaker for `config`; its task starts with the first call.
    #[must_use]
    pub fn new(config: CircuitBreaker) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            config,
            gate: Arc::new(Gate::new()),
            tx,
            rx: Mutex::new(Some(rx)),
            started: AtomicBool::new(false),
        }
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> State {
        self.gate.state()
    }

    /// Let a call through, or fail fast. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BreakerOpen`] while open, and while half-open once every probe slot is taken.
    pub fn admit(&self) -> Result<Ticket, BreakerOpen> {
        if !self.started.load(Ordering::Acquire) {
            self.start();
        }
        let probe = self.gate.admit().ok_or(BreakerOpen)?;
        Ok(Ticket {
            tx: self.tx.clone(),
            probe,
            done: false,
        })
    }

    fn start(&self) {
        let Some(rx) = lock(&self.rx).take() else {
            return;
        };
        self.started.store(true, Ordering::Release);
        tokio::spawn(run(
            Machine::new(self.config.clone()),
            self.gate.clone(),
            rx,
        ));
    }
}

/// The breaker's task: apply outcomes, and move from open to half-open on time.
async fn run(mut machine: Machine, gate: Arc<Gate>, mut rx: mpsc::UnboundedReceiver<Event>) {
    loop {
        let reopen = machine.open_until();
        let event = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => Some(e),
                None => return, // The breaker left the table.
            },
            () = sleep_until(reopen) => None,
        };
        let changed = match event {
            Some(e) => machine.record(e.at, e.outcome, e.probe),
            None => machine.tick(Instant::now()),
        };
        if let Some(state) = changed {
            tracing::info!(state = ?state, "gateway: circuit breaker changed state");
            let probes = match state {
                State::HalfOpen => machine.config.half_open_probes.max(1),
                _ => 0,
            };
            gate.set(state, probes);
        }
        if let Some(Event {
            outcome: Outcome::Abandoned,
            probe: true,
            ..
        }) = event
        {
            if machine.state == State::HalfOpen {
                gate.probes.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts of one slice of the window.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    calls: u32,
    failures: u32,
    slow: u32,
}

/// The breaker's state machine, pure: fed outcomes and the time, it says when the state changes.
#[derive(Debug)]
pub struct Machine {
    config: CircuitBreaker,
    state: State,
    opened_at: Option<Instant>,
    buckets: VecDeque<Bucket>,
    probe_successes: u32,
}

/// The window is kept as this many buckets.
const BUCKETS: u32 = 10;

impl Machine {
    /// A closed machine.
    #[must_use]
    pub fn new(config: CircuitBreaker) -> Self {
        Self {
            config,
            state: State::Closed,
            opened_at: None,
            buckets: VecDeque::new(),
            probe_successes: 0,
        }
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.config.window_ms.max(1))
    }

    /// When an open breaker becomes half-open.
    #[must_use]
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            State::Open => self
                .opened_at
                .map(|t| t + Duration::from_millis(self.config.open_for_ms)),
            _ => None,
        }
    }

    /// Move to half-open if the open time is over.
    pub fn tick(&mut self, now: Instant) -> Option<State> {
        match self.open_until() {
            Some(until) if now >= until => {
                self.state = State::HalfOpen;
                self.probe_successes = 0;
                Some(State::HalfOpen)
            }
            _ => None,
        }
    }

    fn open(&mut self, now: Instant) -> Option<State> {
        self.state = State::Open;
        self.opened_at = Some(now);
        self.buckets.clear();
        Some(State::Open)
    }

    /// Apply one call's outcome; the new state if it changed.
    pub fn record(&mut self, now: Instant, outcome: Outcome, probe: bool) -> Option<State> {
        if let Some(s) = self.tick(now) {
            // Timer and event raced: apply the transition first; the event is from before.
            return Some(s);
        }
        match self.state {
            State::Open => None,
            State::HalfOpen => {
                if !probe {
                    return None;
                }
                match outcome {
                    Outcome::Failure => self.open(now),
                    Outcome::Success { .. } => {
                        self.probe_successes += 1;
                        if self.probe_successes >= self.config.half_open_probes.max(1) {
                            self.state = State::Closed;
                            self.buckets.clear();
                            return Some(State::Closed);
                        }
                        None
                    }
                    Outcome::Abandoned => None,
                }
            }
            State::Closed => {
                let (failed, slow) = match outcome {
                    Outcome::Failure => (true, false),
                    Outcome::Success { slow } => (false, slow),
                    Outcome::Abandoned => return None,
                };
                self.count(now, failed, slow);
                self.should_open().then(|| self.open(now)).flatten()
            }
        }
    }

    fn count(&mut self, now: Instant, failed: bool, slow: bool) {
        let window = self.window();
        while self
            .buckets
            .front()
            .is_some_and(|b| now.duration_since(b.start) >= window)
        {
            self.buckets.pop_front();
        }
        let width = window / BUCKETS;
        let fresh = self
            .buckets
            .back()
            .is_none_or(|b| now.duration_since(b.start) >= width);
        if fresh {
            self.buckets.push_back(Bucket {
                start: now,
                calls: 0,
                failures: 0,
                slow: 0,
            });
        }
        if let Some(b) = self.buckets.back_mut() {
            b.calls += 1;
            b.failures += u32::from(failed);
            b.slow += u32::from(slow);
        }
    }

    fn should_open(&self) -> bool {
        let (calls, failures, slow) = self.buckets.iter().fold((0u32, 0u32, 0u32), |a, b| {
            (a.0 + b.calls, a.1 + b.failures, a.2 + b.slow)
        });
        if calls == 0 || calls < self.config.min_requests {
            return false;
        }
        let calls_f = f64::from(calls);
        let failing = self.config.failure_ratio > 0.0
            && f64::from(failures) / calls_f >= self.config.failure_ratio;
        let slow = self
            .config
            .slow_call
            .as_ref()
            .is_some_and(|s| s.ratio > 0.0 && f64::from(slow) / calls_f >= s.ratio);
        failing || slow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::policy::SlowCall;

    fn config() -> CircuitBreaker {
        CircuitBreaker {
            failure_ratio: 0.5,
            min_requests: 4,
            window_ms: 1000,
            open_for_ms: 500,
            half_open_probes: 2,
            slow_call: Some(SlowCall {
                threshold_ms: 100,
                ratio: 0.75,
            }),
        }
    }

    const OK: Outcome = Outcome::Success { slow: false };

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_ratio_with_enough_requests() {
        let mut m = Machine::new(config());
        let t = Instant::now();
        assert_eq!(m.record(t, Outcome::Failure, false), None);
        assert_eq!(m.record(t, Outcome::Failure, false), None);
        assert_eq!(m.record(t, OK, false), None, "3 < min_requests");
        assert_eq!(m.record(t, OK, false), Some(State::Open), "2/4 ≥ 0.5");
        assert_eq!(m.open_until(), Some(t + Duration::from_millis(500)));
        assert_eq!(m.tick(t + Duration::from_millis(499)), None);
        assert_eq!(
            m.tick(t + Duration::from_millis(500)),
            Some(State::HalfOpen)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let mut m = Machine::new(config());
        let t = Instant::now();
        m.record(t, Outcome::Failure, false);
        m.record(t, Outcome::Failure, false);
        let later = t + Duration::from_millis(1500);
        for _ in 0..3 {
            assert_eq!(m.record(later, OK, false), None);
        }
        assert_eq!(m.record(later, Outcome::Failure, false), None, "1/4 < 0.5");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_open_too() {
        let mut m = Machine::new(config());
        let t = Instant::now();
        let slow = Outcome::Success { slow: true };
        for _ in 0..3 {
            assert_eq!(m.record(t, slow, false), None);
        }
        assert_eq!(m.record(t, slow, false), Some(State::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probes_decide() {
        let mut m = Machine::new(config());
        let t = Instant::now();
        for _ in 0..4 {
            m.record(t, Outcome::Failure, false);
        }
        assert_eq!(m.state(), State::Open);
        let t1 = t + Duration::from_millis(500);
        assert_eq!(m.tick(t1), Some(State::HalfOpen));
        assert_eq!(m.record(t1, OK, false), None, "non-probe ignored");
        assert_eq!(m.record(t1, OK, true), None);
        assert_eq!(m.record(t1, Outcome::Failure, true), Some(State::Open));
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!(m.tick(t2), Some(State::HalfOpen));
        assert_eq!(m.record(t2, OK, true), None);
        assert_eq!(m.record(t2, OK, true), Some(State::Closed));
        assert_eq!(m.record(t2, Outcome::Failure, false), None, "fresh window");
    }

    #[tokio::test(start_paused = true)]
    async fn gate_and_task() {
        let b = Breaker::new(config());
        for _ in 0..4 {
            b.admit().unwrap().finish(Outcome::Failure);
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::Open);
        assert!(b.admit().is_err());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(b.state(), State::HalfOpen);
        let p1 = b.admit().unwrap();
        let p2 = b.admit().unwrap();
        assert!(b.admit().is_err(), "only two probes");
        drop(p2); // abandoned: its slot comes back
        tokio::time::sleep(Duration::from_millis(1)).await;
        let p3 = b.admit().unwrap();
        p1.finish(OK);
        p3.finish(OK);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::Closed);
    }
}
