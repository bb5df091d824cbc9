//! Environments (docs/environments.md): a team's named places its applications run in.
//!
//! Rules it keeps:
//! - An application is in environment E when its global name says so
//!   (`berth_core::team::app_global`): nothing here links applications to environments, and
//!   `dev` (every team's, never stored) keeps today's names.
//! - Recycling selects applications by their environment's global names only, so an expiring
//!   environment never touches another's objects. It removes them the way `berth rm` does (the
//!   reconciler stops containers and removes networks and, unless kept, volumes; the routes leave
//!   the table with the application), then forgets the row; it is audited and announced.
//! - Teardown is not optional once the TTL ran out: an expiring environment's applications are
//!   marked for removal even when they serve a market entry (`env rm` by hand refuses with
//!   `in_use`, as `berth rm` does).
//! - An application left in an environment that no longer exists (an apply that raced the
//!   teardown) is removed by the next sweep.

use crate::error::CpError;
use crate::events::Level;
use crate::{quota, ControlPlane, Inner};
use berth_core::api::{EnvRequest, EnvView};
use berth_core::team::{self, DEV_ENV};
use berth_store::{AuditRecord, EnvCreate, EnvRecord, EnvRefusal};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the recycler looks for expired environments.
pub const RECYCLE_EVERY: Duration = Duration::from_secs(2);
/// The shortest TTL.
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// The longest TTL (a year): larger numbers are typos.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parse a TTL: one or more `<number><unit>` with units `s`, `m`, `h`, `d` (`90m`, `1h30m`,
/// `7d`), between [`MIN_TTL`] and [`MAX_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, CpError> {
    let bad = || {
        CpError::InvalidArgument(format!(
            "invalid TTL {text:?}: use e.g. 10s, 90m, 24h, 7d (at least 10s, at most 366d)"
        ))
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut secs: u64 = 0;
    while !rest.is_empty() {
        let n_len = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..n_len].parse().map_err(|_| bad())?;
        let unit = rest[n_len..].chars().next().ok_or_else(bad)?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        secs = n
            .checked_mul(scale)
            .and_then(|s| secs.checked_add(s))
            .ok_or_else(bad)?;
        rest = &rest[n_len + 1..];
    }
    let d = Duration::from_secs(secs);
    if d < MIN_TTL || d > MAX_TTL {
        return Err(bad());
    }
    Ok(d)
}

/// Parse a port block `LO-HI` (1024..=65535, LO <= HI).
pub fn parse_ports(text: &str) -> Result<(u16, u16), CpError> {
    let bad = || {
        CpError::InvalidArgument(format!(
            "invalid port block {text:?}: use LO-HI, e.g. 21000-21099 (ports 1024-65535)"
        ))
    };
    let (lo, hi) = text.trim().split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// Where a route of the global application `app` with Compose host `host` is served
/// (docs/environments.md): in `dev` as written; in environment E a host becomes `E.<host>`,
/// and a route without a host matches the hosts that start with `E.` (the routing table's
/// `E.*`).
#[must_use]
pub fn route_host(app: &str, host: Option<&str>) -> Option<String> {
    let env = team::env_of(app);
    match host {
        _ if env == DEV_ENV => host.map(str::to_owned),
        Some(h) => Some(format!("{env}.{h}")),
        None => Some(format!("{env}.*")),
    }
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn ms_after(d: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_or_else(
        |_| String::new(),
        |t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        },
    )
}

fn view(e: &EnvRecord, apps: Vec<String>) -> EnvView {
    let now = now_ms();
    EnvView {
        name: e.name.clone(),
        created_at: Some(e.created_at.clone()),
        created_by: Some(e.created_by.clone()),
        expires_at: e.expires_at.map(rfc3339_ms),
        expires_in_secs: e
            .expires_at
            .map(|t| u64::try_from((t - now).max(0) / 1000).unwrap_or(0)),
        ports: e.ports.map(|(lo, hi)| format!("{lo}-{hi}")),
        protected: e.protected,
        keep_volumes: e.keep_volumes,
        #[allow(clippy::cast_precision_loss)]
        cpus: e.cpus_milli.map(|m| m as f64 / 1000.0),
        memory_bytes: e.memory_bytes,
        apps,
    }
}

fn dev_view(apps: Vec<String>) -> EnvView {
    EnvView {
        name: DEV_ENV.into(),
        created_at: None,
        created_by: None,
        expires_at: None,
        expires_in_secs: None,
        ports: None,
        protected: false,
        keep_volumes: false,
        cpus: None,
        memory_bytes: None,
        apps,
    }
}

fn check_name(name: &str) -> Result<(), CpError> {
    if team::valid_env_name(name) {
        Ok(())
    } else {
        Err(CpError::InvalidArgument(format!(
            "invalid environment name {name:?}: use 1-40 lowercase letters, digits and '-'"
        )))
    }
}

impl ControlPlane {
    /// Does `team`'s environment `env` exist (and is it not past its expiry)? `dev` always does.
    pub fn env_exists(&self, team: &str, env: &str) -> Result<bool, CpError> {
        if env == DEV_ENV {
            return Ok(true);
        }
        Ok(self
            .inner
            .store
            .env(team, env)?
            .is_some_and(|e| e.expires_at.is_none_or(|t| t > now_ms())))
    }

    /// `env_not_found` unless the environment of the global application name `app` exists.
    pub(crate) fn check_env_of(&self, app: &str) -> Result<(), CpError> {
        let (t, env, _) = team::split_app(app);
        if self.env_exists(t, env)? {
            Ok(())
        } else {
            Err(CpError::EnvNotFound(env.to_string()))
        }
    }

    /// The global names of the applications in `team`'s environment `env` (removed ones too,
    /// while they are being torn down, when `deleting`).
    pub(crate) fn env_apps(
        &self,
        team: &str,
        env: &str,
        deleting: bool,
    ) -> Result<Vec<String>, CpError> {
        Ok(self
            .inner
            .store
            .list_apps()?
            .into_iter()
            .filter(|a| deleting || !a.deleting)
            .map(|a| a.name)
            .filter(|n| {
                let (t, e, _) = team::split_app(n);
                t == team && e == env
            })
            .collect())
    }

    /// Create an environment of `team`.
    pub fn create_env(
        &self,
        team: &str,
        created_by: &str,
        req: &EnvRequest,
    ) -> Result<EnvView, CpError> {
        check_name(&req.name)?;
        if req.name == DEV_ENV {
            return Err(CpError::EnvExists(req.name.clone()));
        }
        let ttl = req.ttl.as_deref().map(parse_ttl).transpose()?;
        let ports = req.ports.as_deref().map(parse_ports).transpose()?;
        let cpus_milli = req.cpus.map(quota::parse_cpus).transpose()?;
        let memory_bytes = req.memory.as_deref().map(quota::parse_memory).transpose()?;
        let source = match req.from.as_deref() {
            Some(from) => {
                if !self.env_exists(team, from)? {
                    return Err(CpError::EnvNotFound(from.into()));
                }
                self.env_apps(team, from, false)?
            }
            None => Vec::new(),
        };
        let rec = self.inner.store.create_env(&EnvCreate {
            team: team.into(),
            name: req.name.clone(),
            created_by: created_by.into(),
            expires_at: ttl.map(ms_after),
            ports,
            block_from: Some(self.inner.config.port_range),
            protected: req.protected,
            keep_volumes: req.keep_volumes,
            cpus_milli,
            memory_bytes,
        })?;
        match rec {
            Ok(e) => {
                let cloned = match self.clone_into(&e, req.from.as_deref(), &source) {
                    Ok(cloned) => cloned,
                    Err(err) => {
                        // All or nothing: what was cloned goes with the environment.
                        let apps = self.env_apps(team, &req.name, true)?;
                        self.tear_down(&e, &apps, false)?;
                        return Err(err);
                    }
                };
                self.inner.events.emit_in(
                    Some(team),
                    "env_created",
                    Level::Info,
                    &req.name,
                    format!(
                        "environment {:?} created by {created_by}{}",
                        req.name,
                        e.expires_at
                            .map(|t| format!(", expires {}", rfc3339_ms(t)))
                            .unwrap_or_default()
                    ),
                );
                Ok(view(&e, cloned))
            }
            Err(EnvRefusal::Exists) => Err(CpError::EnvExists(req.name.clone())),
            Err(EnvRefusal::PortHeld(l)) => {
                let holder = match team::local_name(team, &l.app) {
                    Some(local) => format!("application {:?}", team::split_app(local).2),
                    None => "another team".to_string(),
                };
                Err(CpError::PortConflict(format!(
                    "ports {} include host port {}/{} held by {holder} in environment {:?}",
                    req.ports.as_deref().unwrap_or_default(),
                    l.port,
                    l.protocol,
                    l.env
                )))
            }
            Err(EnvRefusal::NoFreeBlock) => {
                let (lo, hi) = self.inner.config.port_range;
                Err(CpError::NoFreePort(format!(
                    "no free block of {} host ports left in the server's --port-range {lo}-{hi} (name one with --ports LO-HI)",
                    berth_store::ENV_PORT_BLOCK
                )))
            }
            Err(EnvRefusal::PortsOverlap(o)) => {
                let holder = if o.team == team {
                    format!("environment {:?}", o.name)
                } else {
                    "another team".to_string()
                };
                let (lo, hi) = o.ports.unwrap_or_default();
                Err(CpError::PortConflict(format!(
                    "ports {} overlap {lo}-{hi}, held by {holder}",
                    req.ports.as_deref().unwrap_or_default()
                )))
            }
        }
    }

    /// `team`'s environments: `dev` first, then by name.
    pub fn envs(&self, team: &str) -> Result<Vec<EnvView>, CpError> {
        let mut out = vec![dev_view(Vec::new())];
        out.extend(
            self.inner
                .store
                .envs(Some(team))?
                .iter()
                .map(|e| view(e, Vec::new())),
        );
        Ok(out)
    }

    /// One environment with its applications (by their names in the environment).
    pub fn env(&self, team: &str, name: &str) -> Result<EnvView, CpError> {
        let apps = |env: &str| -> Result<Vec<String>, CpError> {
            Ok(self
                .env_apps(team, env, false)?
                .iter()
                .map(|g| team::split_app(g).2.to_string())
                .collect())
        };
        if name == DEV_ENV {
            return Ok(dev_view(apps(DEV_ENV)?));
        }
        let e = self
            .inner
            .store
            .env(team, name)?
            .ok_or_else(|| CpError::EnvNotFound(name.into()))?;
        Ok(view(&e, apps(name)?))
    }

    /// The environment now expires `ttl` from now.
    pub fn extend_env(&self, team: &str, name: &str, ttl: &str) -> Result<EnvView, CpError> {
        if name == DEV_ENV {
            return Err(CpError::InvalidArgument(
                "environment \"dev\" never expires".into(),
            ));
        }
        let ttl = parse_ttl(ttl)?;
        if !self.env_exists(team, name)?
            || !self
                .inner
                .store
                .set_env_expiry(team, name, Some(ms_after(ttl)))?
        {
            return Err(CpError::EnvNotFound(name.into()));
        }
        self.env(team, name)
    }

    /// Remove an environment: its applications are marked for removal (their volumes too,
    /// unless `keep_volumes`, or the environment was created with `--keep-volumes`) and the row
    /// goes. Refused with `in_use`, changing nothing, while one of them serves a market entry
    /// another application subscribes to.
    pub fn remove_env(
        &self,
        team: &str,
        name: &str,
        keep_volumes: bool,
    ) -> Result<(Vec<String>, bool), CpError> {
        if name == DEV_ENV {
            return Err(CpError::InvalidArgument(
                "environment \"dev\" cannot be removed (remove its applications instead)".into(),
            ));
        }
        let e = self
            .inner
            .store
            .env(team, name)?
            .ok_or_else(|| CpError::EnvNotFound(name.into()))?;
        let apps = self.env_apps(team, name, false)?;
        for a in &apps {
            self.refuse_if_provider(a)?;
        }
        let keep = keep_volumes || e.keep_volumes;
        self.tear_down(&e, &apps, keep)?;
        self.inner.events.emit_in(
            Some(team),
            "env_removed",
            Level::Info,
            name,
            format!(
                "environment {name:?} removed: {} application(s) being removed{}",
                apps.len(),
                if keep { ", volumes kept" } else { "" }
            ),
        );
        Ok((
            apps.iter()
                .map(|g| team::split_app(g).2.to_string())
                .collect(),
            keep,
        ))
    }

    pub(crate) fn tear_down(
        &self,
        e: &EnvRecord,
        apps: &[String],
        keep: bool,
    ) -> Result<(), CpError> {
        for a in apps {
            match self.inner.store.mark_deleting(a, !keep) {
                Ok(()) | Err(berth_store::StoreError::AppNotFound(_)) => self.inner.wake(a),
                Err(err) => return Err(err.into()),
            }
        }
        self.inner.store.delete_env(&e.team, &e.name)?;
        Ok(())
    }

    /// One recycling pass: tear down every environment past its expiry, and remove
    /// applications left in environments that no longer exist. Returns the environments
    /// recycled.
    pub fn recycle_envs(&self) -> Result<Vec<(String, String)>, CpError> {
        let now = now_ms();
        let envs = self.inner.store.envs(None)?;
        let mut done = Vec::new();
        for e in envs
            .iter()
            .filter(|e| e.expires_at.is_some_and(|t| t <= now))
        {
            let apps = self.env_apps(&e.team, &e.name, false)?;
            self.tear_down(e, &apps, e.keep_volumes)?;
            let names: Vec<&str> = apps.iter().map(|g| team::split_app(g).2).collect();
            self.inner.store.append_audit(&AuditRecord {
                time: rfc3339_ms(now_ms()),
                user: Some("berth".into()),
                team: Some(e.team.clone()),
                action: "env.expire".into(),
                object: format!("env {}", e.name),
                source: "recycler".into(),
                status: 200,
                ..AuditRecord::default()
            })?;
            self.inner.events.emit_in(
                Some(&e.team),
                "env_expired",
                Level::Info,
                &e.name,
                format!(
                    "environment {:?} expired and is recycled: removing {}{}",
                    e.name,
                    if names.is_empty() {
                        "no applications".to_string()
                    } else {
                        names.join(", ")
                    },
                    if e.keep_volumes {
                        " (volumes kept)"
                    } else {
                        ""
                    }
                ),
            );
            done.push((e.team.clone(), e.name.clone()));
        }
        // Applications whose environment is gone (an apply that raced a teardown).
        let live: std::collections::HashSet<(String, String)> = self
            .inner
            .store
            .envs(None)?
            .into_iter()
            .map(|e| (e.team, e.name))
            .collect();
        for a in self.inner.store.list_apps()? {
            let (t, env, _) = team::split_app(&a.name);
            if a.deleting || env == DEV_ENV || live.contains(&(t.to_string(), env.to_string())) {
                continue;
            }
            tracing::info!(app = %a.name, "its environment is gone: removing it");
            match self.inner.store.mark_deleting(&a.name, false) {
                Ok(()) | Err(berth_store::StoreError::AppNotFound(_)) => self.inner.wake(&a.name),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(done)
    }
}

/// The recycler: a pass every [`RECYCLE_EVERY`] until shutdown.
pub(crate) async fn recycle_loop(inner: Weak<Inner>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RECYCLE_EVERY) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cp = ControlPlane {
            inner: Arc::clone(&inner),
        };
        if let Err(e) = cp.recycle_envs() {
            tracing::warn!(error = %e, "environment recycling pass failed");
        }
    }
}

impl crate::Inner {
    /// Is `app` in a protected environment? (`dev` never is.)
    pub(crate) fn env_protected(&self, app: &str) -> Result<bool, CpError> {
        let (t, env, _) = team::split_app(app);
        if env == DEV_ENV {
            return Ok(false);
        }
        Ok(self.store.env(t, env)?.is_some_and(|e| e.protected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_an_environment_carry_its_name() {
        assert_eq!(
            route_host("web", Some("a.example")).as_deref(),
            Some("a.example")
        );
        assert_eq!(route_host("shop/web", None), None);
        assert_eq!(
            route_host("shop/web@staging", Some("a.example")).as_deref(),
            Some("staging.a.example")
        );
        assert_eq!(route_host("web@pr-1", None).as_deref(), Some("pr-1.*"));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86400));
        for bad in [
            "",
            "9s",
            "10",
            "s",
            "1w",
            "-1h",
            "999999999999999999d",
            "1h 2m",
            "367d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_blocks() {
        assert_eq!(parse_ports("21000-21099").unwrap(), (21000, 21099));
        for bad in ["", "21000", "2-1", "80-90", "21099-21000", "a-b", "1-70000"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }
}
