//! Berth's MQTT broker (docs/messaging.md): the `mqtt5` crate's broker, with Berth's JWTs as
//! logins ([`identity`]), the team model as its ACL ([`acl`]), limits from the command line,
//! its state in the data directory, and Berth's events published on `berth/events/...`.
//!
//! Dependency direction: this crate knows `berth-core` (token verification contract, issuers,
//! names, the event view) and nothing of the control plane; the binary hands it a
//! [`TokenVerifier`] and a [`Directory`] (issuers, market subscribers) and feeds it events.

pub mod acl;
pub mod identity;

use berth_core::api::EventView;
use berth_core::auth::TokenVerifier;
use berth_core::policy::Issuer;
use identity::Identity;
use mqtt5::broker::auth::{AuthProvider, AuthResult};
use mqtt5::broker::config::{StorageBackend, StorageConfig, TlsConfig, WebSocketConfig};
use mqtt5::broker::{BrokerConfig, MqttBroker};
use mqtt5::packet::connect::ConnectPacket;
use mqtt5::packet::publish::PublishPacket;
use mqtt5::protocol::v5::reason_codes::ReasonCode;
use mqtt5::QoS;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the broker asks of the rest of Berth.
pub trait Directory: Send + Sync + 'static {
    /// The issuers tokens are verified against (the routing table's: Berth's own keys).
    fn issuers(&self) -> Vec<Issuer>;
    /// Global names of the applications that subscribe to the market entry whose service has
    /// the global name `service`.
    fn subscribers(&self, service: &str) -> Vec<String>;
    /// Why an MQTT token of `team` whose subject is `subject` no longer logs in, if `subject`
    /// is a Berth user who may no longer act in `team`: disabled, no longer a member (an
    /// administrator acts in every team that exists), or the team is gone. `None` for a
    /// subject that is no user (an application's token) and when the answer is unknown.
    fn user_refusal(&self, team: &str, subject: &str) -> Option<&'static str>;
}

/// Limits, each a `berth server` flag (docs/messaging.md, "Limits").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet a client may send (and is told in CONNACK).
    pub max_packet_size: usize,
    /// QoS 1/2 messages a client may have unacknowledged towards the broker (Receive Maximum).
    pub max_inflight: u16,
    /// Connections of one identity (team + subject) at once.
    pub max_connections_per_subject: usize,
    /// Connections from one IP address at once.
    pub max_connections_per_address: usize,
    /// Longest a persistent session outlives its connection.
    pub max_session_expiry: Duration,
    /// Messages waiting in memory for one connected client.
    pub queue: usize,
    /// Failed logins from one IP address within [`LOGIN_WINDOW`] that lock it out (0: never).
    pub max_login_failures: usize,
    /// How long a locked-out address's CONNECTs are refused without looking at the token.
    pub login_lockout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1 << 20,
            max_inflight: 32,
            max_connections_per_subject: 32,
            max_connections_per_address: 100,
            max_session_expiry: Duration::from_secs(86_400),
            queue: 1000,
            max_login_failures: 10,
            login_lockout: Duration::from_secs(300),
        }
    }
}

/// Where the broker listens and keeps its state.
#[derive(Debug, Clone)]
pub struct Settings {
    /// MQTT over TCP.
    pub listen: Option<SocketAddr>,
    /// MQTT over TLS, with this certificate chain and key (PEM files).
    pub tls: Option<(SocketAddr, PathBuf, PathBuf)>,
    /// MQTT over WebSocket (path `/mqtt`).
    pub ws_listen: Option<SocketAddr>,
    /// Retained messages, sessions and queued messages (`<data-dir>/mqtt`).
    pub storage_dir: PathBuf,
    pub limits: Limits,
}

/// A running broker.
pub struct Broker {
    router: Arc<mqtt5::broker::router::MessageRouter>,
    cuts: tokio::task::JoinHandle<()>,
    shutdown: mqtt5::broker::server::BrokerShutdownHandle,
    task: tokio::task::JoinHandle<()>,
    /// The bound addresses (TCP, TLS, WebSocket), for logs and tests with port 0.
    pub local_addr: Option<SocketAddr>,
    pub tls_local_addr: Option<SocketAddr>,
    pub ws_local_addr: Option<SocketAddr>,
}

/// The last login with a client id, for the per-subject limit: a client id counts for its
/// user while the broker has it connected, or for [`PENDING_GRACE`] after the login (the
/// broker connects it just after). One entry per client id: a second CONNECT with the same
/// client id takes the session over, so it replaces the entry instead of adding one, and the
/// client id keeps counting as long as the router holds either connection.
///
/// The router is asked (`is_connected`) rather than told by the broker's connect and disconnect
/// events: an event handler makes `mqtt5` build an event per publish and per PUBACK, which
/// costs on every message (docs/benchmarks.md §10), and a disconnect event does not say which
/// connection of a client id ended.
struct Conn {
    user: String,
    since: Instant,
}

/// An authenticated connection that never completes its CONNECT (the broker refused it after
/// authentication) stops counting after this long.
const PENDING_GRACE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Conns(Mutex<HashMap<String, Conn>>);

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Conn>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client ids other than `client_id` whose last login was `user`'s and is older than
    /// the grace: whether they count depends on the router.
    fn to_ask(&self, client_id: &str, user: &str, now: Instant) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(id, c)| {
                c.user == user
                    && id.as_str() != client_id
                    && now.duration_since(c.since) >= PENDING_GRACE
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Count `client_id` for `user` unless `user` already holds `limit` other client ids:
    /// logged in within the grace or `live` (connected). `user`'s other entries that are
    /// neither are forgotten.
    fn admit(
        &self,
        client_id: &str,
        user: &str,
        limit: usize,
        now: Instant,
        live: &dyn Fn(&str) -> bool,
    ) -> bool {
        let mut g = self.lock();
        g.retain(|id, c| {
            c.user != user
                || id.as_str() == client_id
                || now.duration_since(c.since) < PENDING_GRACE
                || live(id)
        });
        let others = g
            .iter()
            .filter(|(id, c)| c.user == user && id.as_str() != client_id)
            .count();
        if others >= limit {
            return false;
        }
        g.insert(
            client_id.to_string(),
            Conn {
                user: user.to_string(),
                since: now,
            },
        );
        true
    }

    /// Who logged in last with `client_id`, if another identity than `user`, and whether
    /// within the grace.
    fn other_owner(&self, client_id: &str, user: &str, now: Instant) -> Option<bool> {
        self.lock()
            .get(client_id)
            .filter(|c| c.user != user)
            .map(|c| now.duration_since(c.since) < PENDING_GRACE)
    }

    /// Entries older than the grace (their connection may be gone).
    fn settled(&self, now: Instant) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, c)| now.duration_since(c.since) >= PENDING_GRACE)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forget `client_id` (its connection is gone) unless a login with it came since `now`
    /// minus the grace.
    fn forget(&self, client_id: &str, now: Instant) {
        let mut g = self.lock();
        if g.get(client_id)
            .is_some_and(|c| now.duration_since(c.since) >= PENDING_GRACE)
        {
            g.remove(client_id);
        }
    }
}

/// What a connection's login stays valid on: its token's `exp`, and for a subscription
/// credential, that its application still subscribes. Kept per client id from the last login
/// with it (a takeover's login replaces it), checked each [`CHECK_EVERY`] by [`cut_loop`].
#[derive(Debug, Clone)]
struct Lease {
    /// The token's `exp` (Unix seconds).
    exp: Option<i64>,
    /// A subscription credential: the entry's service (global name) and the application.
    market: Option<(String, String)>,
    /// An MQTT token: its team and subject (a Berth user's logins end with the user's rights).
    team: Option<(String, String)>,
    since: Instant,
}

/// How often live connections are checked against their logins.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Leases(Mutex<HashMap<String, Lease>>);

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The window [`Limits::max_login_failures`] counts failures in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses kept before stale ones are swept.
const THROTTLE_SWEEP_AT: usize = 10_000;

/// Failed logins per IP address (docs/messaging.md, "Limits"): `max` failures within
/// [`LOGIN_WINDOW`] lock the address for `lockout`. In memory; a success does not forget an
/// address's failures (one valid token must not reset a guesser's count).
struct Throttle {
    max: usize,
    lockout: Duration,
    entries: Mutex<HashMap<std::net::IpAddr, Failures>>,
}

#[derive(Default)]
struct Failures {
    at: std::collections::VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Throttle {
    fn new(max: usize, lockout: Duration) -> Throttle {
        Throttle {
            max,
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, Failures>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Is `addr` locked out at `now`?
    fn locked(&self, addr: std::net::IpAddr, now: Instant) -> bool {
        self.max > 0
            && self
                .lock()
                .get(&addr)
                .and_then(|f| f.locked_until)
                .is_some_and(|until| now < until)
    }

    /// Count a failed login from `addr`; true if that locks it.
    fn fail(&self, addr: std::net::IpAddr, now: Instant) -> bool {
        if self.max == 0 {
            return false;
        }
        let mut map = self.lock();
        if map.len() >= THROTTLE_SWEEP_AT {
            map.retain(|_, f| {
                f.locked_until.is_some_and(|u| now < u)
                    || f.at
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
        }
        let f = map.entry(addr).or_default();
        while f
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            f.at.pop_front();
        }
        f.at.push_back(now);
        if f.at.len() >= self.max {
            f.at.clear();
            f.locked_until = Some(now + self.lockout);
            return true;
        }
        false
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why a live connection must end now, if it must: its token expired, its subscription
/// credential's application no longer subscribes (`subscribed(service, app)`), or its
/// subject is a user who may no longer act in its team (`refusal(team, subject)`).
fn must_end(
    lease: &Lease,
    now: i64,
    subscribed: &mut impl FnMut(&str, &str) -> bool,
    refusal: &mut impl FnMut(&str, &str) -> Option<&'static str>,
) -> Option<&'static str> {
    if lease.exp.is_some_and(|exp| now >= exp) {
        return Some("its token expired");
    }
    if let Some((team, subject)) = &lease.team {
        if let Some(why) = refusal(team, subject) {
            return Some(why);
        }
    }
    if let Some((service, app)) = &lease.market {
        if !subscribed(service, app) {
            return Some("its application no longer subscribes to the market entry");
        }
    }
    None
}

/// Close the connections whose login stopped being valid (docs/messaging.md, "Who may
/// connect"), until aborted.
async fn cut_loop(
    leases: Arc<Leases>,
    conns: Arc<Conns>,
    router: Arc<mqtt5::broker::router::MessageRouter>,
    directory: Arc<dyn Directory>,
) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        // Client ids whose connections are gone stop counting for the per-subject limit.
        let at = Instant::now();
        for client_id in conns.settled(at) {
            if !router.is_connected(&client_id).await {
                conns.forget(&client_id, at);
            }
        }
        let now = unix_now();
        let all: Vec<(String, Lease)> = leases
            .lock()
            .iter()
            .map(|(id, l)| (id.clone(), l.clone()))
            .collect();
        // One look-up of each entry's subscribers per round.
        let mut subscribers: HashMap<String, Vec<String>> = HashMap::new();
        let mut subscribed = |service: &str, app: &str| {
            subscribers
                .entry(service.to_string())
                .or_insert_with(|| directory.subscribers(service))
                .iter()
                .any(|a| a == app)
        };
        // One look-up of each user per round.
        let mut users: HashMap<(String, String), Option<&'static str>> = HashMap::new();
        let mut refusal = |team: &str, subject: &str| {
            *users
                .entry((team.to_string(), subject.to_string()))
                .or_insert_with(|| directory.user_refusal(team, subject))
        };
        for (client_id, lease) in all {
            let connected = router.is_connected(&client_id).await;
            if !connected {
                // Gone (or not yet bound after its login): forget it after the grace.
                if lease.since.elapsed() >= PENDING_GRACE {
                    let mut g = leases.lock();
                    if g.get(&client_id).is_some_and(|l| l.since == lease.since) {
                        g.remove(&client_id);
                    }
                }
                continue;
            }
            let Some(why) = must_end(&lease, now, &mut subscribed, &mut refusal) else {
                continue;
            };
            // Only if no newer login took the client id over meanwhile.
            let current = leases
                .lock()
                .get(&client_id)
                .is_some_and(|l| l.since == lease.since);
            if current {
                tracing::info!(client_id, reason = why, "mqtt connection closed");
                router.disconnect_client(&client_id).await;
                leases.lock().remove(&client_id);
            }
        }
    }
}

struct BerthAuth {
    verifier: Arc<dyn TokenVerifier>,
    directory: Arc<dyn Directory>,
    conns: Arc<Conns>,
    leases: Arc<Leases>,
    per_subject: usize,
    throttle: Throttle,
    /// The broker's live connections, by client id.
    router: Arc<mqtt5::broker::router::MessageRouter>,
    /// The broker's sessions: whose a client id is while its session exists.
    storage: Option<Arc<mqtt5::broker::storage::DynamicStorage>>,
}

impl BerthAuth {
    fn subscribed(&self, who: &Identity) -> impl Fn(&str) -> bool + '_ {
        let who = who.clone();
        move |service: &str| {
            let apps = self.directory.subscribers(service);
            match &who {
                Identity::Team { team, .. } => apps
                    .iter()
                    .any(|a| berth_core::team::team_of(a) == team.as_str()),
                Identity::Market { app, .. } => apps.iter().any(|a| a == app),
            }
        }
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A ready answer that takes no memory: boxing it allocates nothing.
struct Answer<const OK: bool>;

impl<const OK: bool> Future for Answer<OK> {
    type Output = bool;
    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<bool> {
        std::task::Poll::Ready(OK)
    }
}

impl AuthProvider for BerthAuth {
    fn authenticate<'a>(
        &'a self,
        connect: &'a ConnectPacket,
        client_addr: SocketAddr,
    ) -> BoxFut<'a, mqtt5::error::Result<AuthResult>> {
        Box::pin(async move {
            let ip = client_addr.ip();
            if self.throttle.locked(ip, Instant::now()) {
                tracing::info!(
                    client_id = %connect.client_id,
                    addr = %client_addr,
                    reason = "too many failed logins from this address (--mqtt-max-login-failures)",
                    "mqtt login refused"
                );
                return Ok(AuthResult::fail(ReasonCode::BadUsernameOrPassword));
            }
            let refuse = |why: &dyn std::fmt::Display| {
                tracing::info!(
                    client_id = %connect.client_id,
                    addr = %client_addr,
                    reason = %why,
                    "mqtt login refused"
                );
                if self.throttle.fail(ip, Instant::now()) {
                    tracing::warn!(
                        addr = %ip,
                        failures = self.throttle.max,
                        lockout_secs = self.throttle.lockout.as_secs(),
                        "mqtt: too many failed logins, the address is locked out"
                    );
                }
                Ok(AuthResult::fail(ReasonCode::BadUsernameOrPassword))
            };
            let issuers = self.directory.issuers();
            let (who, exp) = match identity::login_until(
                self.verifier.as_ref(),
                &issuers,
                connect.username.as_deref(),
                connect.password.as_deref(),
            ) {
                Ok(login) => login,
                Err(why) => return refuse(&why),
            };
            // No leeway past `exp` (only Berth's own clock issues these tokens): a connection
            // accepted now would be closed within a second by `cut_loop`.
            if exp.is_some_and(|exp| unix_now() >= exp) {
                return refuse(&"its token expired");
            }
            if let Identity::Team { team, subject } = &who {
                if let Some(why) = self.directory.user_refusal(team, subject) {
                    return refuse(&why);
                }
            }
            let user = who.user_id();
            // A client id belongs to the identity whose session it names: another team's
            // CONNECT with it (even with clean start) would take that session over, dropping
            // its connection and its queued messages.
            let stored_owner = match &self.storage {
                Some(st) => {
                    use mqtt5::broker::storage::StorageBackend as _;
                    st.get_session(&connect.client_id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|s| s.user_id)
                }
                None => None,
            };
            let now = Instant::now();
            let held_by_other = match self.conns.other_owner(&connect.client_id, &user, now) {
                Some(recent) => recent || self.router.is_connected(&connect.client_id).await,
                None => false,
            };
            if stored_owner.is_some_and(|o| o != user) || held_by_other {
                tracing::warn!(
                    client_id = %connect.client_id,
                    addr = %client_addr,
                    user,
                    "mqtt login refused: the client id is another identity's session"
                );
                return Ok(AuthResult::fail(ReasonCode::ClientIdentifierNotValid));
            }
            let mut live = std::collections::HashSet::new();
            for id in self.conns.to_ask(&connect.client_id, &user, now) {
                if self.router.is_connected(&id).await {
                    live.insert(id);
                }
            }
            if !self
                .conns
                .admit(&connect.client_id, &user, self.per_subject, now, &|id| {
                    live.contains(id)
                })
            {
                tracing::warn!(
                    client_id = %connect.client_id,
                    addr = %client_addr,
                    user,
                    limit = self.per_subject,
                    "mqtt login refused: too many connections of this subject (--mqtt-max-connections-per-subject)"
                );
                return Ok(AuthResult::fail(ReasonCode::QuotaExceeded));
            }
            let (market, team) = match &who {
                Identity::Market {
                    provider,
                    service,
                    app,
                } => (
                    Some((
                        berth_core::team::global_name(provider, service),
                        app.clone(),
                    )),
                    None,
                ),
                Identity::Team { team, subject } => (None, Some((team.clone(), subject.clone()))),
            };
            self.leases.lock().insert(
                connect.client_id.clone(),
                Lease {
                    exp,
                    market,
                    team,
                    since: Instant::now(),
                },
            );
            tracing::debug!(client_id = %connect.client_id, user, "mqtt login");
            Ok(AuthResult::success_with_user(user))
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic: &'a str,
    ) -> BoxFut<'a, bool> {
        // On every publish: decided here, without allocating (the answer is a zero-sized
        // future, which a `Box` does not allocate for).
        if user_id.is_some_and(|u| acl::may_publish_as(u, topic)) {
            return Box::pin(Answer::<true>);
        }
        tracing::debug!(client_id, user = ?user_id, topic, "mqtt publish refused");
        Box::pin(Answer::<false>)
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client_id: &str,
        user_id: Option<&'a str>,
        topic_filter: &'a str,
    ) -> BoxFut<'a, bool> {
        let client_id = client_id.to_string();
        Box::pin(async move {
            let ok = user_id
                .and_then(Identity::parse)
                .is_some_and(|who| acl::may_subscribe(&who, topic_filter, &self.subscribed(&who)));
            if !ok {
                tracing::debug!(client_id, user = ?user_id, topic_filter, "mqtt subscribe refused");
            }
            ok
        })
    }
}

/// The dispatcher [`Broker::start`] builds the `mqtt5` broker under: the current one, without
/// the INFO lines of `mqtt5::broker::server`. Building it installs `mqtt5`'s own placeholder
/// login provider (allow-all, behind its rate limiter) and says so ("Anonymous authentication
/// enabled"), though [`BerthAuth`] replaces it before any listener accepts: those lines would
/// be false. Its warnings (a listener or TLS disabled) still pass.
struct QuietPlaceholder(tracing::Dispatch);

impl QuietPlaceholder {
    fn quiet(meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "mqtt5::broker::server" && *meta.level() == tracing::Level::INFO
    }
}

impl tracing::Subscriber for QuietPlaceholder {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::quiet(meta) {
            // Asked each time: other dispatchers may want it.
            tracing::subscriber::Interest::sometimes()
        } else {
            self.0.register_callsite(meta)
        }
    }
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        !Self::quiet(meta) && self.0.enabled(meta)
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.new_span(span)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.0.record(span, values);
    }
    fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
        self.0.record_follows_from(span, follows);
    }
    fn event(&self, event: &tracing::Event<'_>) {
        self.0.event(event);
    }
    fn enter(&self, span: &tracing::span::Id) {
        self.0.enter(span);
    }
    fn exit(&self, span: &tracing::span::Id) {
        self.0.exit(span);
    }
    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.0.clone_span(id)
    }
    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.0.try_close(id)
    }
}

impl Broker {
    /// Bind the listeners and start serving on the current Tokio runtime.
    ///
    /// # Errors
    /// A listener that cannot bind, a certificate that cannot be read, a storage directory that
    /// cannot be made.
    pub async fn start(
        settings: Settings,
        verifier: Arc<dyn TokenVerifier>,
        directory: Arc<dyn Directory>,
    ) -> Result<Broker, String> {
        std::fs::create_dir_all(&settings.storage_dir)
            .map_err(|e| format!("cannot create {}: {e}", settings.storage_dir.display()))?;
        let limits = &settings.limits;
        let conns = Arc::new(Conns::default());
        let mut config = BrokerConfig::default()
            .with_bind_addresses(settings.listen.into_iter().collect())
            .with_max_packet_size(limits.max_packet_size)
            .with_client_channel_capacity(limits.queue.max(1))
            .with_server_receive_maximum(limits.max_inflight.max(1))
            .with_session_expiry(limits.max_session_expiry)
            .with_sys_topics_enabled(false)
            .with_storage(
                StorageConfig::new()
                    .with_backend(StorageBackend::File)
                    .with_base_dir(settings.storage_dir.clone())
                    .with_persistence(true)
                    .with_max_queued_messages_per_client(limits.queue.max(1)),
            );
        if let Some((addr, cert, key)) = &settings.tls {
            config =
                config.with_tls(TlsConfig::new(cert.clone(), key.clone()).with_bind_address(*addr));
        }
        if let Some(addr) = settings.ws_listen {
            config = config.with_websocket(
                WebSocketConfig::new()
                    .with_bind_address(addr)
                    .with_path("/mqtt"),
            );
        }
        // Logins are Berth's (`BerthAuth`, with its own failed-login limit): mqtt5's rate
        // limiter would only wrap the placeholder.
        config.auth_config.rate_limit.enabled = false;
        let quiet = tracing::Dispatch::new(QuietPlaceholder(tracing::dispatcher::get_default(
            tracing::Dispatch::clone,
        )));
        let broker = tracing::instrument::WithSubscriber::with_subscriber(
            MqttBroker::with_config(config),
            quiet,
        )
        .await
        .map_err(|e| format!("the MQTT broker cannot start: {e}"))?;
        let storage = broker.storage();
        let router = broker.router();
        let leases = Arc::new(Leases::default());
        let mut broker = broker.with_auth_provider(Arc::new(BerthAuth {
            verifier,
            directory: directory.clone(),
            conns: conns.clone(),
            leases: leases.clone(),
            per_subject: limits.max_connections_per_subject,
            throttle: Throttle::new(limits.max_login_failures, limits.login_lockout),
            router: router.clone(),
            storage,
        }));
        broker
            .resource_monitor()
            .update_limits(mqtt5::broker::resource_monitor::ResourceLimits {
                max_connections: 100_000,
                max_connections_per_ip: limits.max_connections_per_address,
                // 0 means unlimited for messages and bytes, but not for new connections.
                max_message_rate_per_client: 0,
                max_bandwidth_per_client: 0,
                max_connection_rate: 10_000,
                rate_limit_window: Duration::from_secs(1),
            });
        tracing::info!(
            logins = "Berth JWTs (username = subject, password = token)",
            max_login_failures = limits.max_login_failures,
            login_window_secs = LOGIN_WINDOW.as_secs(),
            login_lockout_secs = limits.login_lockout.as_secs(),
            "mqtt: authentication and failed-login limit per address"
        );
        let shutdown = broker.shutdown_handle();
        let local_addr = broker.local_addr();
        let tls_local_addr = broker.tls_local_addr();
        let ws_local_addr = broker.ws_local_addr();
        let task = tokio::spawn(async move {
            if let Err(e) = broker.run().await {
                tracing::error!(error = %e, "the MQTT broker stopped");
            }
        });
        let cuts = tokio::spawn(cut_loop(leases, conns, router.clone(), directory));
        Ok(Broker {
            router,
            cuts,
            shutdown,
            task,
            local_addr,
            tls_local_addr,
            ws_local_addr,
        })
    }

    /// A handle that publishes Berth's events on this broker.
    #[must_use]
    pub fn publisher(&self) -> Publisher {
        Publisher {
            router: self.router.clone(),
        }
    }

    /// Stop serving and wait (at most `grace`) for the broker to flush its state.
    pub async fn stop(self, grace: Duration) {
        self.cuts.abort();
        self.shutdown.shutdown();
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Publishes Berth's events into a [`Broker`] (cheap to clone).
#[derive(Clone)]
pub struct Publisher {
    router: Arc<mqtt5::broker::router::MessageRouter>,
}

impl Publisher {
    /// Publish one of Berth's events (QoS 1, not retained) on [`acl::event_topic`]; `event` is
    /// as `GET /api/v1/events` shows it to `team`.
    pub async fn publish_event(&self, team: Option<&str>, event: &EventView) {
        let topic = acl::event_topic(team, &event.kind);
        let body = match serde_json::to_vec(event) {
            Ok(b) => b,
            Err(_) => return,
        };
        let publish = PublishPacket::new(topic, body, QoS::AtLeastOnce);
        // Never wait for a slow subscriber: a full lane queues the message behind (bounded).
        self.router
            .route_message_with_deadline(&publish, None, tokio::time::Instant::now())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_lock_their_address_out() {
        let t = Throttle::new(3, Duration::from_secs(300));
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(!t.fail(a, t0));
        assert!(!t.fail(a, t0 + Duration::from_secs(10)));
        assert!(!t.locked(a, t0 + Duration::from_secs(10)));
        // Failures older than the window do not count.
        assert!(!t.fail(a, t0 + Duration::from_secs(65)));
        assert!(t.fail(a, t0 + Duration::from_secs(66)));
        assert!(t.locked(a, t0 + Duration::from_secs(66)));
        assert!(t.locked(a, t0 + Duration::from_secs(365)));
        assert!(!t.locked(a, t0 + Duration::from_secs(366)));
        // Other addresses are not affected.
        assert!(!t.locked(b, t0 + Duration::from_secs(66)));
        // 0: never locks.
        let off = Throttle::new(0, Duration::from_secs(300));
        for _ in 0..100 {
            assert!(!off.fail(a, t0));
        }
        assert!(!off.locked(a, t0));
    }

    #[test]
    fn a_client_id_counts_while_connected_or_just_logged_in() {
        let conns = Conns::default();
        let t0 = Instant::now();
        let none = |_: &str| false;
        let later = t0 + PENDING_GRACE;
        // alice logs in as `a`: within the grace, `a` counts without asking the router.
        assert!(conns.admit("a", "shop/alice", 1, t0, &none));
        assert!(!conns.admit("b", "shop/alice", 1, t0, &none));
        assert_eq!(conns.other_owner("a", "shop/bob", t0), Some(true));
        assert_eq!(conns.other_owner("a", "shop/alice", t0), None);
        // Later, `a` counts while the router has it connected (whichever connection: after a
        // takeover the old connection's end does not uncount the new one).
        assert_eq!(
            conns.to_ask("b", "shop/alice", later),
            vec!["a".to_string()]
        );
        assert!(!conns.admit("b", "shop/alice", 1, later, &|id| id == "a"));
        // A takeover of `a` replaces its entry: still one client id.
        assert!(conns.admit("a", "shop/alice", 1, later, &none));
        assert!(!conns.admit("b", "shop/alice", 1, later, &none));
        // Its connection gone (not connected, past the grace): `a` is forgotten.
        let much_later = later + PENDING_GRACE;
        assert!(conns.admit("b", "shop/alice", 1, much_later, &none));
        assert!(conns.to_ask("c", "shop/alice", much_later).is_empty());
        // The loop's pruning: settled entries not connected are forgotten.
        assert_eq!(conns.settled(much_later), Vec::<String>::new());
        let end = much_later + PENDING_GRACE;
        assert_eq!(conns.settled(end), vec!["b".to_string()]);
        conns.forget("b", end);
        assert!(conns.settled(end).is_empty());
        // Other subjects are not counted.
        assert!(conns.admit("x", "shop/carol", 1, end, &none));
    }

    #[test]
    fn connections_end_when_their_login_stops_being_valid() {
        let lease = |exp: Option<i64>, market: Option<(&str, &str)>| Lease {
            exp,
            market: market.map(|(s, a)| (s.to_string(), a.to_string())),
            team: None,
            since: Instant::now(),
        };
        let mut subscribes = |service: &str, app: &str| service == "shop/orders" && app == "b/web";
        let mut users = |team: &str, subject: &str| {
            (team == "shop" && subject == "dora").then_some("its user is disabled")
        };
        let mut must_end =
            |l: &Lease, now: i64, subscribes: &mut _| must_end(l, now, subscribes, &mut users);
        // A token lives until its exp, not a second longer.
        assert_eq!(must_end(&lease(Some(100), None), 99, &mut subscribes), None);
        assert_eq!(
            must_end(&lease(Some(100), None), 100, &mut subscribes),
            Some("its token expired")
        );
        assert_eq!(
            must_end(&lease(None, None), i64::MAX, &mut subscribes),
            None
        );
        // A subscription credential lives while its application subscribes.
        let m = lease(Some(100), Some(("shop/orders", "b/web")));
        assert_eq!(must_end(&m, 50, &mut subscribes), None);
        let gone = lease(Some(100), Some(("shop/orders", "c/web")));
        assert_eq!(
            must_end(&gone, 50, &mut subscribes),
            Some("its application no longer subscribes to the market entry")
        );
        // An MQTT token of a user who may no longer act in its team.
        let user = |team: &str, subject: &str| Lease {
            team: Some((team.to_string(), subject.to_string())),
            ..lease(Some(100), None)
        };
        assert_eq!(
            must_end(&user("shop", "dora"), 50, &mut subscribes),
            Some("its user is disabled")
        );
        assert_eq!(must_end(&user("shop", "ed"), 50, &mut subscribes), None);
        assert_eq!(must_end(&user("other", "dora"), 50, &mut subscribes), None);
    }
}
