//! The identity commands, one module per command group: `login`/`logout`/`whoami`, `user`,
//! `api-token`, `audit` ([docs/access.md](../../../../docs/access.md)). The older commands are
//! still in `commands.rs`.
//!
//! Rules they keep: a secret (password, token) is read from the terminal without echo or from
//! stdin (`--password-stdin`), never from an argument, and is printed only where the command
//! exists to show it (`api-token create`, `user add` without a password), once, on stdout.

pub(crate) mod admission;
pub(crate) mod api_token;
pub(crate) mod audit;
pub(crate) mod env;
pub(crate) mod login;
pub(crate) mod subscribe;
pub(crate) mod team;
pub(crate) mod user;
pub(crate) mod version;

use crate::client::Client;
use crate::credentials::{Env, Source};
use anyhow::{anyhow, bail};
use std::io::{BufRead as _, IsTerminal as _};

/// What a command needs: the client (carrying the resolved credential), the environment, and
/// where the credential came from.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) env: Env,
    pub(crate) source: Option<Source>,
    /// `--server`, as given (the credentials file's key for the current team).
    pub(crate) server: String,
    /// `--team` or `BERTH_TEAM` (not the current team): the team `user add` puts the user in
    /// and `api-token create` binds the token to.
    pub(crate) team_flag: Option<String>,
}

/// The first `n` lines of stdin, without their line ends; an error when fewer come or one is
/// empty (`what` names them: "the password", "the current and the new password").
pub(crate) fn stdin_lines(n: usize, what: &str) -> anyhow::Result<Vec<String>> {
    let stdin = std::io::stdin();
    let mut lines = Vec::with_capacity(n);
    for line in stdin.lock().lines().take(n) {
        let line = line.map_err(|e| anyhow!("cannot read {what} from stdin: {e}"))?;
        lines.push(line.trim_end_matches('\r').to_string());
    }
    if lines.len() < n || lines.iter().any(String::is_empty) {
        bail!(
            "expected {what} on stdin ({n} non-empty line{})",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(lines)
}

/// Ask for a secret on the terminal, without echo.
pub(crate) fn prompt_secret(prompt: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password on: pass it on stdin with --password-stdin");
    }
    let value = rpassword::prompt_password(prompt)
        .map_err(|e| anyhow!("cannot read the password from the terminal: {e}"))?;
    if value.is_empty() {
        bail!("the password is empty");
    }
    Ok(value)
}

/// Ask for a new password twice on the terminal; they must match.
pub(crate) fn prompt_new_secret(prompt: &str) -> anyhow::Result<String> {
    let first = prompt_secret(prompt)?;
    let again = prompt_secret("repeat it: ")?;
    if first != again {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

/// Ask for a line (not secret) on the terminal.
pub(crate) fn prompt_line(prompt: &str, missing: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("{missing}");
    }
    err!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| anyhow!("cannot read from the terminal: {e}"))?;
    let line = line.trim().to_string();
    if line.is_empty() {
        bail!("{missing}");
    }
    Ok(line)
}
