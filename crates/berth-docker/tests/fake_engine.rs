//! `berth-docker` against a scripted fake engine (a raw HTTP/1.1 server on a unix socket or
//! TCP port), for what the real engine will not do on demand: speak a newer or older API,
//! fail with a 500, or drop an event stream.

use std::time::Duration;

use berth_docker::{Docker, DockerError, LogsOf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the fake answers: `(request line prefix, raw response)`; the first match wins.
type Script = Vec<(&'static str, Vec<u8>)>;

fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    script: &Script,
    seen: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_string();
    let _ = seen.send(line.clone());
    let response = script
        .iter()
        .find(|(prefix, _)| line.starts_with(prefix))
        .map_or_else(
            || json_response("404 Not Found", r#"{"message":"page not found"}"#),
            |(_, r)| r.clone(),
        );
    let _ = s.write_all(&response).await;
    let _ = s.shutdown().await;
}

/// Starts a fake engine on a fresh unix socket; returns its `unix://` host and the request
/// lines it receives.
fn fake_unix(
    script: Script,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tempdir::Dir,
) {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            serve_one(s, &script, &tx).await;
        }
    });
    (format!("unix://{}", path.display()), rx, dir)
}

mod tempdir {
    /// A unique directory under the system temp dir, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("berth-docker-fake-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test]
async fn newer_engines_are_spoken_to_at_1_45() {
    let (host, mut seen, _dir) = fake_unix(vec![
        (
            "GET /version ",
            json_response("200 OK", r#"{"ApiVersion":"1.47","Version":"27.0"}"#),
        ),
        (
            "GET /v1.45/_ping ",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK".to_vec(),
        ),
    ]);
    let d = Docker::connect_to(&host).await.unwrap();
    assert_eq!(d.api_version(), "1.45");
    assert_eq!(d.endpoint(), host);
    d.ping().await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), "GET /version HTTP/1.1");
    assert_eq!(seen.recv().await.unwrap(), "GET /v1.45/_ping HTTP/1.1");
}

#[tokio::test]
async fn old_engines_are_refused() {
    let (host, _seen, _dir) = fake_unix(vec![(
        "GET /version ",
        json_response("200 OK", r#"{"ApiVersion":"1.40"}"#),
    )]);
    let err = Docker::connect_to(&host).await.unwrap_err();
    assert!(
        matches!(err, DockerError::UnsupportedVersion { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the Docker engine speaks API 1.40, Berth needs at least 1.41"
    );
}

#[tokio::test]
async fn errors_carry_dockers_message_and_paths_are_escaped() {
    let (host, mut seen, _dir) = fake_unix(vec![
        (
            "GET /version ",
            json_response("200 OK", r#"{"ApiVersion":"1.41"}"#),
        ),
        (
            "GET /v1.41/containers/a%2Fb%20c/json ",
            json_response(
                "500 Internal Server Error",
                r#"{"message":"engine on fire"}"#,
            ),
        ),
    ]);
    let d = Docker::connect_to(&host).await.unwrap();
    let err = d.inspect_container("a/b c").await.unwrap_err();
    assert!(
        matches!(&err, DockerError::Api { status: 500, message } if message == "engine on fire"),
        "{err}"
    );
    seen.recv().await.unwrap();
    assert_eq!(
        seen.recv().await.unwrap(),
        "GET /v1.41/containers/a%2Fb%20c/json HTTP/1.1"
    );
}

#[tokio::test]
async fn event_stream_decodes_split_objects_and_ends_when_the_engine_closes() {
    let e1 = r#"{"Type":"container","Action":"start","Actor":{"ID":"c1","Attributes":{"berth.test":"x"}},"timeNano":1}"#;
    let e2 = r#"{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"c1","Attributes":{}},"timeNano":2}"#;
    let body = format!("{e1}\n{e2}\n");
    let (first, second) = body.split_at(body.len() / 2 + 3);
    let chunked = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    let (host, _seen, _dir) = fake_unix(vec![
        (
            "GET /version ",
            json_response("200 OK", r#"{"ApiVersion":"1.41"}"#),
        ),
        ("GET /v1.41/events?filters=", chunked.into_bytes()),
    ]);
    let d = Docker::connect_to(&host).await.unwrap();
    let mut events = d.events(&["berth.test=x".to_string()]).await.unwrap();
    let a = events.recv().await.unwrap().unwrap();
    assert_eq!(
        (a.action.as_str(), a.id.as_str(), a.time_nano),
        ("start", "c1", 1)
    );
    assert_eq!(
        a.attributes.get("berth.test").map(String::as_str),
        Some("x")
    );
    let b = events.recv().await.unwrap().unwrap();
    assert_eq!(b.action, "health_status: healthy");
    let end = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn a_cut_event_stream_yields_an_error_then_ends() {
    // Promises a chunk that never comes, then closes the connection.
    let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"Type\":".to_vec();
    let (host, _seen, _dir) = fake_unix(vec![
        (
            "GET /version ",
            json_response("200 OK", r#"{"ApiVersion":"1.41"}"#),
        ),
        ("GET /v1.41/events", cut),
    ]);
    let d = Docker::connect_to(&host).await.unwrap();
    let mut events = d.events(&[]).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap();
    assert!(
        matches!(first, Some(Err(DockerError::Http(_)))),
        "{first:?}"
    );
    assert!(events.recv().await.is_none());
}

fn log_frame(kind: u8, text: &str) -> Vec<u8> {
    let mut v = vec![kind, 0, 0, 0];
    v.extend_from_slice(&u32::try_from(text.len()).unwrap().to_be_bytes());
    v.extend_from_slice(text.as_bytes());
    v
}

/// A Swarm task's logs come through the manager (`GET /tasks/{id}/logs`, the same query and
/// framing as a container's); the error a node sends inside the stream the manager already
/// answered 200 to (a `Systemerr` frame) is an error, not a log line, and ends the stream.
#[tokio::test]
async fn a_tasks_logs_come_through_the_manager_and_its_nodes_error_is_an_error() {
    let mut body = log_frame(1, "up\n");
    body.extend(log_frame(
        3,
        "Error grabbing logs: rpc error: code = Unknown desc = warning: incomplete log stream\n",
    ));
    body.extend(log_frame(1, "never shown\n"));
    let mut logs = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    logs.extend(body);
    let (host, mut seen, _dir) = fake_unix(vec![
        (
            "GET /version ",
            json_response("200 OK", r#"{"ApiVersion":"1.41"}"#),
        ),
        (
            "GET /v1.41/tasks/t1 ",
            json_response(
                "200 OK",
                r#"{"ID":"t1","Spec":{"ContainerSpec":{"Image":"x","TTY":false}}}"#,
            ),
        ),
        ("GET /v1.41/tasks/t1/logs?", logs),
        (
            "GET /v1.41/tasks/t2 ",
            json_response(
                "200 OK",
                r#"{"ID":"t2","Spec":{"ContainerSpec":{"Image":"x"},"LogDriver":{"Name":"none"}}}"#,
            ),
        ),
    ]);
    let d = Docker::connect_to(&host).await.unwrap();
    let mut st = d
        .logs_of(&LogsOf::Task("t1".into()), true, Some(5), true)
        .await
        .unwrap();
    let first = st.recv().await.unwrap().unwrap();
    assert_eq!(&first.data[..], b"up\n");
    let err = st.recv().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, DockerError::InStream(m) if m.ends_with("incomplete log stream")),
        "{err}"
    );
    assert!(st.recv().await.is_none());
    seen.recv().await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), "GET /v1.41/tasks/t1 HTTP/1.1");
    let line = seen.recv().await.unwrap();
    for part in [
        "/tasks/t1/logs?",
        "follow=1",
        "timestamps=1",
        "tail=5",
        "stdout=1",
        "stderr=1",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    // A task whose log driver keeps nothing: refused as the engine refuses such a container
    // (its manager would answer an empty 200).
    let err = d
        .logs_of(&LogsOf::Task("t2".into()), false, None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DockerError::Api { status: 501, message } if message.contains("\"none\" does not support reading")),
        "{err}"
    );
}

#[tokio::test]
async fn tcp_endpoints_work() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let script: Script = vec![(
        "GET /version ",
        json_response("200 OK", r#"{"ApiVersion":"1.43"}"#),
    )];
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            serve_one(s, &script, &tx).await;
        }
    });
    let d = Docker::connect_to(&format!("tcp://{addr}")).await.unwrap();
    assert_eq!(d.api_version(), "1.43");
    assert_eq!(d.endpoint(), format!("tcp://{addr}"));
}
