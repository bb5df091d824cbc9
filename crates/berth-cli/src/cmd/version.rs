//! The version lifecycle (docs/lifecycle.md): `berth submit | approve | reject | publish |
//! deprecate | retire S:V`, `berth review ls | show S:V`, `berth app protect | unprotect APP`.
//! A version is `SERVICE:VERSION` in the current team, or `TEAM/SERVICE:VERSION` in `TEAM`.

use super::Ctx;
use crate::client::Client;
use crate::commands::{json, print_json, print_list};
use crate::{AppCommand, Command, MarketCommand, ReviewCommand};
use anyhow::bail;
use std::fmt::Write as _;

/// `writeln!` into a `String` (which cannot fail).
macro_rules! w {
    ($o:ident, $($arg:tt)*) => {
        writeln!($o, $($arg)*).unwrap_or(())
    };
}
use berth_core::api::{MarketEntry, ReviewView, TransitionRequest};

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
        Command::Submit { version, note } => (
            "submit",
            version,
            TransitionRequest {
                note,
                ..TransitionRequest::default()
            },
        ),
        Command::Approve { version, reason } => (
            "approve",
            version,
            TransitionRequest {
                reason: Some(reason),
                ..TransitionRequest::default()
            },
        ),
        Command::Reject { version, reason } => (
            "reject",
            version,
            TransitionRequest {
                reason: Some(reason),
                ..TransitionRequest::default()
            },
        ),
        Command::Publish { version, app } => (
            "publish",
            version,
            TransitionRequest {
                app,
                ..TransitionRequest::default()
            },
        ),
        Command::Market(MarketCommand::Ls { search, out }) => {
            let list = ctx.client.market(search.as_deref()).await?;
            print_list(
                &out,
                &list,
                &[
                    "ENTRY",
                    "LATEST",
                    "PROVIDER",
                    "HEALTH",
                    "CALLS/MIN",
                    "ERRORS",
                    "DESCRIPTION",
                ],
                |e| {
                    vec![
                        format!("{}/{}", e.team, e.service),
                        e.latest.clone().unwrap_or_default(),
                        e.provider
                            .as_ref()
                            .map(|p| format!("{}/{}", p.app, p.service))
                            .unwrap_or_default(),
                        e.provider
                            .as_ref()
                            .map(|p| p.health.clone())
                            .unwrap_or_default(),
                        e.calls_per_minute.to_string(),
                        format!("{:.1}%", e.error_rate * 100.0),
                        e.description.chars().take(60).collect(),
                    ]
                },
            );
            return Ok(0);
        }
        Command::Market(MarketCommand::Show { entry, out }) => {
            let Some((team, service)) = entry.split_once('/') else {
                bail!("{entry:?}: name a market entry as TEAM/SERVICE");
            };
            let e = ctx.client.market_entry(team, service).await?;
            if json(&out) {
                print_json(&e);
            } else {
                print_entry(&e);
            }
            return Ok(0);
        }
        c @ (Command::Subscribe { .. }
        | Command::Unsubscribe { .. }
        | Command::Subscriptions { .. }
        | Command::Upgrade { .. }) => return super::subscribe::run(ctx, c).await,
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
        Command::App(AppCommand::Graph { app, format }) => {
            let g = ctx.client.app_graph(&app).await?;
            match format.as_str() {
                "dot" => outln!("{}", berth_core::graph::dot(&g).trim_end()),
                "svg" => outln!("{}", berth_core::graph::svg(&g).trim_end()),
                "json" => print_json(&g),
                _ => print_graph(&g),
            }
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

fn print_graph(g: &berth_core::api::AppGraph) {
    outln!("{}", g.app);
    if g.uses.is_empty() && g.used_by.is_empty() {
        outln!("  uses nothing from the market, and nothing uses it");
    }
    for e in &g.uses {
        let service = e
            .service
            .as_deref()
            .map(|s| format!("{s}: "))
            .unwrap_or_default();
        match (&e.app, e.via.as_str()) {
            (Some(app), _) => outln!("  {service}uses {} (served by {app})", e.entry),
            (None, "install") => outln!("  {service}runs an installed copy of {}", e.entry),
            (None, _) => outln!("  {service}uses {}", e.entry),
        }
    }
    for e in &g.used_by {
        outln!(
            "  used by {} (subscribes to {})",
            e.app.as_deref().unwrap_or("?"),
            e.entry
        );
    }
}

fn print_entry(e: &MarketEntry) {
    crate::output::write(
        crate::output::Stream::Stdout,
        format_args!("{}", entry_text(e)),
    );
}

/// `market show`'s text: the entry's README, description and names are another team's words,
/// so control characters are taken out ([`crate::output::plain`]).
fn entry_text(e: &MarketEntry) -> String {
    let mut o = String::new();
    w!(o, "entry     {}/{}", e.team, e.service);
    if !e.description.is_empty() {
        w!(o, "about     {}", e.description);
    }
    w!(o, "latest    {}", e.latest.as_deref().unwrap_or("-"));
    match &e.provider {
        Some(p) => w!(
            o,
            "provider  application {} service {} (version {}), {}",
            p.app,
            p.service,
            p.version,
            p.health
        ),
        None => w!(o, "provider  none (install it: x-berth.from_market)"),
    }
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
    w!(
        o,
        "traffic   {} calls/min, {:.1}% errors, p50 {}, p95 {}",
        e.calls_per_minute,
        e.error_rate * 100.0,
        ms(e.p50_ms),
        ms(e.p95_ms)
    );
    if let Some(p) = &e.provider {
        let deprecated = e.versions.iter().any(|v| {
            v.name == p.version && v.state == berth_core::lifecycle::VersionState::Deprecated
        });
        if deprecated {
            w!(
                o,
                "warning   the provider runs version {}, which is deprecated: subscribers should expect it to go",
                p.version
            );
        }
    }
    if !e.subscribers.is_empty() {
        w!(o, "used by   {}", e.subscribers.join(", "));
    }
    if !e.installs.is_empty() {
        w!(o, "installed {}", e.installs.join(", "));
    }
    w!(o, "versions");
    for v in &e.versions {
        w!(o, "  {:<16} {:<11} {}", v.name, v.state.to_string(), v.tag);
    }
    if let Some(c) = &e.contract {
        w!(
            o,
            "contract  {} operations",
            berth_core::contract::operation_count(c)
        );
    }
    if let Some(r) = &e.readme {
        o.push('\n');
        w!(o, "{r}");
    }
    crate::output::plain(&o)
}

fn print_review(r: &ReviewView) {
    crate::output::write(
        crate::output::Stream::Stdout,
        format_args!("{}", review_text(r)),
    );
}

/// `review show`'s text: notes, reasons, test names and the contract are other people's words,
/// so control characters are taken out ([`crate::output::plain`]).
fn review_text(r: &ReviewView) -> String {
    let mut o = String::new();
    let v = &r.version;
    let l = &r.lifecycle;
    w!(o, "version   {}:{}  ({})", v.service, v.name, l.state);
    w!(o, "image     {} {}", v.tag, v.digest);
    if let Some(size) = r.image_size {
        w!(o, "size      {:.1} MB", size as f64 / 1e6);
    }
    w!(o, "commit    {} by {}", v.commit, v.author);
    w!(o, "build     {}", v.build_id);
    if let Some(by) = &l.submitted_by {
        w!(
            o,
            "submitted by {by}: {}",
            l.submit_note.as_deref().unwrap_or("(no note)")
        );
    }
    if let Some(by) = &l.reviewed_by {
        w!(
            o,
            "reviewed by {by}: {}",
            l.review_reason.as_deref().unwrap_or("")
        );
    }
    o.push('\n');
    w!(o, "steps");
    for s in &r.steps {
        let exit = s
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        w!(
            o,
            "  {:<20} exit {:<4} {:.1} s",
            s.name,
            exit,
            s.duration_ms as f64 / 1000.0
        );
        if let Some(t) = &s.report {
            match &t.problem {
                Some(p) => w!(o, "    tests ({}): {p}", t.path),
                None => w!(
                    o,
                    "    tests ({}): {} passed, {} failed, {} skipped",
                    t.path,
                    t.passed,
                    t.failed,
                    t.skipped
                ),
            }
            for f in &t.failing {
                w!(o, "      failed: {f}");
            }
        }
    }
    o.push('\n');
    match r.contract_operations {
        Some(n) => w!(o, "contract  {n} operations; {}", r.contract_summary),
        None => w!(o, "contract  {}", r.contract_summary),
    }
    for c in &r.contract_changes {
        w!(
            o,
            "  {} {:<28} {}",
            if c.breaking { "BREAKING" } else { "        " },
            c.operation,
            c.detail
        );
    }
    crate::output::plain(&o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESC: &str = "\x1b]0;owned\x07\x1b[2J\r";

    #[test]
    fn review_show_takes_control_characters_out_of_other_peoples_text() {
        let view: ReviewView = serde_json::from_value(serde_json::json!({
            "version": {"service": "api", "name": "v1", "digest": "sha256:1", "tag": "t",
                "commit": "c", "author": format!("ann{ESC}"), "build_id": 1, "created_at": "x"},
            "lifecycle": {"state": "approved", "submitted_by": "ann",
                "submit_note": format!("note{ESC}"), "reviewed_by": "bob",
                "review_reason": format!("fine{ESC}")},
            "steps": [{"name": "test", "exit_code": 0, "duration_ms": 1, "report": {
                "path": "out/junit.xml", "passed": 0, "failed": 1, "skipped": 0,
                "failing": [format!("case{ESC}")]}}],
            "contract_operations": 1,
            "contract_changes": [{"kind": "operation_added", "operation": format!("GET /x{ESC}"),
                "detail": format!("d{ESC}"), "breaking": false}],
            "breaking_changes": 0,
            "contract_summary": "s"
        }))
        .unwrap();
        let text = review_text(&view);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("submitted by ann: note?]0;owned??[2J?"),
            "{text}"
        );
        assert!(text.contains("failed: case?]0;owned"), "{text}");
    }

    #[test]
    fn market_show_and_lists_take_control_characters_out() {
        let entry: MarketEntry = serde_json::from_value(serde_json::json!({
            "team": "shop", "service": "api", "description": format!("about{ESC}"),
            "versions": [], "calls_per_minute": 0, "error_rate": 0.0,
            "readme": format!("# Readme{ESC}\n\nline two")
        }))
        .unwrap();
        let text = entry_text(&entry);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("# Readme?]0;owned??[2J?\n\nline two"),
            "{text}"
        );
        let table = crate::commands::table_text(
            &["VERSION", "NOTE"],
            vec![vec!["api:v1".into(), format!("a\nb{ESC}")]],
        );
        assert_eq!(table, "VERSION  NOTE\napi:v1   a b?]0;owned??[2J?\n");
    }

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
