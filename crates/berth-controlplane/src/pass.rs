//! One reconcile pass of one application: observe, plan, execute, publish.
//!
//! A pass never waits on slow work: creates, starts, stops and removals run as owned background
//! tasks, marked busy so the next pass does not plan them again, and they wake the application
//! when done. The pass itself lists, inspects, plans and publishes the routing table in
//! milliseconds, so a replica that died leaves rotation at once and its replacement is created
//! in the same pass.

use crate::health::ProbeKind;
use crate::plan::{self, Order, Readiness, Replica, ReplicaState, RestartRule, Step};
use crate::reconcile::Action;
use crate::spec::{self, labels, RevisionSpec};
use crate::{CpError, Inner, RestartInfo, StepBackoff};
use berth_compose::{DependsCondition, FailureAction, RestartCondition, Service, UpdateOrder};
use berth_core::api::{AppStatus, Instance, ServiceStatus};
use berth_core::{Endpoint, HttpRoute, PortForward, Protocol, RoutingTable};
use berth_docker::{ContainerInspect, DockerError};
use berth_store::RevisionStatus;
use serde::de::IgnoredAny;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FAST: Duration = Duration::from_millis(25);
const PROGRESS: Duration = Duration::from_millis(250);

/// Run one pass; errors are retried with a backoff (no retry loop inside a pass), logged once
/// at warn and then at debug while the same error repeats, and shown as the services' problem.
pub(crate) async fn run(inner: &Arc<Inner>, app: &str) -> Action {
    match pass(inner, app).await {
        Ok(a) => {
            if let Some(b) = inner.mem().pass_failures.remove(app) {
                tracing::info!(
                    app,
                    failures = b.failures,
                    "reconcile pass succeeded after failing"
                );
            }
            a
        }
        Err(e) => {
            let error = format!("reconcile pass failed: {e}");
            let now = Instant::now();
            let mut mem = inner.mem();
            let b = mem
                .pass_failures
                .entry(app.to_string())
                .or_insert_with(|| StepBackoff {
                    revision: 0,
                    failures: 0,
                    since: now,
                    next: now,
                    error: String::new(),
                });
            b.failures += 1;
            // At least 1 s, as before: a pass failure is usually the engine or the store.
            let delay = crate::step_backoff(b.failures + 1);
            b.next = now + delay;
            let retry_ms = millis(delay);
            if b.error == error {
                tracing::debug!(
                    app,
                    failures = b.failures,
                    retry_ms,
                    error,
                    "reconcile pass failed again"
                );
            } else {
                tracing::warn!(
                    app,
                    failures = b.failures,
                    retry_ms,
                    error,
                    "reconcile pass failed; retrying"
                );
                b.error.clone_from(&error);
            }
            if let Some(st) = mem.status.get_mut(app) {
                for s in &mut st.services {
                    s.problem = Some(error.clone());
                }
                if !st.converged && st.health == "progressing" {
                    st.health = "degraded".into();
                }
            }
            Action::Requeue(delay)
        }
    }
}

/// What a pass observed of one container.
struct Observed {
    inspect: ContainerInspect,
    service: String,
    slot: u32,
    hash: String,
    revision: u64,
}

fn state_of(i: &ContainerInspect) -> ReplicaState {
    match i.state.status.as_str() {
        "created" => ReplicaState::Created,
        "running" => ReplicaState::Running,
        "exited" => ReplicaState::Exited(i.state.exit_code),
        _ => ReplicaState::Other,
    }
}

async fn observe(inner: &Inner, app: &str) -> Result<Vec<Observed>, CpError> {
    let filters = crate::label_filters(inner, Some(app));
    let list = inner.docker.list_containers(&filters, true).await?;
    let mut out = Vec::with_capacity(list.len());
    let inspects =
        futures_util::future::join_all(list.iter().map(|c| inner.docker.inspect_container(&c.id)))
            .await;
    for (c, i) in list.iter().zip(inspects) {
        let inspect = match i {
            Ok(i) => i,
            Err(DockerError::NotFound(_)) => continue, // removed meanwhile
            Err(e) => return Err(e.into()),            // never act on a partial listing
        };
        let l = &inspect.labels;
        // Belt and braces: the filter already guarantees these.
        if l.get(labels::INSTANCE) != Some(&inner.naming.instance)
            || l.get(labels::APP).map(String::as_str) != Some(app)
        {
            continue;
        }
        out.push(Observed {
            service: l.get(labels::SERVICE).cloned().unwrap_or_default(),
            slot: l
                .get(labels::SLOT)
                .and_then(|s| s.parse().ok())
                .unwrap_or(u32::MAX),
            hash: l.get(labels::HASH).cloned().unwrap_or_default(),
            revision: l
                .get(labels::REVISION)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            inspect,
        });
        let _ = c;
    }
    Ok(out)
}

fn ip_of(
    inner: &Inner,
    app: &str,
    spec: Option<&RevisionSpec>,
    svc: Option<&Service>,
    i: &ContainerInspect,
) -> Option<IpAddr> {
    // Prefer the service's first network; fall back to any.
    if let (Some(spec), Some(svc)) = (spec, svc) {
        for net in svc.networks.keys() {
            let decl = spec.project.networks.get(net);
            let name = inner.naming.network(app, net, decl);
            if let Some(ep) = i.networks.get(&name) {
                if let Ok(ip) = ep.ip_address.parse() {
                    return Some(ip);
                }
            }
        }
    }
    i.networks
        .values()
        .find_map(|ep| ep.ip_address.parse().ok())
}

fn restart_rule(svc: &Service) -> RestartRule {
    match svc.restart.condition {
        RestartCondition::Always | RestartCondition::UnlessStopped => RestartRule::Always,
        RestartCondition::OnFailure => RestartRule::OnFailure(svc.restart.max_attempts),
        RestartCondition::No => RestartRule::Never,
    }
}

/// The port probes and routes target for a service.
fn service_port(spec: &RevisionSpec, name: &str, svc: &Service) -> Option<u16> {
    svc.berth
        .health
        .as_ref()
        .and_then(|h| h.port)
        .or_else(|| svc.berth.routes.iter().find_map(|r| r.port))
        .or_else(|| spec.default_port(name))
}

fn probe_kind(spec: &RevisionSpec, name: &str, svc: &Service) -> Option<(ProbeKind, u16)> {
    if svc.network_mode.is_some() {
        // `network_mode: host`/`none`: no address on an application network to probe (the
        // parser refuses routes, probes and ports with it); Docker's healthcheck, or running,
        // decides readiness.
        return None;
    }
    if let Some(h) = &svc.berth.health {
        let port = h.port.or_else(|| service_port(spec, name, svc))?;
        return Some((
            ProbeKind::Http {
                path: h.http.clone(),
                interval: Duration::from_millis(h.interval_ms.max(100)),
                timeout: Duration::from_millis(h.timeout_ms.max(50)),
            },
            port,
        ));
    }
    let uses_docker_health = svc.healthcheck.as_ref().is_some_and(|h| !h.disable);
    if uses_docker_health {
        return None;
    }
    if !svc.berth.routes.is_empty() {
        let port = service_port(spec, name, svc)?;
        return Some((
            ProbeKind::Tcp {
                interval: Duration::from_secs(2),
            },
            port,
        ));
    }
    if let Some(p) = svc.ports.first() {
        if p.protocol == berth_compose::Protocol::Tcp {
            return Some((
                ProbeKind::Tcp {
                    interval: Duration::from_secs(2),
                },
                p.target,
            ));
        }
    }
    None
}

fn readiness(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    name: &str,
    svc: &Service,
    o: &Observed,
) -> Readiness {
    if state_of(&o.inspect) != ReplicaState::Running {
        inner.prober.mark_down(&o.inspect.id);
        return Readiness::Starting;
    }
    if let Some((kind, port)) = probe_kind(spec, name, svc) {
        let Some(ip) = ip_of(inner, app, Some(spec), Some(svc), &o.inspect) else {
            return Readiness::Starting;
        };
        return inner.prober.ensure(
            app,
            &o.inspect.id,
            &o.inspect.state.started_at,
            SocketAddr::new(ip, port),
            &kind,
        );
    }
    match o.inspect.state.health.as_deref() {
        Some("healthy") => Readiness::Ready,
        Some("unhealthy") => Readiness::Unhealthy,
        Some("starting") => Readiness::Starting,
        _ => Readiness::Ready,
    }
}

async fn pass(inner: &Arc<Inner>, app: &str) -> Result<Action, CpError> {
    let record = match inner.store.get_app(app) {
        Ok(a) => Some(a),
        Err(berth_store::StoreError::AppNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    // Steps that finish after this instant were not seen by this pass's listing (see `execute`).
    let observed_at = Instant::now();
    let observed = observe(inner, app).await?;
    let Some(record) = record.filter(|r| !r.deleting) else {
        let volumes = inner
            .store
            .get_app(app)
            .map(|a| a.delete_volumes)
            .unwrap_or(false);
        return teardown(inner, app, observed, volumes).await;
    };
    let rev = inner
        .store
        .get_revision::<RevisionSpec>(app, record.revision)?;
    let spec = rev.spec;
    // A failed revision that is still the current one although an earlier one converged: its
    // automatic rollback did not happen (admission refused it, `handle_failure`), so services
    // that would have rolled back hold still instead, as with `failure_action: pause`.
    let rollback_held = rev.status == RevisionStatus::Failed
        && inner
            .store
            .last_converged_before::<IgnoredAny>(app, record.revision)?
            .is_some();

    let now = Instant::now();
    // Failures under an earlier revision say nothing about this one: start over.
    inner
        .mem()
        .backoff
        .retain(|(a, _, _), b| a != app || b.revision == record.revision);
    let mut by_service: BTreeMap<String, Vec<&Observed>> = BTreeMap::new();
    for o in &observed {
        by_service.entry(o.service.clone()).or_default().push(o);
    }
    // Readiness and plan inputs per service.
    let mut inputs: BTreeMap<String, plan::Input> = BTreeMap::new();
    let mut ready_of: HashMap<String, Readiness> = HashMap::new();
    {
        let names: Vec<String> = spec
            .project
            .services
            .keys()
            .cloned()
            .chain(by_service.keys().cloned())
            .collect();
        for name in names {
            if inputs.contains_key(&name) {
                continue;
            }
            let svc = spec.project.services.get(&name);
            let list = by_service.get(&name).cloned().unwrap_or_default();
            let mem = inner.mem();
            let replicas: Vec<Replica> = list
                .iter()
                .map(|o| {
                    let r = match svc {
                        Some(s) => readiness_cached(inner, app, &spec, &name, s, o, &mut ready_of),
                        None => Readiness::Ready,
                    };
                    let info = mem.restarts.get(&o.inspect.id).copied().unwrap_or_default();
                    Replica {
                        id: o.inspect.id.clone(),
                        slot: o.slot,
                        hash: o.hash.clone(),
                        state: state_of(&o.inspect),
                        readiness: r,
                        age_ms: age_ms(&o.inspect.created),
                        restarts: info.count,
                        restart_allowed: info.not_before.is_none_or(|t| t <= now),
                        draining: mem.draining.get(&o.inspect.id).map(|(since, version)| {
                            plan::Drain {
                                since_ms: u64::try_from(now.duration_since(*since).as_millis())
                                    .unwrap_or(u64::MAX),
                                // Until the gateway serves the table without it, a 0 means nothing.
                                in_flight: if inner.dataplane.table_version() >= *version {
                                    inner.dataplane.in_flight(&o.inspect.id)
                                } else {
                                    usize::MAX
                                },
                            }
                        }),
                    }
                })
                .collect();
            let backoff: Vec<plan::SlotBackoff> = mem
                .backoff
                .iter()
                .filter(|((a, sv, _), _)| a == app && *sv == name)
                .map(|((_, _, slot), b)| plan::SlotBackoff {
                    slot: *slot,
                    failures: b.failures,
                    retry_in_ms: millis(b.next.saturating_duration_since(now)),
                    failing_for_ms: millis(now.duration_since(b.since)),
                    error: b.error.clone(),
                })
                .collect();
            let input = match svc {
                Some(s) => {
                    let routed = !s.berth.routes.is_empty() || !s.ports.is_empty();
                    let order = match s.update_config.order {
                        Some(UpdateOrder::StartFirst) => Order::StartFirst,
                        Some(UpdateOrder::StopFirst) => Order::StopFirst,
                        None if s.container_name.is_some() => Order::StopFirst,
                        None if routed => Order::StartFirst,
                        None => Order::StartFirst,
                    };
                    let delay_passed = s.update_config.delay_ms == 0
                        || mem
                            .slot_done
                            .get(&(app.to_string(), name.clone()))
                            .is_none_or(|t| {
                                now.duration_since(*t).as_millis()
                                    >= u128::from(s.update_config.delay_ms)
                            });
                    plan::Input {
                        hash: spec.service_hash(&name),
                        replicas: s.replicas,
                        order,
                        parallelism: s.update_config.parallelism,
                        restart: restart_rule(s),
                        deps_ready: true, // filled below
                        delay_passed,
                        rollout_deadline_ms: s.update_config.monitor_ms.unwrap_or(
                            u64::try_from(inner.config.rollout_deadline.as_millis())
                                .unwrap_or(60_000),
                        ),
                        min_drain_ms: u64::try_from(inner.config.min_drain.as_millis())
                            .unwrap_or(50),
                        drain_timeout_ms: s.stop_grace_period_ms.unwrap_or(10_000).max(1_000)
                            + 20_000,
                        paused: rev.status == RevisionStatus::Failed
                            && (s.update_config.failure_action == FailureAction::Pause
                                || (s.update_config.failure_action == FailureAction::Rollback
                                    && rollback_held)),
                        observed: replicas,
                        backoff,
                    }
                }
                None => plan::Input {
                    hash: String::new(),
                    replicas: 0,
                    order: Order::StartFirst,
                    parallelism: 0,
                    restart: RestartRule::Never,
                    deps_ready: false,
                    delay_passed: true,
                    rollout_deadline_ms: 0,
                    min_drain_ms: u64::try_from(inner.config.min_drain.as_millis()).unwrap_or(50),
                    drain_timeout_ms: 30_000,
                    paused: false,
                    observed: replicas,
                    backoff,
                },
            };
            drop(mem);
            inputs.insert(name, input);
        }
    }
    // depends_on conditions, from what this pass observed.
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
    for (name, w) in &waiting {
        if let Some(i) = inputs.get_mut(name) {
            i.deps_ready = w.is_empty();
        }
    }

    // Plan and execute.
    let mut failed: Option<(String, String)> = None;
    let mut pending = false;
    // The soonest time a slot in backoff may be acted on again.
    let mut retry: Option<Instant> = None;
    for (name, input) in &inputs {
        let steps = plan::plan(input);
        for step in steps {
            if let Step::Wait { retry_in_ms, .. } = step {
                let at = now + Duration::from_millis(retry_in_ms);
                retry = Some(retry.map_or(at, |r| r.min(at)));
                continue;
            }
            pending = true;
            match step {
                Step::Failed { reason } => {
                    if failed.is_none() {
                        failed = Some((name.clone(), reason));
                    }
                }
                step => execute(
                    inner,
                    app,
                    record.revision,
                    &spec,
                    name,
                    input,
                    step,
                    observed_at,
                ),
            }
        }
    }

    // Status, convergence, routes.
    let converged_all = inputs.iter().all(|(name, i)| {
        plan::converged(i) && (spec.project.services.contains_key(name) || i.observed.is_empty())
    });
    let busy = {
        let mem = inner.mem();
        inputs
            .values()
            .flat_map(|i| i.observed.iter())
            .any(|r| mem.busy.contains(&r.id))
            || mem
                .busy
                .iter()
                .any(|k| k.starts_with(&create_key_prefix(app)))
    };
    let converged = converged_all && !busy;
    let mut message = String::new();
    if converged && rev.status == RevisionStatus::Pending {
        inner
            .store
            .set_revision_status(app, record.revision, RevisionStatus::Converged, "")?;
        tracing::info!(app, revision = record.revision, "revision converged");
    }
    let mut revision_failed = rev.status == RevisionStatus::Failed;
    if let Some((svc_name, reason)) = failed.clone() {
        message = format!("{svc_name}: {reason}");
        revision_failed |= handle_failure(inner, app, record.revision, &spec, &svc_name, &message)?;
    } else if rev.status == RevisionStatus::Pending && !converged {
        // A first deploy that cannot make progress fails the revision (nothing to roll back to).
        if let Some(problem) = first_deploy_problem(&inputs) {
            if inner
                .store
                .last_converged_before::<IgnoredAny>(app, record.revision)?
                .is_none()
            {
                inner.store.set_revision_status(
                    app,
                    record.revision,
                    RevisionStatus::Failed,
                    &problem,
                )?;
                revision_failed = true;
                tracing::warn!(app, revision = record.revision, problem, "revision failed");
            }
        }
    }
    let statuses = service_statuses(inner, app, &spec, &inputs, &waiting);
    let health = if converged {
        "healthy"
    } else if revision_failed {
        "failed"
    } else if statuses.iter().any(|s| s.problem.is_some()) {
        "degraded"
    } else {
        "progressing"
    };
    let status = AppStatus {
        name: app.into(),
        revision: record.revision,
        revision_status: String::new(),
        message,
        health: health.into(),
        converged,
        services: statuses,
    };
    publish_routes(inner, app, &spec, &observed, &inputs);
    // Until every probe of a running replica has answered once, the table under-reports what
    // serves (after a server restart, all readiness starts over): not yet "synced".
    let probes_pending = observed.iter().any(|o| {
        state_of(&o.inspect) == ReplicaState::Running
            && spec
                .project
                .services
                .get(&o.service)
                .is_some_and(|svc| probe_kind(&spec, &o.service, svc).is_some())
            && !inner.prober.evaluated(&o.inspect.id)
    });
    {
        let mut mem = inner.mem();
        mem.status.insert(app.into(), status);
        if !probes_pending {
            mem.synced.insert(app.to_string());
        }
    }

    let draining = inputs
        .values()
        .flat_map(|i| i.observed.iter())
        .any(|r| r.draining.is_some());
    let backoff = {
        let mem = inner.mem();
        inputs
            .values()
            .flat_map(|i| i.observed.iter())
            .filter_map(|r| mem.restarts.get(&r.id).and_then(|i| i.not_before))
            .filter(|t| *t > now)
            .chain(retry)
            .min()
    };
    Ok(if draining {
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
    })
}

fn readiness_cached(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    name: &str,
    svc: &Service,
    o: &Observed,
    cache: &mut HashMap<String, Readiness>,
) -> Readiness {
    *cache
        .entry(o.inspect.id.clone())
        .or_insert_with(|| readiness(inner, app, spec, name, svc, o))
}

fn cond_str(c: DependsCondition) -> &'static str {
    match c {
        DependsCondition::ServiceStarted => "service_started",
        DependsCondition::ServiceHealthy => "service_healthy",
        DependsCondition::ServiceCompletedSuccessfully => "service_completed_successfully",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn age_ms(created: &str) -> u64 {
    let Ok(t) =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
    else {
        return 0;
    };
    let d = time::OffsetDateTime::now_utc() - t;
    u64::try_from(d.whole_milliseconds()).unwrap_or(0)
}

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
                if code != 0 && i.restart != RestartRule::Always && r.restarts >= i.restart_limit()
                {
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

impl plan::Input {
    fn restart_limit(&self) -> u32 {
        match self.restart {
            RestartRule::OnFailure(Some(m)) => m,
            RestartRule::OnFailure(None) | RestartRule::Always => u32::MAX,
            RestartRule::Never => 0,
        }
    }
}

fn handle_failure(
    inner: &Inner,
    app: &str,
    revision: u64,
    spec: &RevisionSpec,
    svc: &str,
    message: &str,
) -> Result<bool, CpError> {
    let action = spec
        .project
        .services
        .get(svc)
        .map_or(FailureAction::Rollback, |s| s.update_config.failure_action);
    if action == FailureAction::Continue {
        return Ok(false);
    }
    let paused;
    let message = if action == FailureAction::Pause {
        paused = format!(
            "{message}; rollout paused (failure_action: pause): apply again (the same file resumes) or roll back"
        );
        &paused
    } else {
        message
    };
    // An automatic rollback makes a revision like any other: admission decides, with the
    // team's grants as they are now. Refused (a grant revoked since the good revision ran), the
    // application pauses as with `failure_action: pause` (`paused` in `pass`), saying why.
    let good = if action == FailureAction::Rollback {
        inner
            .store
            .last_converged_before::<RevisionSpec>(app, revision)?
    } else {
        None
    };
    let refused = match &good {
        Some(good) => match crate::admission::admit(inner, app, &good.spec.project) {
            Ok(()) => None,
            Err(CpError::AdmissionDenied { team, denials }) => {
                Some(crate::admission::message(&team, &denials))
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let refused_message;
    let message = match (&good, &refused) {
        (Some(good), Some(why)) => {
            refused_message = format!(
                "{message}; automatic rollback to revision {} refused ({why}); rollout paused: apply a file the team's grants admit, or ask the administrator for the grant and roll back",
                good.number
            );
            &refused_message
        }
        _ => message,
    };
    if !inner
        .store
        .set_revision_status(app, revision, RevisionStatus::Failed, message)?
    {
        return Ok(false); // already recorded (the caller knows its status)
    }
    tracing::warn!(app, revision, message, "rollout failed");
    if let (Some(good), Some(_)) = (&good, &refused) {
        inner.events.emit_in(
            Some(berth_core::team::team_of(app)),
            "rollback.refused",
            crate::events::Level::Warn,
            app,
            format!(
                "automatic rollback of revision {revision} to revision {} refused by admission; rollout paused: {message}",
                good.number
            ),
        );
        return Ok(true);
    }
    if action == FailureAction::Rollback {
        if let Some(good) = good {
            let n = inner.store.create_revision(
                app,
                "auto-rollback",
                &format!("automatic rollback to revision {} ({message})", good.number),
                &good.spec,
            )?;
            tracing::warn!(
                app,
                from = revision,
                to = good.number,
                revision = n,
                "rolled back automatically"
            );
            inner.wake(app);
        }
    }
    Ok(true)
}

fn service_statuses(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    inputs: &BTreeMap<String, plan::Input>,
    waiting: &BTreeMap<String, Vec<String>>,
) -> Vec<ServiceStatus> {
    let port_errors = inner.dataplane.port_errors();
    let mem = inner.mem();
    spec.project
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
                } else if let Some(info) = mem.restarts.get(&r.id) {
                    if info.count >= 3 && r.readiness != Readiness::Ready {
                        problem =
                            Some(format!("replica {} restarted {} times", r.slot, info.count));
                    }
                }
            }
            // A failing step says more than the state it left behind.
            if let Some(((_, _, slot), b)) = mem
                .backoff
                .iter()
                .filter(|((a, sv, _), _)| a == app && sv == name)
                .min_by_key(|((_, _, slot), _)| *slot)
            {
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
                if let Some((_, err)) = port_errors.iter().find(|(a, _)| *a == listen) {
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

/// Compute this application's routes and published ports from ready, non-draining replicas
/// (old and new alike: during a start-first rollout both serve), then publish the whole table.
fn publish_routes(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    observed: &[Observed],
    inputs: &BTreeMap<String, plan::Input>,
) {
    let mut routes = Vec::new();
    let mut ports = Vec::new();
    // Draining as of now (this pass may have started drains after its inputs were read).
    let draining: std::collections::HashSet<String> =
        inner.mem().draining.keys().cloned().collect();
    let ready: HashMap<&str, bool> = inputs
        .values()
        .flat_map(|i| i.observed.iter())
        .map(|r| {
            let ok = r.state == ReplicaState::Running
                && r.readiness == Readiness::Ready
                && !draining.contains(&r.id);
            (r.id.as_str(), ok)
        })
        .collect();
    for (name, svc) in &spec.project.services {
        let members: Vec<(&Observed, IpAddr)> = observed
            .iter()
            .filter(|o| {
                o.service == *name && ready.get(o.inspect.id.as_str()).copied().unwrap_or(false)
            })
            .filter_map(|o| ip_of(inner, app, Some(spec), Some(svc), &o.inspect).map(|ip| (o, ip)))
            .collect();
        let mut sorted = members;
        sorted.sort_by_key(|(o, _)| (o.slot, o.hash.clone()));
        for r in &svc.berth.routes {
            let Some(port) = r.port.or_else(|| spec.default_port(name)) else {
                continue;
            };
            routes.push(HttpRoute {
                app: app.into(),
                service: name.clone(),
                host: r.host.clone(),
                path_prefix: r.path_prefix.clone(),
                strip_prefix: r.strip_prefix,
                endpoints: sorted
                    .iter()
                    .map(|(o, ip)| Endpoint {
                        id: o.inspect.id.clone(),
                        addr: SocketAddr::new(*ip, port),
                    })
                    .collect(),
                policy: crate::policy::route_policy(app, svc, r),
                protocol: crate::policy::route_protocol(r),
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
                endpoints: sorted
                    .iter()
                    .map(|(o, ip)| Endpoint {
                        id: o.inspect.id.clone(),
                        addr: SocketAddr::new(*ip, p.target),
                    })
                    .collect(),
            });
        }
    }
    let mut mem = inner.mem();
    let entry = (routes, ports);
    if mem.tables.get(app) == Some(&entry) {
        return;
    }
    mem.tables.insert(app.into(), entry);
    publish_table(inner, &mem);
}

pub(crate) fn publish_table(inner: &Inner, mem: &crate::Memory) -> u64 {
    let version = inner
        .table_version
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let mut table = RoutingTable {
        version,
        routes: vec![],
        ports: vec![],
        issuers: mem.issuers.clone(),
    };
    for (routes, ports) in mem.tables.values() {
        table.routes.extend(routes.iter().cloned());
        table.ports.extend(ports.iter().cloned());
    }
    inner.table_tx.send_replace(Arc::new(table));
    version
}

/// Take one replica out of every route at once (it died, or drains), before the reconciler's
/// next pass. Returns the version of the first table without it.
fn drop_endpoint(inner: &Inner, container: &str) -> u64 {
    let mut mem = inner.mem();
    let mut changed = false;
    for (routes, ports) in mem.tables.values_mut() {
        for r in routes.iter_mut() {
            let before = r.endpoints.len();
            r.endpoints.retain(|e| e.id != container);
            changed |= before != r.endpoints.len();
        }
        for p in ports.iter_mut() {
            let before = p.endpoints.len();
            p.endpoints.retain(|e| e.id != container);
            changed |= before != p.endpoints.len();
        }
    }
    if changed {
        publish_table(inner, &mem)
    } else {
        inner
            .table_version
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn backoff_after(count: u32) -> Duration {
    match count {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(250u64 << (n - 2).min(7)).min(Duration::from_secs(30)),
    }
}

/// Run one step as an owned background task; the key marks it busy until done.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn execute(
    inner: &Arc<Inner>,
    app: &str,
    revision: u64,
    spec: &RevisionSpec,
    service: &str,
    input: &plan::Input,
    step: Step,
    observed_at: Instant,
) {
    let key = match &step {
        Step::Create { slot } => {
            format!("{}{service}/{slot}/{}", create_key_prefix(app), input.hash)
        }
        Step::Start { id } | Step::Restart { id } | Step::Remove { id } => id.clone(),
        Step::Drain { id } => {
            if inner.mem().draining.contains_key(id) {
                return;
            }
            let version = drop_endpoint(inner, id);
            inner
                .mem()
                .draining
                .insert(id.clone(), (Instant::now(), version));
            tracing::debug!(app, service, container = %short(id), "draining");
            return;
        }
        Step::Failed { .. } | Step::Wait { .. } => return,
    };
    {
        let mut mem = inner.mem();
        // A step that completed after this pass listed Docker was planned from a stale view
        // (e.g. a create that finished meanwhile): the next pass decides again.
        if mem.done.get(&key).is_some_and(|t| *t > observed_at) {
            return;
        }
        // A created-but-not-started replica whose create step is still running: that step
        // starts it.
        if let Step::Start { id } = &step {
            if let Some(r) = input.observed.iter().find(|r| &r.id == id) {
                if mem.busy.contains(&format!(
                    "{}{service}/{}/{}",
                    create_key_prefix(app),
                    r.slot,
                    r.hash
                )) {
                    return;
                }
            }
        }
        if !mem.busy.insert(key.clone()) {
            return;
        }
        let restarted = match &step {
            Step::Start { id } => {
                let observed = input.observed.iter().find(|r| &r.id == id);
                match observed.map(|r| r.state) {
                    Some(ReplicaState::Exited(code)) => Some((id, Some(code))),
                    _ => None,
                }
            }
            Step::Restart { id } => Some((id, None)),
            _ => None,
        };
        if let Some((id, exit)) = restarted {
            let info = mem.restarts.entry(id.clone()).or_default();
            info.count += 1;
            if exit.is_some() {
                info.last_exit = exit;
            }
            info.not_before = Some(Instant::now() + backoff_after(info.count + 1));
            let (count, last_exit) = (info.count, info.last_exit);
            drop(mem);
            if let Err(e) = inner.store.record_restart(id, count, last_exit) {
                tracing::warn!(app, service, error = %e, "cannot record a restart count");
            }
        }
    }
    // The slot the step acts on: its failures back off per slot (see `plan::SlotBackoff`).
    let slot = plan::step_slot(input, &step);
    let inner2 = inner.clone();
    let (app, service, spec) = (app.to_string(), service.to_string(), spec.clone());
    let grace = spec
        .project
        .services
        .get(&service)
        .and_then(|s| s.stop_grace_period_ms)
        .map_or(10, |ms| ms.div_ceil(1000));
    tokio::spawn(async move {
        let inner = inner2;
        let mut created: Option<String> = None;
        let result: Result<(), CpError> = async {
            match &step {
                Step::Create { slot } => {
                    created = Some(create_replica(&inner, &app, revision, &spec, &service, *slot).await?);
                    Ok(())
                }
                Step::Start { id } => {
                    tracing::info!(app, service, container = %short(id), "starting replica");
                    Ok(inner.docker.start_container(id).await?)
                }
                Step::Restart { id } => {
                    tracing::info!(app, service, container = %short(id), "restarting unhealthy replica");
                    inner.prober.forget(id);
                    Ok(inner.docker.restart_container(id, grace).await?)
                }
                Step::Remove { id } => {
                    tracing::info!(app, service, container = %short(id), "removing replica");
                    match inner.docker.stop_container(id, grace).await {
                        Ok(()) | Err(DockerError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    match inner.docker.remove_container(id, true, false).await {
                        Ok(()) | Err(DockerError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let mut mem = inner.mem();
                    mem.draining.remove(id);
                    let restarted = mem.restarts.remove(id).is_some();
                    mem.slot_done.insert((app.clone(), service.clone()), Instant::now());
                    drop(mem);
                    if restarted {
                        let _ = inner.store.forget_restarts(std::slice::from_ref(id));
                    }
                    inner.prober.forget(id);
                    Ok(())
                }
                Step::Drain { .. } | Step::Failed { .. } | Step::Wait { .. } => Ok(()),
            }
        }
        .await;
        {
            let mut mem = inner.mem();
            record_outcome(&mut mem, &app, &service, slot, revision, &step, result);
            mem.busy.remove(&key);
            let now = Instant::now();
            if let Some(id) = created {
                mem.done.insert(id, now);
            }
            mem.done.insert(key, now);
            if mem.done.len() > 4096 {
                mem.done
                    .retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
            }
        }
        inner.wake(&app);
    });
}

/// Keep the slot's backoff: a success ends it, a failure makes the next attempt wait longer.
/// Each distinct failure is logged once at warn, its repeats at debug (a bounded log rate).
fn record_outcome(
    mem: &mut crate::Memory,
    app: &str,
    service: &str,
    slot: Option<u32>,
    revision: u64,
    step: &Step,
    result: Result<(), CpError>,
) {
    let verb = match step {
        Step::Create { .. } => "create",
        Step::Start { .. } => "start",
        Step::Restart { .. } => "restart",
        Step::Remove { .. } => "remove",
        Step::Drain { .. } | Step::Failed { .. } | Step::Wait { .. } => "step",
    };
    let Some(slot) = slot else {
        if let Err(e) = result {
            tracing::warn!(app, service, error = %e, "step failed: {step:?}");
        }
        return;
    };
    let key = (app.to_string(), service.to_string(), slot);
    match result {
        Ok(()) => {
            // A removal that succeeds says nothing about a create failing in the same slot
            // (a dead old replica is removed while its replacement's create keeps failing).
            let ends = mem
                .backoff
                .get(&key)
                .is_some_and(|b| verb != "remove" || b.error.starts_with("remove "));
            if let Some(b) = ends.then(|| mem.backoff.remove(&key)).flatten() {
                tracing::info!(
                    app,
                    service,
                    slot,
                    failures = b.failures,
                    "{verb} succeeded after failing"
                );
            }
        }
        Err(e) => {
            let now = Instant::now();
            let error = format!("{verb} failed: {e}");
            let fresh = || StepBackoff {
                revision,
                failures: 0,
                since: now,
                next: now,
                error: String::new(),
            };
            let b = mem.backoff.entry(key).or_insert_with(fresh);
            if b.revision != revision {
                *b = fresh();
            }
            b.failures += 1;
            let delay = crate::step_backoff(b.failures);
            b.next = now + delay;
            let retry_ms = millis(delay);
            if b.error == error {
                tracing::debug!(
                    app,
                    service,
                    slot,
                    failures = b.failures,
                    retry_ms,
                    error,
                    "step failed again"
                );
            } else {
                tracing::warn!(
                    app,
                    service,
                    slot,
                    failures = b.failures,
                    retry_ms,
                    error,
                    "step failed"
                );
                b.error = error;
            }
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

async fn create_replica(
    inner: &Inner,
    app: &str,
    revision: u64,
    spec: &RevisionSpec,
    service: &str,
    slot: u32,
) -> Result<String, CpError> {
    let svc = spec
        .project
        .services
        .get(service)
        .ok_or_else(|| CpError::ServiceNotFound(app.into(), service.into()))?;
    let hash = spec.service_hash(service);
    let name = svc
        .container_name
        .clone()
        .unwrap_or_else(|| inner.naming.container(app, service, slot, &hash));
    // Networks and volumes are made here, in the step, so a failure is this step's error.
    let resolved = crate::networks::ensure(inner, app, spec).await?;
    let mut body = spec::container_spec(
        &inner.naming,
        spec,
        app,
        revision,
        service,
        svc,
        slot,
        &hash,
        &inner.config.extra_labels,
    );
    resolved.apply(&mut body);
    let id = match inner.docker.create_container(&name, &body).await {
        Ok(id) => id,
        Err(DockerError::Conflict(_)) => {
            // A create repeated after a crash: adopt ours, never touch anyone else's. Anything
            // else holding the name is an error (reported, retried with a backoff): returning
            // as if created would make the next pass plan the same create at once.
            let existing = inner.docker.inspect_container(&name).await?;
            let l = &existing.labels;
            let taken = |holder: String| CpError::NameTaken {
                name: name.clone(),
                holder,
            };
            if l.get(labels::INSTANCE) != Some(&inner.naming.instance) {
                return Err(taken("a container Berth does not manage".into()));
            }
            let other_app = l.get(labels::APP).map_or("", String::as_str);
            if other_app != app {
                // Another team's application is not named (docs/teams.md).
                let (team, _) = berth_core::team::split_global(app);
                return Err(taken(match berth_core::team::local_name(team, other_app) {
                    Some(other) => format!("a container of application {other:?}"),
                    None => "a container of another team".into(),
                }));
            }
            let same_replica = l.get(labels::SERVICE).map(String::as_str) == Some(service)
                && l.get(labels::SLOT) == Some(&slot.to_string())
                && l.get(labels::HASH) == Some(&hash);
            if !same_replica {
                // Ours, of another spec (a fixed container_name updated start-first): the
                // planner removes it once its slot allows.
                return Err(taken(format!(
                    "another replica of this application ({} {}, revision {})",
                    l.get(labels::SERVICE).map_or("", String::as_str),
                    l.get(labels::SLOT).map_or("", String::as_str),
                    l.get(labels::REVISION).map_or("", String::as_str),
                )));
            }
            existing.id
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(tar) = files_tar(spec, svc) {
        inner.docker.put_archive(&id, "/", tar).await?;
    }
    tracing::info!(app, service, slot, container = %short(&id), "starting new replica");
    inner.docker.start_container(&id).await?;
    Ok(id)
}

/// File-based secrets (`/run/secrets/NAME`) and configs (`/NAME`) as a tar to upload before start.
fn files_tar(spec: &RevisionSpec, svc: &Service) -> Option<Vec<u8>> {
    let mut files: Vec<(String, &str, u32)> = Vec::new();
    for r in &svc.secrets {
        if let Some(s) = spec.project.secrets.get(&r.source) {
            let target = r.target.clone().unwrap_or_else(|| r.source.clone());
            let path = if target.starts_with('/') {
                target
            } else {
                format!("/run/secrets/{target}")
            };
            files.push((path, &s.content, 0o444));
        }
    }
    for r in &svc.configs {
        if let Some(c) = spec.project.configs.get(&r.source) {
            let target = r.target.clone().unwrap_or_else(|| format!("/{}", r.source));
            files.push((target, &c.content, 0o444));
        }
    }
    if files.is_empty() {
        return None;
    }
    let mut b = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let rel = path.trim_start_matches('/');
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        if b.append_data(&mut h, rel, content.as_bytes()).is_err() {
            return None;
        }
    }
    b.into_inner().ok()
}

/// Remove everything of an application (deleted, or unknown to the store: an orphan).
async fn teardown(
    inner: &Arc<Inner>,
    app: &str,
    observed: Vec<Observed>,
    volumes: bool,
) -> Result<Action, CpError> {
    {
        let mut mem = inner.mem();
        if mem.tables.remove(app).is_some() {
            publish_table(inner, &mem);
        }
    }
    let removals = observed.iter().map(|o| async move {
        let id = &o.inspect.id;
        inner.prober.forget(id);
        match inner.docker.stop_container(id, 10).await {
            Ok(()) | Err(DockerError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        match inner.docker.remove_container(id, true, false).await {
            Ok(()) | Err(DockerError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    });
    for r in futures_util::future::join_all(removals).await {
        r?;
    }
    let filters = crate::label_filters(inner, Some(app));
    for n in inner.docker.list_networks(&filters).await? {
        match inner.docker.remove_network(&n.id).await {
            Ok(()) | Err(DockerError::NotFound(_)) => crate::subnets::forget(inner, &n),
            Err(e) => return Err(e.into()),
        }
    }
    if volumes {
        for v in inner.docker.list_volumes(&filters).await? {
            match inner.docker.remove_volume(&v.name).await {
                Ok(()) | Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    {
        let mut mem = inner.mem();
        mem.status.remove(app);
        mem.slot_done.retain(|(a, _), _| a != app);
        mem.backoff.retain(|(a, _, _), _| a != app);
    }
    if inner.store.get_app(app).is_ok() {
        inner.store.delete_app(app)?;
        tracing::info!(app, "application removed");
    } else if !observed.is_empty() {
        tracing::info!(
            app,
            containers = observed.len(),
            "removed orphaned containers"
        );
    }
    Ok(Action::Await)
}

/// `berth ps`: every container of the application, with Berth's view of it.
pub(crate) async fn instances(inner: &Inner, app: &str) -> Result<Vec<Instance>, CpError> {
    let observed = observe(inner, app).await?;
    let spec: Option<RevisionSpec> = inner
        .store
        .get_app(app)
        .ok()
        .and_then(|a| inner.store.get_revision(app, a.revision).ok())
        .map(|r| r.spec);
    let table = inner.table_tx.borrow().clone();
    let mem = inner.mem();
    let mut out: Vec<Instance> = observed
        .iter()
        .map(|o| {
            let svc = spec
                .as_ref()
                .and_then(|s| s.project.services.get(&o.service));
            let port = match (&spec, svc) {
                (Some(s), Some(svc)) => service_port(s, &o.service, svc),
                _ => None,
            };
            let ip = ip_of(inner, app, spec.as_ref(), svc, &o.inspect);
            let in_rotation = table
                .routes
                .iter()
                .flat_map(|r| r.endpoints.iter())
                .chain(table.ports.iter().flat_map(|p| p.endpoints.iter()))
                .any(|e| e.id == o.inspect.id);
            let running = o.inspect.state.running;
            let health = if !running {
                "none".to_string()
            } else if let Some(h) = &o.inspect.state.health {
                h.clone()
            } else if let (Some(s), Some(svc)) = (&spec, svc) {
                if probe_kind(s, &o.service, svc).is_some() {
                    match inner.prober.peek(&o.inspect.id) {
                        Some(Readiness::Ready) => "healthy",
                        Some(Readiness::Unhealthy) => "unhealthy",
                        _ => "starting",
                    }
                    .to_string()
                } else {
                    "none".to_string()
                }
            } else {
                "none".to_string()
            };
            let info = mem
                .restarts
                .get(&o.inspect.id)
                .copied()
                .unwrap_or(RestartInfo::default());
            let exit_code = match state_of(&o.inspect) {
                ReplicaState::Exited(c) => Some(c),
                _ => info.last_exit,
            };
            Instance {
                service: o.service.clone(),
                slot: o.slot,
                container_id: o.inspect.id.clone(),
                name: o.inspect.name.trim_start_matches('/').to_string(),
                image: o.inspect.image.clone(),
                state: o.inspect.state.status.clone(),
                health,
                address: match (ip, port) {
                    (Some(ip), Some(p)) => SocketAddr::new(ip, p).to_string(),
                    (Some(ip), None) => ip.to_string(),
                    _ => String::new(),
                },
                revision: o.revision,
                restarts: u64::from(info.count),
                exit_code,
                in_rotation,
                draining: mem.draining.contains_key(&o.inspect.id),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.service, a.slot, b.revision).cmp(&(&b.service, b.slot, a.revision)));
    Ok(out)
}

/// Docker events wake the application they concern; a death takes the replica out of rotation
/// at once. The stream is re-subscribed whenever it ends (e.g. a Docker restart).
pub(crate) async fn watch_events(inner: Weak<Inner>, shutdown: CancellationToken) {
    use futures_util::StreamExt;
    loop {
        let Some(i) = inner.upgrade() else { return };
        let filters = crate::label_filters(&i, None);
        let docker = i.docker.clone();
        drop(i);
        match docker.events(&filters).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                // Anything may have happened while we were not listening.
                if let Some(i) = inner.upgrade() {
                    wake_all(&i).await;
                }
                loop {
                    let ev = tokio::select! {
                        () = shutdown.cancelled() => return,
                        ev = stream.next() => ev,
                    };
                    let Some(Ok(ev)) = ev else { break };
                    let Some(i) = inner.upgrade() else { return };
                    if ev.typ != "container" {
                        continue;
                    }
                    if matches!(ev.action.as_str(), "die" | "oom" | "kill" | "stop") {
                        i.prober.mark_down(&ev.id);
                        drop_endpoint(&i, &ev.id);
                    }
                    if let Some(app) = ev.attributes.get(labels::APP) {
                        i.wake(app);
                    }
                }
                tracing::warn!("Docker event stream ended; re-subscribing");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to Docker events; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn wake_all(inner: &Inner) {
    let mut apps: Vec<String> = inner
        .store
        .list_apps()
        .map(|a| a.into_iter().map(|a| a.name).collect())
        .unwrap_or_default();
    // Applications known only to Docker (orphans of a crash during removal) are torn down.
    if let Ok(list) = inner
        .docker
        .list_containers(&crate::label_filters(inner, None), true)
        .await
    {
        forget_gone_restarts(inner, &list);
        for c in list {
            if let Some(a) = c.labels.get(labels::APP) {
                if !apps.contains(a) {
                    apps.push(a.clone());
                }
            }
        }
    }
    for a in apps {
        inner.wake(&a);
    }
}

/// Forget the restart counts of containers not in `present` (a listing of all of Berth's):
/// removed by a teardown, by hand, or while the server was down.
fn forget_gone_restarts(inner: &Inner, present: &[berth_docker::ContainerSummary]) {
    let present: HashSet<&str> = present.iter().map(|c| c.id.as_str()).collect();
    let gone: Vec<String> = {
        let mut mem = inner.mem();
        let gone: Vec<String> = mem
            .restarts
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &gone {
            mem.restarts.remove(id);
        }
        gone
    };
    if !gone.is_empty() {
        if let Err(e) = inner.store.forget_restarts(&gone) {
            tracing::warn!(error = %e, "cannot forget restart counts");
        }
    }
}

/// Wake every application periodically: a missed event costs at most one period.
pub(crate) async fn resync_loop(inner: Weak<Inner>, shutdown: CancellationToken) {
    loop {
        let period = match inner.upgrade() {
            Some(i) => {
                wake_all(&i).await;
                i.config.resync
            }
            None => return,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// The prefix of an application's in-flight create keys: the app as in Docker names (no `/`),
/// so that team `default`'s `a` and team `a`'s applications never share a prefix.
fn create_key_prefix(app: &str) -> String {
    format!("create/{}/", berth_core::team::docker_part(app))
}
