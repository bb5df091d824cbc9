//! How bytes reach the engine: endpoint parsing and one HTTP/1 connection per request.
//!
//! Rules it keeps:
//! - One fresh connection per request (unix socket or plain TCP), driven by its own task. No pool:
//!   over a unix socket a connect costs microseconds, and a connection that is never reused can
//!   never be handed out half-read or stale after the engine restarts.
//! - The connection task is aborted when the [`ConnGuard`] that travels with the response is
//!   dropped, so an abandoned stream (events, logs) never leaks a task or a socket.
//! - A connect failure is always [`DockerError::Unreachable`] naming the endpoint.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::DockerError;

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `host:port`, plain HTTP (no TLS).
    Tcp(String),
}

/// The socket used when `DOCKER_HOST` is unset.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

impl Endpoint {
    /// Parses `unix:///path`, `tcp://host:port`, `http://host:port` or a bare absolute path.
    pub(crate) fn parse(host: &str) -> Result<Endpoint, DockerError> {
        let host = host.trim();
        let invalid = || DockerError::InvalidHost(host.to_string());
        if let Some(path) = host.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(Endpoint::Unix(path.to_string()));
            }
            return Err(invalid());
        }
        if host.starts_with('/') {
            return Ok(Endpoint::Unix(host.to_string()));
        }
        if let Some(rest) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') {
                return Err(invalid());
            }
            // Docker's own default for tcp:// without a port is 2375 (plain) .
            let hostport = if hostport
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                hostport.to_string()
            } else {
                format!("{hostport}:2375")
            };
            return Ok(Endpoint::Tcp(hostport));
        }
        Err(invalid())
    }

    /// The canonical spelling, as shown in errors and by `Docker::endpoint`.
    pub(crate) fn display(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{p}"),
            Endpoint::Tcp(h) => format!("tcp://{h}"),
        }
    }

    /// The `Host` header value (HTTP/1.1 requires one; the engine's Go server rejects requests
    /// without it).
    fn host_header(&self) -> &str {
        match self {
            Endpoint::Unix(_) => "docker",
            Endpoint::Tcp(h) => h,
        }
    }
}

/// Aborts the connection task when dropped; travels with a response body.
pub(crate) struct ConnGuard(JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request body: raw bytes with a content type.
pub(crate) struct Body {
    pub(crate) content_type: &'static str,
    pub(crate) bytes: Bytes,
}

impl Body {
    /// A JSON body.
    pub(crate) fn json<T: serde::Serialize>(value: &T) -> Body {
        // Serializing our own derive-only structs to a Vec cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Body {
            content_type: "application/json",
            bytes: Bytes::from(bytes),
        }
    }
}

/// Opens a connection, sends one request and returns the response head with its streaming body.
/// `path_and_query` is the full origin-form target, e.g. `/v1.41/containers/json?all=1`.
pub(crate) async fn send(
    endpoint: &Endpoint,
    method: Method,
    path_and_query: &str,
    body: Option<Body>,
) -> Result<(Response<Incoming>, ConnGuard), DockerError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, endpoint.host_header())
        .header(http::header::USER_AGENT, "berth-docker");
    let body = match body {
        Some(b) => {
            builder = builder.header(http::header::CONTENT_TYPE, b.content_type);
            Full::new(b.bytes)
        }
        None => Full::new(Bytes::new()),
    };
    let request = builder
        .body(body)
        .map_err(|e| DockerError::InvalidRequest(format!("{path_and_query}: {e}")))?;
    send_request(endpoint, request).await
}

/// Like [`send`], with a body streamed as it is sent (an image archive being loaded), never
/// held whole in memory.
pub(crate) async fn send_streamed<B>(
    endpoint: &Endpoint,
    method: Method,
    path_and_query: &str,
    content_type: &'static str,
    body: B,
) -> Result<(Response<Incoming>, ConnGuard), DockerError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, endpoint.host_header())
        .header(http::header::USER_AGENT, "berth-docker")
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(|e| DockerError::InvalidRequest(format!("{path_and_query}: {e}")))?;
    send_request(endpoint, request).await
}

async fn send_request<B>(
    endpoint: &Endpoint,
    request: Request<B>,
) -> Result<(Response<Incoming>, ConnGuard), DockerError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let unreachable = |source| DockerError::Unreachable {
        endpoint: endpoint.display(),
        source,
    };
    match endpoint {
        Endpoint::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(unreachable)?;
            exchange(stream, request).await
        }
        Endpoint::Tcp(hostport) => {
            let stream = tokio::net::TcpStream::connect(hostport.as_str())
                .await
                .map_err(unreachable)?;
            stream.set_nodelay(true)?;
            exchange(stream, request).await
        }
    }
}

async fn exchange<S, B>(
    stream: S,
    request: Request<B>,
) -> Result<(Response<Incoming>, ConnGuard), DockerError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let guard = ConnGuard(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "docker connection ended with an error");
        }
    }));
    let response = sender.send_request(request).await?;
    Ok((response, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/tmp/d.sock").unwrap(),
            Endpoint::Unix("/tmp/d.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://docker").unwrap(),
            Endpoint::Tcp("docker:2375".into())
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:2375/").unwrap(),
            Endpoint::Tcp("[::1]:2375".into())
        );
        for bad in [
            "ssh://me@host",
            "npipe:////./pipe/docker_engine",
            "unix://relative",
            "tcp://",
            "",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(DockerError::InvalidHost(_))),
                "{bad}"
            );
        }
        assert_eq!(Endpoint::Unix("/a".into()).display(), "unix:///a");
    }
}
