//! End-to-end with the real Docker engine (docs/market.md): team `a` builds `orders` from Git,
//! has it reviewed, runs it behind an `auth: subscribers` route and publishes it bound to that
//! application. Team `b` finds it in the market and composes an application that `uses` it: its
//! container calls the provider through the gateway with the wired URL and credential (200).
//! Retiring the version and removing the provider are refused while `b` uses it. A second
//! application of `b` subscribes by the CLI; after `unsubscribe` its still valid credential is
//! refused with 403 `not_subscribed` within a second, and nothing restarted.
//!
//! Install: team `b` runs its own copy of `a/orders:v1` (`x-berth.from_market`), which keeps the
//! provider's dependency (`a/stock`, wired in `b`'s copy too), and upgrades it to v2 under load
//! with no failed request.

mod common;

use berth_testkit::{testapp_binary, testapp_image, wait_for, TestRun};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

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
        &format!("services:\n  api:\n    image: {tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /orders, strip_prefix: true, auth: subscribers, plans: {{ gold: {{ per_second: 1, burst: 3 }} }} }}\n"),
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
    // The graph, from both ends.
    let graph = ok_as(&server, &b_dev, &["app", "graph", "shop"]);
    assert!(
        graph.contains("web: uses a/orders (served by a/prov)"),
        "{graph}"
    );
    let graph = ok_as(&server, &a_dev, &["app", "graph", "prov"]);
    assert!(
        graph.contains("used by b/shop (subscribes to a/orders)"),
        "{graph}"
    );
    let dot = ok_as(
        &server,
        &b_dev,
        &["app", "graph", "shop", "--format", "dot"],
    );
    assert!(dot.contains("\"b/shop\" -> \"a/prov\""), "{dot}");
    let svg = ok_as(
        &server,
        &b_dev,
        &["app", "graph", "shop", "--format", "svg"],
    );
    assert!(
        svg.starts_with("<svg ") && svg.contains(">a/prov</text>"),
        "{svg}"
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
    let err = failed_with(
        &cli_as(
            &server,
            &b_dev,
            &[
                "subscribe",
                "--app",
                "other",
                "a/orders",
                "--plan",
                "silver",
            ],
        ),
        "invalid_argument",
    );
    assert!(err.contains("its plans: gold"), "{err}");
    let out = ok_as(
        &server,
        &b_dev,
        &["subscribe", "--app", "other", "a/orders", "--plan", "gold"],
    );
    assert!(out.contains("ORDERS_URL=http://berth-gateway:"), "{out}");
    let token_file = data.join("credentials/b.other/orders.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    // The gold plan: a burst of 3, then 429 for this subscriber only.
    for _ in 0..3 {
        assert_eq!(
            through(&server, "/orders/x", token.trim()),
            (200, String::new())
        );
    }
    assert_eq!(
        through(&server, "/orders/x", token.trim()),
        (429, "rate_limited".to_string())
    );
    std::thread::sleep(Duration::from_millis(1100));
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

/// A Git repository of the test app whose responses start with `version`, tagged `tag`.
fn commit_version(repo: &Path, version: &str, tag: &str) {
    std::fs::write(
        repo.join("Dockerfile"),
        format!("FROM scratch\nCOPY app /app\nEXPOSE 8080\nENV VERSION={version}\nENTRYPOINT [\"/app\"]\n"),
    )
    .unwrap();
    if !repo.join(".git").exists() {
        std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
        git(repo, &["init", "-q", "-b", "main"]);
    }
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", version]);
    git(repo, &["tag", tag]);
}

/// Build `service` at its newest commit, have it approved; its version's image tag.
fn build_and_approve(
    server: &Server,
    dev: &str,
    approver: &str,
    service: &str,
    version: &str,
) -> String {
    ok_as(server, dev, &["build", service, "--follow"]);
    let versions = json(&ok_as(server, dev, &["versions", service, "-o", "json"]));
    let v = versions
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("no {service}:{version} in {versions}"));
    let at = format!("{service}:{version}");
    ok_as(server, dev, &["submit", &at, "--note", "ready"]);
    ok_as(server, approver, &["approve", &at, "--reason", "ok"]);
    v["tag"].as_str().unwrap().to_string()
}

#[test]
fn an_installed_copy_keeps_its_dependency_and_upgrades_without_failures() {
    let run = TestRun::new("install");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let orders = dir.path().join("orders");
    let stock = dir.path().join("stock");
    std::fs::create_dir_all(&orders).unwrap();
    std::fs::create_dir_all(&stock).unwrap();
    commit_version(&orders, "orders-v1", "v1");
    commit_version(&stock, "stock-v1", "v1");
    let server = Server::start_on(
        &run,
        &data,
        &format!("127.0.0.1:{}", free_port()),
        &format!("0.0.0.0:{}", free_port()),
    );
    let a_dev = team_member(&server, "a", "ann", "developer");
    let a_approver = team_member(&server, "a", "abe", "approver");
    let b_dev = team_member(&server, "b", "bob", "developer");
    for (name, repo) in [("orders", &orders), ("stock", &stock)] {
        ok_as(
            &server,
            &a_dev,
            &["service", "create", name, "--git", repo.to_str().unwrap()],
        );
    }
    // a/stock is served by a's `stockapp`; a's `prov` serves a/orders and uses a/stock.
    let stock_tag = build_and_approve(&server, &a_dev, &a_approver, "stock", "v1");
    let file = compose(
        dir.path(),
        "stock.yaml",
        &format!("services:\n  api:\n    image: {stock_tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /stock, strip_prefix: true, auth: subscribers }}\n"),
    );
    ok_as(
        &server,
        &a_dev,
        &["apply", "-f", file.to_str().unwrap(), "--app", "stockapp"],
    );
    ok_as(
        &server,
        &a_dev,
        &["publish", "stock:v1", "--app", "stockapp"],
    );
    let orders_tag = build_and_approve(&server, &a_dev, &a_approver, "orders", "v1");
    let file = compose(
        dir.path(),
        "prov.yaml",
        &format!("services:\n  api:\n    image: {orders_tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /orders, strip_prefix: true, auth: subscribers }}\n      uses: [a/stock]\n"),
    );
    ok_as(
        &server,
        &a_dev,
        &["apply", "-f", file.to_str().unwrap(), "--app", "prov"],
    );
    ok_as(&server, &a_dev, &["publish", "orders:v1", "--app", "prov"]);

    // Only published versions install.
    let copy = |version: &str| {
        compose(
            dir.path(),
            "copy.yaml",
            &format!("services:\n  orders:\n    expose: [\"8080\"]\n    x-berth:\n      from_market: a/orders:{version}\n      route: {{ path_prefix: /copy, strip_prefix: true }}\n      health: {{ http: /healthz }}\n    deploy:\n      replicas: 2\n      update_config: {{ order: start-first }}\n"),
        )
    };
    let file = copy("v9");
    failed_with(
        &cli_as(
            &server,
            &b_dev,
            &["apply", "-f", file.to_str().unwrap(), "--app", "copy"],
        ),
        "version_not_published",
    );
    let file = copy("v1");
    ok_as(
        &server,
        &b_dev,
        &["apply", "-f", file.to_str().unwrap(), "--app", "copy"],
    );
    wait_for(Duration::from_secs(30), "b's copy answers", || {
        let (status, body) = server.get("/copy/").ok()?;
        (status == 200 && body.starts_with("orders-v1")).then_some(())
    });
    // The copy's dependency is wired in b's application: it calls a/stock with b's credential.
    let answer = wait_for(Duration::from_secs(30), "the copy calls a/stock", || {
        let (status, body) = server.get("/copy/call?env=STOCK&path=/level").ok()?;
        (status == 200 && body.starts_with("status=")).then_some(body)
    });
    assert!(
        answer.starts_with("status=200\n") && answer.contains("stock-v1"),
        "{answer}"
    );
    let entry = json(&ok_as(
        &server,
        &b_dev,
        &["market", "show", "a/orders", "-o", "json"],
    ));
    assert_eq!(
        entry["installs"],
        serde_json::json!(["b/copy (orders, v1)"]),
        "{entry}"
    );
    let graph = ok_as(&server, &b_dev, &["app", "graph", "copy"]);
    assert!(
        graph.contains("orders: runs an installed copy of a/orders:v1"),
        "{graph}"
    );
    assert!(
        graph.contains("orders: uses a/stock (served by a/stockapp)"),
        "{graph}"
    );
    let stock_entry = json(&ok_as(
        &server,
        &b_dev,
        &["market", "show", "a/stock", "-o", "json"],
    ));
    let users = stock_entry["subscribers"].as_array().unwrap();
    assert!(
        users.contains(&serde_json::json!("b/copy")),
        "{stock_entry}"
    );

    // v2 is published (without moving the provider); b's copy moves to it under load.
    commit_version(&orders, "orders-v2", "v2");
    build_and_approve(&server, &a_dev, &a_approver, "orders", "v2");
    ok_as(&server, &a_dev, &["publish", "orders:v2"]);
    let plan = ok_as(
        &server,
        &b_dev,
        &["upgrade", "--app", "copy", "orders", "--dry-run"],
    );
    assert!(plan.contains("a/orders v1 → v2"), "{plan}");
    let load = Load::start(&server.gateway, "/copy/", 4);
    std::thread::sleep(Duration::from_millis(500));
    let out = ok_as(&server, &b_dev, &["upgrade", "--app", "copy", "orders"]);
    assert!(out.contains("rolls v2 out"), "{out}");
    wait_for(Duration::from_secs(60), "the copy runs v2 only", || {
        let ps = server_ps_as(&server, &b_dev, "copy");
        let running: Vec<&Value> = ps.iter().filter(|i| i["state"] == "running").collect();
        (running.len() == 2
            && (0..20).all(|_| {
                server
                    .get("/copy/")
                    .is_ok_and(|(s, b)| s == 200 && b.starts_with("orders-v2"))
            }))
        .then_some(())
    });
    let result = load.finish();
    assert!(
        result.failures.is_empty(),
        "failed requests: {:?}",
        result.failures
    );
    assert!(
        result.versions.contains("orders-v2"),
        "{:?}",
        result.versions
    );
    eprintln!("upgrade under load: {} requests, 0 failed", result.ok);
    let entry = json(&ok_as(
        &server,
        &b_dev,
        &["market", "show", "a/orders", "-o", "json"],
    ));
    assert_eq!(
        entry["installs"],
        serde_json::json!(["b/copy (orders, v2)"]),
        "{entry}"
    );
    // v1 retired (the copy runs v2 now): rolling the copy back to it is refused.
    let a_owner = team_member(&server, "a", "ola", "owner");
    ok_as(&server, &a_owner, &["retire", "orders:v1"]);
    failed_with(
        &cli_as(&server, &b_dev, &["rollback", "--app", "copy"]),
        "version_not_published",
    );
    ok_as(&server, &b_dev, &["rm", "--app", "copy"]);

    // A consumer's first start waits until its provider answers.
    ok_as(&server, &a_dev, &["scale", "--app", "stockapp", "api=0"]);
    wait_for(Duration::from_secs(20), "stockapp has no replica", || {
        server_ps_as(&server, &a_dev, "stockapp")
            .is_empty()
            .then_some(())
    });
    let late = compose(
        dir.path(),
        "late.yaml",
        &format!("services:\n  web:\n    image: {image}\n    x-berth:\n      uses: [a/stock]\n"),
    );
    ok_as(
        &server,
        &b_dev,
        &[
            "apply",
            "-f",
            late.to_str().unwrap(),
            "--app",
            "late",
            "--detach",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        server_ps_as(&server, &b_dev, "late").is_empty(),
        "started before its provider"
    );
    let (_, _, status) = call(&server.api, "GET", "/api/v1/apps/late", Some(&b_dev), None);
    assert_eq!(
        status["services"][0]["waiting_for"],
        serde_json::json!(["a/stock (market provider)"]),
        "{status}"
    );
    ok_as(&server, &a_dev, &["scale", "--app", "stockapp", "api=1"]);
    wait_for(
        Duration::from_secs(30),
        "late starts once stock answers",
        || {
            server_ps_as(&server, &b_dev, "late")
                .iter()
                .any(|i| i["state"] == "running")
                .then_some(())
        },
    );
    ok_as(&server, &b_dev, &["rm", "--app", "late"]);
}

fn server_ps_as(server: &Server, token: &str, app: &str) -> Vec<Value> {
    json(&ok_as(server, token, &["ps", "--app", app, "-o", "json"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}
