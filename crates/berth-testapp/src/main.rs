//! `berth-testapp`: a tiny HTTP/1.1 server with no dependencies beyond `libc`, built statically
//! and packaged `FROM scratch` so tests, benchmarks and examples have a workload without pulling
//! any image.
//!
//! Behaviour is set by environment variables, so one image serves every test:
//! - `PORT` (default 8080): the port to listen on (all interfaces).
//! - `VERSION` (default `v1`): echoed in every response, to tell revisions apart.
//! - `HEALTHY` (default `1`): `0` makes `/healthz` answer 503 forever.
//! - `STARTUP_DELAY_MS`: wait before listening (a slow-starting service).
//! - `EXIT_CODE` with `RUN_MS`: a one-shot job that exits with that code after `RUN_MS` ms.
//! - `GREETING`: text added to `/` responses.
//!
//! Paths: `/healthz`, `/` (version, hostname), `/headers` (request headers echoed),
//! `/sleep?ms=N` (answers after N ms), `/exit?code=N` (exits the process at once),
//! `/unhealthy?ms=N` (`/healthz` answers 503 for the next N ms, then 200 again),
//! `/file?path=/run/secrets/x` (a file's content, to check secrets, configs and mounts),
//! `/write?path=/data/x&text=hello` (writes a file, to check volumes),
//! `/call?env=ORDERS&path=/x` (a market subscription's call: `GET $ORDERS_URL/x` with the
//! bearer token in `$ORDERS_TOKEN_FILE`, answered as `status=N` and the body; `auth=0` sends
//! no token).
//!
//! `berth-testapp probe [PORT [PATH]]` is a health-check client for images without a shell
//! (Compose `healthcheck: test: ["CMD", "/app", "probe"]`): exit 0 when `GET PATH` on
//! 127.0.0.1:PORT (default 8080, `/healthz`) answers 200, else 1.
//!
//! SIGTERM exits at once with status 0: Berth drains a replica before stopping it, and a
//! process that is PID 1 in a container ignores SIGTERM unless it installs a handler.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

extern "C" fn on_sigterm(_: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Until when (ms since the Unix epoch) `/healthz` fails (`/unhealthy?ms=N`).
static UNHEALTHY_UNTIL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    // SAFETY: installing a handler that only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as usize);
        libc::signal(libc::SIGINT, on_sigterm as *const () as usize);
    }
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        let port = args
            .get(2)
            .cloned()
            .unwrap_or_else(|| env_or("PORT", "8080"));
        let path = args
            .get(3)
            .cloned()
            .unwrap_or_else(|| "/healthz".to_string());
        std::process::exit(i32::from(!probe(&port, &path)));
    }
    if let Ok(code) = std::env::var("EXIT_CODE") {
        let ms: u64 = env_or("RUN_MS", "0").parse().unwrap_or(0);
        println!("job running for {ms} ms, then exiting with {code}");
        std::thread::sleep(Duration::from_millis(ms));
        println!("job done");
        std::process::exit(code.parse().unwrap_or(1));
    }
    let delay: u64 = env_or("STARTUP_DELAY_MS", "0").parse().unwrap_or(0);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let port = env_or("PORT", "8080");
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on port {port}: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "berth-testapp {} listening on port {port}",
        env_or("VERSION", "v1")
    );
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}

fn probe(port: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    close: bool,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    let mut close = version == "HTTP/1.0";
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        method,
        target,
        headers,
        close,
    }))
}

fn query_param(target: &str, name: &str) -> Option<String> {
    let q = target.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let version = env_or("VERSION", "v1");
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let hostname = hostname.trim().to_string();
    let healthy = env_or("HEALTHY", "1") != "0";
    let greeting = env_or("GREETING", "");
    while let Some(req) = read_request(&mut reader)? {
        let path = req.target.split('?').next().unwrap_or("/").to_string();
        let (status, body) = match path.as_str() {
            "/healthz"
                if healthy
                    && unix_ms() >= UNHEALTHY_UNTIL.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                (200, "ok\n".to_string())
            }
            "/healthz" => (503, "unhealthy\n".to_string()),
            "/headers" => {
                let mut b = String::new();
                for (k, v) in &req.headers {
                    b.push_str(&format!("{}: {v}\n", k.to_ascii_lowercase()));
                }
                (200, b)
            }
            "/sleep" => {
                let ms: u64 = query_param(&req.target, "ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                std::thread::sleep(Duration::from_millis(ms));
                (200, format!("slept {ms} ms {version} {hostname}\n"))
            }
            "/unhealthy" => {
                let ms: u64 = query_param(&req.target, "ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10_000);
                UNHEALTHY_UNTIL.store(
                    unix_ms().saturating_add(ms),
                    std::sync::atomic::Ordering::Relaxed,
                );
                (200, format!("unhealthy for {ms} ms {version} {hostname}\n"))
            }
            "/file" => {
                let path = url_decode(&query_param(&req.target, "path").unwrap_or_default());
                match std::fs::read_to_string(&path) {
                    Ok(c) => (200, c),
                    Err(e) => (404, format!("{path}: {e}\n")),
                }
            }
            "/write" => {
                let path = url_decode(&query_param(&req.target, "path").unwrap_or_default());
                let text = url_decode(&query_param(&req.target, "text").unwrap_or_default());
                match std::fs::write(&path, text) {
                    Ok(()) => (200, "written\n".to_string()),
                    Err(e) => (503, format!("{path}: {e}\n")),
                }
            }
            "/call" => call(&req.target),
            "/exit" => {
                let code: i32 = query_param(&req.target, "code")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                std::process::exit(code);
            }
            _ => (
                200,
                format!(
                    "{version} {hostname} {} {}{greeting}\n",
                    req.method, req.target
                ),
            ),
        };
        let reason = if status == 200 {
            "OK"
        } else {
            "Service Unavailable"
        };
        let conn = if req.close { "close" } else { "keep-alive" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-App-Version: {version}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(body.as_bytes())?;
        writer.flush()?;
        if req.close {
            break;
        }
    }
    Ok(())
}

/// `/call?env=NAME&path=/x[&auth=0]`: call `$NAME_URL` + path with the token of
/// `$NAME_TOKEN_FILE`, resolving the host from `/etc/hosts` (a static binary has no resolver).
fn call(target: &str) -> (u16, String) {
    let env = query_param(target, "env").unwrap_or_default();
    let path = url_decode(&query_param(target, "path").unwrap_or_else(|| "/".into()));
    let auth = query_param(target, "auth").as_deref() != Some("0");
    let Ok(url) = std::env::var(format!("{env}_URL")) else {
        return (404, format!("{env}_URL is not set\n"));
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return (404, format!("{url}: not http://\n"));
    };
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
    let ip = host.parse::<std::net::IpAddr>().ok().or_else(|| {
        std::fs::read_to_string("/etc/hosts")
            .ok()?
            .lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                let ip = words.next()?;
                words.any(|w| w == host).then(|| ip.parse().ok())?
            })
    });
    let Some(ip) = ip else {
        return (404, format!("{host}: not in /etc/hosts\n"));
    };
    let token = if auth {
        let file = std::env::var(format!("{env}_TOKEN_FILE")).unwrap_or_default();
        match std::fs::read_to_string(&file) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => return (404, format!("{file}: {e}\n")),
        }
    } else {
        None
    };
    let addr = std::net::SocketAddr::new(ip, port.parse().unwrap_or(80));
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return (503, format!("connect {addr}: {e}\n")),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head =
        format!("GET {base}{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    if let Err(e) = stream.write_all(head.as_bytes()) {
        return (503, format!("send: {e}\n"));
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (200, format!("status={status}\n{body}"))
}
