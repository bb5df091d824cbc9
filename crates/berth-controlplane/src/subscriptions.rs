//! Subscriptions (docs/market.md#subscribe): a consumer application calls a market entry's
//! provider instance through Berth's gateway, with a credential Berth issues and renews.
//!
//! Rules this module keeps:
//! - A subscription is a row (consumer application, market entry); `berth subscribe` makes one
//!   with origin `cli`, an `x-berth.uses` in the application's file one with origin `uses`,
//!   which goes when the file stops naming it.
//! - The credential is a JWT of Berth's own issuer: `sub` = the consumer application's global
//!   name, `aud` = `market:TEAM/SERVICE`, `berth_team` = the consumer's team, one hour. It is a
//!   file in `<data-dir>/credentials/<app>/`, written by rename (so a reader sees the old or the
//!   new token, never half of one) and renewed after half its life. The directory is
//!   bind-mounted read-only at `/run/secrets/berth`, so a renewal is seen inside at once.
//! - What a container gets (`<SERVICE>_URL`, `<SERVICE>_TOKEN_FILE`, the mount, the
//!   `berth-gateway` host) is the revision's [`Wiring`], part of the service's hash: a container
//!   made before a subscription is replaced by the rollout the subscription starts.
//! - Revocation is the gateway's: the routing table carries each entry's subscribers on its
//!   provider's `auth: subscribers` routes, so unsubscribing (a new table) refuses the next call
//!   with 403 `not_subscribed`; nothing restarts.
//! - `x-berth.mqtt: true` (docs/messaging.md#services) rides the same wiring: the service gets
//!   `BERTH_MQTT_URL`, `BERTH_MQTT_USERNAME` and `BERTH_MQTT_TOKEN_FILE`, the token (audience
//!   `mqtt`, `sub` = the application's global name, its team's `berth_team`) is the file
//!   `mqtt/token` of the same directory, written and renewed the same way. It is refused with
//!   `mqtt_disabled` when the server runs no broker listener.

use crate::spec::RevisionSpec;
use crate::{ControlPlane, CpError, Inner};
use berth_compose::{AuthSpec, Project};
use berth_core::api::SubscriptionView;
use berth_core::lifecycle::VersionState;
use berth_core::team;
use berth_store::{SubscriptionRecord, ORIGIN_CLI, ORIGIN_USES};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Where the credentials directory is mounted in a consumer's containers.
pub const SECRETS_DIR: &str = "/run/secrets/berth";
/// The host name consumers reach the gateway by (the Docker host, `host-gateway`).
pub const GATEWAY_HOST: &str = "berth-gateway";
/// A credential's lifetime.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// A credential older than this is replaced.
pub const RENEW_AFTER: Duration = Duration::from_secs(1800);
/// How often credentials are checked for renewal.
const RENEW_CHECK: Duration = Duration::from_secs(60);
/// The MQTT login's file, under the credentials directory (a directory: no market entry's
/// `<SERVICE>.token` can be named so).
const MQTT_TOKEN_FILE: &str = "mqtt/token";

/// A provider instance's market entry as the table needs it: the credentials' audience, and
/// each subscribing application (global name) with its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscribers {
    pub audience: String,
    /// Sorted by application.
    pub apps: Vec<(String, Option<String>)>,
}

/// What subscriptions need from the server: where credentials go and how consumers reach the
/// gateway.
pub(crate) struct SubscriptionConfig {
    /// `<data-dir>/credentials`.
    pub dir: PathBuf,
    /// `http://berth-gateway:<port>`.
    pub gateway_url: String,
}

/// What one service of a consumer application gets for its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wiring {
    /// `<SERVICE>_URL` and `<SERVICE>_TOKEN_FILE` per market entry (a variable the user set
    /// in `environment` wins).
    pub env: BTreeMap<String, String>,
    /// The host directory of the application's credentials, mounted at [`SECRETS_DIR`].
    pub credentials: String,
}

/// `orders-api` → `ORDERS_API`: the prefix of a market entry's variables.
#[must_use]
pub fn env_prefix(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `TEAM/SERVICE` of a service's global name (team `default`'s too).
#[must_use]
pub fn entry_name(service: &str) -> String {
    let (t, s) = team::split_global(service);
    format!("{t}/{s}")
}

/// The audience of a market entry's credentials.
#[must_use]
pub fn audience(service: &str) -> String {
    format!("market:{}", entry_name(service))
}

/// The global name of the entry `TEAM/SERVICE`, or `None` when it is not of that shape.
#[must_use]
pub fn parse_entry(entry: &str) -> Option<String> {
    let (t, s) = entry.split_once('/')?;
    (team::valid_team_name(t) && !s.is_empty() && !s.contains('/')).then(|| team::global_name(t, s))
}

fn credentials_dir(root: &Path, app: &str) -> PathBuf {
    root.join(team::docker_part(app).as_ref())
}

fn token_file_name(service: &str) -> String {
    format!("{}.token", team::split_global(service).1)
}

impl ControlPlane {
    /// Turn on subscriptions: credentials under `dir`, consumers calling `gateway_url`. Writes
    /// every subscription's credential, publishes the subscribers, and renews credentials until
    /// `shutdown`.
    pub fn enable_subscriptions(
        &self,
        dir: PathBuf,
        gateway_url: String,
        shutdown: CancellationToken,
    ) {
        let _ = self
            .inner
            .subscriptions
            .set(SubscriptionConfig { dir, gateway_url });
        self.inner.refresh_market_logged();
        renew_all(&self.inner, Duration::ZERO);
        tokio::spawn(renew_loop(Arc::downgrade(&self.inner), shutdown));
    }

    /// Turn on `x-berth.mqtt`: containers reach the broker at `url`
    /// (`mqtt://berth-gateway:PORT`). Call after [`ControlPlane::enable_subscriptions`].
    pub fn enable_mqtt(&self, url: String) {
        let _ = self.inner.mqtt_url.set(url);
        renew_mqtt(&self.inner, Duration::ZERO);
    }

    /// Subscribe `app` to the market entry `service` (a global name), with `plan`: a new
    /// revision of `app` wires it into every service.
    pub fn subscribe(
        &self,
        app: &str,
        service: &str,
        plan: Option<&str>,
        actor: &str,
    ) -> Result<SubscriptionView, CpError> {
        let (_, spec) = self.current_spec(app)?;
        let route = self.inner.provider_route(service)?;
        if let Some(p) = plan {
            if !route.plans.contains_key(p) {
                let names: Vec<&str> = route.plans.keys().map(String::as_str).collect();
                return Err(CpError::InvalidArgument(format!(
                    "{} defines no plan {p:?} ({})",
                    entry_name(service),
                    if names.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("its plans: {}", names.join(", "))
                    }
                )));
            }
        }
        // One variable prefix and one credential file per entry, in the whole application.
        let mine = env_prefix(team::split_global(service).1);
        let others = self
            .inner
            .store
            .subscriptions_of(app)?
            .into_iter()
            .map(|s| s.service)
            .chain(
                spec.project
                    .services
                    .values()
                    .flat_map(|s| s.berth.uses.iter().filter_map(|u| parse_entry(u))),
            );
        for other in others {
            if other != service && env_prefix(team::split_global(&other).1) == mine {
                return Err(CpError::InvalidArgument(format!(
                    "application {app:?} already uses {}, whose variables {mine}_URL and credential file would be the same",
                    entry_name(&other),
                )));
            }
        }
        let previous = self.inner.store.subscription(app, service)?;
        self.inner
            .store
            .subscribe(app, service, plan, ORIGIN_CLI, actor)?;
        let done = self.inner.write_credential(app, service).and_then(|()| {
            self.commit(
                app,
                "subscribe",
                &format!("subscribe to {}", entry_name(service)),
                &spec,
            )
        });
        if let Err(e) = done {
            // Refused (admission, protection, the wiring): the subscription is as it was.
            match previous {
                None => {
                    let _ = self.inner.store.unsubscribe(app, service);
                    if let Some(cfg) = self.inner.subscriptions.get() {
                        let _ = std::fs::remove_file(
                            credentials_dir(&cfg.dir, app).join(token_file_name(service)),
                        );
                    }
                }
                Some(p) => {
                    let _ = self.inner.store.subscribe(
                        app,
                        service,
                        p.plan.as_deref(),
                        &p.origin,
                        &p.created_by,
                    );
                }
            }
            self.inner.refresh_market_logged();
            return Err(e);
        }
        self.inner.refresh_market_logged();
        tracing::info!(app, entry = %entry_name(service), actor, "subscribed");
        let record = self
            .inner
            .store
            .subscription(app, service)?
            .ok_or_else(|| CpError::SubscriptionNotFound(app.into(), entry_name(service)))?;
        Ok(self.inner.view(&record))
    }

    /// End `app`'s subscription to `service`: the gateway refuses its next call; its
    /// credential file is removed. Nothing restarts (the variables stay until the next
    /// revision, and lead nowhere).
    pub fn unsubscribe(&self, app: &str, service: &str) -> Result<(), CpError> {
        self.current_spec(app)?;
        let Some(record) = self.inner.store.subscription(app, service)? else {
            return Err(CpError::SubscriptionNotFound(
                app.into(),
                entry_name(service),
            ));
        };
        if record.origin == ORIGIN_USES {
            return Err(CpError::InvalidArgument(format!(
                "application {app:?} subscribes to {} by `x-berth.uses` in its file: remove it there and apply",
                entry_name(service)
            )));
        }
        self.inner.store.unsubscribe(app, service)?;
        // The gateway refuses the next call only once the table says so: an error here is the
        // caller's to see (the renewal loop publishes it within a minute at the latest).
        self.inner.refresh_market()?;
        if let Some(cfg) = self.inner.subscriptions.get() {
            let _ =
                std::fs::remove_file(credentials_dir(&cfg.dir, app).join(token_file_name(service)));
        }
        tracing::info!(app, entry = %entry_name(service), "unsubscribed");
        Ok(())
    }

    /// `app`'s subscriptions.
    pub fn subscriptions(&self, app: &str) -> Result<Vec<SubscriptionView>, CpError> {
        self.current_spec(app)?;
        Ok(self
            .inner
            .store
            .subscriptions_of(app)?
            .iter()
            .map(|r| self.inner.view(r))
            .collect())
    }

    /// The global names of the applications that subscribe to the market entry of `service`
    /// (a global name): who may read its MQTT topics (docs/messaging.md).
    pub fn market_subscribers(&self, service: &str) -> Result<Vec<String>, CpError> {
        Ok(self
            .inner
            .store
            .subscribers_of(service)?
            .into_iter()
            .map(|s| s.app)
            .collect())
    }

    /// The applications (`TEAM/APP`) that subscribe to `service`.
    pub(crate) fn subscribers(&self, service: &str) -> Result<Vec<String>, CpError> {
        Ok(self
            .inner
            .store
            .subscribers_of(service)?
            .iter()
            .map(|s| entry_name(&s.app))
            .collect())
    }

    /// 409 `in_use` when others subscribe to `service` (`what` is refused: "retire version 1",
    /// "remove the service").
    pub(crate) fn refuse_if_subscribed(&self, service: &str, what: &str) -> Result<(), CpError> {
        let users = self.subscribers(service)?;
        if users.is_empty() {
            return Ok(());
        }
        Err(CpError::InUse(format!(
            "cannot {what}: {} {} subscribed to {} (they must unsubscribe first)",
            users.join(", "),
            if users.len() == 1 { "is" } else { "are" },
            entry_name(service)
        )))
    }

    /// 409 `in_use` when `app` is the provider instance of a market entry others subscribe to.
    pub fn refuse_if_provider(&self, app: &str) -> Result<(), CpError> {
        for b in self.inner.store.market_bindings()? {
            if b.app == app {
                self.refuse_if_subscribed(
                    &b.service,
                    &format!(
                        "remove application {app:?}, which serves {}",
                        entry_name(&b.service)
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// The wiring of each service of `project` as `app` would run it: the application's `cli`
    /// subscriptions go to every service, a service's `x-berth.uses` to that service. Every
    /// entry named must be in the market with a provider instance.
    pub(crate) fn wires_for(
        &self,
        app: &str,
        project: &Project,
    ) -> Result<BTreeMap<String, Wiring>, CpError> {
        let cli: Vec<String> = self
            .inner
            .store
            .subscriptions_of(app)?
            .into_iter()
            .filter(|s| s.origin == ORIGIN_CLI)
            .map(|s| s.service)
            .collect();
        let mut out = BTreeMap::new();
        // Every entry of the application, by variable prefix: one each (one credential file).
        let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
        for (i, e) in cli
            .iter()
            .map(|c| (None, c.clone()))
            .chain(project.services.iter().flat_map(|(name, svc)| {
                svc.berth
                    .uses
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, u)| parse_entry(u).map(|e| (Some((name, i)), e)))
            }))
        {
            let prefix = env_prefix(team::split_global(&e).1);
            if let Some(other) = prefixes.insert(prefix.clone(), e.clone()) {
                if other != e {
                    let path = i.map_or_else(
                        || "x-berth.uses".to_string(),
                        |(name, i)| format!("services.{name}.x-berth.uses[{i}]"),
                    );
                    return Err(invalid(
                        &path,
                        &format!(
                            "{} and {} would both be {prefix}_URL and {}.token in this application",
                            entry_name(&other),
                            entry_name(&e),
                            team::split_global(&e).1
                        ),
                    ));
                }
            }
        }
        let mqtt_url = self.inner.mqtt_url.get();
        for (name, svc) in &project.services {
            if svc.berth.mqtt && mqtt_url.is_none() {
                return Err(CpError::MqttDisabled(format!(
                    "services.{name}.x-berth.mqtt: this server runs no MQTT broker (start it with --mqtt-listen ADDR)"
                )));
            }
        }
        for (name, svc) in &project.services {
            let mut entries: BTreeSet<String> = cli.iter().cloned().collect();
            for (i, u) in svc.berth.uses.iter().enumerate() {
                let path = format!("services.{name}.x-berth.uses[{i}]");
                let global =
                    parse_entry(u).ok_or_else(|| invalid(&path, "expected TEAM/SERVICE"))?;
                self.inner
                    .provider_of(&global)
                    .map_err(|e| invalid(&path, &e.to_string()))?;
                entries.insert(global);
            }
            if entries.is_empty() && !svc.berth.mqtt {
                continue;
            }
            let cfg = self.inner.subscriptions.get().ok_or_else(|| {
                CpError::InvalidArgument("this server does not wire subscriptions".into())
            })?;
            let mut env = BTreeMap::new();
            if let (true, Some(url)) = (svc.berth.mqtt, mqtt_url) {
                env.insert("BERTH_MQTT_URL".to_string(), url.clone());
                env.insert("BERTH_MQTT_USERNAME".to_string(), app.to_string());
                env.insert(
                    "BERTH_MQTT_TOKEN_FILE".to_string(),
                    format!("{SECRETS_DIR}/{MQTT_TOKEN_FILE}"),
                );
            }
            let mut seen = BTreeMap::new();
            for e in &entries {
                let local = team::split_global(e).1;
                let prefix = env_prefix(local);
                if let Some(other) = seen.insert(prefix.clone(), e.clone()) {
                    return Err(invalid(
                        &format!("services.{name}.x-berth.uses"),
                        &format!(
                            "{} and {} would both be {prefix}_URL",
                            entry_name(&other),
                            entry_name(e)
                        ),
                    ));
                }
                env.insert(format!("{prefix}_URL"), self.inner.entry_url(cfg, e)?);
                env.insert(
                    format!("{prefix}_TOKEN_FILE"),
                    format!("{SECRETS_DIR}/{}", token_file_name(e)),
                );
            }
            let dir = credentials_dir(&cfg.dir, app);
            create_private_dir(&dir)?;
            out.insert(
                name.clone(),
                Wiring {
                    env,
                    credentials: dir.to_string_lossy().into_owned(),
                },
            );
        }
        Ok(out)
    }

    /// After a revision of `app` is committed: its `x-berth.uses` subscriptions are the ones
    /// its file names (others of origin `uses` end), each with a credential.
    pub(crate) fn sync_uses(
        &self,
        app: &str,
        project: &Project,
        actor: &str,
    ) -> Result<(), CpError> {
        let named: BTreeSet<String> = project
            .services
            .values()
            .flat_map(|s| s.berth.uses.iter())
            .filter_map(|u| parse_entry(u))
            .collect();
        let existing = self.inner.store.subscriptions_of(app)?;
        let mut changed = false;
        for s in &existing {
            if s.origin == ORIGIN_USES && !named.contains(&s.service) {
                self.inner.store.unsubscribe(app, &s.service)?;
                changed = true;
            }
        }
        for service in &named {
            if !existing.iter().any(|s| &s.service == service) {
                self.inner
                    .store
                    .subscribe(app, service, None, ORIGIN_USES, actor)?;
                changed = true;
            }
            self.inner.write_credential(app, service)?;
        }
        if project.services.values().any(|s| s.berth.mqtt) {
            self.inner.write_mqtt_token(app)?;
        }
        if changed {
            self.inner.refresh_market_logged();
        }
        Ok(())
    }
}

fn invalid(path: &str, message: &str) -> CpError {
    CpError::Compose(berth_compose::ComposeError::Invalid {
        path: path.into(),
        message: message.into(),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), CpError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the credentials directory");
        CpError::InvalidArgument("cannot write the subscription's credential; see the server log".into())
    })
}

impl Inner {
    /// The provider instance of a market entry: (application, its service). The entry must
    /// have a published or deprecated version and be bound (`berth publish --app`).
    fn provider_of(&self, service: &str) -> Result<(String, String), CpError> {
        let listed = self
            .store
            .lifecycles(Some(service))?
            .iter()
            .any(|l| matches!(l.state, VersionState::Published | VersionState::Deprecated));
        if !listed {
            return Err(CpError::UnknownBuildService(format!(
                "{} (in the market)",
                entry_name(service)
            )));
        }
        let b = self.store.market_binding(service)?.ok_or_else(|| {
            CpError::InvalidArgument(format!(
                "{} has no provider instance to subscribe to (its owner publishes it with --app); it can only be installed",
                entry_name(service)
            ))
        })?;
        Ok((b.app, b.app_service))
    }

    /// `http://berth-gateway:<port>/_market/TEAM/SERVICE`: the gateway forwards it to the
    /// provider's `auth: subscribers` route (`fill_table`).
    fn entry_url(&self, cfg: &SubscriptionConfig, service: &str) -> Result<String, CpError> {
        let route = self.provider_route(service)?;
        if !matches!(route.auth, Some(AuthSpec::Subscribers)) {
            return Err(CpError::InvalidArgument(format!(
                "{}'s provider has no `auth: subscribers` route to call",
                entry_name(service)
            )));
        }
        Ok(format!(
            "{}{}",
            cfg.gateway_url,
            market_path(&audience(service))
        ))
    }

    /// The provider's route subscribers call: its `auth: subscribers` one, else one for any
    /// host, else its first.
    fn provider_route(&self, service: &str) -> Result<berth_compose::RouteSpec, CpError> {
        let (app, app_service) = self.provider_of(service)?;
        let routes = self
            .running_service(&app, &app_service)?
            .map(|s| s.berth.routes)
            .unwrap_or_default();
        routes
            .iter()
            .find(|r| matches!(r.auth, Some(AuthSpec::Subscribers)))
            .or_else(|| routes.iter().find(|r| r.host.is_none()))
            .or_else(|| routes.first())
            .cloned()
            .ok_or_else(|| {
                CpError::InvalidArgument(format!("{}'s provider has no route", entry_name(service)))
            })
    }

    /// The service `name` of `app`'s current revision (none when either is gone).
    pub(crate) fn running_service(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Option<berth_compose::Service>, CpError> {
        let Ok(a) = self.store.get_app(app) else {
            return Ok(None);
        };
        let mut spec: RevisionSpec = self.store.get_revision(app, a.revision)?.spec;
        Ok(spec.project.services.remove(name))
    }

    /// Mint `app`'s credential for `service` and write it (by rename) into its directory.
    fn write_credential(&self, app: &str, service: &str) -> Result<(), CpError> {
        self.write_login(
            app,
            &audience(service),
            Path::new(&token_file_name(service)),
            "subscription credential",
        )
    }

    /// Mint `app`'s MQTT login (audience `mqtt`, `sub` = `app`, its team's `berth_team`) and
    /// write it (by rename) as `mqtt/token` in its credentials directory.
    fn write_mqtt_token(&self, app: &str) -> Result<(), CpError> {
        self.write_login(
            app,
            berth_core::policy::MQTT_AUDIENCE,
            Path::new(MQTT_TOKEN_FILE),
            "MQTT token",
        )
    }

    /// Mint a login of `app` (its team in `berth_team`) for `aud` and write it by rename as
    /// `name` under `app`'s credentials directory; `what` names it in errors.
    fn write_login(&self, app: &str, aud: &str, name: &Path, what: &str) -> Result<(), CpError> {
        let Some(cfg) = self.subscriptions.get() else {
            return Ok(());
        };
        let own = self
            .own_issuer
            .get()
            .ok_or_else(|| CpError::InvalidArgument("this server has no token issuer".into()))?;
        let mut claims = BTreeMap::new();
        claims.insert(
            crate::issuers::TEAM_CLAIM.to_owned(),
            serde_json::Value::String(team::team_of(app).to_owned()),
        );
        let token = own
            .keys
            .issue(app, &[aud.to_string()], TOKEN_TTL, claims, &own.url)
            .map_err(|e| CpError::InvalidArgument(e.to_string()))?;
        let file = credentials_dir(&cfg.dir, app).join(name);
        let dir = file.parent().unwrap_or(&cfg.dir).to_path_buf();
        create_private_dir(&dir)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{base}.{}.{n}.tmp", std::process::id()));
        let written =
            std::fs::write(&tmp, token.as_bytes()).and_then(|()| std::fs::rename(&tmp, &file));
        written.map_err(|e| {
            tracing::error!(file = %file.display(), error = %e, "cannot write a {what}");
            CpError::InvalidArgument(format!("cannot write the {what}; see the server log"))
        })
    }

    /// The view of a subscription.
    fn view(&self, r: &SubscriptionRecord) -> SubscriptionView {
        let local = team::split_global(&r.service).1;
        let prefix = env_prefix(local);
        let url = self
            .subscriptions
            .get()
            .and_then(|cfg| self.entry_url(cfg, &r.service).ok())
            .unwrap_or_default();
        SubscriptionView {
            app: team::split_global(&r.app).1.to_owned(),
            entry: entry_name(&r.service),
            plan: r.plan.clone(),
            origin: r.origin.clone(),
            url_env: format!("{prefix}_URL"),
            url,
            token_env: format!("{prefix}_TOKEN_FILE"),
            token_file: format!("{SECRETS_DIR}/{}", token_file_name(&r.service)),
            created_by: r.created_by.clone(),
            created_at: r.created_at.clone(),
        }
    }

    /// Recompute which applications may call which provider route, and publish the table.
    /// The store is read under the memory lock, so two refreshes publish in the order they
    /// read: a refresh never publishes subscribers older than the last one published.
    pub(crate) fn refresh_market(&self) -> Result<(), CpError> {
        let mut mem = self.mem();
        let bindings = self.store.market_bindings()?;
        let subs = self.store.all_subscriptions()?;
        let mut market = BTreeMap::new();
        for b in bindings {
            let mut apps: Vec<(String, Option<String>)> = subs
                .iter()
                .filter(|s| s.service == b.service)
                .map(|s| (s.app.clone(), s.plan.clone()))
                .collect();
            apps.sort();
            market.insert(
                (b.app, b.app_service),
                Subscribers {
                    audience: audience(&b.service),
                    apps,
                },
            );
        }
        if mem.market != market {
            mem.market = market;
            crate::pass::publish_table(self, &mem);
        }
        Ok(())
    }

    /// [`Inner::refresh_market`] where a failure can only be logged (the next refresh, at the
    /// latest the renewal loop's, catches up).
    pub(crate) fn refresh_market_logged(&self) {
        if let Err(e) = self.refresh_market() {
            tracing::warn!(error = %e, "the market's subscribers were not published");
        }
    }

    /// After `app` is gone: its credentials and its place among subscribers.
    pub(crate) fn forget_consumer(&self, app: &str) {
        if let Some(cfg) = self.subscriptions.get() {
            let _ = std::fs::remove_dir_all(credentials_dir(&cfg.dir, app));
        }
        self.refresh_market_logged();
    }
}

/// Renew every credential older than `age` (or missing).
fn renew_all(inner: &Inner, age: Duration) {
    let Some(cfg) = inner.subscriptions.get() else {
        return;
    };
    let Ok(all) = inner.store.all_subscriptions() else {
        return;
    };
    for s in all {
        let file = credentials_dir(&cfg.dir, &s.app).join(token_file_name(&s.service));
        let fresh = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|elapsed| elapsed < age);
        if !fresh {
            if let Err(e) = inner.write_credential(&s.app, &s.service) {
                tracing::warn!(app = %s.app, entry = %entry_name(&s.service), error = %e, "credential not renewed");
            }
        }
    }
}

/// Renew the MQTT token of every application whose current revision has a service with
/// `x-berth.mqtt`, when older than `age` (or missing).
fn renew_mqtt(inner: &Inner, age: Duration) {
    let (Some(cfg), Some(_)) = (inner.subscriptions.get(), inner.mqtt_url.get()) else {
        return;
    };
    let Ok(apps) = inner.store.list_apps() else {
        return;
    };
    for a in apps.iter().filter(|a| !a.deleting) {
        let Ok(rev) = inner
            .store
            .get_revision::<RevisionSpec>(&a.name, a.revision)
        else {
            continue;
        };
        if !rev.spec.project.services.values().any(|s| s.berth.mqtt) {
            continue;
        }
        let file = credentials_dir(&cfg.dir, &a.name).join(MQTT_TOKEN_FILE);
        let fresh = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|elapsed| elapsed < age);
        if !fresh {
            if let Err(e) = inner.write_mqtt_token(&a.name) {
                tracing::warn!(app = %a.name, error = %e, "MQTT token not renewed");
            }
        }
    }
}

async fn renew_loop(inner: Weak<Inner>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RENEW_CHECK) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        renew_all(&inner, RENEW_AFTER);
        renew_mqtt(&inner, RENEW_AFTER);
        inner.refresh_market_logged();
    }
}

/// Fill the subscribers-only routes of a table from [`crate::Memory::market`]: the entry's
/// audience, its subscribers, and each plan's; and add, per bound entry, the route subscribers
/// call: `berth-gateway` + `/_market/TEAM/SERVICE`, forwarded as the provider's own route would
/// forward it ([`berth_core::MARKET_HOST`]). A route whose service is no entry's provider keeps
/// empty lists (it admits nobody).
pub(crate) fn fill_table(
    routes: &mut Vec<berth_core::HttpRoute>,
    market: &BTreeMap<(String, String), Subscribers>,
) {
    let mut added: Vec<berth_core::HttpRoute> = Vec::new();
    for r in routes.iter_mut() {
        let Some(auth) = r.policy.auth.as_mut() else {
            continue;
        };
        if auth.subscribers.is_none() {
            continue;
        }
        let Some(subs) = market.get(&(r.app.clone(), r.service.clone())) else {
            continue;
        };
        auth.audiences = vec![subs.audience.clone()];
        auth.subscribers = Some(subs.apps.iter().map(|(a, _)| a.clone()).collect());
        for plan in &mut r.policy.plans {
            plan.subscribers = subs
                .apps
                .iter()
                .filter(|(_, p)| p.as_deref() == Some(plan.name.as_str()))
                .map(|(a, _)| a.clone())
                .collect();
        }
        let path_prefix = market_path(&subs.audience);
        if added.iter().any(|a| a.path_prefix == path_prefix) {
            continue; // the entry's first subscribers route serves it
        }
        let mut m = r.clone();
        m.host = Some(berth_core::MARKET_HOST.to_owned());
        m.upstream_prefix = Some(if r.strip_prefix {
            "/".to_owned()
        } else {
            r.path_prefix.clone()
        });
        m.strip_prefix = true;
        m.path_prefix = path_prefix;
        added.push(m);
    }
    routes.extend(added);
}

/// `/_market/TEAM/SERVICE` of the audience `market:TEAM/SERVICE`: where subscribers call it.
fn market_path(audience: &str) -> String {
    format!("/_market/{}", audience.trim_start_matches("market:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_entries_and_variables() {
        assert_eq!(env_prefix("orders-api.v2"), "ORDERS_API_V2");
        assert_eq!(entry_name("a/orders"), "a/orders");
        assert_eq!(entry_name("orders"), "default/orders");
        assert_eq!(audience("orders"), "market:default/orders");
        assert_eq!(parse_entry("a/orders").as_deref(), Some("a/orders"));
        assert_eq!(parse_entry("default/orders").as_deref(), Some("orders"));
        assert_eq!(parse_entry("orders"), None);
        assert_eq!(parse_entry("A/orders"), None);
        assert_eq!(parse_entry("a/b/c"), None);
    }

    #[test]
    fn the_table_gets_each_providers_subscribers() {
        use berth_core::policy::{AuthPolicy, RoutePolicy};
        let route = |app: &str, subscribers: Option<Vec<String>>| berth_core::HttpRoute {
            app: app.into(),
            service: "api".into(),
            host: None,
            path_prefix: "/".into(),
            strip_prefix: false,
            endpoints: vec![],
            policy: RoutePolicy {
                auth: Some(AuthPolicy {
                    subscribers,
                    ..AuthPolicy::default()
                }),
                ..RoutePolicy::default()
            },
            protocol: berth_core::UpstreamProtocol::Http1,
            upstream_prefix: None,
            probe: None,
        };
        let mut routes = vec![
            route("a/prov", Some(vec![])),
            route("a/other", Some(vec![])),
            route("a/prov", None),
        ];
        routes[0].policy.plans = vec![berth_core::policy::Plan {
            name: "gold".into(),
            per_second: 10,
            burst: 10,
            subscribers: vec![],
        }];
        let mut market = BTreeMap::new();
        market.insert(
            ("a/prov".to_string(), "api".to_string()),
            Subscribers {
                audience: "market:a/orders".to_string(),
                apps: vec![
                    ("b/shop".to_string(), Some("gold".to_string())),
                    ("c/web".to_string(), None),
                ],
            },
        );
        fill_table(&mut routes, &market);
        assert_eq!(routes[0].policy.plans[0].subscribers, ["b/shop"]);
        // The route subscribers call, added once per entry: only for Host berth-gateway.
        assert_eq!(routes.len(), 4);
        let m = &routes[3];
        assert_eq!(m.host.as_deref(), Some("berth-gateway"));
        assert_eq!(m.path_prefix, "/_market/a/orders");
        assert_eq!(m.upstream_prefix.as_deref(), Some("/"));
        assert_eq!(m.policy, routes[0].policy);
        let auth = |i: usize| routes[i].policy.auth.clone().unwrap();
        assert_eq!(
            auth(0).subscribers,
            Some(vec!["b/shop".to_string(), "c/web".to_string()])
        );
        assert_eq!(auth(0).audiences, ["market:a/orders"]);
        assert!(auth(0).admits("b/shop") && auth(0).admits("c/web") && !auth(0).admits("d/x"));
        assert_eq!(auth(1).subscribers, Some(vec![]), "no entry: nobody");
        assert!(!auth(1).admits("b/shop"));
        assert_eq!(auth(2).subscribers, None, "a jwt route is left alone");
        assert!(auth(2).admits("anyone"));
    }
}
