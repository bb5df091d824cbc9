//! The CLI's and the server's output when it does not go to a terminal: a pipe whose reader
//! leaves early, a log file. No Docker is needed: the CLI talks to a fake API, and the gateway
//! runs on its own against a control plane that is not there.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A fake Berth API on a free loopback port: every request gets `body` as JSON, then the
/// connection closes. Runs until the test process ends.
fn fake_api(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// `berth history --app X | true`: the reader is gone before the CLI writes. The CLI must end
/// quietly (no panic, no backtrace, not exit status 101), for the table and for JSON.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let revisions: Vec<serde_json::Value> = (1..=2000)
        .map(|n| {
            serde_json::json!({
                "revision": n, "created_at": "2026-01-01T00:00:00Z", "source": "apply",
                "change": "web: image changed", "status": "converged", "message": "",
                "finished_at": null,
            })
        })
        .collect();
    let api = fake_api(serde_json::to_string(&revisions).unwrap());
    for extra in [&[][..], &["--output", "json"][..]] {
        let mut child = Command::new(common::bin())
            .args(["--server", &api, "history", "--app", "x"])
            .args(extra)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader leaves before anything is written
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "history {extra:?} into a closed pipe panicked: {stderr}"
        );
        assert_eq!(
            status.code(),
            Some(0),
            "history {extra:?} into a closed pipe: {status}, stderr: {stderr}"
        );
        assert!(stderr.is_empty(), "history {extra:?}: {stderr}");
    }
}

/// A log that goes to a file carries no ANSI colour codes.
#[test]
fn log_to_a_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let control = format!("http://127.0.0.1:{}", common::free_port()); // nothing listens
    let mut child = Command::new(common::bin())
        .args(["gateway", "--control", &control, "--listen", &listen])
        .env_remove("NO_COLOR")
        .env("BERTH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = berth_testkit::wait_for(
        Duration::from_secs(30),
        "the gateway's first log line",
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("berth gateway started"))
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text.contains('\x1b'),
        "ANSI escape codes in a log written to a file:\n{text:?}"
    );
}
