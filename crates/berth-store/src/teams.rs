//! Teams (docs/teams.md): a name, its members each with a role, and the admission grants the
//! administrator gave it. Roles and grant keys are stored as their names and parsed at this edge.

use crate::{Store, StoreError};
use berth_core::admission::AdmissionKey;
use berth_core::team::Role;
use rusqlite::{params, OptionalExtension};

/// What [`Store::delete_empty_team`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamDeletion {
    /// The team is gone, with its members and grants.
    Deleted,
    /// No such team.
    NotFound,
    /// It still holds these; nothing was removed.
    Holds(TeamHolds),
}

/// What a team still holds, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamHolds {
    pub applications: u64,
    pub services: u64,
    pub issuers: u64,
}

/// Inside an insert's transaction: the team of the global name `global` exists (team
/// `default` always does), else [`StoreError::TeamNotFound`]. Pairs with
/// [`Store::delete_empty_team`], so nothing is made in a team being removed.
pub(crate) fn require_team_of(
    tx: &rusqlite::Transaction<'_>,
    global: &str,
) -> Result<(), StoreError> {
    let team = berth_core::team::team_of(global);
    if team == berth_core::team::DEFAULT_TEAM {
        return Ok(());
    }
    let exists = tx
        .query_row("SELECT 1 FROM teams WHERE name = ?1", params![team], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::TeamNotFound(team.to_string()))
    }
}

/// One team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    pub name: String,
    pub created_at: String,
    pub members: u64,
}

/// One membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub team: String,
    pub user: String,
    pub role: Role,
    pub added_at: String,
}

/// One admission grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub team: String,
    pub key: AdmissionKey,
    pub granted_by: String,
    pub created_at: String,
}

fn decode<T: std::str::FromStr<Err = String>>(col: usize, text: &str) -> rusqlite::Result<T> {
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    })
}

fn row_to_member(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberRecord> {
    let role: String = r.get(2)?;
    Ok(MemberRecord {
        team: r.get(0)?,
        user: r.get(1)?,
        role: decode(2, &role)?,
        added_at: r.get(3)?,
    })
}

fn row_to_grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRecord> {
    let key: String = r.get(1)?;
    Ok(GrantRecord {
        team: r.get(0)?,
        key: decode(1, &key)?,
        granted_by: r.get(2)?,
        created_at: r.get(3)?,
    })
}

const TEAM_SELECT: &str = "SELECT t.name, t.created_at,
        (SELECT COUNT(*) FROM team_members m WHERE m.team = t.name) FROM teams t";

fn row_to_team(r: &rusqlite::Row<'_>) -> rusqlite::Result<TeamRecord> {
    Ok(TeamRecord {
        name: r.get(0)?,
        created_at: r.get(1)?,
        members: r.get(2)?,
    })
}

impl Store {
    /// Add a team; false if the name is taken.
    pub fn create_team(&self, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO teams(name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, crate::now()],
        )?;
        Ok(n > 0)
    }

    /// One team.
    pub fn get_team(&self, name: &str) -> Result<Option<TeamRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("{TEAM_SELECT} WHERE t.name = ?1"),
                params![name],
                row_to_team,
            )
            .optional()?)
    }

    /// Every team, by name.
    pub fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{TEAM_SELECT} ORDER BY t.name"))?;
        let rows = stmt.query_map([], row_to_team)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remove a team with its members and grants; false if it did not exist. The caller checks
    /// that it holds no objects ([`Store::delete_empty_team`] checks and removes at once).
    pub fn delete_team(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM teams WHERE name = ?1", params![name])?;
        Ok(n > 0)
    }

    /// Remove a team with its members and grants if it holds no applications, services or
    /// issuers, in one transaction: an object made meanwhile is either counted here or refused
    /// at its own insert ([`require_team_of`], inside the insert's transaction), never left in
    /// a removed team.
    pub fn delete_empty_team(&self, name: &str) -> Result<TeamDeletion, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row("SELECT 1 FROM teams WHERE name = ?1", params![name], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if !exists {
            return Ok(TeamDeletion::NotFound);
        }
        let held = |table: &str| -> Result<u64, StoreError> {
            Ok(tx.query_row(
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE substr(name, 1, length(?1) + 1) = ?1 || '/'"
                ),
                params![name],
                |r| r.get(0),
            )?)
        };
        let holds = TeamHolds {
            applications: held("apps")?,
            services: held("services")?,
            issuers: held("issuers")?,
        };
        if holds != TeamHolds::default() {
            return Ok(TeamDeletion::Holds(holds));
        }
        // Its environments hold no application (counted above): they go with it.
        tx.execute("DELETE FROM envs WHERE team = ?1", params![name])?;
        tx.execute("DELETE FROM teams WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(TeamDeletion::Deleted)
    }

    /// Add `user` to `team` with `role`, or change the role of a member. False if the team does
    /// not exist.
    pub fn set_member(&self, team: &str, user: &str, role: Role) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM teams WHERE name = ?1", params![team], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if !exists {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO team_members(team, user, role, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(team, user) DO UPDATE SET role = excluded.role",
            params![team, user, role.as_str(), crate::now()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Remove a member; false if `user` was not a member of `team`.
    pub fn remove_member(&self, team: &str, user: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM team_members WHERE team = ?1 AND user = ?2",
            params![team, user],
        )?;
        Ok(n > 0)
    }

    /// The members of a team, by user.
    pub fn team_members(&self, team: &str) -> Result<Vec<MemberRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT team, user, role, added_at FROM team_members WHERE team = ?1 ORDER BY user",
        )?;
        let rows = stmt.query_map(params![team], row_to_member)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The teams `user` is a member of, by team.
    pub fn memberships(&self, user: &str) -> Result<Vec<MemberRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT team, user, role, added_at FROM team_members WHERE user = ?1 ORDER BY team",
        )?;
        let rows = stmt.query_map(params![user], row_to_member)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Grant `key` to `team`; false if the team does not exist. Granting a key twice keeps the
    /// first grant.
    pub fn grant_admission(
        &self,
        team: &str,
        key: &AdmissionKey,
        granted_by: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let exists: bool = conn
            .query_row("SELECT 1 FROM teams WHERE name = ?1", params![team], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if !exists {
            return Ok(false);
        }
        conn.execute(
            "INSERT INTO admission_grants(team, key, granted_by, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(team, key) DO NOTHING",
            params![team, key.to_string(), granted_by, crate::now()],
        )?;
        Ok(true)
    }

    /// Revoke a grant; false if the team did not have it.
    pub fn revoke_admission(&self, team: &str, key: &AdmissionKey) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM admission_grants WHERE team = ?1 AND key = ?2",
            params![team, key.to_string()],
        )?;
        Ok(n > 0)
    }

    /// A team's grants, by key.
    pub fn admission_grants(&self, team: &str) -> Result<Vec<GrantRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT team, key, granted_by, created_at FROM admission_grants WHERE team = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map(params![team], row_to_grant)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_store_has_team_default_owned_by_admin_and_no_grants() {
        let s = Store::open_in_memory().unwrap();
        let teams = s.list_teams().unwrap();
        assert_eq!(teams.len(), 1);
        assert_eq!(teams[0].name, "default");
        assert_eq!(teams[0].members, 1);
        let m = s.memberships("admin").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].role, Role::Owner);
        assert!(s.admission_grants("default").unwrap().is_empty());
    }

    #[test]
    fn members_and_grants() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.create_team("shop").unwrap());
        assert!(!s.create_team("shop").unwrap());
        assert!(s.set_member("shop", "ann", Role::Developer).unwrap());
        assert!(s.set_member("shop", "ann", Role::Viewer).unwrap());
        assert!(!s.set_member("nope", "ann", Role::Viewer).unwrap());
        assert_eq!(s.team_members("shop").unwrap()[0].role, Role::Viewer);
        let key: AdmissionKey = "bind:/srv".parse().unwrap();
        assert!(s.grant_admission("shop", &key, "admin").unwrap());
        assert!(s.grant_admission("shop", &key, "admin").unwrap());
        assert!(!s.grant_admission("nope", &key, "admin").unwrap());
        assert_eq!(s.admission_grants("shop").unwrap()[0].key, key);
        assert!(s.revoke_admission("shop", &key).unwrap());
        assert!(!s.revoke_admission("shop", &key).unwrap());
        s.grant_admission("shop", &key, "admin").unwrap();
        assert!(s.delete_team("shop").unwrap());
        assert!(s.memberships("ann").unwrap().is_empty());
        assert!(s.admission_grants("shop").unwrap().is_empty());
        assert!(s.remove_member("default", "admin").unwrap());
        assert!(!s.remove_member("default", "admin").unwrap());
    }

    #[test]
    fn an_upgraded_store_keeps_what_runs_admitted() {
        let dir = std::env::temp_dir().join(format!("berth-store-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A database an earlier release wrote: the first nine migrations and an application.
        {
            let conn = rusqlite::Connection::open(dir.join("berth.db")).unwrap();
            crate::migrations::apply_first(&conn, 9).unwrap();
            conn.execute(
                "INSERT INTO apps(name, created_at, revision) VALUES ('web', 'x', 1)",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let keys: Vec<String> = s
            .admission_grants("default")
            .unwrap()
            .into_iter()
            .map(|g| g.key.to_string())
            .collect();
        assert_eq!(keys, ["bind:/", "cap_add:*", "external"]);
        assert_eq!(s.memberships("admin").unwrap()[0].team, "default");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_team_is_removed_only_empty_and_nothing_is_made_in_a_removed_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.create_team("shop").unwrap());
        assert!(s.create_team("shop-x").unwrap());
        s.create_revision("shop/web", "apply", "", &serde_json::json!({}))
            .unwrap();
        // `shop-x/...` and `default`'s `shop.web` are not `shop`'s.
        s.create_revision("shop-x/web", "apply", "", &serde_json::json!({}))
            .unwrap();
        s.create_revision("shop.web", "apply", "", &serde_json::json!({}))
            .unwrap();
        assert_eq!(
            s.delete_empty_team("shop").unwrap(),
            TeamDeletion::Holds(TeamHolds {
                applications: 1,
                ..TeamHolds::default()
            })
        );
        s.mark_deleting("shop/web", false).unwrap();
        s.delete_app("shop/web").unwrap();
        assert_eq!(s.delete_empty_team("shop").unwrap(), TeamDeletion::Deleted);
        assert_eq!(s.delete_empty_team("shop").unwrap(), TeamDeletion::NotFound);
        // An apply, a service, an issuer that arrive after the removal are refused.
        assert!(matches!(
            s.create_revision("shop/web", "apply", "", &serde_json::json!({})),
            Err(StoreError::TeamNotFound(t)) if t == "shop"
        ));
        let source: berth_core::source::ServiceSource =
            serde_json::from_str(r#"{"svn": "https://example.com/svn"}"#).unwrap();
        assert!(matches!(
            s.create_service("shop/api", &source),
            Err(StoreError::TeamNotFound(_))
        ));
        assert!(s.create_service("api", &source).unwrap());
    }

    #[test]
    fn only_upgrades_from_before_teams_get_the_upgrade_grants() {
        let grants = |before: Option<usize>| {
            let dir = tempfile::tempdir().unwrap();
            if let Some(n) = before {
                let conn = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
                crate::migrations::apply_first(&conn, n).unwrap();
            }
            let s = Store::open(dir.path()).unwrap();
            s.admission_grants("default")
                .unwrap()
                .into_iter()
                .map(|g| g.key.to_string())
                .collect::<Vec<_>>()
        };
        assert!(grants(None).is_empty(), "a fresh directory grants nothing");
        assert!(
            grants(Some(10)).is_empty(),
            "the teams release's grants are its administrator's"
        );
        assert_eq!(grants(Some(8)), ["bind:/", "cap_add:*", "external"]);
    }
}
