//! Host ports as leases (docs/environments.md#ports-as-leases): every host port an application
//! publishes is one row, `fixed` when its Compose file names the port, else leased from its
//! environment's range. The primary key `(port, protocol)` is what keeps a port from ever being
//! held by two owners; [`Store::claim_ports`] decides an application's whole set in one
//! transaction, so two applies racing for the last free port cannot both win.

use crate::{now, Store, StoreError};
use rusqlite::{params, Row, Transaction};

/// One held host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLease {
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub team: String,
    pub env: String,
    /// The application's global name.
    pub app: String,
    pub service: String,
    /// The container port it forwards to.
    pub target: u16,
    /// Named by the Compose file (else leased from the range).
    pub fixed: bool,
    /// RFC 3339.
    pub since: String,
}

/// One host port an application's revision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortWant {
    pub service: String,
    pub target: u16,
    pub protocol: String,
    /// The host port it must have (named by the Compose file, or what runs already); `None`:
    /// lease one.
    pub port: Option<u16>,
    /// Recorded as named by the Compose file (else leased).
    pub fixed: bool,
}

/// Where leased ports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPool {
    /// An environment's own block.
    Block(u16, u16),
    /// The server's range, less every environment's block (`dev`, and environments made
    /// without a block).
    Shared(u16, u16),
}

/// Why a set of ports was not claimed (nothing written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRefusal {
    /// A fixed port another application holds.
    Held(PortLease),
    /// A fixed port something outside Berth holds (the probe could not bind it).
    Foreign { port: u16, protocol: String },
    /// No free port is left for `want`.
    NoFree { want: PortWant, pool: PortPool },
}

/// Is the host port free for Berth to bind (`port`, `protocol`)? Asked only of ports no lease
/// holds.
pub type PortProbe<'a> = &'a dyn Fn(u16, &str) -> bool;

const COLUMNS: &str = "port, protocol, team, env, app, service, target, fixed, since";

pub(crate) fn lease(r: &Row<'_>) -> rusqlite::Result<PortLease> {
    Ok(PortLease {
        port: r.get(0)?,
        protocol: r.get(1)?,
        team: r.get(2)?,
        env: r.get(3)?,
        app: r.get(4)?,
        service: r.get(5)?,
        target: r.get(6)?,
        fixed: r.get(7)?,
        since: r.get(8)?,
    })
}

fn held_by(tx: &Transaction<'_>, port: u16, protocol: &str) -> rusqlite::Result<Option<PortLease>> {
    use rusqlite::OptionalExtension;
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM port_leases WHERE port = ?1 AND protocol = ?2"),
        params![port, protocol],
        lease,
    )
    .optional()
}

/// Every environment's block.
fn blocks(tx: &Transaction<'_>) -> rusqlite::Result<Vec<(u16, u16)>> {
    let mut stmt = tx.prepare("SELECT ports_lo, ports_hi FROM envs WHERE ports_lo IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

impl Store {
    /// Make `app`'s leases exactly what `wants` needs, in order, and return the host port of each
    /// want. A fixed want keeps its port (refused when another application holds it, or when
    /// `probe` says something else does and `app` did not hold it already); a leased want keeps
    /// the port `app` already holds for the same service, container port and protocol, else
    /// gets the lowest free port of `pool` that no lease holds and `probe` finds free. Leases of
    /// `app` that no want needs are freed. One transaction: nothing is written when refused.
    #[allow(clippy::too_many_arguments)]
    pub fn claim_ports(
        &self,
        team: &str,
        env: &str,
        app: &str,
        wants: &[PortWant],
        pool: PortPool,
        probe: PortProbe<'_>,
    ) -> Result<Result<Vec<u16>, PortRefusal>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut mine: Vec<PortLease> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM port_leases WHERE app = ?1 ORDER BY port"
            ))?;
            let rows = stmt.query_map(params![app], lease)?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out: Vec<Option<u16>> = vec![None; wants.len()];
        let mut taken: Vec<(u16, String)> = Vec::new();
        // Fixed ports first, so a leased want never takes a port a fixed one of the same
        // application names.
        for (i, w) in wants.iter().enumerate() {
            let Some(port) = w.port else { continue };
            if let Some(holder) = held_by(&tx, port, &w.protocol)? {
                if holder.app != app {
                    return Ok(Err(PortRefusal::Held(holder)));
                }
            } else if !probe(port, &w.protocol) {
                return Ok(Err(PortRefusal::Foreign {
                    port,
                    protocol: w.protocol.clone(),
                }));
            }
            taken.push((port, w.protocol.clone()));
            out[i] = Some(port);
        }
        // Leased ports this application already holds for the same service and container port.
        for (i, w) in wants.iter().enumerate() {
            if w.port.is_some() {
                continue;
            }
            if let Some(pos) = mine.iter().position(|l| {
                l.service == w.service
                    && l.target == w.target
                    && l.protocol == w.protocol
                    && !taken.contains(&(l.port, l.protocol.clone()))
            }) {
                let l = mine.remove(pos);
                taken.push((l.port, l.protocol.clone()));
                out[i] = Some(l.port);
            }
        }
        // New leases from the pool.
        let (lo, hi, excluded) = match pool {
            PortPool::Block(lo, hi) => (lo, hi, Vec::new()),
            PortPool::Shared(lo, hi) => (lo, hi, blocks(&tx)?),
        };
        for (i, w) in wants.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let mut found = None;
            for port in lo..=hi {
                if excluded.iter().any(|(a, b)| (*a..=*b).contains(&port))
                    || taken.contains(&(port, w.protocol.clone()))
                {
                    continue;
                }
                let held = held_by(&tx, port, &w.protocol)?;
                if held.as_ref().is_some_and(|h| h.app != app) {
                    continue;
                }
                if held.is_none() && !probe(port, &w.protocol) {
                    continue;
                }
                found = Some(port);
                break;
            }
            let Some(port) = found else {
                return Ok(Err(PortRefusal::NoFree {
                    want: w.clone(),
                    pool,
                }));
            };
            taken.push((port, w.protocol.clone()));
            out[i] = Some(port);
        }
        // The application's set is now exactly `out`: a lease kept keeps its `since`.
        let since_of = |port: u16, protocol: &str| -> rusqlite::Result<Option<String>> {
            use rusqlite::OptionalExtension;
            tx.query_row(
                "SELECT since FROM port_leases WHERE port = ?1 AND protocol = ?2 AND app = ?3",
                params![port, protocol, app],
                |r| r.get(0),
            )
            .optional()
        };
        let mut rows = Vec::new();
        for (w, port) in wants.iter().zip(&out) {
            let port = port.unwrap_or_default();
            rows.push((w, port, since_of(port, &w.protocol)?.unwrap_or_else(now)));
        }
        tx.execute("DELETE FROM port_leases WHERE app = ?1", params![app])?;
        for (w, port, since) in &rows {
            tx.execute(
                &format!(
                    "INSERT INTO port_leases({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![port, w.protocol, team, env, app, w.service, w.target, w.fixed, since],
            )?;
        }
        tx.commit()?;
        Ok(Ok(out.into_iter().map(Option::unwrap_or_default).collect()))
    }

    /// Held host ports (of one team, and of one environment), by port.
    pub fn port_leases(
        &self,
        team: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<PortLease>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM port_leases
             WHERE (?1 IS NULL OR team = ?1) AND (?2 IS NULL OR env = ?2)
             ORDER BY port, protocol"
        ))?;
        let rows = stmt.query_map(params![team, env], lease)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The host ports one application (by global name) holds, by port.
    pub fn port_leases_of(&self, app: &str) -> Result<Vec<PortLease>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM port_leases WHERE app = ?1 ORDER BY port, protocol"
        ))?;
        let rows = stmt.query_map(params![app], lease)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Free the leases of applications that no longer exist. Returns how many.
    pub fn free_orphan_leases(&self) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM port_leases WHERE app NOT IN (SELECT name FROM apps)",
            [],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::{PortPool, PortRefusal, PortWant};
    use crate::Store;

    fn want(service: &str, target: u16, port: Option<u16>) -> PortWant {
        PortWant {
            service: service.into(),
            target,
            protocol: "tcp".into(),
            port,
            fixed: port.is_some(),
        }
    }

    const FREE: &dyn Fn(u16, &str) -> bool = &|_, _| true;

    #[test]
    fn leased_ports_are_kept_across_claims_and_freed_when_no_longer_wanted() {
        let s = Store::open_in_memory().unwrap();
        let pool = PortPool::Block(21000, 21009);
        let got = s
            .claim_ports(
                "t",
                "e",
                "web@e",
                &[want("web", 80, None), want("db", 5432, Some(5432))],
                pool,
                FREE,
            )
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![21000, 5432]);
        // The same service and container port keeps its port; a new one gets the next.
        let got = s
            .claim_ports(
                "t",
                "e",
                "web@e",
                &[want("api", 80, None), want("web", 80, None)],
                pool,
                FREE,
            )
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![21001, 21000]);
        let all = s.port_leases(Some("t"), Some("e")).unwrap();
        assert_eq!(
            all.iter().map(|l| l.port).collect::<Vec<_>>(),
            vec![21000, 21001]
        );
        assert!(all.iter().all(|l| !l.fixed && l.app == "web@e"));
    }

    #[test]
    fn a_fixed_port_of_another_app_or_of_a_foreign_process_is_refused_and_nothing_changes() {
        let s = Store::open_in_memory().unwrap();
        let pool = PortPool::Shared(20000, 20099);
        s.claim_ports("t", "dev", "a", &[want("web", 80, Some(8080))], pool, FREE)
            .unwrap()
            .unwrap();
        let r = s
            .claim_ports(
                "t",
                "dev",
                "b",
                &[want("x", 80, None), want("web", 80, Some(8080))],
                pool,
                FREE,
            )
            .unwrap();
        assert!(matches!(r, Err(PortRefusal::Held(ref l)) if l.app == "a" && l.port == 8080));
        assert!(s
            .port_leases(None, None)
            .unwrap()
            .iter()
            .all(|l| l.app == "a"));
        let busy: &dyn Fn(u16, &str) -> bool = &|p, _| p != 9090;
        let r = s
            .claim_ports("t", "dev", "b", &[want("web", 80, Some(9090))], pool, busy)
            .unwrap();
        assert_eq!(
            r,
            Err(PortRefusal::Foreign {
                port: 9090,
                protocol: "tcp".into()
            })
        );
        // Its own port is not probed again (the forwarder holds it).
        let got = s
            .claim_ports(
                "t",
                "dev",
                "a",
                &[want("web", 80, Some(8080))],
                pool,
                &|_, _| false,
            )
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![8080]);
    }

    #[test]
    fn the_last_free_port_goes_to_one_owner_and_busy_ports_are_skipped() {
        let s = Store::open_in_memory().unwrap();
        let pool = PortPool::Block(21000, 21001);
        let busy: &dyn Fn(u16, &str) -> bool = &|p, _| p != 21000;
        assert_eq!(
            s.claim_ports("t", "e", "a@e", &[want("w", 80, None)], pool, busy)
                .unwrap()
                .unwrap(),
            vec![21001]
        );
        let r = s
            .claim_ports("t", "e", "b@e", &[want("w", 80, None)], pool, busy)
            .unwrap();
        assert!(matches!(r, Err(PortRefusal::NoFree { .. })));
        // The shared pool skips environments' blocks.
        s.conn()
            .execute_batch(
                "INSERT INTO teams(name, created_at) VALUES ('t', 'now');
                 INSERT INTO envs(team, name, created_by, created_at, ports_lo, ports_hi)
                 VALUES ('t', 'e', 'x', 'now', 20000, 20001)",
            )
            .unwrap();
        let got = s
            .claim_ports(
                "t",
                "dev",
                "c",
                &[want("w", 80, None)],
                PortPool::Shared(20000, 20099),
                FREE,
            )
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![20002]);
        // Orphans go.
        assert_eq!(s.free_orphan_leases().unwrap(), 2);
    }
}
