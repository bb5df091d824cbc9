//! `berth team add | ls | rm | use`, `berth team member add | rm | ls` (docs/teams.md, "Using
//! teams from the CLI"). `use` keeps the current team per server in the credentials file; every
//! later command sends it as `?team=` unless `--team` or `BERTH_TEAM` names another.

use super::Ctx;
use crate::commands::print_list;
use crate::credentials::set_current_team;
use crate::{MemberCommand, TeamCommand};
use berth_core::api::{MemberRequest, TeamRequest};

pub(crate) async fn run(ctx: &Ctx, cmd: TeamCommand) -> anyhow::Result<i32> {
    let client = &ctx.client;
    match cmd {
        TeamCommand::Add { name } => {
            let t = client.create_team(&TeamRequest { name }).await?;
            outln!(
                "team {} created; add its owner with `berth team member add {} USER --role owner`",
                t.name,
                t.name
            );
        }
        TeamCommand::Ls(out) => {
            let list = client.teams().await?;
            let current = client.team();
            print_list(&out, &list, &["TEAM", "ROLE", "MEMBERS", "CREATED"], |t| {
                let mark = if current == Some(t.name.as_str()) {
                    " *"
                } else {
                    ""
                };
                vec![
                    format!("{}{mark}", t.name),
                    t.role.map_or_else(|| "-".into(), |r| r.to_string()),
                    t.members.to_string(),
                    t.created_at.clone(),
                ]
            });
        }
        TeamCommand::Rm { name } => {
            client.delete_team(&name).await?;
            outln!("team {name} removed");
        }
        TeamCommand::Use { name: None, .. } => {
            let path = set_current_team(&ctx.server, None, &ctx.env)?;
            outln!("no current team (kept in {})", path.display());
        }
        TeamCommand::Use {
            name: Some(name), ..
        } => {
            // Only a team the caller sees: a typo would otherwise fail every later command.
            let teams = client.teams().await?;
            if !teams.iter().any(|t| t.name == name) {
                anyhow::bail!(
                    "team {name:?} does not exist or you are not a member of it (berth team ls)"
                );
            }
            let path = set_current_team(&ctx.server, Some(&name), &ctx.env)?;
            outln!(
                "commands now act in team {name} (kept in {}; --team overrides it)",
                path.display()
            );
        }
        TeamCommand::Member(MemberCommand::Add { team, user, role }) => {
            let m = client
                .set_member(&team, &MemberRequest { user, role })
                .await?;
            outln!("{} is {} of team {team}", m.user, m.role);
        }
        TeamCommand::Member(MemberCommand::Rm { team, user }) => {
            client.remove_member(&team, &user).await?;
            outln!("{user} removed from team {team}");
        }
        TeamCommand::Member(MemberCommand::Ls { team, output }) => {
            let list = client.members(&team).await?;
            print_list(&output, &list, &["USER", "ROLE", "ADDED"], |m| {
                vec![m.user.clone(), m.role.to_string(), m.added_at.clone()]
            });
        }
    }
    Ok(0)
}
