//! `berth env create | ls | show | extend | rm` (docs/environments.md). Application commands
//! act in an environment with the global `--env E` (`BERTH_ENV`), sent as `?env=`.

use super::Ctx;
use crate::commands::{json, print_json, print_list};
use crate::EnvCommand;
use berth_core::api::{EnvRequest, EnvView};

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
        } => {
            let e = client
                .create_env(&EnvRequest {
                    name,
                    ttl,
                    ports,
                    protected,
                    keep_volumes,
                })
                .await?;
            outln!(
                "environment {} created; expires {}; deploy into it with `berth --env {} apply APP`",
                e.name,
                expires(&e),
                e.name
            );
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
