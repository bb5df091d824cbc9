//! The REST API's request and response bodies, shared by the server and the typed client.
//!
//! Every field name here is part of the public API (`/api/v1`): scripts depend on them. Add
//! fields freely; never rename or remove one. Request bodies reject unknown fields.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /api/v1/apps/{app}/apply`: the Compose files and every file they reference.
/// The server never reads paths on the client's machine; everything it needs is in here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Names of the Compose files inside `files`, in merge order (later files override).
    pub compose_files: Vec<String>,
    /// Relative path → UTF-8 content: the Compose files, `.env`, `env_file`s, file-based
    /// secrets and configs.
    pub files: BTreeMap<String, String>,
    /// Values of the client's environment variables the files interpolate.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Active Compose profiles.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Absolute project directory on the client (relative bind mounts resolve against it).
    #[serde(default)]
    pub project_dir: String,
    /// Service name → id of the build context uploaded for it (`POST /api/v1/contexts`), for
    /// every service with `build:`. Services may share one id. Each context is used by this
    /// apply only and deleted afterwards, whatever the outcome.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_contexts: BTreeMap<String, String>,
}

/// The largest build context the server accepts (`POST /api/v1/contexts`), in bytes: 512 MiB.
/// The CLI stops packing a context at this size.
pub const MAX_BUILD_CONTEXT_BYTES: u64 = 512 * 1024 * 1024;

/// The largest apply body the server accepts (`POST /api/v1/apps/{app}/apply`, the JSON
/// Compose bundle), in bytes: 16 MiB. The CLI checks its bundle against it before sending.
pub const MAX_APPLY_BYTES: u64 = 16 * 1024 * 1024;

/// The answer to `POST /api/v1/contexts`: the uploaded build context.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContextUploaded {
    /// The context's id: the SHA-256 of the tar, in hex. Name it in
    /// [`ApplyRequest::build_contexts`].
    pub id: String,
    /// Size of the tar in bytes.
    pub size: u64,
}

/// The answer to an apply, scale or rollback: the revision committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionCreated {
    pub app: String,
    pub revision: u64,
    /// False when the request changed nothing (no new revision was made).
    pub changed: bool,
    /// What changed, for humans.
    pub change: String,
    /// What the user should know about the file on this server, one line each (keys that
    /// apply only to another runtime, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// `POST /api/v1/apps/{app}/scale`: service name → replicas.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    pub replicas: BTreeMap<String, u32>,
}

/// `POST /api/v1/apps/{app}/rollback`: to a revision, or to the previous converged one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub to: Option<u64>,
}

/// One application in `GET /api/v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppSummary {
    pub name: String,
    /// Desired revision.
    pub revision: u64,
    /// `pending`, `converged`, `failed`, `superseded` (of the desired revision).
    pub revision_status: String,
    /// `healthy` (every service at its replicas, ready), `progressing`, `degraded`, `failed`
    /// (the desired revision failed), `deleting`.
    pub health: String,
    pub services: usize,
    pub created_at: String,
    /// The first service problem (`SERVICE: problem`), else why the revision failed, or null.
    #[serde(default)]
    pub problem: Option<String>,
}

/// `GET /api/v1/apps/{app}`: an application's progress, per service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppStatus {
    pub name: String,
    pub revision: u64,
    pub revision_status: String,
    /// Why the revision failed, if it did.
    pub message: String,
    pub health: String,
    /// True when every service has its desired replicas on the desired revision, ready, and
    /// nothing else remains.
    pub converged: bool,
    pub services: Vec<ServiceStatus>,
}

/// One service's progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceStatus {
    pub name: String,
    pub desired: u32,
    /// Replicas of the desired spec that exist.
    pub created: u32,
    /// ... that are ready (health probe passing, or running when there is none).
    pub healthy: u32,
    /// ... that are in the gateway's rotation.
    pub in_rotation: u32,
    /// Replicas of earlier specs still present (a rollout in progress).
    pub old: u32,
    /// One-shot job finished (exited 0).
    pub completed: bool,
    /// Waiting for `depends_on` conditions.
    pub waiting_for: Vec<String>,
    /// The service's last problem, if any (e.g. "replica 0 exited with code 1").
    pub problem: Option<String>,
}

/// One replica in `berth ps` / `GET /api/v1/apps/{app}/ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    pub service: String,
    pub slot: u32,
    pub container_id: String,
    pub name: String,
    pub image: String,
    /// Docker's state: `created`, `running`, `exited`, ...
    pub state: String,
    /// `starting`, `healthy`, `unhealthy` or `none`.
    pub health: String,
    /// `IP:port` on the application's network (port: the routed or first exposed port).
    pub address: String,
    /// The application revision whose spec created the replica.
    pub revision: u64,
    /// Times Berth restarted this replica.
    pub restarts: u64,
    /// Exit code of the replica's last exit, if it ever exited.
    pub exit_code: Option<i64>,
    pub in_rotation: bool,
    pub draining: bool,
    /// The node it runs on (the Swarm runtime); absent on the local engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One node of the Swarm in `berth nodes` / `GET /api/v1/nodes` (docs/swarm.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    /// The Swarm's node ID.
    pub id: String,
    pub hostname: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `manager` or `worker`.
    pub role: String,
    /// The manager that leads the Swarm's Raft group.
    pub leader: bool,
    /// The node's Docker engine version.
    pub engine_version: String,
    /// The address the node is reached at in the Swarm.
    pub address: String,
    /// Tasks the Swarm wants running on the node (of every service, Berth's or not).
    pub tasks: u32,
}

/// One revision in `berth history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionView {
    pub revision: u64,
    pub created_at: String,
    pub source: String,
    pub change: String,
    pub status: String,
    pub message: String,
    pub finished_at: Option<String>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    pub instance: String,
    pub docker_api: String,
}

/// `POST /api/v1/tokens`: a token signed by Berth's own issuer (ES256).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub subject: String,
    /// `aud` values; default `["berth"]`. A route with `auth: jwt` accepts its application's name.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Lifetime in seconds; default 3600.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Extra claims (not `iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
}

/// A token issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenIssued {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// `POST /api/v1/issuers`: accept tokens from another issuer. Exactly one of `jwks_url`,
/// `jwks` (a JWKS document, e.g. converted from a PEM public key) or `hs256_secret`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IssuerRequest {
    pub name: String,
    /// The `iss` value its tokens carry.
    pub issuer: String,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub jwks: Option<String>,
    #[serde(default)]
    pub hs256_secret: Option<String>,
}

/// An issuer as the API shows it (secrets never shown).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuerView {
    pub name: String,
    pub issuer: String,
    /// `jwks_url`, `jwks` or `hs256`.
    pub kind: String,
    pub jwks_url: Option<String>,
    /// Usable keys (0 for a JWKS URL not fetched yet).
    pub keys: usize,
}

/// `POST /api/v1/services`: register a service built from source. Exactly one of `git`, `svn`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub name: String,
    /// Git URL: a local path, `file://`, `http(s)://` or `ssh://`.
    #[serde(default)]
    pub git: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// Directory inside the repository holding the pipeline and the build context.
    #[serde(default)]
    pub path: Option<String>,
    /// Subversion URL.
    #[serde(default)]
    pub svn: Option<String>,
    /// Poll the repository every N seconds (at least 5) and build when it changed: a new
    /// commit of the branch (Git), a new last-changed revision of the URL (Subversion).
    #[serde(default)]
    pub poll_secs: Option<u64>,
    /// Git only, with `branch`: a push of another branch builds it and deploys this
    /// application (of the team's `dev`) with that version into `preview-<branch>`.
    #[serde(default)]
    pub preview_app: Option<String>,
    /// The preview environments' TTL (`24h`, `90m`; default 24h).
    #[serde(default)]
    pub preview_ttl: Option<String>,
}

/// A registered service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceView {
    pub name: String,
    /// `{"git", "branch", "path", "poll_secs"}` or `{"svn"}` (`{"poll_secs", "svn"}` when
    /// polled).
    pub source: crate::source::ServiceSource,
    pub created_at: String,
}

/// `DELETE /api/v1/services/{name}`: what removing a service did with its versions' images.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceRemoved {
    /// The service.
    pub name: String,
    /// Version records removed with it.
    pub versions: usize,
    /// Image tags removed from the engine (`berth/NAME:VERSION`).
    pub images_removed: Vec<String>,
    /// Image tags left on the engine, each with why (a revision of an application pins the
    /// image, a container uses it, the tag now points at another image, the engine refused).
    pub images_kept: Vec<String>,
    /// The build that was running or queued and was cancelled, if any.
    pub cancelled_builds: Vec<u64>,
}

/// `POST /api/v1/services/{name}/builds`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BuildStart {
    /// Branch or tag (Git); default the service's branch.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
}

/// A build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildView {
    pub id: u64,
    pub service: String,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    /// Why it failed (which step and how).
    pub reason: String,
    /// The version it produced.
    pub version: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

/// A version of a service: a successful build's image, pinned by digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionView {
    pub service: String,
    pub name: String,
    /// Image ID (`sha256:...`): what every deployment of this version runs.
    pub digest: String,
    /// `berth/<service>:<version>` — usable as `image:` in a Compose file.
    pub tag: String,
    pub commit: String,
    pub author: String,
    pub commit_time: Option<String>,
    pub build_id: u64,
    pub created_at: String,
    /// Where the version stands in the lifecycle (docs/lifecycle.md).
    #[serde(default)]
    pub state: crate::lifecycle::VersionState,
}

/// A version waiting for review (`berth review ls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewItem {
    pub service: String,
    pub version: String,
    pub submitted_by: Option<String>,
    pub note: Option<String>,
    /// When it was submitted (RFC 3339).
    pub submitted_at: Option<String>,
}

/// A service's image in `berth images`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageView {
    pub service: String,
    pub version: String,
    /// `berth/<service>:<version>`.
    pub tag: String,
    /// Image ID.
    pub digest: String,
    /// Bytes; `None` when the image is no longer on the engine (e.g. archived and removed).
    pub size: Option<i64>,
    /// When the version was built (RFC 3339).
    pub created_at: String,
    /// An application's current revision runs it.
    pub deployed: bool,
    /// A converged revision of an application (a rollback target) uses it.
    pub rollback_target: bool,
    /// `present` (on the engine), `removed` (by retention), `archived` (removed by retention
    /// after `berth image archive` exported it), or `missing` (gone, not by Berth).
    #[serde(default)]
    pub state: String,
}

/// One platform event (`GET /api/v1/events`, `berth events`): image removals, alerts, janitor
/// work. Kept in a bounded in-memory ring; ids grow by one per event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    /// Sequence number (per server process), for `?after=ID`.
    pub id: u64,
    /// When it happened (RFC 3339).
    pub time: String,
    /// What happened, e.g. `image.removed`, `alert.image_disk`, `alert.image_count`,
    /// `alert.cleared`, `janitor.container_removed`.
    pub kind: String,
    /// `info` or `warn`.
    pub level: String,
    /// One line for an operator.
    pub message: String,
    /// What it is about, e.g. `berth/web:v3` or a service name.
    pub subject: String,
}

// ---------------------------------------------------------------------------------------------
// Identity: users, API tokens, login, audit (docs/access.md). Times are RFC 3339 strings.
// ---------------------------------------------------------------------------------------------

/// `POST /api/v1/login`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// A login session: a bearer token for `Authorization: Bearer …`, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginIssued {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The session's name among the user's tokens (`berth api-token ls`).
    pub name: String,
    /// The password was generated (first start, `user add` without a password) and must be
    /// changed before any other call (`403 password_change_required`).
    pub password_change_required: bool,
}

/// `GET /api/v1/whoami`: who the request's token acts as.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Whoami {
    pub user: String,
    /// The platform administrator role.
    pub administrator: bool,
    /// The token's name.
    pub token: String,
    /// `login` (a session from `/login`), `api` (`berth api-token create`) or `local` (the
    /// server's `<data-dir>/admin.token`).
    pub kind: String,
    /// Empty: the owner's full rights; otherwise only these (e.g. `metrics`).
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub password_change_required: bool,
    /// The teams the user is a member of, with its role in each.
    #[serde(default)]
    pub teams: Vec<TeamRole>,
    /// The token's team: calls that name none act in it (`berth api-token create --team`).
    #[serde(default)]
    pub team: Option<String>,
}

/// A team and the user's role in it (`whoami`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRole {
    pub team: String,
    pub role: crate::team::Role,
}

/// `POST /api/v1/api-tokens`: a token for scripts, acting with its owner's rights.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    pub name: String,
    /// Lifetime in seconds; none: until revoked.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Restrict the token (e.g. `["metrics"]`); empty: the owner's full rights.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Calls made with the token that name no team act in this one (the caller must be a
    /// member of it, or the administrator).
    #[serde(default)]
    pub team: Option<String>,
}

/// A token created: the secret is in this answer only; the server keeps a hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenCreated {
    pub name: String,
    pub token: String,
    pub expires_at: Option<String>,
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenView {
    pub name: String,
    pub owner: String,
    /// `login`, `api` or `local`.
    pub kind: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The token's team (calls that name none act in it).
    #[serde(default)]
    pub team: Option<String>,
}

/// `POST /api/v1/users` (administrator). Without `password` the server generates one, answers
/// it once, and the user must change it at first login.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub administrator: bool,
    /// Also make the user a member of this team (with `role`, default `developer`).
    #[serde(default)]
    pub team: Option<String>,
    /// The user's role in `team`.
    #[serde(default)]
    pub role: Option<crate::team::Role>,
}

/// A user created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCreated {
    pub name: String,
    /// The generated password, when none was given (shown once).
    pub password: Option<String>,
}

/// A user as listed (never a password or its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub name: String,
    pub administrator: bool,
    pub disabled: bool,
    pub password_change_required: bool,
    pub created_at: String,
}

/// `POST /api/v1/users/{name}/password`. Changing one's own password needs the current one;
/// an administrator setting another user's does not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub password: String,
    #[serde(default)]
    pub current_password: Option<String>,
}

/// One row of the audit log: a state-changing call (allowed or refused) or a login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Increasing; page with `?after=`.
    pub id: u64,
    pub time: String,
    /// The acting user, when known (a failed login names the user it tried).
    pub user: Option<String>,
    /// The token's name, when the call carried a valid one.
    pub token: Option<String>,
    /// The team the call acted in (none: a call that acts in no team).
    pub team: Option<String>,
    /// `METHOD /api/v1/route/{template}`, or `login`.
    pub action: String,
    /// The concrete path (no query string).
    pub object: String,
    /// The caller's address.
    pub source: String,
    pub request_id: String,
    pub status: u16,
    /// The error code, when refused or failed.
    pub code: Option<String>,
}

/// `GET /api/v1/audit`: oldest first after `after`; `next_after` continues the listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_after: Option<u64>,
}

/// `POST /api/v1/teams` (administrator).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TeamRequest {
    pub name: String,
}

/// A team as listed: the administrator sees every team, a user the teams it is a member of.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamView {
    pub name: String,
    pub created_at: String,
    /// The caller's role in the team (none: the administrator, not a member).
    pub role: Option<crate::team::Role>,
    pub members: u64,
}

/// `POST /api/v1/teams/{team}/members` (the team's owner, or the administrator): add a member,
/// or change a member's role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    pub user: String,
    pub role: crate::team::Role,
}

/// A member of a team.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberView {
    pub user: String,
    pub role: crate::team::Role,
    pub added_at: String,
}

/// `POST /api/v1/teams/{team}/admission` (administrator): grant a key (docs/teams.md#admission).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdmissionGrantRequest {
    /// `privileged`, `network_mode:host`, `pid:host`, `ipc:host`, `userns_mode:host`,
    /// `devices`, `security_opt`, `cap_add:NAME`, `cap_add:*`, `docker_socket` or `bind:/PREFIX`.
    pub key: String,
}

/// An admission grant of a team.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdmissionGrantView {
    pub team: String,
    pub key: String,
    pub granted_by: String,
    pub created_at: String,
}

/// What one pipeline step of a version's build did (evidence for its review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepEvidence {
    pub name: String,
    /// The step container's exit code (`run` steps), else none.
    pub exit_code: Option<i64>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// The test report the step declared (`reports: {junit: PATH}`), parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<TestReport>,
}

/// A JUnit test report, as the platform read it after the step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestReport {
    /// The path the step declared, relative to the workspace.
    pub path: String,
    pub passed: u64,
    /// Failures and errors.
    pub failed: u64,
    pub skipped: u64,
    /// The failing cases (`classname.name: first line of the message`), at most 50.
    pub failing: Vec<String>,
    /// Why the report could not be read (missing, not JUnit XML); counts are zero then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A version's state in the lifecycle, and who moved it there (docs/lifecycle.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionLifecycle {
    /// `built`, `submitted`, `approved`, `rejected`, `published`, `deprecated`, `retired`.
    pub state: crate::lifecycle::VersionState,
    pub submitted_by: Option<String>,
    pub submit_note: Option<String>,
    pub reviewed_by: Option<String>,
    pub review_reason: Option<String>,
    /// When the state last changed (RFC 3339).
    pub state_changed_at: Option<String>,
}

/// A note with a transition (`submit`: the note; `approve` / `reject`: the reason, required).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// `publish`: the application of the team whose service runs this version behind a route,
    /// which then serves the market entry to subscribers (docs/market.md).
    #[serde(default)]
    pub app: Option<String>,
}

/// Everything a reviewer sees of a version (`berth review show`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewView {
    pub version: VersionView,
    pub lifecycle: VersionLifecycle,
    /// The image's size in bytes, when it is on the engine.
    pub image_size: Option<i64>,
    /// Each pipeline step of the build, in order.
    pub steps: Vec<StepEvidence>,
    /// The contract's operation count; none: the version has no contract.
    pub contract_operations: Option<u64>,
    /// The version the contract is compared with (the last published one), if any.
    pub compared_with: Option<String>,
    /// The difference from that version's contract.
    pub contract_changes: Vec<crate::contract::Change>,
    /// How many of those changes break consumers.
    pub breaking_changes: u64,
    /// Plain words on the contract: "no contract", "first contract", "no changes", ...
    pub contract_summary: String,
}

/// A version after a transition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionView {
    pub service: String,
    pub version: String,
    #[serde(flatten)]
    pub lifecycle: VersionLifecycle,
}

/// An application's protection (`berth app protect`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProtectView {
    pub app: String,
    /// Runs approved, published or deprecated versions only.
    pub protected: bool,
}

/// Upper bounds of the gateway's latency buckets, in microseconds; a last bucket (`+Inf`)
/// follows. Shared by the gateway's histograms and the control plane's figures (docs/market.md).
pub const LATENCY_BUCKETS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// One service's cumulative counters at a gateway, since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceCounters {
    /// The application's global name.
    pub app: String,
    pub service: String,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses: [u64; 5],
    /// Observations per latency bucket ([`LATENCY_BUCKETS_US`], then `+Inf`): not cumulative.
    pub latency_buckets: Vec<u64>,
}

/// What a gateway reports every second (`POST /api/v1/gateway/stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GatewayReport {
    /// The reporting gateway (any stable string: counters are compared per gateway).
    pub gateway: String,
    pub services: Vec<ServiceCounters>,
    /// Every endpoint this gateway probes itself ([`crate::EndpointProbe`]: Swarm), with what
    /// its probe says now. Sent by gateways that probe, even empty (the control plane reads a
    /// recent report as "this gateway is alive"); absent from other reporters' (the in-process
    /// gateway's, older gateways').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Vec<EndpointReadiness>>,
}

/// One endpoint's readiness as a gateway's own probe sees it (docs/swarm.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EndpointReadiness {
    /// The application's global name (whose reconciler a change wakes).
    pub app: String,
    /// The endpoint's id (the replica: a Swarm task).
    pub id: String,
    pub state: ProbeState,
}

/// What a probe says of an endpoint, by the rules of Berth's own probes: `starting` until it
/// first passes, `ready` while it passes, `starting` again after one failure, `unhealthy` after
/// three in a row once it had passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    Starting,
    Ready,
    Unhealthy,
}

/// The most services one report carries (a gateway routing more sends several reports).
pub const MAX_REPORT_SERVICES: usize = 10_000;

/// The largest report body: [`MAX_REPORT_SERVICES`] entries of the largest size (names at
/// their longest, every counter 20 digits: under 800 bytes of JSON each) and as many endpoints'
/// readiness (under 500 bytes each) fit.
pub const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

impl GatewayReport {
    /// Why the report is not one a gateway sends, if it is not: too many services, names too
    /// long, or latency buckets other than [`LATENCY_BUCKETS_US`] and `+Inf`.
    pub fn validate(&self) -> Result<(), String> {
        if self.gateway.len() > 200 {
            return Err("the gateway's name is longer than 200 bytes".into());
        }
        if self.services.len() > MAX_REPORT_SERVICES {
            return Err(format!(
                "the report has more than {MAX_REPORT_SERVICES} services (send several)"
            ));
        }
        let readiness = self.readiness.as_deref().unwrap_or_default();
        if readiness.len() > MAX_REPORT_SERVICES {
            return Err(format!(
                "the report has more than {MAX_REPORT_SERVICES} endpoints' readiness (send several)"
            ));
        }
        if readiness
            .iter()
            .any(|r| r.app.len() > 200 || r.id.len() > 200)
        {
            return Err("an application name or endpoint id is longer than 200 bytes".into());
        }
        let buckets = LATENCY_BUCKETS_US.len() + 1;
        for c in &self.services {
            if c.app.len() > 200 || c.service.len() > 200 {
                return Err("an application or service name is longer than 200 bytes".into());
            }
            if c.latency_buckets.len() != buckets {
                return Err(format!(
                    "{}/{}: {} latency buckets, not {buckets}",
                    c.app,
                    c.service,
                    c.latency_buckets.len()
                ));
            }
        }
        Ok(())
    }
}

/// One minute of a service's traffic through the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteStats {
    /// The minute's start (RFC 3339).
    pub start: String,
    pub requests: u64,
    /// 5xx answers.
    pub errors: u64,
    /// Estimated from the latency buckets; none without requests.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// A service's figures (`GET /api/v1/routes/{app}/{service}/stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteStats {
    pub app: String,
    pub service: String,
    /// Requests in the last full minute.
    pub calls_per_minute: u64,
    /// 5xx / requests in the last full minute (0 without requests).
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// The last hour, oldest first; minutes without traffic are left out.
    pub minutes: Vec<MinuteStats>,
}

/// A version in the market.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarketVersion {
    pub name: String,
    /// `published`, `deprecated` or `retired`.
    pub state: crate::lifecycle::VersionState,
    /// `berth/...:VERSION`.
    pub tag: String,
    pub created_at: String,
}

/// The application that serves a market entry to subscribers (`berth publish S:V --app APP`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarketProvider {
    /// The owner team's application.
    pub app: String,
    /// Its service that runs the version.
    pub service: String,
    pub version: String,
    /// The application's health (`healthy`, `degraded`, ...).
    pub health: String,
}

/// A market entry: a service of some team with a published or deprecated version
/// (docs/market.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarketEntry {
    /// The owner team.
    pub team: String,
    pub service: String,
    /// The README's first paragraph.
    pub description: String,
    /// The newest published (or deprecated) version.
    pub latest: Option<String>,
    /// Versions that were published, newest first.
    pub versions: Vec<MarketVersion>,
    pub provider: Option<MarketProvider>,
    /// Through the gateway, the provider's last full minute (0 without a provider).
    pub calls_per_minute: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Applications that subscribe to the entry, as `TEAM/APP`.
    #[serde(default)]
    pub subscribers: Vec<String>,
    /// Applications that run an installed copy, as `TEAM/APP` (service, version).
    #[serde(default)]
    pub installs: Vec<String>,
    /// `market show` only: the README (its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readme: Option<String>,
    /// `market show` only: the latest version's contract (OpenAPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub contract: Option<serde_json::Value>,
    /// `market show` only: the provider's operations per minute for the last hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<RouteStats>,
}

/// One edge of an application's graph (docs/market.md#composition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraphEdge {
    /// The market entry, `TEAM/SERVICE` (with `:VERSION` for an install).
    pub entry: String,
    /// The other application, `TEAM/APP`: the provider instance (in `uses`) or the consumer
    /// (in `used_by`); none for an entry without a provider instance.
    pub app: Option<String>,
    /// `subscription` (calls the provider through the gateway) or `install` (runs its own copy).
    pub via: String,
    /// This application's service the edge starts at (`uses`) or ends at (`used_by`).
    pub service: Option<String>,
}

/// What an application uses and who uses it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppGraph {
    /// `TEAM/APP`.
    pub app: String,
    pub uses: Vec<GraphEdge>,
    pub used_by: Vec<GraphEdge>,
}

/// `POST /api/v1/apps/{app}/upgrade`: move an installed copy to another published version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The application's service installed with `x-berth.from_market`.
    pub service: String,
    /// The version to move to (default: the newest published one).
    #[serde(default)]
    pub to: Option<String>,
    /// Only answer what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// What an upgrade changes (or changed): the versions and the contract's difference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeView {
    pub app: String,
    pub service: String,
    /// The market entry, `TEAM/SERVICE`.
    pub entry: String,
    pub from: String,
    pub to: String,
    /// From the version it runs to the target's contract (empty when either has none).
    pub changes: Vec<crate::contract::Change>,
    /// One of the changes breaks existing consumers.
    pub breaking: bool,
    /// The revision that rolls it out (none for a dry run, or when already there).
    pub revision: Option<u64>,
}

/// `POST /api/v1/apps/{app}/subscriptions`: subscribe the application to a market entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The market entry, `TEAM/SERVICE`.
    pub entry: String,
    /// One of the provider's plans (`x-berth.route.plans`).
    #[serde(default)]
    pub plan: Option<String>,
}

/// A subscription of an application to a market entry (docs/market.md#subscribe).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionView {
    /// The consumer application (the caller's team's name).
    pub app: String,
    /// The market entry, `TEAM/SERVICE`.
    pub entry: String,
    pub plan: Option<String>,
    /// `cli` (berth subscribe) or `uses` (`x-berth.uses` in the application's file).
    pub origin: String,
    /// The variable holding the provider's URL through the gateway, and its value.
    pub url_env: String,
    pub url: String,
    /// The variable naming the credential file, and the file inside the containers.
    pub token_env: String,
    pub token_file: String,
    pub created_by: String,
    pub created_at: String,
}

/// `POST /api/v1/envs`: create an environment in the team (docs/environments.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvRequest {
    /// Lowercase letters, digits and `-`, at most 40 characters; not `dev` (every team has it).
    pub name: String,
    /// Time to live (`10s`, `90m`, `24h`, `7d`; at least 10 s): it is recycled when it runs out.
    /// None: it lives until removed.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Its host port block, `LO-HI`. None: the next free block of 100 of the server's
    /// `--port-range`.
    #[serde(default)]
    pub ports: Option<String>,
    /// Runs approved, published or deprecated versions only (`version_not_approved`).
    #[serde(default)]
    pub protected: bool,
    /// Recycling keeps its applications' named volumes.
    #[serde(default)]
    pub keep_volumes: bool,
    /// Quota: CPUs its services may use in all (`resources.limits.cpus` × replicas).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Quota: memory its services may use in all (`512M`, `4g`; `resources.limits.memory` ×
    /// replicas).
    #[serde(default)]
    pub memory: Option<String>,
    /// Clone this environment's applications at their current image IDs (host ports are
    /// leased again from the new environment's block).
    #[serde(default)]
    pub from: Option<String>,
}

/// `POST /api/v1/envs/{env}/extend`: the environment now expires `ttl` from now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvExtendRequest {
    pub ttl: String,
}

/// An environment (`berth env ls | show`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvView {
    pub name: String,
    /// RFC 3339; none for `dev`, which every team has.
    pub created_at: Option<String>,
    pub created_by: Option<String>,
    /// RFC 3339; none: it never expires.
    pub expires_at: Option<String>,
    /// Seconds until it expires (0 once it has: it is being recycled).
    pub expires_in_secs: Option<u64>,
    /// `LO-HI`.
    pub ports: Option<String>,
    pub protected: bool,
    pub keep_volumes: bool,
    /// Quota in CPUs, if set.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Quota in bytes of memory, if set.
    #[serde(default)]
    pub memory_bytes: Option<i64>,
    /// Its applications, by name (on `GET /envs/{env}`; empty in the list).
    #[serde(default)]
    pub apps: Vec<String>,
}

/// A host port an application holds (`berth ports`, `GET /api/v1/ports`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortLeaseView {
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub env: String,
    /// The application, by its name in the environment.
    pub app: String,
    pub service: String,
    /// The container port it forwards to.
    pub target: u16,
    /// Named by the Compose file (else leased from the environment's range).
    pub fixed: bool,
    /// RFC 3339.
    pub since: String,
}

/// `POST /api/v1/apps/{app}/deploy`: the application's next revision runs `version` of the
/// built `service` in every Compose service that runs an image of it (`berth deploy`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The built service (`berth service create`), by the team's name.
    pub service: String,
    /// One of its versions (`berth versions SERVICE`).
    pub version: String,
}

/// `POST /api/v1/apps/{app}/release`: make the application's current revision in `from` a new
/// revision of it in `to` (the same Compose project and image IDs; docs/environments.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The source environment.
    pub from: String,
    /// The target environment.
    pub to: String,
}

/// `DELETE /api/v1/envs/{env}`: its applications are being removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvRemoved {
    pub name: String,
    /// The applications marked for removal.
    pub apps: Vec<String>,
    /// Their named volumes were kept.
    pub keep_volumes: bool,
}
