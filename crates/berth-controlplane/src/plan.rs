//! The planner: what to do next for one service, as a pure function of desired and observed state.
//!
//! `plan(input) -> Vec<Step>` carries the hard logic (rolling update order, self-heal, restart
//! policies, scale, rollout failure); the executor only performs the steps. It is
//! level-triggered: the input is everything observed *now* and the output is the next safe
//! move, so a pass repeated after a crash, or twice, plans the same thing (docs/style.md habits 1–2).
//!
//! Rules it keeps:
//! - A replica is identified by (slot, spec hash). Replicas whose hash is the desired one are
//!   *current*; others are *old*. Replica counts never depend on names, only on labels.
//! - Start-first (default): a slot's old replica leaves rotation only after the slot's current
//!   replica is ready, so a healthy old replica is never stopped before its replacement serves.
//! - Stop-first: the old replica is drained and removed before the current one is created.
//! - A ready replica is never stopped without draining first: `Drain`, then `Remove` once the
//!   gateway reports no request in flight to it (or the drain deadline passes).
//! - `parallelism` bounds how many slots are being replaced at once; scale-up and first deploys
//!   are not bounded by it.
//! - A current replica that does not become ready within the rollout deadline while old ones
//!   still exist (an update), or keeps crashing, fails the rollout: `Failed` is reported and the
//!   caller decides (rollback, pause or continue).
//! - Paused (the revision's rollout failed, and this service's `failure_action` is `pause`): no
//!   further slot starts its update: old replicas keep serving their slots, a slot already
//!   updating finishes (or keeps its old replica), and healing, restarts and scale-up go on. Old
//!   replicas are never restarted, so a slot whose old replica died or is unhealthy gets a
//!   current one even while paused. A new revision (apply, even of the same file; scale;
//!   rollback) ends the pause.
//! - Given up (`Input::given_up`, the failures `max_failure_ratio` tolerates): such a slot's
//!   failure is not reported and it no longer counts as updating, so the other slots go on.
//! - Backoff: a slot whose last step failed (a create Docker refuses, a name taken, a start or
//!   removal that errors) gets no step until its retry time; the planner says when with
//!   `Wait`, so the caller requeues then instead of retrying in a loop. A slot that has kept
//!   failing for the rollout deadline, with no settled current replica, fails the rollout with
//!   the step's error.

use serde::{Deserialize, Serialize};

/// When Berth restarts a replica that exited (Compose `restart` / `deploy.restart_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartRule {
    Always,
    /// Restart on a non-zero exit, at most this many times (None: no limit).
    OnFailure(Option<u32>),
    Never,
}

/// Rolling update order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    StartFirst,
    StopFirst,
}

/// What Docker says a replica is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Created, never started (e.g. a crash between create and start).
    Created,
    Running,
    Exited(i64),
    /// Restarting, paused, removing, dead: leave it alone this pass unless it is surplus.
    Other,
}

/// Readiness as Berth sees it (its own probe, Docker's healthcheck, or "running").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Starting,
    Ready,
    /// Failed its probe enough times to be replaced.
    Unhealthy,
}

/// One observed replica of the service.
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: String,
    pub slot: u32,
    pub hash: String,
    pub state: ReplicaState,
    pub readiness: Readiness,
    /// Milliseconds since the replica was created.
    pub age_ms: u64,
    /// Restarts Berth has made of it.
    pub restarts: u32,
    /// A restart is allowed now (the crash-loop backoff has passed).
    pub restart_allowed: bool,
    /// Set once it has been taken out of rotation.
    pub draining: Option<Drain>,
}

/// A draining replica's progress.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Milliseconds since it left rotation.
    pub since_ms: u64,
    /// Requests the gateway still has in flight to it.
    pub in_flight: usize,
}

impl Replica {
    fn is_ready(&self) -> bool {
        self.state == ReplicaState::Running
            && self.readiness == Readiness::Ready
            && self.draining.is_none()
    }
}

/// Everything the planner needs about one service.
#[derive(Debug, Clone)]
pub struct Input {
    pub hash: String,
    pub replicas: u32,
    pub order: Order,
    /// 0 means all slots at once.
    pub parallelism: u32,
    pub restart: RestartRule,
    /// `depends_on` conditions hold: replicas may be created.
    pub deps_ready: bool,
    /// `update_config.delay` has passed since the last slot finished updating.
    pub delay_passed: bool,
    /// A current replica in an update must be ready within this.
    pub rollout_deadline_ms: u64,
    /// Least time a drained replica stays out of rotation before it is stopped, so a table
    /// swap has reached the gateway.
    pub min_drain_ms: u64,
    /// Most time to wait for in-flight requests of a draining replica.
    pub drain_timeout_ms: u64,
    /// The rollout failed and is paused: start no further slot's update.
    pub paused: bool,
    /// Slots whose update failed within `update_config.max_failure_ratio` (the application
    /// planner decides): the rollout goes on without them. They report no `Failed` and hold no
    /// place of `parallelism`; their replicas are still started, restarted and healed.
    pub given_up: Vec<u32>,
    pub observed: Vec<Replica>,
    /// Slots whose last step failed (at most one entry per slot).
    pub backoff: Vec<SlotBackoff>,
}

/// A slot whose steps keep failing: no step acts on it before its retry time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotBackoff {
    pub slot: u32,
    /// Failed steps in a row.
    pub failures: u32,
    /// Milliseconds until the slot may be acted on again (0: now).
    pub retry_in_ms: u64,
    /// Milliseconds since the first failure of this series.
    pub failing_for_ms: u64,
    /// What the last failure said (e.g. "create failed: ...").
    pub error: String,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create and start a current replica in this slot.
    Create { slot: u32 },
    /// Start an existing (created or exited) replica.
    Start { id: String },
    /// Restart a running replica that failed its health probe.
    Restart { id: String },
    /// Take a replica out of rotation; it is removed once drained.
    Drain { id: String },
    /// Stop (with the grace period) and remove a replica that is not in rotation.
    Remove { id: String },
    /// The update of this slot failed.
    Failed { slot: u32, reason: String },
    /// The slot's step is held back by its backoff: plan again in this many milliseconds.
    Wait { slot: u32, retry_in_ms: u64 },
}

/// A job finished: it exited and will not be restarted.
fn finished(r: &Replica, rule: RestartRule) -> bool {
    match (r.state, rule) {
        (ReplicaState::Exited(_), RestartRule::Never) => true,
        (ReplicaState::Exited(0), RestartRule::OnFailure(_)) => true,
        (ReplicaState::Exited(_), RestartRule::OnFailure(Some(max))) => r.restarts >= max,
        _ => false,
    }
}

/// Ready to serve, or a job that completed successfully: the slot needs nothing more.
#[must_use]
pub fn settled(r: &Replica, rule: RestartRule) -> bool {
    r.is_ready() || (finished(r, rule) && r.state == ReplicaState::Exited(0))
}

fn retire(r: &Replica) -> Step {
    if r.is_ready() {
        Step::Drain { id: r.id.clone() }
    } else {
        Step::Remove { id: r.id.clone() }
    }
}

/// Plan the next steps for one service.
#[must_use]
pub fn plan(input: &Input) -> Vec<Step> {
    let steps = plan_unthrottled(input);
    hold_back(input, steps)
}

/// The slot a step acts on (Drain never fails: it only takes a replica out of rotation).
pub(crate) fn step_slot(input: &Input, step: &Step) -> Option<u32> {
    match step {
        Step::Create { slot } => Some(*slot),
        Step::Start { id } | Step::Restart { id } | Step::Remove { id } => {
            input.observed.iter().find(|r| &r.id == id).map(|r| r.slot)
        }
        Step::Drain { .. } | Step::Failed { .. } | Step::Wait { .. } => None,
    }
}

/// Apply the backoff: steps on a slot waiting for its retry time become one `Wait`, and a slot
/// that has failed for the whole rollout deadline, with no settled current replica, fails it.
fn hold_back(input: &Input, steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let waiting = step_slot(input, &step).and_then(|slot| {
            input
                .backoff
                .iter()
                .find(|b| b.slot == slot && b.retry_in_ms > 0)
        });
        match waiting {
            Some(b) => {
                // Plan again at the retry time, or sooner when the rollout deadline falls
                // first (the rollout fails then, not at the next attempt).
                let to_deadline = input.rollout_deadline_ms.saturating_sub(b.failing_for_ms);
                let retry_in_ms = if to_deadline > 0 && b.slot < input.replicas {
                    b.retry_in_ms.min(to_deadline)
                } else {
                    b.retry_in_ms
                };
                let wait = Step::Wait {
                    slot: b.slot,
                    retry_in_ms,
                };
                if !out.contains(&wait) {
                    out.push(wait);
                }
            }
            None => out.push(step),
        }
    }
    for b in &input.backoff {
        let settled_here = input.observed.iter().any(|r| {
            r.slot == b.slot
                && r.hash == input.hash
                && r.draining.is_none()
                && settled(r, input.restart)
        });
        if b.slot < input.replicas
            && !input.given_up.contains(&b.slot)
            && !settled_here
            && b.failures > 0
            && b.failing_for_ms >= input.rollout_deadline_ms
        {
            out.push(Step::Failed {
                slot: b.slot,
                reason: format!(
                    "replica {} kept failing for {} s: {}",
                    b.slot,
                    input.rollout_deadline_ms / 1000,
                    b.error
                ),
            });
            break;
        }
    }
    out
}

/// The planner's rules without the backoff.
fn plan_unthrottled(input: &Input) -> Vec<Step> {
    let mut steps = Vec::new();
    // Draining replicas: remove once drained; otherwise they are out of every other decision.
    for r in &input.observed {
        if let Some(d) = r.draining {
            let drained = d.in_flight == 0 && d.since_ms >= input.min_drain_ms;
            if drained || d.since_ms >= input.drain_timeout_ms || r.state != ReplicaState::Running {
                steps.push(Step::Remove { id: r.id.clone() });
            }
        }
    }
    let live: Vec<&Replica> = input
        .observed
        .iter()
        .filter(|r| r.draining.is_none())
        .collect();
    let (current, old): (Vec<&Replica>, Vec<&Replica>) =
        live.iter().partition(|r| r.hash == input.hash);

    // Current replicas: one per slot below `replicas`; duplicates and surplus go.
    let mut by_slot: Vec<Option<&Replica>> = vec![None; input.replicas as usize];
    for r in &current {
        if r.slot < input.replicas {
            let keep = &mut by_slot[r.slot as usize];
            match keep {
                None => *keep = Some(r),
                Some(k) => {
                    // Keep the better one (ready over not), retire the other.
                    if r.is_ready() && !k.is_ready() {
                        steps.push(retire(k));
                        *keep = Some(r);
                    } else {
                        steps.push(retire(r));
                    }
                }
            }
        } else {
            steps.push(retire(r));
        }
    }

    let old_in = |slot: u32| old.iter().filter(move |o| o.slot == slot);
    // Slots being replaced right now: an old replica is still there and the current one is not
    // settled yet.
    let mut updating = (0..input.replicas)
        .filter(|&s| {
            old_in(s).next().is_some()
                && !input.given_up.contains(&s)
                && by_slot[s as usize].is_some_and(|c| !settled(c, input.restart))
        })
        .count() as u32;
    let limit = if input.parallelism == 0 {
        u32::MAX
    } else {
        input.parallelism
    };

    for slot in 0..input.replicas {
        let olds: Vec<&&Replica> = old_in(slot).collect();
        match by_slot[slot as usize] {
            None => {
                if !input.deps_ready {
                    continue;
                }
                // Old replicas that still serve (or may again): running and not unhealthy.
                // Old replicas are never restarted, so a dead or unhealthy one is replaced
                // at once, whatever the parallelism, the delay or a pause.
                let live_olds = olds
                    .iter()
                    .filter(|o| {
                        o.state == ReplicaState::Running && o.readiness != Readiness::Unhealthy
                    })
                    .count();
                let may_update = updating < limit && input.delay_passed && !input.paused;
                if input.order == Order::StopFirst && !olds.is_empty() {
                    if live_olds == 0 {
                        // Clear the slot now; the next pass creates its replica (the old one's
                        // container name may be the one the new one needs).
                        steps.extend(olds.iter().map(|o| retire(o)));
                    } else if may_update {
                        updating += 1;
                        steps.extend(olds.iter().map(|o| retire(o)));
                    }
                } else if live_olds == 0 {
                    // Nothing serves this slot: a first deploy, a scale-up or a dead old one.
                    steps.extend(olds.iter().map(|o| retire(o)));
                    steps.push(Step::Create { slot });
                } else if may_update {
                    updating += 1;
                    steps.push(Step::Create { slot });
                }
            }
            Some(c) => {
                match c.state {
                    ReplicaState::Created => steps.push(Step::Start { id: c.id.clone() }),
                    ReplicaState::Exited(code) => {
                        let again = match input.restart {
                            RestartRule::Always => true,
                            RestartRule::Never => false,
                            RestartRule::OnFailure(max) => {
                                code != 0 && max.is_none_or(|m| c.restarts < m)
                            }
                        };
                        if again && c.restart_allowed {
                            steps.push(Step::Start { id: c.id.clone() });
                        }
                    }
                    ReplicaState::Running
                        if c.readiness == Readiness::Unhealthy
                            && input.restart != RestartRule::Never
                            && c.restart_allowed =>
                    {
                        steps.push(Step::Restart { id: c.id.clone() });
                    }
                    _ => {}
                }
                if settled(c, input.restart) || input.order == Order::StopFirst {
                    steps.extend(olds.iter().map(|o| retire(o)));
                } else if !olds.is_empty() {
                    // An update in progress: old ones that no longer serve can go now.
                    for o in &olds {
                        if o.state != ReplicaState::Running {
                            steps.push(Step::Remove { id: o.id.clone() });
                        }
                    }
                    let crashing = c.restarts >= 3
                        || (matches!(c.state, ReplicaState::Exited(_))
                            && finished(c, input.restart));
                    if (c.age_ms >= input.rollout_deadline_ms || crashing)
                        && !input.given_up.contains(&slot)
                    {
                        steps.push(Step::Failed {
                            slot,
                            reason: format!(
                                "replica {slot} of the new version did not become healthy within {} s{}",
                                input.rollout_deadline_ms / 1000,
                                if crashing { " (it keeps exiting)" } else { "" }
                            ),
                        });
                    }
                }
            }
        }
    }
    // Old replicas beyond the desired count: retire once every current slot is settled (or at
    // once when they no longer serve, or for stop-first).
    let all_settled = by_slot
        .iter()
        .all(|c| c.is_some_and(|c| settled(c, input.restart)));
    for o in &old {
        if o.slot >= input.replicas
            && (all_settled || o.state != ReplicaState::Running || input.order == Order::StopFirst)
        {
            steps.push(retire(o));
        }
    }
    steps.dedup();
    steps
}

/// Has the service converged: every slot settled on the desired spec and nothing else left?
#[must_use]
pub fn converged(input: &Input) -> bool {
    let current: Vec<&Replica> = input
        .observed
        .iter()
        .filter(|r| r.hash == input.hash && r.draining.is_none())
        .collect();
    input.observed.len() == input.replicas as usize
        && current.len() == input.replicas as usize
        && (0..input.replicas).all(|s| {
            current
                .iter()
                .any(|r| r.slot == s && settled(r, input.restart))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(id: &str, slot: u32, hash: &str, state: ReplicaState, readiness: Readiness) -> Replica {
        Replica {
            id: id.into(),
            slot,
            hash: hash.into(),
            state,
            readiness,
            age_ms: 1_000,
            restarts: 0,
            restart_allowed: true,
            draining: None,
        }
    }
    use Readiness::{Ready, Starting, Unhealthy};
    use ReplicaState::{Created, Exited, Running};

    fn input(replicas: u32, observed: Vec<Replica>) -> Input {
        Input {
            hash: "new".into(),
            replicas,
            order: Order::StartFirst,
            parallelism: 1,
            restart: RestartRule::Always,
            deps_ready: true,
            delay_passed: true,
            rollout_deadline_ms: 30_000,
            min_drain_ms: 50,
            drain_timeout_ms: 10_000,
            paused: false,
            given_up: vec![],
            observed,
            backoff: vec![],
        }
    }
    fn create(slot: u32) -> Step {
        Step::Create { slot }
    }
    fn drain(id: &str) -> Step {
        Step::Drain { id: id.into() }
    }
    fn remove(id: &str) -> Step {
        Step::Remove { id: id.into() }
    }
    fn start(id: &str) -> Step {
        Step::Start { id: id.into() }
    }

    #[test]
    fn table() {
        let draining = |mut r: Replica, since_ms, in_flight| {
            r.draining = Some(Drain {
                since_ms,
                in_flight,
            });
            r
        };
        let with = |mut i: Input, f: &dyn Fn(&mut Input)| {
            f(&mut i);
            i
        };
        let cases: Vec<(&str, Input, Vec<Step>)> = vec![
            ("first deploy creates every slot", input(3, vec![]), vec![create(0), create(1), create(2)]),
            (
                "deps not ready: nothing",
                with(input(2, vec![]), &|i| i.deps_ready = false),
                vec![],
            ),
            (
                "steady state: nothing",
                input(2, vec![rep("a", 0, "new", Running, Ready), rep("b", 1, "new", Running, Ready)]),
                vec![],
            ),
            (
                "scale up adds slots, keeps others",
                input(3, vec![rep("a", 0, "new", Running, Ready)]),
                vec![create(1), create(2)],
            ),
            (
                "scale down drains surplus ready replicas",
                input(1, vec![rep("a", 0, "new", Running, Ready), rep("b", 1, "new", Running, Ready)]),
                vec![drain("b")],
            ),
            (
                "dead replica restarts (always)",
                input(1, vec![rep("a", 0, "new", Exited(137), Starting)]),
                vec![start("a")],
            ),
            (
                "crash-loop backoff: wait",
                input(1, vec![Replica { restart_allowed: false, ..rep("a", 0, "new", Exited(1), Starting) }]),
                vec![],
            ),
            (
                "restart no: job stays exited",
                with(input(1, vec![rep("a", 0, "new", Exited(1), Starting)]), &|i| i.restart = RestartRule::Never),
                vec![],
            ),
            (
                "on-failure: success stays exited",
                with(input(1, vec![rep("a", 0, "new", Exited(0), Starting)]), &|i| {
                    i.restart = RestartRule::OnFailure(None)
                }),
                vec![],
            ),
            (
                "on-failure: failure restarts",
                with(input(1, vec![rep("a", 0, "new", Exited(2), Starting)]), &|i| {
                    i.restart = RestartRule::OnFailure(Some(3))
                }),
                vec![start("a")],
            ),
            (
                "on-failure: attempts exhausted",
                with(
                    input(1, vec![Replica { restarts: 3, ..rep("a", 0, "new", Exited(2), Starting) }]),
                    &|i| i.restart = RestartRule::OnFailure(Some(3)),
                ),
                vec![],
            ),
            ("created but not started: start", input(1, vec![rep("a", 0, "new", Created, Starting)]), vec![start("a")]),
            (
                "unhealthy replica restarts",
                input(1, vec![rep("a", 0, "new", Running, Unhealthy)]),
                vec![Step::Restart { id: "a".into() }],
            ),
            (
                "start-first: new replica for slot 0 only (parallelism 1)",
                input(2, vec![rep("o0", 0, "old", Running, Ready), rep("o1", 1, "old", Running, Ready)]),
                vec![create(0)],
            ),
            (
                "paused: no slot starts its update",
                with(
                    input(2, vec![rep("o0", 0, "old", Running, Ready), rep("o1", 1, "old", Running, Ready)]),
                    &|i| i.paused = true,
                ),
                vec![],
            ),
            (
                "paused: stop-first retires no old replica",
                with(
                    input(2, vec![rep("o0", 0, "old", Running, Ready), rep("o1", 1, "old", Running, Ready)]),
                    &|i| {
                        i.paused = true;
                        i.order = Order::StopFirst;
                    },
                ),
                vec![],
            ),
            (
                "paused: an updated slot finishes, the next one waits; a dead old replica is replaced",
                with(
                    input(
                        3,
                        vec![
                            rep("o0", 0, "old", Running, Ready),
                            rep("n0", 0, "new", Running, Ready),
                            rep("o1", 1, "old", Running, Ready),
                            rep("o2", 2, "old", Exited(137), Starting),
                        ],
                    ),
                    &|i| i.paused = true,
                ),
                vec![drain("o0"), remove("o2"), create(2)],
            ),
            (
                "paused, stop-first: a dead old replica is cleared so its slot can be recreated",
                with(
                    input(2, vec![rep("o0", 0, "old", Exited(137), Starting), rep("o1", 1, "old", Running, Ready)]),
                    &|i| {
                        i.paused = true;
                        i.order = Order::StopFirst;
                    },
                ),
                vec![remove("o0")],
            ),
            (
                "paused: an unhealthy old replica is replaced",
                with(
                    input(2, vec![rep("o0", 0, "old", Running, Unhealthy), rep("o1", 1, "old", Running, Ready)]),
                    &|i| i.paused = true,
                ),
                vec![remove("o0"), create(0)],
            ),
            (
                "paused: scale-up and healing go on",
                with(
                    input(2, vec![rep("n0", 0, "new", Exited(1), Starting)]),
                    &|i| i.paused = true,
                ),
                vec![start("n0"), create(1)],
            ),
            (
                "start-first: wait while the new one starts",
                input(
                    2,
                    vec![
                        rep("o0", 0, "old", Running, Ready),
                        rep("o1", 1, "old", Running, Ready),
                        rep("n0", 0, "new", Running, Starting),
                    ],
                ),
                vec![],
            ),
            (
                "start-first: new ready → drain old of that slot, start next slot",
                input(
                    2,
                    vec![
                        rep("o0", 0, "old", Running, Ready),
                        rep("o1", 1, "old", Running, Ready),
                        rep("n0", 0, "new", Running, Ready),
                    ],
                ),
                vec![drain("o0"), create(1)],
            ),
            (
                "parallelism 0: all slots at once",
                with(
                    input(2, vec![rep("o0", 0, "old", Running, Ready), rep("o1", 1, "old", Running, Ready)]),
                    &|i| i.parallelism = 0,
                ),
                vec![create(0), create(1)],
            ),
            (
                "update delay not passed: hold the next slot",
                with(input(1, vec![rep("o0", 0, "old", Running, Ready)]), &|i| i.delay_passed = false),
                vec![],
            ),
            (
                "stop-first: drain old before creating",
                with(input(1, vec![rep("o0", 0, "old", Running, Ready)]), &|i| i.order = Order::StopFirst),
                vec![drain("o0")],
            ),
            (
                "drained (no in-flight) → remove",
                input(1, vec![rep("n0", 0, "new", Running, Ready), draining(rep("o0", 0, "old", Running, Ready), 100, 0)]),
                vec![remove("o0")],
            ),
            (
                "draining with in-flight requests: wait",
                input(1, vec![rep("n0", 0, "new", Running, Ready), draining(rep("o0", 0, "old", Running, Ready), 100, 2)]),
                vec![],
            ),
            (
                "drain timeout → remove anyway",
                input(
                    1,
                    vec![rep("n0", 0, "new", Running, Ready), draining(rep("o0", 0, "old", Running, Ready), 10_000, 2)],
                ),
                vec![remove("o0")],
            ),
            (
                "new version never healthy → failed, old keeps serving",
                input(
                    1,
                    vec![
                        rep("o0", 0, "old", Running, Ready),
                        Replica { age_ms: 31_000, ..rep("n0", 0, "new", Running, Starting) },
                    ],
                ),
                vec![Step::Failed {
                    slot: 0,
                    reason: "replica 0 of the new version did not become healthy within 30 s".into(),
                }],
            ),
            (
                "new version crash-looping → failed early",
                input(
                    1,
                    vec![
                        rep("o0", 0, "old", Running, Ready),
                        Replica { restarts: 3, restart_allowed: false, ..rep("n0", 0, "new", Exited(1), Starting) },
                    ],
                ),
                vec![Step::Failed {
                    slot: 0,
                    reason: "replica 0 of the new version did not become healthy within 30 s (it keeps exiting)"
                        .into(),
                }],
            ),
            (
                "a given-up slot reports nothing and holds no place of parallelism: the next slot updates",
                Input {
                    given_up: vec![0],
                    ..input(
                        2,
                        vec![
                            rep("o0", 0, "old", Running, Ready),
                            Replica { age_ms: 31_000, ..rep("n0", 0, "new", Running, Starting) },
                            rep("o1", 1, "old", Running, Ready),
                        ],
                    )
                },
                vec![create(1)],
            ),
            (
                "rollback: desired is the old hash again → failed new replicas go",
                input(1, vec![rep("n0", 0, "new", Running, Ready), rep("bad", 0, "bad", Running, Starting)]),
                vec![remove("bad")],
            ),
            (
                "dead old replica in an update: removed, new created at once",
                input(1, vec![rep("o0", 0, "old", Exited(1), Starting)]),
                vec![remove("o0"), create(0)],
            ),
            (
                "old surplus slot waits until the new slots are settled",
                input(
                    1,
                    vec![
                        rep("o0", 0, "old", Running, Ready),
                        rep("o1", 1, "old", Running, Ready),
                        rep("n0", 0, "new", Running, Starting),
                    ],
                ),
                vec![],
            ),
            (
                "old surplus slot retired after the new slots are settled",
                input(1, vec![rep("o1", 1, "old", Running, Ready), rep("n0", 0, "new", Running, Ready)]),
                vec![drain("o1")],
            ),
            (
                "duplicate current replica in a slot: keep the ready one",
                input(1, vec![rep("a", 0, "new", Running, Starting), rep("b", 0, "new", Running, Ready)]),
                vec![remove("a")],
            ),
            (
                "completed job with a new spec replaces the old one",
                with(input(1, vec![rep("o0", 0, "old", Exited(0), Starting)]), &|i| i.restart = RestartRule::Never),
                vec![remove("o0"), create(0)],
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(plan(&input), want, "case: {name}");
        }
    }

    fn backoff(slot: u32, failures: u32, retry_in_ms: u64, failing_for_ms: u64) -> SlotBackoff {
        SlotBackoff {
            slot,
            failures,
            retry_in_ms,
            failing_for_ms,
            error: "create failed: no command specified".into(),
        }
    }
    fn wait(slot: u32, retry_in_ms: u64) -> Step {
        Step::Wait { slot, retry_in_ms }
    }

    #[test]
    fn backoff_table() {
        let with = |mut i: Input, f: &dyn Fn(&mut Input)| {
            f(&mut i);
            i
        };
        let cases: Vec<(&str, Input, Vec<Step>)> = vec![
            (
                "slot in backoff → no create step; requeue at its time",
                with(input(1, vec![]), &|i| {
                    i.backoff = vec![backoff(0, 1, 500, 0)]
                }),
                vec![wait(0, 500)],
            ),
            (
                "backoff is per slot: the other slots are created",
                with(input(3, vec![]), &|i| {
                    i.backoff = vec![backoff(1, 2, 1_000, 600)]
                }),
                vec![create(0), wait(1, 1_000), create(2)],
            ),
            (
                "the rollout deadline falls before the retry time: plan again then",
                with(input(1, vec![]), &|i| {
                    i.backoff = vec![backoff(0, 5, 8_000, 25_000)]
                }),
                vec![wait(0, 5_000)],
            ),
            (
                "retry time reached → the step is planned again",
                with(input(1, vec![]), &|i| {
                    i.backoff = vec![backoff(0, 3, 0, 3_500)]
                }),
                vec![create(0)],
            ),
            (
                "a start that keeps failing waits too",
                with(
                    input(1, vec![rep("a", 0, "new", Created, Starting)]),
                    &|i| i.backoff = vec![backoff(0, 1, 500, 0)],
                ),
                vec![wait(0, 500)],
            ),
            (
                "a failing removal waits; draining (in memory) does not",
                with(
                    input(
                        1,
                        vec![
                            rep("n0", 0, "new", Running, Ready),
                            rep("o1", 1, "old", Running, Ready),
                            rep("o2", 2, "old", Exited(1), Starting),
                        ],
                    ),
                    &|i| i.backoff = vec![backoff(2, 1, 500, 0)],
                ),
                vec![drain("o1"), wait(2, 500)],
            ),
            (
                "first deploy failing for the rollout deadline → failed with the cause",
                with(input(1, vec![]), &|i| {
                    i.backoff = vec![backoff(0, 6, 8_000, 30_000)]
                }),
                vec![
                    wait(0, 8_000),
                    Step::Failed {
                        slot: 0,
                        reason:
                            "replica 0 kept failing for 30 s: create failed: no command specified"
                                .into(),
                    },
                ],
            ),
            (
                "update whose create keeps failing → failed, old keeps serving",
                with(input(1, vec![rep("o0", 0, "old", Running, Ready)]), &|i| {
                    i.backoff = vec![backoff(0, 6, 0, 31_000)]
                }),
                vec![
                    create(0),
                    Step::Failed {
                        slot: 0,
                        reason:
                            "replica 0 kept failing for 30 s: create failed: no command specified"
                                .into(),
                    },
                ],
            ),
            (
                "a settled slot never fails the rollout (a surplus removal that fails)",
                with(input(1, vec![rep("n0", 0, "new", Running, Ready)]), &|i| {
                    i.backoff = vec![backoff(0, 6, 0, 31_000)]
                }),
                vec![],
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(plan(&input), want, "case: {name}");
        }
    }

    #[test]
    fn convergence() {
        assert!(converged(&input(
            1,
            vec![rep("a", 0, "new", Running, Ready)]
        )));
        assert!(!converged(&input(
            1,
            vec![rep("a", 0, "new", Running, Starting)]
        )));
        assert!(!converged(&input(
            1,
            vec![
                rep("a", 0, "new", Running, Ready),
                rep("o", 0, "old", Running, Ready)
            ]
        )));
        assert!(!converged(&input(
            2,
            vec![rep("a", 0, "new", Running, Ready)]
        )));
        let mut job = input(1, vec![rep("a", 0, "new", Exited(0), Starting)]);
        job.restart = RestartRule::Never;
        assert!(converged(&job));
    }
}
