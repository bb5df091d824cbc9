//! Restart counts of replicas: how many times Berth started a replica again after it exited or
//! failed its probe, its last exit code, and when it last did. Kept here so `berth ps` and the
//! crash-loop rules (a rollout fails when a new replica keeps exiting; `on-failure:N` stops
//! after N; the crash-loop backoff and `restart_policy.window` count from the last restart)
//! survive a server restart. Rows are keyed by container ID; the control plane forgets a row
//! when its container is gone.

use crate::{Store, StoreError};
use rusqlite::params;

/// One replica's restarts, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRecord {
    pub container: String,
    /// Failed restarts in a row.
    pub count: u32,
    /// Exit code before the last restart, if it had exited.
    pub last_exit: Option<i64>,
    /// When Berth last restarted it, Unix milliseconds (none in rows from before migration 14).
    pub last_start_ms: Option<i64>,
}

impl Store {
    /// Record `container`'s restarts: how many failed in a row, its last exit code, and when
    /// Berth last restarted it.
    pub fn record_restart(&self, r: &RestartRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO restarts(container, count, last_exit, last_start_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(container) DO UPDATE SET count = ?2, last_exit = ?3, last_start_ms = ?4",
            params![r.container, r.count, r.last_exit, r.last_start_ms],
        )?;
        Ok(())
    }

    /// Every recorded restart.
    pub fn restarts(&self) -> Result<Vec<RestartRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT container, count, last_exit, last_start_ms FROM restarts")?;
        let rows = stmt.query_map([], |r| {
            Ok(RestartRecord {
                container: r.get(0)?,
                count: r.get(1)?,
                last_exit: r.get(2)?,
                last_start_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forget the restart counts of `containers` (they are gone).
    pub fn forget_restarts(&self, containers: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for c in containers {
            tx.execute("DELETE FROM restarts WHERE container = ?1", params![c])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RestartRecord;
    use crate::Store;

    fn rec(container: &str, count: u32, last_exit: Option<i64>, at: Option<i64>) -> RestartRecord {
        RestartRecord {
            container: container.into(),
            count,
            last_exit,
            last_start_ms: at,
        }
    }

    #[test]
    fn restart_counts_are_recorded_updated_and_forgotten() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.restarts().unwrap().is_empty());
        s.record_restart(&rec("a", 1, Some(1), Some(1_000)))
            .unwrap();
        s.record_restart(&rec("b", 1, None, None)).unwrap();
        s.record_restart(&rec("a", 2, Some(137), Some(2_000)))
            .unwrap();
        let mut all = s.restarts().unwrap();
        all.sort_by(|x, y| x.container.cmp(&y.container));
        assert_eq!(
            all,
            vec![rec("a", 2, Some(137), Some(2_000)), rec("b", 1, None, None)]
        );
        s.forget_restarts(&["a".to_string(), "zz".to_string()])
            .unwrap();
        assert_eq!(s.restarts().unwrap(), vec![rec("b", 1, None, None)]);
    }

    #[test]
    fn a_row_from_before_migration_14_reads_without_a_restart_time() {
        let s = Store::open_in_memory().unwrap();
        s.conn()
            .execute(
                "INSERT INTO restarts(container, count, last_exit) VALUES ('old', 4, 1)",
                [],
            )
            .unwrap();
        assert_eq!(s.restarts().unwrap(), vec![rec("old", 4, Some(1), None)]);
    }
}
