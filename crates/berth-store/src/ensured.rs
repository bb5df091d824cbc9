//! The revision a Services-mode runtime (Swarm) was last asked to run each service of an
//! application at (`app_plan::AppMemory::ensured`). Swarm rolls a failed update back to the
//! previous spec, labels included, and leaves its update state as it was; only this record
//! tells a rollback of a revision this server asked for from an old one. Kept here so a server
//! restart neither judges that rollback anew nor ensures the failed revision again.

use crate::{Store, StoreError};
use rusqlite::params;

impl Store {
    /// `app`'s `service` was ensured at `revision`.
    pub fn record_ensured(
        &self,
        app: &str,
        service: &str,
        revision: u64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO ensured_services(app, service, revision) VALUES (?1, ?2, ?3)
             ON CONFLICT(app, service) DO UPDATE SET revision = ?3",
            params![app, service, i64::try_from(revision).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Every service ensured: (app, service, revision).
    pub fn ensured(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT app, service, revision FROM ensured_services")?;
        let rows = stmt.query_map([], |r| {
            let revision: i64 = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, u64::try_from(revision).unwrap_or(0)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forget `app`'s `service` (removed), or all of `app`'s services with `None`.
    pub fn forget_ensured(&self, app: &str, service: Option<&str>) -> Result<(), StoreError> {
        match service {
            Some(s) => self.conn().execute(
                "DELETE FROM ensured_services WHERE app = ?1 AND service = ?2",
                params![app, s],
            )?,
            None => self
                .conn()
                .execute("DELETE FROM ensured_services WHERE app = ?1", params![app])?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn ensured_revisions_are_recorded_replaced_and_forgotten() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.ensured().unwrap().is_empty());
        s.record_ensured("shop", "web", 2).unwrap();
        s.record_ensured("shop", "db", 1).unwrap();
        s.record_ensured("blog", "web", 7).unwrap();
        s.record_ensured("shop", "web", 3).unwrap();
        let mut all = s.ensured().unwrap();
        all.sort();
        assert_eq!(
            all,
            vec![
                ("blog".into(), "web".into(), 7),
                ("shop".into(), "db".into(), 1),
                ("shop".into(), "web".into(), 3),
            ]
        );
        s.forget_ensured("shop", Some("db")).unwrap();
        s.forget_ensured("blog", None).unwrap();
        assert_eq!(s.ensured().unwrap(), vec![("shop".into(), "web".into(), 3)]);
    }
}
