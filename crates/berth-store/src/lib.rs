//! Berth's embedded state: applications and their revisions, in SQLite.
//!
//! Rules this crate keeps:
//! - It is the only crate that talks SQL. Callers see typed records, never rows.
//! - Durability first: WAL journal with `synchronous=FULL`, so a committed revision survives a
//!   `kill -9` or power loss. The control plane commits desired state here *before* any Docker
//!   call (docs/style.md habit 4); everything else is derived from it and from what Docker reports.
//! - Every write that must be atomic is one transaction (a new revision and the app's pointer to
//!   it move together).
//! - Methods are synchronous and short (one statement or one small transaction); the connection
//!   sits behind a mutex. Volume is a handful of writes per user action, not per request.
//!
//! Schema changes are numbered migrations in [`migrations`], applied in order on open and
//! recorded in `PRAGMA user_version`.

mod api_tokens;
mod audit;
mod backup;
mod builds;
mod ensured;
mod envs;
mod lifecycle;
mod market;
mod migrations;
mod ports;
mod restarts;
mod subnets;
mod subscriptions;
mod teams;
mod users;

pub use api_tokens::ApiTokenRecord;
pub use audit::{AuditQuery, AuditRecord};
pub use backup::Snapshot;
pub use builds::{
    BuildRecord, BuildState, ImageState, ServiceRecord, ServiceRemoval, VersionRecord,
};
pub use envs::{EnvCreate, EnvRecord, EnvRefusal, BLOCK as ENV_PORT_BLOCK};
pub use lifecycle::{LifecycleRecord, TransitionWrite};
pub use market::BindingRecord;
pub use migrations::SCHEMA_VERSION;
pub use ports::{PortLease, PortPool, PortProbe, PortRefusal, PortWant};
pub use restarts::RestartRecord;
pub use subnets::SubnetRecord;
pub use subscriptions::{SubscriptionRecord, ORIGIN_CLI, ORIGIN_USES};
pub use teams::{GrantRecord, MemberRecord, TeamDeletion, TeamHolds, TeamRecord};
pub use users::UserRecord;

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored document could not be decoded (a bug or a newer schema).
    #[error("stored document is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    /// The application does not exist.
    #[error("application {0:?} does not exist")]
    AppNotFound(String),
    /// The revision does not exist.
    #[error("revision {1} of application {0:?} does not exist")]
    RevisionNotFound(String, u64),
    /// A snapshot ([`Store::backup_to`]) could not be made or failed its check.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The team of an object about to be made does not exist (it was removed meanwhile).
    #[error("team {0:?} does not exist")]
    TeamNotFound(String),
}

/// Outcome of a revision's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionStatus {
    /// Committed; the reconciler is rolling it out.
    Pending,
    /// Every service reached its desired replicas, ready, on this revision.
    Converged,
    /// The rollout failed (the message says why); it may have been rolled back.
    Failed,
    /// A newer revision replaced it before it converged.
    Superseded,
}

impl RevisionStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Converged => "converged",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "converged" => Self::Converged,
            "failed" => Self::Failed,
            "superseded" => Self::Superseded,
            _ => Self::Pending,
        }
    }
}

/// One numbered, immutable desired state of an application.
///
/// `S` is its spec, a type of the caller's: the control plane's `RevisionSpec` (a
/// `berth_compose::Project` plus the image IDs apply pinned), or a view of it that reads only
/// some fields, or `serde::de::IgnoredAny` for none. The store keeps it as JSON and converts it
/// here, at its edge; it never reads it by key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision<S> {
    pub app: String,
    pub number: u64,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// What created it: `apply`, `scale`, `rollback`, `auto-rollback`.
    pub source: String,
    /// Human summary of what changed relative to the previous revision.
    pub change: String,
    pub status: RevisionStatus,
    /// Why it failed, or other detail of the outcome.
    pub message: String,
    /// When the outcome was recorded (RFC 3339), if it has one.
    pub finished_at: Option<String>,
    /// The parsed application and what apply resolved (stored as JSON in `revisions.spec`).
    pub spec: S,
}

/// An application: a name and the revision it should run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    pub created_at: String,
    /// The desired revision (the latest one).
    pub revision: u64,
    /// Set by `rm`: the reconciler tears everything down, then deletes the record.
    pub deleting: bool,
    /// With `deleting`: remove named volumes too.
    pub delete_volumes: bool,
    /// Runs approved versions only (`berth app protect`, docs/lifecycle.md).
    pub protected: bool,
}

/// A JWT issuer added with `berth issuer add`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuerRecord {
    pub name: String,
    /// The `iss` value tokens carry.
    pub issuer: String,
    /// Public keys (JWKS JSON), given or last fetched from `jwks_url`.
    pub jwks: Option<String>,
    /// Where the JWKS is fetched from (refreshed periodically).
    pub jwks_url: Option<String>,
    /// HS256 shared secret. Never logged or returned by the API.
    pub hs256_secret: Option<String>,
    pub created_at: String,
}

/// The state database. Cloning is cheap and shares the one connection (the control plane and
/// berth-access use the same store).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// The database file (`None` in memory): backups read it through their own connection.
    path: Option<PathBuf>,
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Open (creating if needed) `berth.db` in `dir`, apply migrations.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("berth.db");
        let mut store = Self::from_connection(Connection::open(&path)?)?;
        store.path = Some(path);
        Ok(store)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::apply(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: None,
        })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This server's instance id: created once, kept forever in the database. Every Docker
    /// object Berth creates carries it as `berth.instance`.
    pub fn instance_id(&self) -> Result<String, StoreError> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'instance_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id: String = (0..12)
            .map(|_| {
                char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rand::random::<usize>() % 36])
            })
            .collect();
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('instance_id', ?1)",
            params![id],
        )?;
        Ok(id)
    }

    /// Commit a new revision of `app` (creating the app if needed) and make it the desired one,
    /// in one transaction. Earlier pending revisions become superseded. Returns its number.
    pub fn create_revision<S: Serialize + ?Sized>(
        &self,
        app: &str,
        source: &str,
        change: &str,
        spec: &S,
    ) -> Result<u64, StoreError> {
        let spec = serde_json::to_string(spec)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        teams::require_team_of(&tx, app)?;
        let ts = now();
        tx.execute(
            "INSERT INTO apps(name, created_at, revision, deleting, delete_volumes) VALUES (?1, ?2, 0, 0, 0)
             ON CONFLICT(name) DO UPDATE SET deleting = 0, delete_volumes = 0",
            params![app, ts],
        )?;
        let next: u64 = tx.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM revisions WHERE app = ?1",
            params![app],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE revisions SET status = 'superseded', finished_at = ?2 WHERE app = ?1 AND status = 'pending'",
            params![app, ts],
        )?;
        tx.execute(
            "INSERT INTO revisions(app, number, created_at, source, change, status, message, spec)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', '', ?6)",
            params![app, next, ts, source, change, spec],
        )?;
        tx.execute(
            "UPDATE apps SET revision = ?2 WHERE name = ?1",
            params![app, next],
        )?;
        tx.commit()?;
        Ok(next)
    }

    /// Record a revision's outcome (only a pending revision changes).
    pub fn set_revision_status(
        &self,
        app: &str,
        number: u64,
        status: RevisionStatus,
        message: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE revisions SET status = ?3, message = ?4, finished_at = ?5
             WHERE app = ?1 AND number = ?2 AND status = 'pending'",
            params![app, number, status.as_str(), message, now()],
        )?;
        Ok(n > 0)
    }

    /// Every application, by name.
    pub fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, created_at, revision, deleting, delete_volumes, protected FROM apps ORDER BY name",
        )?;
        let rows = stmt.query_map([], row_to_app)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One application.
    pub fn get_app(&self, name: &str) -> Result<App, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, created_at, revision, deleting, delete_volumes, protected FROM apps WHERE name = ?1",
                params![name],
                row_to_app,
            )
            .optional()?
            .ok_or_else(|| StoreError::AppNotFound(name.to_string()))
    }

    /// One revision.
    pub fn get_revision<S: DeserializeOwned>(
        &self,
        app: &str,
        number: u64,
    ) -> Result<Revision<S>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {REVISION_COLS} FROM revisions WHERE app = ?1 AND number = ?2"),
                params![app, number],
                revision_row,
            )
            .optional()?;
        match row {
            Some(r) => r.decode(),
            None => Err(StoreError::RevisionNotFound(app.to_string(), number)),
        }
    }

    /// Revisions of an app, newest first.
    pub fn list_revisions<S: DeserializeOwned>(
        &self,
        app: &str,
    ) -> Result<Vec<Revision<S>>, StoreError> {
        let rows: Vec<RevisionRow> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {REVISION_COLS} FROM revisions WHERE app = ?1 ORDER BY number DESC"
            ))?;
            let rows = stmt.query_map(params![app], revision_row)?;
            rows.collect::<Result<_, _>>()?
        };
        rows.into_iter().map(RevisionRow::decode).collect()
    }

    /// The newest converged revision before `before` (the target of an automatic rollback).
    pub fn last_converged_before<S: DeserializeOwned>(
        &self,
        app: &str,
        before: u64,
    ) -> Result<Option<Revision<S>>, StoreError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {REVISION_COLS} FROM revisions
                     WHERE app = ?1 AND number < ?2 AND status = 'converged'
                     ORDER BY number DESC LIMIT 1"
                ),
                params![app, before],
                revision_row,
            )
            .optional()?
            .map(RevisionRow::decode)
            .transpose()
    }

    /// Mark an application for removal (the reconciler tears it down, then calls [`Store::delete_app`]).
    pub fn mark_deleting(&self, app: &str, volumes: bool) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE apps SET deleting = 1, delete_volumes = ?2 WHERE name = ?1",
            params![app, volumes],
        )?;
        if n == 0 {
            return Err(StoreError::AppNotFound(app.to_string()));
        }
        Ok(())
    }

    /// Forget an application and its revisions (after its Docker objects are gone).
    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM revisions WHERE app = ?1", params![app])?;
        // A market entry's provider instance goes with its application (docs/market.md).
        tx.execute("DELETE FROM market_bindings WHERE app = ?1", params![app])?;
        tx.execute("DELETE FROM subscriptions WHERE app = ?1", params![app])?;
        // Its host ports are free again (docs/environments.md#ports-as-leases).
        tx.execute("DELETE FROM port_leases WHERE app = ?1", params![app])?;
        tx.execute("DELETE FROM ensured_services WHERE app = ?1", params![app])?;
        tx.execute(
            "DELETE FROM apps WHERE name = ?1 AND deleting = 1",
            params![app],
        )?;
        tx.commit()?;
        Ok(())
    }
}

impl Store {
    /// Add or replace an issuer.
    pub fn put_issuer(&self, i: &IssuerRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        teams::require_team_of(&tx, &i.name)?;
        tx.execute(
            "INSERT INTO issuers(name, issuer, jwks, jwks_url, hs256_secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET issuer = ?2, jwks = ?3, jwks_url = ?4, hs256_secret = ?5",
            params![i.name, i.issuer, i.jwks, i.jwks_url, i.hs256_secret, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every issuer, by name.
    pub fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, issuer, jwks, jwks_url, hs256_secret, created_at FROM issuers ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(IssuerRecord {
                name: r.get(0)?,
                issuer: r.get(1)?,
                jwks: r.get(2)?,
                jwks_url: r.get(3)?,
                hs256_secret: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remove an issuer; false if it did not exist.
    pub fn delete_issuer(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM issuers WHERE name = ?1", params![name])?
            > 0)
    }

    /// Record keys fetched from an issuer's JWKS URL.
    pub fn set_issuer_jwks(&self, name: &str, jwks: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE issuers SET jwks = ?2 WHERE name = ?1",
            params![name, jwks],
        )?;
        Ok(())
    }
}

fn row_to_app(r: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        name: r.get(0)?,
        created_at: r.get(1)?,
        revision: r.get(2)?,
        deleting: r.get(3)?,
        delete_volumes: r.get(4)?,
        protected: r.get(5)?,
    })
}

const REVISION_COLS: &str =
    "app, number, created_at, source, change, status, message, finished_at, spec";

/// A `revisions` row as SQLite holds it; [`RevisionRow::decode`] is the one place its spec
/// JSON becomes the caller's type.
struct RevisionRow {
    app: String,
    number: u64,
    created_at: String,
    source: String,
    change: String,
    status: String,
    message: String,
    finished_at: Option<String>,
    spec: String,
}

impl RevisionRow {
    fn decode<S: DeserializeOwned>(self) -> Result<Revision<S>, StoreError> {
        Ok(Revision {
            spec: serde_json::from_str(&self.spec)?,
            app: self.app,
            number: self.number,
            created_at: self.created_at,
            source: self.source,
            change: self.change,
            status: RevisionStatus::parse(&self.status),
            message: self.message,
            finished_at: self.finished_at,
        })
    }
}

fn revision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionRow> {
    Ok(RevisionRow {
        app: r.get(0)?,
        number: r.get(1)?,
        created_at: r.get(2)?,
        source: r.get(3)?,
        change: r.get(4)?,
        status: r.get(5)?,
        message: r.get(6)?,
        finished_at: r.get(7)?,
        spec: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;
    use serde_json::Value;

    #[test]
    fn revisions_are_numbered_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"services": {}});
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(
                s.create_revision("shop", "apply", "created", &spec)
                    .unwrap(),
                1
            );
            assert_eq!(
                s.create_revision("shop", "apply", "web changed", &spec)
                    .unwrap(),
                2
            );
            assert_eq!(
                s.get_revision::<IgnoredAny>("shop", 1).unwrap().status,
                RevisionStatus::Superseded
            );
        }
        let s = Store::open(dir.path()).unwrap();
        let id = s.instance_id().unwrap();
        assert_eq!(id, s.instance_id().unwrap());
        assert_eq!(s.get_app("shop").unwrap().revision, 2);
        assert!(s
            .set_revision_status("shop", 2, RevisionStatus::Converged, "")
            .unwrap());
        assert!(!s
            .set_revision_status("shop", 2, RevisionStatus::Failed, "late")
            .unwrap());
        assert_eq!(s.create_revision("shop", "apply", "x", &spec).unwrap(), 3);
        assert_eq!(
            s.last_converged_before::<Value>("shop", 3)
                .unwrap()
                .unwrap()
                .number,
            2
        );
        let revs = s.list_revisions::<Value>("shop").unwrap();
        assert_eq!(
            revs.iter().map(|r| r.number).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
    }

    /// A spec as the control plane writes it (a `RevisionSpec`: project, images, image ports),
    /// read back through a caller's view of it.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Pins {
        project: IgnoredAny,
        images: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn a_revision_row_written_in_todays_format_reads_as_the_callers_type() {
        let dir = tempfile::tempdir().unwrap();
        let spec = r#"{"image_ports":{"web":[8080]},"images":{"web":"sha256:ab"},"project":{"name":"shop","services":{"web":{"image":"web:1"}}}}"#;
        {
            let s = Store::open(dir.path()).unwrap();
            s.conn()
                .execute_batch(&format!(
                    "INSERT INTO apps(name, created_at, revision, deleting, delete_volumes)
                       VALUES ('shop', '2026-01-01T00:00:00Z', 2, 0, 0);
                     INSERT INTO revisions(app, number, created_at, source, change, status, message, finished_at, spec)
                       VALUES ('shop', 1, '2026-01-01T00:00:00Z', 'apply', 'created', 'converged', '', '2026-01-01T00:00:01Z', '{spec}'),
                              ('shop', 2, '2026-01-01T00:01:00Z', 'apply', 'web changed', 'failed', 'web: crashed', NULL, '{{\"project\":{{}}}}');"
                ))
                .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let r = s.get_revision::<Pins>("shop", 1).unwrap();
        assert_eq!(r.spec.images["web"], "sha256:ab");
        assert_eq!(
            (r.status, r.finished_at.as_deref()),
            (RevisionStatus::Converged, Some("2026-01-01T00:00:01Z"))
        );
        // The whole document is there for a caller that reads all of it.
        let whole = s.get_revision::<Value>("shop", 1).unwrap().spec;
        assert_eq!(whole, serde_json::from_str::<Value>(spec).unwrap());
        // A spec that does not decode as the caller's type is an error, never a default...
        assert!(matches!(
            s.get_revision::<Pins>("shop", 2),
            Err(StoreError::Decode(_))
        ));
        assert!(s.list_revisions::<Pins>("shop").is_err());
        // ...but a caller that reads no spec (history, status) is not stopped by it, and the
        // rollback target is found without decoding the others.
        let heads = s.list_revisions::<IgnoredAny>("shop").unwrap();
        assert_eq!(
            heads
                .iter()
                .map(|r| (r.number, r.status))
                .collect::<Vec<_>>(),
            vec![(2, RevisionStatus::Failed), (1, RevisionStatus::Converged)]
        );
        assert_eq!(heads[0].message, "web: crashed");
        let target = s.last_converged_before::<Pins>("shop", 2).unwrap().unwrap();
        assert_eq!((target.number, &target.spec), (1, &r.spec));
        assert!(s
            .last_converged_before::<Pins>("shop", 1)
            .unwrap()
            .is_none());
        // A typed spec is written as its JSON.
        #[derive(Serialize)]
        struct Written<'a> {
            project: (),
            images: &'a std::collections::BTreeMap<String, String>,
        }
        let written = Written {
            project: (),
            images: &target.spec.images,
        };
        assert_eq!(
            s.create_revision("shop", "rollback", "", &written).unwrap(),
            3
        );
        assert_eq!(
            s.get_revision::<Value>("shop", 3).unwrap().spec,
            serde_json::json!({"project": null, "images": {"web": "sha256:ab"}})
        );
        assert_eq!(s.get_revision::<Pins>("shop", 3).unwrap().spec, target.spec);
    }

    #[test]
    fn issuers_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let mut i = IssuerRecord {
            name: "corp".into(),
            issuer: "https://id.corp".into(),
            jwks: None,
            jwks_url: Some("http://127.0.0.1:9/jwks".into()),
            hs256_secret: None,
            created_at: String::new(),
        };
        s.put_issuer(&i).unwrap();
        s.set_issuer_jwks("corp", "{\"keys\":[]}").unwrap();
        let got = s.list_issuers().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].jwks.as_deref(), Some("{\"keys\":[]}"));
        i.issuer = "https://id2.corp".into();
        s.put_issuer(&i).unwrap();
        assert_eq!(s.list_issuers().unwrap()[0].issuer, "https://id2.corp");
        assert!(s.delete_issuer("corp").unwrap());
        assert!(!s.delete_issuer("corp").unwrap());
    }

    #[test]
    fn delete_needs_marking_first() {
        let s = Store::open_in_memory().unwrap();
        let spec = serde_json::json!({});
        s.create_revision("a", "apply", "", &spec).unwrap();
        s.delete_app("a").unwrap();
        assert!(s.get_app("a").is_ok());
        s.mark_deleting("a", true).unwrap();
        assert!(s.get_app("a").unwrap().deleting);
        s.delete_app("a").unwrap();
        assert!(matches!(s.get_app("a"), Err(StoreError::AppNotFound(_))));
        assert!(matches!(
            s.mark_deleting("zz", false),
            Err(StoreError::AppNotFound(_))
        ));
    }
}
