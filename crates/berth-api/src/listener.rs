//! The API's listeners: TCP, or TLS over TCP, whose connections put the answers the HTTP parser
//! (hyper) writes by itself into the Berth error shape.
//!
//! hyper answers a request it cannot parse (a URI over 64 KiB, a head too large, a malformed
//! request line) before any of the API's code runs, with an empty `414`, `431` or `400`. Every
//! answer the router writes carries `X-Request-Id`; such an automatic answer does not, has no
//! body, and is the last thing on its connection. [`ApiIo`] recognises exactly that and writes
//! `{"code", "message", "request_id"}` instead (`uri_too_long`, `headers_too_large`,
//! `bad_request`), then lets hyper close the connection as it would have.
//!
//! With TLS ([`tls_listener`]) every handshake runs in its own task, bounded by
//! [`HANDSHAKE_TIMEOUT`] and at most [`MAX_HANDSHAKES`] at a time, and finished connections are
//! handed to `axum::serve` through a channel: a client that opens a connection and stays silent
//! does not hold up anyone else's accept. The peer address (`ConnectInfo<SocketAddr>`) is the
//! TCP peer's either way.

use axum::serve::{Listener, ListenerExt};
use berth_core::ErrorCode;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// A listener of the API: plain TCP, or TLS (see the module doc).
pub struct ApiListener(Accepting);

enum Accepting {
    Plain(TcpListener),
    Tls {
        local: SocketAddr,
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        _task: AbortOnDrop,
    },
}

/// Stops the TLS accept loop when the listener is dropped (the server has shut down).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What `axum::serve` is given (the tap keeps axum's `ConnectInfo<SocketAddr>` working).
pub type Serving = axum::serve::TapIo<ApiListener, fn(&mut ApiIo)>;

fn nodelay(io: &mut ApiIo) {
    let _ = io.inner.tcp().set_nodelay(true);
}

/// Wrap the API's bound listener; serve the router on it with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
#[must_use]
pub fn listener(l: TcpListener) -> Serving {
    ApiListener(Accepting::Plain(l)).tap_io(nodelay as fn(&mut ApiIo))
}

/// Like [`listener`], serving TLS with `config` (give it ALPN `http/1.1` only: the API speaks
/// HTTP/1.1). Must be called within a Tokio runtime (it spawns the accept loop).
///
/// # Errors
/// The listener's local address cannot be read.
pub fn tls_listener(l: TcpListener, config: Arc<ServerConfig>) -> io::Result<Serving> {
    let local = l.local_addr()?;
    let (tx, ready) = mpsc::channel(64);
    let task = tokio::spawn(accept_tls(l, TlsAcceptor::from(config), tx));
    Ok(ApiListener(Accepting::Tls {
        local,
        ready,
        _task: AbortOnDrop(task),
    })
    .tap_io(nodelay as fn(&mut ApiIo)))
}

/// Accept TCP connections and run each handshake in its own task; hand over the finished ones.
async fn accept_tls(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = ready.closed() => return,
        };
        // axum's accept for a TcpListener retries (with a pause) on errors such as EMFILE.
        let (stream, peer) = tokio::select! {
            a = Listener::accept(&mut listener) => a,
            () = ready.closed() => return,
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match handshake {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "api: TLS handshake failed");
                }
                Err(_) => tracing::debug!(%peer, "api: TLS handshake timed out"),
            }
        });
    }
}

impl Listener for ApiListener {
    type Io = ApiIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ApiIo, SocketAddr) {
        let (inner, addr) = match &mut self.0 {
            Accepting::Plain(l) => {
                let (s, addr) = Listener::accept(l).await;
                (Stream::Plain(s), addr)
            }
            Accepting::Tls { ready, .. } => match ready.recv().await {
                Some((s, addr)) => (Stream::Tls(Box::new(s)), addr),
                // The accept loop only ends when this receiver is gone.
                None => std::future::pending().await,
            },
        };
        (
            ApiIo {
                inner,
                replacement: Vec::new(),
                sent: 0,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.0 {
            Accepting::Plain(l) => l.local_addr(),
            Accepting::Tls { local, .. } => Ok(*local),
        }
    }
}

/// A connection's byte stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection of the API (see the module doc).
pub struct ApiIo {
    inner: Stream,
    /// The Berth-shaped answer written instead of hyper's own, and how much of it is sent.
    replacement: Vec<u8>,
    sent: usize,
}

impl ApiIo {
    /// Write what is left of the replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.replacement.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.replacement[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// If `buf` is exactly one of hyper's automatic error answers, the Berth-shaped one to send.
#[must_use]
pub fn replace_automatic_answer(buf: &[u8]) -> Option<Vec<u8>> {
    if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    let empty =
        lower.contains("\r\ncontent-length: 0\r\n") || lower.ends_with("\r\ncontent-length: 0");
    if lower.contains("\r\nx-request-id:") || !empty {
        return None;
    }
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let (code, message) = match status {
        414 => (ErrorCode::UriTooLong, "the request URI is too long"),
        431 => (
            ErrorCode::HeadersTooLarge,
            "the request head (request line and headers) is too large",
        ),
        _ => (ErrorCode::BadRequest, "the request cannot be parsed"),
    };
    let id = crate::new_request_id();
    tracing::info!(request_id = %id, status = code.status(), code = %code, "api request refused by the HTTP parser");
    let body = serde_json::to_vec(&code.body(message, id.as_str())).ok()?;
    let reason = http::StatusCode::from_u16(code.status())
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n",
        code.status(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl AsyncRead for ApiIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ApiIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.replacement.is_empty() {
            std::task::ready!(this.drain(cx))?;
            // hyper writes nothing after an automatic answer; anything else is dropped.
            return Poll::Ready(Ok(buf.len()));
        }
        if let Some(answer) = replace_automatic_answer(buf) {
            this.replacement = answer;
            this.sent = 0;
            // The answer counts as written; the rest goes out on the next write or flush.
            let _ = this.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands over each answer's head in one buffer, which is what the
    // check above needs (the API's answers are few and small; the gateway is not affected).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{crypto::aws_lc_rs, ClientConfig, RootCertStore};

    #[tokio::test]
    async fn tls_connections_carry_the_peer_address_and_a_silent_one_blocks_nobody() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move {
                    peer.to_string()
                },
            ),
        );
        let serving = tls_listener(l, Arc::new(server)).unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(
                serving,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        // Connects and never says a word.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let me = tcp.local_addr().unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            (me, String::from_utf8_lossy(&out).into_owned())
        })
        .await
        .expect("a silent connection held up the next one");
        let (me, text) = answer;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with(&me.to_string()), "{text}");
    }

    #[test]
    fn only_hypers_own_answers_are_replaced() {
        let auto = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 16:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replace_automatic_answer(auto).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.contains("\"code\":\"uri_too_long\""), "{out}");
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let out = String::from_utf8(replace_automatic_answer(auto).unwrap()).unwrap();
        assert!(out.contains("headers_too_large"), "{out}");
        for not in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nx-request-id: abc\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 10\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody",
            b"some body bytes",
        ] {
            assert!(
                replace_automatic_answer(not).is_none(),
                "{:?}",
                String::from_utf8_lossy(not)
            );
        }
    }
}
