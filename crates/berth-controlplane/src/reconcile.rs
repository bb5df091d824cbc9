//! The reconcile runtime: wakes a reconcile function per key (an application name), never runs
//! two passes for the same key at once, coalesces wake-ups that arrive during a pass into one
//! more pass, and requeues a key after the delay the pass asked for (kube-runtime's
//! `Controller`, reduced to what Berth needs).
//!
//! Wake-ups are hints: a pass always re-reads desired and observed state (level-triggered), so
//! a lost or duplicated wake-up costs at most one resync period, never correctness.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a pass asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run again after this delay (sooner if woken).
    Requeue(Duration),
    /// Nothing pending; the next wake-up or resync runs it again.
    Await,
}

/// Handle to wake keys.
#[derive(Clone)]
pub struct Runtime {
    tx: mpsc::UnboundedSender<String>,
}

impl Runtime {
    /// Ask for a pass of `key` as soon as possible.
    pub fn wake(&self, key: &str) {
        let _ = self.tx.send(key.to_string());
    }

    /// Start the runtime; it stops when `shutdown` is cancelled (passes in progress finish).
    pub fn spawn<F, Fut>(reconcile: F, shutdown: CancellationToken) -> Runtime
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Action> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Action)>();
        let reconcile = Arc::new(reconcile);
        tokio::spawn(async move {
            #[derive(Default)]
            struct KeyState {
                running: bool,
                dirty: bool,
                requeue_at: Option<Instant>,
            }
            let mut keys: HashMap<String, KeyState> = HashMap::new();
            let run = |key: String, st: &mut KeyState| {
                st.running = true;
                st.dirty = false;
                st.requeue_at = None;
                let (reconcile, done_tx) = (reconcile.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let action = reconcile(key.clone()).await;
                    let _ = done_tx.send((key, action));
                });
            };
            loop {
                let next = keys.values().filter_map(|s| s.requeue_at).min();
                let sleep = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    Some(key) = rx.recv() => {
                        let st = keys.entry(key.clone()).or_default();
                        if st.running { st.dirty = true } else { run(key, st) }
                    }
                    Some((key, action)) = done_rx.recv() => {
                        let st = keys.entry(key.clone()).or_default();
                        st.running = false;
                        if st.dirty {
                            run(key, st);
                        } else if let Action::Requeue(d) = action {
                            st.requeue_at = Some(Instant::now() + d);
                        } else {
                            keys.remove(&key);
                        }
                    }
                    () = sleep => {
                        let now = Instant::now();
                        let due: Vec<String> = keys
                            .iter()
                            .filter(|(_, s)| !s.running && s.requeue_at.is_some_and(|t| t <= now))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for key in due {
                            if let Some(st) = keys.get_mut(&key) {
                                run(key, st);
                            }
                        }
                    }
                }
            }
        });
        Runtime { tx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn coalesces_and_never_overlaps() {
        let passes = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (p, r) = (passes.clone(), running.clone());
        let rt = Runtime::spawn(
            move |_key| {
                let (p, r) = (p.clone(), r.clone());
                async move {
                    assert_eq!(
                        r.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two passes of one key at once"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    p.fetch_add(1, Ordering::SeqCst);
                    r.fetch_sub(1, Ordering::SeqCst);
                    Action::Await
                }
            },
            CancellationToken::new(),
        );
        for _ in 0..10 {
            rt.wake("a");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The first wake runs at once; the nine during it collapse into one more pass.
        assert_eq!(passes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn requeues_after_the_delay() {
        let passes = Arc::new(AtomicUsize::new(0));
        let p = passes.clone();
        let rt = Runtime::spawn(
            move |_key| {
                let p = p.clone();
                async move {
                    let n = p.fetch_add(1, Ordering::SeqCst);
                    if n < 2 {
                        Action::Requeue(Duration::from_secs(5))
                    } else {
                        Action::Await
                    }
                }
            },
            CancellationToken::new(),
        );
        rt.wake("a");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 3);
    }
}
