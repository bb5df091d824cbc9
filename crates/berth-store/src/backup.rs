//! Consistent snapshots of the state database while the server keeps writing (`berth admin
//! backup`).
//!
//! How: SQLite's online backup API, copying every page in **one** step from a connection of its
//! own. One step runs inside one read transaction, so the copy is the database as of one
//! instant, whatever commits meanwhile; and since the database is in WAL mode, that reader
//! blocks no writer — the store's mutex is not taken at all and writes go on during the copy.
//! (Stepping a few pages at a time with pauses would not do: a write by another connection
//! between two steps restarts the copy from the first page, so under steady writes a stepped
//! backup might never finish.) An in-memory store, which has no file to open twice, is copied
//! under its mutex.
//!
//! The copy is schema-agnostic: every table there is, whatever the migrations added. It is left
//! in rollback-journal mode (one self-contained file, no `-wal` beside it) and checked with
//! `PRAGMA quick_check` before it is handed back.

use crate::{Store, StoreError};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a copy may wait for SQLite's locks (a checkpoint in progress) before it gives up.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// What a snapshot holds, read back from the copy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The copy's schema version (`PRAGMA user_version`).
    pub schema_version: u32,
    /// The instance id stored in the copy (empty if the database never had one).
    pub instance_id: String,
    /// Size of the copy in bytes.
    pub bytes: u64,
    /// How long copying the pages took. With a file-backed store no lock of the store is held
    /// meanwhile; in memory, the store's mutex is held this long.
    pub copy_time: Duration,
}

impl Store {
    /// Write a consistent snapshot of the whole database to `dest` (a new file; an existing one
    /// is overwritten). Safe to call while other threads write through this store: they are not
    /// blocked (see the module docs).
    ///
    /// # Errors
    /// SQLite errors opening either side or copying, [`StoreError::Snapshot`] if the copy fails
    /// its integrity check or SQLite stays busy for [`BUSY_WAIT`].
    pub fn backup_to(&self, dest: &Path) -> Result<Snapshot, StoreError> {
        let mut dst = Connection::open(dest)?;
        let copy_time = match &self.path {
            Some(path) => {
                let src = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                src.busy_timeout(BUSY_WAIT)?;
                copy_all(&src, &mut dst)?
            }
            None => copy_all(&self.conn(), &mut dst)?,
        };
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        let check: String = dst.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Snapshot(format!(
                "the copy failed its integrity check: {check}"
            )));
        }
        let schema_version: u32 = dst.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let has_meta: bool = dst.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |r| r.get(0),
        )?;
        let instance_id = if has_meta {
            dst.query_row(
                "SELECT value FROM meta WHERE key = 'instance_id'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default()
        } else {
            String::new()
        };
        dst.close().map_err(|(_, e)| e)?;
        let bytes = std::fs::metadata(dest)
            .map(|m| m.len())
            .map_err(|e| StoreError::Snapshot(format!("{}: {e}", dest.display())))?;
        Ok(Snapshot {
            schema_version,
            instance_id,
            bytes,
            copy_time,
        })
    }
}

/// Copy every page of `src` into `dst` in one step (one read transaction: one instant).
fn copy_all(src: &Connection, dst: &mut Connection) -> Result<Duration, StoreError> {
    let started = Instant::now();
    let backup = Backup::new(src, dst)?;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(started.elapsed()),
            // Not expected with -1, but harmless: keep copying.
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                if started.elapsed() > BUSY_WAIT {
                    return Err(StoreError::Snapshot(format!(
                        "the database stayed locked for {} s",
                        BUSY_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // `StepResult` is non-exhaustive.
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    /// A spec of about `size` bytes, like a parsed Compose project.
    fn spec(size: usize) -> serde_json::Value {
        serde_json::json!({"services": {"web": {"image": "x", "environment": {"PAD": "p".repeat(size)}}}})
    }

    #[test]
    fn snapshot_holds_every_table_and_opens_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.instance_id().unwrap();
        s.create_revision("shop", "apply", "created", &spec(10))
            .unwrap();
        // A table no migration of this crate knows (as a later migration would add): copied too.
        s.conn()
            .execute_batch("CREATE TABLE extra (v TEXT); INSERT INTO extra VALUES ('kept');")
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let snap = s.backup_to(&out.path().join("berth.db")).unwrap();
        assert_eq!(snap.instance_id, id);
        assert_eq!(snap.schema_version, crate::SCHEMA_VERSION);
        assert!(snap.bytes > 0);
        assert!(
            !out.path().join("berth.db-wal").exists(),
            "the copy must be one self-contained file"
        );
        let copy = Store::open(out.path()).unwrap();
        assert_eq!(copy.instance_id().unwrap(), id);
        assert_eq!(copy.get_app("shop").unwrap().revision, 1);
        let v: String = copy
            .conn()
            .query_row("SELECT v FROM extra", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "kept");
    }

    #[test]
    fn in_memory_store_can_be_copied() {
        let s = Store::open_in_memory().unwrap();
        let id = s.instance_id().unwrap();
        let out = tempfile::tempdir().unwrap();
        assert_eq!(
            s.backup_to(&out.path().join("berth.db"))
                .unwrap()
                .instance_id,
            id
        );
    }

    /// A file-backed store is copied without its mutex: a backup finishes while a writer holds
    /// the store (here: the lock and an open, uncommitted transaction), and leaves that
    /// writer's uncommitted rows out.
    #[test]
    fn a_backup_does_not_wait_for_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path()).unwrap());
        let id = s.instance_id().unwrap();
        let mut conn = s.conn();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('uncommitted', 'x')",
            [],
        )
        .unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("berth.db");
        {
            let (s, dest) = (s.clone(), dest.clone());
            std::thread::spawn(move || {
                let _ = done_tx.send(s.backup_to(&dest).map(|snap| snap.instance_id));
            });
        }
        let got = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the backup waited for the store's lock");
        assert_eq!(got.unwrap(), id);
        tx.commit().unwrap();
        drop(conn);
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key = 'uncommitted'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "the copy holds an uncommitted row");
    }

    /// Writers keep committing while copies run, and each copy is one instant: every app's
    /// pointer names a revision that exists in the copy (a revision and its pointer commit
    /// together, in the order revision first).
    #[test]
    fn copies_under_steady_writes_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path()).unwrap());
        s.instance_id().unwrap();
        for i in 0..300 {
            s.create_revision(&format!("app{}", i % 30), "apply", "x", &spec(4000))
                .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let writer = {
            let (s, stop, writes) = (s.clone(), stop.clone(), writes.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    s.create_revision(&format!("app{}", i % 30), "scale", "y", &spec(4000))
                        .unwrap();
                    writes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        };
        let out = tempfile::tempdir().unwrap();
        for n in 0..5 {
            let dest = out.path().join(format!("{n}.db"));
            s.backup_to(&dest).unwrap();
            let copy = Connection::open(&dest).unwrap();
            let dangling: i64 = copy
                .query_row(
                    "SELECT COUNT(*) FROM apps a WHERE NOT EXISTS
                     (SELECT 1 FROM revisions r WHERE r.app = a.name AND r.number = a.revision)",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(dangling, 0, "copy {n} is not one instant");
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(writes.load(Ordering::Relaxed) > 0);
    }

    /// How long a backup of a realistic database takes, and how long writes wait meanwhile.
    /// Run with `cargo test -p berth-store --release --lib backup::tests::measure -- --ignored
    /// --nocapture`; figures are in docs/access.md ("Backup and restore").
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path()).unwrap());
        s.instance_id().unwrap();
        // 100 applications × 20 revisions with 8 KB specs, plus 20 000 audit-sized rows.
        for i in 0..2000 {
            s.create_revision(&format!("app{}", i % 100), "apply", "x", &spec(8000))
                .unwrap();
        }
        {
            let mut c = s.conn();
            c.execute_batch("CREATE TABLE log (id INTEGER PRIMARY KEY, line TEXT)")
                .unwrap();
            let tx = c.transaction().unwrap();
            for i in 0..20_000 {
                tx.execute(
                    "INSERT INTO log(line) VALUES (?1)",
                    [format!(
                        "{i} POST /api/v1/apps/x/scale 200 admin 127.0.0.1 req-{i:032}"
                    )],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        // A writer commits revisions one after another; each records its latency.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    s.create_revision("busy", "scale", "y", &spec(2000))
                        .unwrap();
                    lat.push((t, t.elapsed()));
                }
                lat
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let out = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let snap = s.backup_to(&out.path().join("berth.db")).unwrap();
        let total = t.elapsed();
        let end = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let lat = writer.join().unwrap();
        let slowest = |v: &[&(Instant, Duration)]| v.iter().map(|x| x.1).max().unwrap_or_default();
        let during: Vec<_> = lat.iter().filter(|(at, _)| *at >= t && *at < end).collect();
        let outside: Vec<_> = lat.iter().filter(|(at, _)| *at < t || *at >= end).collect();
        println!(
            "database {:.1} MiB: pages copied in {:?}, whole backup {:?}; {} writes during it (slowest {:?}), {} outside (slowest {:?})",
            snap.bytes as f64 / 1_048_576.0,
            snap.copy_time,
            total,
            during.len(),
            slowest(&during),
            outside.len(),
            slowest(&outside),
        );
    }
}
