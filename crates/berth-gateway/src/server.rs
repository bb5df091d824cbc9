//! The HTTP and HTTPS listeners: accept connections (and terminate TLS), serve HTTP/1.1
//! (with upgrades) and HTTP/2 (h2 over TLS by ALPN, h2c by prior knowledge) on each, shut down
//! gracefully.
//!
//! Rules this module keeps:
//! * Every connection task is tracked; on shutdown the listener is closed first, then each
//!   connection is asked to finish gracefully (HTTP/1: close once the current response is done,
//!   close at once if idle; HTTP/2: GOAWAY), and `serve` returns when all are gone. The caller
//!   bounds the grace period.
//! * HTTP/1 connections (plain, or TLS without ALPN `h2`) are read through the
//!   [`crate::guard`], which checks request framing and head size before hyper parses a head
//!   and enforces `header_read_timeout` on incomplete heads; hyper keeps its own limits
//!   (`max_buf_size`, `header_read_timeout`) behind it; see `GatewayConfig`.
//! * A TLS handshake has `header_read_timeout` to finish and is abandoned at shutdown; a failed
//!   handshake only ends that connection.
//! * Accept errors (e.g. out of file descriptors) are logged and retried after a short pause;
//!   they never end the listener.

use crate::guard::{Guard, Verdict};
use crate::h1::{self, Rewind};
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

/// Serve `listener` until `shutdown`, then drain, on [`crate::GatewayConfig::workers`] threads. With `tls`, every connection is a TLS
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
    let workers = inner.config.worker_count().max(1);
    // One current-thread runtime per worker thread, each accepting on its own handle of the
    // same listening socket: a connection, its requests and its upstream connections stay on
    // one thread (no cross-thread wake-ups, no work stealing; docs/design-notes.md §4).
    let listener = listener.into_std()?;
    let mut finished = Vec::with_capacity(workers);
    for worker in 1..=workers {
        let listener = listener.try_clone()?;
        let (inner, tls, shutdown) = (inner.clone(), tls.clone(), shutdown.clone());
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("berth-gw-{worker}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "gateway: cannot start a worker runtime");
                        return;
                    }
                };
                crate::pool::set_worker(worker);
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve_worker(inner, listener, tls, shutdown).await,
                        Err(e) => tracing::error!(error = %e, "gateway: worker cannot listen"),
                    }
                });
                drop(runtime);
                let _ = done.send(());
            })?;
        finished.push(finished_rx);
    }
    drop(listener);
    for worker in finished {
        // An error only means the worker thread is gone: it has stopped either way.
        let _ = worker.await;
    }
    Ok(())
}

/// One worker: accept on `listener` and serve each connection on this thread's runtime until
/// `shutdown`, then drain.
async fn serve_worker(
    inner: Arc<Inner>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
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
                None if !inner.config.fast_path => {
                    let (io, verdict) = guarded(&inner, stream);
                    serve_connection(&builder, inner, client, false, io, verdict, &shutdown).await;
                }
                None => {
                    let Some((stream, rest)) =
                        h1::serve(&inner, stream, client, false, &shutdown).await
                    else {
                        return;
                    };
                    let (io, verdict) = guarded(&inner, Rewind::new(stream, rest));
                    serve_connection(&builder, inner, client, false, io, verdict, &shutdown).await;
                }
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => r,
                    };
                    match handshake {
                        Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                            let verdict = Arc::new(Verdict::default());
                            serve_connection(
                                &builder, inner, client, true, stream, verdict, &shutdown,
                            )
                            .await;
                        }
                        Ok(Ok(stream)) if !inner.config.fast_path => {
                            let (io, verdict) = guarded(&inner, stream);
                            serve_connection(&builder, inner, client, true, io, verdict, &shutdown)
                                .await;
                        }
                        Ok(Ok(stream)) => {
                            let Some((stream, rest)) =
                                h1::serve(&inner, stream, client, true, &shutdown).await
                            else {
                                return;
                            };
                            let (io, verdict) = guarded(&inner, Rewind::new(stream, rest));
                            serve_connection(&builder, inner, client, true, io, verdict, &shutdown)
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
}

/// `io` behind the request-framing guard (HTTP/1 connections; see [`crate::guard`]).
fn guarded<I>(inner: &Inner, io: I) -> (Guard<I>, Arc<Verdict>) {
    let verdict = Arc::new(Verdict::default());
    let c = &inner.config;
    let io = Guard::new(
        io,
        verdict.clone(),
        c.max_header_bytes.max(8192),
        c.header_read_timeout,
    );
    (io, verdict)
}

/// Serve one client connection (HTTP/1.1 with upgrades, or HTTP/2) until it ends or, after
/// `shutdown`, until it has finished gracefully.
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    inner: Arc<Inner>,
    client: SocketAddr,
    secure: bool,
    io: I,
    verdict: Arc<Verdict>,
    shutdown: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let refused = verdict.next_request();
        // Boxed: hyper then moves a pointer, not the whole request future, on every request.
        Box::pin(proxy::handle(inner.clone(), client, secure, req, refused))
    });
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
