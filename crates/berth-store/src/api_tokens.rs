//! API tokens (docs/access.md): opaque bearer secrets of which only the SHA-256 is kept, each
//! with an owner, a name unique per owner, a kind (`login`, `api`, `local`), scopes, an optional
//! expiry and when it was last used. Revoking a token deletes its row.

use crate::{Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// One token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: i64,
    pub owner: String,
    pub name: String,
    /// `login`, `api` or `local`.
    pub kind: String,
    /// SHA-256 hex of the whole secret.
    pub hash: String,
    /// Empty: the owner's rights.
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The team calls made with this token act in when they name none (docs/teams.md).
    pub team: Option<String>,
}

const COLUMNS: &str =
    "id, owner, name, kind, hash, scopes, created_at, expires_at, last_used_at, team";

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    let scopes: String = r.get(5)?;
    Ok(ApiTokenRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        hash: r.get(4)?,
        // An unreadable list is an error, never "no scopes" (which means the owner's full rights).
        scopes: serde_json::from_str(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        last_used_at: r.get(8)?,
        team: r.get(9)?,
    })
}

impl Store {
    /// Add a token (`id`, `created_at` and `last_used_at` are set here); false if its owner
    /// already has a token of that name. Returns the new id on success.
    pub fn insert_api_token(&self, t: &ApiTokenRecord) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO api_tokens(owner, name, kind, hash, scopes, created_at, expires_at, team)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(owner, name) DO NOTHING",
            params![
                t.owner,
                t.name,
                t.kind,
                t.hash,
                serde_json::to_string(&t.scopes)?,
                crate::now(),
                t.expires_at,
                t.team
            ],
        )?;
        Ok((n > 0).then(|| conn.last_insert_rowid()))
    }

    /// The token whose secret hashes to `hash`.
    pub fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = ?1"),
                params![hash],
                row_to_token,
            )
            .optional()?)
    }

    /// The tokens of `owner` (every token when `None`), by owner then name.
    pub fn list_api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR owner = ?1 ORDER BY owner, name"
        ))?;
        let rows = stmt.query_map(params![owner], row_to_token)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revoke (delete) `owner`'s token `name`; the removed record, if there was one.
    pub fn delete_api_token(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let found = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE owner = ?1 AND name = ?2"),
                params![owner, name],
                row_to_token,
            )
            .optional()?;
        if let Some(t) = &found {
            tx.execute("DELETE FROM api_tokens WHERE id = ?1", params![t.id])?;
        }
        tx.commit()?;
        Ok(found)
    }

    /// Revoke `owner`'s login sessions except the one named `keep` (a password change ends the
    /// other sessions); the hashes removed.
    pub fn delete_login_sessions(
        &self,
        owner: &str,
        keep: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let keep = keep.unwrap_or("");
        let hashes = {
            let mut stmt = tx.prepare(
                "SELECT hash FROM api_tokens WHERE owner = ?1 AND kind = 'login' AND name <> ?2",
            )?;
            let rows = stmt.query_map(params![owner, keep], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        tx.execute(
            "DELETE FROM api_tokens WHERE owner = ?1 AND kind = 'login' AND name <> ?2",
            params![owner, keep],
        )?;
        tx.commit()?;
        Ok(hashes)
    }

    /// Revoke every token of `kind` (the `local` token at each server start); the hashes removed.
    pub fn delete_api_tokens_of_kind(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let hashes = {
            let mut stmt = tx.prepare("SELECT hash FROM api_tokens WHERE kind = ?1")?;
            let rows = stmt.query_map(params![kind], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        tx.execute("DELETE FROM api_tokens WHERE kind = ?1", params![kind])?;
        tx.commit()?;
        Ok(hashes)
    }

    /// Forget tokens that expired before `now` (RFC 3339, compared as text in one format).
    pub fn delete_expired_api_tokens(&self, now: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < ?1",
            params![now],
        )?)
    }

    /// Record when a token was last used (the caller writes it at most once a minute).
    pub fn touch_api_token(&self, id: i64, at: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserRecord;

    fn token(owner: &str, name: &str, kind: &str, hash: &str) -> ApiTokenRecord {
        ApiTokenRecord {
            id: 0,
            owner: owner.into(),
            name: name.into(),
            kind: kind.into(),
            hash: hash.into(),
            scopes: vec!["metrics".into()],
            created_at: String::new(),
            expires_at: Some("2030-01-01T00:00:00.000Z".into()),
            last_used_at: None,
            team: None,
        }
    }

    #[test]
    fn tokens_are_found_by_hash_listed_and_revoked() {
        let s = Store::open_in_memory().unwrap();
        for name in ["admin", "bob"] {
            s.create_user(&UserRecord {
                name: name.into(),
                password_hash: "h".into(),
                administrator: false,
                disabled: false,
                must_change_password: false,
                created_at: String::new(),
                updated_at: String::new(),
            })
            .unwrap();
        }
        let id = s
            .insert_api_token(&token("bob", "ci", "api", "h1"))
            .unwrap()
            .unwrap();
        assert!(s
            .insert_api_token(&token("bob", "ci", "api", "h2"))
            .unwrap()
            .is_none());
        s.insert_api_token(&token("admin", "ci", "api", "h3"))
            .unwrap()
            .unwrap();
        s.insert_api_token(&token("admin", "local-admin", "local", "h4"))
            .unwrap()
            .unwrap();
        let t = s.api_token_by_hash("h1").unwrap().unwrap();
        assert_eq!(
            (t.id, t.owner.as_str(), t.scopes.clone()),
            (id, "bob", vec!["metrics".to_string()])
        );
        s.touch_api_token(id, "2026-01-01T00:00:00.000Z").unwrap();
        assert!(s
            .api_token_by_hash("h1")
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some());
        assert_eq!(s.list_api_tokens(Some("bob")).unwrap().len(), 1);
        assert_eq!(s.list_api_tokens(None).unwrap().len(), 3);
        assert_eq!(s.delete_api_tokens_of_kind("local").unwrap(), ["h4"]);
        assert_eq!(s.delete_api_token("bob", "ci").unwrap().unwrap().hash, "h1");
        assert!(s.delete_api_token("bob", "ci").unwrap().is_none());
        assert!(s.api_token_by_hash("h1").unwrap().is_none());
        assert_eq!(
            s.delete_expired_api_tokens("2031-01-01T00:00:00.000Z")
                .unwrap(),
            1
        );
        assert!(s.list_api_tokens(None).unwrap().is_empty());
    }
}
