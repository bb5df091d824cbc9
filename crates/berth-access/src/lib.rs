//! Berth's identity (docs/access.md): users, API tokens, login with lockout, the audit log, and
//! the authentication and authorization of every API call.
//!
//! The API layer sees a narrow interface: [`Access::authenticate`] turns an `Authorization`
//! header into a [`Principal`] (fast: a SHA-256 and a map lookup with a warm cache),
//! [`authorize`] decides from the principal, method and route template, and the methods for the
//! access endpoints take the principal so that "own or administrator" decisions live here too.
//!
//! Rules it keeps:
//! - Secrets never leave in a log line, an audit row or an error message. Passwords are stored
//!   as argon2id hashes, tokens as the SHA-256 of the secret.
//! - Password hashing runs on a bounded pool (2 at a time, on blocking threads) so logins cannot
//!   starve other calls.
//! - Revoking a token, disabling a user or changing a password drops the cached principals at
//!   once: the next call with an affected token is checked against the store again.

mod lockout;
pub mod policy;
pub mod secret;
mod teams;

/// The audit row the API layer hands to [`Access::record`] (the store's own record).
pub use berth_store::AuditRecord;
pub use policy::{action, authorize, is_public, role_allows, Action, Decision, KNOWN_SCOPES};
pub use teams::Scope;

use berth_core::api::{
    ApiTokenCreated, ApiTokenRequest, ApiTokenView, AuditEntry, AuditPage, LoginIssued,
    PasswordChange, UserCreated, UserRequest, UserView, Whoami,
};
use berth_core::ErrorCode;
use berth_store::{ApiTokenRecord, AuditQuery, Store, StoreError, UserRecord};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// The administrator created on first start.
pub const ADMIN: &str = "admin";
/// The name of the `local` token in `<data-dir>/admin.token`.
pub const LOCAL_TOKEN_NAME: &str = "local-admin";
/// The file the `local` token is written to, in the data directory.
pub const LOCAL_TOKEN_FILE: &str = "admin.token";
/// The name of the `local` token the Swarm nodes' gateways use, scoped `gateway`.
pub const GATEWAY_TOKEN_NAME: &str = "node-gateways";
/// The file the gateways' token is written to, in the data directory.
pub const GATEWAY_TOKEN_FILE: &str = "gateway.token";
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_SECS: i64 = 60;
/// Concurrent password hashes.
const HASH_PERMITS: usize = 2;

/// Where time comes from (tests move it by hand).
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told (tests).
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    #[must_use]
    pub fn new(at: OffsetDateTime) -> ManualClock {
        ManualClock(Mutex::new(at))
    }
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Settings.
#[derive(Clone)]
pub struct AccessConfig {
    /// Lifetime of a login session (`--session-ttl`).
    pub session_ttl: Duration,
    pub clock: Arc<dyn Clock>,
    /// Benchmarks only (`berth server --auth off`, loopback only): every call acts as the local
    /// administrator without a token, so `bench/api_auth_bench.py` can measure what checking
    /// tokens costs against the same binary.
    pub unchecked: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            session_ttl: Duration::from_secs(12 * 3600),
            clock: Arc::new(SystemClock),
            unchecked: false,
        }
    }
}

/// The local administrator token is replaced at each server start, never revoked through the
/// API: a separate gateway or a script on the server's machine may be reading it.
fn local_token_stays() -> AccessError {
    AccessError::invalid(
        "the local administrator token (<data-dir>/admin.token) is replaced at each server start and cannot be revoked",
    )
}

/// Password checks in progress ([`Access::attempt`]); dropping it ends them.
struct Attempt<'a> {
    lockout: &'a lockout::Lockout,
    keys: Vec<String>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        for key in &self.keys {
            self.lockout.end(key);
        }
    }
}

/// The kind of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A session from `POST /api/v1/login`.
    Login,
    /// `berth api-token create`.
    Api,
    /// The server's `<data-dir>/admin.token`.
    Local,
}

impl TokenKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Api => "api",
            Self::Local => "local",
        }
    }
    fn parse(s: &str) -> TokenKind {
        match s {
            "login" => Self::Login,
            "local" => Self::Local,
            _ => Self::Api,
        }
    }
}

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub administrator: bool,
    /// The token's name.
    pub token: String,
    pub kind: TokenKind,
    /// Empty: the owner's rights.
    pub scopes: Vec<String>,
    pub must_change_password: bool,
    pub expires_at: Option<OffsetDateTime>,
    /// The team calls act in when they name none (an API token created with `--team`).
    pub team: Option<String>,
}

impl Principal {
    /// `GET /api/v1/whoami`.
    #[must_use]
    pub fn whoami(&self) -> Whoami {
        Whoami {
            user: self.user.clone(),
            administrator: self.administrator,
            token: self.token.clone(),
            kind: self.kind.as_str().to_string(),
            scopes: self.scopes.clone(),
            expires_at: self.expires_at.map(format_time),
            password_change_required: self.must_change_password,
            teams: Vec::new(),
            team: self.team.clone(),
        }
    }
}

/// A refusal or failure, with its API code. The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessError {
    pub code: ErrorCode,
    pub message: String,
    /// For `login_locked`: seconds until a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl AccessError {
    fn new(code: ErrorCode, message: impl Into<String>) -> AccessError {
        AccessError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    fn unauthorized(message: &str) -> AccessError {
        Self::new(ErrorCode::Unauthorized, message)
    }
    fn forbidden(message: &str) -> AccessError {
        Self::new(ErrorCode::Forbidden, message)
    }
    fn invalid(message: impl Into<String>) -> AccessError {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    fn internal(what: &str, e: &dyn std::fmt::Display) -> AccessError {
        tracing::error!(error = %e, "{what}");
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AccessError {}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        AccessError::internal("state database error", &e)
    }
}

/// The message of every failed login, whatever failed (no user enumeration).
const BAD_LOGIN: &str = "wrong user name or password";
const NO_TOKEN: &str =
    "this call needs a token: send `Authorization: Bearer <token>` (berth login, or an API token)";
const BAD_TOKEN: &str = "the token is not valid (unknown, revoked, expired or of a disabled user)";

/// Times as stored and answered: RFC 3339, UTC, milliseconds (so they compare as text).
#[must_use]
pub fn format_time(t: OffsetDateTime) -> String {
    const F: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&F)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Is `name` acceptable as a user or token name? Lowercase letters, digits and `-`, starting
/// with a letter or digit, at most 64 characters (like other Berth names).
#[must_use]
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn check_password(p: &str) -> Result<(), AccessError> {
    let n = p.chars().count();
    if n < secret::MIN_PASSWORD {
        return Err(AccessError::invalid(format!(
            "the password is too short: at least {} characters",
            secret::MIN_PASSWORD
        )));
    }
    if p.len() > secret::MAX_PASSWORD {
        return Err(AccessError::invalid(format!(
            "the password is too long: at most {} bytes",
            secret::MAX_PASSWORD
        )));
    }
    Ok(())
}

/// Parse `since`: an RFC 3339 time, or a duration back from now (`90s`, `15m`, `1h`, `7d`).
pub fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, AccessError> {
    if let Some(t) = parse_time(s) {
        return Ok(t);
    }
    let bad = || {
        AccessError::new(
            ErrorCode::InvalidQuery,
            format!("since={s:?}: expected an RFC 3339 time or a duration like 30m, 1h, 7d"),
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    let back = n
        .checked_mul(secs)
        .filter(|v| *v <= 100 * 365 * 86400)
        .ok_or_else(bad)?;
    Ok(now - time::Duration::seconds(back))
}

struct Cached {
    principal: Arc<Principal>,
    id: i64,
    /// Unix seconds of the last `last_used_at` write.
    touched: AtomicI64,
}

struct Inner {
    store: Store,
    config: AccessConfig,
    cache: RwLock<HashMap<String, Arc<Cached>>>,
    /// Bumped by every invalidation, so a lookup racing a revoke does not cache a stale entry.
    generation: AtomicU64,
    hashing: Arc<tokio::sync::Semaphore>,
    lockout: lockout::Lockout,
    dummy_hash: OnceLock<String>,
    /// Serialises user changes that read then write (the last administrator check).
    users: tokio::sync::Mutex<()>,
}

/// Identity and access. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

impl Access {
    /// Access over `store` (which has the tables: migration 9).
    pub fn open(store: Store, config: AccessConfig) -> Result<Access, AccessError> {
        let access = Access {
            inner: Arc::new(Inner {
                store,
                config,
                cache: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                hashing: Arc::new(tokio::sync::Semaphore::new(HASH_PERMITS)),
                lockout: lockout::Lockout::default(),
                dummy_hash: OnceLock::new(),
                users: tokio::sync::Mutex::new(()),
            }),
        };
        let now = format_time(access.now());
        access.inner.store.delete_expired_api_tokens(&now)?;
        Ok(access)
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.config.clock.now()
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Run a password hash or verification on the bounded pool.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccessError> {
        let _permit = self
            .inner
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AccessError::internal("password pool closed", &e))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| AccessError::internal("password hashing failed", &e))
    }

    async fn hash(&self, password: &str) -> Result<String, AccessError> {
        let p = password.to_string();
        self.hashing(move || secret::hash_password(&p))
            .await?
            .map_err(|e| AccessError::internal("password hashing failed", &e))
    }

    async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, AccessError> {
        let p = password.to_string();
        let inner = self.inner.clone();
        self.hashing(move || match hash {
            Some(h) => secret::verify_password(&p, &h),
            None => {
                // Spend the same work on an unknown user as on a known one.
                let dummy = inner.dummy_hash.get_or_init(|| {
                    secret::hash_password(&secret::new_password()).unwrap_or_default()
                });
                let _ = secret::verify_password(&p, dummy);
                false
            }
        })
        .await
    }

    // -- first start ----------------------------------------------------------------------

    /// On an empty users table, create the administrator `admin` with `admin_password`, or a
    /// generated password that must be changed, which is returned (print it once). Also
    /// prepares the hash an unknown user's login is checked against, so that even the first such
    /// login costs what a known user's does.
    pub async fn bootstrap(
        &self,
        admin_password: Option<String>,
    ) -> Result<Option<String>, AccessError> {
        let inner = self.inner.clone();
        self.hashing(move || {
            inner
                .dummy_hash
                .get_or_init(|| secret::hash_password(&secret::new_password()).unwrap_or_default());
        })
        .await?;
        let _g = self.inner.users.lock().await;
        if self.store().count_users()? > 0 {
            return Ok(None);
        }
        let (password, generated) = match admin_password {
            Some(p) => {
                check_password(&p).map_err(|e| {
                    AccessError::invalid(format!("BERTH_ADMIN_PASSWORD: {}", e.message))
                })?;
                (p, false)
            }
            None => (secret::new_password(), true),
        };
        let hash = self.hash(&password).await?;
        self.store().create_user(&UserRecord {
            name: ADMIN.into(),
            password_hash: hash,
            administrator: true,
            disabled: false,
            must_change_password: generated,
            created_at: String::new(),
            updated_at: String::new(),
        })?;
        Ok(generated.then_some(password))
    }

    /// Revoke the previous `local` token, issue a new one for `admin` and write it to
    /// `<data_dir>/admin.token`, created with mode 0600.
    pub fn write_local_token(&self, data_dir: &Path) -> Result<(), AccessError> {
        for h in self
            .store()
            .delete_api_tokens_of_kind(TokenKind::Local.as_str())?
        {
            self.drop_hash(&h);
        }
        self.write_local(data_dir, LOCAL_TOKEN_NAME, LOCAL_TOKEN_FILE, Vec::new())
    }

    /// Write a fresh token for the Swarm nodes' gateways to `<data-dir>/gateway.token`: the
    /// administrator's, scoped `gateway` (the table and the traffic reports, nothing else).
    /// Call after [`Access::write_local_token`], which revokes the previous one.
    pub fn write_gateway_token(&self, data_dir: &Path) -> Result<(), AccessError> {
        self.write_local(
            data_dir,
            GATEWAY_TOKEN_NAME,
            GATEWAY_TOKEN_FILE,
            vec!["gateway".to_string()],
        )
    }

    fn write_local(
        &self,
        data_dir: &Path,
        name: &str,
        file: &str,
        scopes: Vec<String>,
    ) -> Result<(), AccessError> {
        let token = secret::new_token();
        self.store()
            .insert_api_token(&ApiTokenRecord {
                id: 0,
                owner: ADMIN.into(),
                name: name.into(),
                kind: TokenKind::Local.as_str().into(),
                hash: secret::token_hash(&token),
                scopes,
                created_at: String::new(),
                expires_at: None,
                last_used_at: None,
                team: None,
            })?
            .ok_or_else(|| {
                AccessError::internal("local token", &format!("a token named {name} exists"))
            })?;
        let path = data_dir.join(file);
        write_private(&path, format!("{token}\n").as_bytes())
            .map_err(|e| AccessError::internal(&format!("cannot write {}", path.display()), &e))?;
        Ok(())
    }

    // -- authentication -------------------------------------------------------------------

    /// The principal of a request, from its `Authorization` header (`Bearer <token>`).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AccessError> {
        if self.inner.config.unchecked {
            return Ok(Principal {
                user: ADMIN.to_string(),
                administrator: true,
                token: "unchecked".to_string(),
                kind: TokenKind::Local,
                scopes: Vec::new(),
                must_change_password: false,
                expires_at: None,
                team: None,
            });
        }
        let header = authorization.ok_or_else(|| AccessError::unauthorized(NO_TOKEN))?;
        let token = match header.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => return Err(AccessError::unauthorized(NO_TOKEN)),
        };
        if !secret::looks_like_token(token) {
            return Err(AccessError::unauthorized(BAD_TOKEN));
        }
        let hash = secret::token_hash(token);
        let now = self.now();
        let cached = self
            .inner
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&hash)
            .cloned();
        let entry = match cached {
            Some(c) => c,
            None => self.load(&hash)?,
        };
        if entry.principal.expires_at.is_some_and(|e| e <= now) {
            self.drop_hash(&hash);
            return Err(AccessError::unauthorized(BAD_TOKEN));
        }
        self.touch(&entry, now);
        Ok((*entry.principal).clone())
    }

    /// Look a token up in the store and cache it.
    fn load(&self, hash: &str) -> Result<Arc<Cached>, AccessError> {
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let t = self
            .store()
            .api_token_by_hash(hash)?
            .ok_or_else(|| AccessError::unauthorized(BAD_TOKEN))?;
        let u = self
            .store()
            .get_user(&t.owner)?
            .filter(|u| !u.disabled)
            .ok_or_else(|| AccessError::unauthorized(BAD_TOKEN))?;
        let entry = Arc::new(Cached {
            principal: Arc::new(Principal {
                user: u.name,
                administrator: u.administrator,
                token: t.name,
                kind: TokenKind::parse(&t.kind),
                scopes: t.scopes,
                must_change_password: u.must_change_password,
                expires_at: t.expires_at.as_deref().and_then(parse_time),
                team: t.team,
            }),
            id: t.id,
            touched: AtomicI64::new(
                t.last_used_at
                    .as_deref()
                    .and_then(parse_time)
                    .map_or(0, OffsetDateTime::unix_timestamp),
            ),
        });
        let mut cache = self
            .inner
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.inner.generation.load(Ordering::SeqCst) == generation {
            cache.insert(hash.to_string(), entry.clone());
        }
        Ok(entry)
    }

    /// Write `last_used_at` if the last write is a minute old.
    fn touch(&self, entry: &Cached, now: OffsetDateTime) {
        let secs = now.unix_timestamp();
        let last = entry.touched.load(Ordering::Relaxed);
        if secs - last < TOUCH_EVERY_SECS
            || entry
                .touched
                .compare_exchange(last, secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.store().clone();
        let id = entry.id;
        let at = format_time(now);
        let write = move || {
            if let Err(e) = store.touch_api_token(id, &at) {
                tracing::warn!(error = %e, "cannot record a token's last use");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(write);
            }
            Err(_) => write(),
        }
    }

    fn drop_hash(&self, hash: &str) {
        let mut cache = self
            .inner
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        cache.remove(hash);
    }

    fn drop_user(&self, user: &str) {
        let mut cache = self
            .inner
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        cache.retain(|_, c| c.principal.user != user);
    }

    // -- login ----------------------------------------------------------------------------

    /// Start a password check counted against `keys` (`user:NAME`, `addr:IP`): refused with
    /// `429 login_locked` while one is locked or has as many checks running as it may still
    /// fail. The guard ends the attempt however the check ends (a dropped request too).
    fn attempt<'a>(&'a self, keys: &[&str]) -> Result<Attempt<'a>, AccessError> {
        let now = self.now();
        let mut started = Attempt {
            lockout: &self.inner.lockout,
            keys: Vec::new(),
        };
        for key in keys {
            if let Err(secs) = self.inner.lockout.begin(key, now) {
                return Err(AccessError {
                    retry_after: Some(secs),
                    ..AccessError::new(
                        ErrorCode::LoginLocked,
                        format!(
                            "too many failed logins for this user or from this address; retry in {secs} s"
                        ),
                    )
                });
            }
            started.keys.push((*key).to_string());
        }
        Ok(started)
    }

    /// Check a user's password and open a session (a `login` token). Five failures within 10
    /// minutes for the user or from `source` lock further logins for 15 minutes.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        source: &str,
    ) -> Result<LoginIssued, AccessError> {
        let user_key = format!("user:{}", user.chars().take(128).collect::<String>());
        let addr_key = format!("addr:{source}");
        let _attempt = self.attempt(&[&user_key, &addr_key])?;
        let record = if valid_name(user) {
            self.store().get_user(user)?
        } else {
            None
        };
        let ok = self
            .verify(password, record.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let record = match record {
            Some(u) if ok && !u.disabled => u,
            _ => {
                let now = self.now();
                self.inner.lockout.fail(&user_key, now);
                self.inner.lockout.fail(&addr_key, now);
                return Err(AccessError::unauthorized(BAD_LOGIN));
            }
        };
        self.inner.lockout.clear(&user_key);
        let now = self.now();
        let ttl = time::Duration::try_from(self.inner.config.session_ttl)
            .unwrap_or(time::Duration::hours(12));
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + time::Duration::hours(12));
        let stamp = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let token = secret::new_token();
        let name = format!("login-{stamp}-{}", secret::short_id(6));
        self.store()
            .insert_api_token(&ApiTokenRecord {
                id: 0,
                owner: record.name.clone(),
                name: name.clone(),
                kind: TokenKind::Login.as_str().into(),
                hash: secret::token_hash(&token),
                scopes: Vec::new(),
                created_at: String::new(),
                expires_at: Some(format_time(expires)),
                last_used_at: None,
                team: None,
            })?
            .ok_or_else(|| AccessError::internal("login", &"session name taken"))?;
        Ok(LoginIssued {
            token,
            expires_at: format_time(expires),
            name,
            password_change_required: record.must_change_password,
        })
    }

    /// Revoke the token the request came with.
    pub fn logout(&self, p: &Principal) -> Result<(), AccessError> {
        if p.kind == TokenKind::Local {
            return Err(local_token_stays());
        }
        if let Some(t) = self.store().delete_api_token(&p.user, &p.token)? {
            self.drop_hash(&t.hash);
        }
        Ok(())
    }

    // -- users ----------------------------------------------------------------------------

    /// Add a user (administrator only: the route's rule). Without a password one is generated,
    /// answered once, and must be changed at first login.
    pub async fn add_user(&self, req: &UserRequest) -> Result<UserCreated, AccessError> {
        if !valid_name(&req.name) {
            return Err(AccessError::invalid(format!(
                "user name {:?}: lowercase letters, digits and -, at most 64 characters",
                req.name
            )));
        }
        let (password, generated) = match &req.password {
            Some(p) => {
                check_password(p)?;
                (p.clone(), false)
            }
            None => (secret::new_password(), true),
        };
        let team = req.team.as_deref().filter(|t| !t.is_empty());
        if req.role.is_some() && team.is_none() {
            return Err(AccessError::invalid("role needs a team"));
        }
        if let Some(t) = team {
            if self.store().get_team(t)?.is_none() {
                return Err(teams::team_not_found(t));
            }
        }
        let _g = self.inner.users.lock().await;
        if self.store().get_user(&req.name)?.is_some() {
            return Err(user_exists(&req.name));
        }
        let hash = self.hash(&password).await?;
        let created = self.store().create_user(&UserRecord {
            name: req.name.clone(),
            password_hash: hash,
            administrator: req.administrator,
            disabled: false,
            must_change_password: generated,
            created_at: String::new(),
            updated_at: String::new(),
        })?;
        if !created {
            return Err(user_exists(&req.name));
        }
        if let Some(t) = team {
            let role = req.role.unwrap_or(berth_core::team::Role::Developer);
            if !self.store().set_member(t, &req.name, role)? {
                // The team went away between the check and now: the user stays, without it.
                return Err(teams::team_not_found(t));
            }
        }
        Ok(UserCreated {
            name: req.name.clone(),
            password: generated.then_some(password),
        })
    }

    /// Every user.
    pub fn list_users(&self) -> Result<Vec<UserView>, AccessError> {
        Ok(self
            .store()
            .list_users()?
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                administrator: u.administrator,
                disabled: u.disabled,
                password_change_required: u.must_change_password,
                created_at: u.created_at,
            })
            .collect())
    }

    /// Change `name`'s password. One's own needs the current password; an administrator
    /// setting another user's does not (and the user is not asked to change it again).
    pub async fn set_password(
        &self,
        p: &Principal,
        name: &str,
        change: &PasswordChange,
    ) -> Result<(), AccessError> {
        let own = p.user == name;
        if !own && !p.administrator {
            return Err(AccessError::forbidden(
                "only an administrator may set another user's password",
            ));
        }
        if !own && p.must_change_password && p.kind != TokenKind::Local {
            return Err(AccessError::new(
                ErrorCode::PasswordChangeRequired,
                format!(
                    "the password of {:?} was generated and must be changed first",
                    p.user
                ),
            ));
        }
        check_password(&change.password)?;
        let user = self
            .store()
            .get_user(name)?
            .ok_or_else(|| user_not_found(name))?;
        if own {
            let current = change.current_password.as_deref().ok_or_else(|| {
                AccessError::invalid("changing your own password needs current_password")
            })?;
            // Guessing the current password through a stolen session counts like a login.
            let user_key = format!("user:{name}");
            let _attempt = self.attempt(&[&user_key])?;
            if !self
                .verify(current, Some(user.password_hash.clone()))
                .await?
            {
                self.inner.lockout.fail(&user_key, self.now());
                return Err(AccessError::forbidden("current_password is not right"));
            }
            if current == change.password {
                return Err(AccessError::invalid(
                    "the new password must differ from the current one",
                ));
            }
        }
        let hash = self.hash(&change.password).await?;
        self.store().set_user_password(name, &hash, false)?;
        // Other login sessions end (someone who knew the old password may hold one); the
        // caller's own session and the user's API tokens stay.
        let keep = (own && p.kind == TokenKind::Login).then_some(p.token.as_str());
        self.store().delete_login_sessions(name, keep)?;
        self.drop_user(name);
        Ok(())
    }

    /// Disable a user: their tokens stop working at once. The last enabled administrator
    /// cannot be disabled.
    pub async fn disable_user(&self, name: &str) -> Result<(), AccessError> {
        if name == ADMIN {
            return Err(AccessError::invalid(format!(
                "{ADMIN:?} is the local administrator (<data-dir>/admin.token acts as it) and cannot be disabled; change its password instead"
            )));
        }
        let _g = self.inner.users.lock().await;
        match self.store().disable_user(name)? {
            None => Err(user_not_found(name)),
            Some(false) => Err(AccessError::invalid(format!(
                "{name:?} is the last enabled administrator; add another administrator first"
            ))),
            Some(true) => {
                self.drop_user(name);
                Ok(())
            }
        }
    }

    // -- API tokens -----------------------------------------------------------------------

    /// Which user a token call is about: the caller, or (administrator only) `user`.
    fn subject(&self, p: &Principal, user: Option<&str>) -> Result<String, AccessError> {
        match user {
            None => Ok(p.user.clone()),
            Some(u) if u == p.user => Ok(p.user.clone()),
            Some(u) if p.administrator => {
                if self.store().get_user(u)?.is_none() {
                    return Err(user_not_found(u));
                }
                Ok(u.to_string())
            }
            Some(_) => Err(AccessError::forbidden(
                "only an administrator may see or change another user's tokens or audit rows",
            )),
        }
    }

    /// Create an API token for the caller; the secret is in the answer only.
    pub fn create_token(
        &self,
        p: &Principal,
        req: &ApiTokenRequest,
    ) -> Result<ApiTokenCreated, AccessError> {
        if !valid_name(&req.name) {
            return Err(AccessError::invalid(format!(
                "token name {:?}: lowercase letters, digits and -, at most 64 characters",
                req.name
            )));
        }
        if req.name.starts_with("login-")
            || req.name == LOCAL_TOKEN_NAME
            || req.name == GATEWAY_TOKEN_NAME
        {
            return Err(AccessError::invalid(format!(
                "token name {:?} is reserved for sessions and the server's local tokens",
                req.name
            )));
        }
        if req.scopes.iter().any(|s| s == "gateway") && !p.administrator {
            return Err(AccessError::new(
                ErrorCode::Forbidden,
                "the gateway scope reads the whole gateway table, issuers' secrets included: \
                 administrators only",
            ));
        }
        for s in &req.scopes {
            if !KNOWN_SCOPES.contains(&s.as_str()) {
                return Err(AccessError::invalid(format!(
                    "unknown scope {s:?}; known: {}",
                    KNOWN_SCOPES.join(", ")
                )));
            }
        }
        let expires = match req.ttl_secs {
            None => None,
            Some(0) => return Err(AccessError::invalid("ttl_secs must be positive")),
            Some(s) if s > 10 * 365 * 86400 => {
                return Err(AccessError::invalid("ttl_secs is over 10 years"))
            }
            Some(s) => Some(format_time(
                self.now() + time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX)),
            )),
        };
        let mut scopes = req.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let team = match req.team.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(self.token_team(p, t)?),
        };
        let token = secret::new_token();
        let created = self.store().insert_api_token(&ApiTokenRecord {
            id: 0,
            owner: p.user.clone(),
            name: req.name.clone(),
            kind: TokenKind::Api.as_str().into(),
            hash: secret::token_hash(&token),
            scopes,
            created_at: String::new(),
            expires_at: expires.clone(),
            last_used_at: None,
            team,
        })?;
        if created.is_none() {
            return Err(AccessError::new(
                ErrorCode::ApiTokenExists,
                format!("you already have a token named {:?}", req.name),
            ));
        }
        Ok(ApiTokenCreated {
            name: req.name.clone(),
            token,
            expires_at: expires,
        })
    }

    /// The caller's tokens, or (administrator) `user`'s.
    pub fn list_tokens(
        &self,
        p: &Principal,
        user: Option<&str>,
    ) -> Result<Vec<ApiTokenView>, AccessError> {
        let owner = self.subject(p, user)?;
        let now = self.now();
        Ok(self
            .store()
            .list_api_tokens(Some(&owner))?
            .into_iter()
            .filter(|t| {
                t.expires_at
                    .as_deref()
                    .and_then(parse_time)
                    .is_none_or(|e| e > now)
            })
            .map(|t| ApiTokenView {
                name: t.name,
                owner: t.owner,
                kind: t.kind,
                scopes: t.scopes,
                created_at: t.created_at,
                expires_at: t.expires_at,
                last_used_at: t.last_used_at,
                team: t.team,
            })
            .collect())
    }

    /// Revoke the caller's token `name` (or, administrator, `user`'s): it fails at once.
    pub fn revoke_token(
        &self,
        p: &Principal,
        name: &str,
        user: Option<&str>,
    ) -> Result<(), AccessError> {
        let owner = self.subject(p, user)?;
        if owner == ADMIN && name == LOCAL_TOKEN_NAME {
            return Err(local_token_stays());
        }
        match self.store().delete_api_token(&owner, name)? {
            Some(t) => {
                self.drop_hash(&t.hash);
                Ok(())
            }
            None => Err(AccessError::new(
                ErrorCode::ApiTokenNotFound,
                format!("{owner:?} has no token named {name:?}"),
            )),
        }
    }

    // -- audit ----------------------------------------------------------------------------

    /// Append one audit row (a failure is logged, not answered: the call already happened).
    /// Append one audit row; its `id` and `time` are set here.
    pub fn record(&self, mut row: AuditRecord) {
        row.id = 0;
        row.time = format_time(self.now());
        if let Err(e) = self.store().append_audit(&row) {
            tracing::error!(error = %e, "cannot append to the audit log");
        }
    }

    /// Audit rows, oldest first: the caller's own, or (administrator) anyone's or `user`'s.
    /// `since`: RFC 3339 or a duration back from now; `limit`: default 100, at most 1000.
    pub fn query(
        &self,
        p: &Principal,
        user: Option<&str>,
        since: Option<&str>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<AuditPage, AccessError> {
        let user = match user {
            None if p.administrator => None,
            None => Some(p.user.clone()),
            Some(u) if u == p.user || p.administrator => Some(u.to_string()),
            Some(_) => {
                return Err(AccessError::forbidden(
                    "only an administrator may read another user's audit rows",
                ))
            }
        };
        let since = since
            .map(|s| parse_since(s, self.now()))
            .transpose()?
            .map(format_time);
        let limit = limit.unwrap_or(100).clamp(1, 1000);
        let rows = self.store().audit(&AuditQuery {
            user,
            since,
            after,
            limit,
        })?;
        let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
        let next_after = if full {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        Ok(AuditPage {
            entries: rows
                .into_iter()
                .map(|r| AuditEntry {
                    id: r.id,
                    time: r.time,
                    user: r.user,
                    token: r.token,
                    team: r.team,
                    action: r.action,
                    object: r.object,
                    source: r.source,
                    request_id: r.request_id,
                    status: r.status,
                    code: r.code,
                })
                .collect(),
            next_after,
        })
    }
}

fn user_not_found(name: &str) -> AccessError {
    AccessError::new(ErrorCode::UserNotFound, format!("no user named {name:?}"))
}

fn user_exists(name: &str) -> AccessError {
    AccessError::new(
        ErrorCode::UserExists,
        format!("a user named {name:?} exists"),
    )
}

/// Write `bytes` to a new file at `path` readable by its owner only (created with mode 0600;
/// an old file is removed first, so its mode cannot carry over).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
