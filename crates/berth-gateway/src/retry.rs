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
//!   which retry only broken exchanges) starts with the reserve.

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
