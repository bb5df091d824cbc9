//! The audit log (docs/access.md): one row per state-changing API call (allowed or refused) and
//! per login. Append-only: this module has no update or delete path, and triggers (migration 9)
//! abort any `UPDATE` or `DELETE` on the table.

use crate::{Store, StoreError};
use rusqlite::params;

/// One audit row. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// Set by the store on append.
    pub id: u64,
    /// RFC 3339 (UTC, milliseconds, so rows compare as text).
    pub time: String,
    pub user: Option<String>,
    pub token: Option<String>,
    pub team: Option<String>,
    pub action: String,
    pub object: String,
    pub source: String,
    pub request_id: String,
    pub status: u16,
    pub code: Option<String>,
}

/// Which rows [`Store::audit`] returns: oldest first, ids after `after`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    /// Rows at or after this time (same format as [`AuditRecord::time`]).
    pub since: Option<String>,
    pub after: Option<u64>,
    pub limit: u32,
}

impl Store {
    /// Append one row; its id.
    pub fn append_audit(&self, a: &AuditRecord) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit(time, user, token, team, action, object, source, request_id, status, code)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                a.time,
                a.user,
                a.token,
                a.team,
                a.action,
                a.object,
                a.source,
                a.request_id,
                a.status,
                a.code
            ],
        )?;
        Ok(u64::try_from(conn.last_insert_rowid()).unwrap_or_default())
    }

    /// Rows matching `q`, oldest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, time, user, token, team, action, object, source, request_id, status, code
             FROM audit
             WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR time >= ?2) AND id > ?3
             ORDER BY id LIMIT ?4",
        )?;
        let after = i64::try_from(q.after.unwrap_or(0)).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![q.user, q.since, after, q.limit], |r| {
            Ok(AuditRecord {
                id: r.get(0)?,
                time: r.get(1)?,
                user: r.get(2)?,
                token: r.get(3)?,
                team: r.get(4)?,
                action: r.get(5)?,
                object: r.get(6)?,
                source: r.get(7)?,
                request_id: r.get(8)?,
                status: r.get(9)?,
                code: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(time: &str, user: Option<&str>) -> AuditRecord {
        AuditRecord {
            time: time.into(),
            user: user.map(str::to_string),
            action: "POST /api/v1/apps/{app}/apply".into(),
            object: "/api/v1/apps/shop/apply".into(),
            source: "127.0.0.1".into(),
            request_id: "r1".into(),
            status: 200,
            ..AuditRecord::default()
        }
    }

    #[test]
    fn audit_rows_are_appended_filtered_and_paged() {
        let s = Store::open_in_memory().unwrap();
        let a = s
            .append_audit(&row("2026-01-01T00:00:00.000Z", Some("bob")))
            .unwrap();
        let b = s
            .append_audit(&row("2026-01-02T00:00:00.000Z", None))
            .unwrap();
        let c = s
            .append_audit(&row("2026-01-03T00:00:00.000Z", Some("bob")))
            .unwrap();
        assert!(a < b && b < c);
        let all = s
            .audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b, c]);
        assert_eq!(all[0].action, "POST /api/v1/apps/{app}/apply");
        let bob = s
            .audit(&AuditQuery {
                user: Some("bob".into()),
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(bob.len(), 2);
        let page = s
            .audit(&AuditQuery {
                after: Some(a),
                limit: 1,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
        let since = s
            .audit(&AuditQuery {
                since: Some("2026-01-02T00:00:00.000Z".into()),
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(since.len(), 2);
    }

    #[test]
    fn the_audit_log_refuses_update_and_delete() {
        let s = Store::open_in_memory().unwrap();
        s.append_audit(&row("2026-01-01T00:00:00.000Z", Some("bob")))
            .unwrap();
        // The store has no such path; the triggers refuse even raw SQL.
        let conn = s.conn();
        let e = conn
            .execute("UPDATE audit SET user = 'eve'", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = conn.execute("DELETE FROM audit", []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        drop(conn);
        assert_eq!(
            s.audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap()[0]
                .user
                .as_deref(),
            Some("bob")
        );
    }
}
