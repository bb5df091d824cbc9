//! End-to-end: what the CLI bundles reaches the containers — `.env` interpolation, `env_file`,
//! file-based secrets and configs, named volumes (kept unless `rm --volumes`), bind mounts —
//! and `logs --follow` streams.

mod common;

use berth_testkit::{testapp_image, wait_for, TestRun};
use common::*;
use std::time::Duration;

#[test]
fn bundle_files_secrets_configs_volumes_and_binds() {
    let run = TestRun::new("files");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let project = dir.path().join("project");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(project.join("conf")).unwrap();
    let server = Server::start(&run, &data);
    std::fs::write(
        project.join(".env"),
        "GREETING_WORD=bonjour\nAPP_VERSION=v7\n",
    )
    .unwrap();
    std::fs::write(project.join("app.env"), "FROM_ENV_FILE=yes\n").unwrap();
    std::fs::write(project.join("db_password.txt"), "s3cret-value\n").unwrap();
    std::fs::write(project.join("conf/app.conf"), "mode=fast\n").unwrap();
    std::fs::write(project.join("conf/bound.txt"), "from the host\n").unwrap();
    let file = compose(
        &project,
        "compose.yaml",
        &format!(
            r#"
x-common: &common
  image: {image}
  expose: ["8080"]
services:
  web:
    <<: *common
    environment:
      VERSION: ${{APP_VERSION}}
      GREETING: " ${{GREETING_WORD}} ${{FROM_SHELL:-unset}}"
    env_file: [app.env]
    secrets: [db_password]
    configs:
      - source: app_conf
        target: /etc/app.conf
    volumes:
      - data:/data
      - ./conf/bound.txt:/bound.txt:ro
    x-berth:
      route: {{ path_prefix: / }}
      health: {{ http: /healthz }}
secrets:
  db_password:
    file: ./db_password.txt
configs:
  app_conf:
    file: ./conf/app.conf
volumes:
  data: {{}}
"#
        ),
    );
    // A fresh data directory admits no bind mount: grant this test's directory (docs/teams.md).
    server.ok(&[
        "admission",
        "grant",
        "default",
        &format!("bind:{}", dir.path().display()),
    ]);
    let out = std::process::Command::new(bin())
        .args(["apply", "-f", file.to_str().unwrap(), "--app", "files"])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", server.token())
        .env("FROM_SHELL", "shell-wins")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );

    let (_, body) = server.get("/").unwrap();
    assert!(body.starts_with("v7 "), "{body}");
    assert!(body.contains("bonjour shell-wins"), "{body}");
    assert_eq!(
        server.get("/file?path=/run/secrets/db_password").unwrap().1,
        "s3cret-value\n"
    );
    assert_eq!(
        server.get("/file?path=/etc/app.conf").unwrap().1,
        "mode=fast\n"
    );
    assert_eq!(
        server.get("/file?path=/bound.txt").unwrap().1,
        "from the host\n"
    );
    // env_file reached the container.
    let id = server.ps("files")[0]["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let env = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Config.Env}}", &id])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&env.stdout).contains("FROM_ENV_FILE=yes"));
    // The secret's value never reaches the server's log.
    assert!(!std::fs::read_to_string(&server.log)
        .unwrap()
        .contains("s3cret-value"));

    // The named volume keeps data across a new revision.
    assert_eq!(
        server.get("/write?path=/data/keep&text=kept").unwrap().0,
        200
    );
    std::fs::write(
        project.join(".env"),
        "GREETING_WORD=salut\nAPP_VERSION=v8\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["apply", "-f", file.to_str().unwrap(), "--app", "files"])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", server.token())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.get("/").unwrap().1.starts_with("v8 "));
    assert_eq!(server.get("/file?path=/data/keep").unwrap().1, "kept");

    // logs --follow streams new output until interrupted.
    let mut follow = std::process::Command::new(bin())
        .args(["logs", "--app", "files", "web", "--follow"])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", server.token())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.contains("listening on port");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = reader.join().unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        lines.iter().any(|l| l.contains("berth-testapp v8")),
        "{lines:?}"
    );

    // rm without --volumes keeps the volume; with --volumes it goes.
    server.ok(&["rm", "--app", "files"]);
    assert_eq!(docker_count(&run, "volume"), 1);
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "files"]);
    assert_eq!(server.get("/file?path=/data/keep").unwrap().1, "kept");
    server.ok(&["rm", "--app", "files", "--volumes"]);
    wait_for(Duration::from_secs(10), "volume removed", || {
        (docker_count(&run, "volume") == 0).then_some(())
    });
}
