//! Where the time of a heal goes: from the engine's report that a replica went down to the
//! application's status saying every replica is healthy again, with a mark at every reconcile
//! pass and every step in between. One `debug` line per heal at the target
//! `berth_controlplane::heal` (`BERTH_LOG=info,berth_controlplane::heal=debug`), read by
//! `bench/heal_bench.py`:
//!
//! ```text
//! heal timeline app=shop container=3f2a… engine_lag_ms=1 total_ms=212
//!   timeline="+1 pass 2/3 ready, 1 step(s) · +2 start 3f2a… · +148 start 3f2a… done · +175 pass 2/3 ready, 0 step(s) · +211 pass 3/3 ready, 0 step(s) · +212 healthy"
//! ```
//!
//! Off unless that target is enabled: then the cost is one check per down event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A heal in progress.
#[derive(Debug)]
pub(crate) struct Trace {
    since: Instant,
    container: String,
    engine_lag_ms: Option<u64>,
    marks: Vec<(u64, String)>,
}

/// Heals being timed, per application.
pub(crate) type Traces = HashMap<String, Trace>;

/// Marks beyond this many are dropped (a replica that never heals).
const MAX_MARKS: usize = 64;
/// A trace this old is given up (logged as unfinished).
const GIVE_UP: Duration = Duration::from_secs(60);

pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "berth_controlplane::heal", tracing::Level::DEBUG)
}

/// A replica of `app` went down (the engine's event, `engine_lag_ms` after it happened).
pub(crate) fn begin(traces: &mut Traces, app: &str, container: &str, engine_lag_ms: Option<u64>) {
    traces.entry(app.to_string()).or_insert_with(|| Trace {
        since: Instant::now(),
        container: container.to_string(),
        engine_lag_ms,
        marks: Vec::new(),
    });
}

/// Something happened in the heal of `app`, if one is being timed.
pub(crate) fn mark(traces: &mut Traces, app: &str, what: impl FnOnce() -> String) {
    if let Some(t) = traces.get_mut(app) {
        if t.marks.len() < MAX_MARKS {
            let ms = elapsed_ms(t.since);
            t.marks.push((ms, what()));
        }
    }
}

/// The pass found `app` healthy (`true`) or not: a finished heal is logged and forgotten, and so
/// is one that has taken too long.
pub(crate) fn finish(traces: &mut Traces, app: &str, healthy: bool) {
    let Some(t) = traces.get(app) else { return };
    let old = t.since.elapsed() > GIVE_UP;
    if !healthy && !old {
        return;
    }
    let Some(mut t) = traces.remove(app) else {
        return;
    };
    let total_ms = elapsed_ms(t.since);
    t.marks.push((
        total_ms,
        if healthy { "healthy" } else { "given up" }.into(),
    ));
    let timeline = t
        .marks
        .iter()
        .map(|(ms, what)| format!("+{ms} {what}"))
        .collect::<Vec<_>>()
        .join(" · ");
    tracing::debug!(
        target: "berth_controlplane::heal",
        app,
        container = %crate::pass::short(&t.container),
        engine_lag_ms = t.engine_lag_ms,
        total_ms,
        timeline,
        "heal timeline"
    );
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_while_a_heal_is_timed_and_ends_when_healthy() {
        let mut t = Traces::new();
        mark(&mut t, "shop", || "pass".into());
        assert!(t.is_empty());
        begin(&mut t, "shop", "abc", Some(2));
        // A second down event of the same application keeps the first start.
        let since = t["shop"].since;
        begin(&mut t, "shop", "def", None);
        assert_eq!(t["shop"].since, since);
        mark(&mut t, "shop", || "pass 2/3 ready".into());
        mark(&mut t, "other", || "pass".into());
        assert_eq!(t["shop"].marks.len(), 1);
        finish(&mut t, "shop", false);
        assert!(t.contains_key("shop"));
        finish(&mut t, "shop", true);
        assert!(t.is_empty());
    }

    #[test]
    fn marks_are_bounded() {
        let mut t = Traces::new();
        begin(&mut t, "shop", "abc", None);
        for _ in 0..200 {
            mark(&mut t, "shop", || "pass".into());
        }
        assert_eq!(t["shop"].marks.len(), MAX_MARKS);
    }
}
