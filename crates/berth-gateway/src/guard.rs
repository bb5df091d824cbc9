//! The front door of every HTTP/1 client connection: request framing is checked before hyper
//! parses anything, so malformed and smuggling-prone requests are refused in Berth's error shape.
//!
//! hyper is lenient where a gateway must not be: a request with both `Content-Length` and
//! `Transfer-Encoding` is accepted (chunked wins, the length is dropped), and hyper's own answers
//! to bad heads (400, 431) have no Berth body. [`Guard`] wraps the client connection and reads
//! ahead of hyper. It tracks HTTP/1.1 message framing (heads parsed with `httparse`, bodies
//! skipped by `Content-Length` or by walking the chunk sizes) and hands hyper only complete
//! heads it has checked. When a head is refused it hands hyper, instead of it, a fixed synthetic
//! request and then nothing more, and records the refusal for the connection's service
//! ([`Verdict`]): the proxy answers that request with the Berth error (`bad_request` 400 or
//! `headers_too_large` 431) and `Connection: close`. Every earlier request on the connection is
//! answered first, as usual.
//!
//! Refused: a head that does not parse; more than [`MAX_HEADERS`] headers or a head longer than
//! the limit (431); `Content-Length` together with `Transfer-Encoding`; several different
//! `Content-Length`s or one that is not a number; a `Transfer-Encoding` whose last coding is not
//! `chunked`, or any `Transfer-Encoding` on HTTP/1.0; an HTTP/1.1 head without `Host`, any head
//! with several `Host`s or with a `Host` that is not `host[:port]` characters (RFC 9112 §3.2;
//! HTTP/1.0 may omit it). A head still incomplete after the header read timeout ends the
//! connection (slow clients cannot hold it).
//!
//! Rules this module keeps:
//! * hyper never sees part of a head: bytes of an incomplete head stay here.
//! * After an HTTP/2 preface (h2c), an upgrade request (`Upgrade` header or `CONNECT`), or
//!   chunking this guard cannot follow, it steps aside and passes bytes unchanged (hyper and the
//!   proxy still check what they parse: broken chunking is a 400 from the body stream).
//! * Bodies are never parsed beyond their framing and never buffered beyond one read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this many headers in one request head (hyper's own limit is 100).
pub const MAX_HEADERS: usize = 100;

/// The request hyper is handed in place of a refused head.
const SYNTHETIC: &[u8] = b"GET / HTTP/1.1\r\nhost: berth.invalid\r\n\r\n";

/// The HTTP/2 connection preface (h2c with prior knowledge).
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes read from the client at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or smuggling-prone framing: 400 `bad_request`.
    BadRequest(&'static str),
    /// The head is larger than allowed: 431 `headers_too_large`.
    TooLarge,
}

/// What the guard of one connection tells that connection's service.
#[derive(Default)]
pub struct Verdict {
    /// Requests the service has seen on this connection.
    seen: AtomicU64,
    /// 0, or (index of the synthetic request + 1) << 8 | refusal.
    refused: AtomicU64,
}

const REFUSALS: &[Refusal] = &[
    Refusal::TooLarge,
    Refusal::BadRequest("the request head is malformed"),
    Refusal::BadRequest("Content-Length and Transfer-Encoding together are refused"),
    Refusal::BadRequest("conflicting or invalid Content-Length"),
    Refusal::BadRequest("Transfer-Encoding must end with chunked (HTTP/1.1 only)"),
    Refusal::BadRequest("an HTTP/1.1 request needs a Host header"),
    Refusal::BadRequest("more than one Host header"),
    Refusal::BadRequest("the Host header is not a valid host"),
];

impl Verdict {
    /// Called by the service once per request, in order: the refusal if this request is the
    /// guard's stand-in for a refused head.
    pub fn next_request(&self) -> Option<Refusal> {
        let index = self.seen.fetch_add(1, Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Acquire);
        if refused == 0 || refused >> 8 != index + 1 {
            return None;
        }
        let kind = usize::try_from(refused & 0xff).unwrap_or(0);
        REFUSALS.get(kind).copied()
    }

    fn refuse(&self, index: u64, refusal: Refusal) {
        let kind = REFUSALS.iter().position(|r| *r == refusal).unwrap_or(1);
        self.refused
            .store(((index + 1) << 8) | kind as u64, Ordering::Release);
    }
}

/// Where the scanner is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a request head.
    Head,
    /// Inside a body with this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not checking any more: everything passes.
    Off,
    /// A head was refused: nothing more is read from the client.
    Refused,
}

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Reading the hex size (`digits` so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size.
    SizeSpace {
        size: u64,
    },
    /// A chunk extension, up to CR.
    Ext {
        size: u64,
    },
    /// Expecting LF after the size line.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    EndLf,
}

impl Chunk {
    /// At the start of a chunked body.
    pub(crate) const START: Chunk = Chunk::Size { size: 0, digits: 0 };
}

/// One step of the chunk walker over `data`: the bytes consumed and the new position; `None`
/// when the chunking is malformed.
pub(crate) fn walk_chunks(mut chunk: Chunk, data: &[u8]) -> Option<(usize, Option<Chunk>)> {
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        chunk = match chunk {
            Chunk::Data(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len() - i);
                i += take;
                let left = n - take as u64;
                if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                }
            }
            Chunk::Size { size, digits } => {
                i += 1;
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if digits < 15 => {
                        let d = u64::from(char::from(b).to_digit(16)?);
                        Chunk::Size {
                            size: size * 16 + d,
                            digits: digits + 1,
                        }
                    }
                    b' ' | b'\t' if digits > 0 => Chunk::SizeSpace { size },
                    b';' if digits > 0 => Chunk::Ext { size },
                    b'\r' if digits > 0 => Chunk::SizeLf { size },
                    _ => return None,
                }
            }
            Chunk::SizeSpace { size } => {
                i += 1;
                match b {
                    b' ' | b'\t' => Chunk::SizeSpace { size },
                    b';' => Chunk::Ext { size },
                    b'\r' => Chunk::SizeLf { size },
                    _ => return None,
                }
            }
            Chunk::Ext { size } => {
                i += 1;
                match b {
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' => return None,
                    _ => Chunk::Ext { size },
                }
            }
            Chunk::SizeLf { size } => {
                i += 1;
                match (b, size) {
                    (b'\n', 0) => Chunk::TrailerStart,
                    (b'\n', n) => Chunk::Data(n),
                    _ => return None,
                }
            }
            Chunk::DataCr => {
                i += 1;
                if b != b'\r' {
                    return None;
                }
                Chunk::DataLf
            }
            Chunk::DataLf => {
                i += 1;
                if b != b'\n' {
                    return None;
                }
                Chunk::Size { size: 0, digits: 0 }
            }
            Chunk::TrailerStart => {
                i += 1;
                if b == b'\r' {
                    Chunk::EndLf
                } else {
                    Chunk::TrailerLine
                }
            }
            Chunk::TrailerLine => {
                i += 1;
                if b == b'\n' {
                    Chunk::TrailerStart
                } else {
                    Chunk::TrailerLine
                }
            }
            Chunk::EndLf => {
                i += 1;
                if b != b'\n' {
                    return None;
                }
                return Some((i, None));
            }
        };
    }
    Some((i, Some(chunk)))
}

/// What a complete head says about the bytes after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Body(u64),
    Chunked,
    /// An upgrade or CONNECT: stop checking.
    Off,
}

/// Check a complete, parsed head and say how its body is framed.
pub(crate) fn check_head(req: &httparse::Request<'_, '_>) -> Result<Next, Refusal> {
    let http10 = req.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut upgrade = req
        .method
        .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
    let mut host = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            // RFC 9112 §3.2: one Host, a valid one; more is refused on every version.
            if host {
                return Err(REFUSALS[6]);
            }
            if !valid_host(h.value) {
                return Err(REFUSALS[7]);
            }
            host = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value)
                .map_err(|_| REFUSALS[3])?
                .trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(REFUSALS[3]);
            }
            let n: u64 = text.parse().map_err(|_| REFUSALS[3])?;
            if length.is_some_and(|prev| prev != n) {
                return Err(REFUSALS[3]);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if http10 {
                return Err(REFUSALS[4]);
            }
            let last = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .map(|t| t.trim_ascii())
                .unwrap_or_default();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    // HTTP/1.0 predates Host and may go without it.
    if !host && !http10 {
        return Err(REFUSALS[5]);
    }
    match (length, chunked) {
        (Some(_), Some(_)) => Err(REFUSALS[2]),
        (_, Some(false)) => Err(REFUSALS[4]),
        _ if upgrade => Ok(Next::Off),
        (_, Some(true)) => Ok(Next::Chunked),
        (Some(n), None) => Ok(Next::Body(n)),
        (None, None) => Ok(Next::Body(0)),
    }
}

/// Is `value` a Host value, `uri-host [":" port]` (RFC 9110 §7.2)? Checked by its characters:
/// a reg-name, an IP literal in brackets or an IPv4 address, percent-escapes, a port. Empty is
/// allowed (RFC 9112 §3.2: a target without authority).
pub(crate) fn valid_host(value: &[u8]) -> bool {
    value.trim_ascii().iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
    })
}

/// Parse the head at the start of `data`: `Ok(None)` if incomplete.
fn parse_head(data: &[u8], max_head: usize) -> Result<Option<(usize, Next)>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(n)) if n > max_head => Err(Refusal::TooLarge),
        Ok(httparse::Status::Complete(n)) => Ok(Some((n, check_head(&req)?))),
        Ok(httparse::Status::Partial) if data.len() > max_head => Err(Refusal::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::TooLarge),
        Err(_) => Err(REFUSALS[1]),
    }
}

/// A client connection seen through the guard. See the module documentation.
pub struct Guard<I> {
    io: I,
    verdict: Arc<Verdict>,
    state: State,
    /// Read from the client: `buf[start..end]` not yet given to hyper, of which the first
    /// `pass` bytes are checked.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pass: usize,
    /// Bytes of the synthetic request already handed over (after a refusal).
    synthetic_sent: usize,
    /// Heads handed to hyper so far.
    heads: u64,
    /// The client's end of stream was seen.
    eof: bool,
    max_head: usize,
    header_timeout: Duration,
    /// Armed while an incomplete head is held.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> Guard<I> {
    /// Guard `io`; heads longer than `max_head` bytes are refused with 431.
    pub fn new(io: I, verdict: Arc<Verdict>, max_head: usize, header_timeout: Duration) -> Self {
        Self {
            io,
            verdict,
            state: State::Head,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            pass: 0,
            synthetic_sent: 0,
            heads: 0,
            eof: false,
            max_head,
            header_timeout,
            deadline: None,
        }
    }

    /// Check as much of `buf[start + pass..end]` as possible.
    fn scan(&mut self) {
        let mut pos = self.start + self.pass;
        while pos < self.end {
            let data = &self.buf[pos..self.end];
            match self.state {
                State::Off => pos = self.end,
                State::Refused => {
                    self.end = pos;
                    break;
                }
                State::Body(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    pos += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(chunk) => match walk_chunks(chunk, data) {
                    Some((used, next)) => {
                        pos += used;
                        self.state = next.map_or(State::Head, State::Chunked);
                    }
                    // Let hyper's decoder refuse it (a 400 from the body stream).
                    None => self.state = State::Off,
                },
                State::Head => {
                    if self.heads == 0 && pos == 0 {
                        let n = data.len().min(H2_PREFACE.len());
                        if data[..n] == H2_PREFACE[..n] {
                            if n < H2_PREFACE.len() {
                                break; // could still be the preface
                            }
                            self.state = State::Off;
                            continue;
                        }
                    }
                    match parse_head(data, self.max_head) {
                        Ok(None) => break,
                        Ok(Some((len, next))) => {
                            pos += len;
                            self.heads += 1;
                            self.state = match next {
                                Next::Body(0) => State::Head,
                                Next::Body(n) => State::Body(n),
                                Next::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
                                Next::Off => State::Off,
                            };
                        }
                        Err(refusal) => {
                            tracing::debug!(?refusal, "gateway: request head refused");
                            self.verdict.refuse(self.heads, refusal);
                            self.state = State::Refused;
                            self.end = pos;
                            break;
                        }
                    }
                }
            }
        }
        self.pass = pos - self.start;
    }

    /// Is an incomplete head being held back?
    fn holding_head(&self) -> bool {
        self.state == State::Head && self.end > self.start + self.pass
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pass > 0 {
                let n = this.pass.min(out.remaining());
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                this.pass -= n;
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Refused {
                if this.synthetic_sent < SYNTHETIC.len() {
                    let rest = &SYNTHETIC[this.synthetic_sent..];
                    let n = rest.len().min(out.remaining());
                    out.put_slice(&rest[..n]);
                    this.synthetic_sent += n;
                    return Poll::Ready(Ok(()));
                }
                // Then nothing more, ever: not end of stream, which would make hyper drop the
                // connection before answering. The answer carries `Connection: close`, so
                // hyper closes once it is written.
                return Poll::Pending;
            }
            if this.eof {
                // Whatever is left (an incomplete head) goes to hyper, which sees it end.
                let n = (this.end - this.start).min(out.remaining());
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Off && this.start == this.end {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            // Need more bytes from the client.
            if this.start > 0 {
                this.buf.copy_within(this.start..this.end, 0);
                this.end -= this.start;
                this.start = 0;
            }
            if this.end == this.buf.len() {
                // Only an incomplete head fills the buffer: grow it up to the head limit.
                if this.buf.len() > this.max_head {
                    this.verdict.refuse(this.heads, Refusal::TooLarge);
                    this.state = State::Refused;
                    this.end = this.start;
                    continue;
                }
                let grown = (this.buf.len() * 2).min(this.max_head + 1);
                this.buf.resize(grown, 0);
            }
            let mut read = ReadBuf::new(&mut this.buf[this.end..]);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        this.eof = true;
                        continue;
                    }
                    this.end += n;
                    this.scan();
                    if this.holding_head() {
                        if this.deadline.is_none() {
                            this.deadline = Some(Box::pin(tokio::time::sleep(this.header_timeout)));
                        }
                    } else {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(deadline) = this.deadline.as_mut() {
                        ready!(deadline.as_mut().poll(cx));
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received in time",
                        )));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Feed `input` in pieces of `step` bytes; what hyper would read (until end of stream, or
    /// until nothing more comes), and the refusal.
    async fn run(input: &[u8], step: usize) -> (Vec<u8>, Option<Refusal>) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let verdict = Arc::new(Verdict::default());
        let mut guard = Guard::new(server, verdict.clone(), 1024, Duration::from_secs(5));
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(step) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.shutdown().await.unwrap();
            client
        });
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(50), guard.read(&mut chunk)).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!("{e}"),
            }
        }
        drop(writer.await);
        let refusal = (0..10).find_map(|_| verdict.next_request());
        (seen, refusal)
    }

    const GOOD: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n\
        GET /d HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn well_formed_traffic_passes_unchanged_whatever_the_reads() {
        for step in [1, 2, 3, 7, 16, 64, 4096] {
            let (seen, refusal) = run(GOOD, step).await;
            assert_eq!(seen, GOOD, "step {step}");
            assert_eq!(refusal, None, "step {step}");
        }
    }

    #[tokio::test]
    async fn h2c_preface_and_upgrades_pass_untouched() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00garbage";
        for step in [1, 5, 100] {
            assert_eq!(run(h2, step).await, (h2.to_vec(), None));
        }
        let ws = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello anything";
        assert_eq!(run(ws, 3).await, (ws.to_vec(), None));
    }

    #[tokio::test]
    async fn smuggling_shapes_are_refused_after_the_good_requests() {
        let cases: &[(&[u8], Refusal)] = &[
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", REFUSALS[2]),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", REFUSALS[2]),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", REFUSALS[3]),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", REFUSALS[3]),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd", REFUSALS[3]),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", REFUSALS[4]),
            (b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", REFUSALS[4]),
            (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", REFUSALS[1]),
            (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", REFUSALS[1]),
            (b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", REFUSALS[1]),
            (b"\x00\x01\x02 HTTP/1.1\r\n\r\n", REFUSALS[1]),
            (b"GET / HTTP/1.1\r\n\r\n", REFUSALS[5]),
            (b"GET / HTTP/1.1\r\nX-Host: x\r\n\r\n", REFUSALS[5]),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", REFUSALS[6]),
            (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", REFUSALS[6]),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", REFUSALS[6]),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", REFUSALS[7]),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", REFUSALS[7]),
            (b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", REFUSALS[7]),
        ];
        let prefix = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
        for (case, refusal) in cases {
            let input = [prefix.as_slice(), case].concat();
            for step in [1, 9, 4096] {
                let (seen, got) = run(&input, step).await;
                let expected = [prefix.as_slice(), SYNTHETIC].concat();
                assert_eq!(
                    (String::from_utf8_lossy(&seen), got),
                    (String::from_utf8_lossy(&expected), Some(*refusal)),
                    "case {:?} step {step}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }

    #[tokio::test]
    async fn host_rules_let_good_hosts_and_http10_without_host_pass() {
        let input = b"GET /a HTTP/1.0\r\n\r\n\
            GET /b HTTP/1.1\r\nHost: \r\n\r\n\
            GET /c HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n\
            GET /d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\
            GET /e HTTP/1.1\r\nhOsT: Shop.example-1.test:80 \r\n\r\n";
        assert_eq!(run(input, 7).await, (input.to_vec(), None));
    }

    #[tokio::test]
    async fn oversized_heads_get_431() {
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 2000));
        big.extend_from_slice(b"\r\n\r\n");
        let (seen, got) = run(&big, 100).await;
        assert_eq!((seen, got), (SYNTHETIC.to_vec(), Some(Refusal::TooLarge)));
        let many: Vec<u8> = [
            b"GET / HTTP/1.1\r\n".to_vec(),
            (0..101)
                .flat_map(|i| format!("h{i}: v\r\n").into_bytes())
                .collect(),
            b"\r\n".to_vec(),
        ]
        .concat();
        let mut verdict_many = run(&many, 4096).await;
        verdict_many.0.clear();
        assert_eq!(verdict_many.1, Some(Refusal::TooLarge));
    }

    #[tokio::test]
    async fn broken_chunking_is_left_to_the_body_decoder() {
        let input = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(run(input, 5).await, (input.to_vec(), None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_still_incomplete_after_the_timeout_ends_the_connection() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guard = Guard::new(
            server,
            Arc::new(Verdict::default()),
            1024,
            Duration::from_secs(3),
        );
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let mut seen = Vec::new();
        let err = guard.read_to_end(&mut seen).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(seen.is_empty(), "hyper never sees part of a head");
    }
}
