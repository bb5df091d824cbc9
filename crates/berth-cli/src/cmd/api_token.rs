//! `berth api-token create | ls | revoke`: opaque tokens for scripts. `create` prints the
//! secret alone on stdout (`TOKEN=$(berth api-token create ci)`), once; the server keeps only
//! its hash.

use super::Ctx;
use crate::commands::{parse_duration, print_list};
use crate::ApiTokenCommand;
use berth_core::api::ApiTokenRequest;

pub(crate) async fn run(ctx: &Ctx, cmd: ApiTokenCommand) -> anyhow::Result<i32> {
    let client = &ctx.client;
    match cmd {
        ApiTokenCommand::Create { name, ttl, scopes } => {
            let ttl_secs = ttl
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| d.as_secs());
            if ttl_secs == Some(0) {
                anyhow::bail!("--ttl must be longer than 0s");
            }
            let created = client
                .create_api_token(&ApiTokenRequest {
                    name,
                    ttl_secs,
                    scopes,
                    team: ctx.team_flag.clone(),
                })
                .await?;
            outln!("{}", created.token);
            errln!(
                "api token {} created, {}; the secret above is shown only this once",
                created.name,
                created.expires_at.map_or_else(
                    || "valid until revoked".to_string(),
                    |t| format!("valid until {t}")
                )
            );
            Ok(0)
        }
        ApiTokenCommand::Ls { user, output } => {
            let list = client.api_tokens(user.as_deref()).await?;
            print_list(
                &output,
                &list,
                &[
                    "NAME",
                    "OWNER",
                    "KIND",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "TEAM",
                ],
                |t| {
                    vec![
                        t.name.clone(),
                        t.owner.clone(),
                        t.kind.clone(),
                        if t.scopes.is_empty() {
                            "-".into()
                        } else {
                            t.scopes.join(",")
                        },
                        t.created_at.clone(),
                        t.expires_at.clone().unwrap_or_else(|| "never".into()),
                        t.last_used_at.clone().unwrap_or_else(|| "-".into()),
                        t.team.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            );
            Ok(0)
        }
        ApiTokenCommand::Revoke { name, user } => {
            client.revoke_api_token(&name, user.as_deref()).await?;
            outln!("api token {name} revoked");
            Ok(0)
        }
    }
}
