//! Berth's command line. Every command but `server` is a call to the REST API through
//! [`client::Client`]; the server is found with `--server` or `BERTH_SERVER`, by default the
//! server's own default API address.
//!
//! Rules it keeps: a failure prints one line (`error: ...`, with the API's code when there is
//! one) and exits non-zero; nothing panics on bad input, nor when the reader of its output goes
//! away (`berth history --app shop | head -1` ends quietly with status 0: see `output`); the CLI
//! sends the server everything it needs (Compose files and the files they reference) and never
//! expects the server to read the client's paths.

#[macro_use]
mod output;
mod admin;
pub mod client;
mod cmd;
mod commands;
pub mod credentials;

pub use credentials::default_data_dir;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The API address `berth server` listens on by default, and the CLI's default server.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7400";
/// The gateway address `berth server` listens on by default.
pub const DEFAULT_GATEWAY_LISTEN: &str = "0.0.0.0:7480";

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Berth: build, deploy, route, scale and heal services on Docker"
)]
pub struct Cli {
    /// The Berth API to talk to.
    #[arg(long, global = true, env = "BERTH_SERVER", default_value = concat!("http://", "127.0.0.1:7400"))]
    pub server: String,
    /// The API token to send (else `BERTH_TOKEN`, else the session `berth login` stored for the
    /// server, else, for a server on this machine, its `<data-dir>/admin.token`).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The team to act in (else `BERTH_TEAM`, else the current team of `berth team use`; else
    /// the token's team, or one's only team). With `user add`: the team the new user joins;
    /// with `api-token create`: the token's team.
    #[arg(long, global = true, env = "BERTH_TEAM", value_name = "TEAM")]
    pub team: Option<String>,
    /// The environment application commands act in (docs/environments.md; default `dev`).
    #[arg(long = "env", global = true, env = "BERTH_ENV", value_name = "ENV")]
    pub app_env: Option<String>,
    /// Also trust the CA certificates in this PEM file for an `https://` server.
    #[arg(long, global = true, env = "BERTH_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane, the gateway and the reconciler in one process.
    Server(Box<ServerArgs>),
    /// Run a gateway on its own, fed its routing table by a control plane (`berth server
    /// --no-gateway`). It keeps serving the last table while the control plane restarts.
    Gateway(GatewayArgs),
    /// Deploy a Docker Compose application and wait until it has converged.
    Apply(ApplyArgs),
    /// List applications with their revision and health.
    Apps(OutputArgs),
    /// List an application's replicas.
    Ps {
        /// Application name.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Set the replica count of services: `berth scale --app shop web=3`.
    Scale {
        /// Application name.
        #[arg(long)]
        app: String,
        /// SERVICE=N pairs.
        #[arg(required = true)]
        replicas: Vec<String>,
        /// Return at once instead of waiting for convergence.
        #[arg(long)]
        detach: bool,
    },
    /// Show a service's logs.
    Logs {
        /// Application name.
        #[arg(long)]
        app: String,
        /// The service whose logs to show: every replica's, each line prefixed with `SERVICE.SLOT |`
        /// when there are several.
        service: String,
        /// Keep streaming new output.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines of each replica.
        #[arg(long)]
        tail: Option<u64>,
        /// Start each line with the time the replica wrote it (RFC 3339, after the prefix).
        #[arg(long, short = 't')]
        timestamps: bool,
    },
    /// List an application's revisions: what changed, when, outcome.
    History {
        /// Application name.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Roll back to a revision (default: the previous converged one).
    Rollback {
        /// Application name.
        #[arg(long)]
        app: String,
        /// The revision to return to (as `berth history` numbers them).
        #[arg(long)]
        to: Option<u64>,
        /// Return at once instead of waiting for convergence.
        #[arg(long)]
        detach: bool,
    },
    /// Services built from source.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Build a service from its source now: `berth build NAME [--ref REF] [--follow]`.
    Build {
        /// The service to build (`berth service create NAME`).
        name: String,
        /// Branch or tag to build (Git); default the service's branch.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// Stream the build's log; the exit code is the build's outcome.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// List builds (`berth builds [NAME]`), or `berth builds logs ID` / `berth builds cancel ID`.
    #[command(args_conflicts_with_subcommands = true)]
    Builds {
        #[command(subcommand)]
        command: Option<BuildsCommand>,
        /// Only this service's builds.
        name: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A service's versions (image digests), newest first.
    Versions {
        /// The service built from source.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Images of services built from source: size, deployed, rollback target.
    Images {
        /// Only this service's images.
        name: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The Swarm's nodes: state, availability, role and tasks per node (the server's engine must
    /// be a Swarm manager; docs/swarm.md).
    Nodes {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Platform events, newest last: image removals, alerts, janitor work.
    Events {
        /// Keep printing new events as they happen (one per line; JSON lines with -o json).
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Archive or restore a service version's image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Build-time secrets: `berth secret set SERVICE NAME` reads the value from stdin.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// JWT tokens signed by Berth's own issuer.
    #[command(subcommand)]
    Token(TokenCommand),
    /// JWT issuers the gateway accepts besides Berth's own.
    #[command(subcommand)]
    Issuer(IssuerCommand),
    /// Log in to the server (`--server`) and keep the session for later commands.
    Login(LoginArgs),
    /// End the session `berth login` stored for the server.
    Logout,
    /// Who the server sees: user, token, rights.
    Whoami(OutputArgs),
    /// Users (administrator), and `berth user passwd` for one's own password.
    #[command(subcommand)]
    User(UserCommand),
    /// Teams, their members, and the team commands act in (`berth team use`).
    #[command(subcommand)]
    Team(TeamCommand),
    /// Environments of the team: `dev`, and those made with `env create` (docs/environments.md).
    #[command(subcommand)]
    Env(EnvCommand),
    /// Promote an application's current revision from one environment to another: the same
    /// Compose project and image IDs, never rebuilt (docs/environments.md).
    Release {
        /// Application name.
        app: String,
        /// The source environment.
        #[arg(long)]
        from: String,
        /// The target environment.
        #[arg(long)]
        to: String,
        /// Return at once instead of waiting for the target to converge.
        #[arg(long)]
        detach: bool,
    },
    /// Run a built version in an application: every Compose service that runs an image of
    /// SERVICE gets VERSION, by image ID (`berth deploy --app shop api:v1.3`).
    Deploy {
        /// Application name.
        #[arg(long)]
        app: String,
        /// SERVICE:VERSION (`berth versions SERVICE` lists them).
        version: String,
        /// Return at once instead of waiting for convergence.
        #[arg(long)]
        detach: bool,
    },
    /// The host ports the team's applications hold, fixed and leased (`--env E`: one
    /// environment's).
    Ports(OutputArgs),
    /// API tokens for scripts, acting with their owner's rights.
    #[command(subcommand, name = "api-token")]
    ApiToken(ApiTokenCommand),
    /// The audit log: every state-changing call and every login.
    Audit(AuditArgs),
    /// The platform administrator's commands: backups.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Admission grants (administrator): which host-reaching Compose keys a team may use.
    #[command(subcommand)]
    Admission(AdmissionCommand),
    /// Submit a version for review (developer): SERVICE:VERSION or TEAM/SERVICE:VERSION.
    Submit {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
        /// What the reviewer should know.
        #[arg(long)]
        note: Option<String>,
    },
    /// Versions waiting for review, and what a reviewer sees of one.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Approve a submitted version (an approver who did not submit it).
    Approve {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
        /// Why (the submitter reads it).
        #[arg(long)]
        reason: String,
    },
    /// Reject a submitted version (an approver who did not submit it).
    Reject {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
        /// Why (the submitter reads it).
        #[arg(long)]
        reason: String,
    },
    /// Publish an approved version (developer, owner).
    Publish {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
        /// The application whose service runs this version behind a route: it serves the
        /// market entry to subscribers (docs/market.md).
        #[arg(long)]
        app: Option<String>,
    },
    /// The service market: every team's published services (docs/market.md).
    #[command(subcommand)]
    Market(MarketCommand),
    /// Subscribe an application to a market entry: its containers get `<SERVICE>_URL` and a
    /// credential in `<SERVICE>_TOKEN_FILE` (developer; docs/market.md).
    Subscribe {
        /// The consumer application.
        #[arg(long)]
        app: String,
        /// The market entry, TEAM/SERVICE.
        entry: String,
        /// One of the provider's plans.
        #[arg(long)]
        plan: Option<String>,
    },
    /// End an application's subscription: its next call is refused; nothing restarts.
    Unsubscribe {
        /// The consumer application.
        #[arg(long)]
        app: String,
        /// The market entry, TEAM/SERVICE.
        entry: String,
    },
    /// Move a service installed from the market (`x-berth.from_market`) to a newer published
    /// version: shows the contract's difference first; breaking changes need --yes.
    Upgrade {
        /// The application.
        #[arg(long)]
        app: String,
        /// Its installed service.
        service: String,
        /// The version (default: the newest published one).
        #[arg(long)]
        to: Option<String>,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead even when the contract has breaking changes.
        #[arg(long)]
        yes: bool,
    },
    /// The market entries an application subscribes to.
    Subscriptions {
        /// The consumer application.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Deprecate a published version (owner).
    Deprecate {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
    },
    /// Retire a published or deprecated version (owner).
    Retire {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
    },
    /// Application settings: protection (run approved versions only).
    #[command(subcommand)]
    App(AppCommand),
    /// Remove an application (its containers and networks; volumes with --volumes).
    Rm {
        /// Application name.
        #[arg(long)]
        app: String,
        /// Also remove the application's named volumes.
        #[arg(long)]
        volumes: bool,
        /// Return at once instead of waiting until everything is gone.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// The user to log in as (asked on the terminal when not given).
    #[arg(long)]
    pub user: Option<String>,
    /// Read the password from the first line of stdin instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum MarketCommand {
    /// Every entry: team, service, latest version, provider, calls per minute.
    Ls {
        /// Only entries whose team, service or description contains TEXT.
        #[arg(long)]
        search: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// One entry: description, versions, provider, figures, README, contract.
    Show {
        /// TEAM/SERVICE.
        entry: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReviewCommand {
    /// Versions of the team's services waiting for review, oldest first.
    Ls {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// What a reviewer sees: steps, test reports, image, contract changes.
    Show {
        /// SERVICE:VERSION or TEAM/SERVICE:VERSION.
        version: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Run approved, published or deprecated versions only (owner).
    Protect {
        /// Application name.
        app: String,
    },
    /// Lift the protection (owner).
    Unprotect {
        /// Application name.
        app: String,
    },
    /// What the application uses (market entries, installed copies) and who uses it.
    Graph {
        /// Application name.
        app: String,
        /// text, dot (Graphviz) or svg.
        #[arg(long, default_value = "text", value_parser = ["text", "dot", "svg", "json"])]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdmissionCommand {
    /// Let TEAM use KEY: privileged, network_mode:host, pid:host, ipc:host, userns_mode:host,
    /// devices, security_opt, cap_add:NAME, cap_add:*, docker_socket, external or bind:/PREFIX.
    Grant {
        /// The team.
        team: String,
        /// The admission key.
        key: String,
    },
    /// Take KEY away from TEAM; running containers are not touched, the next revision of the
    /// team's applications (apply, scale, rollback) is checked without it.
    Revoke {
        /// The team.
        team: String,
        /// The admission key.
        key: String,
    },
    /// List TEAM's grants.
    Ls {
        /// The team.
        team: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; without --password-stdin the server generates a password, shown once, to
    /// be changed at first login.
    Add {
        /// The user's name.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a platform administrator.
        #[arg(long)]
        admin: bool,
        /// The user's role in the team named by the global `--team` (or `BERTH_TEAM`), which
        /// the user joins: owner, developer, approver, operator or viewer (default developer).
        #[arg(long)]
        role: Option<berth_core::team::Role>,
    },
    /// List users.
    Ls(OutputArgs),
    /// Change a password: one's own (asks the current one) or, as administrator, NAME's.
    Passwd {
        /// The user whose password to set; default oneself.
        name: Option<String>,
        /// Read from stdin instead of the terminal: for oneself two lines (current, then new),
        /// for another user one (new).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: their tokens stop working at once.
    Disable {
        /// The user to disable.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiTokenCommand {
    /// Create an API token; prints only the secret, once.
    Create {
        /// The token's name (unique among its owner's tokens).
        name: String,
        /// Lifetime, e.g. `90s`, `15m`, `12h`, `30d`; default until revoked.
        #[arg(long)]
        ttl: Option<String>,
        /// Restrict the token to a scope (repeatable): `metrics`, or `gateway` (what `berth
        /// gateway` calls; administrators only); default the owner's full rights.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// List API tokens and sessions (never their secrets).
    Ls {
        /// Another user's tokens (administrator).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name (`berth api-token ls`).
        name: String,
        /// The token belongs to this user (administrator).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EnvCommand {
    /// Create an environment.
    Create {
        /// Lowercase letters, digits and -, at most 40 characters.
        name: String,
        /// Recycle it this long from now (10s, 90m, 24h, 7d).
        #[arg(long)]
        ttl: Option<String>,
        /// Its host port block, LO-HI (default: the next free block of 100 of the server's
        /// --port-range).
        #[arg(long, value_name = "LO-HI")]
        ports: Option<String>,
        /// Admit approved, published or deprecated versions only.
        #[arg(long)]
        protected: bool,
        /// Recycling keeps its applications' named volumes.
        #[arg(long)]
        keep_volumes: bool,
        /// Quota: CPUs its services may use in all (limits × replicas).
        #[arg(long, value_name = "N")]
        cpus: Option<f64>,
        /// Quota: memory its services may use in all (512M, 4g).
        #[arg(long, value_name = "SIZE")]
        memory: Option<String>,
        /// Clone this environment's applications at their current image IDs.
        #[arg(long, value_name = "ENV")]
        from: Option<String>,
    },
    /// List the team's environments.
    Ls(OutputArgs),
    /// An environment and its applications.
    Show {
        /// The environment.
        name: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Recycle it TTL from now (instead of when it was due).
    Extend {
        /// The environment.
        name: String,
        /// How long from now (10s, 90m, 24h, 7d).
        #[arg(long)]
        ttl: String,
    },
    /// Remove an environment and its applications.
    Rm {
        /// The environment.
        name: String,
        /// Keep the applications' named volumes.
        #[arg(long)]
        keep_volumes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// Add a team (administrator).
    Add {
        /// The team's name: lowercase letters, digits and -.
        name: String,
    },
    /// List one's teams (the administrator: every team).
    Ls(OutputArgs),
    /// Remove an empty team (administrator).
    Rm {
        /// The team.
        name: String,
    },
    /// Make TEAM the team later commands act in on this server (kept in the credentials file);
    /// `--clear` forgets it.
    Use {
        /// The team.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        name: Option<String>,
        /// Forget the current team.
        #[arg(long)]
        clear: bool,
    },
    /// A team's members.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a member, or change a member's role (the team's owner, or the administrator).
    Add {
        /// The team.
        team: String,
        /// The user.
        user: String,
        /// owner, developer, approver, operator or viewer.
        #[arg(long)]
        role: berth_core::team::Role,
    },
    /// Remove a member.
    Rm {
        /// The team.
        team: String,
        /// The member.
        user: String,
    },
    /// List a team's members.
    Ls {
        /// The team.
        team: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// Only this user's rows.
    #[arg(long)]
    pub user: Option<String>,
    /// Only rows this recent, e.g. `30m`, `1h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// At most N rows (the oldest first); default all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Save a consistent backup of the server's state (database and signing keys), taken while
    /// it runs; `berth server --data-dir NEW --restore FILE` starts a server from it.
    Backup {
        /// The file to write (mode 0600: it holds password hashes and private keys), or `-` for
        /// stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Register a service backed by a Git repository (or `--svn URL`).
    Create {
        /// The service's name: its images are `berth/NAME:VERSION`.
        name: String,
        /// Git URL: a local path, file://, http(s):// or ssh://.
        #[arg(long, conflicts_with = "svn")]
        git: Option<String>,
        /// Git branch (or tag) to build; default the repository's `HEAD`.
        #[arg(long)]
        branch: Option<String>,
        /// Directory inside the repository with the pipeline and the build context.
        #[arg(long)]
        path: Option<String>,
        /// Subversion URL.
        #[arg(long)]
        svn: Option<String>,
        /// Poll the repository at this interval, e.g. `60s`, `5m`, and build when it changed (a
        /// new commit of the branch; for Subversion a new last-changed revision of the URL).
        #[arg(long)]
        poll: Option<String>,
        /// Preview environments: a push of another branch than --branch builds it and deploys
        /// this application (of `dev`) with that version into `preview-<branch>`; deleting the
        /// branch recycles it (Git, with --branch; docs/environments.md).
        #[arg(long, value_name = "APP")]
        preview_app: Option<String>,
        /// How long a preview environment lives after its last push (default 24h).
        #[arg(long, value_name = "TTL")]
        preview_ttl: Option<String>,
    },
    /// List services.
    Ls(OutputArgs),
    /// Remove a service: its builds (running ones are cancelled), versions, secrets, and the
    /// images of its versions that no application revision pins. Refused while a version runs
    /// in an application or is published or deprecated.
    Rm {
        /// The service.
        name: String,
    },
    /// Set the secret that signs the service's push webhooks (read from stdin; at least 16
    /// characters). Point the repository's webhook at `/api/v1/hooks/NAME`.
    WebhookSecret {
        /// The service.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BuildsCommand {
    /// Replay a build's log, or follow it while it runs.
    Logs {
        /// The build's id (`berth builds`).
        id: u64,
        /// Keep streaming until the build ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a queued or running build.
    Cancel {
        /// The build's id (`berth builds`).
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Export NAME:VERSION's image to a file (`docker save` format).
    Archive {
        /// SERVICE:VERSION
        reference: String,
        /// The file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Load an archived image back into the engine.
    Restore {
        /// A file written by `berth image archive`.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Set a build-time secret of a service, reading the value from stdin.
    Set {
        /// The service built from source whose builds see the secret.
        service: String,
        /// The secret's name: the environment variable `run` steps see it as.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a token signed with ES256 by Berth's current key.
    Issue {
        /// The `sub` claim (the consumer).
        #[arg(long)]
        subject: String,
        /// An `aud` value (repeatable). A route with `auth: jwt` accepts its application's name;
        /// `mqtt` makes a login to the MQTT broker (docs/messaging.md). Default: `berth`.
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// Lifetime: e.g. `90s`, `15m`, `1h`, `7d`.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// An extra claim `k=v` (repeatable); `v` is parsed as JSON, else taken as a string.
        #[arg(long = "claim", value_name = "K=V")]
        claims: Vec<String>,
    },
    /// Make a new signing key current; tokens signed by older keys stay valid until they expire.
    RotateKey,
}

#[derive(Subcommand, Debug)]
pub enum IssuerCommand {
    /// Accept tokens from another issuer.
    Add {
        /// Berth's name for it, used in `x-berth.route.auth.jwt.issuers`.
        name: String,
        /// The `iss` value its tokens carry.
        #[arg(long)]
        issuer: String,
        /// Fetch its public keys (JWKS) from this URL (refreshed every 5 minutes).
        #[arg(long, group = "keys")]
        jwks_url: Option<String>,
        /// A PEM public key file (RSA, EC P-256 or Ed25519).
        #[arg(long, group = "keys")]
        key_file: Option<PathBuf>,
        /// A file holding an HS256 shared secret (at least 32 bytes).
        #[arg(long, group = "keys")]
        hs256_secret_file: Option<PathBuf>,
    },
    /// List issuers (secrets are never shown).
    Ls(OutputArgs),
    /// Stop accepting an issuer's tokens.
    Rm {
        /// Berth's name for the issuer (`berth issuer ls`).
        name: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where Berth keeps its state (SQLite database, instance id).
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start from a backup (`berth admin backup`): unpack FILE into the data directory, which
    /// must be new or empty, then start as usual (running containers are adopted).
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// Address of the REST API. The default is loopback; `0.0.0.0:7400` (or `[::]:7400`) serves
    /// the network (every call but the public ones needs a token; see docs/security.md), best
    /// with --api-tls-cert.
    #[arg(long, env = "BERTH_API_LISTEN", default_value = DEFAULT_API_LISTEN)]
    pub api_listen: String,
    /// Serve the API over TLS (HTTP/1.1) with this certificate chain and key: CERT.pem:KEY.pem.
    #[arg(long, env = "BERTH_API_TLS_CERT", value_name = "CERT:KEY")]
    pub api_tls_cert: Option<String>,
    /// Serve `GET /metrics` (Prometheus text) without authentication on this address too, for
    /// a scraper on a private network; off unless given.
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,
    /// Another host name the API answers for (repeatable, or a comma list): NAME or NAME:PORT.
    /// By default it answers only for its listen address, `localhost`, `127.0.0.1` and `[::1]`
    /// (on `0.0.0.0`/`[::]`: any IP address, and `localhost`); any other `Host`
    /// header is refused (DNS rebinding).
    #[arg(
        long = "api-host",
        env = "BERTH_API_HOST",
        value_name = "NAME[:PORT]",
        value_delimiter = ','
    )]
    pub api_hosts: Vec<String>,
    /// Address of the HTTP gateway (the entry point to routed services).
    #[arg(long, env = "BERTH_GATEWAY_LISTEN", default_value = DEFAULT_GATEWAY_LISTEN)]
    pub gateway_listen: String,
    /// A label added to every Docker object Berth creates (repeatable): KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Log format.
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Seconds between full resyncs of every application.
    #[arg(long, env = "BERTH_RESYNC_SECS", default_value_t = 5)]
    pub resync_secs: u64,
    /// Address of the HTTPS gateway (TLS with HTTP/2); off unless given.
    #[arg(long, env = "BERTH_GATEWAY_TLS_LISTEN")]
    pub gateway_tls_listen: Option<String>,
    /// A certificate for HTTPS: HOST=CERT.pem:KEY.pem (repeatable; the first is the default for
    /// unknown names). Without one, a self-signed certificate for localhost is generated and
    /// written to the data directory (development only).
    #[arg(long = "gateway-tls-cert", value_name = "HOST=CERT:KEY")]
    pub gateway_tls_certs: Vec<String>,
    /// The `iss` value of tokens Berth issues. Default: `http://` (`https://` with
    /// --api-tls-cert) + the API address.
    #[arg(long, env = "BERTH_ISSUER_URL")]
    pub issuer_url: Option<String>,
    /// Do not run the gateway in this process (run `berth gateway --control URL` instead).
    #[arg(long, env = "BERTH_NO_GATEWAY")]
    pub no_gateway: bool,
    /// Threads serving the gateway's listeners (each with its own runtime and connection
    /// pools); 0 = one per CPU.
    #[arg(long, env = "BERTH_GATEWAY_WORKERS", default_value_t = 0)]
    pub gateway_workers: usize,
    /// Serve plain HTTP/1.1 requests on the gateway's own HTTP/1.1 loop (docs/gateway-fast-path.md);
    /// `false` sends every request through the general (hyper) path.
    #[arg(long, env = "BERTH_GATEWAY_FAST_PATH", default_value_t = true, action = clap::ArgAction::Set)]
    pub gateway_fast_path: bool,
    /// Image retention: keep the newest N versions' images of each service (deployed images
    /// and rollback targets are always kept).
    #[arg(long, env = "BERTH_IMAGE_KEEP", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub image_keep: u64,
    /// Seconds between image retention passes (one also runs after each successful build).
    #[arg(long, env = "BERTH_IMAGE_RETENTION_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub image_retention_secs: u64,
    /// Alert (an event and a warning in the log) when the engine's image layers take more
    /// than this much disk: bytes, or with a unit, e.g. `500MB`, `10GiB`.
    #[arg(long, env = "BERTH_IMAGE_DISK_ALERT", value_parser = parse_bytes)]
    pub image_disk_alert: Option<u64>,
    /// Alert when a service has more than N images on the engine.
    #[arg(long, env = "BERTH_IMAGE_COUNT_ALERT")]
    pub image_count_alert: Option<u64>,
    /// The IPv4 range (CIDR) application networks' subnets are taken from, instead of Docker's
    /// default address pools (about 30 networks). Pick a range the host and its networks do
    /// not use (see `ip route`); subnets that overlap an existing Docker network are skipped.
    #[arg(long, env = "BERTH_NETWORK_POOL", default_value = "10.200.0.0/14")]
    pub network_pool: String,
    /// Where applications run: `local` (this Docker engine; Berth plans every replica) or
    /// `swarm` (`DOCKER_HOST` is a Swarm manager: one Swarm service per Compose service, Swarm
    /// places and updates the replicas; routes and fixed published ports through Berth's
    /// gateways on the nodes; docs/swarm.md, in progress).
    #[arg(long, env = "BERTH_RUNTIME", default_value = "local", value_parser = ["local", "swarm"])]
    pub runtime: String,
    /// With `--runtime swarm` and no registry: another node's engine (`NAME=URL`, URL as
    /// `DOCKER_HOST`), repeatable; before a service is created or updated, its image is loaded
    /// from the manager's engine into each of them that lacks it (docs/swarm.md#images-on-a-cluster).
    /// With `--runtime local`: engines where the gateways this instance ran on Swarm are
    /// removed (as on `DOCKER_HOST`).
    #[arg(
        long = "node-engine",
        env = "BERTH_NODE_ENGINES",
        value_delimiter = ',',
        value_name = "NAME=URL"
    )]
    pub node_engine: Vec<String>,
    /// With `--runtime swarm`: the registry (`HOST:PORT`) a service's image is pushed to
    /// (`HOST:PORT/berth/APP/SERVICE`) before the service is created or updated; the service
    /// names it by digest and every node pulls it from there. The nodes' engines must trust it
    /// (`--insecure-registry` for plain HTTP).
    #[arg(long, env = "BERTH_REGISTRY", value_name = "HOST:PORT")]
    pub registry: Option<String>,
    /// With `--runtime swarm`: the Swarm nodes that run Berth's gateway (a container per
    /// node, serving routes and published ports on the node's addresses; docs/swarm.md):
    /// `node.role=manager|worker`, `node.hostname=H`, `node.id=ID` or `node.labels.K=V`. A
    /// gateway runs on the manager whose engine is `DOCKER_HOST` and on nodes whose hostname
    /// names a --node-engine, when they are chosen.
    #[arg(long, env = "BERTH_GATEWAY_NODES", default_value = "node.role=manager")]
    pub gateway_nodes: String,
    /// With `--runtime swarm`: the port the gateways on the nodes serve HTTP on.
    #[arg(long, env = "BERTH_NODE_GATEWAY_PORT", default_value_t = 7480)]
    pub node_gateway_port: u16,
    /// The API's URL as the Swarm nodes reach it (the gateways on the nodes follow the routing
    /// table there), e.g. `http://192.168.77.254:7400`; default: `http://` and --api-listen.
    /// Its host is accepted by the API as an --api-host is.
    #[arg(long, env = "BERTH_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The prefix length of each application network's subnet, cut from --network-pool
    /// (24: 254 addresses; at most 29).
    #[arg(long, env = "BERTH_NETWORK_PREFIX", default_value_t = 24)]
    pub network_prefix: u32,
    /// Host ports leased to `ports:` entries without a host port, and the range each new
    /// environment gets its block of 100 from (docs/environments.md#ports-as-leases).
    #[arg(
        long,
        env = "BERTH_PORT_RANGE",
        value_name = "LO-HI",
        default_value = "20000-29999"
    )]
    pub port_range: String,
    /// Lifetime of a login session (`berth login`): `90s`, `15m`, `12h`, `7d`.
    #[arg(long, env = "BERTH_SESSION_TTL", default_value = "12h", value_parser = parse_ttl)]
    pub session_ttl: std::time::Duration,
    /// Embed an MQTT broker (MQTT 5 and 3.1.1) on this address, e.g. `0.0.0.0:1883`
    /// (docs/messaging.md); off unless given. Clients log in with Berth JWTs.
    #[arg(long, env = "BERTH_MQTT_LISTEN", value_name = "IP:PORT")]
    pub mqtt_listen: Option<String>,
    /// MQTT over TLS on this address, with the gateway's first --gateway-tls-cert; off unless
    /// given.
    #[arg(long, env = "BERTH_MQTT_TLS_LISTEN", value_name = "IP:PORT")]
    pub mqtt_tls_listen: Option<String>,
    /// MQTT over WebSocket (path `/mqtt`) on this address; off unless given.
    #[arg(long, env = "BERTH_MQTT_WS_LISTEN", value_name = "IP:PORT")]
    pub mqtt_ws_listen: Option<String>,
    /// Largest MQTT packet a client may send: bytes, or with a unit (`1MiB`).
    #[arg(long, env = "BERTH_MQTT_MAX_PACKET_SIZE", default_value = "1MiB", value_parser = parse_bytes)]
    pub mqtt_max_packet_size: u64,
    /// QoS 1/2 messages an MQTT client may have unacknowledged towards the broker (Receive
    /// Maximum).
    #[arg(long, env = "BERTH_MQTT_MAX_INFLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub mqtt_max_inflight: u16,
    /// MQTT connections one subject (team + token subject) may hold at once.
    #[arg(long, env = "BERTH_MQTT_MAX_CONNECTIONS_PER_SUBJECT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub mqtt_max_connections_per_subject: u32,
    /// MQTT connections one IP address may hold at once.
    #[arg(long, env = "BERTH_MQTT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub mqtt_max_connections_per_address: u32,
    /// Longest an MQTT persistent session outlives its connection (a longer Session Expiry
    /// Interval is cut to this): `90s`, `15m`, `12h`, `7d`.
    #[arg(long, env = "BERTH_MQTT_MAX_SESSION_EXPIRY", default_value = "1d", value_parser = parse_ttl)]
    pub mqtt_max_session_expiry: std::time::Duration,
    /// Messages waiting for one MQTT subscriber, in memory and again behind it (oldest dropped
    /// first; docs/messaging.md).
    #[arg(long, env = "BERTH_MQTT_QUEUE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub mqtt_queue: u32,
    /// Failed MQTT logins from one IP address within 60 s that lock the address out (0: no
    /// limit).
    #[arg(long, env = "BERTH_MQTT_MAX_LOGIN_FAILURES", default_value_t = 10)]
    pub mqtt_max_login_failures: u32,
    /// How long a locked-out address's MQTT CONNECTs are refused: `90s`, `5m`.
    #[arg(long, env = "BERTH_MQTT_LOGIN_LOCKOUT", default_value = "5m", value_parser = parse_ttl)]
    pub mqtt_login_lockout: std::time::Duration,
    /// Benchmarks only (bench/api_auth_bench.py): `off` serves every call as the administrator
    /// without checking a token, to measure what checking costs. Refused unless the API
    /// listens on loopback.
    #[arg(long, default_value = "on", value_parser = ["on", "off"], hide = true)]
    pub auth: String,
}

/// A positive duration of at most 366 days for `--session-ttl`.
fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    match commands::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("{s:?}: must be longer than 0")),
        Ok(d) if d > std::time::Duration::from_secs(366 * 86_400) => {
            Err(format!("{s:?}: at most 366d"))
        }
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A byte size: `1234`, `500MB`, `500M`, `10GiB`, `1.5GB` (decimal units k/M/G/T(B), binary
/// units Ki/Mi/Gi/Ti(B); case-insensitive).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let value: f64 = num.parse().map_err(|_| {
        format!("{s:?}: expected a number with an optional unit, e.g. 500MB or 10GiB")
    })?;
    #[allow(clippy::cast_precision_loss)] // thresholds, not exact accounting
    let bytes = value * mult as f64;
    if !bytes.is_finite() || !(0.0..1.8e19).contains(&bytes) {
        return Err(format!("{s:?}: out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked just above
    Ok(bytes.round() as u64)
}

#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// The control plane's API, which streams the routing table (`https://`: verified against
    /// the system's roots and `--ca-file`).
    #[arg(long, env = "BERTH_CONTROL", default_value = concat!("http://", "127.0.0.1:7400"))]
    pub control: String,
    /// A file holding the API token sent to the control plane (`Authorization: Bearer`).
    #[arg(long, env = "BERTH_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Address of the HTTP gateway.
    #[arg(long, env = "BERTH_GATEWAY_LISTEN", default_value = DEFAULT_GATEWAY_LISTEN)]
    pub listen: String,
    /// Serve `GET /metrics` (Prometheus text) without authentication on this address; off
    /// unless given.
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,
    /// Address of the HTTPS gateway (TLS with HTTP/2); off unless given.
    #[arg(long, env = "BERTH_GATEWAY_TLS_LISTEN")]
    pub gateway_tls_listen: Option<String>,
    /// A certificate for HTTPS: HOST=CERT.pem:KEY.pem (repeatable; the first is the default for
    /// unknown names). Without one, a self-signed certificate for localhost is generated and
    /// written to the system temp directory (development only).
    #[arg(long = "gateway-tls-cert", value_name = "HOST=CERT:KEY")]
    pub gateway_tls_certs: Vec<String>,
    /// Threads serving the gateway's listeners (each with its own runtime and connection
    /// pools); 0 = one per CPU.
    #[arg(long, env = "BERTH_GATEWAY_WORKERS", default_value_t = 0)]
    pub gateway_workers: usize,
    /// Serve plain HTTP/1.1 requests on the gateway's own HTTP/1.1 loop (docs/gateway-fast-path.md);
    /// `false` sends every request through the general (hyper) path.
    #[arg(long, env = "BERTH_GATEWAY_FAST_PATH", default_value_t = true, action = clap::ArgAction::Set)]
    pub gateway_fast_path: bool,
    /// Run as a port relay only (docs/swarm.md#published-ports-on-swarm-the-port-relay): serve
    /// no HTTP (`--listen` and TLS are not bound), probe and report nothing; bind each of the
    /// table's published ports on this host and forward it to the same port at IP (the node's
    /// gateway container, which forwards to the tasks). Berth's Swarm runtime runs it,
    /// host-networked, next to each node's gateway.
    #[arg(long, value_name = "IP")]
    pub forward_ports_to: Option<std::net::IpAddr>,

    /// Log format.
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Application name.
    #[arg(long)]
    pub app: String,
    /// Compose file(s); later files override earlier ones. Default: compose.yaml (or
    /// compose.yml, docker-compose.yaml, docker-compose.yml) in the current directory.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Compose profiles to enable.
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Return as soon as the revision is committed.
    #[arg(long)]
    pub detach: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// `table` or `json`.
    #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

/// Run a client command (everything but `server`); returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    match run_client(cli).await {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            1
        }
    }
}

async fn run_client(cli: Cli) -> anyhow::Result<i32> {
    let env = credentials::Env::from_process();
    let client = client::Client::new(&cli.server)?.with_ca_file(cli.ca_file.as_deref())?;
    match cli.command {
        // These two use the session in the credentials file, not the resolved credential.
        Command::Login(args) => cmd::login::login(&client, &env, args).await,
        Command::Logout => cmd::login::logout(&client, &env).await,
        command => {
            let resolved = credentials::resolve(
                &cli.server,
                cli.token.as_deref(),
                &env,
                time::OffsetDateTime::now_utc(),
            )?;
            let team = credentials::current_team(&cli.server, cli.team.as_deref(), &env)?;
            let ctx = cmd::Ctx {
                client: client
                    .with_token(resolved.as_ref().map(|r| r.token.clone()))
                    .with_team(team)
                    .with_env(cli.app_env.clone()),
                env,
                source: resolved.map(|r| r.source),
                server: cli.server.clone(),
                team_flag: cli.team.clone(),
            };
            match command {
                Command::Team(c) => cmd::team::run(&ctx, c).await,
                Command::Env(c) => cmd::env::run(&ctx, c).await,
                Command::Release {
                    app,
                    from,
                    to,
                    detach,
                } => cmd::env::release(&ctx, &app, from, to, detach).await,
                Command::Ports(out) => cmd::env::ports(&ctx, &out).await,
                Command::Deploy {
                    app,
                    version,
                    detach,
                } => cmd::env::deploy(&ctx, &app, &version, detach).await,
                Command::Whoami(out) => cmd::login::whoami(&ctx, &out).await,
                Command::User(c) => cmd::user::run(&ctx, c).await,
                Command::ApiToken(c) => cmd::api_token::run(&ctx, c).await,
                Command::Audit(args) => cmd::audit::run(&ctx, args).await,
                Command::Admission(c) => cmd::admission::run(&ctx, c).await,
                c @ (Command::Submit { .. }
                | Command::Review(_)
                | Command::Approve { .. }
                | Command::Reject { .. }
                | Command::Publish { .. }
                | Command::Deprecate { .. }
                | Command::Retire { .. }
                | Command::Market(_)
                | Command::Subscribe { .. }
                | Command::Unsubscribe { .. }
                | Command::Subscriptions { .. }
                | Command::Upgrade { .. }
                | Command::App(_)) => cmd::version::run(&ctx, c).await,
                other => commands::run(&ctx.client, other).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, ApiTokenCommand, Cli, Command, UserCommand};
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn identity_commands_parse_as_documented() {
        let cli = parse(&[
            "login",
            "--server",
            "https://berth.example:7400",
            "--user",
            "admin",
            "--password-stdin",
        ]);
        assert_eq!(cli.server, "https://berth.example:7400");
        assert!(
            matches!(&cli.command, Command::Login(a) if a.user.as_deref() == Some("admin") && a.password_stdin)
        );
        assert!(matches!(parse(&["logout"]).command, Command::Logout));
        assert!(
            matches!(parse(&["whoami", "-o", "json"]).command, Command::Whoami(o) if o.output == "json")
        );
        let cli = parse(&["--token", "t1", "--ca-file", "/ca.pem", "whoami"]);
        assert_eq!(cli.token.as_deref(), Some("t1"));
        assert_eq!(
            cli.ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        // Global flags go after the command too.
        assert_eq!(
            parse(&["whoami", "--token", "t2"]).token.as_deref(),
            Some("t2")
        );

        assert!(matches!(
            parse(&["user", "add", "bob", "--password-stdin", "--admin"]).command,
            Command::User(UserCommand::Add { name, password_stdin: true, admin: true, role: None }) if name == "bob"
        ));
        assert!(matches!(
            parse(&["user", "add", "carol"]).command,
            Command::User(UserCommand::Add {
                password_stdin: false,
                admin: false,
                ..
            })
        ));
        assert!(matches!(
            parse(&["user", "ls", "-o", "json"]).command,
            Command::User(UserCommand::Ls(o)) if o.output == "json"
        ));
        assert!(matches!(
            parse(&["user", "passwd"]).command,
            Command::User(UserCommand::Passwd {
                name: None,
                password_stdin: false
            })
        ));
        assert!(matches!(
            parse(&["user", "passwd", "bob", "--password-stdin"]).command,
            Command::User(UserCommand::Passwd { name: Some(n), password_stdin: true }) if n == "bob"
        ));
        assert!(matches!(
            parse(&["user", "disable", "bob"]).command,
            Command::User(UserCommand::Disable { name }) if name == "bob"
        ));

        assert!(matches!(
            parse(&["api-token", "create", "ci", "--ttl", "30d", "--scope", "metrics", "--scope", "x"]).command,
            Command::ApiToken(ApiTokenCommand::Create { name, ttl: Some(t), scopes })
                if name == "ci" && t == "30d" && scopes == ["metrics", "x"]
        ));
        assert!(matches!(
            parse(&["api-token", "ls", "--user", "bob", "-o", "json"]).command,
            Command::ApiToken(ApiTokenCommand::Ls { user: Some(u), output }) if u == "bob" && output.output == "json"
        ));
        assert!(matches!(
            parse(&["api-token", "revoke", "ci", "--user", "bob"]).command,
            Command::ApiToken(ApiTokenCommand::Revoke { name, user: Some(u) }) if name == "ci" && u == "bob"
        ));
        assert!(matches!(
            parse(&["audit", "--user", "bob", "--since", "1h", "--limit", "5", "-o", "json"]).command,
            Command::Audit(a) if a.user.as_deref() == Some("bob") && a.since.as_deref() == Some("1h")
                && a.limit == Some(5) && a.output.output == "json"
        ));
        // Teams.
        use super::{MemberCommand, TeamCommand};
        use berth_core::team::Role;
        assert!(matches!(parse(&["team", "add", "shop"]).command,
            Command::Team(TeamCommand::Add { name }) if name == "shop"));
        assert!(matches!(
            parse(&["team", "ls"]).command,
            Command::Team(TeamCommand::Ls(_))
        ));
        assert!(matches!(parse(&["team", "rm", "shop"]).command,
            Command::Team(TeamCommand::Rm { name }) if name == "shop"));
        assert!(matches!(parse(&["team", "use", "shop"]).command,
            Command::Team(TeamCommand::Use { name: Some(n), clear: false }) if n == "shop"));
        assert!(matches!(
            parse(&["team", "use", "--clear"]).command,
            Command::Team(TeamCommand::Use {
                name: None,
                clear: true
            })
        ));
        assert!(
            matches!(parse(&["team", "member", "add", "shop", "bob", "--role", "operator"]).command,
            Command::Team(TeamCommand::Member(MemberCommand::Add { team, user, role: Role::Operator }))
                if team == "shop" && user == "bob")
        );
        assert!(matches!(
            parse(&["team", "member", "rm", "shop", "bob"]).command,
            Command::Team(TeamCommand::Member(MemberCommand::Rm { .. }))
        ));
        assert!(matches!(
            parse(&["team", "member", "ls", "shop"]).command,
            Command::Team(TeamCommand::Member(MemberCommand::Ls { .. }))
        ));
        let cli = parse(&["apps", "--team", "shop"]);
        assert_eq!(cli.team.as_deref(), Some("shop"));
        let cli = parse(&["--team", "shop", "user", "add", "dora", "--role", "viewer"]);
        assert_eq!(cli.team.as_deref(), Some("shop"));
        assert!(matches!(
            cli.command,
            Command::User(UserCommand::Add {
                role: Some(Role::Viewer),
                ..
            })
        ));
        // The gateway JWT commands are still there, unchanged.
        assert!(matches!(
            parse(&["token", "issue", "--subject", "s"]).command,
            Command::Token(super::TokenCommand::Issue { .. })
        ));
    }

    #[test]
    fn identity_commands_refuse_bad_input() {
        for bad in [
            &["login", "--password"][..],
            &["user", "add"],
            &["user", "disable"],
            &["api-token", "create"],
            &["api-token", "revoke"],
            &["audit", "--limit", "0"],
            &["audit", "--limit", "-1"],
            &["whoami", "-o", "yaml"],
            &["team", "use"],
            &["team", "use", "shop", "--clear"],
            &["team", "member", "add", "shop", "bob"],
            &["team", "member", "add", "shop", "bob", "--role", "king"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("berth").chain(bad.iter().copied())).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    /// Every argument of every command says what it is in `--help` (`berth logs --help` once
    /// showed `--app` and `SERVICE` with no text).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command itself)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = <Cli as clap::CommandFactory>::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "berth", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn byte_sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("1234", Some(1234)),
            ("500MB", Some(500_000_000)),
            ("500 mb", Some(500_000_000)),
            ("500M", Some(500_000_000)),
            ("10GiB", Some(10 * 1024 * 1024 * 1024)),
            ("10gi", Some(10 * 1024 * 1024 * 1024)),
            ("1.5GB", Some(1_500_000_000)),
            ("2KiB", Some(2048)),
            ("7B", Some(7)),
            ("", None),
            ("GB", None),
            ("10 parsecs", None),
            ("-5MB", None),
            ("1.2.3", None),
            ("99999999999TiB", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bytes(input).ok(), *want, "{input:?}");
        }
    }
}
