//! [`wait_for`]: polling with a deadline, for state that converges asynchronously.
//!
//! Rule it keeps: a timeout is a test failure with a message saying what was awaited, never a
//! silent hang.

use std::time::{Duration, Instant};

/// Calls `f` every 50 ms until it returns `Some`, and returns that value. Panics with `what`
/// when `timeout` passes first.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
