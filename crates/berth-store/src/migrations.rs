//! Numbered schema migrations, applied in order on open; the applied count is `PRAGMA user_version`.
//! Never edit a released migration: append a new one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: instance metadata, applications, revisions.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        revision INTEGER NOT NULL,
        deleting INTEGER NOT NULL DEFAULT 0,
        delete_volumes INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE revisions (
        app TEXT NOT NULL,
        number INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL,
        change TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL,
        finished_at TEXT,
        spec TEXT NOT NULL,
        PRIMARY KEY (app, number)
     );",
    // 2: JWT issuers the gateway accepts besides Berth's own.
    "CREATE TABLE issuers (
        name TEXT PRIMARY KEY,
        issuer TEXT NOT NULL,
        jwks TEXT,
        jwks_url TEXT,
        hs256_secret TEXT,
        created_at TEXT NOT NULL
     );",
    // 3: services built from source, their builds and versions, build-time secrets.
    "CREATE TABLE services (
        name TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE builds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        git_ref TEXT,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        version TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        log TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE versions (
        service TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        tag TEXT NOT NULL,
        git_commit TEXT NOT NULL,
        author TEXT NOT NULL,
        commit_time TEXT,
        build_id INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (service, name)
     );
     CREATE TABLE build_secrets (
        service TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (service, name)
     );",
    // 4: a per-service secret that signs push webhooks.
    "ALTER TABLE services ADD COLUMN webhook_secret TEXT;",
    // 5: reserved for the compose-build branch, which in the end needed no migration; kept as
    // a no-op because numbers are positions and databases already record 6.
    "SELECT 1",
    // 6: image state of versions, for retention: `present` or `removed` (the version record
    // stays), when it was last archived, when it was last restored (a restored image is kept a
    // while, see berth-controlplane's retention).
    "ALTER TABLE versions ADD COLUMN image_state TEXT NOT NULL DEFAULT 'present';
     ALTER TABLE versions ADD COLUMN archived_at TEXT;
     ALTER TABLE versions ADD COLUMN restored_at TEXT;",
    // 7: restart counts of replicas, so they survive a server restart.
    "CREATE TABLE restarts (
        container TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        last_exit INTEGER
     );",
    // 8: subnets Berth handed to its application networks, so none is handed out twice (a
    // restart included); a row goes when its network does.
    "CREATE TABLE network_subnets (
        subnet TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        network TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
     );",
    // 9: identity (docs/access.md): users, their API tokens (only a hash of each secret), and
    // the append-only audit log (triggers refuse any UPDATE or DELETE on it).
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        administrator INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
     );
     CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL REFERENCES users(name),
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        expires_at TEXT,
        last_used_at TEXT,
        UNIQUE (owner, name)
     );
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        user TEXT,
        token TEXT,
        team TEXT,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        source TEXT NOT NULL,
        request_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        code TEXT
     );
     CREATE INDEX audit_by_user ON audit(user, id);
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 10: teams as tenants (docs/teams.md): teams, their members with a role each, the
    // administrator's admission grants per team, and the team an API token acts in by default.
    // Every data directory has team `default`, owned by `admin` (created at first start if it
    // does not exist yet). Objects keep their names: a global name without `/` is `default`'s.
    "CREATE TABLE teams (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
     );
     CREATE TABLE team_members (
        team TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (team, user)
     );
     CREATE INDEX team_members_by_user ON team_members(user, team);
     CREATE TABLE admission_grants (
        team TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
        key TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (team, key)
     );
     ALTER TABLE api_tokens ADD COLUMN team TEXT;
     INSERT INTO teams(name, created_at) VALUES ('default', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));
     INSERT INTO team_members(team, user, role, added_at)
        VALUES ('default', 'admin', 'owner', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));",
    // 11: the version lifecycle (docs/lifecycle.md): each version's state and who moved it last,
    // the evidence its build gathered (steps with their test reports, the contract, the README),
    // applications that run approved versions only; the market's provider instances
    // (docs/market.md): which application serves a published service.
    "ALTER TABLE versions ADD COLUMN state TEXT NOT NULL DEFAULT 'built';
     ALTER TABLE versions ADD COLUMN submitted_by TEXT;
     ALTER TABLE versions ADD COLUMN submit_note TEXT;
     ALTER TABLE versions ADD COLUMN reviewed_by TEXT;
     ALTER TABLE versions ADD COLUMN review_reason TEXT;
     ALTER TABLE versions ADD COLUMN state_changed_at TEXT;
     ALTER TABLE versions ADD COLUMN steps TEXT;
     ALTER TABLE versions ADD COLUMN contract TEXT;
     CREATE INDEX versions_by_state ON versions(state, service);
     ALTER TABLE versions ADD COLUMN readme TEXT;
     ALTER TABLE apps ADD COLUMN protected INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE market_bindings (
        service TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        app_service TEXT NOT NULL,
        version TEXT NOT NULL,
        bound_by TEXT NOT NULL,
        bound_at TEXT NOT NULL
     );",
    // 12: the admission key `external` (docs/teams.md#admission). No schema change: the
    // statement that matters is upgrade-only (below), for data directories from before teams.
    "SELECT 1",
    // 13: subscriptions (docs/market.md#subscribe): a consumer application calls a market entry's
    // provider instance through the gateway. `origin` is `cli` (berth subscribe) or `uses`
    // (x-berth.uses in the application's Compose file).
    "CREATE TABLE subscriptions (
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        plan TEXT,
        origin TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (app, service)
     );
     CREATE INDEX subscriptions_by_service ON subscriptions(service, app);",
    // 14: when Berth last restarted each replica (Unix milliseconds), so the crash-loop backoff
    // and `restart_policy.window` count from the real restart after a server restart. NULL in
    // rows written before: such a replica may be restarted at once, as before.
    "ALTER TABLE restarts ADD COLUMN last_start_ms INTEGER;",
    // 15: when a version was published, the baseline a review compares contracts with (the
    // last published, not the last moved: a deprecation moves a version too). Versions published
    // before it are dated by their last move, the best that is known of them.
    "ALTER TABLE versions ADD COLUMN published_at TEXT;
     UPDATE versions SET published_at = state_changed_at
        WHERE state IN ('published', 'deprecated', 'retired')",
    // 16: environments (docs/environments.md): a team's named places its applications run in,
    // besides the implicit `dev` (which has no row). An application in environment E is stored
    // under its global name `app@E` (berth_core::team::app_global): no other table changes.
    // `expires_at` is Unix milliseconds (NULL: never); `ports_lo`/`ports_hi` the host port block.
    "CREATE TABLE envs (
        team TEXT NOT NULL REFERENCES teams(name),
        name TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER,
        ports_lo INTEGER,
        ports_hi INTEGER,
        protected INTEGER NOT NULL DEFAULT 0,
        keep_volumes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (team, name)
     );",
    // 17: ports as leases and environment quotas (docs/environments.md#ports-as-leases). A
    // lease is one host port (and protocol) held by one service of one application: `fixed`
    // when the Compose file names the host port, else leased from the environment's range. The
    // primary key is what makes a port never held by two owners. `cpus_milli`/`memory_bytes`
    // are an environment's quota (NULL: none).
    "CREATE TABLE port_leases (
        port INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        team TEXT NOT NULL,
        env TEXT NOT NULL,
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        target INTEGER NOT NULL,
        fixed INTEGER NOT NULL,
        since TEXT NOT NULL,
        PRIMARY KEY (port, protocol)
     );
     CREATE INDEX port_leases_by_app ON port_leases(app);
     ALTER TABLE envs ADD COLUMN cpus_milli INTEGER;
     ALTER TABLE envs ADD COLUMN memory_bytes INTEGER;",
    // 18: the revision a Services-mode runtime (Swarm) was last asked to run each service of an
    // application at, so a rollback Swarm made is still judged that revision's failed rollout
    // after a server restart (docs/swarm.md#who-rolls-out).
    "CREATE TABLE ensured_services (
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        revision INTEGER NOT NULL,
        PRIMARY KEY (app, service)
     );",
];

/// A statement that runs with a migration only when it upgrades a database an earlier release
/// wrote (never on a fresh one), and only when that database's schema was older than
/// `older_than`.
struct UpgradeOnly {
    /// The migration it runs with (1-based).
    migration: usize,
    /// It runs only for a database whose `user_version` was below this when the upgrade began.
    older_than: usize,
    sql: &'static str,
}

const UPGRADE_ONLY: &[UpgradeOnly] = &[
    // 10: what already runs stays admitted: an earlier release let every Compose file bind-mount
    // any host path and add any capability (docs/teams.md#upgrading).
    UpgradeOnly {
        migration: 10,
        older_than: 10,
        sql: "INSERT INTO admission_grants(team, key, granted_by, created_at) VALUES
            ('default', 'bind:/', 'upgrade', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
            ('default', 'cap_add:*', 'upgrade', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));",
    },
    // 12: and so do its external networks and volumes, which releases before teams attached
    // without a grant. A database of the teams release (schema 10 or 11) gets nothing: its
    // administrator decided the grants already.
    UpgradeOnly {
        migration: 12,
        older_than: 10,
        sql: "INSERT OR IGNORE INTO admission_grants(team, key, granted_by, created_at) VALUES
            ('default', 'external', 'upgrade', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));",
    },
];

/// The schema version this build writes (the number of migrations): a database whose
/// `user_version` is higher was written by a newer Berth.
#[allow(clippy::cast_possible_truncation)] // a handful of migrations
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn apply(conn: &Connection) -> rusqlite::Result<()> {
    apply_first(conn, MIGRATIONS.len())
}

/// Apply the migrations up to number `last` (tests make databases of earlier releases with it).
pub(crate) fn apply_first(conn: &Connection, last: usize) -> rusqlite::Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let upgrading = current > 0;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(last).skip(current) {
        let number = i + 1;
        let extra = UPGRADE_ONLY
            .iter()
            .filter(|u| upgrading && u.migration == number && current < u.older_than)
            .map(|u| u.sql)
            .collect::<Vec<_>>()
            .join("\n");
        conn.execute_batch(&format!(
            "BEGIN; {sql}; {extra} PRAGMA user_version = {number}; COMMIT;"
        ))?;
    }
    Ok(())
}
