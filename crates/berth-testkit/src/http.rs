//! [`http_get`]: a dependency-free blocking HTTP/1.1 GET for tests.
//!
//! Rules it keeps: one connection per request (`Connection: close`), a deadline on connect,
//! read and write, and a body decoded from `Content-Length`, chunked encoding or
//! read-to-close, so it reads what the test app, the gateway and the API send.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

fn api_tokens() -> std::sync::MutexGuard<'static, HashMap<String, PathBuf>> {
    static TOKENS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    TOKENS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remember that the Berth API at `addr` takes the token in `token_file` (a test server's
/// `<data-dir>/admin.token`): [`http_get`] and the test harness's raw helpers then send it as
/// `Authorization: Bearer`. The file is read at each request (the server rotates the token at
/// each start).
pub fn register_api_token(addr: &str, token_file: &Path) {
    api_tokens().insert(addr.to_string(), token_file.to_path_buf());
}

/// The token registered for `addr`, if any ([`register_api_token`]).
#[must_use]
pub fn api_token(addr: &str) -> Option<String> {
    let file = api_tokens().get(addr).cloned()?;
    std::fs::read_to_string(file)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// `GET path` on `addr` (`host:port`), with `Host: host` (default `addr`), and the API token
/// registered for `addr` if there is one ([`register_api_token`]). Returns the status and the
/// body (lossy UTF-8); any network or protocol failure is `Err` with a description.
pub fn http_get(
    addr: &str,
    path: &str,
    host: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let auth = api_token(addr)
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: berth-testkit\r\nAccept: */*\r\n{auth}Connection: close\r\n\r\n",
        host.unwrap_or(addr)
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A server that sent a complete response and then reset the connection is fine.
        if raw.is_empty() {
            return Err(format!("read from {addr}: {e}"));
        }
    }
    parse_response(&raw).map_err(|e| format!("{addr}{path}: {e}"))
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("no complete response head")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = content_length {
        if rest.len() < n {
            return Err(format!("body cut short: {} of {n} bytes", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunk size line missing")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("chunk cut short".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap(),
            (200, "abc".to_string())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            (503, "abcde".to_string())
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 404 NF\r\n\r\nrest").unwrap(),
            (404, "rest".to_string())
        );
        assert!(parse_response(b"garbage").is_err());
    }
}
