//! The client commands.

use crate::client::{ApiFailure, Client};
use crate::{
    ApplyArgs, BuildsCommand, Command, ImageCommand, IssuerCommand, OutputArgs, SecretCommand,
    ServiceCommand, TokenCommand,
};
use anyhow::{anyhow, bail, Context};
use berth_core::api::{ApplyRequest, IssuerRequest, RollbackRequest, ScaleRequest, TokenRequest};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) async fn run(client: &Client, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Server(_) | Command::Gateway(_) => bail!("handled by the binary"),
        Command::Login(_)
        | Command::Logout
        | Command::Whoami(_)
        | Command::User(_)
        | Command::Team(_)
        | Command::Env(_)
        | Command::Release { .. }
        | Command::Deploy { .. }
        | Command::Ports { .. }
        | Command::ApiToken(_)
        | Command::Audit(_)
        | Command::Admission(_)
        | Command::Submit { .. }
        | Command::Review(_)
        | Command::Approve { .. }
        | Command::Reject { .. }
        | Command::Publish { .. }
        | Command::Deprecate { .. }
        | Command::Retire { .. }
        | Command::Market(_)
        | Command::Subscribe { .. }
        | Command::Unsubscribe { .. }
        | Command::Subscriptions { .. }
        | Command::Upgrade { .. }
        | Command::App(_) => bail!("handled in cmd/"),
        Command::Apply(args) => apply(client, args).await,
        Command::Apps(out) => {
            let apps = client.apps().await?;
            print_list(
                &out,
                &apps,
                &["APP", "REVISION", "STATUS", "HEALTH", "SERVICES", "PROBLEM"],
                |a| {
                    vec![
                        a.name.clone(),
                        a.revision.to_string(),
                        a.revision_status.clone(),
                        a.health.clone(),
                        a.services.to_string(),
                        a.problem.clone().unwrap_or_default(),
                    ]
                },
            );
            Ok(0)
        }
        Command::Ps { app, output } => {
            let list = client.ps(&app).await?;
            // Replicas on a cluster's nodes (the Swarm runtime): a NODE column after CONTAINER.
            let nodes = list.iter().any(|i| i.node.is_some());
            let mut header = vec!["REPLICA", "CONTAINER"];
            if nodes {
                header.push("NODE");
            }
            header.extend([
                "STATE", "HEALTH", "ADDRESS", "REV", "RESTARTS", "EXIT", "ROTATION",
            ]);
            print_list(&output, &list, &header, |i| {
                let mut row = vec![
                    format!("{}.{}", i.service, i.slot),
                    i.container_id.chars().take(12).collect(),
                ];
                if nodes {
                    row.push(i.node.clone().unwrap_or_default());
                }
                row.extend([
                    i.state.clone(),
                    i.health.clone(),
                    i.address.clone(),
                    i.revision.to_string(),
                    i.restarts.to_string(),
                    i.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    if i.draining {
                        "draining".into()
                    } else if i.in_rotation {
                        "yes".into()
                    } else {
                        "-".into()
                    },
                ]);
                row
            });
            // A slot with no container (its create keeps failing) has no row: say why.
            if !json(&output) {
                if let Ok(st) = client.status(&app).await {
                    for s in &st.services {
                        if let Some(p) = &s.problem {
                            outln!("problem: {}: {p}", s.name);
                        }
                    }
                }
            }
            Ok(0)
        }
        Command::Scale {
            app,
            replicas,
            detach,
        } => {
            let mut req = ScaleRequest::default();
            for pair in replicas {
                let (svc, n) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow!("expected SERVICE=N, got {pair:?}"))?;
                let n: u32 = n
                    .parse()
                    .map_err(|_| anyhow!("{pair:?}: the replica count must be a whole number"))?;
                req.replicas.insert(svc.to_string(), n);
            }
            let created = client.scale(&app, &req).await?;
            report_created(&created);
            if detach || !created.changed {
                return Ok(0);
            }
            wait(client, &app, created.revision, Duration::from_secs(300)).await
        }
        Command::Logs {
            app,
            service,
            follow,
            tail,
            timestamps,
        } => {
            copy_stream(
                client
                    .logs(&app, &service, follow, tail, timestamps)
                    .await?,
            )
            .await?;
            Ok(0)
        }
        Command::History { app, output } => {
            let revs = client.history(&app).await?;
            print_list(
                &output,
                &revs,
                &["REVISION", "CREATED", "SOURCE", "OUTCOME", "CHANGE"],
                |r| {
                    let outcome = if r.message.is_empty() {
                        r.status.clone()
                    } else {
                        format!("{}: {}", r.status, r.message)
                    };
                    vec![
                        r.revision.to_string(),
                        r.created_at.clone(),
                        r.source.clone(),
                        outcome,
                        r.change.clone(),
                    ]
                },
            );
            Ok(0)
        }
        Command::Rollback { app, to, detach } => {
            let created = client.rollback(&app, &RollbackRequest { to }).await?;
            report_created(&created);
            if detach {
                return Ok(0);
            }
            wait(client, &app, created.revision, Duration::from_secs(300)).await
        }
        Command::Service(ServiceCommand::Create {
            name,
            git,
            branch,
            path,
            svn,
            poll,
            preview_app,
            preview_ttl,
        }) => {
            let poll_secs = poll
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| d.as_secs());
            let v = client
                .create_service(&berth_core::api::ServiceRequest {
                    name,
                    git,
                    branch,
                    path,
                    svn,
                    poll_secs,
                    preview_app,
                    preview_ttl,
                })
                .await?;
            outln!("service {} registered ({})", v.name, v.source);
            Ok(0)
        }
        Command::Service(ServiceCommand::Ls(out)) => {
            let list = client.services().await?;
            print_list(&out, &list, &["SERVICE", "SOURCE", "CREATED"], |s| {
                vec![s.name.clone(), s.source.to_string(), s.created_at.clone()]
            });
            Ok(0)
        }
        Command::Service(ServiceCommand::Rm { name }) => {
            let r = client.remove_service(&name).await?;
            outln!(
                "service {} removed ({} version(s){})",
                r.name,
                r.versions,
                if r.cancelled_builds.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", build(s) {} cancelled",
                        r.cancelled_builds
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            for image in &r.images_removed {
                outln!("image {image} removed");
            }
            for image in &r.images_kept {
                outln!("image {image} kept");
            }
            Ok(0)
        }
        Command::Images { name, output } => {
            let list = client.images(name.as_deref()).await?;
            print_list(
                &output,
                &list,
                &[
                    "IMAGE",
                    "DIGEST",
                    "SIZE",
                    "STATE",
                    "BUILT",
                    "DEPLOYED",
                    "ROLLBACK TARGET",
                ],
                |i| {
                    vec![
                        i.tag.clone(),
                        i.digest.chars().take(19).collect(),
                        i.size.map_or_else(
                            || "(not on engine)".to_string(),
                            |b| format!("{:.1} MB", b as f64 / 1e6),
                        ),
                        i.state.clone(),
                        i.created_at.clone(),
                        if i.deployed { "yes".into() } else { "-".into() },
                        if i.rollback_target {
                            "yes".into()
                        } else {
                            "-".into()
                        },
                    ]
                },
            );
            Ok(0)
        }
        Command::Nodes { output } => {
            let list = client.nodes().await?;
            print_list(
                &output,
                &list,
                &[
                    "ID",
                    "HOSTNAME",
                    "STATE",
                    "AVAILABILITY",
                    "ROLE",
                    "TASKS",
                    "ENGINE",
                    "ADDRESS",
                ],
                |n| {
                    vec![
                        n.id.chars().take(12).collect(),
                        n.hostname.clone(),
                        n.state.clone(),
                        n.availability.clone(),
                        if n.leader {
                            format!("{} (leader)", n.role)
                        } else {
                            n.role.clone()
                        },
                        n.tasks.to_string(),
                        n.engine_version.clone(),
                        n.address.clone(),
                    ]
                },
            );
            Ok(0)
        }
        Command::Events { follow, output } => events(client, follow, &output).await,
        Command::Admin(crate::AdminCommand::Backup { output }) => {
            crate::admin::backup(client, &output).await
        }
        Command::Image(ImageCommand::Archive { reference, output }) => {
            let (service, version) = reference
                .split_once(':')
                .ok_or_else(|| anyhow!("{reference:?}: expected SERVICE:VERSION"))?;
            let tar = client.archive_image(service, version).await?;
            std::fs::write(&output, &tar)
                .with_context(|| format!("cannot write {}", output.display()))?;
            outln!(
                "{reference} archived to {} ({} bytes)",
                output.display(),
                tar.len()
            );
            Ok(0)
        }
        Command::Image(ImageCommand::Restore { file }) => {
            let tar =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let r = client.restore_image(tar).await?;
            outln!("{}", r["restored"].as_str().unwrap_or("restored"));
            Ok(0)
        }
        Command::Service(ServiceCommand::WebhookSecret { name }) => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("cannot read the secret from stdin")?;
            let r = client.set_webhook_secret(&name, value).await?;
            // The server knows the team's form of the path (`/api/v1/hooks/{team}/{name}`).
            let default = format!("/api/v1/hooks/{name}");
            let path = r["webhook_path"].as_str().unwrap_or(&default);
            outln!("webhook secret of {name} set; webhook URL: {path}");
            Ok(0)
        }
        Command::Build {
            name,
            git_ref,
            follow,
        } => {
            let b = client
                .start_build(&name, &berth_core::api::BuildStart { git_ref })
                .await?;
            if !follow {
                outln!("build {} of {} queued", b.id, b.service);
                return Ok(0);
            }
            stream_build_log(client, b.id).await
        }
        Command::Builds {
            command: Some(BuildsCommand::Logs { id, follow }),
            ..
        } => {
            if follow {
                return stream_build_log(client, id).await;
            }
            copy_stream(client.build_logs(id, false).await?).await?;
            Ok(0)
        }
        Command::Builds {
            command: Some(BuildsCommand::Cancel { id }),
            ..
        } => {
            client.cancel_build(id).await?;
            outln!("cancelling build {id}");
            Ok(0)
        }
        Command::Builds {
            command: None,
            name,
            output,
        } => {
            let list = client.builds(name.as_deref()).await?;
            print_list(
                &output,
                &list,
                &[
                    "ID", "SERVICE", "REF", "STATUS", "VERSION", "CREATED", "REASON",
                ],
                |b| {
                    vec![
                        b.id.to_string(),
                        b.service.clone(),
                        b.git_ref.clone().unwrap_or_default(),
                        b.status.clone(),
                        b.version.clone().unwrap_or_default(),
                        b.created_at.clone(),
                        b.reason.clone(),
                    ]
                },
            );
            Ok(0)
        }
        Command::Versions { name, output } => {
            let list = client.versions(&name).await?;
            print_list(
                &output,
                &list,
                &["VERSION", "STATE", "IMAGE", "DIGEST", "COMMIT", "AUTHOR"],
                |v| {
                    vec![
                        v.name.clone(),
                        v.state.to_string(),
                        v.tag.clone(),
                        v.digest.clone(),
                        v.commit.chars().take(12).collect(),
                        v.author.clone(),
                    ]
                },
            );
            Ok(0)
        }
        Command::Secret(SecretCommand::Set { service, name }) => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                .context("cannot read the secret from stdin")?;
            client.set_secret(&service, &name, value).await?;
            outln!("secret {name} of {service} set");
            Ok(0)
        }
        Command::Token(TokenCommand::Issue {
            subject,
            audiences,
            ttl,
            claims,
        }) => {
            let ttl = parse_duration(&ttl)?;
            let mut map = BTreeMap::new();
            for c in claims {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--claim {c:?}: expected K=V"))?;
                let value = serde_json::from_str(v)
                    .unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
                map.insert(k.to_string(), value);
            }
            let issued = client
                .issue_token(&TokenRequest {
                    subject,
                    audiences,
                    ttl_secs: Some(ttl.as_secs()),
                    claims: map,
                })
                .await?;
            outln!("{}", issued.token);
            Ok(0)
        }
        Command::Token(TokenCommand::RotateKey) => {
            let r = client.rotate_key().await?;
            outln!("new signing key {}", r["kid"].as_str().unwrap_or_default());
            Ok(0)
        }
        Command::Issuer(IssuerCommand::Add {
            name,
            issuer,
            jwks_url,
            key_file,
            hs256_secret_file,
        }) => {
            let mut req = IssuerRequest {
                name,
                issuer,
                jwks_url,
                ..Default::default()
            };
            if let Some(path) = key_file {
                let pem = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                req.jwks = Some(
                    berth_auth::jwks_from_public_pem(&pem, None)
                        .map_err(|e| anyhow!("{}: {e}", path.display()))?,
                );
            }
            if let Some(path) = hs256_secret_file {
                let secret = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let secret = String::from_utf8(secret)
                    .map_err(|_| anyhow!("{}: the secret must be text", path.display()))?;
                req.hs256_secret = Some(secret.trim_end_matches(['\n', '\r']).to_string());
            }
            if req.jwks_url.is_none() && req.jwks.is_none() && req.hs256_secret.is_none() {
                bail!("give one of --jwks-url, --key-file or --hs256-secret-file");
            }
            let v = client.add_issuer(&req).await?;
            outln!(
                "issuer {} ({}) added with {} key(s)",
                v.name,
                v.issuer,
                v.keys
            );
            Ok(0)
        }
        Command::Issuer(IssuerCommand::Ls(out)) => {
            let list = client.issuers().await?;
            print_list(
                &out,
                &list,
                &["NAME", "ISSUER", "KIND", "KEYS", "JWKS URL"],
                |i| {
                    vec![
                        i.name.clone(),
                        i.issuer.clone(),
                        i.kind.clone(),
                        i.keys.to_string(),
                        i.jwks_url.clone().unwrap_or_default(),
                    ]
                },
            );
            Ok(0)
        }
        Command::Issuer(IssuerCommand::Rm { name }) => {
            client.remove_issuer(&name).await?;
            outln!("issuer {name} removed");
            Ok(0)
        }
        Command::Rm {
            app,
            volumes,
            detach,
        } => {
            client.remove(&app, volumes).await?;
            if detach {
                outln!("removing {app}");
                return Ok(0);
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match client.status(&app).await {
                    Err(e)
                        if e.downcast_ref::<ApiFailure>()
                            .is_some_and(|f| f.body.code == "app_not_found") =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                    Ok(_) if Instant::now() > deadline => {
                        bail!("{app} is still being removed after 120 s")
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            outln!(
                "removed {app}{}",
                if volumes { " and its volumes" } else { "" }
            );
            Ok(0)
        }
    }
}

pub(crate) fn json(o: &OutputArgs) -> bool {
    o.output == "json"
}

/// A list as pretty JSON (`--output json`) or as a table, one `row(item)` per line.
/// `berth events [--follow]`: the recent events, then (following) new ones as they come, polled
/// every second by id so none in the server's ring is missed.
async fn events(client: &Client, follow: bool, out: &OutputArgs) -> anyhow::Result<i32> {
    let mut after = 0;
    loop {
        let list = client.events(after).await?;
        if let Some(last) = list.last() {
            after = last.id;
        }
        if json(out) && !follow {
            print_json(&list);
            return Ok(0);
        }
        for e in &list {
            if json(out) {
                outln!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                outln!("{} {:<4} {:<26} {}", e.time, e.level, e.kind, e.message);
            }
        }
        if !follow {
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(crate) fn print_list<T: serde::Serialize>(
    out: &OutputArgs,
    list: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json(out) {
        print_json(&list);
    } else {
        table(headers, list.iter().map(row).collect());
    }
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    crate::output::write(
        crate::output::Stream::Stdout,
        format_args!("{}", table_text(headers, rows)),
    );
}

/// A table's text, one line per row; every cell on one line, without control characters
/// (cells often hold other people's text: notes, descriptions).
pub(crate) fn table_text(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| crate::output::one_line(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_string()).collect());
    for r in rows {
        line(r);
    }
    out
}

pub(crate) fn report_created(c: &berth_core::api::RevisionCreated) {
    if c.changed {
        outln!("{}: revision {} ({})", c.app, c.revision, c.change);
    } else {
        outln!("{}: no change (revision {})", c.app, c.revision);
    }
    for n in &c.notes {
        outln!("note: {n}");
    }
}

const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Read the Compose files and everything they reference into one bundle.
pub(crate) fn bundle(files: &[PathBuf], profiles: &[String]) -> anyhow::Result<ApplyRequest> {
    let files: Vec<PathBuf> = if files.is_empty() {
        let found = DEFAULT_FILES.iter().map(PathBuf::from).find(|p| p.exists());
        vec![found.ok_or_else(|| {
            anyhow!("no compose.yaml in the current directory; name a file with -f")
        })?]
    } else {
        files.to_vec()
    };
    let first = std::fs::canonicalize(&files[0])
        .with_context(|| format!("cannot read {}", files[0].display()))?;
    let project_dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut req = ApplyRequest {
        project_dir: project_dir.display().to_string(),
        profiles: profiles.to_vec(),
        ..Default::default()
    };
    let mut sources = Vec::new();
    for f in &files {
        let abs =
            std::fs::canonicalize(f).with_context(|| format!("cannot read {}", f.display()))?;
        let content = std::fs::read_to_string(&abs)
            .with_context(|| format!("cannot read {}", f.display()))?;
        let key = abs
            .strip_prefix(&project_dir)
            .map_or_else(|_| abs.display().to_string(), |p| p.display().to_string());
        if req.files.contains_key(&key) {
            bail!("{} is given twice", f.display());
        }
        req.compose_files.push(key.clone());
        sources.push((key.clone(), content.clone()));
        req.files.insert(key, content);
    }
    let env_path = project_dir.join(".env");
    if env_path.is_file() {
        req.files.insert(
            ".env".into(),
            std::fs::read_to_string(&env_path).context("cannot read .env")?,
        );
    }
    let referenced = berth_compose::referenced_files(&sources).map_err(|e| anyhow!("{e}"))?;
    for rel in referenced {
        let path = project_dir.join(&rel);
        if !path.exists() {
            // Optional env files may be absent; the server names any required file that is
            // missing from the bundle.
            continue;
        }
        let content = std::fs::read(&path)
            .with_context(|| format!("cannot read {rel} (referenced by the Compose file)"))?;
        let content = String::from_utf8(content)
            .map_err(|_| anyhow!("{rel}: only UTF-8 text files can be sent"))?;
        req.files.insert(rel, content);
    }
    let mut env = BTreeMap::new();
    for name in berth_compose::referenced_variables(&sources) {
        if let Ok(v) = std::env::var(&name) {
            env.insert(name, v);
        }
    }
    req.env = env;
    Ok(req)
}

/// One build context to pack and upload: the services that use it, its directory and
/// Dockerfile (relative to the directory).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ContextPlan {
    pub(crate) services: Vec<String>,
    pub(crate) dir: PathBuf,
    pub(crate) dockerfile: String,
}

/// The build contexts a bundle needs: every enabled service with `build:`, its context resolved
/// against the project directory (`../x` is allowed, as in Compose, but must exist), services
/// with the same context and Dockerfile sharing one upload. A bundle the parser refuses needs
/// none: the server reports the problem.
pub(crate) fn plan_contexts(req: &ApplyRequest) -> anyhow::Result<Vec<ContextPlan>> {
    let bundle = berth_compose::Bundle {
        compose_files: req.compose_files.clone(),
        files: req.files.clone(),
        env: req.env.clone(),
        profiles: req.profiles.clone(),
        project_dir: req.project_dir.clone(),
    };
    let Ok(project) = berth_compose::load(&bundle) else {
        return Ok(Vec::new());
    };
    let mut plans: Vec<ContextPlan> = Vec::new();
    for (name, svc) in &project.services {
        let Some(build) = &svc.build else { continue };
        let dir = Path::new(&req.project_dir).join(&build.context);
        let dir = std::fs::canonicalize(&dir)
            .ok()
            .filter(|d| d.is_dir())
            .ok_or_else(|| {
                anyhow!(
                    "service {name}: build context {} is not a directory ({})",
                    build.context,
                    dir.display()
                )
            })?;
        if !dir.join(&build.dockerfile).is_file() {
            bail!(
                "service {name}: Dockerfile {} not found in the build context {}",
                build.dockerfile,
                dir.display()
            );
        }
        match plans
            .iter_mut()
            .find(|p| p.dir == dir && p.dockerfile == build.dockerfile)
        {
            Some(p) => p.services.push(name.clone()),
            None => plans.push(ContextPlan {
                services: vec![name.clone()],
                dir,
                dockerfile: build.dockerfile.clone(),
            }),
        }
    }
    Ok(plans)
}

/// Pack each build context into a temporary file (honouring `.dockerignore`, stopping at the
/// server's size limit), upload it as a stream, and name it in the request.
async fn upload_contexts(client: &Client, req: &mut ApplyRequest) -> anyhow::Result<()> {
    use berth_core::api::MAX_BUILD_CONTEXT_BYTES;
    use std::io::Seek;
    for plan in plan_contexts(req)? {
        let names = plan.services.join(", ");
        let (dir, dockerfile) = (plan.dir.clone(), plan.dockerfile.clone());
        let packed = tokio::task::spawn_blocking(move || {
            let file = tempfile::tempfile()?;
            let out = std::io::BufWriter::new(file);
            berth_context::write_context_tar(&dir, &dockerfile, out, Some(MAX_BUILD_CONTEXT_BYTES))
                .map_err(anyhow::Error::from)
                .and_then(|w| w.into_inner().map_err(|e| anyhow!("{}", e.error())))
        })
        .await?;
        let mut file = packed.map_err(|e| {
            anyhow!(
                "service {names}: cannot pack the build context {}: {e}",
                plan.dir.display()
            )
        })?;
        let size = file.seek(std::io::SeekFrom::End(0))?;
        file.rewind()?;
        errln!(
            "{names}: uploading the build context {} ({})",
            plan.dir.display(),
            human_size(size)
        );
        let uploaded = client
            .upload_context(tokio::fs::File::from_std(file), size)
            .await?;
        for s in plan.services {
            req.build_contexts.insert(s, uploaded.id.clone());
        }
    }
    Ok(())
}

pub(crate) fn human_size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a display value
    let b = bytes as f64;
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", b / f64::from(1 << 10))
    } else {
        format!("{bytes} B")
    }
}

async fn apply(client: &Client, args: ApplyArgs) -> anyhow::Result<i32> {
    let mut req = bundle(&args.files, &args.profiles)?;
    upload_contexts(client, &mut req).await?;
    let created = if req.build_contexts.is_empty() {
        client.apply(&args.app, &req).await?
    } else {
        // Build output, as it happens, on stderr (stdout stays the result).
        client
            .apply_with_progress(&args.app, &req, |service, line| {
                errln!("{service} | {line}");
            })
            .await?
    };
    report_created(&created);
    if args.detach {
        return Ok(0);
    }
    wait(
        client,
        &args.app,
        created.revision,
        Duration::from_secs(args.timeout),
    )
    .await
}

/// Wait until `revision` has converged (exit 0) or failed (exit 1), showing progress on a terminal.
pub(crate) async fn wait(
    client: &Client,
    app: &str,
    revision: u64,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let tty = std::io::stderr().is_terminal();
    let deadline = Instant::now() + timeout;
    let mut shown_lines = 0usize;
    let mut last = String::new();
    loop {
        let st = client.status(app).await?;
        if st.revision != revision {
            clear(tty, shown_lines);
            let history = client.history(app).await.unwrap_or_default();
            let mine = history.iter().find(|r| r.revision == revision);
            match mine {
                Some(r) if r.status == "failed" => {
                    errln!(
                        "error: revision {revision} failed: {}; now at revision {}",
                        r.message,
                        st.revision
                    );
                }
                _ => errln!(
                    "error: revision {revision} was superseded by revision {}",
                    st.revision
                ),
            }
            return Ok(1);
        }
        if tty {
            let mut text = String::new();
            for s in &st.services {
                let mut line = format!(
                    "  {:<16} {}/{} created  {}/{} healthy  {} in rotation",
                    s.name, s.created, s.desired, s.healthy, s.desired, s.in_rotation
                );
                if s.old > 0 {
                    line.push_str(&format!("  {} old", s.old));
                }
                if !s.waiting_for.is_empty() {
                    line.push_str(&format!("  waiting for {}", s.waiting_for.join(", ")));
                }
                if let Some(p) = &s.problem {
                    line.push_str(&format!("  ({p})"));
                }
                text.push_str(&line);
                text.push('\n');
            }
            if text != last {
                clear(tty, shown_lines);
                err!("{text}");
                shown_lines = text.lines().count();
                last = text;
            }
        }
        if st.revision_status == "failed" {
            errln!("error: revision {revision} failed: {}", st.message);
            return Ok(1);
        }
        // The revision's recorded outcome is authoritative: it converged once, even if a job
        // has exited since (that shows as a problem in `berth apps`, not as a failed apply).
        if st.revision_status == "converged" {
            outln!("{app}: revision {revision} converged");
            return Ok(0);
        }
        if Instant::now() > deadline {
            let problems: Vec<String> = st
                .services
                .iter()
                .filter_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.name)))
                .collect();
            errln!(
                "error: {app} did not converge within {} s{}",
                timeout.as_secs(),
                if problems.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", problems.join("; "))
                }
            );
            return Ok(1);
        }
        // A status read costs the server well under a millisecond.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn clear(tty: bool, lines: usize) {
    if tty && lines > 0 {
        err!("\x1b[{lines}A\x1b[J");
    }
}

/// A duration as Compose writes them: `500ms`, `90s`, `15m`, `1h`, `7d`, or seconds.
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?}: expected a duration like 90s, 15m, 1h or 7d"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{s:?}: expected a duration like 90s, 15m, 1h or 7d"),
    };
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| anyhow!("{s:?}: too long"))?;
    Ok(Duration::from_secs(secs))
}

/// Copy a streamed body (logs) to stdout as it comes. A closed stdout (`| head`) ends the
/// process quietly (see `output`).
async fn copy_stream(resp: reqwest::Response) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("log stream interrupted")?;
        crate::output::write_bytes(&chunk);
    }
    Ok(())
}

/// Follow a build's log to its end; the exit code is the build's outcome.
async fn stream_build_log(client: &Client, id: u64) -> anyhow::Result<i32> {
    copy_stream(client.build_logs(id, true).await?).await?;
    // The stream ends when the build does; its record may take a moment to be written.
    for _ in 0..50 {
        let b = client.build(id).await?;
        match b.status.as_str() {
            "succeeded" => return Ok(0),
            "failed" | "cancelled" => {
                errln!(
                    "error: build {id} {}{}",
                    b.status,
                    if b.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", b.reason)
                    }
                );
                return Ok(1);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    bail!("build {id} has not finished")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_ttl_and_poll() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("7d", 604_800),
        ] {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        for bad in ["", "h", "1x", "-1s", "1.5h", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn bundle_names_a_missing_file() {
        let err = bundle(&[PathBuf::from("/nonexistent/compose.yaml")], &[]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/compose.yaml"),
            "{err}"
        );
    }

    #[test]
    fn bundle_carries_referenced_files_and_variables() {
        let dir = tempfile_dir();
        std::fs::write(
            dir.join("compose.yaml"),
            "services:\n  a:\n    image: x:${TAG_FOR_BUNDLE_TEST:-1}\n    env_file: [a.env]\n",
        )
        .unwrap();
        std::fs::write(dir.join("a.env"), "K=V\n").unwrap();
        std::fs::write(dir.join(".env"), "OTHER=1\n").unwrap();
        let req = bundle(&[dir.join("compose.yaml")], &[]).unwrap();
        assert_eq!(req.compose_files, vec!["compose.yaml".to_string()]);
        assert!(
            req.files.contains_key("a.env") && req.files.contains_key(".env"),
            "{:?}",
            req.files.keys()
        );
        assert_eq!(
            req.project_dir,
            std::fs::canonicalize(&dir).unwrap().display().to_string()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn build_contexts_are_resolved_checked_and_shared() {
        let root = tempfile_dir();
        let proj = root.join("proj");
        std::fs::create_dir_all(proj.join("api")).unwrap();
        std::fs::create_dir_all(root.join("libs")).unwrap();
        std::fs::write(proj.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(proj.join("api/Dockerfile.prod"), "FROM scratch\n").unwrap();
        std::fs::write(root.join("libs/Dockerfile"), "FROM scratch\n").unwrap();
        let write = |compose: &str| {
            std::fs::write(proj.join("compose.yaml"), compose).unwrap();
            let req = bundle(&[proj.join("compose.yaml")], &[]).unwrap();
            plan_contexts(&req)
        };
        let plans = write(
            "services:\n  a: {build: .}\n  b: {build: {context: ./}}\n  c: {build: {context: api, dockerfile: Dockerfile.prod}}\n  d: {build: ../libs}\n  e: {image: x}\n",
        )
        .unwrap();
        let canon = |p: PathBuf| std::fs::canonicalize(p).unwrap();
        let got: Vec<(Vec<&str>, PathBuf, &str)> = plans
            .iter()
            .map(|p| {
                (
                    p.services.iter().map(String::as_str).collect(),
                    p.dir.clone(),
                    p.dockerfile.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (vec!["a", "b"], canon(proj.clone()), "Dockerfile"),
                (vec!["c"], canon(proj.join("api")), "Dockerfile.prod"),
                (vec!["d"], canon(root.join("libs")), "Dockerfile"),
            ]
        );
        let e = write("services:\n  a: {build: ../missing}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("service a: build context ../missing is not a directory"),
            "{e}"
        );
        let e = write("services:\n  a: {build: {context: api}}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("service a: Dockerfile Dockerfile not found"),
            "{e}"
        );
        // A file the parser refuses needs no context: the server names the problem.
        assert!(write("services:\n  a: {build: .., sysctls: {a: 1}}\n")
            .unwrap()
            .is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "berth-cli-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }
}
