//! Restart counts of replicas: how many times Berth started a replica again after it exited or
//! failed its probe, and its last exit code. Kept here so `berth ps` and the crash-loop rules
//! (a rollout fails when a new replica keeps exiting; `on-failure:N` stops after N) survive a
//! server restart. Rows are keyed by container ID; the control plane forgets a row when its
//! container is gone.

use crate::{Store, StoreError};
use rusqlite::params;

impl Store {
    /// Record that `container` has now been restarted `count` times, last exiting with
    /// `last_exit` (if it had exited).
    pub fn record_restart(
        &self,
        container: &str,
        count: u32,
        last_exit: Option<i64>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO restarts(container, count, last_exit) VALUES (?1, ?2, ?3)
             ON CONFLICT(container) DO UPDATE SET count = ?2, last_exit = ?3",
            params![container, count, last_exit],
        )?;
        Ok(())
    }

    /// Every recorded restart count: (container, count, last exit code).
    pub fn restarts(&self) -> Result<Vec<(String, u32, Option<i64>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT container, count, last_exit FROM restarts")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
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
    use crate::Store;

    #[test]
    fn restart_counts_are_recorded_updated_and_forgotten() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.restarts().unwrap().is_empty());
        s.record_restart("a", 1, Some(1)).unwrap();
        s.record_restart("b", 1, None).unwrap();
        s.record_restart("a", 2, Some(137)).unwrap();
        let mut all = s.restarts().unwrap();
        all.sort();
        assert_eq!(
            all,
            vec![("a".to_string(), 2, Some(137)), ("b".to_string(), 1, None)]
        );
        s.forget_restarts(&["a".to_string(), "zz".to_string()])
            .unwrap();
        assert_eq!(s.restarts().unwrap(), vec![("b".to_string(), 1, None)]);
    }
}
