//! The application planner: every per-application decision of a reconcile pass, as a pure
//! function of desired state, observed replicas, Berth's memory and the time
//! ([docs/runtime.md](../../../docs/runtime.md)).
//!
//! `plan_app(desired, observed, services, memory, now) -> AppPlan` builds each service's planner input
//! (`plan::Input`), gates services on their `depends_on` conditions, asks `plan::plan` for the
//! steps, and decides convergence, the revision verdict, the services' status, the routes and
//! published ports to publish, and when to look again. The pass (`pass.rs`) observes, calls it,
//! executes the steps through the runtime and records the verdict; a second runtime reuses all
//! of it.
//!
//! Rules it keeps:
//! - No I/O and no clock reads: `now` is given; memory comes in as a value.
//! - A service waits (creates nothing) until every `depends_on` condition holds on what this pass
//!   observed: `service_started` (every current replica of the dependency exists and has been
//!   started), `service_healthy` (each settled: ready, or a job that exited 0),
//!   `service_completed_successfully` (each exited 0).
//! - A revision converges when every service has settled on its spec, nothing else is left, and
//!   no step is planned or under way. A rollout failure is recorded once, on a pending revision,
//!   unless the service's `failure_action` is `continue`; a first deploy (nothing converged
//!   before) that cannot make progress fails its revision.
//! - Routes and published ports list ready replicas that do not drain (old and new alike: during
//!   a start-first rollout both serve), ordered by slot. Where the gateways probe (Swarm,
//!   [`Desired::gateway_probes`]), a probed service's routes and ports carry its probe and list
//!   every running replica that is not stopping: each gateway serves those its probe passed.
//! - A runtime converges **slots** (the local runtime: Berth plans every replica) or
//!   **services** (Swarm: the runtime schedules tasks and rolls updates itself;
//!   docs/swarm.md#who-rolls-out). In `Services` mode each Compose service gets at most one
//!   step — [`ServiceStep::EnsureService`] (none when the runtime's service carries the
//!   desired spec hash and replica count) or [`ServiceStep::RemoveService`] — gated by `depends_on` exactly as
//!   slots are; the verdict also reads the runtime's update state: a rollback the runtime made
//!   of a revision this server asked for, or an update it paused, is a failed rollout.

use crate::plan::{self, Order, Readiness, Replica, ReplicaState, RestartRule, Step};
use crate::reconcile::Action;
use crate::spec::RevisionSpec;
use berth_compose::{DependsCondition, FailureAction, RestartCondition, Service, UpdateOrder};
use berth_core::api::{AppStatus, ServiceStatus};
use berth_core::{Endpoint, HttpRoute, PortForward, Protocol};
use berth_store::RevisionStatus;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// Look again this soon while replicas drain.
pub(crate) const FAST: Duration = Duration::from_millis(25);
/// Look again this soon while a rollout progresses.
pub(crate) const PROGRESS: Duration = Duration::from_millis(250);

/// How a runtime converges an application (docs/swarm.md#who-rolls-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Convergence {
    /// Berth plans every replica (slot): the local runtime.
    #[default]
    Slots,
    /// Berth ensures one runtime service per Compose service; the runtime places the replicas
    /// and rolls updates (Swarm).
    Services,
}

/// A runtime service's rolling update, as the runtime reports it (Swarm's
/// `UpdateStatus.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateState {
    Updating,
    /// Stopped by a failure with `failure_action: pause`.
    Paused,
    Completed,
    RollbackStarted,
    /// A rollback that failed too.
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }

    /// The runtime is still moving the service's tasks (or stopped halfway).
    fn unsettled(self) -> bool {
        !matches!(
            self,
            UpdateState::Completed | UpdateState::RollbackCompleted
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }
}

/// One Compose service as a `Services`-converging runtime observed it.
#[derive(Debug, Clone)]
pub(crate) struct ObservedService {
    /// The Compose service.
    pub service: String,
    /// The spec hash its current spec carries (`berth.hash`). A rollback by the runtime
    /// restores the previous spec, and with it the previous hash.
    pub hash: String,
    /// Replicas it is asked to run. The spec hash leaves replicas out (scaling never replaces
    /// a replica), so a service at the desired hash may still need its count changed. For a
    /// `global` service: the tasks the runtime wants (one per eligible node).
    pub replicas: u32,
    /// It runs in `global` mode.
    pub global: bool,
    /// Its last update, if it was ever updated: the state and the runtime's message.
    pub update: Option<(UpdateState, String)>,
}

/// A step of `Services` mode: one per Compose service at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceStep {
    /// Create the service, or update it to the revision's spec.
    EnsureService { service: String, revision: u64 },
    /// Remove the service (no longer in the file).
    RemoveService { service: String },
}

/// The application's desired state, as the store holds it, and the server's rollout settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Desired<'a> {
    pub app: &'a str,
    pub revision: u64,
    pub spec: &'a RevisionSpec,
    pub status: RevisionStatus,
    /// An earlier revision converged: a failing update can roll back, a first deploy cannot.
    pub converged_before: bool,
    /// Default of `update_config.monitor`.
    pub rollout_deadline_ms: u64,
    /// Least time a drained replica stays out of rotation.
    pub min_drain_ms: u64,
    /// Per service that has no replica yet: the market entries it `uses` whose provider has no
    /// ready replica behind its route. The service waits for them, as for a `depends_on`.
    pub providers_down: &'a BTreeMap<String, Vec<String>>,
    /// How the runtime converges: slots (plan every replica) or services.
    pub convergence: Convergence,
    /// The gateways probe the replicas of services with a probe, not the control plane (Swarm:
    /// task addresses are reached from the gateways on the nodes only): such a service's routes
    /// and ports carry the probe and list every running replica that is not stopping, and each
    /// gateway serves those its probe passed (docs/swarm.md#traffic-without-ipvs).
    pub gateway_probes: bool,
}

/// One replica as a runtime observed it, with Berth's readiness.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub id: String,
    pub service: String,
    pub slot: u32,
    pub hash: String,
    pub state: ReplicaState,
    pub readiness: Readiness,
    /// Milliseconds since it was created.
    pub age_ms: u64,
    /// Where it is reached (its service's first network).
    pub ip: Option<IpAddr>,
    /// The runtime is stopping it (a Swarm task whose desired state is no longer `running`).
    pub stopping: bool,
}

/// Restarts Berth made of one replica.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Restarts {
    /// Failed restarts in a row (what `max_attempts` and the crash-loop backoff count).
    pub count: u32,
    /// When Berth last restarted it (the crash-loop backoff and `window` count from here).
    pub last_start: Option<Instant>,
}

/// Base of the crash-loop backoff when `restart_policy.delay` is not given.
const RESTART_BACKOFF: Duration = Duration::from_millis(250);
/// The crash-loop backoff grows no further (unless `restart_policy.delay` is longer).
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long after its `count`-th failed restart a replica is not restarted again: nothing
/// before the first, then `base` doubling with each, at most 30 s (or `base` if longer);
/// `base` is `restart_policy.delay`, or 250 ms.
pub(crate) fn restart_backoff(count: u32, delay_ms: u64) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    let base = if delay_ms > 0 {
        Duration::from_millis(delay_ms)
    } else {
        RESTART_BACKOFF
    };
    base.saturating_mul(1u32 << (count - 1).min(16))
        .min(RESTART_BACKOFF_MAX.max(base))
}

/// A replica's failed restarts and the soonest Berth may restart it.
///
/// - `restart_policy.window`: a restart that ran at least `window` before it exited (or, for a
///   running replica, until now) succeeded: the count starts over at 0.
/// - The crash-loop backoff counts from the last restart (`restart_backoff`).
/// - An exited replica also waits `restart_policy.delay` from its exit (when Berth first saw it
///   exited; unknown counts as `now`).
fn restart_timing(
    svc: Option<&Service>,
    o: &Observed,
    memory: &AppMemory,
    now: Instant,
) -> (u32, Instant) {
    let info = memory.restarts.get(&o.id).copied().unwrap_or_default();
    let (delay_ms, window_ms) = svc.map_or((0, None), |s| {
        (s.restart.delay_ms.unwrap_or(0), s.restart.window_ms)
    });
    let exited_at = matches!(o.state, ReplicaState::Exited(_))
        .then(|| memory.exited_since.get(&o.id).copied().unwrap_or(now));
    let ended = exited_at.unwrap_or(now);
    let count = match (window_ms, info.last_start) {
        (Some(w), Some(s)) if ended.saturating_duration_since(s) >= Duration::from_millis(w) => 0,
        _ => info.count,
    };
    let mut at = info
        .last_start
        .map_or(now, |s| s + restart_backoff(count, delay_ms));
    if let Some(e) = exited_at {
        at = at.max(e + Duration::from_millis(delay_ms));
    }
    (count, at)
}

/// A replica out of rotation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draining {
    pub since: Instant,
    /// Requests the gateway still has in flight to it (`usize::MAX` until the gateway serves a
    /// table without it).
    pub in_flight: usize,
}

/// A slot whose steps keep failing.
#[derive(Debug, Clone)]
pub(crate) struct SlotFailures {
    pub failures: u32,
    /// The first failure of the series.
    pub since: Instant,
    /// No step on the slot before this.
    pub next: Instant,
    pub error: String,
}

/// What Berth remembers of one application between passes.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppMemory {
    /// Per replica id.
    pub restarts: HashMap<String, Restarts>,
    /// When Berth first saw each exited replica exited, per replica id.
    pub exited_since: HashMap<String, Instant>,
    /// Per replica id.
    pub draining: HashMap<String, Draining>,
    /// Per (service, slot), of the desired revision only.
    pub failing: BTreeMap<(String, u32), SlotFailures>,
    /// When a slot of a service last finished updating (`update_config.delay`).
    pub slot_done: HashMap<String, Instant>,
    /// A step of this application is still being carried out.
    pub busy: bool,
    /// Published host ports the data plane cannot bind, with the error.
    pub port_errors: Vec<(SocketAddr, String)>,
    /// `Services` mode: the revision this server last ensured each service at. A rollback
    /// the runtime made is a failed rollout only of a revision asked for (an old rollback
    /// state says nothing of a revision never sent).
    pub ensured: HashMap<String, u64>,
    /// `Services` mode: services whose steps keep failing (of the desired revision).
    pub service_failing: BTreeMap<String, SlotFailures>,
}

/// What to record on the revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still in progress, or already recorded.
    Unchanged,
    /// The pending revision converged.
    Converged,
    /// The rollout failed; `failure_action` says what follows (`rollback` commits a revision
    /// of the last converged one, `pause` holds further slots).
    RolloutFailed {
        message: String,
        action: FailureAction,
    },
    /// A first deploy cannot make progress.
    FirstDeployFailed { problem: String },
}

/// Everything a pass does for one application, decided.
#[derive(Debug, Clone)]
pub(crate) struct AppPlan {
    /// Each service's planner input (the executor needs the hash and the observed replicas).
    pub services: BTreeMap<String, plan::Input>,
    /// Steps to carry out, per service, in order (no `Wait`, no `Failed`). `Slots` mode.
    pub steps: Vec<(String, Step)>,
    /// `Services` mode: what to ensure or remove, in the file's order of services.
    pub service_steps: Vec<ServiceStep>,
    pub verdict: Verdict,
    pub status: AppStatus,
    pub routes: Vec<HttpRoute>,
    pub ports: Vec<PortForward>,
    pub requeue: Action,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn restart_rule(svc: &Service) -> RestartRule {
    match svc.restart.condition {
        RestartCondition::Always | RestartCondition::UnlessStopped => RestartRule::Always,
        RestartCondition::OnFailure => RestartRule::OnFailure(svc.restart.max_attempts),
        RestartCondition::No => RestartRule::Never,
    }
}

fn cond_str(c: DependsCondition) -> &'static str {
    match c {
        DependsCondition::ServiceStarted => "service_started",
        DependsCondition::ServiceHealthy => "service_healthy",
        DependsCondition::ServiceCompletedSuccessfully => "service_completed_successfully",
    }
}

/// Plan one pass of one application.
#[must_use]
pub(crate) fn plan_app(
    desired: &Desired<'_>,
    observed: &[Observed],
    services: &[ObservedService],
    memory: &AppMemory,
    now: Instant,
) -> AppPlan {
    let spec = desired.spec;
    let inputs = inputs(desired, observed, memory, now);
    let mut inputs = inputs;
    // A global service should run as many tasks as the runtime wants (one per eligible node),
    // not the file's one.
    for o in services.iter().filter(|o| o.global) {
        let global = spec
            .project
            .services
            .get(&o.service)
            .is_some_and(|s| s.global);
        if let (true, Some(i)) = (global, inputs.get_mut(&o.service)) {
            i.replicas = o.replicas;
        }
    }
    let mut waiting = waiting(spec, &inputs);
    for (name, entries) in desired.providers_down {
        waiting
            .entry(name.clone())
            .or_default()
            .extend(entries.iter().map(|e| format!("{e} (market provider)")));
    }
    for (name, w) in &waiting {
        if let Some(i) = inputs.get_mut(name) {
            i.deps_ready = w.is_empty();
        }
    }

    let Progress {
        steps,
        service_steps,
        failed,
        pending,
        retry,
        new_drains,
        given_up,
        converged,
    } = match desired.convergence {
        Convergence::Slots => slots_progress(spec, &mut inputs, now),
        Convergence::Services => {
            services_progress(desired, &inputs, &waiting, services, memory, now)
        }
    };
    let converged = converged && !memory.busy;
    let pending_rev = desired.status == RevisionStatus::Pending;
    let mut message = String::new();
    let mut verdict = Verdict::Unchanged;
    let mut revision_failed = desired.status == RevisionStatus::Failed;
    if let Some((svc_name, reason, action)) = failed {
        message = format!("{svc_name}: {reason}");
        if pending_rev && action != FailureAction::Continue {
            revision_failed = true;
            verdict = Verdict::RolloutFailed {
                message: if action == FailureAction::Pause {
                    format!(
                        "{message}; rollout paused (failure_action: pause): apply again (the same file resumes) or roll back"
                    )
                } else {
                    message.clone()
                },
                action,
            };
        }
    } else if converged && pending_rev {
        verdict = Verdict::Converged;
    } else if pending_rev && !converged && !desired.converged_before {
        if let Some(problem) = first_deploy_problem(&inputs) {
            revision_failed = true;
            verdict = Verdict::FirstDeployFailed { problem };
        }
    }
    if message.is_empty() {
        message = given_up_message(desired, &given_up);
    }

    let mut statuses = service_statuses(desired, &inputs, &waiting, memory, &given_up);
    // The runtime's word on an update it stopped or undid is the service's problem.
    for st in &mut statuses {
        let update = services
            .iter()
            .find(|o| o.service == st.name)
            .and_then(|o| o.update.as_ref());
        if let Some((state, msg)) = update {
            if matches!(state, UpdateState::Paused | UpdateState::RollbackPaused)
                || state.is_rollback()
            {
                st.problem = Some(format!("update {}: {msg}", state.as_str()));
            }
        }
        // A failing step says more than the state it left behind.
        if let Some(b) = memory.service_failing.get(&st.name) {
            st.problem = Some(format!(
                "{} ({} failed {}, retrying with a backoff)",
                b.error,
                b.failures,
                if b.failures == 1 {
                    "attempt"
                } else {
                    "attempts"
                }
            ));
        }
    }
    let services_status = statuses;
    let health = if converged && given_up.is_empty() {
        "healthy"
    } else if converged {
        "degraded"
    } else if revision_failed {
        "failed"
    } else if services_status.iter().any(|s| s.problem.is_some()) {
        "degraded"
    } else {
        "progressing"
    };
    let status = AppStatus {
        name: desired.app.into(),
        revision: desired.revision,
        revision_status: String::new(),
        message,
        health: health.into(),
        converged,
        services: services_status,
    };
    let (routes, ports) = routes(desired, observed, memory, &new_drains);

    let draining = inputs
        .values()
        .flat_map(|i| i.observed.iter())
        .any(|r| r.draining.is_some());
    let backoff = observed
        .iter()
        .filter(|o| {
            inputs
                .get(&o.service)
                .and_then(|i| i.observed.iter().find(|r| r.id == o.id))
                .is_some_and(|r| !r.restart_allowed)
        })
        .map(|o| restart_timing(spec.project.services.get(&o.service), o, memory, now).1)
        .filter(|t| *t > now)
        .chain(retry)
        .min();
    let requeue = if draining {
        Action::Requeue(FAST)
    } else if let Some(t) = backoff {
        // A slot waiting on its backoff must not hold back the others' progress: with steps
        // under way elsewhere, look again as soon as without the backoff.
        let wait = (t - now).max(FAST);
        Action::Requeue(if pending { wait.min(PROGRESS) } else { wait })
    } else if pending || !converged {
        Action::Requeue(PROGRESS)
    } else {
        Action::Await
    };
    AppPlan {
        services: inputs,
        steps,
        service_steps,
        verdict,
        status,
        routes,
        ports,
        requeue,
    }
}

/// What one mode's planning decided, for the verdict, status and routes to read.
struct Progress {
    steps: Vec<(String, Step)>,
    service_steps: Vec<ServiceStep>,
    /// The first failed service: why, and what its `failure_action` (or the runtime) does.
    failed: Option<(String, String, FailureAction)>,
    /// A step is planned (or a failure found).
    pending: bool,
    /// The soonest time a slot in backoff may be acted on again.
    retry: Option<Instant>,
    new_drains: HashSet<String>,
    given_up: BTreeMap<String, Vec<(u32, String)>>,
    /// Every service settled on its spec and no step outstanding (not counting steps under
    /// way: `AppMemory::busy`).
    converged: bool,
}

/// `Slots` mode: each service's steps from the slot planner; the slots whose failed update
/// `max_failure_ratio` tolerates are given up (and planned again without them) instead of
/// failing the rollout.
fn slots_progress(
    spec: &RevisionSpec,
    inputs: &mut BTreeMap<String, plan::Input>,
    now: Instant,
) -> Progress {
    let mut planned: Vec<(String, Vec<Step>)> = Vec::new();
    let mut given_up: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for (name, input) in inputs.iter_mut() {
        let ratio = spec
            .project
            .services
            .get(name)
            .map_or(0.0, |s| s.update_config.max_failure_ratio);
        let (out, tolerated) = plan_tolerating(input, ratio);
        if !tolerated.is_empty() {
            given_up.insert(name.clone(), tolerated);
        }
        planned.push((name.clone(), out));
    }

    let mut failed: Option<(String, String, FailureAction)> = None;
    let mut pending = false;
    // The soonest time a slot in backoff may be acted on again.
    let mut retry: Option<Instant> = None;
    let mut steps = Vec::new();
    let mut new_drains: HashSet<String> = HashSet::new();
    for (name, out) in planned {
        for step in out {
            if let Step::Wait { retry_in_ms, .. } = step {
                let at = now + Duration::from_millis(retry_in_ms);
                retry = Some(retry.map_or(at, |r| r.min(at)));
                continue;
            }
            pending = true;
            match step {
                Step::Failed { reason, .. } => {
                    if failed.is_none() {
                        let action = spec
                            .project
                            .services
                            .get(&name)
                            .map_or(FailureAction::Rollback, |s| s.update_config.failure_action);
                        failed = Some((name.clone(), reason, action));
                    }
                }
                step => {
                    if let Step::Drain { id } = &step {
                        new_drains.insert(id.clone());
                    }
                    steps.push((name.clone(), step));
                }
            }
        }
    }

    let converged_all = inputs.iter().all(|(name, i)| {
        let done = match given_up.get(name) {
            Some(g) => converged_but(i, g),
            None => plan::converged(i),
        };
        done && (spec.project.services.contains_key(name) || i.observed.is_empty())
    });
    // Steps on given-up slots (restarting their new replica) do not hold convergence back.
    let outstanding = steps.iter().any(|(name, step)| {
        let slot = plan::step_slot(&inputs[name], step);
        !given_up
            .get(name)
            .is_some_and(|g| slot.is_some_and(|s| g.iter().any(|(f, _)| *f == s)))
    });
    Progress {
        steps,
        service_steps: Vec::new(),
        failed,
        pending,
        retry,
        new_drains,
        given_up,
        converged: converged_all && !outstanding,
    }
}

/// `Services` mode: per Compose service at most one step, gated by `depends_on`; a rollback the
/// runtime made of a revision this server ensured, or an update it paused, fails the rollout.
fn services_progress(
    desired: &Desired<'_>,
    inputs: &BTreeMap<String, plan::Input>,
    waiting: &BTreeMap<String, Vec<String>>,
    services: &[ObservedService],
    memory: &AppMemory,
    now: Instant,
) -> Progress {
    let spec = desired.spec;
    let mut service_steps = Vec::new();
    let mut retry: Option<Instant> = None;
    // A service whose last step failed waits for its retry time.
    let mut held = |name: &str| match memory.service_failing.get(name) {
        Some(b) if b.next > now => {
            retry = Some(retry.map_or(b.next, |r| r.min(b.next)));
            true
        }
        _ => false,
    };
    let mut failed: Option<(String, String, FailureAction)> = None;
    let mut converged = true;
    for (name, svc) in &spec.project.services {
        let i = &inputs[name];
        let seen = services.iter().find(|o| o.service == *name);
        let at_desired = seen.is_some_and(|o| o.hash == i.hash);
        let scaled = seen.is_some_and(|o| {
            if svc.global {
                o.global
            } else {
                !o.global && o.replicas == svc.replicas
            }
        });
        let update = seen.and_then(|o| o.update.as_ref());
        let asked = memory.ensured.get(name) == Some(&desired.revision);
        let refused = update.is_some_and(|(st, _)| st.is_rollback()) && !at_desired && asked;
        if failed.is_none() {
            match update {
                Some((st, msg)) if refused => {
                    failed = Some((
                        name.clone(),
                        format!(
                            "the update was rolled back by Swarm ({}): {msg}",
                            st.as_str()
                        ),
                        FailureAction::Rollback,
                    ));
                }
                Some((UpdateState::Paused, msg)) if at_desired => {
                    failed = Some((
                        name.clone(),
                        format!("the update was paused by Swarm: {msg}"),
                        if svc.update_config.failure_action == FailureAction::Continue {
                            FailureAction::Continue
                        } else {
                            FailureAction::Pause
                        },
                    ));
                }
                _ => {}
            }
        }
        let settled =
            at_desired && !update.is_some_and(|(st, _)| st.unsettled()) && plan::converged(i);
        converged &= settled;
        // Nothing to do: the service runs this spec, or waits for its dependencies, or its
        // revision failed and holds still, or the runtime refused this revision already.
        let gated = waiting.get(name).is_some_and(|w| !w.is_empty());
        if (at_desired && scaled) || gated || i.paused || refused || held(name) {
            continue;
        }
        service_steps.push(ServiceStep::EnsureService {
            service: name.clone(),
            revision: desired.revision,
        });
    }
    for o in services {
        if !spec.project.services.contains_key(&o.service) {
            converged = false;
            if held(&o.service) {
                continue;
            }
            service_steps.push(ServiceStep::RemoveService {
                service: o.service.clone(),
            });
        }
    }
    // Tasks of a service no longer in the file (its removal under way).
    converged &= inputs
        .iter()
        .all(|(name, i)| spec.project.services.contains_key(name) || i.observed.is_empty());
    Progress {
        pending: !service_steps.is_empty() || failed.is_some(),
        converged: converged && service_steps.is_empty(),
        steps: Vec::new(),
        service_steps,
        failed,
        retry,
        new_drains: HashSet::new(),
        given_up: BTreeMap::new(),
    }
}

/// Does `failed` of `replicas` slots stay within `max_failure_ratio`? Swarm's rule: the update
/// fails when the failed share of the service's slots exceeds the ratio (0: any failure).
fn tolerates(ratio: f64, failed: usize, replicas: u32) -> bool {
    let failed = u32::try_from(failed).unwrap_or(u32::MAX);
    f64::from(failed) <= ratio * f64::from(replicas)
}

/// One service's steps, giving up each slot whose update failed for as long as the failures
/// stay within `ratio`: the slots given up (with why they failed) and the steps planned
/// without them. A failure beyond the ratio stays in the steps as `Failed`.
fn plan_tolerating(input: &mut plan::Input, ratio: f64) -> (Vec<Step>, Vec<(u32, String)>) {
    let mut given_up: Vec<(u32, String)> = Vec::new();
    loop {
        let out = plan::plan(input);
        let mut all = given_up.clone();
        for step in &out {
            if let Step::Failed { slot, reason } = step {
                if !all.iter().any(|(s, _)| s == slot) {
                    all.push((*slot, reason.clone()));
                }
            }
        }
        if all.len() == given_up.len() || !tolerates(ratio, all.len(), input.replicas) {
            return (out, given_up);
        }
        given_up = all;
        input.given_up = given_up.iter().map(|(s, _)| *s).collect();
    }
}

/// Converged but for the given-up slots: every other slot holds exactly one replica, current,
/// settled and not draining, and nothing lies outside the desired slots.
fn converged_but(i: &plan::Input, given_up: &[(u32, String)]) -> bool {
    let gave_up = |s: u32| given_up.iter().any(|(f, _)| *f == s);
    i.observed
        .iter()
        .all(|r| r.slot < i.replicas && r.draining.is_none())
        && (0..i.replicas).filter(|s| !gave_up(*s)).all(|s| {
            let here: Vec<&Replica> = i.observed.iter().filter(|r| r.slot == s).collect();
            here.len() == 1 && here[0].hash == i.hash && plan::settled(here[0], i.restart)
        })
}

/// What the application's status says of slots given up under `max_failure_ratio`.
fn given_up_message(
    desired: &Desired<'_>,
    given_up: &BTreeMap<String, Vec<(u32, String)>>,
) -> String {
    given_up
        .iter()
        .map(|(name, g)| {
            let (replicas, ratio) = desired.spec.project.services.get(name).map_or((0, 0.0), |s| {
                (s.replicas, s.update_config.max_failure_ratio)
            });
            let why: Vec<&str> = g.iter().map(|(_, r)| r.as_str()).collect();
            format!(
                "{name}: {} of {replicas} replicas failed to update, within max_failure_ratio {ratio}: {}",
                g.len(),
                why.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Each service's planner input: every desired service, and every service something runs of.
fn inputs(
    desired: &Desired<'_>,
    observed: &[Observed],
    memory: &AppMemory,
    now: Instant,
) -> BTreeMap<String, plan::Input> {
    let spec = desired.spec;
    let mut by_service: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        by_service.entry(o.service.as_str()).or_default().push(o);
    }
    let names: Vec<&str> = spec
        .project
        .services
        .keys()
        .map(String::as_str)
        .chain(by_service.keys().copied())
        .collect();
    let mut inputs = BTreeMap::new();
    for name in names {
        if inputs.contains_key(name) {
            continue;
        }
        let svc = spec.project.services.get(name);
        let replicas: Vec<Replica> = by_service
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|o| {
                let (restarts, restart_at) = restart_timing(svc, o, memory, now);
                Replica {
                    id: o.id.clone(),
                    slot: o.slot,
                    hash: o.hash.clone(),
                    state: o.state,
                    readiness: if svc.is_some() {
                        o.readiness
                    } else {
                        Readiness::Ready
                    },
                    age_ms: o.age_ms,
                    restarts,
                    restart_allowed: restart_at <= now,
                    draining: memory.draining.get(&o.id).map(|d| plan::Drain {
                        since_ms: millis(now.duration_since(d.since)),
                        in_flight: d.in_flight,
                    }),
                }
            })
            .collect();
        let backoff: Vec<plan::SlotBackoff> = memory
            .failing
            .iter()
            .filter(|((sv, _), _)| sv == name)
            .map(|((_, slot), b)| plan::SlotBackoff {
                slot: *slot,
                failures: b.failures,
                retry_in_ms: millis(b.next.saturating_duration_since(now)),
                failing_for_ms: millis(now.duration_since(b.since)),
                error: b.error.clone(),
            })
            .collect();
        let input = match svc {
            Some(s) => {
                let order = match s.update_config.order {
                    Some(UpdateOrder::StartFirst) => Order::StartFirst,
                    Some(UpdateOrder::StopFirst) => Order::StopFirst,
                    None if s.container_name.is_some() => Order::StopFirst,
                    None => Order::StartFirst,
                };
                let delay_passed = s.update_config.delay_ms == 0
                    || memory.slot_done.get(name).is_none_or(|t| {
                        now.duration_since(*t).as_millis() >= u128::from(s.update_config.delay_ms)
                    });
                plan::Input {
                    hash: spec.service_hash(name),
                    replicas: s.replicas,
                    order,
                    parallelism: s.update_config.parallelism,
                    restart: restart_rule(s),
                    deps_ready: true, // gated by `waiting`
                    delay_passed,
                    rollout_deadline_ms: s
                        .update_config
                        .monitor_ms
                        .unwrap_or(desired.rollout_deadline_ms),
                    min_drain_ms: desired.min_drain_ms,
                    drain_timeout_ms: s.stop_grace_period_ms.unwrap_or(10_000).max(1_000) + 20_000,
                    // A failed revision still current although an earlier one converged: its
                    // automatic rollback did not happen (admission or protection refused it in
                    // `handle_failure`), so services that would have rolled back hold still,
                    // as with `failure_action: pause`.
                    paused: desired.status == RevisionStatus::Failed
                        && (s.update_config.failure_action == FailureAction::Pause
                            || (s.update_config.failure_action == FailureAction::Rollback
                                && desired.converged_before)),
                    given_up: Vec::new(),
                    observed: replicas,
                    backoff,
                }
            }
            // Not desired any more: every replica is surplus.
            None => plan::Input {
                hash: String::new(),
                replicas: 0,
                order: Order::StartFirst,
                parallelism: 0,
                restart: RestartRule::Never,
                deps_ready: false,
                delay_passed: true,
                rollout_deadline_ms: 0,
                min_drain_ms: desired.min_drain_ms,
                drain_timeout_ms: 30_000,
                paused: false,
                given_up: Vec::new(),
                observed: replicas,
                backoff,
            },
        };
        inputs.insert(name.to_string(), input);
    }
    inputs
}

/// The `depends_on` conditions each service still waits for ("db (service_healthy)").
fn waiting(
    spec: &RevisionSpec,
    inputs: &BTreeMap<String, plan::Input>,
) -> BTreeMap<String, Vec<String>> {
    let mut waiting: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in &spec.project.services {
        for (dep, cond) in &svc.depends_on {
            let ok = inputs.get(dep).is_some_and(|d| {
                let cur: Vec<&Replica> = d.observed.iter().filter(|r| r.hash == d.hash).collect();
                let enough = cur.len() >= d.replicas as usize;
                match cond {
                    DependsCondition::ServiceStarted => {
                        enough
                            && cur
                                .iter()
                                .all(|r| !matches!(r.state, ReplicaState::Created))
                    }
                    DependsCondition::ServiceHealthy => {
                        enough && cur.iter().all(|r| plan::settled(r, d.restart))
                    }
                    DependsCondition::ServiceCompletedSuccessfully => {
                        enough && cur.iter().all(|r| r.state == ReplicaState::Exited(0))
                    }
                }
            });
            if !ok {
                waiting
                    .entry(name.clone())
                    .or_default()
                    .push(format!("{dep} ({})", cond_str(*cond)));
            }
        }
    }
    waiting
}

fn restart_limit(i: &plan::Input) -> u32 {
    match i.restart {
        RestartRule::OnFailure(Some(m)) => m,
        RestartRule::OnFailure(None) | RestartRule::Always => u32::MAX,
        RestartRule::Never => 0,
    }
}

/// Why a first deploy cannot make progress, if it cannot.
fn first_deploy_problem(inputs: &BTreeMap<String, plan::Input>) -> Option<String> {
    for (name, i) in inputs {
        for r in i.observed.iter().filter(|r| r.hash == i.hash) {
            if plan::settled(r, i.restart) {
                continue;
            }
            if r.restarts >= 3 {
                return Some(format!("{name}: replica {} keeps exiting", r.slot));
            }
            if let ReplicaState::Exited(code) = r.state {
                if code != 0 && i.restart != RestartRule::Always && r.restarts >= restart_limit(i) {
                    return Some(format!(
                        "{name}: replica {} exited with code {code}",
                        r.slot
                    ));
                }
            }
            if r.age_ms > i.rollout_deadline_ms && r.state == ReplicaState::Running {
                return Some(format!(
                    "{name}: replica {} did not become healthy within {} s",
                    r.slot,
                    i.rollout_deadline_ms / 1000
                ));
            }
        }
    }
    None
}

fn service_statuses(
    desired: &Desired<'_>,
    inputs: &BTreeMap<String, plan::Input>,
    waiting: &BTreeMap<String, Vec<String>>,
    memory: &AppMemory,
    given_up: &BTreeMap<String, Vec<(u32, String)>>,
) -> Vec<ServiceStatus> {
    desired
        .spec
        .project
        .services
        .iter()
        .map(|(name, svc)| {
            let i = &inputs[name];
            let cur: Vec<&Replica> = i
                .observed
                .iter()
                .filter(|r| r.hash == i.hash && r.draining.is_none())
                .collect();
            let healthy = cur
                .iter()
                .filter(|r| r.state == ReplicaState::Running && r.readiness == Readiness::Ready)
                .count();
            let routed = !svc.berth.routes.is_empty() || !svc.ports.is_empty();
            let mut problem = None;
            for r in &i.observed {
                if let ReplicaState::Exited(code) = r.state {
                    if code != 0 {
                        problem = Some(format!("replica {} exited with code {code}", r.slot));
                    }
                } else if r.readiness == Readiness::Unhealthy {
                    problem = Some(format!("replica {} is unhealthy", r.slot));
                } else if r.restarts >= 3 && r.readiness != Readiness::Ready {
                    problem = Some(format!("replica {} restarted {} times", r.slot, r.restarts));
                }
            }
            if let (None, Some((_, why))) = (&problem, given_up.get(name).and_then(|g| g.first())) {
                problem = Some(format!(
                    "{why} (update given up: within max_failure_ratio {})",
                    svc.update_config.max_failure_ratio
                ));
            }
            // A failing step says more than the state it left behind.
            if let Some(((_, slot), b)) = memory.failing.iter().find(|((sv, _), _)| sv == name) {
                problem = Some(format!(
                    "replica {slot}: {} ({} failed {}, retrying with a backoff)",
                    b.error,
                    b.failures,
                    if b.failures == 1 {
                        "attempt"
                    } else {
                        "attempts"
                    }
                ));
            }
            for p in &svc.ports {
                let host_ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                let Some(published) = p.published else {
                    continue;
                };
                let listen = SocketAddr::new(host_ip, published);
                if let Some((_, err)) = memory.port_errors.iter().find(|(a, _)| *a == listen) {
                    problem = Some(format!("host port {listen} cannot be bound: {err}"));
                }
            }
            ServiceStatus {
                name: name.clone(),
                desired: svc.replicas,
                created: u32::try_from(cur.len()).unwrap_or(u32::MAX),
                healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
                in_rotation: if routed {
                    u32::try_from(healthy).unwrap_or(u32::MAX)
                } else {
                    0
                },
                old: u32::try_from(i.observed.iter().filter(|r| r.hash != i.hash).count())
                    .unwrap_or(0),
                completed: cur.iter().any(|r| r.state == ReplicaState::Exited(0)),
                waiting_for: waiting.get(name).cloned().unwrap_or_default(),
                problem,
            }
        })
        .collect()
}

/// This application's routes and published ports: ready replicas that do not drain (counting
/// the drains this plan starts), by slot; for a service the gateways probe, every running or
/// starting replica with an address that is not stopping, with the probe: a task being started
/// on its node is probed from the moment it has an address (every 25 ms until it answers), so
/// it is served as soon as it listens rather than a look and a table later.
fn routes(
    desired: &Desired<'_>,
    observed: &[Observed],
    memory: &AppMemory,
    new_drains: &HashSet<String>,
) -> (Vec<HttpRoute>, Vec<PortForward>) {
    let (app, spec) = (desired.app, desired.spec);
    let mut routes = Vec::new();
    let mut ports = Vec::new();
    for (name, svc) in &spec.project.services {
        // Probed by the gateways: every running replica they may probe, whatever its readiness.
        let probe = if desired.gateway_probes {
            crate::health::probe_kind(spec, name, svc).map(|(kind, port)| kind.to_wire(port))
        } else {
            None
        };
        let mut members: Vec<(&Observed, IpAddr)> = observed
            .iter()
            .filter(|o| {
                o.service == *name
                    && (o.state == ReplicaState::Running
                        || (probe.is_some() && o.state == ReplicaState::Created))
                    && (o.readiness == Readiness::Ready || (probe.is_some() && !o.stopping))
                    && !memory.draining.contains_key(&o.id)
                    && !new_drains.contains(&o.id)
            })
            .filter_map(|o| o.ip.map(|ip| (o, ip)))
            .collect();
        members.sort_by_key(|(o, _)| (o.slot, o.hash.clone()));
        for r in &svc.berth.routes {
            let Some(port) = r.port.or_else(|| spec.default_port(name)) else {
                continue;
            };
            routes.push(HttpRoute {
                app: app.into(),
                service: name.clone(),
                host: crate::envs::route_host(app, r.host.as_deref()),
                path_prefix: r.path_prefix.clone(),
                strip_prefix: r.strip_prefix,
                endpoints: members
                    .iter()
                    .map(|(o, ip)| Endpoint {
                        id: o.id.clone(),
                        addr: SocketAddr::new(*ip, port),
                    })
                    .collect(),
                policy: crate::policy::route_policy(app, svc, r),
                protocol: crate::policy::route_protocol(r),
                upstream_prefix: None,
                probe: probe.clone(),
            });
        }
        for p in &svc.ports {
            let Some(published) = p.published else {
                continue;
            };
            let host_ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            ports.push(PortForward {
                app: app.into(),
                service: name.clone(),
                listen: SocketAddr::new(host_ip, published),
                protocol: if p.protocol == berth_compose::Protocol::Udp {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                endpoints: members
                    .iter()
                    .map(|(o, ip)| Endpoint {
                        id: o.id.clone(),
                        addr: SocketAddr::new(*ip, p.target),
                    })
                    .collect(),
                probe: probe.clone(),
            });
        }
    }
    (routes, ports)
}

#[cfg(test)]
mod tests {
    //! Each row is a situation of one application (its file, what runs, what Berth remembers)
    //! and the plan expected of it. Replicas' hash `cur` stands for their service's desired hash.
    use super::*;
    use Readiness::{Ready, Starting, Unhealthy};
    use ReplicaState::{Created, Exited, Running};

    fn spec(compose: &str) -> RevisionSpec {
        let mut b = berth_compose::Bundle {
            compose_files: vec!["compose.yaml".into()],
            ..berth_compose::Bundle::default()
        };
        b.files.insert("compose.yaml".into(), compose.into());
        RevisionSpec {
            project: berth_compose::load(&b).unwrap_or_else(|e| panic!("{compose}: {e}")),
            images: BTreeMap::new(),
            image_ports: BTreeMap::new(),
            wires: BTreeMap::new(),
        }
    }

    fn rep(
        id: &str,
        service: &str,
        slot: u32,
        hash: &str,
        state: ReplicaState,
        readiness: Readiness,
    ) -> Observed {
        Observed {
            id: id.into(),
            service: service.into(),
            slot,
            hash: hash.into(),
            state,
            readiness,
            age_ms: 1_000,
            ip: Some(IpAddr::from([
                10,
                0,
                0,
                u8::try_from(slot).unwrap_or(0) + 2,
            ])),
            stopping: false,
        }
    }
    fn old_age(mut o: Observed, age_ms: u64) -> Observed {
        o.age_ms = age_ms;
        o
    }

    /// A situation.
    struct Case {
        name: &'static str,
        compose: &'static str,
        status: RevisionStatus,
        converged_before: bool,
        observed: Vec<Observed>,
        memory: AppMemory,
        providers_down: BTreeMap<String, Vec<String>>,
        /// `Services` mode, with the runtime's services (hash `cur`: the desired one).
        services: Option<Vec<ObservedService>>,
        /// The gateways probe (Swarm).
        gateway_probes: bool,
    }
    fn case(name: &'static str, compose: &'static str, observed: Vec<Observed>) -> Case {
        Case {
            name,
            compose,
            status: RevisionStatus::Pending,
            converged_before: false,
            observed,
            memory: AppMemory::default(),
            providers_down: BTreeMap::new(),
            services: None,
            gateway_probes: false,
        }
    }
    impl Case {
        /// An update: an earlier revision converged.
        fn update(mut self) -> Case {
            self.converged_before = true;
            self
        }
        fn status(mut self, s: RevisionStatus) -> Case {
            self.status = s;
            self
        }
        fn memory(mut self, f: impl FnOnce(&mut AppMemory)) -> Case {
            f(&mut self.memory);
            self
        }
        /// `service` uses `entry`, whose provider has nothing ready.
        fn provider_down(mut self, service: &str, entry: &str) -> Case {
            self.providers_down
                .entry(service.into())
                .or_default()
                .push(entry.into());
            self
        }
    }

    /// What is expected of it.
    struct Expect {
        steps: Vec<(&'static str, Step)>,
        verdict: Verdict,
        health: &'static str,
        requeue: Action,
    }
    fn expect(
        steps: Vec<(&'static str, Step)>,
        verdict: Verdict,
        health: &'static str,
        requeue: Action,
    ) -> Expect {
        Expect {
            steps,
            verdict,
            health,
            requeue,
        }
    }

    fn create(svc: &'static str, slot: u32) -> (&'static str, Step) {
        (svc, Step::Create { slot })
    }
    fn start(svc: &'static str, id: &str) -> (&'static str, Step) {
        (svc, Step::Start { id: id.into() })
    }
    fn drain(svc: &'static str, id: &str) -> (&'static str, Step) {
        (svc, Step::Drain { id: id.into() })
    }
    fn remove(svc: &'static str, id: &str) -> (&'static str, Step) {
        (svc, Step::Remove { id: id.into() })
    }
    fn restart(svc: &'static str, id: &str) -> (&'static str, Step) {
        (svc, Step::Restart { id: id.into() })
    }

    const AWAIT: Action = Action::Await;
    const SOON: Action = Action::Requeue(PROGRESS);
    const NOW: Action = Action::Requeue(FAST);
    const NONE: Verdict = Verdict::Unchanged;

    fn t0() -> Instant {
        // Far enough from the process start that `now - 60 s` exists.
        Instant::now() + Duration::from_secs(3_600)
    }

    /// Plan a case at `now`, with `cur` hashes resolved.
    fn run(c: &Case, now: Instant) -> (RevisionSpec, AppPlan) {
        let spec = spec(c.compose);
        let observed: Vec<Observed> = c
            .observed
            .iter()
            .cloned()
            .map(|mut o| {
                if o.hash == "cur" {
                    o.hash = spec.service_hash(&o.service);
                }
                o
            })
            .collect();
        let desired = Desired {
            app: "shop",
            revision: 2,
            spec: &spec,
            status: c.status,
            converged_before: c.converged_before,
            rollout_deadline_ms: 30_000,
            min_drain_ms: 50,
            providers_down: &c.providers_down,
            convergence: if c.services.is_some() {
                Convergence::Services
            } else {
                Convergence::Slots
            },
            gateway_probes: c.gateway_probes,
        };
        let services: Vec<ObservedService> = c
            .services
            .iter()
            .flatten()
            .cloned()
            .map(|mut o| {
                if o.hash == "cur" {
                    o.hash = spec.service_hash(&o.service);
                }
                if o.replicas == u32::MAX {
                    o.replicas = spec
                        .project
                        .services
                        .get(&o.service)
                        .map_or(1, |s| s.replicas);
                }
                o
            })
            .collect();
        let plan = plan_app(&desired, &observed, &services, &c.memory, now);
        (spec, plan)
    }

    const WEB2: &str = "services:\n  web:\n    image: web\n    deploy: {replicas: 2}\n";
    const WEB1: &str = "services:\n  web:\n    image: web\n";
    const DELAY: &str =
        "services:\n  web:\n    image: web\n    deploy: {restart_policy: {delay: 5s}}\n";
    const WINDOW: &str = "services:
  web:
    image: web
    deploy: {restart_policy: {condition: on-failure, max_attempts: 2, window: 10s}}
";
    const WEB3: &str = "services:\n  web:\n    image: web\n    deploy: {replicas: 3}\n";
    const STARTED: &str = "services:
  db: {image: db}
  api: {image: api, depends_on: {db: {condition: service_started}}}
";
    const HEALTHY: &str = "services:
  db: {image: db}
  api: {image: api, depends_on: {db: {condition: service_healthy}}}
";
    const COMPLETED: &str = "services:
  migrate: {image: m, restart: 'no'}
  api: {image: api, depends_on: {migrate: {condition: service_completed_successfully}}}
";
    const ON_FAILURE: &str = "services:
  job: {image: j, restart: on-failure}
";
    const ON_FAILURE_2: &str = "services:
  job:
    image: j
    deploy: {restart_policy: {condition: on-failure, max_attempts: 2}}
";
    const UNLESS_STOPPED: &str = "services:\n  web: {image: web, restart: unless-stopped}\n";
    const FIXED_NAME: &str = "services:\n  web: {image: web, container_name: the-web}\n";
    const NO: &str = "services:\n  job: {image: j, restart: 'no'}\n";
    const UPDATE: &str = "services:
  web:
    image: web
    deploy: {replicas: 2, update_config: {monitor: 5s}}
";
    const UPDATE_PAUSE: &str = "services:
  web:
    image: web
    deploy: {replicas: 2, update_config: {monitor: 5s, failure_action: pause}}
";
    const UPDATE_CONTINUE: &str = "services:
  web:
    image: web
    deploy: {replicas: 2, update_config: {monitor: 5s, failure_action: continue}}
";
    const RATIO: &str = "services:
  web:
    image: web
    deploy: {replicas: 4, update_config: {monitor: 5s, max_failure_ratio: 0.25}}
";
    /// Slot 0's new replica never became ready; `more` ready new replicas in slots 1.. and old
    /// ones in the rest.
    fn one_failed_of_four(more: u32) -> Vec<Observed> {
        let mut v = vec![
            old_age(rep("n0", "web", 0, "cur", Running, Starting), 6_000),
            rep("o0", "web", 0, "old", Running, Ready),
        ];
        for slot in 1..4 {
            let id = format!("{}{slot}", if slot <= more { "n" } else { "o" });
            let hash = if slot <= more { "cur" } else { "old" };
            v.push(rep(&id, "web", slot, hash, Running, Ready));
        }
        v
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table
    fn table() {
        let now = t0();
        let failed = |reason: &str, action| Verdict::RolloutFailed {
            message: format!("web: {reason}"),
            action,
        };
        let late = "replica 0 of the new version did not become healthy within 5 s";
        let cases: Vec<(Case, Expect)> = vec![
            // Deploys.
            (
                case("fresh deploy creates every slot", WEB2, vec![]),
                expect(vec![create("web", 0), create("web", 1)], NONE, "progressing", SOON),
            ),
            (
                case("converged: the pending revision is recorded converged", WEB2, vec![
                    rep("a", "web", 0, "cur", Running, Ready),
                    rep("b", "web", 1, "cur", Running, Ready),
                ]),
                expect(vec![], Verdict::Converged, "healthy", AWAIT),
            ),
            (
                case("converged and already recorded: nothing to record", WEB2, vec![
                    rep("a", "web", 0, "cur", Running, Ready),
                    rep("b", "web", 1, "cur", Running, Ready),
                ])
                .status(RevisionStatus::Converged),
                expect(vec![], NONE, "healthy", AWAIT),
            ),
            (
                case("all settled but a step still runs: not converged yet", WEB2, vec![
                    rep("a", "web", 0, "cur", Running, Ready),
                    rep("b", "web", 1, "cur", Running, Ready),
                ])
                .memory(|m| m.busy = true),
                expect(vec![], NONE, "progressing", SOON),
            ),
            (
                case("starting replicas: in progress", WEB2, vec![
                    rep("a", "web", 0, "cur", Running, Starting),
                    rep("b", "web", 1, "cur", Running, Ready),
                ]),
                expect(vec![], NONE, "progressing", SOON),
            ),
            // x-berth.uses: a first start waits for the market provider, as for a depends_on.
            (
                case("uses: the provider has nothing ready: wait", WEB1, vec![])
                    .provider_down("web", "a/orders"),
                expect(vec![], NONE, "progressing", SOON),
            ),
            (
                case("uses: the provider answers: go", WEB1, vec![]),
                expect(vec![create("web", 0)], NONE, "progressing", SOON),
            ),
            // depends_on.
            (
                case("service_started: the dependency is created, not started: wait", STARTED, vec![
                    rep("d", "db", 0, "cur", Created, Starting),
                ]),
                expect(vec![start("db", "d")], NONE, "progressing", SOON),
            ),
            (
                case("service_started: the dependency runs (not ready): go", STARTED, vec![
                    rep("d", "db", 0, "cur", Running, Starting),
                ]),
                expect(vec![create("api", 0)], NONE, "progressing", SOON),
            ),
            (
                case("service_started: only an old replica of the dependency: wait", STARTED, vec![
                    rep("d", "db", 0, "old", Running, Ready),
                ])
                .update(),
                expect(vec![create("db", 0)], NONE, "progressing", SOON),
            ),
            (
                case("service_healthy: the dependency is not ready: wait", HEALTHY, vec![
                    rep("d", "db", 0, "cur", Running, Starting),
                ]),
                expect(vec![], NONE, "progressing", SOON),
            ),
            (
                case("service_healthy: the dependency is ready: go", HEALTHY, vec![
                    rep("d", "db", 0, "cur", Running, Ready),
                ]),
                expect(vec![create("api", 0)], NONE, "progressing", SOON),
            ),
            (
                case("service_healthy: an unhealthy dependency is restarted, dependants wait", HEALTHY, vec![
                    rep("d", "db", 0, "cur", Running, Unhealthy),
                ]),
                expect(vec![restart("db", "d")], NONE, "degraded", SOON),
            ),
            (
                case("service_completed_successfully: the job runs: wait", COMPLETED, vec![
                    rep("m", "migrate", 0, "cur", Running, Ready),
                ]),
                expect(vec![], NONE, "progressing", SOON),
            ),
            (
                case("service_completed_successfully: the job exited 0: go", COMPLETED, vec![
                    rep("m", "migrate", 0, "cur", Exited(0), Starting),
                ]),
                expect(vec![create("api", 0)], NONE, "progressing", SOON),
            ),
            (
                case("service_completed_successfully: the job failed: a first deploy fails", COMPLETED, vec![
                    rep("m", "migrate", 0, "cur", Exited(3), Starting),
                ]),
                expect(
                    vec![],
                    Verdict::FirstDeployFailed { problem: "migrate: replica 0 exited with code 3".into() },
                    "failed",
                    SOON,
                ),
            ),
            // A replica exited, per restart policy.
            (
                case("restart always (the default): started again", WEB1, vec![
                    rep("a", "web", 0, "cur", Exited(137), Starting),
                ]),
                expect(vec![start("web", "a")], NONE, "degraded", SOON),
            ),
            (
                case("on-failure: a failure is started again", ON_FAILURE, vec![
                    rep("j", "job", 0, "cur", Exited(1), Starting),
                ]),
                expect(vec![start("job", "j")], NONE, "degraded", SOON),
            ),
            (
                case("on-failure: a success stays exited and the job converges", ON_FAILURE, vec![
                    rep("j", "job", 0, "cur", Exited(0), Starting),
                ]),
                expect(vec![], Verdict::Converged, "healthy", AWAIT),
            ),
            (
                case("on-failure with max_attempts: attempts used up fail a first deploy", ON_FAILURE_2, vec![
                    rep("j", "job", 0, "cur", Exited(1), Starting),
                ])
                .memory(|m| {
                    m.restarts.insert("j".into(), Restarts { count: 2, last_start: None });
                }),
                expect(
                    vec![],
                    Verdict::FirstDeployFailed { problem: "job: replica 0 exited with code 1".into() },
                    "failed",
                    SOON,
                ),
            ),
            (
                case("restart no: a failure stays exited and fails a first deploy", NO, vec![
                    rep("j", "job", 0, "cur", Exited(2), Starting),
                ]),
                expect(
                    vec![],
                    Verdict::FirstDeployFailed { problem: "job: replica 0 exited with code 2".into() },
                    "failed",
                    SOON,
                ),
            ),
            (
                case("restart no, after a converged revision: reported, not failed", NO, vec![
                    rep("j", "job", 0, "cur", Exited(2), Starting),
                ])
                .update(),
                expect(vec![], NONE, "degraded", SOON),
            ),
            (
                case(
                    "restart unless-stopped: started again",
                    UNLESS_STOPPED,
                    vec![rep("a", "web", 0, "cur", Exited(0), Starting)],
                )
                .update(),
                expect(vec![start("web", "a")], NONE, "progressing", SOON),
            ),
            (
                case(
                    "a fixed container_name updates stop-first: the old replica drains first",
                    FIXED_NAME,
                    vec![rep("o", "web", 0, "old", Running, Ready)],
                )
                .update(),
                expect(vec![drain("web", "o")], NONE, "progressing", SOON),
            ),
            // restart_policy.delay and window.
            (
                case("restart_policy.delay: an exited replica waits the delay from its exit", DELAY, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    m.exited_since.insert("a".into(), now - Duration::from_secs(2));
                }),
                expect(vec![], NONE, "degraded", Action::Requeue(Duration::from_secs(3))),
            ),
            (
                case("restart_policy.delay passed: restarted", DELAY, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    m.exited_since.insert("a".into(), now - Duration::from_secs(5));
                }),
                expect(vec![start("web", "a")], NONE, "degraded", SOON),
            ),
            (
                case("restart_policy.delay: the crash-loop backoff grows from it", DELAY, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    // Second failed restart: 2 × 5 s from the last restart.
                    m.restarts.insert("a".into(), Restarts { count: 2, last_start: Some(now - Duration::from_secs(6)) });
                    m.exited_since.insert("a".into(), now - Duration::from_secs(6));
                }),
                expect(vec![], NONE, "degraded", Action::Requeue(Duration::from_secs(4))),
            ),
            (
                case("restart_policy.window: a restart that exits within the window counts", WINDOW, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    m.restarts.insert("a".into(), Restarts { count: 2, last_start: Some(now - Duration::from_secs(5)) });
                    m.exited_since.insert("a".into(), now - Duration::from_secs(1));
                }),
                expect(vec![], NONE, "degraded", SOON),
            ),
            (
                case("restart_policy.window: a restart that outlived the window succeeded: counts start over", WINDOW, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    m.restarts.insert("a".into(), Restarts { count: 2, last_start: Some(now - Duration::from_secs(30)) });
                    m.exited_since.insert("a".into(), now - Duration::from_secs(1));
                }),
                expect(vec![start("web", "a")], NONE, "degraded", SOON),
            ),
            // Crash loops.
            (
                case("crash-loop backoff: no restart before its time, look again then", WEB1, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    // 250 ms doubling: 500 ms after the second restart.
                    m.restarts.insert("a".into(), Restarts { count: 2, last_start: Some(now) });
                }),
                expect(vec![], NONE, "degraded", Action::Requeue(Duration::from_millis(500))),
            ),
            (
                case("crash-loop backoff passed: restarted", WEB1, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .update()
                .memory(|m| {
                    m.restarts.insert(
                        "a".into(),
                        Restarts { count: 2, last_start: Some(now - Duration::from_secs(1)) },
                    );
                }),
                expect(vec![start("web", "a")], NONE, "degraded", SOON),
            ),
            (
                case("a first deploy that keeps exiting fails", WEB1, vec![
                    rep("a", "web", 0, "cur", Exited(1), Starting),
                ])
                .memory(|m| {
                    m.restarts.insert(
                        "a".into(),
                        Restarts { count: 3, last_start: Some(now) },
                    );
                }),
                expect(
                    vec![],
                    Verdict::FirstDeployFailed { problem: "web: replica 0 keeps exiting".into() },
                    "failed",
                    Action::Requeue(Duration::from_secs(1)),
                ),
            ),
            (
                case("a failing slot waits for its retry time; the others go on", WEB2, vec![])
                    .memory(|m| {
                        m.failing.insert(("web".into(), 0), SlotFailures {
                            failures: 2,
                            since: now - Duration::from_secs(1),
                            next: now + Duration::from_secs(1),
                            error: "create failed: no".into(),
                        });
                    }),
                expect(vec![create("web", 1)], NONE, "degraded", SOON),
            ),
            // Rolling updates.
            (
                case("rolling update starts with one slot (start-first)", UPDATE, vec![
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update(),
                expect(vec![create("web", 0)], NONE, "progressing", SOON),
            ),
            (
                case("rolling update: a slot's new replica is ready: its old one drains, the next slot starts", UPDATE, vec![
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("n0", "web", 0, "cur", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update(),
                expect(vec![drain("web", "o0"), create("web", 1)], NONE, "progressing", SOON),
            ),
            (
                case("rolling update: drained and idle, removed; drains look again soon", UPDATE, vec![
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("n0", "web", 0, "cur", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update()
                .memory(|m| {
                    m.draining.insert("o0".into(), Draining { since: now - Duration::from_secs(1), in_flight: 0 });
                }),
                expect(vec![remove("web", "o0"), create("web", 1)], NONE, "progressing", NOW),
            ),
            (
                case("rolling update fails (rollback): recorded as failed", UPDATE, vec![
                    old_age(rep("n0", "web", 0, "cur", Running, Starting), 6_000),
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update(),
                expect(vec![], failed(late, FailureAction::Rollback), "failed", SOON),
            ),
            (
                case("rolling update fails (pause): recorded with how to resume", UPDATE_PAUSE, vec![
                    old_age(rep("n0", "web", 0, "cur", Running, Starting), 6_000),
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update(),
                expect(
                    vec![],
                    failed(
                        &format!("{late}; rollout paused (failure_action: pause): apply again (the same file resumes) or roll back"),
                        FailureAction::Pause,
                    ),
                    "failed",
                    SOON,
                ),
            ),
            (
                case("paused: no further slot starts its update", UPDATE_PAUSE, vec![
                    rep("n0", "web", 0, "cur", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update()
                .status(RevisionStatus::Failed),
                expect(vec![], NONE, "failed", SOON),
            ),
            (
                case("rolling update fails (continue): nothing recorded", UPDATE_CONTINUE, vec![
                    old_age(rep("n0", "web", 0, "cur", Running, Starting), 6_000),
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update(),
                expect(vec![], NONE, "progressing", SOON),
            ),
            (
                case("a failure on a revision no longer pending is not recorded again", UPDATE, vec![
                    old_age(rep("n0", "web", 0, "cur", Running, Starting), 6_000),
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("o1", "web", 1, "old", Running, Ready),
                ])
                .update()
                .status(RevisionStatus::Failed),
                expect(vec![], NONE, "failed", SOON),
            ),
            // update_config.max_failure_ratio (Swarm's rule: failed slots / slots > ratio fails).
            (
                case("max_failure_ratio 0.25: 1 failed slot of 4 is given up (degraded), the next slot updates", RATIO, one_failed_of_four(0))
                    .update(),
                expect(vec![create("web", 1)], NONE, "degraded", SOON),
            ),
            (
                case("max_failure_ratio 0.25: 2 failed slots of 4 fail the rollout", RATIO, {
                    let mut v = one_failed_of_four(0);
                    v.push(old_age(rep("n1", "web", 1, "cur", Exited(1), Starting), 6_000));
                    v
                })
                .update()
                .memory(|m| {
                    m.restarts.insert("n1".into(), Restarts { count: 3, last_start: Some(now) });
                }),
                expect(vec![], failed(late, FailureAction::Rollback), "failed", SOON),
            ),
            (
                case("max_failure_ratio 0.25: the other slots updated: converged, degraded", RATIO, one_failed_of_four(3))
                    .update(),
                expect(vec![], Verdict::Converged, "degraded", AWAIT),
            ),
            (
                case("max_failure_ratio 0 (the default): 1 failed slot of 2 fails the rollout", UPDATE, vec![
                    old_age(rep("n0", "web", 0, "cur", Running, Starting), 6_000),
                    rep("o0", "web", 0, "old", Running, Ready),
                    rep("n1", "web", 1, "cur", Running, Ready),
                ])
                .update(),
                expect(vec![], failed(late, FailureAction::Rollback), "failed", SOON),
            ),
            // Scale.
            (
                case("scale up adds slots", WEB3, vec![rep("a", "web", 0, "cur", Running, Ready)]).update(),
                expect(vec![create("web", 1), create("web", 2)], NONE, "progressing", SOON),
            ),
            (
                case("scale down drains the surplus", WEB1, vec![
                    rep("a", "web", 0, "cur", Running, Ready),
                    rep("b", "web", 1, "cur", Running, Ready),
                ])
                .update(),
                expect(vec![drain("web", "b")], NONE, "progressing", SOON),
            ),
            // Removed services.
            (
                case("a service removed from the file is drained and removed", WEB1, vec![
                    rep("a", "web", 0, "cur", Running, Ready),
                    rep("x", "gone", 0, "h", Running, Ready),
                    rep("y", "gone", 1, "h", Exited(0), Starting),
                ])
                .update(),
                expect(vec![drain("gone", "x"), remove("gone", "y")], NONE, "progressing", SOON),
            ),
        ];
        let mut failures = Vec::new();
        for (c, e) in &cases {
            let (_, p) = run(c, now);
            let steps: Vec<(&str, Step)> = p
                .steps
                .iter()
                .map(|(s, st)| (s.as_str(), st.clone()))
                .collect();
            let got = (
                steps,
                p.verdict.clone(),
                p.status.health.as_str(),
                p.requeue,
            );
            let want = (e.steps.clone(), e.verdict.clone(), e.health, e.requeue);
            if got != want {
                failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", c.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn slots_given_up_under_max_failure_ratio_are_named_in_the_status() {
        let c = case("", RATIO, one_failed_of_four(3)).update();
        let (_, p) = run(&c, t0());
        assert_eq!(
            p.status.message,
            "web: 1 of 4 replicas failed to update, within max_failure_ratio 0.25: \
             replica 0 of the new version did not become healthy within 5 s"
        );
        assert_eq!(p.services["web"].given_up, vec![0]);
        assert_eq!(
            p.status.services[0].problem.as_deref(),
            Some(
                "replica 0 of the new version did not become healthy within 5 s \
                 (update given up: within max_failure_ratio 0.25)"
            )
        );
        assert!(p.status.converged);
        // Exactly the ratio is within it; a ratio of 1 gives every slot up.
        assert!(tolerates(0.25, 1, 4));
        assert!(!tolerates(0.25, 2, 4));
        assert!(tolerates(1.0, 4, 4));
        assert!(!tolerates(0.0, 1, 4));
    }

    #[test]
    fn restart_backoff_doubles_from_the_delay_and_stops_growing() {
        let ms = Duration::from_millis;
        let got: Vec<Duration> = (0..10).map(|n| restart_backoff(n, 0)).collect();
        assert_eq!(
            got,
            vec![
                ms(0),
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16_000),
                ms(30_000),
                ms(30_000)
            ]
        );
        assert_eq!(restart_backoff(0, 5000), ms(0));
        assert_eq!(restart_backoff(1, 5000), ms(5000));
        assert_eq!(restart_backoff(3, 5000), ms(20_000));
        assert_eq!(restart_backoff(4, 5000), ms(30_000));
        // A delay longer than the cap is the cap.
        assert_eq!(restart_backoff(5, 60_000), ms(60_000));
        assert_eq!(restart_backoff(u32::MAX, 60_000), ms(60_000));
    }

    #[test]
    fn waiting_for_names_each_unmet_condition() {
        let c = case(
            "",
            HEALTHY,
            vec![rep("d", "db", 0, "cur", Running, Starting)],
        );
        let (_, p) = run(&c, t0());
        let api = p.status.services.iter().find(|s| s.name == "api");
        assert_eq!(
            api.map(|s| s.waiting_for.clone()),
            Some(vec!["db (service_healthy)".to_string()])
        );
        assert!(!p.services["api"].deps_ready);
        assert!(p.services["db"].deps_ready);
    }

    #[test]
    fn routes_list_ready_replicas_by_slot_without_those_draining() {
        const ROUTED: &str = "services:
  web:
    image: web
    deploy: {replicas: 3}
    ports: ['8080:80']
    x-berth: {route: {host: shop.example, port: 80}}
";
        // Slot 0's new replica is not ready yet, so its old one serves (start-first: old and
        // new both serve during a rollout); slot 1 is not ready.
        let c = case(
            "",
            ROUTED,
            vec![
                rep("c", "web", 2, "cur", Running, Ready),
                rep("o", "web", 0, "old", Running, Ready),
                rep("b", "web", 1, "cur", Running, Starting),
                rep("n", "web", 0, "cur", Running, Starting),
            ],
        )
        .update();
        let (_, p) = run(&c, t0());
        let ids = |e: &[Endpoint]| e.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.routes[0].host.as_deref(), Some("shop.example"));
        assert_eq!(ids(&p.routes[0].endpoints), vec!["o", "c"]);
        assert_eq!(p.ports.len(), 1);
        assert_eq!(p.ports[0].listen.port(), 8080);
        assert_eq!(p.ports[0].endpoints[0].addr.port(), 80);

        // A replica draining since an earlier pass is out.
        let c = c.memory(|m| {
            m.draining.insert(
                "c".into(),
                Draining {
                    since: t0(),
                    in_flight: 3,
                },
            );
        });
        let (_, p) = run(&c, t0());
        assert_eq!(ids(&p.routes[0].endpoints), vec!["o"]);

        // Slot 0's new replica is ready: this plan drains the old one, and it is out at once.
        let c = case(
            "",
            ROUTED,
            vec![
                rep("c", "web", 2, "cur", Running, Ready),
                rep("o", "web", 0, "old", Running, Ready),
                rep("n", "web", 0, "cur", Running, Ready),
            ],
        )
        .update();
        let (_, p) = run(&c, t0());
        assert!(p
            .steps
            .contains(&("web".to_string(), Step::Drain { id: "o".into() })));
        assert_eq!(ids(&p.routes[0].endpoints), vec!["n", "c"]);
    }

    #[test]
    fn a_failing_step_and_an_unbindable_port_are_the_services_problem() {
        const PORTS: &str = "services:\n  web:\n    image: web\n    ports: ['8080:80']\n";
        let now = t0();
        let c = case("", PORTS, vec![]).memory(|m| {
            m.failing.insert(
                ("web".into(), 0),
                SlotFailures {
                    failures: 1,
                    since: now,
                    next: now + Duration::from_millis(500),
                    error: "create failed: name taken".into(),
                },
            );
        });
        let (_, p) = run(&c, now);
        assert_eq!(
            p.status.services[0].problem.as_deref(),
            Some(
                "replica 0: create failed: name taken (1 failed attempt, retrying with a backoff)"
            )
        );
        assert_eq!(p.requeue, Action::Requeue(Duration::from_millis(500)));
        let c = c.memory(|m| {
            m.port_errors = vec![(
                "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!()),
                "in use".into(),
            )];
        });
        let (_, p) = run(&c, now);
        assert_eq!(
            p.status.services[0].problem.as_deref(),
            Some("host port 0.0.0.0:8080 cannot be bound: in use")
        );
    }

    // `Services` mode (docs/swarm.md#who-rolls-out): the runtime rolls out; Berth ensures one
    // runtime service per Compose service, in dependency order, and reads the verdict from the
    // runtime's update state.

    /// A runtime service running the file's replica count (`u32::MAX`, resolved by `run`).
    fn svc(service: &str, hash: &str, update: Option<UpdateState>) -> ObservedService {
        ObservedService {
            service: service.into(),
            hash: hash.into(),
            replicas: u32::MAX,
            global: false,
            update: update.map(|u| (u, format!("the runtime says {}", u.as_str()))),
        }
    }
    fn ensure(service: &str) -> ServiceStep {
        ServiceStep::EnsureService {
            service: service.into(),
            revision: 2,
        }
    }
    fn remove_service(service: &str) -> ServiceStep {
        ServiceStep::RemoveService {
            service: service.into(),
        }
    }
    impl Case {
        fn services(mut self, services: Vec<ObservedService>) -> Case {
            self.services = Some(services);
            self
        }
        /// This server ensured `service` at revision 2 (the desired one) before.
        fn ensured(self, service: &str) -> Case {
            let service = service.to_string();
            self.memory(|m| {
                m.ensured.insert(service, 2);
            })
        }
    }

    #[test]
    #[allow(clippy::too_many_lines)] // a table
    fn services_mode_table() {
        use UpdateState::{Completed, Paused, RollbackCompleted, RollbackPaused, Updating};
        let now = t0();
        const GLOBAL: &str = "services:\n  web:\n    image: web\n    deploy: {mode: global}\n";
        const WEB2_CONTINUE: &str = "services:
  web:
    image: web
    deploy: {replicas: 2, update_config: {failure_action: continue}}
";
        let rolled_back = |state: &str| Verdict::RolloutFailed {
            message: format!(
                "web: the update was rolled back by Swarm ({state}): the runtime says {state}"
            ),
            action: FailureAction::Rollback,
        };
        let two_ready = || {
            vec![
                rep("t1", "web", 0, "cur", Running, Ready),
                rep("t2", "web", 1, "cur", Running, Ready),
            ]
        };
        let cases: Vec<(Case, Vec<ServiceStep>, Verdict, &'static str, Action)> = vec![
            // Fresh deploys, in dependency order.
            (
                case("fresh deploy: the service is ensured", WEB2, vec![]).services(vec![]),
                vec![ensure("web")],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("fresh deploy: the dependency first, the dependent waits", HEALTHY, vec![])
                    .services(vec![]),
                vec![ensure("db")],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("dependency created but not healthy: the dependent still waits", HEALTHY, vec![
                    rep("d1", "db", 0, "cur", Running, Starting),
                ])
                .services(vec![svc("db", "cur", None)]),
                vec![],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("dependency healthy: the dependent is ensured", HEALTHY, vec![
                    rep("d1", "db", 0, "cur", Running, Ready),
                ])
                .services(vec![svc("db", "cur", None)]),
                vec![ensure("api")],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("service_started: a created task is not started yet", STARTED, vec![
                    rep("d1", "db", 0, "cur", Created, Starting),
                ])
                .services(vec![svc("db", "cur", None)]),
                vec![],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("service_completed_successfully: ensured once the job exited 0", COMPLETED, vec![
                    rep("m1", "migrate", 0, "cur", Exited(0), Starting),
                ])
                .services(vec![svc("migrate", "cur", None)]),
                vec![ensure("api")],
                NONE,
                "progressing",
                SOON,
            ),
            // A global service: as many tasks as the runtime wants (one per eligible node).
            (
                case("global: one ready task per node is converged", GLOBAL, vec![
                    rep("g1", "web", 0, "cur", Running, Ready),
                    rep("g2", "web", 1, "cur", Running, Ready),
                    rep("g3", "web", 2, "cur", Running, Ready),
                ])
                .services(vec![ObservedService { replicas: 3, global: true, ..svc("web", "cur", None) }]),
                vec![],
                Verdict::Converged,
                "healthy",
                AWAIT,
            ),
            (
                case("global: a node's task still missing is progress, no step", GLOBAL, vec![
                    rep("g1", "web", 0, "cur", Running, Ready),
                    rep("g2", "web", 1, "cur", Running, Ready),
                ])
                .services(vec![ObservedService { replicas: 3, global: true, ..svc("web", "cur", None) }]),
                vec![],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("global in the file, replicated on the runtime: ensured", GLOBAL, vec![
                    rep("g1", "web", 0, "cur", Running, Ready),
                ])
                .services(vec![ObservedService { replicas: 1, ..svc("web", "cur", None) }]),
                vec![ensure("web")],
                NONE,
                "progressing",
                SOON,
            ),
            // No-op when the hash matches.
            (
                case("hash matches and tasks ready: converged, nothing to do", WEB2, two_ready())
                    .services(vec![svc("web", "cur", None)]),
                vec![],
                Verdict::Converged,
                "healthy",
                AWAIT,
            ),
            (
                case("hash matches, tasks still starting: no step, not converged", WEB2, vec![
                    rep("t1", "web", 0, "cur", Running, Starting),
                    rep("t2", "web", 1, "cur", Running, Ready),
                ])
                .services(vec![svc("web", "cur", None)]),
                vec![],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("hash matches, the runtime still updating: no step, not converged", WEB2, two_ready())
                    .update()
                    .services(vec![svc("web", "cur", Some(Updating))]),
                vec![],
                NONE,
                "progressing",
                SOON,
            ),
            // An update: a new revision's spec.
            (
                case("a new revision: the service is updated to it", WEB2, vec![
                    rep("t1", "web", 0, "old", Running, Ready),
                    rep("t2", "web", 1, "old", Running, Ready),
                ])
                .update()
                .services(vec![svc("web", "old", Some(Completed))]),
                vec![ensure("web")],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("the update completed: converged", WEB2, two_ready())
                    .update()
                    .ensured("web")
                    .services(vec![svc("web", "cur", Some(Completed))]),
                vec![],
                Verdict::Converged,
                "healthy",
                AWAIT,
            ),
            (
                case("scaled: same hash, another replica count: the service is updated", WEB3, two_ready())
                    .update()
                    .services(vec![ObservedService {
                        replicas: 2,
                        ..svc("web", "cur", Some(Completed))
                    }]),
                vec![ensure("web")],
                NONE,
                "progressing",
                SOON,
            ),
            // Removal.
            (
                case("a service no longer in the file is removed", WEB1, vec![
                    rep("t1", "web", 0, "cur", Running, Ready),
                    rep("w1", "worker", 0, "x", Running, Ready),
                ])
                .update()
                .services(vec![svc("web", "cur", None), svc("worker", "x", None)]),
                vec![remove_service("worker")],
                NONE,
                "progressing",
                SOON,
            ),
            (
                case("removed service's tasks still stopping: not converged yet", WEB1, vec![
                    rep("t1", "web", 0, "cur", Running, Ready),
                    rep("w1", "worker", 0, "x", Running, Ready),
                ])
                .update()
                .services(vec![svc("web", "cur", None)]),
                vec![],
                NONE,
                "progressing",
                SOON,
            ),
            // Verdicts from the runtime's update state.
            (
                case("rolled back by the runtime after this server asked: rollout failed", WEB2, vec![
                    rep("t1", "web", 0, "old", Running, Ready),
                    rep("t2", "web", 1, "old", Running, Ready),
                ])
                .update()
                .ensured("web")
                .services(vec![svc("web", "old", Some(RollbackCompleted))]),
                vec![],
                rolled_back("rollback_completed"),
                "failed",
                SOON,
            ),
            (
                case("a rollback that failed too: rollout failed, nothing re-sent", WEB2, vec![
                    rep("t1", "web", 0, "old", Running, Ready),
                ])
                .update()
                .ensured("web")
                .services(vec![svc("web", "old", Some(RollbackPaused))]),
                vec![],
                rolled_back("rollback_paused"),
                "failed",
                SOON,
            ),
            (
                case("an old rollback, this revision never sent: the service is updated", WEB2, vec![
                    rep("t1", "web", 0, "old", Running, Ready),
                    rep("t2", "web", 1, "old", Running, Ready),
                ])
                .update()
                .services(vec![svc("web", "old", Some(RollbackCompleted))]),
                vec![ensure("web")],
                NONE,
                "degraded",
                SOON,
            ),
            (
                case("the rollback revision matches what the runtime rolled back to: converged", WEB2, two_ready())
                    .update()
                    .services(vec![svc("web", "cur", Some(RollbackCompleted))]),
                vec![],
                Verdict::Converged,
                "healthy",
                AWAIT,
            ),
            (
                case("paused by the runtime (failure_action pause): rollout failed", UPDATE_PAUSE, vec![
                    rep("t1", "web", 0, "cur", Running, Starting),
                    rep("t2", "web", 1, "old", Running, Ready),
                ])
                .update()
                .ensured("web")
                .services(vec![svc("web", "cur", Some(Paused))]),
                vec![],
                Verdict::RolloutFailed {
                    message: "web: the update was paused by Swarm: the runtime says paused; rollout paused (failure_action: pause): apply again (the same file resumes) or roll back".into(),
                    action: FailureAction::Pause,
                },
                "failed",
                SOON,
            ),
            (
                case("paused with failure_action continue: nothing recorded", WEB2_CONTINUE, vec![
                    rep("t1", "web", 0, "cur", Running, Ready),
                    rep("t2", "web", 1, "old", Running, Ready),
                ])
                .update()
                .ensured("web")
                .services(vec![svc("web", "cur", Some(Paused))]),
                vec![],
                NONE,
                "degraded",
                SOON,
            ),
            (
                case("an ensure that failed waits for its retry time", WEB2, vec![])
                    .services(vec![])
                    .memory(move |m| {
                        m.service_failing.insert("web".into(), SlotFailures {
                            failures: 2,
                            since: now,
                            next: now + Duration::from_millis(700),
                            error: "ensure failed: docker: boom".into(),
                        });
                    }),
                vec![],
                NONE,
                "degraded",
                Action::Requeue(Duration::from_millis(700)),
            ),
            (
                case("an ensure that failed is tried again once its retry time passed", WEB2, vec![])
                    .services(vec![])
                    .memory(move |m| {
                        m.service_failing.insert("web".into(), SlotFailures {
                            failures: 2,
                            since: now - Duration::from_secs(5),
                            next: now - Duration::from_millis(1),
                            error: "ensure failed: docker: boom".into(),
                        });
                    }),
                vec![ensure("web")],
                NONE,
                "degraded",
                SOON,
            ),
            (
                case("a failed revision holds still (failure_action pause)", UPDATE_PAUSE, vec![
                    rep("t1", "web", 0, "old", Running, Ready),
                ])
                .update()
                .status(RevisionStatus::Failed)
                .services(vec![svc("web", "old", None)]),
                vec![],
                NONE,
                "failed",
                SOON,
            ),
        ];
        for (c, steps, verdict, health, requeue) in cases {
            let (_, p) = run(&c, now);
            assert_eq!(p.service_steps, steps, "{}: steps", c.name);
            assert!(
                p.steps.is_empty(),
                "{}: no slot steps in Services mode",
                c.name
            );
            assert_eq!(p.verdict, verdict, "{}: verdict", c.name);
            assert_eq!(p.status.health, health, "{}: health", c.name);
            assert_eq!(p.requeue, requeue, "{}: requeue", c.name);
        }
    }

    #[test]
    fn services_mode_keeps_routes_and_names_the_runtimes_problem() {
        const ROUTED: &str = "services:
  web:
    image: web
    deploy: {replicas: 2}
    x-berth: {route: {host: shop.example, port: 80}}
";
        let c = case(
            "",
            ROUTED,
            vec![
                rep("t2", "web", 1, "cur", Running, Ready),
                rep("t1", "web", 0, "cur", Running, Starting),
            ],
        )
        .update()
        .ensured("web")
        .services(vec![svc("web", "old", Some(UpdateState::RollbackStarted))]);
        let (_, p) = run(&c, t0());
        let ids: Vec<&str> = p.routes[0]
            .endpoints
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, ["t2"], "ready tasks only");
        assert_eq!(
            p.status.services[0].problem.as_deref(),
            Some("update rollback_started: the runtime says rollback_started")
        );
    }

    #[test]
    fn where_the_gateways_probe_routes_carry_the_probe_and_every_running_task_not_stopping() {
        const PROBED: &str = "services:
  web:
    image: web
    deploy: {replicas: 3}
    ports: ['8080:80']
    x-berth: {route: {host: shop.example, port: 80}, health: {http: /healthz, port: 81, interval: 2s}}
  tcp:
    image: tcp
    x-berth: {route: {host: tcp.example, port: 90}}
  plain:
    image: plain
    x-berth: {route: {host: plain.example, port: 70}}
    healthcheck: {test: [CMD, /app, probe], interval: 2s}
";
        let mut stopping = rep("t3", "web", 2, "cur", Running, Starting);
        stopping.stopping = true;
        let mut c = case(
            "",
            PROBED,
            vec![
                rep("t1", "web", 0, "cur", Running, Ready),
                rep("t2", "web", 1, "cur", Running, Starting),
                stopping,
                rep("t4", "web", 3, "cur", Running, Unhealthy),
                rep("t5", "web", 4, "cur", Exited(1), Starting),
                rep("t6", "web", 5, "cur", Created, Starting),
                rep("u1", "tcp", 0, "cur", Running, Starting),
                rep("p1", "plain", 0, "cur", Running, Starting),
                rep("p2", "plain", 1, "cur", Running, Ready),
            ],
        )
        .update()
        .services(vec![svc("web", "cur", None)]);
        let ids = |e: &[Endpoint]| e.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let find = |p: &AppPlan, service: &str| {
            p.routes
                .iter()
                .find(|r| r.service == service)
                .cloned()
                .unwrap()
        };
        // Probed here (the local runtime, and a table as before): ready replicas, no probe.
        let (_, p) = run(&c, t0());
        assert_eq!(ids(&find(&p, "web").endpoints), ["t1"]);
        assert!(p.routes.iter().all(|r| r.probe.is_none()), "{:?}", p.routes);
        assert!(p.ports.iter().all(|r| r.probe.is_none()), "{:?}", p.ports);

        c.gateway_probes = true;
        let (_, p) = run(&c, t0());
        let web = find(&p, "web");
        // Running or being started, and not stopping, whatever the control plane's readiness:
        // the gateways judge (a task they found unhealthy stays listed so they see it recover,
        // one being started is probed until it answers).
        assert_eq!(ids(&web.endpoints), ["t1", "t2", "t4", "t6"]);
        assert_eq!(
            web.endpoints[0].addr.port(),
            80,
            "routed at the route's port"
        );
        let probe = berth_core::EndpointProbe {
            http: Some("/healthz".into()),
            port: 81,
            interval_ms: 2_000,
            timeout_ms: 1_000,
        };
        assert_eq!(web.probe.as_ref(), Some(&probe));
        assert_eq!(ids(&p.ports[0].endpoints), ["t1", "t2", "t4", "t6"]);
        assert_eq!(p.ports[0].probe.as_ref(), Some(&probe));
        // A routed service without x-berth.health: a TCP connect to its routed port.
        let tcp = find(&p, "tcp");
        assert_eq!(ids(&tcp.endpoints), ["u1"]);
        assert_eq!(
            tcp.probe,
            Some(berth_core::EndpointProbe {
                http: None,
                port: 90,
                interval_ms: 2_000,
                timeout_ms: 1_000,
            })
        );
        // Docker's healthcheck decides: no probe, ready replicas only.
        let plain = find(&p, "plain");
        assert_eq!(ids(&plain.endpoints), ["p2"]);
        assert_eq!(plain.probe, None);
    }
}
