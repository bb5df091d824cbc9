//! Which credential a command sends, and the file `berth login` keeps sessions in
//! ([docs/access.md](../../../docs/access.md), "The CLI").
//!
//! The credential used, first found wins: `--token` > `BERTH_TOKEN` > the credentials file's
//! entry for the server (skipped once expired) > `<data-dir>/admin.token` when the server is on
//! this machine (a loopback address or `localhost`), the data directory being `BERTH_DATA_DIR` or
//! the server's default ([`default_data_dir`]).
//!
//! The credentials file is `$XDG_CONFIG_HOME/berth/credentials.json` (else
//! `~/.config/berth/credentials.json`): one entry per server, keyed by the server's normalised
//! URL ([`server_key`]: `127.0.0.1:7400` and `http://127.0.0.1:7400/` are one server). Rules it
//! keeps: the file is created with mode 0600 (its directory 0700) and replaced atomically (a
//! temporary file in the same directory, then a rename), so a reader never sees half a file and
//! no other user ever can; a token never appears in an error message.
//!
//! Everything here reads the process environment only through [`Env`], so tests pass their own.

use anyhow::{anyhow, Context as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The environment token resolution reads (a test builds its own).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `BERTH_TOKEN`.
    pub berth_token: Option<String>,
    /// `BERTH_DATA_DIR`.
    pub berth_data_dir: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
}

impl Env {
    /// This process's environment; empty variables count as unset.
    #[must_use]
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Env {
            berth_token: var("BERTH_TOKEN").map(|v| v.to_string_lossy().into_owned()),
            berth_data_dir: var("BERTH_DATA_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            xdg_data_home: var("XDG_DATA_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }

    /// Where `berth server` keeps its state unless told otherwise: `$XDG_DATA_HOME/berth`, else
    /// `~/.local/share/berth`, else `./berth-data`.
    #[must_use]
    pub fn default_data_dir(&self) -> PathBuf {
        if let Some(d) = &self.xdg_data_home {
            return d.join("berth");
        }
        match &self.home {
            Some(h) => h.join(".local/share/berth"),
            None => PathBuf::from("berth-data"),
        }
    }

    /// The credentials file: `$XDG_CONFIG_HOME/berth/credentials.json`, else
    /// `~/.config/berth/credentials.json`; none without either variable.
    #[must_use]
    pub fn credentials_path(&self) -> Option<PathBuf> {
        let config = match (&self.xdg_config_home, &self.home) {
            (Some(x), _) => x.clone(),
            (None, Some(h)) => h.join(".config"),
            (None, None) => return None,
        };
        Some(config.join("berth").join("credentials.json"))
    }
}

/// The server's default data directory, read from this process's environment (one definition
/// for `berth server` and the CLI, which looks there for `admin.token`).
#[must_use]
pub fn default_data_dir() -> PathBuf {
    Env::from_process().default_data_dir()
}

/// The local administrator token file inside a data directory (written by `berth server`).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A server URL as the credentials file keys it: scheme (`http` when none is given), host in
/// lower case, the port unless it is the scheme's default, no trailing slash.
pub fn server_key(server: &str) -> anyhow::Result<String> {
    let url = parse_server(server)?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow!("{server:?}: the server URL has no host"))?;
    let mut key = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        key.push_str(&format!(":{port}"));
    }
    key.push_str(url.path().trim_end_matches('/'));
    Ok(key)
}

fn parse_server(server: &str) -> anyhow::Result<reqwest::Url> {
    let with_scheme = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| anyhow!("{server:?} is not a server URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("{server:?}: the server URL must be http:// or https://");
    }
    Ok(url)
}

/// Whether the server runs on this machine: a loopback address or `localhost`.
#[must_use]
pub fn is_local(server: &str) -> bool {
    let Ok(url) = parse_server(server) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// One server's session, as `berth login` stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The bearer token (secret).
    pub token: String,
    /// The token's name among the user's tokens (`berth api-token ls`).
    pub name: String,
    pub user: String,
    /// RFC 3339.
    pub expires_at: String,
}

impl Entry {
    /// Whether `expires_at` has passed at `now`. An unreadable time counts as not expired: the
    /// server decides.
    #[must_use]
    pub fn expired(&self, now: time::OffsetDateTime) -> bool {
        time::OffsetDateTime::parse(
            &self.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .is_ok_and(|t| t <= now)
    }
}

/// The credentials file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Server key ([`server_key`]) → its session.
    #[serde(default)]
    pub servers: BTreeMap<String, Entry>,
    /// Server key → the CLI's current team there (`berth team use`), kept apart from the
    /// session so that it outlives a logout and applies to any credential.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teams: BTreeMap<String, String>,
}

impl Credentials {
    /// Read `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> anyhow::Result<Credentials> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow!(
                    "{} is not a Berth credentials file ({e}); remove it and log in again",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Write to `path` atomically, mode 0600, creating its directory (mode 0700) if needed.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| anyhow!("{}: no directory", path.display()))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let json = serde_json::to_vec_pretty(self)?;
        // tempfile creates the file with mode 0600 and a random name in the same directory, so
        // the rename below is atomic and the secret is never readable by anyone else.
        let mut tmp = tempfile::Builder::new()
            .prefix(".credentials")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        tmp.write_all(&json)
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        tmp.persist(path)
            .map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
        Ok(())
    }

    /// The server's entry.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.servers.get(key)
    }
}

/// The team commands act in: `flag` (`--team`, or `BERTH_TEAM` through clap), else the current
/// team `berth team use` kept for `server`; none: the server decides (the token's team, or the
/// caller's only team).
pub fn current_team(server: &str, flag: Option<&str>, env: &Env) -> anyhow::Result<Option<String>> {
    if let Some(t) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_string()));
    }
    let Some(path) = env.credentials_path() else {
        return Ok(None);
    };
    Ok(Credentials::load(&path)?
        .teams
        .get(&server_key(server)?)
        .cloned())
}

/// Keep `team` as the current team for `server` (none: forget it).
pub fn set_current_team(server: &str, team: Option<&str>, env: &Env) -> anyhow::Result<PathBuf> {
    let path = env.credentials_path().ok_or_else(|| {
        anyhow!("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the current team")
    })?;
    let mut c = Credentials::load(&path)?;
    let key = server_key(server)?;
    match team {
        Some(t) => {
            c.teams.insert(key, t.to_string());
        }
        None => {
            c.teams.remove(&key);
        }
    }
    c.save(&path)?;
    Ok(path)
}

/// Where the credential a command sends came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--token`.
    Flag,
    /// `BERTH_TOKEN`.
    Env,
    /// The credentials file's entry for the server.
    Session(PathBuf),
    /// `<data-dir>/admin.token` of a server on this machine.
    AdminToken(PathBuf),
}

/// The credential for a server, and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub token: String,
    pub source: Source,
}

/// The credential to send to `server` (module docs for the order); none when nothing applies.
pub fn resolve(
    server: &str,
    flag: Option<&str>,
    env: &Env,
    now: time::OffsetDateTime,
) -> anyhow::Result<Option<Resolved>> {
    if let Some(t) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(Resolved {
            token: t.to_string(),
            source: Source::Flag,
        }));
    }
    if let Some(t) = env.berth_token.as_deref().map(str::trim) {
        if !t.is_empty() {
            return Ok(Some(Resolved {
                token: t.to_string(),
                source: Source::Env,
            }));
        }
    }
    if let Some(path) = env.credentials_path() {
        let creds = Credentials::load(&path)?;
        if let Some(e) = creds.get(&server_key(server)?) {
            if !e.expired(now) {
                return Ok(Some(Resolved {
                    token: e.token.clone(),
                    source: Source::Session(path),
                }));
            }
        }
    }
    if is_local(server) {
        let data_dir = env
            .berth_data_dir
            .clone()
            .unwrap_or_else(|| env.default_data_dir());
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        // Absent (no server ran there) or unreadable (another user's server): not ours to use.
        if let Ok(text) = std::fs::read_to_string(&path) {
            let token = text.trim();
            if !token.is_empty() {
                return Ok(Some(Resolved {
                    token: token.to_string(),
                    source: Source::AdminToken(path),
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn now() -> time::OffsetDateTime {
        time::macros::datetime!(2026-06-01 12:00 UTC)
    }

    fn entry(token: &str, expires_at: &str) -> Entry {
        Entry {
            token: token.into(),
            name: "login-1".into(),
            user: "bob".into(),
            expires_at: expires_at.into(),
        }
    }

    /// An environment rooted in a fresh directory: config and data under it, no token.
    fn env_in(dir: &Path) -> Env {
        Env {
            home: Some(dir.join("home")),
            ..Env::default()
        }
    }

    fn write_admin_token(data_dir: &Path, token: &str) {
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::write(data_dir.join(ADMIN_TOKEN_FILE), format!("{token}\n")).unwrap();
    }

    fn store(env: &Env, server: &str, e: Entry) {
        let path = env.credentials_path().unwrap();
        let mut c = Credentials::load(&path).unwrap();
        c.servers.insert(server_key(server).unwrap(), e);
        c.save(&path).unwrap();
    }

    fn got(server: &str, flag: Option<&str>, env: &Env) -> Option<(String, Source)> {
        resolve(server, flag, env, now())
            .unwrap()
            .map(|r| (r.token, r.source))
    }

    #[test]
    fn server_urls_normalise_to_one_key() {
        for same in [
            "127.0.0.1:7400",
            "http://127.0.0.1:7400",
            "http://127.0.0.1:7400/",
            "HTTP://127.0.0.1:7400",
        ] {
            assert_eq!(server_key(same).unwrap(), "http://127.0.0.1:7400", "{same}");
        }
        assert_eq!(
            server_key("https://Berth.Example.com:443/").unwrap(),
            "https://berth.example.com"
        );
        assert_eq!(
            server_key("http://localhost:80").unwrap(),
            "http://localhost"
        );
        assert_eq!(server_key("[::1]:7400").unwrap(), "http://[::1]:7400");
        assert_eq!(
            server_key("https://h.example/berth/").unwrap(),
            "https://h.example/berth"
        );
        assert_ne!(
            server_key("https://127.0.0.1:7400").unwrap(),
            server_key("127.0.0.1:7400").unwrap()
        );
        for bad in ["", "http://", "ftp://h", "http://h:99999"] {
            assert!(server_key(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn local_servers_are_loopback_or_localhost() {
        for local in [
            "127.0.0.1:7400",
            "http://127.0.0.2:1",
            "http://[::1]:7400",
            "http://LOCALHOST:7400",
            "https://localhost",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "http://10.0.0.1:7400",
            "berth.example.com",
            "http://localhost.example.com",
            "http://0.0.0.0:7400",
            "nonsense://",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }

    #[test]
    fn precedence_flag_then_env_then_session_then_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_in(dir.path());
        let server = "http://127.0.0.1:7400";
        assert_eq!(got(server, None, &env), None);

        write_admin_token(&env.default_data_dir(), "local-secret");
        assert_eq!(
            got(server, None, &env),
            Some((
                "local-secret".into(),
                Source::AdminToken(env.default_data_dir().join(ADMIN_TOKEN_FILE))
            ))
        );

        store(
            &env,
            "127.0.0.1:7400",
            entry("session", "2026-06-01T13:00:00Z"),
        );
        assert_eq!(
            got(server, None, &env),
            Some((
                "session".into(),
                Source::Session(env.credentials_path().unwrap())
            ))
        );

        env.berth_token = Some("from-env".into());
        assert_eq!(
            got(server, None, &env),
            Some(("from-env".into(), Source::Env))
        );

        assert_eq!(
            got(server, Some("from-flag"), &env),
            Some(("from-flag".into(), Source::Flag))
        );
        // An empty flag or variable is no credential.
        env.berth_token = Some(String::new());
        assert_eq!(got(server, Some(" "), &env).unwrap().0, "session");
    }

    #[test]
    fn admin_token_only_for_a_local_server_from_berth_data_dir_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_in(dir.path());
        write_admin_token(&env.default_data_dir(), "default-dir");
        assert_eq!(got("berth.example.com:7400", None, &env), None);
        assert_eq!(got("localhost:7400", None, &env).unwrap().0, "default-dir");

        // XDG_DATA_HOME moves the default, as it does for `berth server`.
        env.xdg_data_home = Some(dir.path().join("xdg-data"));
        assert_eq!(env.default_data_dir(), dir.path().join("xdg-data/berth"));
        assert_eq!(got("localhost:7400", None, &env), None);

        let custom = dir.path().join("custom");
        write_admin_token(&custom, "custom-dir");
        env.berth_data_dir = Some(custom);
        assert_eq!(got("[::1]:7400", None, &env).unwrap().0, "custom-dir");
    }

    #[test]
    fn an_expired_session_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        store(&env, "127.0.0.1:7400", entry("old", "2026-06-01T11:59:59Z"));
        assert_eq!(got("127.0.0.1:7400", None, &env), None);
        write_admin_token(&env.default_data_dir(), "local");
        assert_eq!(got("127.0.0.1:7400", None, &env).unwrap().0, "local");
        // Another server's session is not this one's.
        store(
            &env,
            "127.0.0.1:7401",
            entry("other", "2027-01-01T00:00:00Z"),
        );
        assert_eq!(got("127.0.0.1:7400", None, &env).unwrap().0, "local");
        assert!(!entry("x", "2026-06-01T12:00:01+00:00").expired(now()));
        assert!(!entry("x", "garbage").expired(now()));
    }

    #[test]
    fn the_file_is_0600_in_a_0700_directory_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            xdg_config_home: Some(dir.path().join("config")),
            home: Some(dir.path().join("home")),
            ..Env::default()
        };
        let path = env.credentials_path().unwrap();
        assert_eq!(path, dir.path().join("config/berth/credentials.json"));
        store(&env, "a:1", entry("one", "2027-01-01T00:00:00Z"));
        store(&env, "b:2", entry("two", "2027-01-01T00:00:00Z"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let c = Credentials::load(&path).unwrap();
        assert_eq!(
            c.servers.keys().collect::<Vec<_>>(),
            ["http://a:1", "http://b:2"]
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["credentials.json"]);
    }

    #[test]
    fn a_corrupt_file_is_a_one_line_error_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        let path = env.credentials_path().unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "berth_secret-looking-text").unwrap();
        let e = resolve("127.0.0.1:7400", None, &env, now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a Berth credentials file"), "{e}");
        assert!(!e.contains("berth_secret"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn the_current_team_is_kept_per_server_and_the_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path());
        let a = "http://127.0.0.1:7400";
        let b = "https://berth.example:7400";
        assert_eq!(current_team(a, None, &env).unwrap(), None);
        store(&env, a, entry("t1", "2026-06-02T00:00:00Z"));
        set_current_team("127.0.0.1:7400/", Some("shop"), &env).unwrap();
        assert_eq!(
            current_team(a, None, &env).unwrap().as_deref(),
            Some("shop")
        );
        assert_eq!(current_team(b, None, &env).unwrap(), None);
        assert_eq!(
            current_team(a, Some("ops"), &env).unwrap().as_deref(),
            Some("ops")
        );
        // The session is untouched, and the file stays private.
        let path = env.credentials_path().unwrap();
        assert_eq!(got(a, None, &env).unwrap().0, "t1");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        set_current_team(a, None, &env).unwrap();
        assert_eq!(current_team(a, None, &env).unwrap(), None);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("teams"));
    }
}
