//! `berth env create | ls | show | extend | rm` (docs/environments.md). Application commands
//! act in an environment with the global `--env E` (`BERTH_ENV`), sent as `?env=`.

use super::Ctx;
use crate::commands::{json, print_json, print_list, report_created, wait};
use crate::{EnvCommand, OutputArgs};
use berth_core::api::{DeployRequest, EnvRequest, EnvView, ReleaseRequest};
use std::time::Duration;

fn expires(e: &EnvView) -> String {
    match (&e.expires_at, e.expires_in_secs) {
        (Some(at), Some(0)) => format!("{at} (expired)"),
        (Some(at), Some(s)) => format!("{at} (in {})", human(s)),
        _ => "never".into(),
    }
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: EnvCommand) -> anyhow::Result<i32> {
    let client = &ctx.client;
    match cmd {
        EnvCommand::Create {
            name,
            ttl,
            ports,
            protected,
            keep_volumes,
            cpus,
            memory,
            from,
        } => {
            let e = client
                .create_env(&EnvRequest {
                    name,
                    ttl,
                    ports,
                    protected,
                    keep_volumes,
                    cpus,
                    memory,
                    from: from.clone(),
                })
                .await?;
            outln!(
                "environment {} created; ports {}; expires {}; deploy into it with `berth --env {} apply APP`",
                e.name,
                e.ports.as_deref().unwrap_or("from the server's range"),
                expires(&e),
                e.name
            );
            if let Some(from) = from {
                outln!(
                    "cloned from {from}: {}",
                    if e.apps.is_empty() {
                        "no applications".to_string()
                    } else {
                        e.apps.join(", ")
                    }
                );
            }
        }
        EnvCommand::Ls(out) => {
            let list = client.envs().await?;
            print_list(
                &out,
                &list,
                &["ENV", "EXPIRES", "PORTS", "PROTECTED", "CREATED"],
                |e| {
                    vec![
                        e.name.clone(),
                        expires(e),
                        e.ports.clone().unwrap_or_else(|| "-".into()),
                        if e.protected { "yes" } else { "no" }.into(),
                        e.created_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            );
        }
        EnvCommand::Show { name, out } => {
            let e = client.env(&name).await?;
            if json(&out) {
                print_json(&e);
            } else {
                outln!("environment:  {}", e.name);
                outln!("expires:      {}", expires(&e));
                outln!("ports:        {}", e.ports.as_deref().unwrap_or("-"));
                outln!(
                    "quota:        {}",
                    match (e.cpus, e.memory_bytes) {
                        (None, None) => "none".to_string(),
                        (c, m) => format!(
                            "{} CPU, {} memory",
                            c.map_or_else(|| "any".into(), |c| c.to_string()),
                            m.map_or_else(|| "any".into(), |m| format!("{}MiB", m / (1024 * 1024)))
                        ),
                    }
                );
                outln!("protected:    {}", if e.protected { "yes" } else { "no" });
                outln!(
                    "keep volumes: {}",
                    if e.keep_volumes { "yes" } else { "no" }
                );
                if let Some(by) = &e.created_by {
                    outln!(
                        "created:      {} by {by}",
                        e.created_at.as_deref().unwrap_or("-")
                    );
                }
                outln!(
                    "applications: {}",
                    if e.apps.is_empty() {
                        "none".to_string()
                    } else {
                        e.apps.join(", ")
                    }
                );
            }
        }
        EnvCommand::Extend { name, ttl } => {
            let e = client.extend_env(&name, &ttl).await?;
            outln!("environment {} now expires {}", e.name, expires(&e));
        }
        EnvCommand::Rm { name, keep_volumes } => {
            let r = client.remove_env(&name, keep_volumes).await?;
            outln!(
                "environment {} removed; removing {}{}",
                r.name,
                if r.apps.is_empty() {
                    "no applications".to_string()
                } else {
                    r.apps.join(", ")
                },
                if r.keep_volumes {
                    " (volumes kept)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(0)
}

/// `berth release APP --from E1 --to E2 [--detach]`: waits for the target to converge.
pub(crate) async fn release(
    ctx: &Ctx,
    app: &str,
    from: String,
    to: String,
    detach: bool,
) -> anyhow::Result<i32> {
    let target = ctx.client.clone().with_env(Some(to.clone()));
    let created = target.release(app, &ReleaseRequest { from, to }).await?;
    report_created(&created);
    if detach || !created.changed {
        return Ok(0);
    }
    wait(&target, app, created.revision, Duration::from_secs(300)).await
}

/// `berth ports [--env E] [-o json]`.
pub(crate) async fn ports(ctx: &Ctx, out: &OutputArgs) -> anyhow::Result<i32> {
    let list = ctx.client.ports(ctx.client.app_env()).await?;
    print_list(
        out,
        &list,
        &[
            "PORT", "PROTO", "ENV", "APP", "SERVICE", "TARGET", "KIND", "SINCE",
        ],
        |l| {
            vec![
                l.port.to_string(),
                l.protocol.clone(),
                l.env.clone(),
                l.app.clone(),
                l.service.clone(),
                l.target.to_string(),
                if l.fixed { "fixed" } else { "leased" }.into(),
                l.since.clone(),
            ]
        },
    );
    Ok(0)
}

/// `berth deploy --app APP SERVICE:VERSION [--detach]`: waits for convergence.
pub(crate) async fn deploy(
    ctx: &Ctx,
    app: &str,
    version: &str,
    detach: bool,
) -> anyhow::Result<i32> {
    let Some((service, version)) = version.split_once(':') else {
        anyhow::bail!(
            "expected SERVICE:VERSION, e.g. api:v1.3 (`berth versions SERVICE` lists them)"
        );
    };
    let created = ctx
        .client
        .deploy(
            app,
            &DeployRequest {
                service: service.into(),
                version: version.into(),
            },
        )
        .await?;
    report_created(&created);
    if detach || !created.changed {
        return Ok(0);
    }
    wait(&ctx.client, app, created.revision, Duration::from_secs(300)).await
}
