//! HTTPS listener (TLS, SNI, ALPN), HTTP/2 upstreams for gRPC (trailers), WebSocket upgrades.

mod common;

use berth_gateway::tls::{TlsConfig, TlsError};
use berth_gateway::{Gateway, GatewayConfig};
use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A gateway serving both HTTP and HTTPS on 127.0.0.1:0.
struct Both {
    gateway: Gateway,
    http: SocketAddr,
    https: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Both {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_both(routes: Vec<berth_core::HttpRoute>, tls: TlsConfig) -> Both {
    let (tx, rx) = tokio::sync::watch::channel(table(1, routes));
    // Keep the publisher alive for the gateway's lifetime.
    std::mem::forget(tx);
    let gateway = Gateway::new(rx, GatewayConfig::default());
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http, https) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (g, s) = (gateway.clone(), shutdown.clone());
        async move { g.serve_http(plain, s).await }
    });
    tokio::spawn({
        let (g, s) = (gateway.clone(), shutdown.clone());
        async move { g.serve_https(secure, tls, s).await }
    });
    Both {
        gateway,
        http,
        https,
        shutdown,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting exactly `roots`.
fn client_trusting(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> ClientConfig {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Accepts any certificate: for tests that only look at which certificate was served.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_any_cert() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
        .with_no_client_auth()
}

async fn tls_connect(config: ClientConfig, addr: SocketAddr, sni: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    within(
        "TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap()
}

/// Send one request over HTTP/1.1 on `io` and collect the answer.
async fn h1_request<I>(io: I, req: Request<Empty<Bytes>>) -> (Response<()>, Bytes)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = within("answer", sender.send_request(req)).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = within("body", body.collect()).await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), body)
}

/// An HTTP/2 client connection (prior knowledge) on `io`.
async fn h2_client<I, B>(io: I) -> hyper::client::conn::http2::SendRequest<B>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A body of given frames (data and trailers).
struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    fn new(data: &'static [u8], trailers: &[(&'static str, &'static str)]) -> Frames {
        let mut frames = VecDeque::new();
        frames.push_back(Frame::data(Bytes::from_static(data)));
        if !trailers.is_empty() {
            let mut t = HeaderMap::new();
            for (k, v) in trailers {
                t.insert(*k, v.parse().unwrap());
            }
            frames.push_back(Frame::trailers(t));
        }
        Frames(frames)
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A gRPC-like h2c upstream: answers `grpc:` + the request body, with trailers `grpc-status: 0`
/// and `x-seen-request-trailer` (the request's `x-req-trailer` trailer). Headers report the
/// version, method, path, `te`, `:authority`, `host`, `x-forwarded-proto`, `connection` and
/// `x-hop` it saw. It speaks HTTP/2 only (prior knowledge), whatever the content type.
/// Dropping it closes its listener and every connection.
struct GrpcUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn grpc_upstream() -> GrpcUpstream {
    grpc_upstream_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
}

fn grpc_upstream_on(listener: TcpListener) -> GrpcUpstream {
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    tokio::spawn({
        let (accepts, stop) = (accepts.clone(), stop.clone());
        async move {
            loop {
                let Ok((stream, _)) = (tokio::select! {
                    () = stop.cancelled() => return,
                    a = listener.accept() => a,
                }) else {
                    return;
                };
                accepts.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        let mut r = Response::builder()
                            .header("content-type", "application/grpc")
                            .header("x-seen-version", format!("{:?}", req.version()))
                            .header(
                                "x-seen-authority",
                                req.uri().authority().map_or("-", |a| a.as_str()),
                            )
                            .header("x-seen-method", req.method().as_str())
                            .header(
                                "x-seen-path",
                                req.uri().path_and_query().map_or("-", |p| p.as_str()),
                            );
                        for h in ["te", "x-forwarded-proto", "host", "x-hop", "connection"] {
                            if let Some(v) = req.headers().get(h) {
                                r = r.header(format!("x-seen-{h}"), v);
                            }
                        }
                        let collected = req.into_body().collect().await.unwrap();
                        let seen_trailer = collected
                            .trailers()
                            .and_then(|t| t.get("x-req-trailer"))
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_else(|| "none".into());
                        let mut body = b"grpc:".to_vec();
                        body.extend_from_slice(&collected.to_bytes());
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("x-seen-request-trailer", seen_trailer.parse().unwrap());
                        let frames = Frames(VecDeque::from([
                            Frame::data(Bytes::from(body)),
                            Frame::trailers(trailers),
                        ]));
                        Ok::<_, Infallible>(r.body(frames).unwrap())
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
        }
    });
    GrpcUpstream {
        addr,
        accepts,
        stop,
    }
}

/// Send a gRPC-like POST on `sender`; return the response head, body and trailers.
async fn grpc_call(
    sender: &mut hyper::client::conn::http2::SendRequest<Frames>,
    authority: &str,
) -> (Response<()>, Bytes, HeaderMap) {
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{authority}/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Frames::new(b"ping", &[("x-req-trailer", "sent")]))
        .unwrap();
    within("ready", sender.ready()).await.unwrap();
    let response = within("grpc answer", sender.send_request(req))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = within("grpc body", body.collect()).await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    (
        Response::from_parts(parts, ()),
        collected.to_bytes(),
        trailers,
    )
}

fn header<'a>(r: &'a Response<()>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or(""))
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn self_signed_https_is_proxied_with_forwarded_proto_https_and_no_redirect() {
    let up = Upstream::start("u1").await;
    let mut r = route(Some("localhost"), "/", false, vec![up.endpoint()]);
    r.policy.redirect_https = true;
    let tls = TlsConfig::self_signed(&["localhost".into()]).unwrap();
    let cert = CertificateDer::from_pem_slice(tls.certificate_pem(None).as_bytes()).unwrap();
    assert_eq!(cert, tls.certificate_chain(Some("localhost"))[0]);
    let gw = start_both(vec![r], tls).await;

    // A client that trusts only the generated certificate completes the handshake.
    let stream = tls_connect(
        client_trusting(&[cert], &[b"http/1.1"]),
        gw.https,
        "localhost",
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let req = Request::builder()
        .uri("/x?y=1")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let (response, body) = h1_request(stream, req).await;
    assert_eq!(response.status(), StatusCode::OK, "{body:?}");
    assert_eq!(body, "u1:");
    assert_eq!(header(&response, "x-seen-x-forwarded-proto"), "https");
    assert_eq!(header(&response, "x-seen-path"), "/x?y=1");

    // Plain HTTP on the same route is redirected.
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let req = Request::builder()
        .uri("/x?y=1")
        .header("host", "localhost:8080")
        .body(Empty::new())
        .unwrap();
    let (response, _) = h1_request(tcp, req).await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&response, "location"), "https://localhost/x?y=1");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn a_client_not_trusting_the_certificate_fails_the_handshake() {
    let tls = TlsConfig::self_signed(&["localhost".into()]).unwrap();
    let other = TlsConfig::self_signed(&["localhost".into()]).unwrap();
    let gw = start_both(vec![], tls).await;
    let tcp = TcpStream::connect(gw.https).await.unwrap();
    let config = client_trusting(&[other.certificate_chain(None)[0].clone()], &[]);
    let result = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(result.is_err());
}

/// Write a freshly generated certificate and key for `host` into `dir`.
fn write_cert(dir: &std::path::Path, host: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let cert = dir.join(format!("{host}.crt"));
    let key = dir.join(format!("{host}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key, generated.cert.der().clone())
}

#[tokio::test]
async fn sni_picks_the_certificate_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_der) = write_cert(dir.path(), "a.test");
    let (b_cert, b_key, b_der) = write_cert(dir.path(), "b.test");
    let tls = TlsConfig::from_pem_files(vec![
        ("a.test".into(), a_cert, a_key),
        ("b.test".into(), b_cert, b_key),
    ])
    .unwrap();
    assert_eq!(tls.hosts(), ["a.test", "b.test"]);
    let up = Upstream::start("u1").await;
    let gw = start_both(vec![route(None, "/", false, vec![up.endpoint()])], tls).await;

    for (sni, want) in [
        ("a.test", &a_der),
        ("b.test", &b_der),
        ("B.TEST", &b_der),
        ("unknown.test", &a_der), // the default: the first host
    ] {
        let stream = tls_connect(client_any_cert(), gw.https, sni).await;
        let served = &stream.get_ref().1.peer_certificates().unwrap()[0];
        assert_eq!(served, want, "SNI {sni}");
    }

    // With proper verification, each host's own certificate is accepted for it.
    let stream = tls_connect(
        client_trusting(std::slice::from_ref(&b_der), &[]),
        gw.https,
        "b.test",
    )
    .await;
    let req = Request::builder()
        .uri("/")
        .header("host", "b.test")
        .body(Empty::new())
        .unwrap();
    let (response, body) = h1_request(stream, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, "u1:");
}

#[tokio::test]
async fn bad_pem_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = write_cert(dir.path(), "a.test");
    let (_, other_key, _) = write_cert(dir.path(), "b.test");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let missing = dir.path().join("missing.pem");

    let err = |certs: Vec<(String, PathBuf, PathBuf)>| -> (TlsError, String) {
        let e = TlsConfig::from_pem_files(certs).unwrap_err();
        let text = e.to_string();
        (e, text)
    };
    let h = || "a.test".to_owned();

    let (e, text) = err(vec![(h(), garbage.clone(), key.clone())]);
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(text.contains(&garbage.display().to_string()), "{text}");
    assert!(text.contains("no certificate"), "{text}");

    let (e, text) = err(vec![(h(), broken.clone(), key.clone())]);
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(text.contains(&broken.display().to_string()), "{text}");

    let (e, text) = err(vec![(h(), cert.clone(), garbage.clone())]);
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(text.contains(&garbage.display().to_string()), "{text}");
    assert!(text.contains("no private key"), "{text}");

    let (e, text) = err(vec![(h(), missing.clone(), key.clone())]);
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    assert!(text.contains(&missing.display().to_string()), "{text}");

    let (e, text) = err(vec![(h(), cert.clone(), other_key.clone())]);
    assert!(matches!(e, TlsError::KeyPair { .. }), "{e:?}");
    assert!(text.contains(&other_key.display().to_string()), "{text}");
    assert!(text.contains(&cert.display().to_string()), "{text}");

    let (e, _) = err(vec![]);
    assert!(matches!(e, TlsError::NoCertificates), "{e:?}");
    assert!(matches!(
        TlsConfig::self_signed(&[]),
        Err(TlsError::NoCertificates)
    ));
}

#[tokio::test]
async fn h2_is_negotiated_over_tls_by_alpn() {
    let up = Upstream::start("u1").await;
    let tls = TlsConfig::self_signed(&["localhost".into()]).unwrap();
    let cert = tls.certificate_chain(None)[0].clone();
    let gw = start_both(vec![route(None, "/", false, vec![up.endpoint()])], tls).await;
    let stream = tls_connect(
        client_trusting(&[cert], &[b"h2", b"http/1.1"]),
        gw.https,
        "localhost",
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_client::<_, Empty<Bytes>>(stream).await;
    for _ in 0..3 {
        let req = Request::builder()
            .uri("https://localhost/h2")
            .body(Empty::new())
            .unwrap();
        let response = within("answer", sender.send_request(req)).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-seen-x-forwarded-proto"], "https");
        assert_eq!(response.headers()["x-seen-host"], "localhost");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "u1:");
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC: HTTP/2 end to end, trailers both ways

#[tokio::test]
async fn grpc_trailers_pass_over_tls_h2_and_h2c_on_one_upstream_connection() {
    let up = grpc_upstream().await;
    let tls = TlsConfig::self_signed(&["grpc.test".into()]).unwrap();
    let cert = tls.certificate_chain(None)[0].clone();
    let gw = start_both(
        vec![route(
            Some("grpc.test"),
            "/",
            false,
            vec![ep("g1", up.addr)],
        )],
        tls,
    )
    .await;

    // Over TLS (ALPN h2).
    let stream = tls_connect(client_trusting(&[cert], &[b"h2"]), gw.https, "grpc.test").await;
    let mut tls_sender = h2_client::<_, Frames>(stream).await;
    // Over h2c (prior knowledge) on the plain listener.
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let mut h2c_sender = h2_client::<_, Frames>(tcp).await;

    for (sender, proto) in [(&mut tls_sender, "https"), (&mut h2c_sender, "http")] {
        for _ in 0..2 {
            let (response, body, trailers) = grpc_call(sender, "grpc.test").await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(body, "grpc:ping");
            assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{trailers:?}");
            assert_eq!(trailers.get("x-seen-request-trailer").unwrap(), "sent");
            assert_eq!(header(&response, "content-type"), "application/grpc");
            assert_eq!(header(&response, "x-seen-version"), "HTTP/2.0");
            assert_eq!(header(&response, "x-seen-te"), "trailers");
            assert_eq!(header(&response, "x-seen-authority"), "grpc.test");
            assert_eq!(header(&response, "x-seen-x-forwarded-proto"), proto);
        }
    }
    // One multiplexed upstream connection served all four calls.
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
    eventually("gRPC calls are no longer in flight", || {
        gw.gateway.in_flight("g1") == 0
    })
    .await;
}

/// A route to the HTTP/2-only upstream with `protocol: h2c`.
fn h2c_route(host: &str, addr: SocketAddr) -> berth_core::HttpRoute {
    let mut r = route(Some(host), "/", false, vec![ep("h2c", addr)]);
    r.protocol = berth_core::UpstreamProtocol::H2c;
    r
}

/// An HTTP/1.1 client's requests on an `h2c` route go upstream over HTTP/2: the Host header
/// becomes `:authority`, hop-by-hop headers are dropped (`TE: trailers` kept), bodies cross,
/// and the answer comes back as HTTP/1.1. The same upstream on a default route is unreachable
/// for HTTP/1.1 (it speaks only HTTP/2), which is what the flag is for.
#[tokio::test]
async fn an_h2c_route_takes_http1_clients_to_an_http2_only_upstream() {
    let up = grpc_upstream().await;
    let gw = start_both(
        vec![
            h2c_route("h2.test", up.addr),
            route(Some("h1.test"), "/", false, vec![ep("h1", up.addr)]),
        ],
        TlsConfig::self_signed(&["h2.test".into()]).unwrap(),
    )
    .await;
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Frames>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut h1_call = async |method: &str, path: &str, host: &str, body: &'static [u8]| {
        let frames = if body.is_empty() {
            Frames(VecDeque::new())
        } else {
            Frames::new(body, &[])
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "1")
            .header("te", "trailers")
            .body(frames)
            .unwrap();
        within("ready", sender.ready()).await.unwrap();
        let response = within("h1 answer", sender.send_request(req)).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = within("h1 body", body.collect()).await.unwrap().to_bytes();
        (Response::from_parts(parts, ()), body)
    };
    for (method, body, want) in [
        ("GET", &b""[..], "grpc:"),
        ("POST", &b"hello"[..], "grpc:hello"),
        ("DELETE", &b""[..], "grpc:"),
    ] {
        let (r, got) = h1_call(method, "/svc/x?q=1", "h2.test:8080", body).await;
        assert_eq!(r.status(), StatusCode::OK, "{method} {r:?}");
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(got, want);
        assert_eq!(header(&r, "x-seen-version"), "HTTP/2.0");
        assert_eq!(header(&r, "x-seen-method"), method);
        assert_eq!(header(&r, "x-seen-path"), "/svc/x?q=1");
        assert_eq!(header(&r, "x-seen-authority"), "h2.test:8080");
        assert_eq!(header(&r, "x-seen-host"), "", "Host travels as :authority");
        assert_eq!(header(&r, "x-seen-te"), "trailers");
        assert_eq!(
            header(&r, "x-seen-x-hop"),
            "",
            "hop-by-hop headers are dropped"
        );
        assert_eq!(header(&r, "x-seen-connection"), "");
        assert_eq!(header(&r, "x-seen-x-forwarded-proto"), "http");
    }
    // One shared HTTP/2 connection carried them all.
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
    // Without the flag the same HTTP/1.1 request goes over HTTP/1.1 and the upstream refuses it.
    let (r, _) = h1_call("GET", "/", "h1.test", b"").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    eventually("nothing in flight", || gw.gateway.in_flight("h2c") == 0).await;
}

/// An h2c client's plain (non-gRPC) requests on an `h2c` route go upstream over HTTP/2 too,
/// with trailers relayed both ways.
#[tokio::test]
async fn an_h2c_route_takes_h2c_clients_upstream_over_http2_whatever_the_content_type() {
    let up = grpc_upstream().await;
    let gw = start_both(
        vec![h2c_route("h2.test", up.addr)],
        TlsConfig::self_signed(&["h2.test".into()]).unwrap(),
    )
    .await;
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let mut sender = h2_client::<_, Frames>(tcp).await;
    for (method, body, trailers, want) in [
        ("GET", &b""[..], &[][..], "grpc:"),
        (
            "PUT",
            &b"data"[..],
            &[("x-req-trailer", "sent")][..],
            "grpc:data",
        ),
    ] {
        let frames = if body.is_empty() {
            Frames(VecDeque::new())
        } else {
            Frames::new(body, trailers)
        };
        let req = Request::builder()
            .method(method)
            .uri("http://h2.test/plain?x=1")
            .header("content-type", "text/plain")
            .body(frames)
            .unwrap();
        within("ready", sender.ready()).await.unwrap();
        let response = within("h2 answer", sender.send_request(req)).await.unwrap();
        let (parts, body) = response.into_parts();
        let collected = within("h2 body", body.collect()).await.unwrap();
        let got_trailers = collected.trailers().cloned().unwrap_or_default();
        let r = Response::from_parts(parts, ());
        assert_eq!(r.status(), StatusCode::OK, "{method} {r:?}");
        assert_eq!(collected.to_bytes(), want);
        assert_eq!(header(&r, "x-seen-version"), "HTTP/2.0");
        assert_eq!(header(&r, "x-seen-method"), method);
        assert_eq!(header(&r, "x-seen-path"), "/plain?x=1");
        assert_eq!(header(&r, "x-seen-authority"), "h2.test");
        assert_eq!(got_trailers.get("grpc-status").unwrap(), "0");
        let seen = if trailers.is_empty() { "none" } else { "sent" };
        assert_eq!(got_trailers.get("x-seen-request-trailer").unwrap(), seen);
    }
    assert_eq!(up.accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_shared_h2_connection_is_reopened_after_the_upstream_restarts() {
    let up = grpc_upstream().await;
    let addr = up.addr;
    let gw = start_both(
        vec![route(None, "/", false, vec![ep("g1", addr)])],
        TlsConfig::self_signed(&["localhost".into()]).unwrap(),
    )
    .await;
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let mut sender = h2_client::<_, Frames>(tcp).await;
    let (_, _, trailers) = grpc_call(&mut sender, "x.test").await;
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    // The replica goes away (its connections with it) and comes back on the same address.
    drop(up);
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let up2 = grpc_upstream_on(listener);
    let (response, _, trailers) = grpc_call(&mut sender, "x.test").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(up2.accepts.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// WebSocket upgrades

/// An HTTP/1.1 upstream that accepts upgrades and echoes the bytes that follow.
async fn echo_upstream() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|mut req: Request<Incoming>| async move {
                    let wants = req
                        .headers()
                        .get("upgrade")
                        .is_some_and(|v| v == "websocket");
                    if !wants {
                        return Ok::<_, Infallible>(
                            Response::builder()
                                .status(426)
                                .body(http_body_util::Full::new(Bytes::from_static(b"upgrade!")))
                                .unwrap(),
                        );
                    }
                    let seen_proto = req
                        .headers()
                        .get("x-forwarded-proto")
                        .cloned()
                        .unwrap_or(http::HeaderValue::from_static("-"));
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let upgraded = on.await.unwrap();
                        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                    Ok(Response::builder()
                        .status(101)
                        .header("connection", "Upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-accept", "test-accept")
                        .header("x-seen-x-forwarded-proto", seen_proto)
                        .body(http_body_util::Full::default())
                        .unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, task)
}

/// Read an HTTP head (up to the blank line) from `s`.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within("head", s.read(&mut byte)).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

async fn websocket_echo<S>(mut s: S, gateway: &Gateway, proto: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(head.contains("sec-websocket-accept: test-accept"), "{head}");
    assert!(
        head.contains(&format!("x-seen-x-forwarded-proto: {proto}")),
        "{head}"
    );
    assert!(head.contains("x-request-id: "), "{head}");
    for message in [&b"hello"[..], b"\x81\x05world", &[0u8; 3000]] {
        s.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        within("echo", s.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, message);
    }
    // The open tunnel counts as in flight ...
    assert_eq!(gateway.in_flight("ws1"), 1);
    drop(s);
    // ... until it closes.
    eventually("the closed tunnel is no longer in flight", || {
        gateway.in_flight("ws1") == 0
    })
    .await;
}

#[tokio::test]
async fn websocket_upgrades_pass_through_and_count_in_flight_until_closed() {
    let (addr, _task) = echo_upstream().await;
    let tls = TlsConfig::self_signed(&["ws.test".into()]).unwrap();
    let cert = tls.certificate_chain(None)[0].clone();
    let gw = start_both(vec![route(None, "/", false, vec![ep("ws1", addr)])], tls).await;

    let tcp = TcpStream::connect(gw.http).await.unwrap();
    websocket_echo(tcp, &gw.gateway, "http").await;

    let stream = tls_connect(
        client_trusting(&[cert], &[b"http/1.1"]),
        gw.https,
        "ws.test",
    )
    .await;
    websocket_echo(stream, &gw.gateway, "https").await;

    // A request without upgrade to the same service is relayed as usual.
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    let req = Request::builder()
        .uri("/ws")
        .header("host", "ws.test")
        .body(Empty::new())
        .unwrap();
    let (response, body) = h1_request(tcp, req).await;
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(body, "upgrade!");
}

#[tokio::test]
async fn a_refused_upgrade_is_relayed_and_the_connection_not_pooled() {
    // An ordinary HTTP/1.1 upstream ignores the upgrade and answers 200.
    let up = Upstream::start("u1").await;
    let gw = start_both(
        vec![route(None, "/", false, vec![up.endpoint()])],
        TlsConfig::self_signed(&["localhost".into()]).unwrap(),
    )
    .await;
    let mut tcp = TcpStream::connect(gw.http).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-upstream: u1"), "{head}");
    drop(tcp);
    eventually("not in flight", || gw.gateway.in_flight("u1") == 0).await;
    assert_eq!(gw.gateway.idle_connections("u1"), 0);
}
