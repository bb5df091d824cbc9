//! Backups of a server's state (`POST /api/v1/admin/backup`, `berth admin backup`), and a data
//! directory restored from one (`berth server --restore FILE`). See docs/access.md, "Backup and
//! restore".
//!
//! A backup is a tar holding exactly:
//! - `backup.json`, first: the [`Manifest`] (format version, Berth version, creation time,
//!   instance id, schema version);
//! - `berth.db`: a consistent snapshot of the state database, taken with SQLite's online backup
//!   while the server keeps writing ([`berth_store::Store::backup_to`]); every table, whatever the
//!   migrations made;
//! - `keys/` and every file in it with its mode: Berth's signing keys (files being written, whose
//!   names start with `.`, are left out).
//!
//! Nothing else: not `admin.token` (a new one is written at every start), not build workspaces or
//! uploaded contexts, not the generated self-signed TLS certificate (made again when missing).
//!
//! Rules it keeps:
//! - The archive is built in an unnamed temporary file in the data directory (mode 0600, gone
//!   with the process even after a `kill -9`), never in memory; the snapshot is a file in a
//!   private (0700) work directory there, removed as soon as it is in the tar. One backup runs at
//!   a time.
//! - A restore unpacks only into an empty or new directory, and refuses, before or while
//!   unpacking, any entry that is not one of the above: absolute paths, `..`, links, devices,
//!   duplicates, other names; an unknown format version; a schema newer than this build's. It
//!   unpacks into a temporary directory and moves the result into place only once the database
//!   opened and its instance id matched the manifest, so a refused restore leaves the target as
//!   it was.

use crate::{ControlPlane, CpError};
use berth_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The archive layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's name in the archive (its first entry).
pub const MANIFEST: &str = "backup.json";
/// The database snapshot's name in the archive and in the data directory.
pub const DATABASE: &str = "berth.db";
/// The key store's directory in the archive and in the data directory.
pub const KEYS: &str = "keys";
/// The largest manifest a restore reads.
const MANIFEST_LIMIT: u64 = 64 * 1024;
/// Prefix of the work directory a backup makes in the data directory.
const WORK_PREFIX: &str = ".backup-";

/// What a backup is: `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The archive layout ([`FORMAT_VERSION`]).
    pub format: u32,
    /// The Berth that made it.
    pub berth_version: String,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// The instance id stored in the snapshot: a restored server keeps it, and so adopts the
    /// containers of the server that was backed up.
    pub instance: String,
    /// The snapshot's schema version (`PRAGMA user_version`).
    pub schema_version: u32,
}

/// A finished backup: the tar in an unnamed temporary file, read from the start.
#[derive(Debug)]
pub struct Archive {
    /// The tar, positioned at its start; the file is gone once this is dropped.
    pub file: fs::File,
    /// Its size in bytes.
    pub size: u64,
    /// What it holds.
    pub manifest: Manifest,
}

impl Archive {
    /// A file name for it: `berth-backup-<instance>-<YYYYMMDDTHHMMSSZ>.tar`.
    #[must_use]
    pub fn file_name(&self) -> String {
        let stamp: String = self
            .manifest
            .created_at
            .chars()
            .take(19)
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!("berth-backup-{}-{stamp}Z.tar", self.manifest.instance)
    }
}

/// A backup that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database snapshot failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Reading the keys or writing the archive failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Where backups are made (set by [`ControlPlane::enable_backups`]).
pub(crate) struct Backups {
    data_dir: PathBuf,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl ControlPlane {
    /// Turn on backups of the data directory `data_dir` (the one holding `berth.db` and
    /// `keys/`). Work directories a backup cut short by a crash left there are removed.
    pub fn enable_backups(&self, data_dir: PathBuf) {
        if let Ok(entries) = fs::read_dir(&data_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(WORK_PREFIX) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let _ = self.inner.backups.set(Backups {
            data_dir,
            one_at_a_time: tokio::sync::Mutex::new(()),
        });
    }

    /// Make a backup (see the module docs). Writes go on meanwhile; a second backup waits for
    /// the first.
    ///
    /// # Errors
    /// `invalid_argument` when backups are not enabled; the snapshot's or the file system's
    /// failures (internal).
    pub async fn backup(&self) -> Result<Archive, CpError> {
        let backups = self.inner.backups.get().ok_or_else(|| {
            CpError::InvalidArgument("backups are not enabled on this server".into())
        })?;
        let _one = backups.one_at_a_time.lock().await;
        let inner = self.inner.clone();
        let data_dir = backups.data_dir.clone();
        let started = std::time::Instant::now();
        let archive = tokio::task::spawn_blocking(move || write_backup(&inner.store, &data_dir))
            .await
            .map_err(|e| {
                CpError::Backup(BackupError::Io {
                    what: "the backup task".into(),
                    source: io::Error::other(e.to_string()),
                })
            })??;
        tracing::info!(
            bytes = archive.size,
            schema_version = archive.manifest.schema_version,
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "backup made"
        );
        Ok(archive)
    }
}

/// Write a backup of `store` and `data_dir/keys` (see the module docs) into an unnamed
/// temporary file in `data_dir`.
///
/// # Errors
/// The snapshot's failures; IO errors reading the keys or writing the archive.
pub fn write_backup(store: &Store, data_dir: &Path) -> Result<Archive, BackupError> {
    let work = tempfile::Builder::new()
        .prefix(WORK_PREFIX)
        .tempdir_in(data_dir)
        .map_err(io_err(format!(
            "a work directory in {}",
            data_dir.display()
        )))?;
    let db = work.path().join(DATABASE);
    let snap = store.backup_to(&db)?;
    let manifest = Manifest {
        format: FORMAT_VERSION,
        berth_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: now(),
        instance: snap.instance_id.clone(),
        schema_version: snap.schema_version,
    };
    let file = tempfile::tempfile_in(data_dir).map_err(io_err(format!(
        "a temporary file in {}",
        data_dir.display()
    )))?;
    let mut tar = tar::Builder::new(io::BufWriter::new(file));
    let mtime = unix_now();
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    append(&mut tar, MANIFEST, 0o600, mtime, &json[..])?;
    let db_file = fs::File::open(&db).map_err(io_err(db.display().to_string()))?;
    let db_len = db_file
        .metadata()
        .map_err(io_err(db.display().to_string()))?
        .len();
    append_sized(&mut tar, DATABASE, 0o600, mtime, db_len, db_file)?;
    drop(work);
    append_keys(&mut tar, &data_dir.join(KEYS))?;
    let writer = tar.into_inner().map_err(io_err("finishing the archive"))?;
    let mut file = writer
        .into_inner()
        .map_err(|e| io_err("finishing the archive")(e.into_error()))?;
    file.flush().map_err(io_err("finishing the archive"))?;
    let size = file
        .stream_position()
        .map_err(io_err("finishing the archive"))?;
    file.rewind().map_err(io_err("finishing the archive"))?;
    Ok(Archive {
        file,
        size,
        manifest,
    })
}

fn append(
    tar: &mut tar::Builder<impl io::Write>,
    name: &str,
    mode: u32,
    mtime: u64,
    data: &[u8],
) -> Result<(), BackupError> {
    append_sized(tar, name, mode, mtime, data.len() as u64, data)
}

fn append_sized(
    tar: &mut tar::Builder<impl io::Write>,
    name: &str,
    mode: u32,
    mtime: u64,
    size: u64,
    data: impl Read,
) -> Result<(), BackupError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    tar.append_data(&mut h, name, data)
        .map_err(io_err(format!("adding {name} to the archive")))
}

/// `keys/` with its mode, then each regular file in it (sorted, dot-files left out) with its
/// mode. A key removed meanwhile (rotation deletes old keys) is simply not there.
fn append_keys(tar: &mut tar::Builder<impl io::Write>, dir: &Path) -> Result<(), BackupError> {
    let meta = match fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir.display().to_string())(e)),
    };
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(unix_now());
    tar.append_data(&mut h, format!("{KEYS}/"), io::empty())
        .map_err(io_err("adding keys/ to the archive"))?;
    let mut names: Vec<String> = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir.display().to_string()))? {
        let e = e.map_err(io_err(dir.display().to_string()))?;
        match e.file_name().into_string() {
            Ok(n) if !n.starts_with('.') => names.push(n),
            Ok(_) => {}
            Err(n) => {
                tracing::warn!(file = ?n, "backup: a file in keys/ whose name is not UTF-8 is left out")
            }
        }
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(path.display().to_string())(e)),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(path.display().to_string())(e)),
        };
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        append(
            tar,
            &format!("{KEYS}/{name}"),
            meta.mode() & 0o7777,
            mtime,
            &data,
        )?;
    }
    Ok(())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a data directory was not restored. Each is one line.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The target holds something already.
    #[error("--data-dir {0}: not empty; --restore fills only a new or empty directory (nothing was changed)")]
    NotEmpty(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a Berth backup, or holds something a backup never does.
    #[error("{file}: {reason} (nothing was restored)")]
    Refused {
        /// The archive.
        file: PathBuf,
        /// What is wrong, naming the entry.
        reason: String,
    },
    /// The restored database did not open.
    #[error("{file}: the database in it cannot be used: {source} (nothing was restored)")]
    Store {
        /// The archive.
        file: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
}

fn rio(path: &Path) -> impl FnOnce(io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuse a restore target that exists and is not an empty directory (nothing is changed).
///
/// # Errors
/// [`RestoreError::NotEmpty`], or the error reading it (not a directory, no permission).
pub fn check_restore_target(data_dir: &Path) -> Result<(), RestoreError> {
    match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(RestoreError::NotEmpty(data_dir.to_path_buf()))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(rio(data_dir)(e)),
    }
}

/// Fill the new or empty directory `data_dir` from the backup `archive` (see the module docs).
/// Returns the backup's manifest.
///
/// # Errors
/// See [`RestoreError`]; on any error `data_dir` is as it was.
pub fn restore(archive: &Path, data_dir: &Path) -> Result<Manifest, RestoreError> {
    check_restore_target(data_dir)?;
    let file = fs::File::open(archive).map_err(rio(archive))?;
    // Unpack next to the target when it does not exist (then one rename puts it in place), or
    // inside it when it does (an empty directory may be a mount point: rename would fail).
    let exists = data_dir.is_dir();
    let work_parent = if exists {
        data_dir.to_path_buf()
    } else {
        let parent = match data_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(rio(&parent))?;
        parent
    };
    let work = tempfile::Builder::new()
        .prefix(".berth-restore-")
        .tempdir_in(&work_parent)
        .map_err(rio(&work_parent))?;
    let manifest = unpack(io::BufReader::new(file), work.path()).map_err(|e| match e {
        Unpack::Refused(reason) => RestoreError::Refused {
            file: archive.to_path_buf(),
            reason,
        },
        Unpack::Io(path, source) => RestoreError::Io { path, source },
    })?;
    // The database opens (migrations of a backup from an older Berth apply here) and is the
    // instance the manifest names.
    let store_err = |source| RestoreError::Store {
        file: archive.to_path_buf(),
        source,
    };
    {
        let store = Store::open(work.path()).map_err(store_err)?;
        let id = store.instance_id().map_err(store_err)?;
        if id != manifest.instance {
            return Err(RestoreError::Refused {
                file: archive.to_path_buf(),
                reason: format!(
                    "the database's instance id {id:?} is not the manifest's {:?}",
                    manifest.instance
                ),
            });
        }
    }
    if exists {
        for e in fs::read_dir(work.path()).map_err(rio(work.path()))? {
            let e = e.map_err(rio(work.path()))?;
            let to = data_dir.join(e.file_name());
            fs::rename(e.path(), &to).map_err(rio(&to))?;
        }
        // `work` (now empty) is removed when dropped.
    } else {
        let path = work.keep();
        if let Err(e) = fs::rename(&path, data_dir) {
            let _ = fs::remove_dir_all(&path);
            return Err(rio(data_dir)(e));
        }
    }
    Ok(manifest)
}

enum Unpack {
    Refused(String),
    Io(PathBuf, io::Error),
}

/// What an archive entry may be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    Manifest,
    Database,
    KeysDir,
    Key(String),
}

/// The entry `name` of type `kind`, if a backup may hold it.
fn classify(name: &str, kind: tar::EntryType) -> Result<Item, String> {
    if name.starts_with('/') {
        return Err(format!("entry {name:?} has an absolute path"));
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.contains(&"..") {
        return Err(format!("entry {name:?} climbs out with \"..\""));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(format!("entry {name:?} is not a plain path"));
    }
    if kind.is_symlink() || kind.is_hard_link() {
        return Err(format!("entry {name:?} is a link"));
    }
    let file = kind.is_file();
    let dir = kind.is_dir();
    if !file && !dir {
        return Err(format!(
            "entry {name:?} is neither a regular file nor a directory"
        ));
    }
    match (parts.as_slice(), file) {
        ([MANIFEST], true) => Ok(Item::Manifest),
        ([DATABASE], true) => Ok(Item::Database),
        ([KEYS], false) => Ok(Item::KeysDir),
        ([KEYS, key], true) if !key.starts_with('.') => Ok(Item::Key((*key).to_string())),
        _ => Err(format!(
            "entry {name:?} is not part of a Berth backup (backup.json, berth.db, keys/)"
        )),
    }
}

/// Unpack a backup into the empty directory `dest`, checking every entry before writing it.
fn unpack(reader: impl Read, dest: &Path) -> Result<Manifest, Unpack> {
    let refused = |r: String| Unpack::Refused(r);
    let mut archive = tar::Archive::new(reader);
    let mut manifest: Option<Manifest> = None;
    let mut seen: HashSet<Item> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| refused(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| refused(format!("cannot read the archive: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw)
            .map_err(|_| refused("an entry's name is not UTF-8".to_string()))?;
        let item = classify(&name, entry.header().entry_type()).map_err(refused)?;
        if manifest.is_none() && item != Item::Manifest {
            return Err(refused(format!(
                "the first entry is {name:?}, not {MANIFEST}: not a Berth backup"
            )));
        }
        if !seen.insert(item.clone()) {
            return Err(refused(format!("entry {name:?} appears twice")));
        }
        let mode = entry.header().mode().unwrap_or(0o600);
        match item {
            Item::Manifest => {
                if entry.size() > MANIFEST_LIMIT {
                    return Err(refused(format!("{MANIFEST} is too large")));
                }
                let mut text = Vec::new();
                entry
                    .read_to_end(&mut text)
                    .map_err(|e| refused(format!("cannot read {MANIFEST}: {e}")))?;
                manifest = Some(check_manifest(&text).map_err(refused)?);
            }
            Item::Database => write_entry(&mut entry, &dest.join(DATABASE), 0o600)?,
            Item::KeysDir => make_keys_dir(dest)?,
            Item::Key(key) => {
                if !seen.contains(&Item::KeysDir) {
                    seen.insert(Item::KeysDir);
                    make_keys_dir(dest)?;
                }
                // The file's own mode, limited to its owner: keys are secrets.
                write_entry(&mut entry, &dest.join(KEYS).join(key), mode & 0o700)?;
            }
        }
    }
    let manifest = manifest.ok_or_else(|| refused("the archive is empty".to_string()))?;
    if !seen.contains(&Item::Database) {
        return Err(refused(format!("the archive holds no {DATABASE}")));
    }
    Ok(manifest)
}

fn check_manifest(text: &[u8]) -> Result<Manifest, String> {
    // The format version first, so that a newer layout gets the clear message.
    let v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("{MANIFEST} is not valid: {e}"))?;
    let format = v.get("format").and_then(serde_json::Value::as_u64);
    if format != Some(u64::from(FORMAT_VERSION)) {
        return Err(format!(
            "backup format {} is not the one this Berth ({}) reads ({FORMAT_VERSION})",
            format.map_or_else(|| "(none)".to_string(), |f| f.to_string()),
            env!("CARGO_PKG_VERSION")
        ));
    }
    let m: Manifest =
        serde_json::from_value(v).map_err(|e| format!("{MANIFEST} is not valid: {e}"))?;
    if m.schema_version > berth_store::SCHEMA_VERSION {
        return Err(format!(
            "the backup was made by a newer Berth ({}, schema {}); this one ({}) knows schemas up to {}",
            m.berth_version,
            m.schema_version,
            env!("CARGO_PKG_VERSION"),
            berth_store::SCHEMA_VERSION
        ));
    }
    Ok(m)
}

fn make_keys_dir(dest: &Path) -> Result<(), Unpack> {
    let dir = dest.join(KEYS);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Unpack::Io(dir, e))
}

fn write_entry(entry: &mut impl Read, path: &Path, mode: u32) -> Result<(), Unpack> {
    let fail = |e| Unpack::Io(path.to_path_buf(), e);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    io::copy(entry, &mut f).map_err(fail)?;
    f.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A data directory with a database, two keys, an admin token and a build workspace.
    fn data_dir() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.instance_id().unwrap();
        store
            .create_revision("shop", "apply", "created", &serde_json::json!({}))
            .unwrap();
        let keys = dir.path().join(KEYS);
        fs::DirBuilder::new().mode(0o700).create(&keys).unwrap();
        for (name, mode) in [("1-aa.pem", 0o600), ("2-bb.pem", 0o640)] {
            fs::write(keys.join(name), format!("key {name}")).unwrap();
            fs::set_permissions(keys.join(name), fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(keys.join(".3-cc.pem.tmp"), "half a key").unwrap();
        fs::write(dir.path().join("admin.token"), "berth_secret").unwrap();
        fs::create_dir_all(dir.path().join("builds/ws")).unwrap();
        fs::write(dir.path().join("builds/ws/f"), "x").unwrap();
        (dir, store)
    }

    fn names(archive: &mut Archive) -> Vec<(String, u32)> {
        let mut buf = Vec::new();
        archive.file.read_to_end(&mut buf).unwrap();
        assert_eq!(buf.len() as u64, archive.size);
        tar::Archive::new(&buf[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_backup_holds_the_manifest_the_database_and_the_keys_and_nothing_else() {
        let (dir, store) = data_dir();
        let mut a = write_backup(&store, dir.path()).unwrap();
        assert_eq!(a.manifest.instance, store.instance_id().unwrap());
        assert_eq!(a.manifest.format, FORMAT_VERSION);
        assert_eq!(a.manifest.schema_version, berth_store::SCHEMA_VERSION);
        assert_eq!(
            names(&mut a),
            vec![
                ("backup.json".to_string(), 0o600),
                ("berth.db".to_string(), 0o600),
                ("keys/".to_string(), 0o700),
                ("keys/1-aa.pem".to_string(), 0o600),
                ("keys/2-bb.pem".to_string(), 0o640),
            ]
        );
        // No work directory or temporary file is left in the data directory.
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(a.file_name().starts_with("berth-backup-"));
    }

    fn backup_file(dir: &Path, store: &Store) -> (tempfile::TempDir, PathBuf) {
        let mut a = write_backup(store, dir).unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("b.tar");
        let mut f = fs::File::create(&path).unwrap();
        io::copy(&mut a.file, &mut f).unwrap();
        (out, path)
    }

    #[test]
    fn a_restore_fills_a_new_or_empty_directory_with_modes_kept() {
        let (dir, store) = data_dir();
        let (_out, tar) = backup_file(dir.path(), &store);
        let parent = tempfile::tempdir().unwrap();
        for target in [
            parent.path().join("new/nested"),
            parent.path().join("empty"),
        ] {
            if target.ends_with("empty") {
                fs::create_dir(&target).unwrap();
            }
            let m = restore(&tar, &target).unwrap();
            assert_eq!(m.instance, store.instance_id().unwrap());
            let restored = Store::open(&target).unwrap();
            assert_eq!(restored.instance_id().unwrap(), m.instance);
            assert_eq!(restored.get_app("shop").unwrap().revision, 1);
            let mode = |p: &str| fs::metadata(target.join(p)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode("keys"), 0o700);
            assert_eq!(mode("keys/1-aa.pem"), 0o600);
            assert_eq!(mode("keys/2-bb.pem"), 0o600, "group bits are dropped");
            assert_eq!(
                fs::read_to_string(target.join("keys/1-aa.pem")).unwrap(),
                "key 1-aa.pem"
            );
            assert!(!target.join("admin.token").exists());
            assert!(!target.join("builds").exists());
            assert!(!target.join("keys/.3-cc.pem.tmp").exists());
            // Nothing of the work directory is left beside or inside the target.
            for d in [parent.path(), target.as_path()] {
                for e in fs::read_dir(d).unwrap() {
                    let n = e.unwrap().file_name().to_string_lossy().into_owned();
                    assert!(
                        !n.starts_with(".berth-restore-"),
                        "{n} left in {}",
                        d.display()
                    );
                }
            }
        }
    }

    #[test]
    fn a_non_empty_target_is_refused_and_left_alone() {
        let (dir, store) = data_dir();
        let (_out, tar) = backup_file(dir.path(), &store);
        let target = tempfile::tempdir().unwrap();
        fs::write(target.path().join("something"), "mine").unwrap();
        let e = restore(&tar, target.path()).unwrap_err();
        assert!(matches!(e, RestoreError::NotEmpty(_)), "{e}");
        assert!(e.to_string().contains("not empty"), "{e}");
        let left: Vec<_> = fs::read_dir(target.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    /// A tar built by hand: (name, type, body), names written raw (no checks).
    fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, body) in entries {
            let mut h = tar::Header::new_gnu();
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            b.append(&h, *body).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn manifest_json(format: u32, schema: u32) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format": format, "berth_version": "0.0.0", "created_at": "2026-01-01T00:00:00Z",
            "instance": "abc", "schema_version": schema
        }))
        .unwrap()
    }

    #[test]
    fn archives_a_backup_never_holds_are_refused_and_nothing_is_written() {
        use tar::EntryType as T;
        let good = manifest_json(FORMAT_VERSION, 1);
        let format2 = manifest_json(2, 1);
        let newer = manifest_json(1, 9999);
        type Entries<'a> = Vec<(&'a str, T, &'a [u8])>;
        let cases: Vec<(Entries, &str)> = vec![
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("../x", T::Regular, b"x"),
                ],
                "\"..\"",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("keys/../../x", T::Regular, b"x"),
                ],
                "\"..\"",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("/etc/x", T::Regular, b"x"),
                ],
                "absolute",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("keys/a.pem", T::Symlink, b""),
                ],
                "link",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("berth.db", T::Link, b""),
                ],
                "link",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("admin.token", T::Regular, b"x"),
                ],
                "not part",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("keys/sub/a.pem", T::Regular, b"x"),
                ],
                "not part",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("keys/fifo", T::Fifo, b""),
                ],
                "neither",
            ),
            (
                vec![
                    ("backup.json", T::Regular, &good),
                    ("berth.db", T::Regular, b""),
                    ("berth.db", T::Regular, b""),
                ],
                "twice",
            ),
            (vec![("berth.db", T::Regular, b"")], "first entry"),
            (vec![("backup.json", T::Regular, &good)], "no berth.db"),
            (
                vec![("backup.json", T::Regular, &format2)],
                "backup format 2",
            ),
            (vec![("backup.json", T::Regular, &newer)], "newer Berth"),
            (vec![("backup.json", T::Regular, b"{not json")], "not valid"),
            (vec![], "empty"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (entries, want)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.tar"));
            fs::write(&path, raw_tar(entries)).unwrap();
            let parent = tempfile::tempdir().unwrap();
            let target = parent.path().join("data");
            let e = restore(&path, &target).unwrap_err().to_string();
            assert!(e.contains(want), "case {i}: {e:?} lacks {want:?}");
            assert!(!e.contains('\n'), "case {i}: not one line: {e:?}");
            assert!(!target.exists(), "case {i}: the target was made");
            assert_eq!(
                fs::read_dir(parent.path()).unwrap().count(),
                0,
                "case {i}: something was left"
            );
            assert!(!parent.path().parent().unwrap().join("x").exists());
        }
    }

    #[test]
    fn a_database_of_another_instance_than_the_manifest_is_refused() {
        let (dir, store) = data_dir();
        let db_dir = tempfile::tempdir().unwrap();
        store.backup_to(&db_dir.path().join("berth.db")).unwrap();
        let db = fs::read(db_dir.path().join("berth.db")).unwrap();
        let m = manifest_json(FORMAT_VERSION, 1);
        let path = dir.path().join("other.tar");
        fs::write(
            &path,
            raw_tar(&[
                ("backup.json", tar::EntryType::Regular, &m),
                ("berth.db", tar::EntryType::Regular, &db),
            ]),
        )
        .unwrap();
        let parent = tempfile::tempdir().unwrap();
        let e = restore(&path, &parent.path().join("d"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("instance id"), "{e}");
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
