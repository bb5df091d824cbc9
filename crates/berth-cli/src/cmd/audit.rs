//! `berth audit [--user U] [--since 1h] [--limit N] [-o json]`: the audit log, oldest first,
//! fetched page by page (`?after=`).

use super::Ctx;
use crate::client::AuditQuery;
use crate::commands::{json, parse_duration, print_json, table};
use crate::AuditArgs;

/// The most rows asked for in one page.
const PAGE: u64 = 500;

pub(crate) async fn run(ctx: &Ctx, args: AuditArgs) -> anyhow::Result<i32> {
    let since = match args.since.as_deref() {
        Some(d) => Some(since_time(
            parse_duration(d)?,
            time::OffsetDateTime::now_utc(),
        )?),
        None => None,
    };
    let mut q = AuditQuery {
        user: args.user,
        since,
        after: None,
        limit: None,
    };
    let mut rows = Vec::new();
    loop {
        let want = args
            .limit
            .map_or(PAGE, |l| (l - rows.len() as u64).min(PAGE));
        q.limit = Some(want);
        let page = ctx.client.audit(&q).await?;
        let got = page.entries.len();
        rows.extend(page.entries);
        if let Some(l) = args.limit {
            rows.truncate(usize::try_from(l).unwrap_or(usize::MAX));
            if rows.len() as u64 >= l {
                break;
            }
        }
        match page.next_after {
            Some(next) if got > 0 && Some(next) != q.after => q.after = Some(next),
            _ => break,
        }
    }
    if json(&args.output) {
        print_json(&rows);
        return Ok(0);
    }
    table(
        &[
            "TIME", "USER", "ACTION", "OBJECT", "STATUS", "CODE", "SOURCE",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.time.clone(),
                    r.user
                        .clone()
                        .or_else(|| r.token.clone())
                        .unwrap_or_else(|| "-".into()),
                    r.action.clone(),
                    r.object.clone(),
                    r.status.to_string(),
                    r.code.clone().unwrap_or_else(|| "-".into()),
                    r.source.clone(),
                ]
            })
            .collect(),
    );
    Ok(0)
}

/// `now - ago` as RFC 3339 (what `?since=` takes).
fn since_time(ago: std::time::Duration, now: time::OffsetDateTime) -> anyhow::Result<String> {
    let t = now
        .checked_sub(time::Duration::try_from(ago)?)
        .ok_or_else(|| anyhow::anyhow!("--since reaches too far back"))?;
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_an_rfc3339_time_that_long_ago() {
        let now = time::macros::datetime!(2026-06-01 12:00 UTC);
        assert_eq!(
            since_time(parse_duration("1h").unwrap(), now).unwrap(),
            "2026-06-01T11:00:00Z"
        );
        assert_eq!(
            since_time(parse_duration("2d").unwrap(), now).unwrap(),
            "2026-05-30T12:00:00Z"
        );
        assert!(since_time(std::time::Duration::from_secs(u64::MAX / 2), now).is_err());
    }
}
