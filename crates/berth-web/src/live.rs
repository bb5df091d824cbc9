//! Live parts by server-sent events (docs/dashboard.md#live-parts): an application's logs, a
//! build's log to its end, an application's status. Each has a plain page that shows the same
//! text without JavaScript; `assets/berth.js` subscribes to the `…/events` URL a page names in
//! `data-events`.

use crate::{perm, session, Session};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use berth_api::error::ApiError;
use berth_api::AppState;
use berth_core::ErrorCode;
use futures_util::{Stream, StreamExt};

/// One SSE message per line of `text` (`data:` cannot hold a line break).
#[must_use]
pub fn data_event(text: &str) -> String {
    let mut ev = String::new();
    for part in text.trim_end_matches(['\n', '\r']).split('\n') {
        ev.push_str("data: ");
        ev.push_str(part.trim_end_matches('\r'));
        ev.push('\n');
    }
    ev.push('\n');
    ev
}

/// The `end` event: the stream is complete (the page stops listening).
pub const END_EVENT: &str = "event: end\ndata: \n\n";

/// An event stream answer.
pub fn sse(events: impl Stream<Item = String> + Send + 'static) -> Response {
    let body = Body::from_stream(events.map(Ok::<_, std::io::Error>));
    (
        [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Bytes to whole lines (the last one without its line break, if the stream ends without one).
pub fn lines<S, E>(chunks: S) -> impl Stream<Item = String> + Send
where
    S: Stream<Item = Result<Vec<u8>, E>> + Send + Unpin + 'static,
    E: Send + 'static,
{
    futures_util::stream::unfold(
        (chunks, Vec::<u8>::new(), false),
        |(mut chunks, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line).into_owned();
                    return Some((text, (chunks, buf, false)));
                }
                match chunks.next().await {
                    Some(Ok(c)) => buf.extend_from_slice(&c),
                    Some(Err(_)) | None => {
                        if buf.is_empty() {
                            return None;
                        }
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        buf.clear();
                        return Some((text, (chunks, buf, true)));
                    }
                }
            }
        },
    )
}

/// The log lines of every current replica of `service` (global `app`), `tail` lines back,
/// following when asked; with several replicas each line starts with `service.slot | `.
pub async fn app_log_lines(
    s: &AppState,
    app: &str,
    service: &str,
    tail: u64,
    follow: bool,
) -> Result<futures_util::stream::BoxStream<'static, String>, ApiError> {
    let targets = s.cp.log_targets(app, service).await?;
    let prefix = targets.len() > 1;
    let mut streams = Vec::new();
    for t in targets {
        let slot = t.slot;
        let st = s.cp.open_logs(&t, follow, Some(tail), false).await?;
        let label = if prefix {
            format!("{service}.{slot} | ")
        } else {
            String::new()
        };
        let chunks = st.map(|c| c.map(|c| c.data.to_vec())).boxed();
        streams.push(lines(chunks).map(move |l| format!("{label}{l}")).boxed());
    }
    Ok(futures_util::stream::select_all(streams).boxed())
}

/// The session of an event stream request: its cookie (no form, so no token: it only reads).
pub fn stream_session(s: &AppState, headers: &http::HeaderMap) -> Result<Session, ApiError> {
    session::session(&s.access, headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "not logged in, or the session ended: log in at /login",
        )
    })
}

/// `GET /apps/{app}/status/events`: the application's health and replicas now, then every
/// two seconds (as long as the page listens).
pub fn status_events(s: AppState, global: String) -> Response {
    let stream = futures_util::stream::unfold((s, global, true), |(s, global, first)| async move {
        if !first {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        let text = status_line(&s, &global)?;
        Some((data_event(&text), (s, global, false)))
    });
    sse(stream)
}

/// "healthy · revision 3 (converged) · web 2/2": what the status event says.
#[must_use]
pub fn status_line(s: &AppState, global: &str) -> Option<String> {
    let st = s.cp.status(global).ok()?;
    let desired = s.cp.desired_replicas(global).ok()?;
    let per: Vec<String> = desired
        .iter()
        .map(|(name, n)| {
            let healthy = st
                .services
                .iter()
                .find(|x| &x.name == name)
                .map_or(0, |x| x.healthy);
            format!("{name} {healthy}/{n}")
        })
        .collect();
    Some(format!(
        "{} · revision {} ({}) · healthy/desired: {}",
        st.health,
        st.revision,
        st.revision_status,
        per.join(", ")
    ))
}

/// The text of one event line, as the overview shows it.
#[must_use]
pub fn event_text(team: &berth_api::team::Team, e: &berth_core::api::EventView) -> String {
    let subject = if e.subject.starts_with("berth/") {
        e.subject.clone()
    } else {
        team.show(&e.subject)
    };
    format!("{} {}: {}", e.time, subject, team.text(&e.message))
}

/// `GET /events/stream?team=T&after=N`: the team's events with an id above `N` (default: from
/// now), at once and then every two seconds, one `data:` line each.
pub fn team_events(s: AppState, team: berth_api::team::Team, after: Option<u64>) -> Response {
    let name = team.team.clone();
    let after = after.unwrap_or_else(|| {
        let visible = |t: Option<&str>| t == Some(name.as_str());
        s.cp.events(0, 1, &visible).last().map_or(0, |e| e.id)
    });
    let stream = futures_util::stream::unfold(
        (s, team, after, true),
        |(s, team, after, first)| async move {
            if !first {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            let name = team.team.clone();
            let visible = |t: Option<&str>| t == Some(name.as_str());
            let list =
                s.cp.events(after, berth_controlplane::events::CAPACITY, &visible);
            let next = list.last().map_or(after, |e| e.id);
            let text: String = list
                .iter()
                .map(|e| data_event(&event_text(&team, e)))
                .collect();
            // An empty poll sends a comment: the connection is checked, nothing is shown.
            let chunk = if text.is_empty() {
                ": \n\n".to_string()
            } else {
                text
            };
            Some((chunk, (s, team, next, false)))
        },
    );
    sse(stream)
}

/// The team a read of `route` acts in, or the error as an SSE-less answer.
pub fn read_scope(
    s: &AppState,
    sess: &Session,
    route: &str,
    team: Option<&str>,
) -> Result<berth_api::team::Team, ApiError> {
    perm::scope(&s.access, &sess.principal, "GET", route, team)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_one_data_field_per_line() {
        assert_eq!(data_event("a\n"), "data: a\n\n");
        assert_eq!(data_event("a\r\nb"), "data: a\ndata: b\n\n");
    }

    #[tokio::test]
    async fn chunks_become_lines() {
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, ()>(b"one\ntw".to_vec()),
            Ok(b"o\nthree".to_vec()),
        ]);
        let got: Vec<String> = lines(chunks).collect().await;
        assert_eq!(got, vec!["one\n", "two\n", "three"]);
    }
}
