//! End-to-end with the real Docker engine: two teams on one server, each with a developer,
//! each deploying an application `web` and registering a service of the same name
//! (docs/teams.md). Each sees only its own objects (404 for the other's, by name and by
//! listing), both `web`s run side by side, a route conflict across teams does not name the
//! holder, gateway JWTs are bound to their team, builds, images and events are separated, and
//! team `default` keeps its names.

mod common;

use berth_testkit::{docker_cli, testapp_binary, testapp_image, TestRun};
use common::*;
use serde_json::{json, Value};
use std::process::Command;

/// A Compose file: `web` routed at `prefix`, behind Berth JWTs for `audience` when given.
fn web(image: &str, prefix: &str, audience: Option<&str>) -> String {
    let auth = audience.map_or(String::new(), |a| {
        format!(", auth: {{ jwt: {{ issuers: [berth], audiences: [\"{a}\"] }} }}")
    });
    format!(
        "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: {prefix}, strip_prefix: true{auth} }}\n"
    )
}

fn get(server: &Server, token: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = call(&server.api, "GET", path, Some(token), None);
    (status, body)
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn gateway_get(server: &Server, path: &str, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    raw_request(
        &server.gateway,
        "GET",
        path,
        &[("Authorization", bearer.as_str())],
        "",
    )
    .0
}

#[test]
fn two_teams_side_by_side_see_only_their_own() {
    let run = TestRun::new("teams");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&run, &data);
    let alice = team_member(&server, "a", "alice", "developer");
    let bob = team_member(&server, "b", "bob", "developer");

    // Team default keeps today's names: no team part in its containers.
    let file = compose(dir.path(), "default.yaml", &web(&image, "/d", None));
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "plain"]);
    let ps = server.ps("plain");
    let name = ps[0]["name"].as_str().unwrap();
    assert!(name.contains("_plain_web_"), "{name}");
    assert!(!name.contains('.'), "{name}");

    // Both teams deploy `web`. Team b's route accepts Berth tokens for audience `a/web`: only
    // the `berth_team` claim keeps team a's tokens out.
    let fa = compose(dir.path(), "a.yaml", &web(&image, "/a", Some("a/web")));
    let fb = compose(dir.path(), "b.yaml", &web(&image, "/b", Some("a/web")));
    ok_as(
        &server,
        &alice,
        &["apply", "-f", fa.to_str().unwrap(), "--app", "web"],
    );
    ok_as(
        &server,
        &bob,
        &["apply", "-f", fb.to_str().unwrap(), "--app", "web"],
    );

    // Each lists only its own, under its own name.
    for (token, other_prefix) in [(&alice, "/b"), (&bob, "/a")] {
        let (status, apps) = get(&server, token, "/api/v1/apps");
        assert_eq!(status, 200, "{apps}");
        assert_eq!(names(&apps, "name"), ["web"], "{apps}");
        let (status, app) = get(&server, token, "/api/v1/apps/web");
        assert_eq!((status, app["name"].as_str()), (200, Some("web")), "{app}");
        let (_, routes) = get(&server, token, "/api/v1/routes");
        let routes = routes["routes"].as_array().unwrap().clone();
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(routes[0]["app"], "web");
        assert_ne!(routes[0]["path_prefix"], other_prefix);
    }
    // Another team's application, and the default team's, answer as names nobody uses.
    let (status, nobody) = get(&server, &alice, "/api/v1/apps/nobody");
    let (status2, plain) = get(&server, &alice, "/api/v1/apps/plain");
    assert_eq!((status, status2), (404, 404));
    assert_eq!(nobody["code"], "app_not_found");
    assert_eq!(plain["code"], "app_not_found");
    assert_eq!(
        plain["message"]
            .as_str()
            .unwrap()
            .replace("plain", "nobody"),
        nobody["message"].as_str().unwrap(),
        "the same answer as for a name nobody uses"
    );
    assert!(
        !plain["message"].as_str().unwrap().contains("a/"),
        "{plain}"
    );
    let (status, _) = get(&server, &alice, "/api/v1/apps/b%2Fweb");
    assert_eq!(status, 400, "a '/' in a name cannot reach another team");

    // Side by side: distinct containers, both serving.
    let a_ps: Value = serde_json::from_str(&ok_as(
        &server,
        &alice,
        &["ps", "--app", "web", "--output", "json"],
    ))
    .unwrap();
    let b_ps: Value = serde_json::from_str(&ok_as(
        &server,
        &bob,
        &["ps", "--app", "web", "--output", "json"],
    ))
    .unwrap();
    let (a_name, b_name) = (
        a_ps[0]["name"].as_str().unwrap(),
        b_ps[0]["name"].as_str().unwrap(),
    );
    assert!(a_name.contains("_a.web_web_"), "{a_name}");
    assert!(b_name.contains("_b.web_web_"), "{b_name}");
    let nets = docker_cli(&["network", "ls", "--format", "{{.Name}}"]).unwrap();
    assert!(nets.contains("_a.web_default"), "{nets}");
    assert!(nets.contains("_b.web_default"), "{nets}");

    // A route conflict across teams names no one; within a team it names the application.
    let fc = compose(dir.path(), "c.yaml", &web(&image, "/a", None));
    let out = cli_as(
        &server,
        &bob,
        &["apply", "-f", fc.to_str().unwrap(), "--app", "other"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("held by another team"), "{err}");
    assert!(
        !err.contains("application") && !err.contains("\"a"),
        "{err}"
    );
    let out = cli_as(
        &server,
        &alice,
        &["apply", "-f", fc.to_str().unwrap(), "--app", "other"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held by application \"web\""), "{err}");

    // Gateway JWTs: a team mints only for its own applications, and the token carries its
    // team; team b's route refuses team a's token even though the audience matches.
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/tokens",
        Some(&bob),
        Some(json!({"subject": "eve", "audiences": ["nobody"]})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("app_not_found")),
        "{body}"
    );
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/tokens",
        Some(&alice),
        Some(json!({"subject": "eve", "audiences": ["web"], "claims": {"berth_team": "b"}})),
    );
    assert_eq!(status, 400, "berth_team is reserved: {body}");
    let a_token = ok_as(
        &server,
        &alice,
        &["token", "issue", "--subject", "ann", "--audience", "web"],
    )
    .trim()
    .to_string();
    assert_eq!(gateway_get(&server, "/a/headers", &a_token), 200);
    for _ in 0..3 {
        assert_eq!(
            gateway_get(&server, "/b/headers", &a_token),
            401,
            "team b's route accepted team a's token"
        );
    }

    // Issuers belong to a team.
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/issuers",
        Some(&alice),
        Some(
            json!({"name": "idp", "issuer": "https://idp.example", "hs256_secret": "an-hs256-secret-of-at-least-32-bytes!!"}),
        ),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "idp");
    let (_, list) = get(&server, &alice, "/api/v1/issuers");
    assert!(names(&list, "name").contains(&"idp".to_string()), "{list}");
    let (_, list) = get(&server, &bob, "/api/v1/issuers");
    assert_eq!(names(&list, "name"), ["berth"], "{list}");
    let (status, _, _) = call(
        &server.api,
        "DELETE",
        "/api/v1/issuers/idp",
        Some(&bob),
        None,
    );
    assert_eq!(status, 400, "team b cannot remove team a's issuer");
    // Team b's route cannot name team a's issuer.
    let fi = compose(
        dir.path(),
        "i.yaml",
        &format!(
            "services:\n  web:\n    image: {image}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /bi, auth: {{ jwt: {{ issuers: [idp] }} }} }}\n"
        ),
    );
    let out = cli_as(
        &server,
        &bob,
        &["apply", "-f", fi.to_str().unwrap(), "--app", "web"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown issuer \"idp\""), "{err}");

    // Services of the same name, builds and images: each team its own.
    let svc = format!("api{}", std::process::id());
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(testapp_binary(), repo.join("app")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    git(&repo, &["tag", "v1"]);
    for token in [&alice, &bob] {
        ok_as(
            &server,
            token,
            &["service", "create", &svc, "--git", repo.to_str().unwrap()],
        );
        let (_, list) = get(&server, token, "/api/v1/services");
        assert_eq!(names(&list, "name"), [svc.as_str()], "{list}");
    }
    let log = ok_as(&server, &alice, &["build", &svc, "--follow"]);
    assert!(log.contains("succeeded: version v1"), "{log}");
    let (_, builds) = get(&server, &alice, "/api/v1/builds");
    assert_eq!(names(&builds, "service"), [svc.as_str()], "{builds}");
    let id = builds[0]["id"].as_u64().unwrap();
    let (_, builds) = get(&server, &bob, "/api/v1/builds");
    assert_eq!(builds, json!([]));
    let (status, build) = get(&server, &bob, &format!("/api/v1/builds/{id}"));
    assert_eq!(
        (status, build["code"].as_str()),
        (404, Some("build_not_found"))
    );
    let (status, _) = get(&server, &bob, &format!("/api/v1/builds/{id}/logs"));
    assert_eq!(status, 404);
    let tag = format!("berth/a/{svc}:v1");
    let (_, images) = get(&server, &alice, "/api/v1/images");
    assert_eq!(names(&images, "service"), [svc.as_str()], "{images}");
    assert_eq!(
        images[0]["tag"],
        tag.as_str(),
        "the Docker tag holds the team"
    );
    let (_, images) = get(&server, &bob, "/api/v1/images");
    assert_eq!(images, json!([]));
    let (status, _) = get(&server, &bob, &format!("/api/v1/images/{svc}/v1/archive"));
    assert_eq!(status, 400, "team b has no version v1 of its {svc}");

    // Team a archives its image; team b cannot restore it, and the image stays.
    let archive = dir.path().join("v1.tar");
    ok_as(
        &server,
        &alice,
        &[
            "image",
            "archive",
            &format!("{svc}:v1"),
            "-o",
            archive.to_str().unwrap(),
        ],
    );
    let out = cli_as(
        &server,
        &bob,
        &["image", "restore", archive.to_str().unwrap()],
    );
    assert!(!out.status.success(), "team b restored team a's image");
    assert!(
        docker_cli(&["image", "inspect", &tag]).is_ok(),
        "{tag} gone"
    );
    // Restoring is the administrator's (a load replaces tags every team shares): not even
    // team a's developer may, the administrator may, into team a.
    let out = cli_as(
        &server,
        &alice,
        &["image", "restore", archive.to_str().unwrap()],
    );
    assert!(!out.status.success(), "a developer restored an image");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.ok(&["--team", "a", "image", "restore", archive.to_str().unwrap()]);
    let (_, events) = get(&server, &alice, "/api/v1/events");
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "image.restored"),
        "{events}"
    );
    let (_, events) = get(&server, &bob, "/api/v1/events");
    // Team b sees its own deployments (app.deployed) and none of team a's events.
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "app.deployed"),
        "team b sees team a's events: {events}"
    );

    // The webhook of team a's service has the team in its path.
    let out = Command::new(bin())
        .args(["service", "webhook-secret", &svc])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", &alice)
        .env_remove("BERTH_DATA_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"a-hook-secret-of-some-length\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("/api/v1/hooks/a/{svc}")),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, _) = call(
        &server.api,
        "POST",
        &format!("/api/v1/hooks/a/{svc}"),
        None,
        Some(json!({"zen": "ping"})),
    );
    assert_eq!(status, 401, "unsigned: refused");
    let signed = [("X-Gitlab-Token", "a-hook-secret-of-some-length")];
    let ping = r#"{"object_kind":"push","ref":"refs/heads/main","after":"0"}"#;
    let hook = |path: &str| raw_request(&server.api, "POST", path, &signed, ping);
    let (status, _, body) = hook(&format!("/api/v1/hooks/a/{svc}"));
    assert_eq!(status, 202, "verified: a build is queued: {body}");
    assert!(body.contains(&format!("\"service\":\"{svc}\"")), "{body}");
    // A service that does not exist, one with no secret and a bad signature answer alike: the
    // public path tells nobody which services exist.
    let (status, _, nobody) = hook(&format!("/api/v1/hooks/{svc}"));
    assert_eq!(status, 401, "team default has no {svc}: {nobody}");
    let (status, _, no_secret) = hook(&format!("/api/v1/hooks/b/{svc}"));
    assert_eq!(
        status, 401,
        "team b's {svc} has another secret (none): {no_secret}"
    );
    let (status, _, no_team) = hook(&format!("/api/v1/hooks/zz/{svc}"));
    assert_eq!(status, 401, "{no_team}");
    let wrong = [("X-Gitlab-Token", "not-the-secret-of-team-a-at-all")];
    let (status, _, bad_sig) = raw_request(
        &server.api,
        "POST",
        &format!("/api/v1/hooks/a/{svc}"),
        &wrong,
        ping,
    );
    assert_eq!(status, 401, "{bad_sig}");
    let message = |body: &str| {
        let v: Value = serde_json::from_str(&body[body.find('{').unwrap_or(0)..]).unwrap();
        v["message"].as_str().unwrap_or_default().to_string()
    };
    for other in [&no_secret, &no_team, &bad_sig] {
        assert_eq!(message(&nobody), message(other), "{nobody} / {other}");
    }
}
