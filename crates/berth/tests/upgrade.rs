//! Upgrading a data directory written by the release before teams (schema 9): its applications
//! move into team `default` without being renamed, and what runs is not touched — the same
//! containers keep running, and scaling the application (a new revision, admission-checked)
//! still admits its bind mount, capability and external volume (docs/teams.md#upgrading).

mod common;

use berth_testkit::{docker_cli, testapp_image, wait_for, TestRun};
use common::*;
use std::process::Command;
use std::time::Duration;

/// `(id, started_at)` of the app's running replicas (not their network holders), sorted.
fn running(run: &TestRun, app: &str) -> Vec<(String, String)> {
    let ids = replica_ids(false, &[run.label_filter(), format!("berth.app={app}")]);
    let mut v: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let out = Command::new("docker")
                .args(["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", id])
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let (id, started) = s.split_once(' ').unwrap();
            (id.to_string(), started.to_string())
        })
        .collect();
    v.sort();
    v
}

/// Turn the data directory's database back into what the release before teams wrote: drop what
/// migration 10 added and record schema 9. (Migrations are never edited, so the first nine are
/// exactly the previous release's schema.)
fn downgrade_to_schema_9(data_dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(data_dir.join("berth.db")).unwrap();
    conn.execute_batch(
        // Migration 18 (the revisions services were ensured at, Swarm).
        "DROP TABLE ensured_services;
         -- Migration 17 (port leases; the columns it added to envs go with the table).
         DROP TABLE port_leases;
         -- Migration 16 (environments).
         DROP TABLE envs;
         -- Migration 15 (when a version was published).
         ALTER TABLE versions DROP COLUMN published_at;
         -- Migration 14 (when a replica was last restarted).
         ALTER TABLE restarts DROP COLUMN last_start_ms;
         -- Migration 13 (subscriptions); 12 changed no schema.
         DROP TABLE subscriptions;
         -- Migration 11 (the version lifecycle, the market's bindings).
         DROP INDEX versions_by_state;
         DROP TABLE market_bindings;
         ALTER TABLE versions DROP COLUMN state;
         ALTER TABLE versions DROP COLUMN submitted_by;
         ALTER TABLE versions DROP COLUMN submit_note;
         ALTER TABLE versions DROP COLUMN reviewed_by;
         ALTER TABLE versions DROP COLUMN review_reason;
         ALTER TABLE versions DROP COLUMN state_changed_at;
         ALTER TABLE versions DROP COLUMN steps;
         ALTER TABLE versions DROP COLUMN contract;
         ALTER TABLE versions DROP COLUMN readme;
         ALTER TABLE apps DROP COLUMN protected;
         -- Migration 10 (teams).
         DROP TABLE admission_grants;
         DROP TABLE team_members;
         DROP TABLE teams;
         ALTER TABLE api_tokens DROP COLUMN team;
         PRAGMA user_version = 9;",
    )
    .unwrap();
}

#[test]
fn a_data_directory_of_the_previous_schema_is_migrated_and_what_runs_is_untouched() {
    let run = TestRun::new("upgrade");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("hello.txt"), "kept").unwrap();
    let mut server = Server::start(&run, dir.path());
    let (api, gw) = (server.api.clone(), server.gateway.clone());

    // An external volume, made outside Berth (labelled for this run's cleanup).
    let external = run.name("ext");
    docker_cli(&[
        "volume",
        "create",
        "--label",
        &format!("berth.test={}", run.id),
        &external,
    ])
    .unwrap();
    // The previous release admitted any bind mount, capability and external volume; here, a
    // fresh data directory needs grants for them (given through the store while the server
    // runs: test setup only).
    {
        let store = berth_store::Store::open(dir.path()).unwrap();
        for key in ["bind:/", "cap_add:*", "external"] {
            store
                .grant_admission("default", &key.parse().unwrap(), "test")
                .unwrap();
        }
    }
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!(
            r#"
services:
  web:
    image: {image}
    expose: ["8080"]
    cap_add: [NET_ADMIN]
    volumes:
      - {}:/data:ro
      - shared:/shared
    x-berth:
      route: {{ path_prefix: / }}
      health: {{ http: /healthz, interval: 500ms }}
volumes:
  shared: {{ external: true, name: {external} }}
"#,
            host_dir.path().display()
        ),
    );
    let out = server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "legacy"]);
    assert!(out.contains("converged"), "{out}");
    let before = running(&run, "legacy");
    assert_eq!(before.len(), 1, "{before:?}");

    // The old release stops; its data directory is what the previous schema wrote.
    server.stop();
    downgrade_to_schema_9(dir.path());
    {
        let conn = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 9);
    }

    // The new release starts on it.
    let server = Server::start_on(&run, dir.path(), &api, &gw);
    // Team default, owned by admin, with grants that keep what runs admitted.
    let (status, _, apps) = call(
        &server.api,
        "GET",
        "/api/v1/apps",
        Some(&server.token()),
        None,
    );
    assert_eq!(status, 200, "{apps}");
    assert_eq!(apps[0]["name"], "legacy", "{apps}");
    {
        let store = berth_store::Store::open(dir.path()).unwrap();
        let keys: Vec<String> = store
            .admission_grants("default")
            .unwrap()
            .into_iter()
            .map(|g| g.key.to_string())
            .collect();
        assert_eq!(keys, ["bind:/", "cap_add:*", "external"]);
        let m = store.memberships("admin").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].team, "default");
        assert_eq!(m[0].role.as_str(), "owner");
    }
    // The same container, not restarted, for a while after the server reconciled.
    wait_for(Duration::from_secs(10), "status converged", || {
        let ps = server.ps("legacy");
        (ps.len() == 1 && ps[0]["state"] == "running").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        running(&run, "legacy"),
        before,
        "the upgrade touched the container"
    );
    let (code, body) = server.get("/healthz").unwrap();
    assert_eq!(code, 200, "{body}");

    // A new revision (scale) is admission-checked: the upgrade's grants admit it, and the
    // running replica is kept.
    let out = server.ok(&["scale", "--app", "legacy", "web=2"]);
    assert!(out.contains("converged"), "{out}");
    let after = running(&run, "legacy");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&before[0]), "{after:?} lost {before:?}");
    server.ok(&["rm", "--app", "legacy"]);
}
