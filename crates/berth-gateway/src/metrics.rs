//! Counters of the request path and their Prometheus text rendering.
//!
//! Rules this module keeps:
//! * Recording is a few relaxed atomic increments: no lock, no allocation. Counters live per
//!   route identity (app, service, host, prefix) and per (app, service), kept by the registry
//!   across table swaps, so they only ever grow while the route exists.
//! * Rendering (`Gateway::render_metrics`) is hand-written text exposition format 0.0.4; labels
//!   are escaped. It takes the registry lock briefly and never runs on the request path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (the last bucket is `+Inf`).
pub const BUCKETS_US: [u64; 11] = berth_core::api::LATENCY_BUCKETS_US;

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Observations per bucket (not cumulative), then those above the last bound (`+Inf`).
    #[must_use]
    pub fn per_bucket(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        let below: u64 = out.iter().sum();
        out.push(count.saturating_sub(below));
        out
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)]
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Responses by status class (1xx … 5xx).
#[derive(Default)]
pub struct StatusCounts([AtomicU64; 5]);

impl StatusCounts {
    /// The counts, 1xx … 5xx.
    #[must_use]
    pub fn counts(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }

    /// Count one response.
    pub fn count(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, c) in self.0.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}{{{labels},class=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
    }
}

/// Counters of one route.
pub struct RouteMetrics {
    /// `app="…",service="…",host="…",prefix="…"`, escaped once.
    pub labels: String,
    pub responses: StatusCounts,
    pub latency: Histogram,
    /// Requests answered 429 by the route's rate limit.
    pub rate_limited: AtomicU64,
    /// Requests answered 401.
    pub unauthorized: AtomicU64,
}

impl RouteMetrics {
    /// Counters for the route with these labels.
    #[must_use]
    pub fn new(app: &str, service: &str, host: Option<&str>, prefix: &str) -> Self {
        let mut labels = String::new();
        let _ = write!(
            labels,
            "app=\"{}\",service=\"{}\",host=\"{}\",prefix=\"{}\"",
            escape(app),
            escape(service),
            escape(host.unwrap_or("")),
            escape(prefix)
        );
        Self {
            labels,
            responses: StatusCounts::default(),
            latency: Histogram::default(),
            rate_limited: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
        }
    }
}

/// Counters of one service.
pub struct ServiceMetrics {
    /// `app="…",service="…"`, escaped once.
    pub labels: String,
    pub responses: StatusCounts,
    pub latency: Histogram,
    /// Retries sent (not counting connect failovers).
    pub retries: AtomicU64,
    /// Requests refused by the bulkhead.
    pub bulkhead_rejected: AtomicU64,
    /// Requests refused by the open breaker.
    pub breaker_rejected: AtomicU64,
    /// Endpoints ejected by passive health checking.
    pub ejections: AtomicU64,
}

impl ServiceMetrics {
    /// Counters for the service with these labels.
    #[must_use]
    pub fn new(app: &str, service: &str) -> Self {
        Self {
            labels: format!("app=\"{}\",service=\"{}\"", escape(app), escape(service)),
            responses: StatusCounts::default(),
            latency: Histogram::default(),
            retries: AtomicU64::new(0),
            bulkhead_rejected: AtomicU64::new(0),
            breaker_rejected: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
        }
    }
}

/// Escape a label value (backslash, double quote, newline).
#[must_use]
pub fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Render every route and service (plus the gateway-wide `unrouted` counter).
pub(crate) fn render(
    routes: &[&RouteMetrics],
    services: &[(&ServiceMetrics, Option<crate::breaker::State>)],
    unrouted: u64,
) -> String {
    let mut out = String::with_capacity(1024 + 2048 * (routes.len() + services.len()));
    header(
        &mut out,
        "berth_gateway_route_requests_total",
        "counter",
        "Responses per route by status class.",
    );
    for r in routes {
        r.responses
            .render(&mut out, "berth_gateway_route_requests_total", &r.labels);
    }
    header(
        &mut out,
        "berth_gateway_route_request_duration_seconds",
        "histogram",
        "Time to response headers per route.",
    );
    for r in routes {
        r.latency.render(
            &mut out,
            "berth_gateway_route_request_duration_seconds",
            &r.labels,
        );
    }
    simple(
        &mut out,
        "berth_gateway_route_rate_limited_total",
        "Requests refused by the route's rate limit.",
        routes
            .iter()
            .map(|r| (r.labels.as_str(), r.rate_limited.load(Ordering::Relaxed))),
    );
    simple(
        &mut out,
        "berth_gateway_route_unauthorized_total",
        "Requests refused for a missing or invalid token.",
        routes
            .iter()
            .map(|r| (r.labels.as_str(), r.unauthorized.load(Ordering::Relaxed))),
    );
    header(
        &mut out,
        "berth_gateway_service_requests_total",
        "counter",
        "Responses per service by status class.",
    );
    for (s, _) in services {
        s.responses
            .render(&mut out, "berth_gateway_service_requests_total", &s.labels);
    }
    header(
        &mut out,
        "berth_gateway_service_request_duration_seconds",
        "histogram",
        "Time to response headers per service.",
    );
    for (s, _) in services {
        s.latency.render(
            &mut out,
            "berth_gateway_service_request_duration_seconds",
            &s.labels,
        );
    }
    header(
        &mut out,
        "berth_gateway_service_circuit_state",
        "gauge",
        "Circuit breaker state: 0 closed, 1 open, 2 half-open (absent: no breaker).",
    );
    for (s, state) in services {
        if let Some(state) = state {
            let _ = writeln!(
                out,
                "berth_gateway_service_circuit_state{{{}}} {}",
                s.labels, *state as u8
            );
        }
    }
    simple(
        &mut out,
        "berth_gateway_service_circuit_rejected_total",
        "Requests refused by an open circuit breaker.",
        services.iter().map(|(s, _)| {
            (
                s.labels.as_str(),
                s.breaker_rejected.load(Ordering::Relaxed),
            )
        }),
    );
    simple(
        &mut out,
        "berth_gateway_service_bulkhead_rejected_total",
        "Requests refused by the service's concurrency limit.",
        services.iter().map(|(s, _)| {
            (
                s.labels.as_str(),
                s.bulkhead_rejected.load(Ordering::Relaxed),
            )
        }),
    );
    simple(
        &mut out,
        "berth_gateway_service_retries_total",
        "Retries sent to the service.",
        services
            .iter()
            .map(|(s, _)| (s.labels.as_str(), s.retries.load(Ordering::Relaxed))),
    );
    simple(
        &mut out,
        "berth_gateway_service_ejections_total",
        "Endpoints ejected after consecutive failures.",
        services
            .iter()
            .map(|(s, _)| (s.labels.as_str(), s.ejections.load(Ordering::Relaxed))),
    );
    header(
        &mut out,
        "berth_gateway_unrouted_total",
        "counter",
        "Requests no route matched.",
    );
    let _ = writeln!(out, "berth_gateway_unrouted_total {unrouted}");
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn simple<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (&'a str, u64)>,
) {
    header(out, name, "counter", help);
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let r = RouteMetrics::new("a", "s", None, "/x\"y");
        r.responses.count(200);
        r.responses.count(503);
        r.latency.observe(Duration::from_millis(7));
        let s = ServiceMetrics::new("a", "s");
        s.retries.fetch_add(2, Ordering::Relaxed);
        let text = render(&[&r], &[(&s, Some(crate::breaker::State::Open))], 3);
        assert!(text.contains(r#"berth_gateway_route_requests_total{app="a",service="s",host="",prefix="/x\"y",class="2xx"} 1"#), "{text}");
        assert!(text.contains(r#"berth_gateway_route_request_duration_seconds_bucket{app="a",service="s",host="",prefix="/x\"y",le="0.01"} 1"#), "{text}");
        assert!(text.contains(r#"berth_gateway_service_circuit_state{app="a",service="s"} 1"#));
        assert!(text.contains(r#"berth_gateway_service_retries_total{app="a",service="s"} 2"#));
        assert!(text.contains("berth_gateway_unrouted_total 3"));
    }
}
