//! Failed-login counting: 5 failures within 10 minutes for a user, or from an address, lock
//! logins for that key for 15 minutes. In memory (a restart forgets them), bounded in size.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// Failures that lock.
pub const MAX_FAILURES: usize = 5;
/// Within this window.
pub const WINDOW: Duration = Duration::minutes(10);
/// For this long.
pub const LOCK: Duration = Duration::minutes(15);
/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Default)]
struct Entry {
    failures: VecDeque<OffsetDateTime>,
    locked_until: Option<OffsetDateTime>,
    /// Attempts whose password check is still running: they count towards the limit, so that
    /// logins sent all at once cannot get more than `MAX_FAILURES` checks past the lock.
    pending: usize,
}

/// The failure counters, keyed by `user:NAME` or `addr:IP`.
#[derive(Default)]
pub(crate) struct Lockout {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Lockout {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds until `key` may try again, if it is locked.
    #[cfg(test)]
    pub(crate) fn locked(&self, key: &str, now: OffsetDateTime) -> Option<u64> {
        let map = self.lock();
        let until = map.get(key)?.locked_until?;
        (until > now).then(|| {
            let secs = (until - now).whole_seconds().max(1);
            u64::try_from(secs).unwrap_or(1)
        })
    }

    /// Count a failure for `key`; true if it is now locked.
    pub(crate) fn fail(&self, key: &str, now: OffsetDateTime) -> bool {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| {
                e.locked_until.is_some_and(|u| u > now)
                    || e.failures.back().is_some_and(|t| *t > now - WINDOW)
            });
        }
        let e = map.entry(key.to_string()).or_default();
        while e.failures.front().is_some_and(|t| *t <= now - WINDOW) {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        if e.failures.len() >= MAX_FAILURES {
            e.failures.clear();
            e.locked_until = Some(now + LOCK);
            return true;
        }
        false
    }

    /// Start an attempt for `key`: refused (seconds to wait) if `key` is locked, or if its
    /// failures in the window plus the attempts still running reach the limit. Every `Ok` must
    /// be followed by [`Lockout::end`].
    pub(crate) fn begin(&self, key: &str, now: OffsetDateTime) -> Result<(), u64> {
        let mut map = self.lock();
        let e = map.entry(key.to_string()).or_default();
        if let Some(until) = e.locked_until.filter(|u| *u > now) {
            let secs = (until - now).whole_seconds().max(1);
            return Err(u64::try_from(secs).unwrap_or(1));
        }
        while e.failures.front().is_some_and(|t| *t <= now - WINDOW) {
            e.failures.pop_front();
        }
        if e.failures.len() + e.pending >= MAX_FAILURES {
            return Err(1);
        }
        e.pending += 1;
        Ok(())
    }

    /// An attempt started with [`Lockout::begin`] has its answer.
    pub(crate) fn end(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.pending = e.pending.saturating_sub(1);
        }
    }

    /// Forget `key`'s failures (a successful login); attempts still running stay counted.
    pub(crate) fn clear(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.failures.clear();
            e.locked_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn five_failures_within_ten_minutes_lock_for_fifteen() {
        let l = Lockout::default();
        let t = t0();
        for i in 0..4 {
            assert!(!l.fail("user:bob", t + Duration::minutes(i)));
            assert_eq!(l.locked("user:bob", t + Duration::minutes(i)), None);
        }
        assert!(l.fail("user:bob", t + Duration::minutes(9)));
        let at = t + Duration::minutes(9);
        assert_eq!(l.locked("user:bob", at), Some(15 * 60));
        assert_eq!(l.locked("user:bob", at + Duration::minutes(14)), Some(60));
        assert_eq!(l.locked("user:bob", at + Duration::minutes(15)), None);
        // Other keys are not affected.
        assert_eq!(l.locked("user:alice", at), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let l = Lockout::default();
        let t = t0();
        for i in 0..4 {
            l.fail("addr:10.0.0.1", t + Duration::minutes(i));
        }
        // The first failure (t) is 10 minutes old at t + 10 min: only 4 in the window.
        assert!(!l.fail("addr:10.0.0.1", t + Duration::minutes(10)));
        assert_eq!(l.locked("addr:10.0.0.1", t + Duration::minutes(10)), None);
        assert!(l.fail("addr:10.0.0.1", t + Duration::seconds(630)));
    }

    #[test]
    fn attempts_still_running_count_towards_the_limit() {
        let l = Lockout::default();
        let t = t0();
        // Five logins sent at once all start; the sixth waits for one of them to end.
        for _ in 0..MAX_FAILURES {
            assert_eq!(l.begin("addr:10.0.0.9", t), Ok(()));
        }
        assert_eq!(l.begin("addr:10.0.0.9", t), Err(1));
        // They all fail: the key is locked, and ending them does not unlock it.
        for _ in 0..MAX_FAILURES {
            l.fail("addr:10.0.0.9", t);
            l.end("addr:10.0.0.9");
        }
        assert_eq!(l.begin("addr:10.0.0.9", t), Err(15 * 60));
    }

    #[test]
    fn success_clears_the_count() {
        let l = Lockout::default();
        let t = t0();
        for i in 0..4 {
            l.fail("user:bob", t + Duration::seconds(i));
        }
        l.clear("user:bob");
        assert!(!l.fail("user:bob", t + Duration::seconds(5)));
    }
}
