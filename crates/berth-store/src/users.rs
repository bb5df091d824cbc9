//! Users (docs/access.md): a name, an argon2id password hash (never the password), the platform
//! administrator flag, whether the account is disabled and whether its password must be changed.
//! Nothing here names a team (teams add their own membership table).

use crate::{Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// An argon2id PHC string. Never logged or returned by the API.
    pub password_hash: String,
    pub administrator: bool,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "name, password_hash, administrator, disabled, must_change_password, created_at, updated_at";

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        administrator: r.get(2)?,
        disabled: r.get(3)?,
        must_change_password: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

impl Store {
    /// Add a user; false if the name is taken (`created_at`/`updated_at` are set here).
    pub fn create_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let ts = crate::now();
        let n = self.conn().execute(
            "INSERT INTO users(name, password_hash, administrator, disabled, must_change_password, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT(name) DO NOTHING",
            params![u.name, u.password_hash, u.administrator, u.disabled, u.must_change_password, ts],
        )?;
        Ok(n > 0)
    }

    /// One user, if it exists.
    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                row_to_user,
            )
            .optional()?)
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_user)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many users exist.
    pub fn count_users(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// Replace a user's password hash and its must-change flag; false if no such user.
    pub fn set_user_password(
        &self,
        name: &str,
        password_hash: &str,
        must_change: bool,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET password_hash = ?2, must_change_password = ?3, updated_at = ?4 WHERE name = ?1",
            params![name, password_hash, must_change, crate::now()],
        )?;
        Ok(n > 0)
    }

    /// Disable a user, unless it is the last enabled administrator (checked in the same
    /// transaction). `Ok(None)`: no such user; `Ok(Some(false))`: refused (last administrator).
    pub fn disable_user(&self, name: &str) -> Result<Option<bool>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let admin: Option<bool> = tx
            .query_row(
                "SELECT administrator FROM users WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(admin) = admin else {
            return Ok(None);
        };
        if admin {
            let others: u64 = tx.query_row(
                "SELECT COUNT(*) FROM users WHERE administrator = 1 AND disabled = 0 AND name <> ?1",
                params![name],
                |r| r.get(0),
            )?;
            if others == 0 {
                return Ok(Some(false));
            }
        }
        tx.execute(
            "UPDATE users SET disabled = 1, updated_at = ?2 WHERE name = ?1",
            params![name, crate::now()],
        )?;
        tx.commit()?;
        Ok(Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, admin: bool) -> UserRecord {
        UserRecord {
            name: name.into(),
            password_hash: "$argon2id$x".into(),
            administrator: admin,
            disabled: false,
            must_change_password: true,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn users_are_created_once_changed_and_disabled() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.count_users().unwrap(), 0);
        assert!(s.create_user(&user("admin", true)).unwrap());
        assert!(!s.create_user(&user("admin", false)).unwrap());
        assert!(s.create_user(&user("bob", false)).unwrap());
        assert_eq!(s.count_users().unwrap(), 2);
        assert!(s.set_user_password("bob", "$argon2id$y", false).unwrap());
        assert!(!s.set_user_password("zz", "h", false).unwrap());
        let bob = s.get_user("bob").unwrap().unwrap();
        assert_eq!(bob.password_hash, "$argon2id$y");
        assert!(!bob.must_change_password);
        // The last enabled administrator stays.
        assert_eq!(s.disable_user("admin").unwrap(), Some(false));
        assert_eq!(s.disable_user("bob").unwrap(), Some(true));
        assert!(s.get_user("bob").unwrap().unwrap().disabled);
        assert_eq!(s.disable_user("zz").unwrap(), None);
        assert!(s.create_user(&user("root", true)).unwrap());
        assert_eq!(s.disable_user("admin").unwrap(), Some(true));
        let names: Vec<_> = s
            .list_users()
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["admin", "bob", "root"]);
    }
}
