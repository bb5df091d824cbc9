//! `berth login`, `berth logout`, `berth whoami`: sessions kept in the credentials file
//! ([`crate::credentials`]), one per server.

use super::{prompt_line, prompt_secret, stdin_lines, Ctx};
use crate::client::{ApiFailure, Client};
use crate::credentials::{server_key, Credentials, Entry, Env, Source};
use crate::{LoginArgs, OutputArgs};
use anyhow::anyhow;
use berth_core::api::{LoginIssued, LoginRequest};

/// The credentials file, or why there is none.
pub(crate) fn credentials_path(env: &Env) -> anyhow::Result<std::path::PathBuf> {
    env.credentials_path().ok_or_else(|| {
        anyhow!("cannot tell where to keep credentials: set HOME or XDG_CONFIG_HOME")
    })
}

/// Log `user` in with `password` and store the session for the client's server, replacing (and
/// ending, as far as the server still knows it) the one stored before.
pub(crate) async fn log_in(
    client: &Client,
    env: &Env,
    user: String,
    password: String,
) -> anyhow::Result<LoginIssued> {
    let path = credentials_path(env)?;
    let key = server_key(client.base())?;
    let mut creds = Credentials::load(&path)?;
    let issued = client
        .login(&LoginRequest {
            user: user.clone(),
            password,
        })
        .await
        .map_err(without_login_hint)?;
    let entry = Entry {
        token: issued.token.clone(),
        name: issued.name.clone(),
        user,
        expires_at: issued.expires_at.clone(),
    };
    let previous = creds.servers.insert(key, entry);
    creds.save(&path)?;
    if let Some(old) = previous.filter(|old| old.token != issued.token) {
        // Best effort: an old session the server has already dropped is fine.
        let _ = client.clone().with_token(Some(old.token)).logout().await;
    }
    Ok(issued)
}

/// A refused login is not a missing credential: drop the "log in with `berth login`" hint.
fn without_login_hint(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<ApiFailure>() {
        Ok(f) => anyhow!("{} ({})", f.body.message, f.body.code),
        Err(e) => e,
    }
}

/// `berth login [--server URL] [--user U] [--password-stdin]`.
pub(crate) async fn login(client: &Client, env: &Env, args: LoginArgs) -> anyhow::Result<i32> {
    let user = match args.user {
        Some(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ if args.password_stdin => {
            anyhow::bail!("--password-stdin needs the user: berth login --user NAME")
        }
        _ => prompt_line(
            "user: ",
            "give the user to log in as: berth login --user NAME",
        )?,
    };
    let password = if args.password_stdin {
        stdin_lines(1, "the password")?.remove(0)
    } else {
        prompt_secret(&format!("password for {user}: "))?
    };
    let issued = log_in(client, env, user.clone(), password).await?;
    outln!(
        "logged in to {} as {user} (session {} until {})",
        server_key(client.base())?,
        issued.name,
        issued.expires_at
    );
    if issued.password_change_required {
        outln!("your password must be changed before anything else: run `berth user passwd`");
    }
    Ok(0)
}

/// `berth logout`: end the stored session on the server and remove it from the file.
pub(crate) async fn logout(client: &Client, env: &Env) -> anyhow::Result<i32> {
    let path = credentials_path(env)?;
    let key = server_key(client.base())?;
    let mut creds = Credentials::load(&path)?;
    let Some(entry) = creds.servers.remove(&key) else {
        errln!("not logged in to {key}");
        return Ok(0);
    };
    creds.save(&path)?;
    match client.clone().with_token(Some(entry.token)).logout().await {
        Ok(_) => {
            outln!("logged out of {key} ({})", entry.user);
            Ok(0)
        }
        Err(e)
            if e.downcast_ref::<ApiFailure>()
                .is_some_and(|f| f.status == 401) =>
        {
            outln!("logged out of {key} (the session had already ended)");
            Ok(0)
        }
        Err(e) => Err(anyhow!(
            "the session was removed here, but the server did not end it: {e:#}"
        )),
    }
}

/// `berth whoami [-o json]`.
pub(crate) async fn whoami(ctx: &Ctx, out: &OutputArgs) -> anyhow::Result<i32> {
    let w = ctx.client.whoami().await?;
    if crate::commands::json(out) {
        crate::commands::print_json(&w);
        return Ok(0);
    }
    outln!(
        "{}{}",
        w.user,
        if w.administrator {
            " (administrator)"
        } else {
            ""
        }
    );
    let kind = match w.kind.as_str() {
        "login" => "login session",
        "api" => "API token",
        "local" => "the server's local administrator token",
        other => other,
    };
    outln!("token:   {} ({kind})", w.token);
    if let Some(t) = &w.team {
        outln!("token team: {t}");
    }
    if w.teams.is_empty() {
        outln!("teams:   none");
    } else {
        let teams: Vec<String> = w
            .teams
            .iter()
            .map(|t| format!("{} ({})", t.team, t.role))
            .collect();
        outln!("teams:   {}", teams.join(", "));
    }
    if let Some(t) = ctx.client.team() {
        outln!("acting in team: {t}");
    }
    if !w.scopes.is_empty() {
        outln!("scopes:  {}", w.scopes.join(", "));
    }
    outln!(
        "expires: {}",
        w.expires_at.as_deref().unwrap_or("never (until revoked)")
    );
    if let Some(src) = &ctx.source {
        let from = match src {
            Source::Flag => "--token".to_string(),
            Source::Env => "BERTH_TOKEN".to_string(),
            Source::Session(p) | Source::AdminToken(p) => p.display().to_string(),
        };
        outln!("from:    {from}");
    }
    if w.password_change_required && w.kind == "local" {
        // The local token is exempt; a login with the password is not.
        outln!("the password is still the generated one: change it (`berth user passwd`) before logging in elsewhere");
    } else if w.password_change_required {
        outln!("your password must be changed before anything else: run `berth user passwd`");
    }
    Ok(0)
}
