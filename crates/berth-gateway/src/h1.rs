//! The fast path: Berth's own HTTP/1.1 loop for the common request, from the client's bytes to
//! the replica's and back, in the connection's task, with no HTTP library in between.
//!
//! Why it exists: with hyper on both sides, a proxied request costs two dispatchers, a channel
//! hand-off to the upstream connection's task and two header maps; that user-space work made
//! Berth cost 1.10–1.14× nginx's CPU per request (docs/benchmarks.md §4). Here a request is
//! parsed once with `httparse` into borrowed slices, checked by the policy layers
//! ([`proxy::admit`], shared with the general path), written upstream as bytes on a pooled
//! socket this task reads and writes itself, and the answer's head is parsed once and written
//! back; the body is relayed as it comes. See docs/gateway-fast-path.md for the design.
//!
//! What it takes: HTTP/1.1 requests in origin form with one `Host`, framed by `Content-Length`
//! (or without a body) with a body of at most [`BODY_MAX`] bytes, no `Expect`, no upgrade, on a
//! route whose upstream speaks HTTP/1.1. Anything else — an HTTP/2 preface, HTTP/1.0, chunked
//! or large bodies, WebSocket, refused framing, h2c routes — goes to the general path: the
//! connection, with the bytes not yet answered, is handed back ([`serve`] returns it) and served
//! by hyper behind the framing guard from that request on. Every earlier request was answered
//! completely, so the hand-off is at a message boundary.
//!
//! Rules this module keeps (the general path's rules hold here too, see [`crate::proxy`]):
//! * The head is parsed once; nothing in it is copied except into the upstream request.
//! * The path is normalised ([`crate::path`]) before routing and the normalised path is what
//!   goes upstream; a refused path is a 400 `bad_request`. A normal path is used as it is.
//! * The request body (at most [`BODY_MAX`]) is read completely before the request goes
//!   upstream, so a slow client never holds a replica's connection, and a request found unsent
//!   (a pooled connection the replica had closed) can be sent again as it is.
//! * Hop-by-hop headers (and those `Connection` names), inbound `X-Berth-*`, `X-Forwarded-*`
//!   and `X-Request-Id` never go upstream as the client sent them; the gateway's own follow.
//! * The answer's hop-by-hop headers are dropped; `Content-Length` and chunked bodies are
//!   relayed byte for byte (chunks walked to find the end, trailers included); a body framed by
//!   the end of the connection is relayed and the client connection closed after it.
//! * An upstream connection goes back to the pool only when its answer was read to the exact end
//!   and the replica did not ask to close it; a broken relay closes both connections.
//! * An incomplete head has `header_read_timeout`; an idle keep-alive connection [`IDLE_TIMEOUT`];
//!   on shutdown an idle connection closes at once and a busy one after its answer.

use crate::body::ProxyBody;
use crate::breaker::Outcome;
use crate::error::error_response;
use crate::guard::{self, Chunk, Next, MAX_HEADERS};
use crate::pool::{self, EndpointState, InFlight, RawConn};
use crate::proxy::{self, Attempt, ClientFault, Done, Front, SendFailure, Upstreams};
use crate::{headers, retry, Inner};
use berth_core::ErrorCode;
use berth_core::UpstreamProtocol;
use http::header::HeaderValue;
use http::Response;
use std::borrow::Cow;
use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Request bodies up to this size are read whole before the request goes upstream; a larger
/// one (or a chunked one) goes to the general path, which streams it.
pub const BODY_MAX: usize = 64 * 1024;

/// An idle keep-alive client connection is closed after this long (nginx's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The client connection's first read buffer.
const CLIENT_BUF: usize = 8 * 1024;

/// An upstream connection's read buffer.
const UPSTREAM_BUF: usize = 16 * 1024;

/// A pooled connection idle at least this long that closes under a request without answering
/// was closed by the replica's keep-alive timeout: the request is sent again at once.
const STALE_AFTER: Duration = Duration::from_millis(250);

/// Largest answer head accepted from a replica.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Serve `io` on the fast path until it closes, or hand it back with the bytes read but not yet
/// answered (`Some`) for the general path.
pub(crate) async fn serve<I>(
    inner: &Inner,
    mut io: I,
    client: SocketAddr,
    secure: bool,
    shutdown: &CancellationToken,
) -> Option<(I, Vec<u8>)>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let max_head = inner.config.max_header_bytes.max(8192);
    let mut c = ClientBuf {
        buf: vec![0; CLIENT_BUF],
        start: 0,
        end: 0,
        cap: max_head + BODY_MAX,
    };
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut up: Vec<u8> = Vec::with_capacity(1024);
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let mut first = true;
    loop {
        // A complete head (and, once known, body) at `c.start`.
        let mut head_deadline: Option<Instant> = None;
        let head_len = loop {
            let data = c.data();
            if first && !data.is_empty() {
                let n = data.len().min(4);
                if guard::H2_PREFACE[..n] == data[..n] {
                    if n == 4 {
                        return Some(c.hand_back(io));
                    }
                } else {
                    first = false;
                }
            }
            if !first || data.is_empty() {
                if let Some(n) = head_end(data) {
                    if n > max_head {
                        return Some(c.hand_back(io));
                    }
                    break n;
                } else if data.len() > max_head {
                    return Some(c.hand_back(io));
                }
            }
            let idle = data.is_empty();
            if idle && shutdown.is_cancelled() {
                return None;
            }
            let deadline = if idle {
                Instant::now() + IDLE_TIMEOUT
            } else {
                *head_deadline
                    .get_or_insert_with(|| Instant::now() + inner.config.header_read_timeout)
            };
            if !read_client(
                &mut io,
                &mut c,
                sleep.as_mut(),
                cancelled.as_mut(),
                idle,
                deadline,
            )
            .await
            {
                return None;
            }
        };
        first = false;
        match one_request(
            inner, &mut io, &c, &mut out, &mut up, head_len, client, secure,
        )
        .await
        {
            Step::Next { consumed } => c.consume(consumed),
            Step::Close => return None,
            Step::Body(n) => {
                // The body is not all here yet: wait for it, then parse again.
                let deadline = Instant::now() + inner.config.header_read_timeout;
                while c.data().len() < head_len + n {
                    if !read_client(
                        &mut io,
                        &mut c,
                        sleep.as_mut(),
                        cancelled.as_mut(),
                        false,
                        deadline,
                    )
                    .await
                    {
                        return None;
                    }
                }
            }
            Step::HandBack => return Some(c.hand_back(io)),
        }
        if shutdown.is_cancelled() && c.data().is_empty() {
            return None;
        }
    }
}

/// The client's bytes: `buf[start..end]` read but not yet answered.
struct ClientBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The most `buf` may grow to: the largest head plus the largest fast-path body.
    cap: usize,
}

impl ClientBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into: move the unread bytes to the front, or grow up to `cap`.
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else if self.buf.len() < self.cap {
            let len = (self.buf.len() * 2).min(self.cap);
            self.buf.resize(len, 0);
        }
    }

    fn hand_back<I>(&self, io: I) -> (I, Vec<u8>) {
        (io, self.data().to_vec())
    }
}

/// Read once from the client into `c` (after making room), waiting until `deadline` (and, when
/// `idle`, until shutdown). The timer is armed only when the read has to wait. `false`: end of
/// stream, an error, the deadline, shutdown while idle, or no room left; the connection closes.
async fn read_client<I: AsyncRead + Unpin>(
    io: &mut I,
    c: &mut ClientBuf,
    mut sleep: Pin<&mut tokio::time::Sleep>,
    mut cancelled: Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
    idle: bool,
    deadline: Instant,
) -> bool {
    c.make_room();
    if c.end == c.buf.len() {
        // Full and not growable: a head or body larger than allowed (checked by the caller).
        return false;
    }
    let mut armed = false;
    std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut c.buf[c.end..]);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                c.end += n;
                return Poll::Ready(n > 0);
            }
            Poll::Ready(Err(_)) => return Poll::Ready(false),
            Poll::Pending => {}
        }
        if !armed {
            sleep.as_mut().reset(deadline);
            armed = true;
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        if idle && cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// The length of the head at the start of `data` (through its blank line), if complete.
/// Accepts bare-LF line ends as `httparse` does.
fn head_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &data[from..]) {
        let i = from + i;
        if i > 0 && data[i - 1] == b'\n' {
            return Some(i + 1);
        }
        if i > 1 && data[i - 1] == b'\r' && data[i - 2] == b'\n' {
            return Some(i + 1);
        }
        from = i + 1;
    }
    None
}

/// What became of one request.
enum Step {
    /// Answered; the connection stays open. `consumed`: its bytes.
    Next { consumed: usize },
    /// Answered (or not answerable); close the connection.
    Close,
    /// Its body (this many bytes) is not all here yet.
    Body(usize),
    /// Not fast-path material: hand the connection to the general path from this request on.
    HandBack,
}

/// What the head says, beyond what `httparse` gives directly.
#[derive(Default)]
struct HeadInfo<'a> {
    host: Option<&'a [u8]>,
    hosts: u8,
    authorization: Option<&'a [u8]>,
    request_id: Option<&'a [u8]>,
    /// `Connection: close`.
    close: bool,
    /// `Connection` names other headers (they are dropped too).
    names_headers: bool,
    expect: bool,
    berth: bool,
}

fn head_info<'a>(req: &httparse::Request<'_, 'a>) -> HeadInfo<'a> {
    let mut info = HeadInfo::default();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                info.host = Some(h.value);
                info.hosts = info.hosts.saturating_add(1);
            }
            6 if name.eq_ignore_ascii_case(b"expect") => info.expect = true,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        info.close = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        info.names_headers = true;
                    }
                }
            }
            12 if name.eq_ignore_ascii_case(b"x-request-id") => info.request_id = Some(h.value),
            13 if name.eq_ignore_ascii_case(b"authorization") => info.authorization = Some(h.value),
            _ => {}
        }
        if name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"x-berth-") {
            info.berth = true;
        }
    }
    info
}

/// Is `name` a hop-by-hop header (RFC 9110 §7.6.1)? Also `Transfer-Encoding`, which each side
/// frames for itself.
fn hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Is `name` listed in one of the `Connection` headers of `headers`?
fn named_by_connection(headers: &[httparse::Header<'_>], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
}

/// A header value as text, if it is visible ASCII (what `HeaderValue::to_str` accepts).
fn text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|b| *b == b'\t' || (b' '..0x7f).contains(b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// Parse, check, admit and proxy the request whose head is the first `head_len` bytes of `c`.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn one_request<I>(
    inner: &Inner,
    io: &mut I,
    c: &ClientBuf,
    out: &mut Vec<u8>,
    up: &mut Vec<u8>,
    head_len: usize,
    client: SocketAddr,
    secure: bool,
) -> Step
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let data = c.data();
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(&data[..head_len], &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Step::HandBack,
    }
    let body_len = match guard::check_head(&req) {
        Ok(Next::Body(n)) => match usize::try_from(n) {
            // Over the limit: the general path answers 413 without reading the body.
            Ok(n) if n <= BODY_MAX && n as u64 <= inner.config.max_body_bytes => n,
            _ => return Step::HandBack,
        },
        _ => return Step::HandBack,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Step::HandBack;
    };
    let info = head_info(&req);
    if info.hosts != 1 || info.expect || !target.starts_with('/') {
        return Step::HandBack;
    }
    if data.len() < head_len + body_len {
        return Step::Body(body_len);
    }
    let body = &data[head_len..head_len + body_len];
    let consumed = head_len + body_len;
    let head_request = method == "HEAD";

    let rid = match info.request_id {
        Some(v) if valid_request_id(v) => {
            HeaderValue::from_bytes(v).unwrap_or_else(|_| headers::new_request_id())
        }
        _ => headers::new_request_id(),
    };
    let host = info.host.and_then(text);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Routed on and forwarded with the normalised path (crate::path); the common path is
    // borrowed as it is.
    let normal = crate::path::normalize(path);
    let (route_path, target) = match &normal {
        Ok(Cow::Owned(p)) => (
            p.as_str(),
            Cow::Owned(match query {
                Some(q) => format!("{p}?{q}"),
                None => p.clone(),
            }),
        ),
        _ => (path, Cow::Borrowed(target)),
    };
    let snapshot = inner.snapshot.load_full();
    let found = match normal {
        Ok(_) => snapshot.find_index(host, route_path),
        Err(_) => None,
    };
    if found.is_some_and(|i| snapshot.table.routes[i].protocol == UpstreamProtocol::H2c) {
        return Step::HandBack;
    }
    let log = tracing::enabled!(target: proxy::ACCESS_LOG, tracing::Level::INFO);
    let mut done = Done {
        log,
        ..Done::default()
    };
    let front = Front {
        host,
        path: route_path,
        path_and_query: &target,
        content_length: Some(body_len as u64),
        authorization: info.authorization,
        found: Some(found),
    };
    let close_requested = info.close;
    let admitted = match normal {
        Ok(_) => proxy::admit(inner, &snapshot, client, secure, &front, &rid, &mut done).await,
        Err(refused) => Err(error_response(
            ErrorCode::BadRequest,
            refused.message(),
            &rid,
        )),
    };
    // Metrics are counted once the status is known, before the client sees the answer (as on
    // the general path): the latency is the time to the answer's head, and whoever has the
    // answer finds it counted.
    let route = done.route;
    let counted = |status: u16| {
        let elapsed = started.elapsed();
        proxy::record(inner, &snapshot, route, status, elapsed);
        elapsed
    };
    let (status, keep, elapsed) = match admitted {
        Err(answer) => {
            let status = answer.status().as_u16();
            let elapsed = counted(status);
            let closing = write_answer(out, &answer, head_request);
            let ok = io.write_all(out).await.is_ok();
            (status, ok && !closing, elapsed)
        }
        Ok(mut admitted) => {
            let index = admitted.index;
            let (route, state) = (&snapshot.table.routes[index], &snapshot.routes[index]);
            let service = &state.shared.service;
            // The upstream request: head (+ body), built once.
            up.clear();
            let rewritten = headers::upstream_path(route, route_path, query);
            write_request_head(
                up,
                method,
                rewritten.as_deref().unwrap_or(&target),
                req.headers,
                &info,
                client,
                secure,
                &rid,
                admitted.identity.as_deref(),
            );
            up.extend_from_slice(body);
            let called = Instant::now();
            let upstream = H1 {
                idempotent: retry::idempotent_str(method),
                bodiless: body_len == 0,
                head_request,
                idle_timeout: inner.config.pool_idle_timeout,
                req: std::marker::PhantomData,
            };
            let total = proxy::total_timeout(inner, &route.policy);
            let exchange = proxy::attempts(
                &upstream,
                inner,
                &route.policy,
                state.endpoints.as_ref(),
                state.next_start(),
                service,
                &up[..],
            );
            let exchange = std::pin::pin!(exchange);
            let result = match tokio::time::timeout(total, exchange).await {
                Ok(r) => r,
                Err(_) => Err(proxy::Failure::Timeout),
            };
            let limiter = state.shared.limiter.as_deref();
            let (outcome, status, keep, elapsed) = match result {
                Ok(answer) => {
                    let failed = retry::failure_status(answer.status);
                    let slow = proxy::slow_call(service, &admitted, called);
                    if done.log {
                        done.upstream = Some(answer.guard.endpoint().id.clone());
                    }
                    let status = answer.status;
                    let elapsed = counted(status);
                    let fields = limiter.zip(admitted.allowed.as_ref());
                    let relayed =
                        relay(io, out, answer, &rid, fields, close_requested, inner).await;
                    let outcome = match relayed {
                        Relayed::Broken => Outcome::Abandoned,
                        _ if failed => Outcome::Failure,
                        _ => Outcome::Success { slow },
                    };
                    (
                        outcome,
                        status,
                        matches!(relayed, Relayed::KeepAlive),
                        elapsed,
                    )
                }
                Err(failure) => {
                    let (outcome, mut answer) = proxy::failure_answer(failure, &rid);
                    if let (Some(l), Some(a)) = (limiter, &admitted.allowed) {
                        proxy::rate_limit_fields(l, a, answer.headers_mut());
                    }
                    let status = answer.status().as_u16();
                    let elapsed = counted(status);
                    let closing = write_answer(out, &answer, head_request);
                    let ok = io.write_all(out).await.is_ok();
                    (outcome, status, ok && !closing, elapsed)
                }
            };
            if let Some(ticket) = admitted.ticket.take() {
                ticket.finish(outcome);
            }
            drop(admitted.permit.take());
            (status, keep, elapsed)
        }
    };
    if done.log {
        proxy::access_log(
            rid.to_str().unwrap_or("-"),
            method,
            host.unwrap_or("-"),
            path,
            status,
            done.upstream.as_deref(),
            elapsed,
        );
    }
    if keep && !close_requested {
        Step::Next { consumed }
    } else {
        Step::Close
    }
}

/// Is `v` an acceptable client-supplied request id (see [`headers::valid_request_id`])?
fn valid_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The request head sent upstream (see the module rules).
#[allow(clippy::too_many_arguments)]
fn write_request_head(
    up: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    info: &HeadInfo<'_>,
    client: SocketAddr,
    secure: bool,
    rid: &HeaderValue,
    identity: Option<&crate::auth::Identity>,
) {
    up.extend_from_slice(method.as_bytes());
    up.push(b' ');
    up.extend_from_slice(target.as_bytes());
    up.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff: Option<Vec<u8>> = None;
    for h in headers {
        let name = h.name.as_bytes();
        if hop_by_hop(name)
            || (name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"x-berth-"))
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-host")
            || name.eq_ignore_ascii_case(b"x-request-id")
            || (info.names_headers && named_by_connection(headers, name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            let v = h.value.trim_ascii();
            if !v.is_empty() {
                let x = xff.get_or_insert_with(Vec::new);
                x.extend_from_slice(v);
                x.extend_from_slice(b", ");
            }
            continue;
        }
        header(up, name, h.value);
    }
    let ip = client.ip().to_canonical();
    up.extend_from_slice(b"x-forwarded-for: ");
    if let Some(x) = xff {
        up.extend_from_slice(&x);
    }
    if let Some(v) = headers::client_value(ip) {
        up.extend_from_slice(v.as_bytes());
    }
    up.extend_from_slice(if secure {
        b"\r\nx-forwarded-proto: https\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n"
    });
    if let Some(h) = info.host {
        header(up, b"x-forwarded-host", h);
    }
    header(up, b"x-request-id", rid.as_bytes());
    if let Some(identity) = identity {
        up.extend_from_slice(&identity.lines);
    }
    up.extend_from_slice(b"\r\n");
}

/// One `name: value` header line, CRLF-terminated.
pub(crate) fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` value of the current second (Unix seconds, the formatted value).
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Serialize an answer the gateway made itself; `true` if it closes the connection.
fn write_answer(out: &mut Vec<u8>, answer: &Response<ProxyBody>, head_request: bool) -> bool {
    out.clear();
    let status = answer.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status.as_u16()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut closing = false;
    for (name, value) in answer.headers() {
        if name == http::header::CONNECTION {
            closing |= value.as_bytes().eq_ignore_ascii_case(b"close");
        }
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    // The gateway is the origin of this answer: it carries a Date (RFC 9110 §6.6.1), as the
    // general path's answers do.
    if !answer.headers().contains_key(http::header::DATE) {
        DATE.with(|date| {
            let mut date = date.borrow_mut();
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if date.0 != secs || date.1.is_empty() {
                let at = UNIX_EPOCH + Duration::from_secs(secs);
                *date = (secs, httpdate::fmt_http_date(at));
            }
            header(out, b"date", date.1.as_bytes());
        });
    }
    let body = answer.body().full_bytes();
    header(
        out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body);
    }
    closing
}

/// How the replica's answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the replica closes the connection.
    UntilClose,
}

/// The replica's answer up to its head: in `conn.buf[..filled]`, the head is `..head_len`.
pub(crate) struct Answer {
    conn: RawConn,
    guard: InFlight,
    head_len: usize,
    filled: usize,
    status: u16,
    framing: Framing,
    /// The replica keeps the connection open after this answer.
    reusable: bool,
}

/// Why an exchange failed after the request was written.
#[derive(Debug)]
pub(crate) enum UpError {
    /// The connection failed or closed; `received`: answer bytes that had arrived.
    Io {
        error: std::io::Error,
        received: usize,
    },
    /// The answer is not valid HTTP/1.1 (or its head is too large).
    Malformed(&'static str),
}

impl std::fmt::Display for UpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io { error, received } => {
                write!(f, "{error} (after {received} bytes of the answer)")
            }
            Self::Malformed(why) => f.write_str(why),
        }
    }
}

impl SendFailure for UpError {
    fn client_fault(&self) -> Option<ClientFault> {
        // The body was read completely before sending: a client fault cannot show up here.
        None
    }

    fn broken(&self) -> bool {
        matches!(self, Self::Io { received: 0, .. })
    }
}

/// The fast path's upstream exchange: one request's bytes on a pooled (or new) raw connection.
struct H1<'a> {
    idempotent: bool,
    bodiless: bool,
    head_request: bool,
    idle_timeout: Duration,
    req: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Upstreams for H1<'a> {
    type Req = &'a [u8];
    type Answer = Answer;
    type Error = UpError;
    type Template = &'a [u8];

    fn status(answer: &Answer) -> u16 {
        answer.status
    }

    fn template(&self, req: &&'a [u8]) -> Option<&'a [u8]> {
        (self.idempotent && self.bodiless).then_some(*req)
    }

    fn rebuild(&self, template: &&'a [u8]) -> &'a [u8] {
        template
    }

    async fn attempt(
        &self,
        inner: &Inner,
        endpoint: &EndpointState,
        guard: InFlight,
        req: &'a [u8],
        connect: Duration,
    ) -> Attempt<&'a [u8], Answer, UpError> {
        let h = self;
        loop {
            let (mut conn, pooled, idle) = match endpoint.checkout_raw(h.idle_timeout) {
                Some((conn, idle)) => (conn, true, idle),
                None => match pool::dial(endpoint.addr, connect).await {
                    Ok(stream) => (
                        RawConn {
                            stream,
                            buf: vec![0; UPSTREAM_BUF],
                        },
                        false,
                        Duration::ZERO,
                    ),
                    Err(e) => {
                        tracing::debug!(endpoint = %endpoint.id, addr = %endpoint.addr, error = %e, "gateway: trying the next replica");
                        return Attempt::Unsent(req);
                    }
                },
            };
            if let Err(error) = conn.stream.write_all(req).await {
                if pooled {
                    continue; // The replica had closed it: nothing was delivered.
                }
                return Attempt::Sent(UpError::Io { error, received: 0 });
            }
            match read_answer_head(&mut conn, h.head_request).await {
                Ok((head_len, filled, status, framing, reusable)) => {
                    let _ = inner;
                    return Attempt::Answer(Answer {
                        conn,
                        guard,
                        head_len,
                        filled,
                        status,
                        framing,
                        reusable,
                    });
                }
                // A connection that had been idle a while closed under a request with no answer
                // at all: the replica's keep-alive timeout closed it as the request was sent
                // (a close seen earlier is caught at checkout). Sent again on another
                // connection when that is safe twice over (idempotent, or no body). A connection
                // reused at once that breaks is a replica failing: `attempts` decides.
                Err(UpError::Io { received: 0, .. })
                    if pooled && idle >= STALE_AFTER && (h.idempotent || h.bodiless) => {}
                Err(e) => return Attempt::Sent(e),
            }
        }
    }
}

/// Read the answer's head into `conn.buf`, skipping `100`-class interim answers:
/// `(head_len, filled, status, framing, reusable)`.
async fn read_answer_head(
    conn: &mut RawConn,
    head_request: bool,
) -> Result<(usize, usize, u16, Framing, bool), UpError> {
    let mut filled = 0usize;
    let mut received = 0usize;
    loop {
        if filled == conn.buf.len() {
            if conn.buf.len() >= MAX_RESPONSE_HEAD {
                return Err(UpError::Malformed("the answer's head is too large"));
            }
            let len = conn.buf.len() * 2;
            conn.buf.resize(len, 0);
        }
        let n = match conn.stream.read(&mut conn.buf[filled..]).await {
            Ok(0) => {
                return Err(UpError::Io {
                    error: std::io::ErrorKind::UnexpectedEof.into(),
                    received,
                })
            }
            Ok(n) => n,
            Err(error) => return Err(UpError::Io { error, received }),
        };
        filled += n;
        received += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&conn.buf[..filled]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Err(UpError::Malformed("the answer is not valid HTTP/1.1")),
        };
        let status = resp.code.unwrap_or(0);
        if status == 101 {
            return Err(UpError::Malformed("an upgrade nobody asked for"));
        }
        if (100..200).contains(&status) {
            conn.buf.copy_within(head_len..filled, 0);
            filled -= head_len;
            continue;
        }
        let (framing, mut reusable) = answer_framing(&resp, status, head_request)?;
        reusable &= resp.version == Some(1);
        return Ok((head_len, filled, status, framing, reusable));
    }
}

/// The framing of an answer and whether the replica keeps the connection afterwards.
fn answer_framing(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    head_request: bool,
) -> Result<(Framing, bool), UpError> {
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut reusable = true;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or(UpError::Malformed("the answer's Content-Length is invalid"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(UpError::Malformed("the answer has conflicting lengths"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .map(<[u8]>::trim_ascii)
                .unwrap_or_default();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection")
            && h.value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            reusable = false;
        }
    }
    if head_request || status == 204 || status == 304 {
        return Ok((Framing::Empty, reusable));
    }
    Ok(match (chunked, length) {
        (Some(true), None) => (Framing::Chunked, reusable),
        // Transfer-Encoding wins over a length, but such a connection is not kept.
        (Some(true), Some(_)) => (Framing::Chunked, false),
        (Some(false), _) | (None, None) => (Framing::UntilClose, false),
        (None, Some(n)) => (Framing::Length(n), reusable),
    })
}

/// How relaying an answer ended.
enum Relayed {
    /// Complete; the client connection stays open.
    KeepAlive,
    /// Complete; the client connection closes (the body ran until the replica closed).
    Close,
    /// Cut short (either side failed): both connections close.
    Broken,
}

/// Write the answer's head (filtered, with the gateway's headers) and relay its body; pool the
/// upstream connection when it was read to the exact end.
async fn relay<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    answer: Answer,
    rid: &HeaderValue,
    fields: Option<(&crate::ratelimit::RateLimiter, &crate::ratelimit::Allowed)>,
    close_requested: bool,
    inner: &Inner,
) -> Relayed {
    let Answer {
        mut conn,
        guard,
        head_len,
        mut filled,
        status,
        framing,
        reusable,
    } = answer;
    let closing = close_requested || framing == Framing::UntilClose;
    out.clear();
    {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        if resp.parse(&conn.buf[..head_len]).is_err() {
            return Relayed::Broken;
        }
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        let names_headers = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && h.value.split(|b| *b == b',').any(|t| {
                    let t = t.trim_ascii();
                    !t.is_empty()
                        && !t.eq_ignore_ascii_case(b"close")
                        && !t.eq_ignore_ascii_case(b"keep-alive")
                })
        });
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            if hop_by_hop(name)
                || name.eq_ignore_ascii_case(b"x-request-id")
                || (names_headers && named_by_connection(resp.headers, name))
            {
                continue;
            }
            header(out, name, h.value);
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    header(out, b"x-request-id", rid.as_bytes());
    if let Some((limiter, allowed)) = fields {
        header(out, b"ratelimit-policy", limiter.policy_bytes());
        out.extend_from_slice(b"ratelimit: ");
        limiter.write_allowed(out, allowed);
        out.extend_from_slice(b"\r\n");
    }
    if closing {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");

    // The body: what came with the head first, then the rest as it arrives.
    let mut state = Body::of(framing);
    let mut at = head_len;
    let mut pending_out = true;
    loop {
        let (take, finished) = match state.walk(&conn.buf[at..filled]) {
            Some(step) => step,
            None => return Relayed::Broken,
        };
        if finished {
            // The answer has been read whole: the upstream connection goes back to the pool
            // (and the replica's in-flight count down) before the last client write, so the
            // next request, even this client's next one, finds it there.
            if !pending_out {
                out.clear();
            }
            out.extend_from_slice(&conn.buf[at..at + take]);
            if reusable && at + take == filled && !closing {
                guard
                    .endpoint()
                    .checkin_raw(conn, inner.config.max_idle_per_endpoint);
            }
            drop(guard);
            if !out.is_empty() && io.write_all(out).await.is_err() {
                return Relayed::Broken;
            }
            return if closing {
                Relayed::Close
            } else {
                Relayed::KeepAlive
            };
        }
        if pending_out {
            out.extend_from_slice(&conn.buf[at..at + take]);
            if io.write_all(out).await.is_err() {
                return Relayed::Broken;
            }
            pending_out = false;
        } else if take > 0 && io.write_all(&conn.buf[at..at + take]).await.is_err() {
            return Relayed::Broken;
        }
        at = 0;
        filled = match conn.stream.read(&mut conn.buf[..]).await {
            Ok(0) if state == Body::UntilClose => {
                state = Body::Done;
                0
            }
            Ok(0) | Err(_) => return Relayed::Broken,
            Ok(n) => n,
        };
    }
}

/// Where the relay is in the answer's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

impl Body {
    fn of(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunk::START),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    /// Walk `data`: how many of its bytes belong to the body, and whether the body ended.
    /// `None`: broken chunking.
    fn walk(&mut self, data: &[u8]) -> Option<(usize, bool)> {
        match *self {
            Body::Done => Some((0, true)),
            Body::UntilClose => Some((data.len(), false)),
            Body::Length(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                let left = n - take as u64;
                *self = if left == 0 {
                    Body::Done
                } else {
                    Body::Length(left)
                };
                Some((take, left == 0))
            }
            Body::Chunked(chunk) => {
                let (take, next) = guard::walk_chunks(chunk, data)?;
                match next {
                    Some(chunk) => {
                        *self = Body::Chunked(chunk);
                        Some((take, false))
                    }
                    None => {
                        *self = Body::Done;
                        Some((take, true))
                    }
                }
            }
        }
    }
}

/// A connection handed back by the fast path: the bytes it had read come first.
pub(crate) struct Rewind<I> {
    prefix: Vec<u8>,
    at: usize,
    io: I,
}

impl<I> Rewind<I> {
    pub(crate) fn new(io: I, prefix: Vec<u8>) -> Self {
        Self { prefix, at: 0, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: a\r\n\r\nrest"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nhost: a\n\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: a\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn bodies_are_walked_to_their_end() {
        let mut b = Body::of(Framing::Length(5));
        assert_eq!(b.walk(b"abc"), Some((3, false)));
        assert_eq!(b.walk(b"defg"), Some((2, true)));
        let mut b = Body::of(Framing::Chunked);
        assert_eq!(b.walk(b"3\r\nabc\r\n"), Some((8, false)));
        assert_eq!(b.walk(b"0\r\nx-t: 1\r\n\r\nNEXT"), Some((13, true)));
        let mut b = Body::of(Framing::Chunked);
        assert_eq!(b.walk(b"zz\r\n"), None);
        assert_eq!(Body::of(Framing::Empty).walk(b"x"), Some((0, true)));
    }
}
