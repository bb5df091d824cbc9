//! One reconcile pass of one application: observe, plan, execute, publish.
//!
//! The pass observes through the runtime (`runtime::AppRuntime`; the local Docker engine is
//! `runtime::Local`), computes readiness, lets the pure `app_plan::plan_app` make every
//! decision, then carries out the steps through the runtime, records the verdict and publishes
//! the routing table ([docs/runtime.md](../../../docs/runtime.md)).
//!
//! A pass never waits on slow work: creates, starts, stops and removals run as owned background
//! tasks, marked busy so the next pass does not plan them again, and they wake the application
//! when done. The pass itself lists, inspects, plans and publishes the routing table in
//! milliseconds, so a replica that died leaves rotation at once and its replacement is created
//! in the same pass.

use crate::app_plan::{self, Convergence, ServiceStep, Verdict};
use crate::heal;
use crate::health::{probe_kind, service_port};
use crate::plan::{self, Readiness, ReplicaState, Step};
use crate::reconcile::Action;
use crate::runtime::{self, AppRuntime, Replica};
use crate::spec::labels;
use crate::spec::RevisionSpec;
use crate::{CpError, Inner, RestartInfo, StepBackoff};
use berth_compose::{FailureAction, Service};
use berth_core::api::Instance;
use berth_core::{HttpRoute, PortForward, RoutingTable};
use berth_store::RevisionStatus;
use serde::de::IgnoredAny;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Run one pass; errors are retried with a backoff (no retry loop inside a pass), logged once
/// at warn and then at debug while the same error repeats, and shown as the services' problem.
pub(crate) async fn run(inner: &Arc<Inner>, app: &str) -> Action {
    match pass(inner, &runtime::for_server(inner), app).await {
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

fn ip_of(
    inner: &Inner,
    app: &str,
    spec: Option<&RevisionSpec>,
    svc: Option<&Service>,
    r: &Replica,
) -> Option<IpAddr> {
    // Prefer the service's first network; fall back to any.
    if let (Some(spec), Some(svc)) = (spec, svc) {
        for net in svc.networks.keys() {
            let decl = spec.project.networks.get(net);
            let name = inner.naming.network(app, net, decl);
            if let Some(ip) = r.addresses.get(&name) {
                return Some(*ip);
            }
        }
    }
    r.addresses.values().next().copied()
}

/// Do the gateways probe, not this server? On Swarm: task addresses are on overlay networks,
/// reached from the gateways on the nodes and not from here (docs/swarm.md#traffic-without-ipvs).
fn gateways_probe(inner: &Inner) -> bool {
    inner.config.runtime == crate::RuntimeKind::Swarm
}

/// How long a running task the gateways probe waits for a gateway's word before running counts
/// as ready (no gateway runs, or none reaches this server): gateways being made (the image is
/// loaded into each node's engine first) report within seconds.
const NO_GATEWAY_GRACE: Duration = Duration::from_secs(30);

/// A running task's readiness where the gateways probe it: what a live gateway reports
/// (`gateway_probes::GatewayReadiness`); without a report, starting for [`NO_GATEWAY_GRACE`]
/// after it was made, then ready (running counts, as before the gateways probed), named once in
/// the log, so a deploy without gateways is never held forever.
fn gateway_readiness(inner: &Inner, app: &str, o: &Replica) -> Readiness {
    if let Some(r) = inner.gateway_readiness.readiness(&o.id, Instant::now()) {
        return r;
    }
    if u128::from(age_ms(&o.created)) < NO_GATEWAY_GRACE.as_millis() {
        return Readiness::Starting;
    }
    if !inner
        .no_gateway_warned
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            app,
            task = %short(&o.id),
            "no gateway reports this task's probe: running counts as ready (are the gateways on the nodes running and reaching --advertise-url? docs/swarm.md)"
        );
    }
    Readiness::Ready
}

/// A replica's age as the planner judges it ("did not become healthy within" a deadline): for a
/// task the gateways probe, only the time since a gateway first reported
/// (`GatewayReadiness::probed_for_ms`).
fn planner_age_ms(inner: &Inner, spec: &RevisionSpec, svc: Option<&Service>, o: &Replica) -> u64 {
    let age = age_ms(&o.created);
    let probed = svc.is_some_and(|s| probe_kind(spec, &o.service, s).is_some());
    if gateways_probe(inner) && probed {
        inner.gateway_readiness.probed_for_ms(age, Instant::now())
    } else {
        age
    }
}

fn readiness(
    inner: &Inner,
    app: &str,
    spec: &RevisionSpec,
    name: &str,
    svc: &Service,
    o: &Replica,
) -> Readiness {
    if o.state != ReplicaState::Running || o.stopping {
        inner.prober.mark_down(&o.id);
        inner.start_probes.forget(&o.id);
        return Readiness::Starting;
    }
    if let Some((kind, port)) = probe_kind(spec, name, svc) {
        if gateways_probe(inner) {
            return gateway_readiness(inner, app, o);
        }
        let Some(ip) = ip_of(inner, app, Some(spec), Some(svc), o) else {
            return Readiness::Starting;
        };
        return inner
            .prober
            .ensure(app, &o.id, &o.started_at, SocketAddr::new(ip, port), &kind);
    }
    // The runtime's status, with the healthcheck run early while it says `starting`.
    let start_interval = svc.healthcheck.as_ref().and_then(|h| h.start_interval_ms);
    inner.start_probes.readiness(app, o, start_interval)
}

async fn pass<R: AppRuntime>(inner: &Arc<Inner>, rt: &R, app: &str) -> Result<Action, CpError> {
    let record = match inner.store.get_app(app) {
        Ok(a) => Some(a),
        Err(berth_store::StoreError::AppNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    // Steps that finish after this instant were not seen by this pass's listing (see `execute`).
    let observed_at = Instant::now();
    let observed = rt.observe(app).await?;
    let Some(record) = record.filter(|r| !r.deleting) else {
        let volumes = inner
            .store
            .get_app(app)
            .map(|a| a.delete_volumes)
            .unwrap_or(false);
        return teardown(inner, rt, app, observed, volumes).await;
    };
    let rev = inner
        .store
        .get_revision::<RevisionSpec>(app, record.revision)?;
    let spec = rev.spec;
    let converged_before = inner
        .store
        .last_converged_before::<IgnoredAny>(app, record.revision)?
        .is_some();

    let now = Instant::now();
    // Failures under an earlier revision say nothing about this one: start over.
    {
        let mut mem = inner.mem();
        mem.backoff
            .retain(|(a, _, _), b| a != app || b.revision == record.revision);
        mem.service_backoff
            .retain(|(a, _), b| a != app || b.revision == record.revision);
    }

    // Observe: each replica's readiness (probes, Docker's healthcheck) and address.
    let replicas: Vec<app_plan::Observed> = observed
        .iter()
        .map(|o| {
            let svc = spec.project.services.get(&o.service);
            app_plan::Observed {
                id: o.id.clone(),
                service: o.service.clone(),
                slot: o.slot,
                hash: o.hash.clone(),
                state: o.state,
                readiness: match svc {
                    Some(s) => readiness(inner, app, &spec, &o.service, s, o),
                    None => Readiness::Ready,
                },
                age_ms: planner_age_ms(inner, &spec, svc, o),
                ip: ip_of(inner, app, Some(&spec), svc, o),
                stopping: o.stopping,
            }
        })
        .collect();
    let memory = app_memory(inner, app, &replicas);
    let providers_down = providers_down(inner, &spec, &replicas);
    let desired = app_plan::Desired {
        app,
        revision: record.revision,
        spec: &spec,
        status: rev.status,
        converged_before,
        rollout_deadline_ms: u64::try_from(inner.config.rollout_deadline.as_millis())
            .unwrap_or(60_000),
        min_drain_ms: u64::try_from(inner.config.min_drain.as_millis()).unwrap_or(50),
        providers_down: &providers_down,
        convergence: rt.converges(),
        gateway_probes: gateways_probe(inner),
    };
    let services = match desired.convergence {
        Convergence::Slots => Vec::new(),
        Convergence::Services => rt.observe_services(app).await?,
    };

    // Plan.
    let plan = app_plan::plan_app(&desired, &replicas, &services, &memory, now);
    heal::mark(&mut inner.mem().heals, app, || {
        let ready = replicas
            .iter()
            .filter(|r| r.readiness == Readiness::Ready)
            .count();
        let steps = plan.steps.len();
        format!("pass {ready}/{} ready, {steps} step(s)", replicas.len())
    });

    // Execute.
    for (name, step) in plan.steps {
        execute(
            inner,
            rt,
            app,
            record.revision,
            &spec,
            &name,
            &plan.services[&name],
            step,
            observed_at,
        );
    }
    for step in plan.service_steps {
        execute_service(inner, rt, app, record.revision, &spec, step, observed_at);
    }
    match plan.verdict {
        Verdict::Unchanged => {}
        Verdict::Converged => {
            inner
                .store
                // Empty, or the slots `max_failure_ratio` let the update give up.
                .set_revision_status(
                    app,
                    record.revision,
                    RevisionStatus::Converged,
                    &plan.status.message,
                )?;
            // An event (the feed, and MQTT's `berth/events/{team}/app/deployed`).
            inner.events.emit_in(
                Some(berth_core::team::team_of(app)),
                "app.deployed",
                crate::events::Level::Info,
                app,
                format!("revision {} converged", record.revision),
            );
        }
        Verdict::RolloutFailed { message, action } => {
            handle_failure(inner, app, record.revision, action, &message)?;
        }
        Verdict::FirstDeployFailed { problem } => {
            inner.store.set_revision_status(
                app,
                record.revision,
                RevisionStatus::Failed,
                &problem,
            )?;
            tracing::warn!(app, revision = record.revision, problem, "revision failed");
        }
    }

    // Publish.
    publish_routes(inner, app, plan.routes, plan.ports);
    // Until every probe of a running replica has answered once, the table under-reports what
    // serves (after a server restart, all readiness starts over): not yet "synced".
    // (The gateways' probes report when they report: they do not hold the table back.)
    let probes_pending = !gateways_probe(inner)
        && observed.iter().any(|o| {
            o.state == ReplicaState::Running
                && spec
                    .project
                    .services
                    .get(&o.service)
                    .is_some_and(|svc| probe_kind(&spec, &o.service, svc).is_some())
                && !inner.prober.evaluated(&o.id)
        });
    {
        let mut mem = inner.mem();
        heal::finish(&mut mem.heals, app, plan.status.health == "healthy");
        mem.status.insert(app.into(), plan.status);
        if !probes_pending {
            mem.synced.insert(app.to_string());
        }
    }
    Ok(plan.requeue)
}

/// What Berth remembers of this application, as the planner reads it.
fn app_memory(inner: &Inner, app: &str, replicas: &[app_plan::Observed]) -> app_plan::AppMemory {
    let port_errors = inner.dataplane.port_errors();
    let table_version = inner.dataplane.table_version();
    let mut mem = inner.mem();
    let mut out = app_plan::AppMemory {
        port_errors,
        ..app_plan::AppMemory::default()
    };
    let now = Instant::now();
    for r in replicas {
        if let Some(info) = mem.restarts.get(&r.id) {
            out.restarts.insert(
                r.id.clone(),
                app_plan::Restarts {
                    count: info.count,
                    last_start: info.last_start,
                },
            );
        }
        if matches!(r.state, ReplicaState::Exited(_)) {
            let since = *mem.exited_since.entry(r.id.clone()).or_insert(now);
            out.exited_since.insert(r.id.clone(), since);
        } else {
            mem.exited_since.remove(&r.id);
        }
        if let Some((since, version)) = mem.draining.get(&r.id) {
            out.draining.insert(
                r.id.clone(),
                app_plan::Draining {
                    since: *since,
                    // Until the gateway serves the table without it, a 0 means nothing.
                    in_flight: if table_version >= *version {
                        inner.dataplane.in_flight(&r.id)
                    } else {
                        usize::MAX
                    },
                },
            );
        }
    }
    for ((a, service, slot), b) in &mem.backoff {
        if a == app {
            out.failing.insert(
                (service.clone(), *slot),
                app_plan::SlotFailures {
                    failures: b.failures,
                    since: b.since,
                    next: b.next,
                    error: b.error.clone(),
                },
            );
        }
    }
    for ((a, service), t) in &mem.slot_done {
        if a == app {
            out.slot_done.insert(service.clone(), *t);
        }
    }
    for ((a, service), revision) in &mem.ensured {
        if a == app {
            out.ensured.insert(service.clone(), *revision);
        }
    }
    for ((a, service), b) in &mem.service_backoff {
        if a == app {
            out.service_failing.insert(
                service.clone(),
                app_plan::SlotFailures {
                    failures: b.failures,
                    since: b.since,
                    next: b.next,
                    error: b.error.clone(),
                },
            );
        }
    }
    let prefix = create_key_prefix(app);
    out.busy = replicas.iter().any(|r| mem.busy.contains(&r.id))
        || mem.busy.iter().any(|k| k.starts_with(&prefix));
    out
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

/// Record a failed rollout (the planner decided it) and roll back if its `failure_action` says so.
fn handle_failure(
    inner: &Inner,
    app: &str,
    revision: u64,
    action: FailureAction,
    message: &str,
) -> Result<(), CpError> {
    // An automatic rollback makes a revision like any other: admission decides, with the
    // team's grants as they are now, and a protected application takes reviewed versions only,
    // as they are now (`commit` checks both). Refused (a grant revoked, a version retired since
    // the good revision ran), the application pauses as with `failure_action: pause` (`paused`
    // in `pass`), saying why.
    let good = if action == FailureAction::Rollback {
        inner
            .store
            .last_converged_before::<RevisionSpec>(app, revision)?
    } else {
        None
    };
    let refused = match &good {
        Some(good) => match crate::admission::admit(inner, app, &good.spec.project)
            .and_then(|()| crate::lifecycle::check_protected(inner, app, &good.spec))
        {
            Ok(()) => None,
            Err(CpError::AdmissionDenied { team, denials }) => Some((
                "admission",
                crate::admission::message(&team, &denials),
                "apply a file the team's grants admit, or ask the administrator for the grant and roll back",
            )),
            Err(CpError::VersionNotApproved(why)) => Some((
                "the application's protection",
                why,
                "apply a file of reviewed versions, or roll back to one",
            )),
            Err(e) => return Err(e),
        },
        None => None,
    };
    let refused_message;
    let message = match (&good, &refused) {
        (Some(good), Some((_, why, what_now))) => {
            refused_message = format!(
                "{message}; automatic rollback to revision {} refused ({why}); rollout paused: {what_now}",
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
        return Ok(()); // already recorded
    }
    tracing::warn!(app, revision, message, "rollout failed");
    if let (Some(good), Some((by, _, _))) = (&good, &refused) {
        inner.events.emit_in(
            Some(berth_core::team::team_of(app)),
            "rollback.refused",
            crate::events::Level::Warn,
            app,
            format!(
                "automatic rollback of revision {revision} to revision {} refused by {by}; rollout paused: {message}",
                good.number
            ),
        );
        return Ok(());
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
    Ok(())
}

/// For each service with `x-berth.uses` and no replica yet: the entries whose provider instance
/// has no ready replica in the current table (docs/market.md#composition). Only a first start
/// waits: a consumer that runs is never held back by its provider's trouble.
fn providers_down(
    inner: &Inner,
    spec: &RevisionSpec,
    replicas: &[app_plan::Observed],
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, svc) in &spec.project.services {
        if svc.berth.uses.is_empty() || replicas.iter().any(|r| &r.service == name) {
            continue;
        }
        let table = inner.table_tx.borrow().clone();
        let down: Vec<String> = svc
            .berth
            .uses
            .iter()
            .filter(|entry| {
                let Some(service) = crate::subscriptions::parse_entry(entry) else {
                    return false;
                };
                let Ok(Some(b)) = inner.store.market_binding(&service) else {
                    return true;
                };
                !table.routes.iter().any(|r| {
                    // (Probed by the gateways: listed is not ready; ready by their word.)
                    r.app == b.app
                        && r.service == b.app_service
                        && r.endpoints.iter().any(|e| {
                            r.probe.is_none()
                                || inner.gateway_readiness.readiness(&e.id, Instant::now())
                                    == Some(Readiness::Ready)
                        })
                })
            })
            .cloned()
            .collect();
        if !down.is_empty() {
            out.insert(name.clone(), down);
        }
    }
    out
}

/// Publish this application's routes and published ports (the whole table, if they changed).
fn publish_routes(inner: &Inner, app: &str, routes: Vec<HttpRoute>, ports: Vec<PortForward>) {
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
    crate::subscriptions::fill_table(&mut table.routes, &mem.market);
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

/// Run one step as an owned background task; the key marks it busy until done.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn execute<R: AppRuntime>(
    inner: &Arc<Inner>,
    rt: &R,
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
        // The planner's count of failed restarts (`restart_policy.window` may have reset it).
        let restarted = match &step {
            Step::Start { id } => {
                let observed = input.observed.iter().find(|r| &r.id == id);
                match observed.map(|r| (r.state, r.restarts)) {
                    Some((ReplicaState::Exited(code), n)) => Some((id, Some(code), n)),
                    _ => None,
                }
            }
            Step::Restart { id } => {
                let n = input
                    .observed
                    .iter()
                    .find(|r| &r.id == id)
                    .map_or(0, |r| r.restarts);
                Some((id, None, n))
            }
            _ => None,
        };
        if let Some((id, exit, failed)) = restarted {
            let info = mem.restarts.entry(id.clone()).or_default();
            info.count = failed + 1;
            if exit.is_some() {
                info.last_exit = exit;
            }
            let now = Instant::now();
            info.last_start = Some(now);
            let record = berth_store::RestartRecord {
                container: id.clone(),
                count: info.count,
                last_exit: info.last_exit,
                last_start_ms: crate::unix_ms(std::time::SystemTime::now()),
            };
            drop(mem);
            if let Err(e) = inner.store.record_restart(&record) {
                tracing::warn!(app, service, error = %e, "cannot record a restart count");
            }
        }
    }
    // The slot the step acts on: its failures back off per slot (see `plan::SlotBackoff`).
    let slot = plan::step_slot(input, &step);
    let inner2 = inner.clone();
    let rt = rt.clone();
    let (app, service, spec) = (app.to_string(), service.to_string(), spec.clone());
    let grace = spec
        .project
        .services
        .get(&service)
        .and_then(|s| s.stop_grace_period_ms)
        .map_or(10, |ms| ms.div_ceil(1000));
    let what = match &step {
        Step::Create { slot } => format!("create {service}/{slot}"),
        Step::Start { id } => format!("start {}", short(id)),
        Step::Restart { id } => format!("restart {}", short(id)),
        Step::Remove { id } => format!("remove {}", short(id)),
        Step::Drain { .. } | Step::Failed { .. } | Step::Wait { .. } => String::new(),
    };
    heal::mark(&mut inner.mem().heals, &app, || what.clone());
    tokio::spawn(async move {
        let inner = inner2;
        let mut created: Option<String> = None;
        let result: Result<(), CpError> = async {
            match &step {
                Step::Create { slot } => {
                    created = Some(rt.create_replica(&app, revision, &spec, &service, *slot).await?);
                    Ok(())
                }
                Step::Start { id } => {
                    tracing::info!(app, service, container = %short(id), "starting replica");
                    rt.start(id).await
                }
                Step::Restart { id } => {
                    tracing::info!(app, service, container = %short(id), "restarting unhealthy replica");
                    inner.prober.forget(id);
                    rt.restart(id, grace).await
                }
                Step::Remove { id } => {
                    tracing::info!(app, service, container = %short(id), "removing replica");
                    rt.remove(id, grace).await?;
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
            let ok = if result.is_ok() { "done" } else { "failed" };
            heal::mark(&mut mem.heals, &app, || format!("{what} {ok}"));
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

/// Carry out a `Services`-mode step in the background, once at a time per service: the runtime
/// creates, updates (and rolls out) or removes the service. A revision ensured is remembered
/// (`Memory::ensured`): a rollback the runtime then makes is that revision's failed rollout.
/// A failure is logged and the next pass plans the step again.
fn execute_service<R: AppRuntime>(
    inner: &Arc<Inner>,
    rt: &R,
    app: &str,
    revision: u64,
    spec: &RevisionSpec,
    step: ServiceStep,
    observed_at: Instant,
) {
    let service = match &step {
        ServiceStep::EnsureService { service, .. } | ServiceStep::RemoveService { service } => {
            service.clone()
        }
    };
    // Under the create prefix: the application counts as busy (not converged) meanwhile.
    let key = format!("{}service/{service}", create_key_prefix(app));
    {
        let mut mem = inner.mem();
        if mem.done.get(&key).is_some_and(|t| *t > observed_at) || !mem.busy.insert(key.clone()) {
            return;
        }
    }
    let inner = inner.clone();
    let rt = rt.clone();
    let (app, spec) = (app.to_string(), spec.clone());
    tokio::spawn(async move {
        let result = match &step {
            ServiceStep::EnsureService { revision: r, .. } => {
                tracing::info!(app, service, revision = r, "ensuring service");
                rt.ensure_service(&app, *r, &spec, &service).await
            }
            ServiceStep::RemoveService { .. } => {
                tracing::info!(app, service, "removing service");
                rt.remove_service(&app, &service).await
            }
        };
        // Kept in the store too, so a restarted server judges a rollback as this one would.
        let stored = match (&result, &step) {
            (Ok(()), ServiceStep::EnsureService { .. }) => {
                inner.store.record_ensured(&app, &service, revision)
            }
            (Ok(()), ServiceStep::RemoveService { .. }) => {
                inner.store.forget_ensured(&app, Some(&service))
            }
            (Err(_), _) => Ok(()),
        };
        if let Err(e) = stored {
            tracing::warn!(app, service, error = %e, "cannot record the ensured revision");
        }
        {
            let mut mem = inner.mem();
            let key2 = (app.clone(), service.clone());
            match (&result, &step) {
                (Ok(()), ServiceStep::EnsureService { .. }) => {
                    mem.ensured.insert(key2.clone(), revision);
                }
                (Ok(()), ServiceStep::RemoveService { .. }) => {
                    mem.ensured.remove(&key2);
                }
                (Err(_), _) => {}
            }
            match result {
                Ok(()) => {
                    mem.service_backoff.remove(&key2);
                }
                Err(e) => {
                    // Backs off like a failing slot; each distinct failure is logged once.
                    let verb = match &step {
                        ServiceStep::EnsureService { .. } => "ensure",
                        ServiceStep::RemoveService { .. } => "remove",
                    };
                    let error = format!("{verb} failed: {e}");
                    let now = Instant::now();
                    let b = mem
                        .service_backoff
                        .entry(key2)
                        .or_insert_with(|| crate::StepBackoff {
                            revision,
                            failures: 0,
                            since: now,
                            next: now,
                            error: String::new(),
                        });
                    b.failures += 1;
                    b.next = now + crate::step_backoff(b.failures);
                    if b.error == error {
                        tracing::debug!(
                            app,
                            service,
                            failures = b.failures,
                            error,
                            "service step failed again"
                        );
                    } else {
                        tracing::warn!(
                            app,
                            service,
                            failures = b.failures,
                            error,
                            "service step failed"
                        );
                        b.error = error;
                    }
                }
            }
            mem.busy.remove(&key);
            mem.done.insert(key, Instant::now());
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

pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Remove everything of an application (deleted, or unknown to the store: an orphan).
async fn teardown<R: AppRuntime>(
    inner: &Arc<Inner>,
    rt: &R,
    app: &str,
    observed: Vec<Replica>,
    volumes: bool,
) -> Result<Action, CpError> {
    {
        let mut mem = inner.mem();
        if mem.tables.remove(app).is_some() {
            publish_table(inner, &mem);
        }
        // A replica or service being made now (a step started before the removal) would be
        // made after this listing and outlive its application: wait for it (it wakes the
        // application when done), then remove what is there.
        let prefix = create_key_prefix(app);
        if mem.busy.iter().any(|k| k.starts_with(&prefix)) {
            return Ok(Action::Requeue(app_plan::PROGRESS));
        }
    }
    if rt.converges() == Convergence::Services {
        // The runtime's services own the replicas: removing a service stops its tasks.
        for o in observed.iter() {
            inner.prober.forget(&o.id);
        }
        for s in rt.observe_services(app).await? {
            rt.remove_service(app, &s.service).await?;
        }
    } else {
        let removals = observed.iter().map(|o| async move {
            inner.prober.forget(&o.id);
            rt.remove(&o.id, 10).await
        });
        for r in futures_util::future::join_all(removals).await {
            r?;
        }
    }
    rt.remove_resources(app, volumes).await?;
    {
        let mut mem = inner.mem();
        mem.status.remove(app);
        mem.slot_done.retain(|(a, _), _| a != app);
        mem.backoff.retain(|(a, _, _), _| a != app);
        mem.ensured.retain(|(a, _), _| a != app);
        mem.service_backoff.retain(|(a, _), _| a != app);
    }
    inner.store.forget_ensured(app, None)?;
    if inner.store.get_app(app).is_ok() {
        inner.store.delete_app(app)?;
        // Its subscriptions went with it: the gateway stops admitting it, its credentials go.
        inner.forget_consumer(app);
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
pub(crate) async fn instances(inner: &Arc<Inner>, app: &str) -> Result<Vec<Instance>, CpError> {
    let observed = runtime::for_server(inner).observe(app).await?;
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
            let ip = ip_of(inner, app, spec.as_ref(), svc, o);
            // Probed by the gateways (Swarm): their word, as the pass reads it.
            let gateway_probed = gateways_probe(inner)
                && o.running
                && !o.stopping
                && matches!((&spec, svc), (Some(s), Some(svc)) if probe_kind(s, &o.service, svc).is_some());
            let by_gateways = gateway_probed.then(|| gateway_readiness(inner, app, o));
            let in_rotation = table
                .routes
                .iter()
                .flat_map(|r| r.endpoints.iter())
                .chain(table.ports.iter().flat_map(|p| p.endpoints.iter()))
                .any(|e| e.id == o.id)
                && by_gateways.is_none_or(|r| r == Readiness::Ready);
            let running = o.running;
            let health = if !running {
                "none".to_string()
            } else if let Some(h) = &o.health {
                // A passed start probe gates as healthy before Docker's first check does.
                if h == "starting" && inner.start_probes.passed(&o.id) {
                    "healthy".to_string()
                } else {
                    h.clone()
                }
            } else if let Some(r) = by_gateways {
                match r {
                    Readiness::Ready => "healthy",
                    Readiness::Unhealthy => "unhealthy",
                    Readiness::Starting => "starting",
                }
                .to_string()
            } else if let (Some(s), Some(svc)) = (&spec, svc) {
                if probe_kind(s, &o.service, svc).is_some() {
                    match inner.prober.peek(&o.id) {
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
                .get(&o.id)
                .copied()
                .unwrap_or(RestartInfo::default());
            let exit_code = match o.state {
                ReplicaState::Exited(c) => Some(c),
                _ => info.last_exit,
            };
            Instance {
                service: o.service.clone(),
                slot: o.slot,
                container_id: o.id.clone(),
                name: o.name.clone(),
                image: o.image.clone(),
                state: o.status.clone(),
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
                draining: mem.draining.contains_key(&o.id),
                node: o.node.clone(),
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
        let rt = runtime::for_server(&i);
        drop(i);
        let events = rt.events().await;
        drop(rt);
        match events {
            Ok(mut stream) => {
                // Anything may have happened while we were not listening.
                if let Some(i) = inner.upgrade() {
                    wake_all(&i).await;
                }
                loop {
                    let ev = tokio::select! {
                        () = shutdown.cancelled() => return,
                        ev = stream.next() => ev,
                    };
                    let Some(ev) = ev else { break };
                    let Some(i) = inner.upgrade() else { return };
                    if ev.down {
                        i.prober.mark_down(&ev.replica);
                        drop_endpoint(&i, &ev.replica);
                        if let Some(app) = ev.app.as_deref().filter(|_| heal::enabled()) {
                            heal::begin(&mut i.mem().heals, app, &ev.replica, ev.lag_ms);
                        }
                    }
                    if let Some(app) = &ev.app {
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

async fn wake_all(inner: &Arc<Inner>) {
    let mut apps: Vec<String> = inner
        .store
        .list_apps()
        .map(|a| a.into_iter().map(|a| a.name).collect())
        .unwrap_or_default();
    // Applications known only to Docker (orphans of a crash during removal) are torn down.
    if let Ok(list) = runtime::for_server(inner).list_all().await {
        forget_gone_restarts(inner, &list);
        for (a, _) in list {
            if !a.is_empty() && !apps.contains(&a) {
                apps.push(a);
            }
        }
    }
    // So are applications that left only a network: a create step still in flight when its
    // application was removed (an environment torn down mid-deploy) can make one after the
    // teardown, and no container event would ever name that application again.
    if let Ok(nets) = inner
        .docker
        .list_networks(&crate::label_filters(inner, None))
        .await
    {
        for n in nets {
            if let Some(a) = n.labels.get(labels::APP) {
                if !a.is_empty() && !apps.contains(a) {
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
fn forget_gone_restarts(inner: &Inner, present: &[(String, String)]) {
    let present: HashSet<&str> = present.iter().map(|(_, id)| id.as_str()).collect();
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
        mem.exited_since
            .retain(|id, _| present.contains(id.as_str()));
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
