//! Subscriptions (docs/market.md#subscribe): `berth subscribe --app APP TEAM/SERVICE [--plan]`,
//! `berth unsubscribe --app APP TEAM/SERVICE`, `berth subscriptions --app APP`.

use super::Ctx;
use crate::commands::print_list;
use crate::Command;
use anyhow::bail;
use berth_core::api::SubscribeRequest;

fn split_entry(entry: &str) -> anyhow::Result<(&str, &str)> {
    match entry.split_once('/') {
        Some((t, s)) if !t.is_empty() && !s.is_empty() && !s.contains('/') => Ok((t, s)),
        _ => bail!("{entry:?}: name a market entry as TEAM/SERVICE"),
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Subscribe { app, entry, plan } => {
            split_entry(&entry)?;
            let v = ctx
                .client
                .subscribe(&app, &SubscribeRequest { entry, plan })
                .await?;
            outln!(
                "{} subscribes to {}: {}={} and {}={} (rolling out)",
                v.app,
                v.entry,
                v.url_env,
                v.url,
                v.token_env,
                v.token_file
            );
        }
        Command::Unsubscribe { app, entry } => {
            let (team, service) = split_entry(&entry)?;
            ctx.client.unsubscribe(&app, team, service).await?;
            outln!("{app} no longer subscribes to {entry}");
        }
        Command::Subscriptions { app, out } => {
            let list = ctx.client.subscriptions(&app).await?;
            print_list(
                &out,
                &list,
                &["ENTRY", "PLAN", "ORIGIN", "URL", "SINCE"],
                |s| {
                    vec![
                        s.entry.clone(),
                        s.plan.clone().unwrap_or_default(),
                        s.origin.clone(),
                        s.url.clone(),
                        s.created_at.clone(),
                    ]
                },
            );
        }
        _ => bail!("not a subscription command"),
    }
    Ok(0)
}
