//! The control plane's error type. The API turns it into HTTP in exactly one place, through
//! [`CpError::code`]; internal detail (Docker, SQLite) goes to the log, not to the client.

use berth_core::ErrorCode;

/// Everything an application-layer operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// A request value is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The Compose files cannot be used.
    #[error("{0}")]
    Compose(#[from] berth_compose::ComposeError),
    /// Images named by the application are missing from the engine.
    #[error("{}", missing_images(.0))]
    ImageMissing(Vec<String>),
    /// A Compose service's image build failed (`build:`).
    #[error("building service {service:?} failed: {reason}{}", tail_text(.tail))]
    BuildFailed {
        /// The service whose build failed.
        service: String,
        /// The engine's (or Berth's) reason.
        reason: String,
        /// The last lines of build output.
        tail: Vec<String>,
    },
    /// An uploaded build context passed the size limit (in bytes).
    #[error("the build context is larger than {} MiB (leave large files out with .dockerignore)", .0 / (1024 * 1024))]
    ContextTooLarge(u64),
    /// An uploaded image archive passed the size limit (in bytes).
    #[error("the image archive is larger than {} MiB", .0 / (1024 * 1024))]
    ArchiveTooLarge(u64),
    /// Unknown application.
    #[error("application {0:?} does not exist")]
    AppNotFound(String),
    /// Unknown service of an application.
    #[error("service {1:?} does not exist in application {0:?}")]
    ServiceNotFound(String, String),
    /// Unknown service built from source (`berth service create`), in no application.
    #[error("no service {0:?} is registered for builds (see `berth service ls`)")]
    UnknownBuildService(String),
    /// Unknown build.
    #[error("build {0} does not exist")]
    BuildNotFound(u64),
    /// Unknown revision.
    #[error("revision {1} of application {0:?} does not exist")]
    RevisionNotFound(String, u64),
    /// A route is held by another application.
    #[error("{0}")]
    RouteConflict(String),
    /// A published port is held by another application.
    #[error("{0}")]
    PortConflict(String),
    /// An application network or volume cannot be made: no free subnet in the pool, or its name
    /// is held by an object that is not the application's.
    #[error("{0}")]
    Network(String),
    /// A container name Berth needs is held by a container it must not adopt or remove (not
    /// Berth's, another application's, or another replica's). The reconciler reports it as
    /// the service's problem and retries with a backoff.
    #[error("name {name} is taken by {holder}")]
    NameTaken {
        /// The container name.
        name: String,
        /// Who holds it, in words.
        holder: String,
    },
    /// The Docker engine failed or cannot be reached.
    #[error("docker: {0}")]
    Docker(#[from] berth_docker::DockerError),
    /// Keys of the project reach the host and the team holds no grant for them
    /// (docs/teams.md#admission).
    #[error("{}", crate::admission::message(.team, .denials))]
    AdmissionDenied {
        /// The application's team.
        team: String,
        /// Every key refused.
        denials: Vec<crate::admission::Denial>,
    },
    /// Unknown version of a service.
    #[error("service {0:?} has no version {1:?}")]
    VersionNotFound(String, String),
    /// The version's state does not allow the transition.
    #[error("version {0}: {1}")]
    InvalidTransition(String, berth_core::lifecycle::InvalidTransition),
    /// A protected application would run an image that is not a reviewed version.
    #[error("{0}")]
    VersionNotApproved(String),
    /// The caller may not do this to this object (the four-eyes rule).
    #[error("{0}")]
    Forbidden(String),
    /// The object is used elsewhere; the message says where.
    #[error("{0}")]
    InUse(String),
    /// The project names images of another team's `berth/` (docs/teams.md#images): each
    /// refusal, by where it is named.
    #[error("image denied for team {team:?}: {}", .denials.join("; "))]
    ImageDenied {
        /// The application's team.
        team: String,
        /// Every image refused, with where it is named.
        denials: Vec<String>,
    },
    /// Not a published (or deprecated) version of the market.
    #[error("{0}")]
    VersionNotPublished(String),
    /// The server's Docker engine is not a Swarm manager (docs/swarm.md); holds the endpoint.
    #[error("the Docker engine at {0} is not a Swarm manager (not in a Swarm, or a worker node): point the server at a manager's engine (DOCKER_HOST)")]
    NotASwarmManager(String),
    /// The application does not subscribe to the market entry.
    #[error("application {0:?} does not subscribe to {1}")]
    SubscriptionNotFound(String, String),
    /// `x-berth.mqtt: true` on a server without `--mqtt-listen`; the message names the key.
    #[error("{0}")]
    MqttDisabled(String),
    /// Unknown team.
    #[error("team {0:?} does not exist")]
    TeamNotFound(String),
    /// Unknown environment (of the team; docs/environments.md).
    #[error("environment {0:?} does not exist")]
    EnvNotFound(String),
    /// The environment exists already.
    #[error("environment {0:?} exists already")]
    EnvExists(String),
    /// No host port (or block) is free; the message says for what and where.
    #[error("{0}")]
    NoFreePort(String),
    /// The environment's quota would be exceeded; the message has the numbers.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The team holds no such admission grant.
    #[error("team {0:?} holds no admission grant {1}")]
    GrantNotFound(String, String),
    /// The state database failed.
    #[error("state: {0}")]
    Store(berth_store::StoreError),
    /// A backup could not be made (the snapshot, or the files around it).
    #[error("backup: {0}")]
    Backup(#[from] crate::backup::BackupError),
}

fn missing_images(images: &[String]) -> String {
    format!(
        "{} not present on the Docker engine (no registry can be reached; build or load {} first): {}",
        if images.len() == 1 { "image" } else { "images" },
        if images.len() == 1 { "it" } else { "them" },
        images.join(", ")
    )
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nlast lines of build output:\n  {}", tail.join("\n  "))
    }
}

impl From<berth_store::StoreError> for CpError {
    fn from(e: berth_store::StoreError) -> Self {
        match e {
            berth_store::StoreError::AppNotFound(a) => CpError::AppNotFound(a),
            berth_store::StoreError::RevisionNotFound(a, n) => CpError::RevisionNotFound(a, n),
            berth_store::StoreError::TeamNotFound(t) => CpError::TeamNotFound(t),
            other => CpError::Store(other),
        }
    }
}

/// The largest id or revision number the state database can hold (SQLite integers are signed
/// 64-bit): a larger number names nothing and is a bad argument, never a store failure.
pub const MAX_ID: u64 = i64::MAX as u64;

/// `n` if the store can hold it, else `invalid_argument` naming `what`.
pub(crate) fn stored_id(what: &str, n: u64) -> Result<u64, CpError> {
    if n > MAX_ID {
        return Err(CpError::InvalidArgument(format!(
            "{what} {n} is out of range (at most {MAX_ID})"
        )));
    }
    Ok(n)
}

impl CpError {
    /// The stable error code (and with it the HTTP status).
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            CpError::InvalidArgument(_) | CpError::NameTaken { .. } => ErrorCode::InvalidArgument,
            CpError::Compose(berth_compose::ComposeError::Unsupported { .. }) => {
                ErrorCode::UnsupportedKey
            }
            CpError::Compose(_) => ErrorCode::InvalidCompose,
            CpError::ImageMissing(_) => ErrorCode::ImageMissing,
            CpError::BuildFailed { .. } => ErrorCode::BuildFailed,
            CpError::ContextTooLarge(_) | CpError::ArchiveTooLarge(_) => ErrorCode::PayloadTooLarge,
            CpError::AppNotFound(_) => ErrorCode::AppNotFound,
            CpError::ServiceNotFound(..) | CpError::UnknownBuildService(_) => {
                ErrorCode::ServiceNotFound
            }
            CpError::BuildNotFound(_) => ErrorCode::BuildNotFound,
            CpError::RevisionNotFound(..) => ErrorCode::RevisionNotFound,
            CpError::RouteConflict(_) => ErrorCode::RouteConflict,
            CpError::PortConflict(_) => ErrorCode::PortConflict,
            CpError::AdmissionDenied { .. } => ErrorCode::AdmissionDenied,
            CpError::ImageDenied { .. } => ErrorCode::ImageDenied,
            CpError::TeamNotFound(_) => ErrorCode::TeamNotFound,
            CpError::EnvNotFound(_) => ErrorCode::EnvNotFound,
            CpError::EnvExists(_) => ErrorCode::EnvExists,
            CpError::NoFreePort(_) => ErrorCode::NoFreePort,
            CpError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            CpError::VersionNotFound(..) => ErrorCode::VersionNotFound,
            CpError::InvalidTransition(..) => ErrorCode::InvalidTransition,
            CpError::VersionNotApproved(_) => ErrorCode::VersionNotApproved,
            CpError::Forbidden(_) => ErrorCode::Forbidden,
            CpError::InUse(_) => ErrorCode::InUse,
            CpError::SubscriptionNotFound(..) => ErrorCode::SubscriptionNotFound,
            CpError::VersionNotPublished(_) => ErrorCode::VersionNotPublished,
            CpError::MqttDisabled(_) => ErrorCode::MqttDisabled,
            CpError::NotASwarmManager(_) => ErrorCode::NotASwarmManager,
            CpError::GrantNotFound(..) => ErrorCode::NotFound,
            CpError::Docker(_) | CpError::Network(_) => ErrorCode::DockerUnavailable,
            CpError::Store(_) | CpError::Backup(_) => ErrorCode::Internal,
        }
    }

    /// Whether the message is safe and useful to show the client (internal failures are logged
    /// in full and answered with a generic message).
    #[must_use]
    pub fn is_internal(&self) -> bool {
        matches!(self, CpError::Store(_) | CpError::Backup(_))
    }
}
