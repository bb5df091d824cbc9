//! End-to-end with the real Docker engine: a Compose service with `build:` is built by the
//! server from the context `berth apply` uploads (honouring `.dockerignore`), tagged per
//! revision, pinned by image ID, and answers through the gateway; an unchanged re-apply is a
//! no-op (the layer cache gives the same image), a changed build arg makes a new revision, a
//! rollback brings the old image back, and a broken Dockerfile fails the apply without touching
//! what runs. Images are built `FROM scratch` from the static test binary: nothing is pulled.

mod common;

use berth_testkit::{testapp_binary, wait_for, TestRun};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DOCKERFILE: &str = "\
FROM scratch
ARG VERSION=unset
ENV VERSION=$VERSION
COPY app /app
COPY . /ctx/
EXPOSE 8080
ENTRYPOINT [\"/app\"]
";

fn compose_file(dir: &Path, version: &str) -> String {
    compose(
        dir,
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build:\n      context: .\n      args:\n        VERSION: {version}\n    x-berth:\n      route: {{ path_prefix: / }}\n"
        ),
    )
    .display()
    .to_string()
}

fn image_id(reference: &str) -> String {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "image {reference} is missing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The images a build committed itself, from the build output the CLI showed on stderr: the
/// ` ---> ID` after each step that was neither a cache hit nor a `FROM`.
fn committed_step_images(stderr: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut skip = false;
    for line in stderr.lines().filter_map(|l| l.strip_prefix("web | ")) {
        if let Some(step) = line.strip_prefix("Step ") {
            skip = step.contains(" : FROM ");
            continue;
        }
        match line.trim().strip_prefix("--->").map(str::trim) {
            Some("Using cache") => skip = true,
            Some(id)
                if id.len() >= 12
                    && id.bytes().all(|b| b.is_ascii_hexdigit())
                    && !std::mem::take(&mut skip) =>
            {
                ids.push(id.to_string());
            }
            _ => {}
        }
    }
    ids
}

/// The size the CLI reports for its upload: `... uploading the build context DIR (1.2 MiB)`.
fn uploaded_bytes(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("uploading the build context"))
        .unwrap_or_else(|| panic!("no upload reported: {stderr}"));
    let size = &line[line.rfind('(').unwrap() + 1..line.rfind(')').unwrap()];
    let (n, unit) = size.split_once(' ').unwrap();
    let n: f64 = n.parse().unwrap();
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        other => panic!("unit {other}"),
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a small positive size
    let bytes = (n * scale) as u64;
    bytes
}

fn answers(server: &Server, version: &str) {
    wait_for(
        Duration::from_secs(20),
        &format!("the gateway answers {version}"),
        || {
            let (code, body) = server.get("/").ok()?;
            (code == 200 && body.starts_with(&format!("{version} "))).then_some(())
        },
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one story, step by step
fn compose_build_apply_rebuild_rollback_and_a_failed_build() {
    let run = TestRun::new("compose-build");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::copy(testapp_binary(), proj.join("app")).unwrap();
    std::fs::write(proj.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(proj.join(".dockerignore"), "secret.bin\n*.log\n").unwrap();
    std::fs::write(proj.join("keep.txt"), "kept").unwrap();
    std::fs::write(proj.join("debug.log"), "noise").unwrap();
    // Big and secret: must neither be uploaded nor end up in the image.
    std::fs::write(proj.join("secret.bin"), vec![7u8; 32 << 20]).unwrap();
    let server = Server::start(&run, &data);
    // Image names are global on the engine: an app name of our own.
    let app = format!("cb{}", std::process::id());
    let repo = format!("berth/{app}-web");

    // First apply: built, deployed, answers v1.
    let file = compose_file(&proj, "v1");
    let out = server.cli(&["apply", "-f", &file, "--app", &app]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "apply failed: {stderr}\n{}",
        server.log_tail()
    );
    assert!(
        uploaded_bytes(&stderr) < 16 << 20,
        "the ignored 32 MiB file was uploaded: {stderr}"
    );
    assert!(
        stderr.contains("web | Step 1/"),
        "the build output was not streamed to the CLI: {stderr}"
    );
    answers(&server, "v1");
    let (code, body) = server.get("/file?path=/ctx/keep.txt").unwrap();
    assert_eq!((code, body.as_str()), (200, "kept"));
    for ignored in ["/ctx/secret.bin", "/ctx/debug.log"] {
        let (code, _) = server.get(&format!("/file?path={ignored}")).unwrap();
        assert_eq!(code, 404, "{ignored} is in the image");
    }
    let v1 = image_id(&format!("{repo}:r1"));
    assert_eq!(image_id(&format!("{repo}:latest")), v1);
    assert_eq!(
        server.ps(&app)[0]["image"],
        v1.as_str(),
        "the deployment does not pin the built image ID"
    );
    let labels = Command::new("docker")
        .args([
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"berth.app\"}}",
            &v1,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&labels.stdout).trim(), app);
    assert!(
        std::fs::read_dir(data.join("builds/compose-contexts"))
            .unwrap()
            .next()
            .is_none(),
        "the uploaded context was not removed after the apply"
    );

    // Unchanged: the layer cache gives the same image, so there is no new revision.
    let started = std::time::Instant::now();
    let again = server.ok(&["apply", "-f", &file, "--app", &app]);
    assert!(again.contains("no change (revision 1)"), "{again}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "an unchanged re-apply took {:?}",
        started.elapsed()
    );

    // A new build arg: a new image, revision 2, answers v2.
    let file = compose_file(&proj, "v2");
    server.ok(&["apply", "-f", &file, "--app", &app]);
    answers(&server, "v2");
    let v2 = image_id(&format!("{repo}:r2"));
    assert_ne!(v1, v2);
    assert_eq!(server.ps(&app)[0]["image"], v2.as_str());

    // Rollback: revision 3 runs the image revision 1 built.
    server.ok(&["rollback", "--app", &app]);
    answers(&server, "v1");
    assert_eq!(server.ps(&app)[0]["image"], v1.as_str());

    // A broken Dockerfile fails the apply, names the service and the cause, and leaves v1
    // running with no new revision.
    std::fs::write(
        proj.join("Dockerfile"),
        format!("{DOCKERFILE}COPY not-there /x\n"),
    )
    .unwrap();
    let file = compose_file(&proj, "v3");
    let out = server.cli(&["apply", "-f", &file, "--app", &app]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken build was applied");
    assert!(
        stderr.contains("building service \"web\" failed") && stderr.contains("build_failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("last lines of build output") && stderr.contains("not-there"),
        "no build output in the error: {stderr}"
    );
    // The steps that succeeded before the broken COPY committed images (untagged, unlabelled):
    // the server removed them, so a failed build leaves nothing behind.
    let committed = committed_step_images(&stderr);
    assert!(
        !committed.is_empty(),
        "no committed step image in the build output: {stderr}"
    );
    for id in &committed {
        let out = Command::new("docker")
            .args(["image", "inspect", "-f", "{{.Id}}", id])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the failed build left its step image {id} behind (all: {committed:?})"
        );
    }
    let history: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(&["history", "--app", &app, "--output", "json"])).unwrap();
    assert_eq!(history.len(), 3, "a failed build made a revision");
    for _ in 0..5 {
        let (code, body) = server.get("/").unwrap();
        assert!(code == 200 && body.starts_with("v1 "), "{code} {body}");
    }

    // A missing context or Dockerfile: one line from the CLI, before anything is sent.
    std::fs::write(proj.join("Dockerfile"), DOCKERFILE).unwrap();
    let missing = compose(
        &proj,
        "missing.yaml",
        "services:\n  web:\n    build: ../nowhere\n",
    );
    let out = server.cli(&["apply", "-f", missing.to_str().unwrap(), "--app", &app]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("service web: build context ../nowhere is not a directory"),
        "{stderr}"
    );
    let other = compose(
        &proj,
        "other.yaml",
        "services:\n  web:\n    build: {context: ., dockerfile: Nope.Dockerfile}\n",
    );
    let out = server.cli(&["apply", "-f", other.to_str().unwrap(), "--app", &app]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("service web: Dockerfile Nope.Dockerfile not found"),
        "{stderr}"
    );

    server.ok(&["rm", "--app", &app]);
}
