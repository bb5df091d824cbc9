//! `berth user add | ls | passwd | disable`.

use super::{prompt_new_secret, prompt_secret, stdin_lines, Ctx};
use crate::client::ApiFailure;
use crate::commands::print_list;
use crate::credentials::Source;
use crate::UserCommand;
use berth_core::api::{PasswordChange, UserRequest};

pub(crate) async fn run(ctx: &Ctx, cmd: UserCommand) -> anyhow::Result<i32> {
    let client = &ctx.client;
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
            admin,
            role,
        } => {
            let member_team = ctx.team_flag.clone();
            if role.is_some() && member_team.is_none() {
                anyhow::bail!("--role needs --team TEAM (the team the user joins)");
            }
            let password = if password_stdin {
                Some(stdin_lines(1, "the password")?.remove(0))
            } else {
                None
            };
            let created = client
                .create_user(&UserRequest {
                    name,
                    password,
                    administrator: admin,
                    team: member_team.clone(),
                    role,
                })
                .await?;
            let team = member_team.map_or_else(String::new, |t| {
                format!(
                    " as {} of team {t}",
                    role.unwrap_or(berth_core::team::Role::Developer)
                )
            });
            match created.password {
                Some(p) => outln!(
                    "user {}{team} created; one-time password: {p} (to be changed at first login)",
                    created.name
                ),
                None => outln!("user {}{team} created", created.name),
            }
            Ok(0)
        }
        UserCommand::Ls(out) => {
            let list = client.users().await?;
            print_list(
                &out,
                &list,
                &[
                    "USER",
                    "ADMINISTRATOR",
                    "DISABLED",
                    "MUST CHANGE PASSWORD",
                    "CREATED",
                ],
                |u| {
                    let yes = |b: bool| if b { "yes" } else { "-" }.to_string();
                    vec![
                        u.name.clone(),
                        yes(u.administrator),
                        yes(u.disabled),
                        yes(u.password_change_required),
                        u.created_at.clone(),
                    ]
                },
            );
            Ok(0)
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => passwd(ctx, name, password_stdin).await,
        UserCommand::Disable { name } => {
            client.disable_user(&name).await?;
            outln!("user {name} disabled; their tokens no longer work");
            Ok(0)
        }
    }
}

/// `berth user passwd [NAME]`: one's own password needs the current one; after it changes the
/// session goes on (renewed with the new password if the server ended it).
async fn passwd(ctx: &Ctx, name: Option<String>, password_stdin: bool) -> anyhow::Result<i32> {
    let client = &ctx.client;
    let me = client.whoami().await?;
    let target = name.unwrap_or_else(|| me.user.clone());
    let own = target == me.user;
    let (current, new) = match (own, password_stdin) {
        (true, true) => {
            let mut lines = stdin_lines(2, "the current and the new password")?;
            let new = lines.remove(1);
            (Some(lines.remove(0)), new)
        }
        (true, false) => (
            Some(prompt_secret("current password: ")?),
            prompt_new_secret("new password: ")?,
        ),
        (false, true) => (None, stdin_lines(1, "the new password")?.remove(0)),
        (false, false) => (
            None,
            prompt_new_secret(&format!("new password for {target}: "))?,
        ),
    };
    client
        .set_password(
            &target,
            &PasswordChange {
                password: new.clone(),
                current_password: current,
            },
        )
        .await?;
    outln!("password of {target} changed");
    if own {
        if let Some(Source::Session(_)) = &ctx.source {
            let ended = client.whoami().await.err().is_some_and(|e| {
                e.downcast_ref::<ApiFailure>()
                    .is_some_and(|f| f.status == 401)
            });
            if ended {
                super::login::log_in(client, &ctx.env, me.user, new).await?;
            }
        }
    }
    Ok(0)
}
