//! End-to-end with the real Docker engine (docs/market.md): team `a` builds `orders` from Git,
//! has it reviewed, runs it behind an `auth: subscribers` route and publishes it bound to that
//! application. Team `b` finds it in the market and composes an application that `uses` it: its
//! container calls the provider through the gateway with the wired URL and credential (200).
//! Retiring the version and removing the provider are refused while `b` uses it. A second
//! application of `b` subscribes by the CLI; after `unsubscribe` its still valid credential is
//! refused with 403 `not_subscribed` within a second, and nothing restarted.

mod common;

use berth_testkit::{testapp_binary, testapp_image, wait_for, TestRun};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
}

fn failed_with(out: &Output, code: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded, expected {code}");
    assert!(err.contains(&format!("({code})")), "expected {code}: {err}");
    err
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A request through the gateway with a bearer token: (status, error code or body).
fn through(server: &Server, path: &str, token: &str) -> (u16, String) {
    let (status, _, body) = call(&server.gateway, "GET", path, Some(token), None);
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn subscribe_call_refuse_and_unsubscribe() {
    let run = TestRun::new("market");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nEXPOSE 8080\nENV VERSION=orders-v1\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("README.md"),
        "# Orders\n\nOrders, for every team.\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "v1"]);
    // Consumers' containers reach the gateway at the Docker host: it listens on every address.
    let server = Server::start_on(
        &run,
        &data,
        &format!("127.0.0.1:{}", free_port()),
        &format!("0.0.0.0:{}", free_port()),
    );
    let a_dev = team_member(&server, "a", "ann", "developer");
    let a_approver = team_member(&server, "a", "abe", "approver");
    let a_owner = team_member(&server, "a", "ola", "owner");
    let b_dev = team_member(&server, "b", "bob", "developer");

    // Team a: build, review, run behind a subscribers-only route, publish bound to it.
    let repo_arg = repo.to_str().unwrap();
    ok_as(
        &server,
        &a_dev,
        &["service", "create", "orders", "--git", repo_arg],
    );
    ok_as(&server, &a_dev, &["build", "orders", "--follow"]);
    let versions = json(&ok_as(
        &server,
        &a_dev,
        &["versions", "orders", "-o", "json"],
    ));
    let tag = versions[0]["tag"].as_str().unwrap().to_string();
    ok_as(&server, &a_dev, &["submit", "orders:v1", "--note", "v1"]);
    ok_as(
        &server,
        &a_approver,
        &["approve", "orders:v1", "--reason", "ok"],
    );
    let prov = compose(
        dir.path(),
        "prov.yaml",
        &format!("services:\n  api:\n    image: {tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /orders, strip_prefix: true, auth: subscribers }}\n"),
    );
    ok_as(
        &server,
        &a_dev,
        &["apply", "-f", prov.to_str().unwrap(), "--app", "prov"],
    );
    ok_as(&server, &a_dev, &["publish", "orders:v1", "--app", "prov"]);
    // Up, and closed to callers without a credential.
    wait_for(Duration::from_secs(30), "the provider routes", || {
        let (status, _, _) = call(&server.gateway, "GET", "/orders/x", None, None);
        (status == 401).then_some(())
    });

    // Team b finds it and composes an application that uses it.
    let market = json(&ok_as(&server, &b_dev, &["market", "ls", "-o", "json"]));
    assert_eq!(market[0]["team"], "a", "{market}");
    assert_eq!(market[0]["service"], "orders");
    let shop = compose(
        dir.path(),
        "shop.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /shop, strip_prefix: true }}\n      uses: [a/orders]\n"),
    );
    ok_as(
        &server,
        &b_dev,
        &["apply", "-f", shop.to_str().unwrap(), "--app", "shop"],
    );
    let answer = wait_for(
        Duration::from_secs(30),
        "shop's container calls orders through the gateway",
        || {
            let (status, body) = server.get("/shop/call?env=ORDERS&path=/hello").ok()?;
            (status == 200 && body.starts_with("status=")).then_some(body)
        },
    );
    assert!(answer.starts_with("status=200\n"), "{answer}");
    assert!(
        answer.contains("orders-v1") && answer.contains("GET /hello"),
        "{answer}"
    );
    // Without its credential the same container is refused.
    let (_, anonymous) = server
        .get("/shop/call?env=ORDERS&path=/hello&auth=0")
        .unwrap();
    assert!(anonymous.starts_with("status=401"), "{anonymous}");
    let subs = json(&ok_as(
        &server,
        &b_dev,
        &["subscriptions", "--app", "shop", "-o", "json"],
    ));
    assert_eq!(subs[0]["entry"], "a/orders", "{subs}");
    assert_eq!(subs[0]["origin"], "uses");
    assert_eq!(subs[0]["token_file"], "/run/secrets/berth/orders.token");
    let entry = json(&ok_as(
        &server,
        &b_dev,
        &["market", "show", "a/orders", "-o", "json"],
    ));
    assert_eq!(
        entry["subscribers"],
        serde_json::json!(["b/shop"]),
        "{entry}"
    );

    // What b uses cannot be taken away under it.
    let err = failed_with(
        &cli_as(&server, &a_owner, &["retire", "orders:v1"]),
        "in_use",
    );
    assert!(err.contains("b/shop"), "{err}");
    let err = failed_with(&cli_as(&server, &a_dev, &["rm", "--app", "prov"]), "in_use");
    assert!(err.contains("b/shop"), "{err}");

    // A second application subscribes by the CLI, then unsubscribes: its credential stays a
    // valid Berth JWT and is refused at once.
    let other = compose(
        dir.path(),
        "other.yaml",
        &format!("services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n"),
    );
    ok_as(
        &server,
        &b_dev,
        &["apply", "-f", other.to_str().unwrap(), "--app", "other"],
    );
    let out = ok_as(
        &server,
        &b_dev,
        &["subscribe", "--app", "other", "a/orders"],
    );
    assert!(out.contains("ORDERS_URL=http://berth-gateway:"), "{out}");
    let token_file = data.join("credentials/b.other/orders.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(
        through(&server, "/orders/x", token.trim()),
        (200, String::new())
    );
    failed_with(
        &cli_as(
            &server,
            &b_dev,
            &["unsubscribe", "--app", "shop", "a/orders"],
        ),
        "invalid_argument",
    );
    let shop_containers = containers(&run);
    ok_as(
        &server,
        &b_dev,
        &["unsubscribe", "--app", "other", "a/orders"],
    );
    let unsubscribed = Instant::now();
    let refused = wait_for(Duration::from_secs(5), "the old credential refused", || {
        let (status, code) = through(&server, "/orders/x", token.trim());
        (status == 403).then_some(code)
    });
    let took = unsubscribed.elapsed();
    assert_eq!(refused, "not_subscribed");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    eprintln!("unsubscribe → first refused call: {took:?}");
    assert!(!token_file.exists(), "the credential file is removed");
    // Nothing restarted: every container that ran still runs.
    let now = containers(&run);
    for c in shop_containers.iter().filter(|c| c.contains(" running ")) {
        assert!(now.contains(c), "{c} changed: {now:?}");
    }
    failed_with(
        &cli_as(
            &server,
            &b_dev,
            &["unsubscribe", "--app", "other", "a/orders"],
        ),
        "subscription_not_found",
    );
    // The other team's application is 404 to a, as everywhere.
    failed_with(
        &cli_as(&server, &a_dev, &["subscriptions", "--app", "shop"]),
        "app_not_found",
    );
    failed_with(
        &cli_as(
            &server,
            &b_dev,
            &["subscribe", "--app", "other", "a/nothing"],
        ),
        "service_not_found",
    );
    ok_as(&server, &b_dev, &["rm", "--app", "shop"]);
    ok_as(&server, &b_dev, &["rm", "--app", "other"]);
}
