//! Retries of requests that may have reached the service, within a budget.
//!
//! Rules this module keeps:
//! * Only idempotent methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) without a
//!   request body are retried after a failure that may have reached the service (a 502/503/504
//!   answer, a broken exchange, a per-try timeout): the body is never buffered, so a request
//!   with one cannot be sent twice. (Connect failures, where nothing was sent, are retried on
//!   another replica for every method; that is `proxy`'s business and costs no budget.)
//! * The budget is a token bucket refilled by requests: each request deposits
//!   `budget_percent` / 100 of a retry, each retry withdraws one, and at most [`MAX_SAVED`]
//!   retries can be saved up. So over any stretch of time retries add at most `budget_percent` %
//!   (plus the small saved reserve) to the service's load and cannot multiply an outage.
//!   The bucket of a `retries` policy starts empty; the default budget (routes without one,
//!   which retry only broken exchanges and per-try timeouts) starts with the reserve.
//! * **A broken exchange is rescued once, outside the budget.** When the exchange of an
//!   idempotent bodiless request broke before any response byte arrived ([`broken_exchange`]:
//!   the connection was reset or closed under it, as when a replica is killed), `proxy` retries
//!   it once on another replica without touching the budget, on every route (with or without
//!   a `retries` policy; not when the policy says `attempts: 0`, and not when the route has a
//!   single replica). Why this is not left to the budget: a replica dying under load breaks
//!   every exchange it had in flight at the same instant — often more than the budget holds,
//!   and a `retries` policy's bucket may be empty or drained by the service's own 5xx answers —
//!   while the promise is that killing one of two replicas fails no idempotent request.
//!   Why it still cannot multiply load: it is at most one extra try per client request (never a
//!   chain; the rescue is not counted in `attempts` and later retries are budgeted as usual), it
//!   only follows a failure in which the replica produced no answer at all (a dead or dying
//!   process, not a slow or overloaded one answering 503 or timing out — those stay budgeted),
//!   and the failing replica is ejected by passive health after a few such failures in a row.
//!   So its amplification is bounded by 2× the traffic that hit a broken replica, and the
//!   budget keeps bounding everything else (5xx answers and per-try timeouts) to
//!   `budget_percent` % plus the reserve.

use berth_core::policy::Retries;
use http::Method;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many retries can be saved up in a budget.
pub const MAX_SAVED: u64 = 10;

/// One retry in budget units.
const RETRY: u64 = 100;

/// One service's retry budget.
pub struct RetryBudget {
    /// The policy it enforces (compared on table swaps).
    pub config: Retries,
    balance: AtomicU64,
}

impl RetryBudget {
    /// An empty budget for `config`.
    #[must_use]
    pub fn new(config: Retries) -> Self {
        Self {
            config,
            balance: AtomicU64::new(0),
        }
    }

    /// A budget that starts with [`MAX_SAVED`] retries saved (the default budget of routes
    /// without a `retries` policy: a replica dying under light traffic still fails nothing).
    #[must_use]
    pub fn with_reserve(config: Retries) -> Self {
        Self {
            config,
            balance: AtomicU64::new(MAX_SAVED * RETRY),
        }
    }

    /// A request arrived: add its share of a retry.
    pub fn deposit(&self) {
        let add = u64::from(self.config.budget_percent);
        let cap = MAX_SAVED * RETRY;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b < cap).then(|| (b + add).min(cap))
            });
    }

    /// Take one retry from the budget, if there is one.
    #[must_use]
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                b.checked_sub(RETRY)
            })
            .is_ok()
    }
}

/// May a request with this method be sent twice?
#[must_use]
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// [`idempotent`] for a method as text (the fast path's parsed head).
#[must_use]
pub fn idempotent_str(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Did this exchange break under the request before any answer, i.e. the connection was reset
/// or closed by the replica (not a malformed answer, not a request-side error)? Such a request
/// gets one rescue on another replica outside the budget (see the module docs).
#[must_use]
pub fn broken_exchange(e: &hyper::Error) -> bool {
    !(e.is_parse() || e.is_parse_status() || e.is_user() || e.is_timeout())
}

/// Is this upstream status a failure worth a retry (and a breaker failure)?
#[must_use]
pub fn failure_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_share_of_requests() {
        let b = RetryBudget::new(Retries {
            attempts: 3,
            budget_percent: 20,
        });
        assert!(!b.withdraw(), "starts empty");
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw());
        assert!(b.withdraw());
        assert!(!b.withdraw(), "10 requests at 20% buy 2 retries");
        for _ in 0..1000 {
            b.deposit();
        }
        let mut n = 0;
        while b.withdraw() {
            n += 1;
        }
        assert_eq!(n, MAX_SAVED);
        assert!(idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST));
    }
}
