//! The HTTP and HTTPS listeners: accept connections (and terminate TLS), serve HTTP/1.1
//! (with upgrades) and HTTP/2 (h2 over TLS by ALPN, h2c by prior knowledge) on each, shut down
//! gracefully.
//!
//! Rules this module keeps:
//! * Every connection task is tracked; on shutdown the listener is closed first, then each
//!   connection is asked to finish gracefully (HTTP/1: close once the current response is done,
//!   close at once if idle; HTTP/2: GOAWAY), and `serve` returns when all are gone. The caller
//!   bounds the grace period.
//! * hyper enforces the request-head limits: `max_buf_size` (oversized heads get 431) and
//!   `header_read_timeout` (slow-loris clients are disconnected); see `GatewayConfig`.
//! * A TLS handshake has `header_read_timeout` to finish and is abandoned at shutdown; a failed
//!   handshake only ends that connection.
//! * Accept errors (e.g. out of file descriptors) are logged and retried after a short pause;
//!   they never end the listener.

use crate::proxy;
use crate::Inner;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serve `listener` until `shutdown`, then drain. With `tls`, every connection is a TLS
/// handshake first (bounded by `header_read_timeout`) and its requests are proxied with
/// `secure = true`. See [`crate::Gateway::serve_http`] and [`crate::Gateway::serve_https`].
///
/// # Errors
///
/// None today; see [`crate::Gateway::serve_http`].
pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(inner.config.max_header_bytes.max(8192))
        .header_read_timeout(inner.config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(inner.config.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let tracker = TaskTracker::new();
    loop {
        let (stream, client) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let handshake_timeout = inner.config.header_read_timeout;
            match tls {
                None => serve_connection(&builder, inner, client, false, stream, &shutdown).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => r,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            serve_connection(&builder, inner, client, true, stream, &shutdown)
                                .await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%client, error = %e, "gateway: TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%client, "gateway: TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Serve one client connection (HTTP/1.1 with upgrades, or HTTP/2) until it ends or, after
/// `shutdown`, until it has finished gracefully.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    inner: Arc<Inner>,
    client: SocketAddr,
    secure: bool,
    io: I,
    shutdown: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy::handle(inner.clone(), client, secure, req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%client, error = %e, "gateway: client connection ended with an error");
    }
}
