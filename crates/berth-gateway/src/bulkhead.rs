//! Bulkhead: at most `limit` requests in flight to a service, `queue` more waiting.
//!
//! Rules this module keeps:
//! * One [`Bulkhead`] per (app, service), shared by every route of the service.
//! * A permit is held until the response body has been relayed (the service is busy until then).
//! * Beyond `limit + queue` the answer is 503 `over_capacity` at once; a queued request that
//!   gets no permit within `queue_timeout_ms` is answered 503 too. The queue is a counter, not a
//!   list: waiting is `tokio::sync::Semaphore`'s fair queue.

use berth_core::policy;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no permit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkheadError {
    /// `limit` in flight and `queue` waiting already.
    Full,
    /// Waited `queue_timeout_ms` without a permit.
    QueueTimeout,
}

/// One service's concurrency limit.
pub struct Bulkhead {
    /// The policy it enforces (compared on table swaps).
    pub config: policy::Bulkhead,
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
}

/// Decrements the waiting count when the wait ends, however it ends.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    /// A bulkhead for `config` (`limit` 0 is treated as 1).
    #[must_use]
    pub fn new(config: policy::Bulkhead) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(config.limit.max(1) as usize)),
            config,
            waiting: AtomicU32::new(0),
        }
    }

    /// A permit to call the service, held for as long as the request runs.
    ///
    /// # Errors
    ///
    /// [`BulkheadError`] when the bulkhead and its queue are full or the wait timed out.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, BulkheadError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.config.queue).then_some(w + 1)
            });
        if queued.is_err() {
            return Err(BulkheadError::Full);
        }
        let _waiting = Waiting(&self.waiting);
        let wait = Duration::from_millis(self.config.queue_timeout_ms);
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as full if it ever were.
            Ok(Err(_)) => Err(BulkheadError::Full),
            Err(_) => Err(BulkheadError::QueueTimeout),
        }
    }

    /// Requests holding a permit now.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.config.limit.max(1) as usize - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limit_queue_and_timeout() {
        let b = Arc::new(Bulkhead::new(policy::Bulkhead {
            limit: 1,
            queue: 1,
            queue_timeout_ms: 100,
        }));
        let first = b.acquire().await.unwrap();
        let queued = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(b.acquire().await.unwrap_err(), BulkheadError::Full);
        // The queued one times out...
        assert_eq!(
            queued.await.unwrap().unwrap_err(),
            BulkheadError::QueueTimeout
        );
        // ... while a queued one gets the permit once it is released.
        let queued = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(queued.await.unwrap().is_ok());
        assert_eq!(b.in_use(), 0);
    }
}
