//! Environments (docs/environments.md): one row per environment a team created. The implicit
//! `dev` has none. Applications are not linked here: an application is in environment E when
//! its global name says so (`berth_core::team::app_global`).

use crate::{now, Store, StoreError};
use rusqlite::{params, OptionalExtension, Row};

/// One environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRecord {
    pub team: String,
    pub name: String,
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// Unix milliseconds; None: never expires.
    pub expires_at: Option<i64>,
    /// The host port block (`--ports LO-HI`), if one was given.
    pub ports: Option<(u16, u16)>,
    pub protected: bool,
    /// Recycling keeps the named volumes of its applications.
    pub keep_volumes: bool,
    /// Quota: thousandths of a CPU (`--cpus`), if one was set.
    pub cpus_milli: Option<i64>,
    /// Quota: bytes of memory (`--memory`), if one was set.
    pub memory_bytes: Option<i64>,
}

/// What creating an environment records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCreate {
    pub team: String,
    pub name: String,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub ports: Option<(u16, u16)>,
    /// Without `ports`: take the first free block of [`BLOCK`] ports of this range (the
    /// server's `--port-range`), one that no environment and no lease holds a port of.
    pub block_from: Option<(u16, u16)>,
    pub protected: bool,
    pub keep_volumes: bool,
    pub cpus_milli: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// The size of the block an environment made without `--ports` gets.
pub const BLOCK: u16 = 100;

const COLUMNS: &str = "team, name, created_by, created_at, expires_at, ports_lo, ports_hi, \
     protected, keep_volumes, cpus_milli, memory_bytes";

fn record(r: &Row<'_>) -> rusqlite::Result<EnvRecord> {
    let lo: Option<u16> = r.get(5)?;
    let hi: Option<u16> = r.get(6)?;
    Ok(EnvRecord {
        team: r.get(0)?,
        name: r.get(1)?,
        created_by: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        ports: lo.zip(hi),
        protected: r.get(7)?,
        keep_volumes: r.get(8)?,
        cpus_milli: r.get(9)?,
        memory_bytes: r.get(10)?,
    })
}

/// Why an environment was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvRefusal {
    /// One of that name exists in the team.
    Exists,
    /// Its port block overlaps this environment's (team, name, lo, hi).
    PortsOverlap(EnvRecord),
    /// No block of the server's range is free.
    NoFreeBlock,
    /// A port of its block is leased to an application of another environment.
    PortHeld(crate::PortLease),
}

/// The first block of [`BLOCK`] ports (aligned to the range's start; smaller when the range
/// is) inside `lo..=hi` that overlaps no environment's block and holds no lease.
fn free_block(
    tx: &rusqlite::Transaction<'_>,
    lo: u16,
    hi: u16,
) -> rusqlite::Result<Option<(u16, u16)>> {
    let size = BLOCK.min(hi.saturating_sub(lo).saturating_add(1));
    let mut start = u32::from(lo);
    while start + u32::from(size) - 1 <= u32::from(hi) {
        let (a, b) = (start, start + u32::from(size) - 1);
        let used = tx
            .query_row(
                "SELECT 1 FROM envs WHERE ports_lo <= ?2 AND ports_hi >= ?1
                 UNION ALL SELECT 1 FROM port_leases WHERE port BETWEEN ?1 AND ?2 LIMIT 1",
                params![a, b],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !used {
            return Ok(Some((
                u16::try_from(a).unwrap_or(u16::MAX),
                u16::try_from(b).unwrap_or(u16::MAX),
            )));
        }
        start += u32::from(size);
    }
    Ok(None)
}

impl Store {
    /// Create an environment. Refused (nothing written) when the name is taken in its team or
    /// its port block overlaps another environment's, of any team; `TeamNotFound` when its team
    /// is gone. One transaction, so two creates cannot both take a block.
    pub fn create_env(&self, e: &EnvCreate) -> Result<Result<EnvRecord, EnvRefusal>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let team: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM teams WHERE name = ?1",
                params![e.team],
                |r| r.get(0),
            )
            .optional()?;
        if team.is_none() {
            return Err(StoreError::TeamNotFound(e.team.clone()));
        }
        let exists = tx
            .query_row(
                "SELECT 1 FROM envs WHERE team = ?1 AND name = ?2",
                params![e.team, e.name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Ok(Err(EnvRefusal::Exists));
        }
        let mut ports = e.ports;
        if let (None, Some((lo, hi))) = (ports, e.block_from) {
            match free_block(&tx, lo, hi)? {
                Some(b) => ports = Some(b),
                None => return Ok(Err(EnvRefusal::NoFreeBlock)),
            }
        }
        if let Some((lo, hi)) = ports {
            let other = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM envs WHERE ports_lo <= ?2 AND ports_hi >= ?1 LIMIT 1"
                    ),
                    params![lo, hi],
                    record,
                )
                .optional()?;
            if let Some(o) = other {
                return Ok(Err(EnvRefusal::PortsOverlap(o)));
            }
            let held = tx
                .query_row(
                    "SELECT port, protocol, team, env, app, service, target, fixed, since
                     FROM port_leases WHERE port BETWEEN ?1 AND ?2 ORDER BY port LIMIT 1",
                    params![lo, hi],
                    crate::ports::lease,
                )
                .optional()?;
            if let Some(l) = held {
                return Ok(Err(EnvRefusal::PortHeld(l)));
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO envs({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                e.team,
                e.name,
                e.created_by,
                now(),
                e.expires_at,
                ports.map(|p| p.0),
                ports.map(|p| p.1),
                e.protected,
                e.keep_volumes,
                e.cpus_milli,
                e.memory_bytes
            ],
        )?;
        let rec = tx.query_row(
            &format!("SELECT {COLUMNS} FROM envs WHERE team = ?1 AND name = ?2"),
            params![e.team, e.name],
            record,
        )?;
        tx.commit()?;
        Ok(Ok(rec))
    }

    /// One environment of a team.
    pub fn env(&self, team: &str, name: &str) -> Result<Option<EnvRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM envs WHERE team = ?1 AND name = ?2"),
                params![team, name],
                record,
            )
            .optional()?)
    }

    /// Every environment (of `team`, or of every team), by team and name.
    pub fn envs(&self, team: Option<&str>) -> Result<Vec<EnvRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM envs WHERE ?1 IS NULL OR team = ?1 ORDER BY team, name"
        ))?;
        let rows = stmt.query_map(params![team], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Set an environment's expiry. False if it does not exist.
    pub fn set_env_expiry(
        &self,
        team: &str,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE envs SET expires_at = ?3 WHERE team = ?1 AND name = ?2",
            params![team, name, expires_at],
        )?;
        Ok(n == 1)
    }

    /// Remove an environment's row. False if it did not exist.
    pub fn delete_env(&self, team: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM envs WHERE team = ?1 AND name = ?2",
            params![team, name],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::{EnvCreate, EnvRefusal};
    use crate::Store;

    fn env(team: &str, name: &str, ports: Option<(u16, u16)>) -> EnvCreate {
        EnvCreate {
            team: team.into(),
            name: name.into(),
            created_by: "admin".into(),
            expires_at: Some(1000),
            ports,
            block_from: None,
            protected: true,
            keep_volumes: false,
            cpus_milli: None,
            memory_bytes: None,
        }
    }

    #[test]
    fn an_environment_is_created_once_its_ports_are_its_own_and_it_is_removed() {
        let s = Store::open_in_memory().unwrap();
        let e = s
            .create_env(&env("default", "staging", Some((21000, 21099))))
            .unwrap()
            .unwrap();
        assert_eq!(e.ports, Some((21000, 21099)));
        assert!(e.protected && !e.keep_volumes);
        assert_eq!(
            s.create_env(&env("default", "staging", None)).unwrap(),
            Err(EnvRefusal::Exists)
        );
        assert!(matches!(
            s.create_env(&env("default", "qa", Some((21099, 21200)))).unwrap(),
            Err(EnvRefusal::PortsOverlap(o)) if o.name == "staging"
        ));
        assert!(s
            .create_env(&env("nope", "qa", None))
            .is_err_and(|e| matches!(e, crate::StoreError::TeamNotFound(_))));
        assert!(s.set_env_expiry("default", "staging", None).unwrap());
        assert_eq!(
            s.env("default", "staging").unwrap().unwrap().expires_at,
            None
        );
        assert_eq!(s.envs(Some("default")).unwrap().len(), 1);
        assert!(s.delete_env("default", "staging").unwrap());
        assert!(!s.delete_env("default", "staging").unwrap());
        assert!(s.envs(None).unwrap().is_empty());
    }
}
