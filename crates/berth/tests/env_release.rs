//! One build, promoted (docs/environments.md#one-build-promoted), against real Docker:
//! `berth release` makes staging's revision prod's — the same image IDs, asserted by ID — with
//! no failed request through prod's routes; a protected environment refuses an unreviewed
//! version; `env create --from` clones an environment at its image IDs.

mod common;

use berth_testkit::{testapp_image, testapp_image_tagged, wait_for, TestRun};
use common::*;
use std::time::Duration;

fn app_file(dir: &std::path::Path, name: &str, image: &str, version: &str) -> String {
    compose(
        dir,
        name,
        &format!(
            "services:\n  web:\n    image: {image}\n    environment: {{ VERSION: {version} }}\n    expose: [\"8080\"]\n    deploy:\n      replicas: 2\n      update_config: {{ order: start-first }}\n    x-berth:\n      route: {{ path_prefix: / }}\n      health: {{ http: /healthz, interval: 500ms }}\n"
        ),
    )
    .to_str()
    .unwrap()
    .to_string()
}

/// The image IDs of the running containers of global application `app`.
fn image_ids(app: &str) -> std::collections::BTreeSet<String> {
    // Replicas only: their network holders run Berth's own image.
    let ids = replica_ids(false, &[format!("berth.app={app}")]);
    ids.iter()
        .map(|id| {
            berth_testkit::docker_cli(&["inspect", "-f", "{{.Image}}", id])
                .unwrap()
                .trim()
                .to_string()
        })
        .collect()
}

fn answers(server: &Server, host: &str, version: &str) {
    wait_for(
        Duration::from_secs(90),
        &format!("{host} answers {version}"),
        || {
            let (status, body) =
                berth_testkit::http_get(&server.gateway, "/", Some(host), Duration::from_secs(5))
                    .ok()?;
            (status == 200 && body.starts_with(version)).then_some(())
        },
    );
}

#[test]
fn release_promotes_the_same_image_ids_with_no_failed_request() {
    let run = TestRun::new("env-release");
    let v1 = testapp_image(&run);
    let v2 = testapp_image_tagged(&run, "v2");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&run, dir.path());
    let old = app_file(dir.path(), "old.yaml", &v1, "v1");
    let new = app_file(dir.path(), "new.yaml", &v2, "v2");

    server.ok(&["env", "create", "staging"]);
    server.ok(&["env", "create", "prod"]);
    server.ok(&["--env", "prod", "apply", "-f", &old, "--app", "shop"]);
    server.ok(&["--env", "staging", "apply", "-f", &new, "--app", "shop"]);
    answers(&server, "prod.shop.example", "v1");
    answers(&server, "staging.shop.example", "v2");
    let staging_ids = image_ids("shop@staging");
    assert_eq!(staging_ids.len(), 1, "{staging_ids:?}");
    assert_ne!(image_ids("shop@prod"), staging_ids);

    // A source that does not exist, and the same environment twice, are named.
    let out = server.cli(&["release", "nosuch", "--from", "staging", "--to", "prod"]);
    failed_with(&out, "app_not_found");
    let out = server.cli(&["release", "shop", "--from", "prod", "--to", "prod"]);
    failed_with(&out, "invalid_argument");
    let out = server.cli(&["release", "shop", "--from", "staging", "--to", "nowhere"]);
    failed_with(&out, "env_not_found");

    // Promote under load through prod's routes.
    let load = Load::start_host(&server.gateway, "/", Some("prod.shop.example"), 2);
    std::thread::sleep(Duration::from_millis(500));
    let out = server.ok(&["release", "shop", "--from", "staging", "--to", "prod"]);
    assert!(out.contains("revision 2"), "{out}");
    answers(&server, "prod.shop.example", "v2");
    std::thread::sleep(Duration::from_secs(1));
    let r = load.finish();
    assert!(r.failures.is_empty(), "failed requests: {:?}", r.failures);
    assert!(r.ok > 20, "{}", r.ok);
    assert!(r.versions.contains("v2"), "{:?}", r.versions);

    // The very image IDs staging runs, never rebuilt or looked up by tag: retag v2 to
    // something else entirely and prod still runs staging's ID.
    wait_for(Duration::from_secs(60), "prod's old replicas gone", || {
        (image_ids("shop@prod") == staging_ids).then_some(())
    });
    let history = json(&server.ok(&["--env", "prod", "history", "--app", "shop", "-o", "json"]));
    let last = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == 2)
        .cloned()
        .unwrap();
    assert_eq!(last["source"], "release", "{history}");
    assert!(
        last["change"]
            .as_str()
            .unwrap()
            .contains("release from staging r1"),
        "{last}"
    );
    // Releasing it again changes nothing.
    let again = server.ok(&["release", "shop", "--from", "staging", "--to", "prod"]);
    assert!(again.contains("no change"), "{again}");

    // A protected environment takes reviewed versions only, released or not.
    server.ok(&["env", "create", "live", "--protected"]);
    let out = server.cli(&["release", "shop", "--from", "staging", "--to", "live"]);
    let err = failed_with(&out, "version_not_approved");
    assert!(err.contains("environment \"live\" is protected"), "{err}");
    assert!(
        !server.ok(&["--env", "live", "apps"]).contains("shop"),
        "nothing was created in live"
    );

    // A clone: a new environment running staging's applications at their image IDs.
    let out = server.ok(&["env", "create", "qa", "--from", "staging", "--ttl", "1h"]);
    assert!(out.contains("cloned from staging: shop"), "{out}");
    answers(&server, "qa.shop.example", "v2");
    assert_eq!(image_ids("shop@qa"), staging_ids);
    let history = json(&server.ok(&["--env", "qa", "history", "--app", "shop", "-o", "json"]));
    assert_eq!(history[0]["source"], "clone", "{history}");
    // Cloning from an environment that does not exist creates nothing.
    let out = server.cli(&["env", "create", "qa2", "--from", "nosuch"]);
    failed_with(&out, "env_not_found");
    assert!(!server.ok(&["env", "ls"]).contains("qa2"));

    for env in ["staging", "prod", "qa", "live"] {
        server.ok(&["env", "rm", env]);
    }
    wait_all_removed(&run);
}
