//! The platform events feed: what Berth did or noticed on its own (image retention, alerts,
//! the build janitor), for `GET /api/v1/events` and `berth events`.
//!
//! Rules it keeps: the feed is a bounded ring in memory ([`CAPACITY`] events; the oldest go
//! first), lost on restart — the log has every event too (warn-level events at warn). Ids grow
//! by one per event, so a follower asks for `after=<last id>` and misses nothing that is still
//! in the ring. Each event is also sent, with its team, on a broadcast channel
//! ([`crate::ControlPlane::event_feed`]: the MQTT broker publishes them, docs/messaging.md); a
//! receiver that falls [`FEED_CAPACITY`] events behind loses the oldest, never slows Berth.

use berth_core::api::EventView;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Events kept in memory.
pub const CAPACITY: usize = 1000;
/// Events a feed receiver may fall behind before it loses the oldest.
pub const FEED_CAPACITY: usize = 1024;

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something Berth did as planned.
    Info,
    /// Something an operator should look at (an alert).
    Warn,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
        }
    }
}

/// The ring of recent events, and the feed of new ones.
pub(crate) struct Events {
    ring: Mutex<(u64, VecDeque<TeamEvent>)>,
    feed: tokio::sync::broadcast::Sender<TeamEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            ring: Mutex::default(),
            feed: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

/// An event with its team (`None`: the platform's, e.g. the engine's disk).
pub type TeamEvent = (Option<String>, EventView);

impl Events {
    /// Record an event (and log it at its level).
    /// A platform event (the engine, the janitor): no team's.
    pub(crate) fn emit(&self, kind: &str, level: Level, subject: &str, message: String) {
        self.emit_in(None, kind, level, subject, message);
    }

    /// An event about an object of `team` (the team of a global name:
    /// `berth_core::team::team_of`).
    pub(crate) fn emit_in(
        &self,
        team: Option<&str>,
        kind: &str,
        level: Level,
        subject: &str,
        message: String,
    ) {
        match level {
            Level::Info => tracing::info!(kind, subject, "{message}"),
            Level::Warn => tracing::warn!(kind, subject, "{message}"),
        }
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut g = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0 += 1;
        let id = g.0;
        if g.1.len() == CAPACITY {
            g.1.pop_front();
        }
        let event = (
            team.map(str::to_owned),
            EventView {
                id,
                time,
                kind: kind.into(),
                level: level.as_str().into(),
                message,
                subject: subject.into(),
            },
        );
        // Sent under the lock, so receivers see the ids in order. No receiver: an error, ignored.
        let _ = self.feed.send(event.clone());
        g.1.push_back(event);
    }

    /// A receiver of every event recorded from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TeamEvent> {
        self.feed.subscribe()
    }

    /// Events with an id above `after` (all with 0), oldest first, at most `limit`
    /// (the newest ones when there are more).
    /// The newest `limit` events after `after` that `visible` lets through (given each
    /// event's team).
    pub(crate) fn list(
        &self,
        after: u64,
        limit: usize,
        visible: &dyn Fn(Option<&str>) -> bool,
    ) -> Vec<EventView> {
        let g = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer: Vec<&EventView> =
            g.1.iter()
                .filter(|(team, e)| e.id > after && visible(team.as_deref()))
                .map(|(_, e)| e)
                .collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_ordered_and_resumable() {
        let ev = Events::default();
        for i in 0..CAPACITY + 5 {
            ev.emit("test", Level::Info, "s", format!("event {i}"));
        }
        let all = ev.list(0, usize::MAX, &|_| true);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].id, 6, "the oldest are dropped first");
        assert_eq!(all.last().unwrap().id, (CAPACITY + 5) as u64, "newest last");
        let tail = ev.list(all[all.len() - 3].id, usize::MAX, &|_| true);
        assert_eq!(tail.len(), 2);
        let limited = ev.list(0, 2, &|_| true);
        assert_eq!(
            limited.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![CAPACITY as u64 + 4, CAPACITY as u64 + 5]
        );
        ev.emit("alert.x", Level::Warn, "web", "over".into());
        assert_eq!(ev.list(0, 1, &|_| true)[0].level, "warn");
    }

    #[test]
    fn the_feed_carries_each_new_event_with_its_team() {
        let ev = Events::default();
        ev.emit("before", Level::Info, "s", "not seen".into());
        let mut rx = ev.subscribe();
        ev.emit_in(
            Some("shop"),
            "app.deployed",
            Level::Info,
            "shop/web",
            "r1".into(),
        );
        ev.emit("engine", Level::Warn, "disk", "full".into());
        let (team, e) = rx.try_recv().unwrap();
        assert_eq!(
            (team.as_deref(), e.kind.as_str()),
            (Some("shop"), "app.deployed")
        );
        let (team, e) = rx.try_recv().unwrap();
        assert_eq!((team, e.id), (None, 3));
        assert!(rx.try_recv().is_err());
    }
}
