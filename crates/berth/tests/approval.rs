//! End-to-end with the real Docker engine (docs/lifecycle.md): a developer of team `shop` builds
//! a service from Git whose pipeline runs a test step that writes a JUnit report and names a
//! contract; submits it; the submitter cannot approve; an approver does; the developer
//! publishes. A second version that removes an operation shows the break in `review show`. A
//! protected application refuses an unapproved image and accepts the published one.

mod common;

use berth_testkit::{busybox_image, testapp_binary, wait_for, TestRun};
use common::*;

const CONTRACT_V1: &str = "openapi: 3.0.3
info: { title: orders, version: '1' }
paths:
  /orders:
    get:
      responses:
        '200':
          description: the orders
          content:
            application/json:
              schema:
                type: array
                items: { type: object, properties: { id: { type: string }, total: { type: number } } }
  /orders/{id}:
    delete:
      parameters: [{ name: id, in: path, required: true, schema: { type: string } }]
      responses: { '204': { description: gone } }
";

#[test]
fn submit_review_publish_and_protect() {
    let run = TestRun::new("approval");
    let Some(toolbox) = busybox_image(&run) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    // The test step: two cases pass, one is skipped; the report is what the reviewer sees.
    std::fs::write(
        repo.join("test.sh"),
        "mkdir -p out\ncat > out/junit.xml <<'EOF'\n<testsuites><testsuite name=\"orders\">\n<testcase classname=\"orders\" name=\"lists\"/>\n<testcase classname=\"orders\" name=\"deletes\"/>\n<testcase classname=\"orders\" name=\"refunds\"><skipped/></testcase>\n</testsuite></testsuites>\nEOF\necho tested\n",
    )
    .unwrap();
    std::fs::write(repo.join("openapi.yaml"), CONTRACT_V1).unwrap();
    std::fs::write(
        repo.join("berth.pipeline.yaml"),
        format!(
            "contract: openapi.yaml\nsteps:\n  - name: test\n    image: {toolbox}\n    run: [\"sh ./test.sh\"]\n    reports: {{ junit: out/junit.xml }}\n  - name: image\n    build: {{ dockerfile: Dockerfile }}\n"
        ),
    )
    .unwrap();
    std::fs::write(repo.join(".gitignore"), "out/\n").unwrap();
    std::fs::write(
        repo.join("README.md"),
        "# Orders\n\nThe orders API: list and cancel orders.\n\n## Use\n\nCall it.\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "v1"]);
    let server = Server::start(&run, &data);
    let dev = team_member(&server, "shop", "dana", "developer");
    let approver = team_member(&server, "shop", "arne", "approver");
    let owner = team_member(&server, "shop", "olga", "owner");

    ok_as(
        &server,
        &dev,
        &[
            "service",
            "create",
            "orders",
            "--git",
            repo.to_str().unwrap(),
        ],
    );
    let log = ok_as(&server, &dev, &["build", "orders", "--follow"]);
    assert!(
        log.contains("test report out/junit.xml: 2 passed, 0 failed, 1 skipped"),
        "{log}"
    );
    let versions = json(&ok_as(&server, &dev, &["versions", "orders", "-o", "json"]));
    assert_eq!(versions[0]["name"], "v1");
    assert_eq!(versions[0]["state"], "built");
    let v1_tag = versions[0]["tag"].as_str().unwrap().to_string();

    // The evidence was gathered by the platform.
    let review = json(&ok_as(
        &server,
        &dev,
        &["review", "show", "orders:v1", "-o", "json"],
    ));
    let steps = review["steps"].as_array().unwrap();
    assert_eq!(steps[0]["name"], "test");
    assert_eq!(steps[0]["exit_code"], 0);
    assert_eq!(steps[0]["report"]["passed"], 2, "{review}");
    assert_eq!(steps[0]["report"]["skipped"], 1, "{review}");
    assert_eq!(steps[1]["name"], "image");
    assert!(review["image_size"].as_i64().unwrap() > 1000, "{review}");
    assert_eq!(review["contract_operations"], 2, "{review}");
    assert!(
        review["contract_summary"]
            .as_str()
            .unwrap()
            .starts_with("first contract"),
        "{review}"
    );
    let text = ok_as(&server, &dev, &["review", "show", "orders:v1"]);
    assert!(text.contains("2 passed, 0 failed, 1 skipped"), "{text}");

    // Publishing before review is not a transition the state allows.
    let err = failed_with(
        &cli_as(&server, &dev, &["publish", "orders:v1"]),
        "invalid_transition",
    );
    assert!(err.contains("built"), "{err}");
    ok_as(
        &server,
        &dev,
        &[
            "submit",
            "orders:v1",
            "--note",
            "first cut of the orders API",
        ],
    );
    // A developer cannot approve (the role), nor can an approver who submitted (four eyes:
    // the administrator may do everything else).
    failed_with(
        &cli_as(&server, &dev, &["approve", "orders:v1", "--reason", "mine"]),
        "forbidden",
    );
    let waiting = json(&ok_as(&server, &approver, &["review", "ls", "-o", "json"]));
    assert_eq!(waiting[0]["service"], "orders", "{waiting}");
    assert_eq!(waiting[0]["version"], "v1");
    assert_eq!(waiting[0]["submitted_by"], "dana");
    // A review needs a reason.
    failed_with(
        &cli_as(
            &server,
            &approver,
            &["approve", "orders:v1", "--reason", " "],
        ),
        "invalid_argument",
    );
    let out = ok_as(
        &server,
        &approver,
        &[
            "approve",
            "shop/orders:v1",
            "--reason",
            "tests and contract look right",
        ],
    );
    assert!(out.contains("orders:v1 is approved"), "{out}");
    // Deprecating is the owner's, and only of a published version.
    failed_with(
        &cli_as(&server, &dev, &["deprecate", "orders:v1"]),
        "forbidden",
    );
    failed_with(
        &cli_as(&server, &owner, &["deprecate", "orders:v1"]),
        "invalid_transition",
    );
    // Published with the application that serves it: the market's provider instance.
    let serving = compose(
        dir.path(),
        "serving.yaml",
        &format!("services:\n  api:\n    image: {v1_tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /orders }}\n"),
    );
    ok_as(
        &server,
        &dev,
        &[
            "apply",
            "-f",
            serving.to_str().unwrap(),
            "--app",
            "orders-live",
        ],
    );
    let err = failed_with(
        &cli_as(&server, &dev, &["publish", "orders:v1", "--app", "nowhere"]),
        "app_not_found",
    );
    assert!(err.contains("nowhere"), "{err}");
    ok_as(
        &server,
        &dev,
        &["publish", "orders:v1", "--app", "orders-live"],
    );
    let versions = json(&ok_as(&server, &dev, &["versions", "orders", "-o", "json"]));
    assert_eq!(versions[0]["state"], "published");

    // The market: every signed-in user of any team finds it.
    let outsider = team_member(&server, "other", "otto", "viewer");
    let market = json(&ok_as(&server, &outsider, &["market", "ls", "-o", "json"]));
    let entry = market
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["team"] == "shop" && e["service"] == "orders")
        .unwrap_or_else(|| panic!("not in the market: {market}"))
        .clone();
    assert_eq!(entry["latest"], "v1", "{entry}");
    assert_eq!(
        entry["description"],
        "The orders API: list and cancel orders."
    );
    assert_eq!(entry["provider"]["app"], "orders-live", "{entry}");
    assert_eq!(entry["provider"]["service"], "api", "{entry}");
    assert!(
        entry.get("readme").is_none(),
        "ls carries no README: {entry}"
    );
    let none = json(&ok_as(
        &server,
        &outsider,
        &["market", "ls", "--search", "no-such-thing", "-o", "json"],
    ));
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");
    let shown = json(&ok_as(
        &server,
        &outsider,
        &["market", "show", "shop/orders", "-o", "json"],
    ));
    assert!(
        shown["readme"].as_str().unwrap().starts_with("# Orders"),
        "{shown}"
    );
    assert_eq!(shown["contract"]["openapi"], "3.0.3", "{shown}");
    let text = ok_as(&server, &outsider, &["market", "show", "shop/orders"]);
    assert!(
        text.contains("provider  application orders-live service api"),
        "{text}"
    );
    failed_with(
        &cli_as(&server, &outsider, &["market", "show", "shop/nothing"]),
        "service_not_found",
    );
    // Reviews are the owning team's: another team's version answers as if absent.
    failed_with(
        &cli_as(&server, &outsider, &["review", "show", "orders:v1"]),
        "service_not_found",
    );
    failed_with(
        &cli_as(&server, &outsider, &["review", "show", "shop/orders:v1"]),
        "team_not_found",
    );
    let other_owner = team_member(&server, "other", "oona", "owner");
    failed_with(
        &cli_as(&server, &other_owner, &["app", "protect", "orders-live"]),
        "app_not_found",
    );
    failed_with(
        &cli_as(&server, &other_owner, &["review", "show", "orders:v1"]),
        "service_not_found",
    );

    // v2 removes an operation: the review flags the break against v1.
    let v2 = CONTRACT_V1.split("  /orders/{id}:").next().unwrap();
    std::fs::write(repo.join("openapi.yaml"), v2).unwrap();
    git(&repo, &["commit", "-q", "-am", "drop delete"]);
    git(&repo, &["tag", "v2"]);
    ok_as(&server, &dev, &["build", "orders", "--follow"]);
    let review = json(&ok_as(
        &server,
        &dev,
        &["review", "show", "orders:v2", "-o", "json"],
    ));
    assert_eq!(review["compared_with"], "v1", "{review}");
    assert_eq!(review["breaking_changes"], 1, "{review}");
    let change = &review["contract_changes"][0];
    assert_eq!(change["kind"], "operation_removed", "{review}");
    assert_eq!(change["operation"], "DELETE /orders/{id}");
    assert_eq!(change["breaking"], true);
    let text = ok_as(&server, &dev, &["review", "show", "orders:v2"]);
    assert!(text.contains("BREAKING"), "{text}");
    let v2_tag = json(&ok_as(&server, &dev, &["versions", "orders", "-o", "json"]))[0]["tag"]
        .as_str()
        .unwrap()
        .to_string();

    // The administrator submits v2 and may not approve its own submission.
    let admin = server.token();
    ok_as(&server, &admin, &["--team", "shop", "submit", "orders:v2"]);
    let err = failed_with(
        &cli_as(
            &server,
            &admin,
            &["--team", "shop", "approve", "orders:v2", "--reason", "mine"],
        ),
        "forbidden",
    );
    assert!(err.contains("you submitted"), "{err}");

    // A protected application runs reviewed versions only.
    let file = |tag: &str, env: &str| {
        compose(
            dir.path(),
            "compose.yaml",
            &format!("services:\n  api:\n    image: {tag}\n    environment: {{ E: \"{env}\" }}\n"),
        )
    };
    let f = file(&v1_tag, "1");
    ok_as(
        &server,
        &dev,
        &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
    );
    failed_with(
        &cli_as(&server, &dev, &["app", "protect", "front"]),
        "forbidden",
    );
    ok_as(&server, &owner, &["app", "protect", "front"]);
    let f = file(&v2_tag, "2");
    let err = failed_with(
        &cli_as(
            &server,
            &dev,
            &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
        ),
        "version_not_approved",
    );
    assert!(err.contains("orders:v2, which is submitted"), "{err}");
    let other = berth_testkit::testapp_image(&run);
    let f = file(&other, "3");
    let err = failed_with(
        &cli_as(
            &server,
            &dev,
            &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
        ),
        "version_not_approved",
    );
    assert!(err.contains("no version"), "{err}");
    // Nothing changed: the application still runs v1, and a new revision of v1 is accepted.
    let f = file(&v1_tag, "4");
    ok_as(
        &server,
        &dev,
        &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
    );
    let history = json(&ok_as(
        &server,
        &dev,
        &["history", "--app", "front", "-o", "json"],
    ));
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
    ok_as(&server, &owner, &["app", "unprotect", "front"]);
    let f = file(&v2_tag, "5");
    ok_as(
        &server,
        &dev,
        &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
    );

    // The automatic rollback of a protected application takes reviewed versions only, as they
    // are now: with v1 retired, a failing v2 does not roll back to it; the rollout pauses.
    ok_as(
        &server,
        &approver,
        &["approve", "orders:v2", "--reason", "the break is announced"],
    );
    let rolling = |tag: &str, env: &str, healthy: bool| {
        compose(
            dir.path(),
            "rolling.yaml",
            &format!(
                "services:\n  api:\n    image: {tag}\n    environment: {{ E: \"{env}\", HEALTHY: \"{h}\" }}\n    expose: [\"8080\"]\n    deploy:\n      update_config: {{ order: start-first, monitor: 3s, failure_action: rollback }}\n    x-berth:\n      health: {{ http: /healthz, interval: 500ms }}\n",
                h = u8::from(healthy)
            ),
        )
    };
    let f = rolling(&v1_tag, "6", true);
    ok_as(
        &server,
        &dev,
        &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
    );
    ok_as(&server, &owner, &["app", "protect", "front"]);
    ok_as(&server, &owner, &["retire", "orders:v1"]);
    let f = rolling(&v2_tag, "7", false);
    let out = cli_as(
        &server,
        &dev,
        &["apply", "-f", f.to_str().unwrap(), "--app", "front"],
    );
    assert!(!out.status.success(), "an unhealthy v2 converged");
    let history = wait_for(
        std::time::Duration::from_secs(30),
        "the failing revision",
        || {
            let h = json(&ok_as(
                &server,
                &dev,
                &["history", "--app", "front", "-o", "json"],
            ));
            (h[0]["status"] == "failed").then_some(h)
        },
    );
    let message = history[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused (application \"front\" is protected")
            && message.contains("orders:v1, which is retired")
            && message.contains("rollout paused"),
        "{history}"
    );
    // Paused: no rollback revision a while later.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let again = json(&ok_as(
        &server,
        &dev,
        &["history", "--app", "front", "-o", "json"],
    ));
    assert_eq!(again[0]["revision"], history[0]["revision"], "{again}");
    let events = ok_as(&server, &owner, &["events", "-o", "json"]);
    assert!(
        events.contains("rollback.refused") && events.contains("the application's protection"),
        "{events}"
    );
    ok_as(&server, &dev, &["rm", "--app", "front"]);
    ok_as(&server, &dev, &["rm", "--app", "orders-live"]);
}
