//! Rate limiting: GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp).
//!
//! Rules this module keeps:
//! * One [`RateLimiter`] per route identity (app, service, host, prefix) and limit, kept by the
//!   registry across table swaps, so a swap never hands out a fresh burst.
//! * Time comes from `tokio::time::Instant` (habit 8): tests run with `start_paused`.
//! * `route`-keyed limits are one lock-free atomic (a compare-and-swap loop on the theoretical
//!   arrival time). `ip`/`consumer` limits keep a map per key behind a mutex held for one lookup;
//!   the maps are bounded ([`MAX_KEYS`]): an idle key (its bucket full again) is the same as an
//!   absent one, so idle keys are evicted first, and a map still full after that is cut in half.
//! * A rejection says when to come back: `Retry-After`, and the IETF `RateLimit-Policy` /
//!   `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers): `q` requests per `w` seconds,
//!   `r` remaining now, `t` seconds until the bucket is full again. Allowed requests get the same
//!   two fields from the [`Allowed`] that [`RateLimiter::check`] returns (`proxy` adds them).

use berth_core::policy::{RateKey, RateLimit};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use crate::lock;

/// At most this many keys are remembered per limiter.
pub const MAX_KEYS: usize = 65_536;

/// The request went over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until one request would be allowed again.
    pub retry_after: Duration,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// The request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Further requests allowed right now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// What a keyed limit is counted by for one request.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Ip(IpAddr),
    Subject(&'a str),
}

/// One route's limiter.
pub struct RateLimiter {
    /// The policy it enforces (compared on table swaps).
    pub config: RateLimit,
    interval: u64,
    tolerance: u64,
    epoch: Instant,
    route: AtomicU64,
    ips: Mutex<HashMap<IpAddr, u64>>,
    subjects: Mutex<HashMap<Box<str>, u64>>,
    /// [`RateLimiter::policy_value`], made once (it is on every answer of the route).
    policy_value: http::HeaderValue,
}

impl RateLimiter {
    /// A limiter for `config` (`per_second` 0 is treated as 1, `burst` 0 as 1).
    #[must_use]
    pub fn new(config: RateLimit) -> Self {
        let per_second = u64::from(config.per_second.max(1));
        let burst = u64::from(config.burst.max(1));
        let interval = 1_000_000_000 / per_second;
        let policy_value = http::HeaderValue::from_str(&policy_header(&config))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        Self {
            config,
            interval,
            tolerance: interval * (burst - 1),
            epoch: Instant::now(),
            route: AtomicU64::new(0),
            ips: Mutex::new(HashMap::new()),
            subjects: Mutex::new(HashMap::new()),
            policy_value,
        }
    }

    /// Nanoseconds since the limiter's epoch, offset so a zero arrival time means "full".
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX / 2)
            .saturating_add(self.tolerance + self.interval)
    }

    /// One GCRA step: from the stored arrival time `tat` at `now`, the new one or a rejection.
    fn step(&self, tat: u64, now: u64) -> Result<(u64, Allowed), Limited> {
        let tat = tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return Err(Limited {
                retry_after: Duration::from_nanos(wait),
                reset: Duration::from_nanos(ahead),
            });
        }
        let new_tat = tat + self.interval;
        Ok((
            new_tat,
            Allowed {
                remaining: (self.tolerance - ahead) / self.interval,
                reset: Duration::from_nanos(new_tat - now),
            },
        ))
    }

    /// Count one request under `key` (ignored for `route`-keyed limits).
    ///
    /// # Errors
    ///
    /// [`Limited`] when the bucket is empty; nothing is counted then.
    pub fn check(&self, key: Key<'_>) -> Result<Allowed, Limited> {
        let now = self.now();
        match (self.config.key, key) {
            (RateKey::Route, _) => {
                let mut current = self.route.load(Ordering::Acquire);
                loop {
                    let (next, allowed) = self.step(current, now)?;
                    match self.route.compare_exchange_weak(
                        current,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(allowed),
                        Err(seen) => current = seen,
                    }
                }
            }
            (_, Key::Ip(ip)) => {
                let mut map = lock(&self.ips);
                if let Some(tat) = map.get_mut(&ip) {
                    let (next, allowed) = self.step(*tat, now)?;
                    *tat = next;
                    return Ok(allowed);
                }
                let (next, allowed) = self.step(0, now)?;
                make_room(&mut map, now);
                map.insert(ip, next);
                Ok(allowed)
            }
            (_, Key::Subject(subject)) => {
                let mut map = lock(&self.subjects);
                if let Some(tat) = map.get_mut(subject) {
                    let (next, allowed) = self.step(*tat, now)?;
                    *tat = next;
                    return Ok(allowed);
                }
                let (next, allowed) = self.step(0, now)?;
                make_room(&mut map, now);
                map.insert(subject.into(), next);
                Ok(allowed)
            }
        }
    }

    /// Forget keys whose bucket is full again (they behave exactly like absent keys).
    pub fn evict_idle(&self) {
        let now = self.now();
        lock(&self.ips).retain(|_, tat| *tat > now);
        lock(&self.subjects).retain(|_, tat| *tat > now);
    }

    /// Keys remembered now (for tests and metrics).
    #[must_use]
    pub fn keys(&self) -> usize {
        lock(&self.ips).len() + lock(&self.subjects).len()
    }

    /// The `RateLimit-Policy` value, `"<key>";q=<per_second>;w=1`, made once per limiter
    /// (cheap to clone).
    #[must_use]
    pub fn policy_value(&self) -> http::HeaderValue {
        self.policy_value.clone()
    }

    /// `RateLimit` value for a rejection: `"<key>";r=0;t=<seconds until full>`.
    #[must_use]
    pub fn limited_header(&self, limited: &Limited) -> String {
        format!(
            "\"{}\";r=0;t={}",
            key_name(self.config.key),
            ceil_secs(limited.reset)
        )
    }

    /// The `RateLimit-Policy` value's bytes (the fast path writes them without a clone).
    #[must_use]
    pub fn policy_bytes(&self) -> &[u8] {
        self.policy_value.as_bytes()
    }

    /// Append the `RateLimit` value for an allowed request, `"<key>";r=<remaining>;t=<seconds
    /// until full>`, to `out`.
    pub fn write_allowed(&self, out: &mut Vec<u8>, allowed: &Allowed) {
        out.push(b'"');
        out.extend_from_slice(key_name(self.config.key).as_bytes());
        out.extend_from_slice(b"\";r=");
        out.extend_from_slice(itoa::Buffer::new().format(allowed.remaining).as_bytes());
        out.extend_from_slice(b";t=");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(ceil_secs(allowed.reset))
                .as_bytes(),
        );
    }

    /// The `RateLimit` value for an allowed request as a header value (see
    /// [`RateLimiter::write_allowed`]).
    #[must_use]
    pub fn allowed_value(&self, allowed: &Allowed) -> http::HeaderValue {
        let mut out = Vec::with_capacity(48);
        self.write_allowed(&mut out, allowed);
        http::HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

/// `"<key>";q=<per_second>;w=1`.
fn policy_header(config: &RateLimit) -> String {
    format!(
        "\"{}\";q={};w=1",
        key_name(config.key),
        config.per_second.max(1)
    )
}

/// Keep a per-key map under [`MAX_KEYS`] before inserting one more key.
fn make_room<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, now: u64) {
    if map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, tat| *tat > now);
    if map.len() >= MAX_KEYS {
        // Every key is busy (a flood of distinct keys): forget half of them. They get a fresh
        // bucket, which costs at most one burst each — bounded memory matters more.
        let mut drop_next = false;
        map.retain(|_, _| {
            drop_next = !drop_next;
            !drop_next
        });
    }
}

fn key_name(key: RateKey) -> &'static str {
    match key {
        RateKey::Route => "route",
        RateKey::Consumer => "consumer",
        RateKey::Ip => "ip",
    }
}

/// Whole seconds, rounded up, at least 1 (for `Retry-After`).
#[must_use]
pub fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32, key: RateKey) -> RateLimiter {
        RateLimiter::new(RateLimit {
            per_second,
            burst,
            key,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let l = limiter(10, 3, RateKey::Route);
        let k = Key::Ip(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(l.check(k).unwrap().remaining, 2);
        assert_eq!(l.check(k).unwrap().remaining, 1);
        assert_eq!(l.check(k).unwrap().remaining, 0);
        let limited = l.check(k).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(l.check(k).is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(l.check(k).is_ok());
        assert!(l.check(k).is_err());
        // After a long pause the whole burst is back, not more.
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..3 {
            assert!(l.check(k).is_ok());
        }
        assert!(l.check(k).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_separate_and_idle_keys_are_evicted() {
        let l = limiter(1, 1, RateKey::Ip);
        let a = Key::Ip(IpAddr::from([10, 0, 0, 1]));
        let b = Key::Ip(IpAddr::from([10, 0, 0, 2]));
        assert!(l.check(a).is_ok());
        assert!(l.check(a).is_err());
        assert!(l.check(b).is_ok());
        let c = limiter(1, 1, RateKey::Consumer);
        assert!(c.check(Key::Subject("alice")).is_ok());
        assert!(c.check(Key::Subject("alice")).is_err());
        assert!(c.check(Key::Subject("bob")).is_ok());
        assert_eq!(l.keys(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        l.evict_idle();
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn bounded_maps() {
        let mut m: HashMap<u32, u64> = (0..MAX_KEYS as u32).map(|k| (k, u64::MAX)).collect();
        make_room(&mut m, 0);
        assert!(m.len() <= MAX_KEYS / 2 + 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
    }
}
