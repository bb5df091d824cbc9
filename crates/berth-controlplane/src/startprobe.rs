//! Start probes: a starting replica's own Docker healthcheck, run early on Berth's schedule.
//!
//! Why: a replica whose readiness is its Compose `healthcheck` (docs/compose.md, "Readiness")
//! waits for Docker's first check, one whole `interval` after start (30 s by default). Engines
//! before API 1.44 have no `StartInterval`, so every `depends_on: service_healthy` level and
//! every rollout step of such a file cost an interval. While Docker still says `starting`, Berth
//! runs the healthcheck's own test in the container (an exec) every `start_interval` (the
//! Compose file's, else [`DEFAULT_START_INTERVAL`]) until its first success. From then on the
//! replica counts as ready for Berth's gating, the application is woken at once so its
//! dependents start, and Docker's own status (at its `interval`) takes over: `healthy` and
//! `unhealthy` always win over a start probe.
//!
//! Rules it keeps:
//! - At most one exec in flight per replica (attempts run one after another, each bounded by
//!   the healthcheck's `timeout`), and one probe task per container run (`StartedAt`): a
//!   restart starts over.
//! - Probing stops at the first success, when the container stops or goes (the exec is
//!   refused), when Docker's status leaves `starting` (the pass then [`StartProbes::forget`]s
//!   it), or after `start_period + retries × interval` (+ one `timeout`), the time after which
//!   Docker itself would have judged the replica: a check that keeps failing is Docker's to
//!   report, not a reason to exec forever.
//! - Nothing to run means no probe: no healthcheck, `NONE`, an empty test, or an engine that
//!   already runs the check at least as often itself (`StartInterval`, API 1.44+).
//! - Every task is owned by the server's shutdown token.

use crate::plan::Readiness;
use crate::runtime::Replica;
use berth_docker::{Docker, DockerError, ExecOutcome, HealthConfig};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a starting replica's healthcheck runs when the Compose file gives no
/// `start_interval`: often enough that a dependency level costs a fraction of a second, rarely
/// enough that a dozen starting replicas cost the engine little (an exec is a few ms of work).
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_millis(250);
/// Docker's defaults for a healthcheck field left at 0.
const DOCKER_INTERVAL: Duration = Duration::from_secs(30);
const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);
const DOCKER_RETRIES: u32 = 3;
/// Extra time an exec call may take beyond the check's own timeout (the API round trips).
const CALL_SLACK: Duration = Duration::from_secs(2);

/// What a start probe runs, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The command to exec (argv).
    pub cmd: Vec<String>,
    /// Time between attempt starts.
    pub every: Duration,
    /// How long one attempt may run.
    pub timeout: Duration,
    /// No attempt starts this long after the first one.
    pub give_up_after: Duration,
    /// Docker's own interval: by this long after a success Docker has checked too.
    pub docker_interval: Duration,
}

fn ns(v: i64) -> Option<Duration> {
    u64::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .map(Duration::from_nanos)
}

/// The argv that runs a Docker healthcheck test: `CMD` runs its arguments, `CMD-SHELL` its
/// string with `/bin/sh -c` (as the engine does on Linux); `NONE`, an empty test or an unknown
/// form runs nothing.
#[must_use]
pub fn command(test: &[String]) -> Option<Vec<String>> {
    let (kind, rest) = test.split_first()?;
    match kind.as_str() {
        "CMD" if !rest.is_empty() => Some(rest.to_vec()),
        "CMD-SHELL" if !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        _ => None,
    }
}

impl Schedule {
    /// The schedule for a container's healthcheck (as the engine holds it: the service's,
    /// completed with the image's) and the Compose file's `start_interval`. `None`: nothing to
    /// probe (see the module's rules).
    #[must_use]
    pub fn of(h: &HealthConfig, start_interval_ms: Option<u64>) -> Option<Schedule> {
        let cmd = command(&h.test)?;
        let every = start_interval_ms
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_START_INTERVAL, Duration::from_millis);
        if ns(h.start_interval_ns).is_some_and(|engine| engine <= every) {
            // The engine runs the check at the start interval itself (API 1.44+).
            return None;
        }
        let interval = ns(h.interval_ns).unwrap_or(DOCKER_INTERVAL);
        let timeout = ns(h.timeout_ns).unwrap_or(DOCKER_TIMEOUT);
        let retries = u32::try_from(h.retries)
            .ok()
            .filter(|r| *r > 0)
            .unwrap_or(DOCKER_RETRIES);
        let start_period = ns(h.start_period_ns).unwrap_or_default();
        Some(Schedule {
            cmd,
            every,
            timeout,
            give_up_after: start_period + interval * retries + timeout,
            docker_interval: interval,
        })
    }
}

/// One attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The test exited 0.
    Passed,
    /// It failed, timed out, or the exec could not start.
    Failed,
    /// The container is not running or is gone: stop probing.
    Gone,
}

/// How a start probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Gone,
    GaveUp,
}

/// Runs attempts one after another on `s`'s schedule until one passes, the container goes,
/// or the schedule's bound passes. An attempt that runs longer than `every` is followed at once
/// by the next, never overlapped; one that outlives `timeout` (plus the call's slack) counts as
/// failed. Time is tokio's, so tests run it with paused time.
pub async fn drive<F, Fut>(s: &Schedule, mut attempt: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt>,
{
    let first = Instant::now();
    loop {
        let started = Instant::now();
        let result = tokio::time::timeout(s.timeout + CALL_SLACK, attempt())
            .await
            .unwrap_or(Attempt::Failed);
        match result {
            Attempt::Passed => return Outcome::Passed,
            Attempt::Gone => return Outcome::Gone,
            Attempt::Failed => {}
        }
        let next = started + s.every;
        if next.duration_since(first) >= s.give_up_after {
            return Outcome::GaveUp;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// One exec of the test in the container, as an [`Attempt`].
async fn exec_attempt(docker: &Docker, container: &str, s: &Schedule) -> Attempt {
    match docker.exec_run(container, &s.cmd, s.timeout).await {
        Ok(ExecOutcome::Exited(0)) => Attempt::Passed,
        Ok(ExecOutcome::Exited(_) | ExecOutcome::TimedOut) => Attempt::Failed,
        Err(DockerError::Conflict(_) | DockerError::NotFound(_)) => Attempt::Gone,
        Err(e) => {
            tracing::debug!(container = %short(container), error = %e, "start probe exec failed");
            Attempt::Failed
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

struct Entry {
    /// The container run (`StartedAt`) this probe belongs to.
    run: String,
    passed: bool,
    /// When the task ended, and how long after that the entry is worth keeping.
    ended: Option<(Instant, Duration)>,
    cancel: CancellationToken,
}

/// The start probes of every starting replica whose readiness is Docker's healthcheck.
#[derive(Clone)]
pub struct StartProbes {
    docker: Docker,
    map: Arc<Mutex<HashMap<String, Entry>>>,
    wake: Arc<dyn Fn(&str) + Send + Sync>,
    shutdown: CancellationToken,
}

impl StartProbes {
    /// `wake(app)` is called when a replica's start probe passes.
    pub fn new(
        docker: Docker,
        wake: Arc<dyn Fn(&str) + Send + Sync>,
        shutdown: CancellationToken,
    ) -> StartProbes {
        StartProbes {
            docker,
            map: Arc::default(),
            wake,
            shutdown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The readiness of a running container whose readiness is Docker's health status:
    /// Docker's `healthy`/`unhealthy` as they are; while `starting`, ready once a start probe
    /// passed (one is started if none runs for this run of the container). No health status
    /// means ready (running is enough).
    pub(crate) fn readiness(
        &self,
        app: &str,
        c: &Replica,
        start_interval_ms: Option<u64>,
    ) -> Readiness {
        match c.health.as_deref() {
            Some("starting") => {}
            Some("unhealthy") => {
                self.forget(&c.id);
                return Readiness::Unhealthy;
            }
            _ => {
                self.forget(&c.id);
                return Readiness::Ready;
            }
        }
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, e| e.ended.is_none_or(|(at, keep)| now < at + keep));
        if let Some(e) = map.get(&c.id) {
            if e.run == c.started_at {
                return if e.passed {
                    Readiness::Ready
                } else {
                    Readiness::Starting
                };
            }
            e.cancel.cancel();
        }
        let Some(schedule) = c
            .healthcheck
            .as_ref()
            .and_then(|h| Schedule::of(h, start_interval_ms))
        else {
            map.remove(&c.id);
            return Readiness::Starting;
        };
        let cancel = self.shutdown.child_token();
        map.insert(
            c.id.clone(),
            Entry {
                run: c.started_at.clone(),
                passed: false,
                ended: None,
                cancel: cancel.clone(),
            },
        );
        drop(map);
        let this = self.clone();
        let (app, id, run) = (app.to_string(), c.id.clone(), c.started_at.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                o = drive(&schedule, || exec_attempt(&this.docker, &id, &schedule)) => o,
            };
            tracing::debug!(app, container = %short(&id), ?outcome, ms = t0.elapsed().as_millis(), "start probe ended");
            {
                let mut map = this.lock();
                let Some(e) = map.get_mut(&id).filter(|e| e.run == run) else {
                    return;
                };
                e.passed = outcome == Outcome::Passed;
                // By then Docker has run its own check and the pass forgets the entry; the
                // bound only keeps a replica removed meanwhile from lingering here.
                e.ended = Some((
                    Instant::now(),
                    schedule.docker_interval + schedule.timeout + CALL_SLACK,
                ));
            }
            if outcome == Outcome::Passed {
                (this.wake)(&app);
            }
        });
        Readiness::Starting
    }

    /// Has this container's current start probe passed (while Docker still says `starting`)?
    #[must_use]
    pub fn passed(&self, container: &str) -> bool {
        self.lock().get(container).is_some_and(|e| e.passed)
    }

    /// Stop probing a container (it stopped, went, or Docker's status moved on).
    pub fn forget(&self, container: &str) {
        let mut map = self.lock();
        if let Some(e) = map.remove(container) {
            e.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn hc(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: test.iter().map(ToString::to_string).collect(),
            ..HealthConfig::default()
        }
    }

    #[test]
    fn commands_of_each_test_form() {
        let s = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            command(&s(&["CMD", "/app", "probe"])),
            Some(s(&["/app", "probe"]))
        );
        assert_eq!(
            command(&s(&["CMD-SHELL", "test -f /ready"])),
            Some(s(&["/bin/sh", "-c", "test -f /ready"]))
        );
        for none in [&[][..], &["NONE"], &["CMD"], &["CMD-SHELL"], &["EXEC", "x"]] {
            assert_eq!(command(&s(none)), None, "{none:?}");
        }
    }

    #[test]
    fn schedule_defaults_and_bounds() {
        // Docker's defaults: interval 30 s, timeout 30 s, 3 retries, no start period.
        let s = Schedule::of(&hc(&["CMD", "true"]), None).unwrap();
        assert_eq!(s.every, DEFAULT_START_INTERVAL);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.give_up_after, Duration::from_secs(3 * 30 + 30));
        // The file's values, and its start_interval.
        let h = HealthConfig {
            interval_ns: 5_000_000_000,
            timeout_ns: 1_000_000_000,
            retries: 2,
            start_period_ns: 10_000_000_000,
            ..hc(&["CMD-SHELL", "true"])
        };
        let s = Schedule::of(&h, Some(100)).unwrap();
        assert_eq!(s.every, Duration::from_millis(100));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.give_up_after, Duration::from_secs(10 + 2 * 5 + 1));
        assert_eq!(s.docker_interval, Duration::from_secs(5));
        // start_interval: 0 means the default.
        assert_eq!(
            Schedule::of(&h, Some(0)).unwrap().every,
            DEFAULT_START_INTERVAL
        );
    }

    #[test]
    fn nothing_to_probe() {
        assert_eq!(Schedule::of(&hc(&["NONE"]), None), None);
        assert_eq!(Schedule::of(&hc(&[]), None), None);
        // The engine already checks at least as often during the start period (API 1.44+).
        let engine = HealthConfig {
            start_interval_ns: 250_000_000,
            ..hc(&["CMD", "true"])
        };
        assert_eq!(Schedule::of(&engine, Some(250)), None);
        assert_eq!(Schedule::of(&engine, None), None);
        // ...but not when the file asks for more often than the engine was told.
        assert!(Schedule::of(&engine, Some(100)).is_some());
    }

    fn sched(every_ms: u64, timeout_ms: u64, give_up_ms: u64) -> Schedule {
        Schedule {
            cmd: vec!["true".into()],
            every: Duration::from_millis(every_ms),
            timeout: Duration::from_millis(timeout_ms),
            give_up_after: Duration::from_millis(give_up_ms),
            docker_interval: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_at_the_start_interval_until_the_first_success() {
        let tries = AtomicU32::new(0);
        let t0 = Instant::now();
        let s = sched(250, 1000, 60_000);
        let out = drive(&s, || async {
            if tries.fetch_add(1, Ordering::SeqCst) + 1 == 5 {
                Attempt::Passed
            } else {
                Attempt::Failed
            }
        })
        .await;
        assert_eq!(out, Outcome::Passed);
        assert_eq!(tries.load(Ordering::SeqCst), 5);
        // The first attempt at once, then one every 250 ms.
        assert_eq!(t0.elapsed(), Duration::from_millis(4 * 250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_check_is_never_overlapped() {
        let in_flight = AtomicU32::new(0);
        let most = AtomicU32::new(0);
        let tries = AtomicU32::new(0);
        let t0 = Instant::now();
        let s = sched(250, 10_000, 60_000);
        let out = drive(&s, || async {
            let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(700)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            if tries.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                Attempt::Passed
            } else {
                Attempt::Failed
            }
        })
        .await;
        assert_eq!(out, Outcome::Passed);
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Back to back: 3 attempts of 700 ms, no wait between them.
        assert_eq!(t0.elapsed(), Duration::from_millis(3 * 700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_counts_as_failed_after_its_timeout() {
        let tries = AtomicU32::new(0);
        let t0 = Instant::now();
        let s = sched(250, 1000, 60_000);
        let out = drive(&s, || async {
            if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                std::future::pending::<()>().await;
            }
            Attempt::Passed
        })
        .await;
        assert_eq!(out, Outcome::Passed);
        assert_eq!(t0.elapsed(), Duration::from_millis(1000) + CALL_SLACK);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_bound_and_stops_when_the_container_goes() {
        let tries = AtomicU32::new(0);
        let t0 = Instant::now();
        let out = drive(&sched(250, 1000, 2_000), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Attempt::Failed
        })
        .await;
        assert_eq!(out, Outcome::GaveUp);
        // Attempts at 0, 250, ..., 1750 ms; none starts at or after 2 s.
        assert_eq!(tries.load(Ordering::SeqCst), 8);
        assert!(t0.elapsed() < Duration::from_secs(2));

        let tries = AtomicU32::new(0);
        let out = drive(&sched(250, 1000, 60_000), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Attempt::Gone
        })
        .await;
        assert_eq!(out, Outcome::Gone);
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
