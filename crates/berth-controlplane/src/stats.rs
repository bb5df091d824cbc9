//! The gateway's figures, per service and minute, for the last hour (docs/market.md).
//!
//! Gateways report cumulative counters ([`GatewayReport`]) every second; this module adds the
//! difference from the same gateway's previous report to the service's current one-minute
//! bucket. Pure apart from its mutex: the caller passes the time.
//! - A gateway's first report sets its baseline and adds nothing (a gateway that ran before
//!   reporting does not dump its history into one minute); a service first seen in a known
//!   gateway counts in full (its counters started at zero with its route).
//! - A total that went down (the gateway restarted, or the service's route was dropped and
//!   added again) counts from zero. Single counters are read one after another, not at one
//!   instant, so one may lag its last value by a little: it adds nothing (a saturating
//!   difference), and only the total (all responses) going down is a reset.
//! - A gateway, or one of its services, not reported for an hour is forgotten (a gateway
//!   restarts with a new name).
//! - Reports with latency buckets other than [`LATENCY_BUCKETS_US`] and `+Inf` are refused by
//!   the API ([`GatewayReport::validate`]); such counters are skipped here too.

use berth_core::api::{
    GatewayReport, MinuteStats, RouteStats, ServiceCounters, LATENCY_BUCKETS_US,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Minutes kept per service.
const MINUTES: i64 = 60;

/// A gateway or a gateway's service not reported for this long (seconds) is forgotten.
const FORGET_AFTER: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Minute {
    /// Unix time of the minute's start.
    start: i64,
    responses: [u64; 5],
    buckets: Vec<u64>,
}

#[derive(Default)]
struct State {
    /// (gateway, app, service) → the last counters reported, and when.
    last: HashMap<(String, String, String), (ServiceCounters, i64)>,
    /// Gateway → when it last reported.
    gateways: HashMap<String, i64>,
    /// (app, service) → minutes, oldest first.
    series: HashMap<(String, String), VecDeque<Minute>>,
}

/// The figures of every service (global application names).
#[derive(Default)]
pub struct Stats {
    state: Mutex<State>,
}

fn minute_of(unix: i64) -> i64 {
    unix.div_euclid(60) * 60
}

/// `now - before`, counter by counter (one that lags its last value adds nothing), or `now`
/// when the total went down (a reset).
fn delta(now: &ServiceCounters, before: Option<&ServiceCounters>) -> ([u64; 5], Vec<u64>) {
    let Some(b) = before else {
        return (now.responses, now.latency_buckets.clone());
    };
    let total = |c: &ServiceCounters| c.responses.iter().fold(0u64, |a, n| a.saturating_add(*n));
    if total(now) < total(b) || now.latency_buckets.len() != b.latency_buckets.len() {
        return (now.responses, now.latency_buckets.clone());
    }
    (
        std::array::from_fn(|i| now.responses[i].saturating_sub(b.responses[i])),
        now.latency_buckets
            .iter()
            .zip(&b.latency_buckets)
            .map(|(n, o)| n.saturating_sub(*o))
            .collect(),
    )
}

/// The `q` quantile (0..1) in milliseconds, estimated from per-bucket counts (linear within a
/// bucket; the `+Inf` bucket answers its lower bound).
#[must_use]
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let rank = q * total as f64;
    let mut before = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        if n > 0 && (before + n) as f64 >= rank {
            // Past the last bound (the `+Inf` bucket, or more buckets than bounds): its lower
            // bound.
            let lower = match i {
                0 => 0,
                _ => LATENCY_BUCKETS_US
                    .get(i - 1)
                    .copied()
                    .unwrap_or(LATENCY_BUCKETS_US[LATENCY_BUCKETS_US.len() - 1]),
            };
            let Some(&upper) = LATENCY_BUCKETS_US.get(i) else {
                #[allow(clippy::cast_precision_loss)]
                return Some(lower as f64 / 1000.0);
            };
            #[allow(clippy::cast_precision_loss)]
            let within = ((rank - before as f64) / n as f64).clamp(0.0, 1.0);
            #[allow(clippy::cast_precision_loss)]
            let us = lower as f64 + (upper - lower) as f64 * within;
            return Some((us / 10.0).round() / 100.0);
        }
        before += n;
    }
    None
}

fn view(m: &Minute) -> MinuteStats {
    MinuteStats {
        start: time::OffsetDateTime::from_unix_timestamp(m.start)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
        requests: m.responses.iter().sum(),
        errors: m.responses[4],
        p50_ms: quantile_ms(&m.buckets, 0.5),
        p95_ms: quantile_ms(&m.buckets, 0.95),
    }
}

impl Stats {
    /// Add a gateway's report, made at `now` (unix seconds).
    pub fn ingest(&self, report: &GatewayReport, now: i64) {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = &mut *guard;
        let first = st.gateways.insert(report.gateway.clone(), now).is_none();
        let minute = minute_of(now);
        for c in &report.services {
            if c.latency_buckets.len() != LATENCY_BUCKETS_US.len() + 1 {
                continue; // not a gateway's (the API refuses such reports)
            }
            let key = (report.gateway.clone(), c.app.clone(), c.service.clone());
            let before = st.last.insert(key, (c.clone(), now)).map(|(c, _)| c);
            if first {
                continue;
            }
            let (responses, buckets) = delta(c, before.as_ref());
            if responses.iter().all(|&n| n == 0) && buckets.iter().all(|&n| n == 0) {
                continue;
            }
            let series = st
                .series
                .entry((c.app.clone(), c.service.clone()))
                .or_default();
            if series.back().is_none_or(|m| m.start != minute) {
                series.push_back(Minute {
                    start: minute,
                    responses: [0; 5],
                    buckets: vec![0; LATENCY_BUCKETS_US.len() + 1],
                });
            }
            if let Some(m) = series.back_mut() {
                for (a, d) in m.responses.iter_mut().zip(responses) {
                    *a += d;
                }
                for (a, d) in m.buckets.iter_mut().zip(buckets) {
                    *a += d;
                }
            }
        }
        // Forget gateways and their services not reported for an hour.
        let forget = now - FORGET_AFTER;
        st.gateways.retain(|_, seen| *seen > forget);
        st.last.retain(|_, (_, seen)| *seen > forget);
        // Forget what is older than the hour, and services without minutes.
        let oldest = minute - (MINUTES - 1) * 60;
        st.series.retain(|_, s| {
            while s.front().is_some_and(|m| m.start < oldest) {
                s.pop_front();
            }
            !s.is_empty()
        });
    }

    /// A service's figures at `now` (unix seconds): the last full minute and the hour.
    #[must_use]
    pub fn route_stats(&self, app: &str, service: &str, now: i64) -> RouteStats {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest = minute_of(now) - (MINUTES - 1) * 60;
        let minutes: Vec<&Minute> = st
            .series
            .get(&(app.to_string(), service.to_string()))
            .map(|s| s.iter().filter(|m| m.start >= oldest).collect())
            .unwrap_or_default();
        let last_full = minute_of(now) - 60;
        let last = minutes
            .iter()
            .find(|m| m.start == last_full)
            .map(|m| view(m));
        let (calls, errors) = last.as_ref().map_or((0, 0), |m| (m.requests, m.errors));
        #[allow(clippy::cast_precision_loss)]
        let error_rate = if calls == 0 {
            0.0
        } else {
            errors as f64 / calls as f64
        };
        RouteStats {
            app: app.to_string(),
            service: service.to_string(),
            calls_per_minute: calls,
            error_rate,
            p50_ms: last.as_ref().and_then(|m| m.p50_ms),
            p95_ms: last.as_ref().and_then(|m| m.p95_ms),
            minutes: minutes.into_iter().map(view).collect(),
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl crate::ControlPlane {
    /// Add a gateway's report (the in-process gateway's, or `POST /api/v1/gateway/stats`).
    /// Its endpoints' readiness (a gateway on a Swarm node) wakes the applications whose tasks
    /// it changed.
    pub fn ingest_gateway_report(&self, report: &GatewayReport) {
        self.inner.stats.ingest(report, unix_now());
        let wake = self
            .inner
            .gateway_readiness
            .ingest(report, tokio::time::Instant::now());
        // Only applications of this server (a report names what its sender says).
        for app in wake.iter().filter(|a| self.inner.store.get_app(a).is_ok()) {
            self.inner.wake(app);
        }
    }

    /// A service's figures: `app_not_found` / `service_not_found` unless the application's
    /// current revision has the service.
    pub fn route_stats(&self, app: &str, service: &str) -> Result<RouteStats, crate::CpError> {
        let a = self.inner.store.get_app(app)?;
        let spec: crate::spec::RevisionPins = self.inner.store.get_revision(app, a.revision)?.spec;
        if !spec.images.contains_key(service) {
            return Err(crate::CpError::ServiceNotFound(app.into(), service.into()));
        }
        Ok(self.inner.stats.route_stats(app, service, unix_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(app: &str, ok: u64, err: u64, fast: u64, slow: u64) -> ServiceCounters {
        let mut latency_buckets = vec![0; LATENCY_BUCKETS_US.len() + 1];
        latency_buckets[0] = fast;
        latency_buckets[3] = slow; // 25–50 ms
        ServiceCounters {
            app: app.into(),
            service: "web".into(),
            responses: [0, ok, 0, 0, err],
            latency_buckets,
        }
    }

    fn report(gateway: &str, services: Vec<ServiceCounters>) -> GatewayReport {
        GatewayReport {
            gateway: gateway.into(),
            services,
            readiness: None,
        }
    }

    const T0: i64 = 1_800_000_000; // a minute's start (divisible by 60)

    #[test]
    fn deltas_fill_minutes_and_the_last_full_minute_is_summarised() {
        let s = Stats::default();
        // The first report is the baseline: its 100 earlier requests are not counted.
        s.ingest(&report("gw", vec![counters("a", 100, 0, 100, 0)]), T0);
        s.ingest(
            &report("gw", vec![counters("a", 190, 10, 150, 50)]),
            T0 + 30,
        );
        s.ingest(
            &report("gw", vec![counters("a", 200, 10, 160, 50)]),
            T0 + 61,
        );
        let st = s.route_stats("a", "web", T0 + 65);
        assert_eq!(st.calls_per_minute, 100);
        assert!((st.error_rate - 0.1).abs() < 1e-9, "{st:?}");
        // 50 of 100 under 5 ms, 50 in 25–50 ms: p50 at the top of the first bucket, p95 at
        // 90 % of the way through the slow one.
        assert_eq!(st.p50_ms, Some(5.0));
        assert_eq!(st.p95_ms, Some(47.5));
        assert_eq!(st.minutes.len(), 2);
        assert_eq!(st.minutes[1].requests, 10);
        assert!(st.minutes[0].start.ends_with(":00Z"), "{:?}", st.minutes[0]);
    }

    #[test]
    fn a_restarted_gateway_counts_from_zero_and_gateways_add_up() {
        let s = Stats::default();
        s.ingest(&report("gw", vec![counters("a", 50, 0, 50, 0)]), T0);
        s.ingest(&report("other", vec![counters("a", 1000, 0, 1000, 0)]), T0);
        s.ingest(&report("gw", vec![counters("a", 70, 0, 70, 0)]), T0 + 10);
        s.ingest(&report("gw", vec![counters("a", 5, 0, 5, 0)]), T0 + 20);
        s.ingest(
            &report("other", vec![counters("a", 1003, 0, 1003, 0)]),
            T0 + 20,
        );
        let st = s.route_stats("a", "web", T0 + 60);
        assert_eq!(st.calls_per_minute, 20 + 5 + 3);
    }

    #[test]
    fn a_new_service_of_a_known_gateway_counts_in_full() {
        let s = Stats::default();
        s.ingest(&report("gw", vec![]), T0);
        s.ingest(&report("gw", vec![counters("b", 7, 0, 7, 0)]), T0 + 1);
        assert_eq!(s.route_stats("b", "web", T0 + 60).calls_per_minute, 7);
        assert_eq!(s.route_stats("c", "web", T0 + 60).calls_per_minute, 0);
    }

    #[test]
    fn an_hour_is_kept() {
        let s = Stats::default();
        s.ingest(&report("gw", vec![counters("a", 0, 0, 0, 0)]), T0);
        for i in 1..=90 {
            s.ingest(
                &report("gw", vec![counters("a", i, 0, i, 0)]),
                T0 + i as i64 * 60,
            );
        }
        let st = s.route_stats("a", "web", T0 + 90 * 60 + 5);
        assert_eq!(st.minutes.len(), 60);
        assert_eq!(st.calls_per_minute, 1);
        assert_eq!(st.p95_ms, Some(4.75));
    }

    #[test]
    fn a_counter_read_a_moment_early_is_no_reset() {
        let s = Stats::default();
        s.ingest(&report("gw", vec![counters("a", 100, 0, 60, 40)]), T0);
        // The 2xx counter was read after ten more responses, the buckets before them: the
        // buckets are unchanged (not reset), the responses grew by ten.
        s.ingest(&report("gw", vec![counters("a", 110, 0, 60, 40)]), T0 + 1);
        // Then a bucket lags behind its last value: it adds nothing, and nothing is recounted.
        s.ingest(&report("gw", vec![counters("a", 120, 0, 58, 52)]), T0 + 2);
        let st = s.route_stats("a", "web", T0 + 60);
        assert_eq!(st.calls_per_minute, 20, "{st:?}");
        // Only 12 observations: the slow bucket's 12 (the fast one's -2 is none).
        assert!(st.p50_ms.unwrap() > 25.0, "{st:?}");
        // The total going down is a reset: the new counters count in full.
        s.ingest(&report("gw", vec![counters("a", 3, 0, 3, 0)]), T0 + 61);
        assert_eq!(s.route_stats("a", "web", T0 + 120).calls_per_minute, 3);
    }

    #[test]
    fn more_buckets_than_the_gateways_neither_panic_nor_count() {
        let mut b = vec![0; 20];
        b[15] = 4;
        assert_eq!(quantile_ms(&b, 0.5), Some(10_000.0));
        let s = Stats::default();
        let mut c = counters("a", 1, 0, 1, 0);
        c.latency_buckets = vec![1; 10_000];
        s.ingest(&report("gw", vec![]), T0);
        s.ingest(&report("gw", vec![c.clone()]), T0 + 1);
        assert_eq!(s.route_stats("a", "web", T0 + 60).calls_per_minute, 0);
        assert!(report("gw", vec![c]).validate().is_err());
        assert!(report("gw", vec![counters("a", 1, 0, 1, 0)])
            .validate()
            .is_ok());
    }

    #[test]
    fn gateways_not_heard_from_for_an_hour_are_forgotten() {
        let s = Stats::default();
        s.ingest(&report("old", vec![counters("a", 5, 0, 5, 0)]), T0);
        s.ingest(&report("gw", vec![counters("b", 5, 0, 5, 0)]), T0);
        s.ingest(&report("gw", vec![]), T0 + 3600);
        {
            let st = s.state.lock().unwrap();
            assert_eq!(st.gateways.keys().collect::<Vec<_>>(), ["gw"]);
            assert!(st.last.is_empty(), "{:?}", st.last.keys());
        }
        // Back after being forgotten: a baseline again, nothing counted.
        s.ingest(
            &report("old", vec![counters("a", 500, 0, 500, 0)]),
            T0 + 3601,
        );
        assert_eq!(s.route_stats("a", "web", T0 + 3660).calls_per_minute, 0);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile_ms(&[0; 12], 0.5), None);
        let mut b = vec![0; 12];
        b[11] = 3; // beyond 10 s
        assert_eq!(quantile_ms(&b, 0.99), Some(10_000.0));
        let mut b = vec![0; 12];
        b[1] = 10; // 5–10 ms
        assert_eq!(quantile_ms(&b, 0.5), Some(7.5));
    }
}
