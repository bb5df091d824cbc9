//! Harness for end-to-end tests of the real `berth` binary against the real Docker engine.
//!
//! Each test gets a [`berth_testkit::TestRun`] (a unique `berth.test` label whose Drop removes
//! every container, network, volume and image carrying it), its own data directory, and its own
//! server on free loopback ports started with `--label berth.test=<run id>`, so everything the
//! server creates is cleaned up even when the test fails.
#![allow(dead_code)]

use berth_testkit::TestRun;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The administrator password of servers the harness starts (so none prints a generated one).
pub const TEST_ADMIN_PASSWORD: &str = "berth-test-admin-password";

pub struct Server {
    pub child: Option<Child>,
    pub api: String,
    pub gateway: String,
    pub data_dir: PathBuf,
    pub label: String,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

impl Server {
    pub fn start(run: &TestRun, data_dir: &Path) -> Server {
        let api = format!("127.0.0.1:{}", free_port());
        let gateway = format!("127.0.0.1:{}", free_port());
        Self::start_on(run, data_dir, &api, &gateway)
    }

    pub fn start_on(run: &TestRun, data_dir: &Path, api: &str, gateway: &str) -> Server {
        Self::start_with(run, data_dir, api, gateway, &[])
    }

    /// Start with extra `berth server` arguments.
    pub fn start_with(
        run: &TestRun,
        data_dir: &Path,
        api: &str,
        gateway: &str,
        extra: &[&str],
    ) -> Server {
        Self::spawn(
            run,
            data_dir,
            api,
            gateway,
            extra,
            Some(TEST_ADMIN_PASSWORD),
            &[],
        )
    }

    /// Start on a data directory without `BERTH_ADMIN_PASSWORD`: a first start prints a
    /// generated password on stderr (the log file).
    pub fn start_generated_admin(run: &TestRun, data_dir: &Path) -> Server {
        let api = format!("127.0.0.1:{}", free_port());
        let gateway = format!("127.0.0.1:{}", free_port());
        Self::spawn(run, data_dir, &api, &gateway, &[], None, &[])
    }

    /// Start with extra `berth server` arguments and environment variables (e.g.
    /// `BERTH_ADMIN_PASSWORD`).
    pub fn start_with_env(
        run: &TestRun,
        data_dir: &Path,
        api: &str,
        gateway: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn(run, data_dir, api, gateway, extra, None, env)
    }

    fn spawn(
        run: &TestRun,
        data_dir: &Path,
        api: &str,
        gateway: &str,
        extra: &[&str],
        admin_password: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let log = data_dir.join(format!("server-{}.log", free_port()));
        Self::spawn_logging_to(
            run,
            data_dir,
            &log,
            api,
            gateway,
            extra,
            admin_password,
            env,
        )
    }

    /// Like [`Server::start_with`], logging to `log` instead of a file in the data directory
    /// (which `--restore` needs empty).
    pub fn start_logging_to(
        run: &TestRun,
        data_dir: &Path,
        log: &Path,
        api: &str,
        gateway: &str,
        extra: &[&str],
    ) -> Server {
        Self::spawn_logging_to(
            run,
            data_dir,
            log,
            api,
            gateway,
            extra,
            Some(TEST_ADMIN_PASSWORD),
            &[],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_logging_to(
        run: &TestRun,
        data_dir: &Path,
        log: &Path,
        api: &str,
        gateway: &str,
        extra: &[&str],
        admin_password: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let label = format!("berth.test={}", run.id);
        let log = log.to_path_buf();
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args([
                "server",
                "--api-listen",
                api,
                "--gateway-listen",
                gateway,
                "--label",
                &label,
            ])
            // Every 2 s unless the test asks for its own period.
            .args(
                (!extra.contains(&"--resync-secs"))
                    .then_some(["--resync-secs", "2"])
                    .into_iter()
                    .flatten(),
            )
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("BERTH_LOG", "info,berth_controlplane=debug")
            .env_remove("BERTH_ADMIN_PASSWORD")
            .envs(admin_password.map(|p| ("BERTH_ADMIN_PASSWORD", p)))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start berth server");
        let s = Server {
            child: Some(child),
            api: api.into(),
            gateway: gateway.into(),
            data_dir: data_dir.into(),
            label,
            log,
        };
        // Up to 60 s: a start on a loaded machine (a CI run's parallel tests, each with its
        // server and containers) once took over 20 s; the log says why if it never answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while berth_testkit::http_get(&s.api, "/api/v1/health", None, Duration::from_secs(1))
            .ok()
            .filter(|(c, _)| *c == 200)
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "berth server did not answer /api/v1/health within 60 s; its log:\n{}",
                s.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The raw helpers (and berth_testkit::http_get) send the local administrator token.
        berth_testkit::register_api_token(&s.api, &s.token_file());
        s
    }

    /// `<data-dir>/admin.token`: the local administrator token the server writes at each start.
    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// The current local administrator token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.token_file())
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// Run a CLI command against this server, as its local administrator: the CLI finds the
    /// server's `admin.token` through `BERTH_DATA_DIR` (docs/access.md).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("BERTH_SERVER", format!("http://{}", self.api))
            .env_remove("BERTH_TOKEN")
            .env("BERTH_DATA_DIR", &self.data_dir)
            .output()
            .expect("run berth CLI")
    }

    /// Run a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn ps(&self, app: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["ps", "--app", app, "--output", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ps json: {e}: {out}"))
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        berth_testkit::http_get(&self.gateway, path, None, Duration::from_secs(5))
    }

    /// kill -9
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Replica containers carrying this run's label (any state), as (name, labels json) via the
/// docker CLI; network holders (`berth.role=holder`) are left out.
pub fn containers(run: &TestRun) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=berth.test={}", run.id),
            "--format",
            "{{.Names}} {{.State}} {{.Label \"berth.hash\"}} {{.Label \"berth.service\"}} {{.Label \"berth.role\"}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(" holder"))
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// This run's objects of a kind: `container` (every container: replicas and their network
/// holders), `replica` (containers that are not holders), `holder`, `network` or `volume`.
pub fn docker_count(run: &TestRun, kind: &str) -> usize {
    let filter = format!("label=berth.test={}", run.id);
    let args: Vec<&str> = match kind {
        "container" | "replica" | "holder" => vec![
            "ps",
            "-a",
            "--filter",
            &filter,
            "--format",
            "{{.ID}} {{.Label \"berth.role\"}}",
        ],
        "network" => vec!["network", "ls", "-q", "--filter", &filter],
        "volume" => vec!["volume", "ls", "-q", "--filter", &filter],
        _ => unreachable!(),
    };
    let out = Command::new("docker").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| match kind {
            "replica" => !l.ends_with(" holder"),
            "holder" => l.ends_with(" holder"),
            _ => true,
        })
        .count()
}

/// Write a compose file into `dir` and return its path.
pub fn compose(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Background load through the gateway: counts successes and failures until stopped.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handles: Vec<std::thread::JoinHandle<LoadResult>>,
}

pub struct LoadResult {
    pub ok: u64,
    pub failures: Vec<String>,
    pub versions: std::collections::BTreeSet<String>,
}

impl Load {
    pub fn start(gateway: &str, path: &str, threads: usize) -> Load {
        Self::start_host(gateway, path, None, threads)
    }

    /// [`Load::start`] with a `Host` header (an environment's routes: `staging.*`).
    pub fn start_host(gateway: &str, path: &str, host: Option<&str>, threads: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles = (0..threads)
            .map(|_| {
                let (stop, gw, path) = (stop.clone(), gateway.to_string(), path.to_string());
                let host = host.map(str::to_string);
                std::thread::spawn(move || {
                    let mut ok = 0;
                    let mut failures = Vec::new();
                    let mut versions = std::collections::BTreeSet::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match berth_testkit::http_get(
                            &gw,
                            &path,
                            host.as_deref(),
                            Duration::from_secs(10),
                        ) {
                            Ok((200, body)) => {
                                ok += 1;
                                if let Some(v) = body.split_whitespace().next() {
                                    versions.insert(v.to_string());
                                }
                            }
                            Ok((code, body)) => failures.push(format!("{code}: {body}")),
                            Err(e) => failures.push(e),
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    LoadResult {
                        ok,
                        failures,
                        versions,
                    }
                })
            })
            .collect();
        Load { stop, handles }
    }

    pub fn finish(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut r = LoadResult {
            ok: 0,
            failures: vec![],
            versions: Default::default(),
        };
        for h in self.handles {
            let one = h.join().unwrap();
            r.ok += one.ok;
            r.failures.extend(one.failures);
            r.versions.extend(one.versions);
        }
        r
    }
}

/// Start `berth gateway --control http://{api} --listen {listen}` and `extra`, its log in
/// `data_dir/gateway-<n>.log`. When the server wrote its local administrator token
/// (`data_dir/admin.token`), the gateway authenticates with it (`--token-file`).
pub fn spawn_gateway(api: &str, data_dir: &Path, listen: &str, extra: &[&str]) -> Child {
    let log = std::fs::File::create(data_dir.join(format!("gateway-{}.log", free_port()))).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "gateway",
        "--control",
        &format!("http://{api}"),
        "--listen",
        listen,
    ]);
    let token = data_dir.join("admin.token");
    if token.exists() {
        cmd.arg("--token-file").arg(token);
    }
    cmd.args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start berth gateway")
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): (status, lowercase head,
/// body). A JSON content type is sent when there is a body, and the API token registered for
/// `addr` unless `headers` has an `Authorization`.
pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        if let Some(t) = berth_testkit::api_token(addr) {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head[9..12].parse().unwrap(),
        head.to_ascii_lowercase(),
        rest.to_string(),
    )
}

/// Lines of the server log that report a failed step: each failed attempt logs exactly one
/// (the first of a kind at warn, its repeats at debug; the harness logs the control plane at
/// debug), so this counts the attempts.
pub fn failed_attempts(server: &Server) -> usize {
    std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("step failed"))
        .count()
}

/// An image Docker refuses to create a container from: no `Cmd`, no `Entrypoint`.
pub fn image_without_command(run: &TestRun) -> String {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "no command here\n").unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    let reference = format!("berth-nocmd:{}", run.id);
    berth_testkit::docker_cli(&[
        "build",
        "--quiet",
        "--no-cache",
        "--label",
        &run.label_filter(),
        "-t",
        &reference,
        ctx.path().to_str().unwrap(),
    ])
    .unwrap();
    reference
}

/// Send `head` (request line and headers, without the blank line) and `body` as is (plus the API
/// token registered for `addr`, unless `head` has an `Authorization`); (status, body). Does not
/// wait for the server to read the body.
pub fn exact(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = head.as_bytes().to_vec();
    if !head.to_ascii_lowercase().contains("\nauthorization:") {
        if let Some(t) = berth_testkit::api_token(addr) {
            req.extend_from_slice(format!("\r\nAuthorization: Bearer {t}").as_bytes());
        }
    }
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    req.extend_from_slice(body);
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = s.write_all(&req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The `code` of a Berth error body (`{code, message, request_id}`); panics on anything else.
pub fn error_code(body: &str) -> String {
    // The body may be chunked; find the JSON object in it.
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |e| e + 1);
    let v: serde_json::Value = serde_json::from_str(&body[start..end])
        .unwrap_or_else(|e| panic!("not a Berth error body ({e}): {body:?}"));
    assert!(
        v["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    v["code"].as_str().unwrap_or_default().to_string()
}

/// One API call on a new connection: the status, the lowercased head and the JSON body
/// (`Null` if none), with `token` as `Authorization: Bearer`.
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, String, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" || !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head[9..12].parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(rest).unwrap_or(serde_json::Value::Null),
    )
}

/// A team `team` (created if needed) with a new member `user` of `role`, and that member's
/// session token: all through the API with the administrator's token.
pub fn team_member(server: &Server, team: &str, user: &str, role: &str) -> String {
    let admin = server.token();
    // The team (it may exist already: several members of one team).
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/teams",
        Some(&admin),
        Some(serde_json::json!({"name": team})),
    );
    assert!(
        status == 201 || body["code"] == "team_exists",
        "create team {team}: {status} {body}"
    );
    let password = format!("{user}-password-for-tests");
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(serde_json::json!({"name": user, "password": password})),
    );
    assert_eq!(status, 201, "create user {user}: {body}");
    let (status, _, body) = call(
        &server.api,
        "POST",
        &format!("/api/v1/teams/{team}/members"),
        Some(&admin),
        Some(serde_json::json!({"user": user, "role": role})),
    );
    assert_eq!(status, 201, "add {user} to {team}: {body}");
    let (status, _, session) = call(
        &server.api,
        "POST",
        "/api/v1/login",
        None,
        Some(serde_json::json!({"user": user, "password": password})),
    );
    assert_eq!(status, 200, "login {user}: {session}");
    session["token"]
        .as_str()
        .expect("a session token")
        .to_string()
}

/// Run a CLI command with `token` (a user's session), not as the local administrator.
pub fn cli_as(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", token)
        .env_remove("BERTH_DATA_DIR")
        .output()
        .expect("run berth CLI")
}

/// [`cli_as`] that must succeed; returns stdout.
pub fn ok_as(server: &Server, token: &str, args: &[&str]) -> String {
    let out = cli_as(server, token, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git ARGS` in `dir` as the author Ada, which must succeed.
pub fn git(dir: &Path, args: &[&str]) {
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
}

/// A CLI run that failed with the error code `code`; its stderr.
pub fn failed_with(out: &Output, code: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded, expected {code}");
    assert!(err.contains(&format!("({code})")), "expected {code}: {err}");
    err
}

/// `text` as JSON, or a panic naming it.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Set service `service`'s webhook secret the way a user does (`berth service webhook-secret`,
/// the secret on stdin).
pub fn set_webhook_secret(server: &Server, service: &str, secret: &[u8]) {
    let mut child = Command::new(bin())
        .args(["service", "webhook-secret", service])
        .env("BERTH_SERVER", format!("http://{}", server.api))
        .env("BERTH_TOKEN", server.token())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), secret).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// Commit a Dockerfile to `repo` (which holds the test app as `app`) whose image answers
/// `version` (`ENV VERSION`): each commit builds a distinct image.
pub fn commit_app_version(repo: &Path, version: &str) {
    std::fs::write(
        repo.join("Dockerfile"),
        format!("FROM scratch\nCOPY app /app\nENV VERSION={version}\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n"),
    )
    .unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", version]);
}

/// Wait until the server has removed every container, network and volume of the run (after
/// `rm` or `env rm`), so the test ends with nothing of its own left behind — the run's cleanup
/// would otherwise race a removal still in progress.
pub fn wait_all_removed(run: &TestRun) {
    berth_testkit::wait_for(Duration::from_secs(90), "the run's objects removed", || {
        ["container", "network", "volume"]
            .iter()
            .all(|k| docker_count(run, k) == 0)
            .then_some(())
    });
}

/// The container that owns replica `id`'s network (its network holder, docs/runtime.md), whose
/// `NetworkSettings` name its networks, addresses and aliases; `id` itself if it has none.
pub fn network_container(id: &str) -> String {
    let mode = berth_testkit::docker_cli(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", id])
        .unwrap_or_default();
    match mode.trim().strip_prefix("container:") {
        Some(holder) => holder.to_string(),
        None => id.to_string(),
    }
}

/// Full ids of the replica containers (not network holders) matching every label filter
/// (`k=v`), running ones only unless `all`.
pub fn replica_ids(all: bool, labels: &[String]) -> Vec<String> {
    let mut args = vec![
        "ps",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Label \"berth.role\"}}",
    ];
    if all {
        args.push("-a");
    }
    let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
    for f in &filters {
        args.extend(["--filter", f.as_str()]);
    }
    berth_testkit::docker_cli(&args)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_end().ends_with(" holder"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}
