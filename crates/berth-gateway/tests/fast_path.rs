//! The HTTP/1.1 fast path (docs/gateway-fast-path.md) against scripted raw upstreams: framing
//! relayed byte for byte, pipelining, the hand-off to the general path in the middle of a
//! connection, header rules in both directions, stale pooled connections, and the general path
//! still serving when the fast path is off.

mod common;

use berth_gateway::GatewayConfig;
use common::{ep, route, table, within, TestGateway};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream does with request `n` (0-based) on connection `c` (0-based).
#[derive(Clone)]
enum Act {
    /// Write these bytes and keep the connection.
    Answer(&'static [u8]),
    /// Write these bytes, then close.
    AnswerClose(&'static [u8]),
    /// Close without answering.
    Close,
}

/// An upstream that reads whole HTTP/1.1 requests (Content-Length or chunked bodies) and acts
/// as `script` says; every request's bytes are recorded.
struct Raw {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Raw {
    async fn start(script: fn(usize, usize) -> Act) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut c = 0;
                while let Ok((s, _)) = listener.accept().await {
                    tokio::spawn(serve(s, c, script, seen.clone()));
                    c += 1;
                }
            }
        });
        Raw { addr, seen, task }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut s: TcpStream,
    c: usize,
    script: fn(usize, usize) -> Act,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        let Some(len) = read_request(&mut s, &mut buf).await else {
            return;
        };
        let req: Vec<u8> = buf.drain(..len).collect();
        seen.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&req).into_owned());
        match script(c, n) {
            Act::Answer(a) => {
                if s.write_all(a).await.is_err() {
                    return;
                }
            }
            Act::AnswerClose(a) => {
                let _ = s.write_all(a).await;
                return;
            }
            Act::Close => return,
        }
        n += 1;
    }
}

/// Read one whole request into `buf`; its length.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(buf) {
            let mut length = 0usize;
            let mut chunked = false;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value).unwrap().parse().unwrap();
                }
                if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = true;
                }
            }
            if chunked {
                if let Some(end) = buf[head..].windows(5).position(|w| w == b"0\r\n\r\n") {
                    return Some(head + end + 5);
                }
            } else if buf.len() >= head + length {
                return Some(head + length);
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn gateway(up: &Raw, fast_path: bool) -> TestGateway {
    TestGateway::start_with(
        table(1, vec![route(None, "/", false, vec![ep("raw", up.addr)])]),
        GatewayConfig {
            fast_path,
            ..GatewayConfig::default()
        },
    )
    .await
}

/// Write `request` on `s` and read until `done` says the answer(s) are complete.
async fn exchange(s: &mut TcpStream, request: &[u8], done: impl Fn(&str) -> bool) -> String {
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    within("the gateway's answer", async {
        while !done(&String::from_utf8_lossy(&out)) {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = Raw::start(|_, _| Act::Answer(OK)).await;
    let gw = gateway(&up, true).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut s,
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\nPOST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello",
        |o| o.matches("\r\n\r\nok").count() == 3,
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].starts_with("GET /a HTTP/1.1\r\n"));
    assert!(seen[1].starts_with("GET /b HTTP/1.1\r\n"));
    assert!(seen[2].starts_with("POST /c HTTP/1.1\r\n") && seen[2].ends_with("\r\n\r\nhello"));
}

#[tokio::test]
async fn header_rules_hold_in_both_directions() {
    let up = Raw::start(|_, _| {
        Act::Answer(
            b"HTTP/1.1 201 Made\r\nconnection: x-private\r\nx-private: 1\r\nkeep-alive: timeout=5\r\nx-request-id: theirs\r\nx-kept: yes\r\ncontent-length: 0\r\n\r\n",
        )
    })
    .await;
    let gw = gateway(&up, true).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut s,
        b"GET /p?q=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nX-Berth-Subject: evil\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Proto: https\r\nX-Request-Id: abc-123\r\nTE: trailers\r\nx-app: kept\r\n\r\n",
        |o| o.contains("\r\n\r\n"),
    )
    .await;
    let head = out.to_ascii_lowercase();
    assert!(out.starts_with("HTTP/1.1 201 Made\r\n"), "{out}");
    assert!(head.contains("x-kept: yes"), "{out}");
    assert!(head.contains("x-request-id: abc-123"), "{out}");
    for gone in ["x-private", "keep-alive", "theirs"] {
        assert!(!head.contains(gone), "{gone} crossed: {out}");
    }
    let sent = up.seen().remove(0);
    let lower = sent.to_ascii_lowercase();
    assert!(sent.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{sent}");
    assert!(lower.contains("host: shop.test"), "{sent}");
    assert!(lower.contains("x-app: kept"), "{sent}");
    assert!(
        lower.contains("x-forwarded-for: 10.9.9.9, 127.0.0.1"),
        "{sent}"
    );
    assert!(lower.contains("x-forwarded-proto: http\r\n"), "{sent}");
    assert!(lower.contains("x-forwarded-host: shop.test"), "{sent}");
    assert!(lower.contains("x-request-id: abc-123"), "{sent}");
    for gone in [
        "x-hop",
        "x-berth-subject",
        "te: trailers",
        "connection:",
        "https",
    ] {
        assert!(!lower.contains(gone), "{gone} went upstream: {sent}");
    }
}

#[tokio::test]
async fn chunked_answers_with_trailers_are_relayed_and_the_connection_kept() {
    let up = Raw::start(|_, n| {
        if n == 0 {
            Act::Answer(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
            )
        } else {
            Act::Answer(OK)
        }
    })
    .await;
    let gw = gateway(&up, true).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(&mut s, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", |o| {
        o.ends_with("0\r\nx-sum: 11\r\n\r\n")
    })
    .await;
    assert!(
        out.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{out}"
    );
    assert!(out.contains("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n"));
    // The same client connection and the same upstream connection serve the next request.
    let out = exchange(&mut s, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", |o| {
        o.ends_with("ok")
    })
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert_eq!(up.seen().len(), 2);
    assert_eq!(gw.gateway.idle_connections("raw"), 1);
}

#[tokio::test]
async fn an_answer_framed_by_close_is_relayed_then_the_client_connection_closes() {
    let up = Raw::start(|_, _| Act::AnswerClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")).await;
    let gw = gateway(&up, true).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    within("the gateway closes", s.read_to_end(&mut out))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nuntil the end"), "{out}");
}

#[tokio::test]
async fn head_answers_carry_no_body_and_keep_both_connections() {
    let up = Raw::start(|_, n| {
        if n == 0 {
            Act::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        } else {
            Act::Answer(OK)
        }
    })
    .await;
    let gw = gateway(&up, true).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(&mut s, b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n", |o| {
        o.contains("\r\n\r\n")
    })
    .await;
    assert!(out.contains("content-length: 1234"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "{out}");
    let out = exchange(&mut s, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", |o| {
        o.ends_with("ok")
    })
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
}

#[tokio::test]
async fn a_connection_is_handed_to_the_general_path_mid_stream() {
    let up = Raw::start(|_, _| Act::Answer(OK)).await;
    let gw = gateway(&up, true).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // Fast path first, then a chunked body (general path), then another plain GET (still
    // served, now by the general path).
    let out = exchange(
        &mut s,
        b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nPOST /2 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nhost: x\r\n\r\n",
        |o| o.matches("\r\n\r\nok").count() == 3,
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let seen = up.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].starts_with("GET /1 "));
    assert!(
        seen[1].starts_with("POST /2 ") && seen[1].contains("body"),
        "{}",
        seen[1]
    );
    assert!(seen[2].starts_with("GET /3 "));
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_replicas_keep_alive_timeout_is_not_an_error() {
    // The first connection answers once, then closes under the next request without a word,
    // as a replica whose keep-alive timeout fires just as the request arrives.
    let up = Raw::start(|c, n| match (c, n) {
        (0, 0) => Act::Answer(OK),
        (0, _) => Act::Close,
        _ => Act::Answer(OK),
    })
    .await;
    let gw = gateway(&up, true).await;
    assert_eq!(gw.get(None, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = gw.get(None, "/").await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(
        up.seen().len(),
        3,
        "sent on the stale connection, then on a new one"
    );
}

#[tokio::test]
async fn the_general_path_serves_everything_when_the_fast_path_is_off() {
    let up = Raw::start(|_, _| Act::Answer(OK)).await;
    let gw = gateway(&up, false).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut s,
        b"GET /a HTTP/1.1\r\nhost: x\r\nX-Berth-Subject: evil\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n",
        |o| o.matches("\r\n\r\nok").count() == 2,
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    let seen = up.seen();
    assert!(!seen[0].to_ascii_lowercase().contains("x-berth-subject"));
    assert!(seen[0]
        .to_ascii_lowercase()
        .contains("x-forwarded-for: 127.0.0.1"));
}

#[tokio::test]
async fn answers_the_gateway_makes_carry_a_date_on_both_paths() {
    for fast_path in [true, false] {
        let up = Raw::start(|_, _| Act::Close).await;
        let gw = gateway(&up, fast_path).await;
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let out = exchange(&mut s, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", |o| {
            o.contains("\r\n\r\n") && o.ends_with('}')
        })
        .await;
        assert!(
            out.starts_with("HTTP/1.1 502"),
            "fast path {fast_path}: {out}"
        );
        let date = out
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("date: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("fast path {fast_path}: no date: {out}"));
        assert!(
            date.ends_with(" gmt") && date.len() == 29,
            "fast path {fast_path}: {date}"
        );
    }
}
