//! Subnets of Berth's network pool handed to application networks. The subnet is the key, so
//! one subnet can never be recorded twice, and the rows outlive a restart: a restarted server
//! does not hand out a subnet a network of its own still uses. The control plane records a
//! subnet before it creates the network (desired state before the Docker call), and frees it
//! when the network is removed or found gone.

use crate::{now, Store, StoreError};
use rusqlite::params;

/// One recorded subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRecord {
    /// The subnet, in CIDR notation (`10.200.3.0/24`).
    pub subnet: String,
    /// The application whose network holds it.
    pub app: String,
    /// The Compose key of that network.
    pub network: String,
    /// The Docker name of that network.
    pub name: String,
}

impl Store {
    /// Record `r`. Returns `false`, recording nothing, when its subnet is already recorded.
    pub fn record_subnet(&self, r: &SubnetRecord) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO network_subnets(subnet, app, network, name, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(subnet) DO NOTHING",
            params![r.subnet, r.app, r.network, r.name, now()],
        )?;
        Ok(n == 1)
    }

    /// Every recorded subnet.
    pub fn subnets(&self) -> Result<Vec<SubnetRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT subnet, app, network, name FROM network_subnets ORDER BY subnet")?;
        let rows = stmt.query_map([], |r| {
            Ok(SubnetRecord {
                subnet: r.get(0)?,
                app: r.get(1)?,
                network: r.get(2)?,
                name: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Free `subnet` (its network is gone, or was never made).
    pub fn free_subnet(&self, subnet: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM network_subnets WHERE subnet = ?1",
            params![subnet],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SubnetRecord;
    use crate::Store;

    fn rec(subnet: &str, app: &str) -> SubnetRecord {
        SubnetRecord {
            subnet: subnet.into(),
            app: app.into(),
            network: "default".into(),
            name: format!("berth_x_{app}_default"),
        }
    }

    #[test]
    fn a_subnet_is_recorded_once_survives_a_reopen_and_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert!(s.record_subnet(&rec("10.200.0.0/24", "a")).unwrap());
            assert!(!s.record_subnet(&rec("10.200.0.0/24", "b")).unwrap());
            assert!(s.record_subnet(&rec("10.200.1.0/24", "b")).unwrap());
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.subnets().unwrap(),
            vec![rec("10.200.0.0/24", "a"), rec("10.200.1.0/24", "b")]
        );
        assert!(!s.record_subnet(&rec("10.200.0.0/24", "c")).unwrap());
        s.free_subnet("10.200.0.0/24").unwrap();
        assert!(s.record_subnet(&rec("10.200.0.0/24", "c")).unwrap());
    }
}
