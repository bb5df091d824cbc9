//! The version lifecycle (docs/lifecycle.md): `berth submit | approve | reject | publish |
//! deprecate | retire S:V`, `berth review ls | show S:V`, `berth app protect | unprotect APP`.
//! A version is `SERVICE:VERSION` in the current team, or `TEAM/SERVICE:VERSION` in `TEAM`.

use super::Ctx;
use crate::client::Client;
use crate::commands::{json, print_json, print_list};
use crate::{AppCommand, Command, ReviewCommand};
use anyhow::bail;
use berth_core::api::{ReviewView, TransitionRequest};

/// `[TEAM/]SERVICE:VERSION` → (team, service, version).
pub(crate) fn parse_version_ref(s: &str) -> anyhow::Result<(Option<String>, String, String)> {
    let (team, rest) = match s.split_once('/') {
        Some((t, rest)) => (Some(t.to_string()), rest),
        None => (None, s),
    };
    let Some((service, version)) = rest.split_once(':') else {
        bail!("{s:?}: name a version as SERVICE:VERSION or TEAM/SERVICE:VERSION");
    };
    if team.as_deref().is_some_and(str::is_empty)
        || service.is_empty()
        || version.is_empty()
        || version.contains(':')
        || service.contains('/')
    {
        bail!("{s:?}: name a version as SERVICE:VERSION or TEAM/SERVICE:VERSION");
    }
    Ok((team, service.to_string(), version.to_string()))
}

/// The client acting in the version's team (`TEAM/...`), else the current one.
fn client_for(ctx: &Ctx, team: Option<String>) -> Client {
    match team {
        Some(t) => ctx.client.clone().with_team(Some(t)),
        None => ctx.client.clone(),
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<i32> {
    let (transition, target, req) = match cmd {
        Command::Submit { version, note } => {
            ("submit", version, TransitionRequest { note, reason: None })
        }
        Command::Approve { version, reason } => (
            "approve",
            version,
            TransitionRequest {
                note: None,
                reason: Some(reason),
            },
        ),
        Command::Reject { version, reason } => (
            "reject",
            version,
            TransitionRequest {
                note: None,
                reason: Some(reason),
            },
        ),
        Command::Publish { version } => ("publish", version, TransitionRequest::default()),
        Command::Deprecate { version } => ("deprecate", version, TransitionRequest::default()),
        Command::Retire { version } => ("retire", version, TransitionRequest::default()),
        Command::Review(ReviewCommand::Ls { out }) => {
            let list = ctx.client.reviews().await?;
            print_list(
                &out,
                &list,
                &["VERSION", "SUBMITTED BY", "SUBMITTED", "NOTE"],
                |r| {
                    vec![
                        format!("{}:{}", r.service, r.version),
                        r.submitted_by.clone().unwrap_or_default(),
                        r.submitted_at.clone().unwrap_or_default(),
                        r.note.clone().unwrap_or_default(),
                    ]
                },
            );
            return Ok(0);
        }
        Command::Review(ReviewCommand::Show { version, out }) => {
            let (team, service, version) = parse_version_ref(&version)?;
            let view = client_for(ctx, team).review(&service, &version).await?;
            if json(&out) {
                print_json(&view);
            } else {
                print_review(&view);
            }
            return Ok(0);
        }
        Command::App(AppCommand::Protect { app }) => {
            ctx.client.protect(&app, true).await?;
            outln!("application {app} runs approved, published or deprecated versions only");
            return Ok(0);
        }
        Command::App(AppCommand::Unprotect { app }) => {
            ctx.client.protect(&app, false).await?;
            outln!("application {app} is no longer protected");
            return Ok(0);
        }
        _ => bail!("not a version command"),
    };
    let (team, service, version) = parse_version_ref(&target)?;
    let v = client_for(ctx, team)
        .transition_version(&service, &version, transition, &req)
        .await?;
    outln!("{}:{} is {}", v.service, v.version, v.lifecycle.state);
    Ok(0)
}

fn print_review(r: &ReviewView) {
    let v = &r.version;
    let l = &r.lifecycle;
    outln!("version   {}:{}  ({})", v.service, v.name, l.state);
    outln!("image     {} {}", v.tag, v.digest);
    if let Some(size) = r.image_size {
        outln!("size      {:.1} MB", size as f64 / 1e6);
    }
    outln!("commit    {} by {}", v.commit, v.author);
    outln!("build     {}", v.build_id);
    if let Some(by) = &l.submitted_by {
        outln!(
            "submitted by {by}: {}",
            l.submit_note.as_deref().unwrap_or("(no note)")
        );
    }
    if let Some(by) = &l.reviewed_by {
        outln!(
            "reviewed by {by}: {}",
            l.review_reason.as_deref().unwrap_or("")
        );
    }
    outln!("");
    outln!("steps");
    for s in &r.steps {
        let exit = s
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        outln!(
            "  {:<20} exit {:<4} {:.1} s",
            s.name,
            exit,
            s.duration_ms as f64 / 1000.0
        );
        if let Some(t) = &s.report {
            match &t.problem {
                Some(p) => outln!("    tests ({}): {p}", t.path),
                None => outln!(
                    "    tests ({}): {} passed, {} failed, {} skipped",
                    t.path,
                    t.passed,
                    t.failed,
                    t.skipped
                ),
            }
            for f in &t.failing {
                outln!("      failed: {f}");
            }
        }
    }
    outln!("");
    match r.contract_operations {
        Some(n) => outln!("contract  {n} operations; {}", r.contract_summary),
        None => outln!("contract  {}", r.contract_summary),
    }
    for c in &r.contract_changes {
        outln!(
            "  {} {:<28} {}",
            if c.breaking { "BREAKING" } else { "        " },
            c.operation,
            c.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_references() {
        assert_eq!(
            parse_version_ref("api:v1").unwrap(),
            (None, "api".into(), "v1".into())
        );
        assert_eq!(
            parse_version_ref("shop/api:1.2.0").unwrap(),
            (Some("shop".into()), "api".into(), "1.2.0".into())
        );
        for bad in ["api", "api:", ":v1", "/api:v1", "a/b/c:v", "api:v:1"] {
            assert!(parse_version_ref(bad).is_err(), "{bad}");
        }
    }
}
