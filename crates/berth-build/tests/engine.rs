//! `berth-build` against the real engine and real `git`/`svn` clients.
//!
//! Every Docker object is labelled `berth.test=<run id>` through a `TestRun` (the builder's
//! `labels`, and the imported busybox image), whose drop removes them even when an assertion
//! fails. Sources are local repositories in temp dirs. `run` steps need an image with a shell:
//! it is imported from Debian's `busybox-static` (`/bin/busybox`); tests that need it print a
//! note and pass when it is missing. Subversion tests likewise skip without `svn`/`svnadmin`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_build::{
    BuildConfig, BuildOutcome, BuildRequest, BuildStatus, Builder, CancellationToken, GitSource,
    LogLine, LogStreamKind, Source, SourceLimits, SvnSource,
};
use berth_docker::Docker;
use berth_testkit::{busybox_image, docker_cli, TestRun};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A Git repository in a temp dir holding `files`, committed on `main`.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "init"]);
    dir
}

fn builder(docker: Docker, run: &TestRun) -> Builder {
    Builder::new(
        docker,
        BuildConfig {
            labels: [run.label()].into(),
            step_timeout: Duration::from_secs(120),
            ..BuildConfig::default()
        },
    )
}

fn git_request(run: &TestRun, url: &str) -> BuildRequest {
    BuildRequest {
        service: run.id.clone(),
        source: Source::Git(GitSource {
            url: url.to_string(),
            branch: None,
            path: None,
        }),
        secrets: BTreeMap::new(),
    }
}

/// Runs a build, collecting its log lines.
async fn build(
    b: &Builder,
    req: &BuildRequest,
    cancel: &CancellationToken,
) -> (BuildOutcome, Vec<LogLine>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let on_log = move |l: LogLine| sink.lock().unwrap().push(l);
    let outcome = b.build(req, &on_log, cancel).await;
    let lines = lines.lock().unwrap().clone();
    (outcome, lines)
}

fn log_text(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| format!("[{}:{:?}] {}", l.step, l.stream, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

fn leftover_containers(run: &TestRun) -> String {
    docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label={}", run.label_filter()),
    ])
    .unwrap()
}

fn images_of(repo: &str) -> String {
    docker_cli(&["images", "-q", repo]).unwrap()
}

async fn docker() -> Docker {
    Docker::connect().await.expect("a Docker engine")
}

fn pipeline(busybox: &str, test_cmds: &str) -> String {
    format!(
        "steps:\n  - name: test\n    image: {busybox}\n    run: {test_cmds}\n    env: {{ GREETING: hello }}\n  - name: image\n    build: {{ dockerfile: Dockerfile }}\n"
    )
}

#[tokio::test]
async fn two_step_pipeline_yields_a_version_with_the_image_id() {
    let run = TestRun::new("build-two-step");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY app.txt out.txt /\n"),
        ("app.txt", "the app\n"),
        (
            "berth.pipeline.yaml",
            &pipeline(
                &bb,
                r#"["echo $GREETING from test", "test -f app.txt", "pwd", "echo produced > out.txt"]"#,
            ),
        ),
    ]);
    let commit = git(src.path(), &["rev-parse", "HEAD"]);
    let b = builder(docker().await, &run);
    let req = git_request(&run, &src.path().to_string_lossy());
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    let log = log_text(&lines);
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{log}");
    let v = outcome.version.expect("a version");
    assert_eq!(v.name, commit[..12]);
    assert_eq!(v.commit, commit);
    assert_eq!(v.author, "Ada <ada@example.com>");
    assert!(v.time.is_some());
    assert_eq!(v.tag, format!("berth/{}:{}", run.id, &commit[..12]));
    let inspected = docker_cli(&["image", "inspect", "--format", "{{.Id}}", &v.tag]).unwrap();
    assert_eq!(v.digest, inspected.trim());
    assert_eq!(outcome.steps.len(), 2);
    assert_eq!(outcome.steps[0].name, "test");
    assert_eq!(outcome.steps[0].exit_code, Some(0));
    assert_eq!(outcome.steps[1].name, "image");
    // Live output, per step and stream.
    assert!(
        lines.iter().any(|l| l.step == "test"
            && l.stream == LogStreamKind::Stdout
            && l.text == "hello from test"),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.step == "test" && l.text == "/workspace"),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.step == "image" && l.text.contains("COPY app.txt out.txt /")),
        "{log}"
    );
    // The file the test step wrote into the workspace made it into the image.
    let files = image_files(&run, &v.tag);
    assert!(files.contains(&"out.txt".to_string()), "{files:?}");
    assert!(leftover_containers(&run).trim().is_empty());

    // A second build of the same commit reuses the engine's layer cache: same image ID.
    let (again, lines) = build(&b, &req, &CancellationToken::new()).await;
    assert_eq!(again.status, BuildStatus::Succeeded, "{}", log_text(&lines));
    assert_eq!(again.version.unwrap().digest, v.digest);
}

/// The files of an image (via `docker create` + `docker export`), labelled with the run.
fn image_files(run: &TestRun, image: &str) -> Vec<String> {
    let id = docker_cli(&["create", "--label", &run.label_filter(), image, "/none"]).unwrap();
    let id = id.trim();
    let out = Command::new("docker")
        .args(["export", id])
        .output()
        .unwrap();
    let _ = docker_cli(&["rm", "-f", id]);
    assert!(out.status.success());
    berth_build::tar_paths(&out.stdout)
        .unwrap()
        .into_iter()
        .filter(|p| {
            p != ".dockerenv"
                && !["dev", "etc", "proc", "sys"]
                    .iter()
                    .any(|d| p == d || p.starts_with(&format!("{d}/")))
        })
        .collect()
}

#[tokio::test]
async fn failing_test_step_yields_no_version_and_no_image() {
    let run = TestRun::new("build-failing");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY app.txt /\n"),
        ("app.txt", "x"),
        (
            "berth.pipeline.yaml",
            &pipeline(&bb, r#"["echo before", "exit 3", "echo never"]"#),
        ),
    ]);
    let b = builder(docker().await, &run);
    let req = git_request(&run, &src.path().to_string_lossy());
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    let log = log_text(&lines);
    assert!(
        matches!(&outcome.status, BuildStatus::Failed { step, reason } if step == "test" && reason.contains("code 3")),
        "{:?}\n{log}",
        outcome.status
    );
    assert!(outcome.version.is_none());
    assert_eq!(outcome.steps.len(), 1);
    assert_eq!(outcome.steps[0].exit_code, Some(3));
    assert!(log.contains("before") && !log.contains("] never"), "{log}");
    assert!(images_of(&format!("berth/{}", run.id)).trim().is_empty());
    assert!(leftover_containers(&run).trim().is_empty());
}

#[tokio::test]
async fn failing_image_build_leaves_no_image() {
    let run = TestRun::new("build-bad-dockerfile");
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY missing.txt /\n"),
        ("app.txt", "x"),
    ]);
    let b = builder(docker().await, &run);
    let req = git_request(&run, &src.path().to_string_lossy());
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    assert!(
        matches!(&outcome.status, BuildStatus::Failed { step, reason } if step == "build" && reason.contains("missing.txt")),
        "{:?}\n{}",
        outcome.status,
        log_text(&lines)
    );
    assert!(outcome.version.is_none());
    assert!(images_of(&format!("berth/{}", run.id)).trim().is_empty());
}

#[tokio::test]
async fn tagged_head_names_the_version_and_dockerignore_is_honoured() {
    let run = TestRun::new("build-tagged");
    // No pipeline file: the default pipeline builds the Dockerfile.
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY . /\n"),
        (".dockerignore", "secret.txt\nlogs/\n*.tmp\n!keep.tmp\n"),
        ("app.txt", "app"),
        ("secret.txt", "do not ship"),
        ("logs/a.log", "noise"),
        ("x.tmp", "tmp"),
        ("keep.tmp", "kept"),
    ]);
    git(src.path(), &["tag", "v1.2.0"]);
    let url = format!("file://{}", src.path().display());
    let b = builder(docker().await, &run);
    let mut req = git_request(&run, &url);
    if let Source::Git(g) = &mut req.source {
        g.branch = Some("main".into());
    }
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Succeeded,
        "{}",
        log_text(&lines)
    );
    let v = outcome.version.unwrap();
    assert_eq!(v.name, "v1.2.0");
    assert_eq!(v.tag, format!("berth/{}:v1.2.0", run.id));
    assert_eq!(outcome.revision.unwrap().tag.as_deref(), Some("v1.2.0"));
    let mut files = image_files(&run, &v.tag);
    files.retain(|f| !f.starts_with(".git"));
    files.sort();
    assert_eq!(
        files,
        vec![".dockerignore", "Dockerfile", "app.txt", "keep.tmp"],
        "ignored files must not reach the image"
    );
}

#[tokio::test]
async fn secrets_reach_run_steps_masked_and_never_the_image() {
    let run = TestRun::new("build-secrets");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let secret = "s3cr3t-value-4242";
    let src = repo(&[
        (
            "Dockerfile",
            "FROM scratch\nARG TOKEN\nLABEL token=\"${TOKEN}\"\nCOPY app.txt /\n",
        ),
        ("app.txt", "x"),
        (
            "berth.pipeline.yaml",
            &pipeline(
                &bb,
                r#"["echo token=$TOKEN", "echo $TOKEN >&2", "test -n \"$TOKEN\""]"#,
            ),
        ),
    ]);
    let b = builder(docker().await, &run);
    let mut req = git_request(&run, &src.path().to_string_lossy());
    req.secrets.insert("TOKEN".into(), secret.into());
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    let log = log_text(&lines);
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{log}");
    assert!(!log.contains(secret), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStreamKind::Stdout && l.text == "token=***"),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStreamKind::Stderr && l.text == "***"),
        "{log}"
    );
    let tag = outcome.version.unwrap().tag;
    let history = docker_cli(&["history", "--no-trunc", &tag]).unwrap();
    let inspect = docker_cli(&["image", "inspect", &tag]).unwrap();
    assert!(
        !history.contains(secret) && !inspect.contains(secret),
        "{history}"
    );
}

#[tokio::test]
async fn cancellation_stops_the_running_step() {
    let run = TestRun::new("build-cancel");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY app.txt /\n"),
        ("app.txt", "x"),
        (
            "berth.pipeline.yaml",
            &pipeline(&bb, r#"["echo sleeping", "sleep 60"]"#),
        ),
    ]);
    let b = builder(docker().await, &run);
    let req = git_request(&run, &src.path().to_string_lossy());
    let cancel = CancellationToken::new();
    let lines = Arc::new(Mutex::new(Vec::<LogLine>::new()));
    let (sink, trigger) = (lines.clone(), cancel.clone());
    // Cancel as soon as the step is visibly running.
    let on_log = move |l: LogLine| {
        if l.text == "sleeping" {
            trigger.cancel();
        }
        sink.lock().unwrap().push(l);
    };
    let started = Instant::now();
    let outcome = b.build(&req, &on_log, &cancel).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Cancelled,
        "{}",
        log_text(&lines.lock().unwrap())
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(outcome.version.is_none());
    assert!(leftover_containers(&run).trim().is_empty());
    assert!(images_of(&format!("berth/{}", run.id)).trim().is_empty());
}

#[tokio::test]
async fn step_timeout_kills_the_step() {
    let run = TestRun::new("build-timeout");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let text = format!(
        "steps:\n  - name: slow\n    image: {bb}\n    run: [\"sleep 60\"]\n    timeout: 1s\n  - name: image\n    build: {{}}\n"
    );
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY app.txt /\n"),
        ("app.txt", "x"),
        ("berth.pipeline.yaml", &text),
    ]);
    let b = builder(docker().await, &run);
    let req = git_request(&run, &src.path().to_string_lossy());
    let started = Instant::now();
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    assert!(
        matches!(&outcome.status, BuildStatus::Failed { step, reason } if step == "slow" && reason.contains("timed out")),
        "{:?}\n{}",
        outcome.status,
        log_text(&lines)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(leftover_containers(&run).trim().is_empty());
}

#[tokio::test]
async fn missing_step_image_is_not_pulled() {
    let run = TestRun::new("build-no-image");
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY app.txt /\n"),
        ("app.txt", "x"),
        (
            "berth.pipeline.yaml",
            &pipeline(&format!("berth-absent-{}:none", run.id), r#"["true"]"#),
        ),
    ]);
    let b = builder(docker().await, &run);
    let req = git_request(&run, &src.path().to_string_lossy());
    let (outcome, _) = build(&b, &req, &CancellationToken::new()).await;
    assert!(
        matches!(&outcome.status, BuildStatus::Failed { step, reason } if step == "test" && reason.contains("never pulls")),
        "{:?}",
        outcome.status
    );
}

#[tokio::test]
async fn bad_sources_are_refused_before_anything_runs() {
    let run = TestRun::new("build-bad-urls");
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let b = builder(docker().await, &run);
    let src = repo(&[("Dockerfile", "FROM scratch\n")]);
    let good = src.path().to_string_lossy().into_owned();
    let cases: Vec<(String, Option<String>)> = vec![
        (format!("ext::sh -c touch% {}", pwned.display()), None),
        ("-uoption".into(), None),
        (format!("--upload-pack=touch {}", pwned.display()), None),
        ("git://example.com/x".into(), None),
        (
            good.clone(),
            Some(format!("--upload-pack=touch {}", pwned.display())),
        ),
        (good, Some("-b".into())),
    ];
    for (url, branch) in cases {
        let mut req = git_request(&run, &url);
        if let Source::Git(g) = &mut req.source {
            g.branch.clone_from(&branch);
        }
        let (outcome, _) = build(&b, &req, &CancellationToken::new()).await;
        assert!(
            matches!(&outcome.status, BuildStatus::Failed { step, reason } if step == "checkout" && reason.contains("refused")),
            "{url} {branch:?}: {:?}",
            outcome.status
        );
    }
    assert!(!pwned.exists());
}

#[tokio::test]
async fn checkout_over_the_size_limit_fails_cleanly() {
    let run = TestRun::new("build-too-big");
    let src = repo(&[
        ("Dockerfile", "FROM scratch\n"),
        ("big.bin", &"x".repeat(100_000)),
    ]);
    let b = Builder::new(
        docker().await,
        BuildConfig {
            labels: [run.label()].into(),
            source_limits: SourceLimits {
                timeout: Duration::from_secs(60),
                max_bytes: 50_000,
            },
            ..BuildConfig::default()
        },
    );
    let req = git_request(&run, &src.path().to_string_lossy());
    let (outcome, _) = build(&b, &req, &CancellationToken::new()).await;
    assert!(
        matches!(&outcome.status, BuildStatus::Failed { step, reason } if step == "checkout" && reason.contains("larger than the limit")),
        "{:?}",
        outcome.status
    );
}

#[tokio::test]
async fn git_subdirectory_is_the_build_root() {
    let run = TestRun::new("build-subdir");
    let src = repo(&[
        ("Dockerfile", "FROM scratch\nCOPY root-only.txt /\n"),
        ("root-only.txt", "x"),
        ("svc/Dockerfile", "FROM scratch\nCOPY svc.txt /\n"),
        ("svc/svc.txt", "y"),
    ]);
    let b = builder(docker().await, &run);
    let mut req = git_request(&run, &src.path().to_string_lossy());
    if let Source::Git(g) = &mut req.source {
        g.path = Some("svc".into());
    }
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Succeeded,
        "{}",
        log_text(&lines)
    );
    let files = image_files(&run, &outcome.version.unwrap().tag);
    assert_eq!(files, vec!["svc.txt"]);
}

#[tokio::test]
async fn subversion_source_builds_at_head() {
    let have = |p: &str| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("svn") || !have("svnadmin") {
        eprintln!("NOTE: svn/svnadmin missing (apt-get install subversion): test skipped");
        return;
    }
    let run = TestRun::new("build-svn");
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("repo");
    let import = dir.path().join("import");
    std::fs::create_dir_all(&import).unwrap();
    std::fs::write(import.join("Dockerfile"), "FROM scratch\nCOPY app.txt /\n").unwrap();
    std::fs::write(import.join("app.txt"), "svn").unwrap();
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new("svnadmin").arg("create").arg(&repo_path));
    let url = format!("file://{}/trunk", repo_path.display());
    ok(Command::new("svn")
        .args([
            "import",
            "--quiet",
            "--non-interactive",
            "--username",
            "ada",
            "-m",
            "init",
        ])
        .arg(&import)
        .arg(&url));
    let b = builder(docker().await, &run);
    let req = BuildRequest {
        service: run.id.clone(),
        source: Source::Svn(SvnSource { url }),
        secrets: BTreeMap::new(),
    };
    let (outcome, lines) = build(&b, &req, &CancellationToken::new()).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Succeeded,
        "{}",
        log_text(&lines)
    );
    let v = outcome.version.unwrap();
    assert_eq!(v.name, "r1");
    assert_eq!(v.commit, "1");
    assert_eq!(v.author, "ada");
    assert!(v.time.is_some());
    assert_eq!(image_files(&run, &v.tag), vec!["app.txt"]);
}

/// Berth's labels arrive as one LABEL step (not one per label), land on the image, and the
/// generated Dockerfile and `.dockerignore` never reach the image's files.
#[tokio::test]
async fn labels_are_one_step_and_the_generated_dockerfile_stays_out_of_the_image() {
    let run = TestRun::new("build-labels");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let src = repo(&[
        (
            "Dockerfile",
            &format!("FROM {bb}\nCOPY . /ctx/\nRUN ls -a /ctx > /listing\n"),
        ),
        ("app.txt", "hello"),
    ]);
    let docker = docker().await;
    let b = builder(docker.clone(), &run);
    let (outcome, lines) = build(
        &b,
        &git_request(&run, src.path().to_str().unwrap()),
        &CancellationToken::new(),
    )
    .await;
    let log = log_text(&lines);
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{log}");
    assert_eq!(
        log.matches(" : LABEL ").count(),
        1,
        "labels are not one step:\n{log}"
    );
    let v = outcome.version.unwrap();
    let image = docker.inspect_image(&v.tag).await.unwrap().unwrap();
    for key in [
        "berth.test",
        "berth.service",
        "berth.version",
        "berth.commit",
    ] {
        assert!(image.labels.contains_key(key), "{key}: {:?}", image.labels);
    }
    assert_eq!(image.labels["berth.commit"], v.commit);
    // The image's files are the context's own: run it and list /ctx.
    let name = run.name("ls");
    docker_cli(&[
        "run",
        "--name",
        &name,
        "--label",
        &run.label_filter(),
        &v.tag,
        "cat",
        "/listing",
    ])
    .map(|out| {
        assert!(
            out.contains("app.txt") && out.contains("Dockerfile"),
            "{out}"
        );
        assert!(
            !out.contains(".berth.Dockerfile") && !out.contains(".dockerignore"),
            "{out}"
        );
    })
    .unwrap();
    let _ = docker_cli(&["rmi", "-f", &v.tag]);
}

/// A rebuild of an unchanged source skips the checkout and sends the last context again (same
/// image); a new commit or a new tag at the commit goes the whole way again.
#[tokio::test]
async fn an_unchanged_source_is_rebuilt_without_a_checkout() {
    let run = TestRun::new("build-warm");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let src = repo(&[
        ("Dockerfile", &format!("FROM {bb}\nCOPY app.txt /app.txt\n")),
        ("app.txt", "one"),
    ]);
    let docker = docker().await;
    let b = builder(docker.clone(), &run);
    let req = git_request(&run, src.path().to_str().unwrap());
    let cancel = CancellationToken::new();
    let (first, lines) = build(&b, &req, &cancel).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{}", log_text(&lines));
    assert!(!log_text(&lines).contains("no checkout"));
    let (second, lines) = build(&b, &req, &cancel).await;
    let log = log_text(&lines);
    assert_eq!(second.status, BuildStatus::Succeeded, "{log}");
    assert!(log.contains("no checkout"), "{log}");
    let (v1, v2) = (first.version.unwrap(), second.version.unwrap());
    assert_eq!((&v1.name, &v1.digest), (&v2.name, &v2.digest));
    assert_eq!(second.revision.unwrap().commit, v1.commit);

    // A tag at the same commit: checked out again, and the version takes the tag's name.
    git(src.path(), &["tag", "v9"]);
    let (tagged, lines) = build(&b, &req, &cancel).await;
    let log = log_text(&lines);
    assert!(!log.contains("no checkout"), "{log}");
    assert_eq!(tagged.version.as_ref().unwrap().name, "v9");
    // A new commit: checked out again, a new image.
    std::fs::write(src.path().join("app.txt"), "two").unwrap();
    git(src.path(), &["commit", "-q", "-am", "two"]);
    let (changed, lines) = build(&b, &req, &cancel).await;
    let log = log_text(&lines);
    assert!(!log.contains("no checkout"), "{log}");
    let v3 = changed.version.unwrap();
    assert_ne!(v3.digest, v1.digest);
    for v in [&v1.tag, &tagged.version.unwrap().tag, &v3.tag] {
        let _ = docker_cli(&["rmi", "-f", v]);
    }
}

/// A warm rebuild has no checkout: its contract and README are the ones the service's own
/// build read, never files of the shared work root (where other services' trees are).
#[tokio::test]
async fn a_warm_rebuild_reads_nothing_outside_its_own_tree() {
    let run = TestRun::new("build-warm-own");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let contract = r#"{"openapi": "3.0.3", "paths": {"/mine": {"get": {"responses": {"200": {"description": "ok"}}}}}}"#;
    let src = repo(&[
        ("Dockerfile", &format!("FROM {bb}\nCOPY app.txt /app.txt\n")),
        ("app.txt", "one"),
        ("README.md", "# mine"),
        ("api.json", contract),
        (
            "berth.pipeline.yaml",
            "contract: api.json\nsteps:\n  - name: image\n    build: { dockerfile: Dockerfile }\n",
        ),
    ]);
    // Another team's files, where a build that read the work root itself would find them.
    let work_root = tempfile::tempdir().unwrap();
    let theirs = r#"{"openapi": "3.0.3", "paths": {"/theirs": {"get": {"responses": {"200": {"description": "secret"}}}}}}"#;
    std::fs::write(work_root.path().join("api.json"), theirs).unwrap();
    std::fs::write(work_root.path().join("README.md"), "# theirs").unwrap();
    let b = Builder::new(
        docker().await,
        BuildConfig {
            labels: [run.label()].into(),
            step_timeout: Duration::from_secs(120),
            work_root: work_root.path().to_path_buf(),
            ..BuildConfig::default()
        },
    );
    let req = git_request(&run, src.path().to_str().unwrap());
    let cancel = CancellationToken::new();
    let (first, lines) = build(&b, &req, &cancel).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{}", log_text(&lines));
    assert!(first.contract.as_deref().unwrap().contains("/mine"));
    assert_eq!(first.readme.as_deref(), Some("# mine"));
    let (second, lines) = build(&b, &req, &cancel).await;
    let log = log_text(&lines);
    assert_eq!(second.status, BuildStatus::Succeeded, "{log}");
    assert!(log.contains("no checkout"), "{log}");
    assert_eq!(second.contract, first.contract, "{log}");
    assert_eq!(second.readme, first.readme, "{log}");
    let _ = docker_cli(&["rmi", "-f", &first.version.unwrap().tag]);
}

/// With kept trees, a new commit updates the service's tree in place; a pipeline with a `run`
/// step gets the tree mounted, so the tree is dropped after it and the next build clones again.
#[tokio::test]
async fn kept_tree_is_updated_in_place_and_dropped_after_run_steps() {
    let run = TestRun::new("build-kept");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let src = repo(&[
        ("Dockerfile", &format!("FROM {bb}\nCOPY app.txt /app.txt\n")),
        ("app.txt", "one"),
    ]);
    let b = Builder::new(
        docker().await,
        BuildConfig {
            work_root: work.path().to_path_buf(),
            labels: [run.label()].into(),
            step_timeout: Duration::from_secs(120),
            keep_trees: true,
            ..BuildConfig::default()
        },
    );
    let req = git_request(&run, src.path().to_str().unwrap());
    let cancel = CancellationToken::new();
    let trees = || std::fs::read_dir(work.path().join("trees")).map_or(0, Iterator::count);
    let mut tags = Vec::new();
    let (first, lines) = build(&b, &req, &cancel).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{}", log_text(&lines));
    assert!(!log_text(&lines).contains("kept tree"));
    assert_eq!(trees(), 1);
    tags.push(first.version.unwrap().tag);

    std::fs::write(src.path().join("app.txt"), "two").unwrap();
    std::fs::write(src.path().join("new.txt"), "new").unwrap();
    git(src.path(), &["add", "-A"]);
    git(src.path(), &["commit", "-q", "-m", "two"]);
    let (second, lines) = build(&b, &req, &cancel).await;
    let log = log_text(&lines);
    assert_eq!(second.status, BuildStatus::Succeeded, "{log}");
    assert!(log.contains("(the kept tree, updated)"), "{log}");
    let v2 = second.version.unwrap();
    assert_eq!(v2.commit, git(src.path(), &["rev-parse", "HEAD"]));
    let tree = std::fs::read_dir(work.path().join("trees"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("src");
    assert_eq!(
        std::fs::read_to_string(tree.join("app.txt")).unwrap(),
        "two"
    );
    tags.push(v2.tag);

    // A file the last build left in the tree is cleaned away; a run step drops the tree.
    std::fs::write(tree.join("stray.txt"), "x").unwrap();
    std::fs::write(
        src.path().join("berth.pipeline.yaml"),
        pipeline(&bb, "[\"test ! -e stray.txt\"]"),
    )
    .unwrap();
    git(src.path(), &["add", "-A"]);
    git(src.path(), &["commit", "-q", "-m", "pipeline"]);
    let (third, lines) = build(&b, &req, &cancel).await;
    let log = log_text(&lines);
    assert_eq!(third.status, BuildStatus::Succeeded, "{log}");
    assert!(log.contains("(the kept tree, updated)"), "{log}");
    assert_eq!(trees(), 0, "a tree that run steps had mounted was kept");
    tags.push(third.version.unwrap().tag);
    let (fourth, lines) = build(&b, &req, &cancel).await;
    assert_eq!(
        fourth.status,
        BuildStatus::Succeeded,
        "{}",
        log_text(&lines)
    );
    assert!(!log_text(&lines).contains("kept tree"));
    for t in tags {
        let _ = docker_cli(&["rmi", "-f", &t]);
    }
}

/// A failed build removes the step images it committed, but never a tagged image, whatever its
/// output says: a `RUN` step printing ` ---> <ID of a tagged image>` (the engine's own marker of
/// a committed step) must not get that image removed.
#[tokio::test]
async fn a_failed_build_never_removes_a_tagged_image_its_output_names() {
    let run = TestRun::new("build-spoof");
    let Some(bb) = busybox_image(&run) else {
        return;
    };
    let docker = docker().await;
    let id = docker.inspect_image(&bb).await.unwrap().unwrap().id;
    let short = &id.trim_start_matches("sha256:")[..12];
    let dockerfile = format!("FROM {bb}\nRUN echo ' ---> {short}' && false\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let params = berth_docker::BuildParams {
        labels: BTreeMap::from([("berth.test".to_string(), run.id.clone())]),
        ..Default::default()
    };
    let built = berth_build::build_image(&docker, tar.into_inner().unwrap(), &params, |_| {}).await;
    assert!(built.is_err(), "the build was meant to fail");
    assert!(
        docker.inspect_image(&bb).await.unwrap().is_some(),
        "the tagged image the build's output named was removed"
    );
}
