//! The MQTT broker (docs/messaging.md), end to end with the real `berth server --mqtt-listen`
//! and Debian's standard clients (`mosquitto_pub`, `mosquitto_sub`, package
//! `mosquitto-clients`): logins with Berth JWTs, the team ACL and each refusal with its
//! protocol code (MQTT 5 and 3.1.1), QoS 0/1/2, retained and will messages, a persistent
//! session resumed after a reconnect and after a server restart, a deployment's event on
//! `berth/events/...`, a service's `x-berth.mqtt` login, a connection closed at its token's
//! `exp`, the TLS and WebSocket listeners, the packet-size and per-address limits. Skipped (with
//! a message) where the clients are not installed.

mod common;

use berth_testkit::{busybox_image, testapp_image, wait_for, TestRun};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn have_clients() -> bool {
    let ok = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !ok {
        eprintln!(
            "skipped: mosquitto-clients is not installed (apt-get install mosquitto-clients)"
        );
    }
    ok
}

struct Broker {
    host: String,
    port: String,
}

impl Broker {
    fn new(addr: &str) -> Broker {
        let (h, p) = addr.rsplit_once(':').unwrap();
        Broker {
            host: h.into(),
            port: p.into(),
        }
    }

    fn args<'a>(&'a self, user: &'a str, token: &'a str) -> Vec<&'a str> {
        vec!["-h", &self.host, "-p", &self.port, "-u", user, "-P", token]
    }

    /// `mosquitto_pub -d` with the login and `extra`; its output (debug lines and errors).
    fn publish(&self, user: &str, token: &str, extra: &[&str]) -> Output {
        Command::new("mosquitto_pub")
            .arg("-d")
            .args(self.args(user, token))
            .args(extra)
            .output()
            .expect("run mosquitto_pub")
    }

    /// A `mosquitto_sub -d` that is subscribed (its SUBACK printed) when this returns.
    fn subscribe(&self, user: &str, token: &str, extra: &[&str]) -> Sub {
        // Line-buffered: a pipe would hold its lines back.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-d"])
            .args(self.args(user, token))
            .args(["-F", "MSG %t %p"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sub = Sub {
            child,
            rx,
            seen: Vec::new(),
            early: Vec::new(),
        };
        let suback = sub.wait_line(Duration::from_secs(10), |l| l.starts_with("Subscribed"));
        sub.seen.push(suback);
        sub
    }
}

/// A running `mosquitto_sub`.
struct Sub {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    early: Vec<String>,
}

impl Sub {
    fn wait_line(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) if want(&l) => return l,
                Ok(l) => {
                    // A message that came before what was awaited (a resumed session's queue
                    // arrives before the SUBACK) is kept for `message`.
                    if let Some(m) = l.strip_prefix("MSG ") {
                        self.early.push(m.to_string());
                    }
                    self.seen.push(l);
                }
                Err(_) => panic!(
                    "mosquitto_sub: the line awaited did not come within {within:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// The next message as `TOPIC PAYLOAD`.
    fn message(&mut self) -> String {
        if !self.early.is_empty() {
            return self.early.remove(0);
        }
        let l = self.wait_line(Duration::from_secs(15), |l| l.starts_with("MSG "));
        l["MSG ".len()..].to_string()
    }

    /// Messages that arrive within `d`.
    fn messages_within(&mut self, d: Duration) -> Vec<String> {
        let end = Instant::now() + d;
        let mut out = std::mem::take(&mut self.early);
        while let Ok(l) = self
            .rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            if let Some(m) = l.strip_prefix("MSG ") {
                out.push(m.to_string());
            }
        }
        out
    }

    /// The SUBACK's line, e.g. `Subscribed (mid: 1): 135`.
    fn suback(&self) -> &str {
        &self.seen[self.seen.len() - 1]
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mqtt_token(server: &Server, session: Option<&str>, subject: &str, audience: &str) -> String {
    let args = [
        "token",
        "issue",
        "--subject",
        subject,
        "--audience",
        audience,
    ];
    let out = match session {
        None => server.ok(&args),
        Some(s) => ok_as(server, s, &args),
    };
    out.trim().to_string()
}

/// A server whose broker listens on a free port (`--mqtt-listen`), with `extra` flags; the
/// broker's address.
fn mqtt_server(run: &TestRun, dir: &std::path::Path, extra: &[&str]) -> (Server, String) {
    let mqtt = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--mqtt-listen", mqtt.as_str()];
    args.extend_from_slice(extra);
    (Server::start_with(run, dir, &api, &gw, &args), mqtt)
}

fn start(run: &TestRun, dir: &std::path::Path, mqtt: &str, api: &str, gateway: &str) -> Server {
    Server::start_with(run, dir, api, gateway, &["--mqtt-listen", mqtt])
}

#[test]
fn logins_acl_qos_retained_and_wills() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-acl");
    let dir = tempfile::tempdir().unwrap();
    let (server, mqtt) = mqtt_server(&run, dir.path(), &[]);
    let b = Broker::new(&mqtt);
    // alice: team default (the administrator's token mints it); bob: a developer of team shop.
    let alice = mqtt_token(&server, None, "alice", "mqtt");
    let bob_session = team_member(&server, "shop", "bob", "developer");
    let bob = mqtt_token(&server, Some(&bob_session), "bob", "mqtt");

    // QoS 0, 1 and 2 all arrive, MQTT 5 and 3.1.1 publishers alike.
    let mut sub = b.subscribe(
        "alice",
        &alice,
        &["-V", "5", "-q", "2", "-t", "teams/default/q/#"],
    );
    for (qos, v) in [("0", "5"), ("1", "311"), ("2", "5")] {
        let o = b.publish(
            "alice",
            &alice,
            &[
                "-V",
                v,
                "-q",
                qos,
                "-t",
                &format!("teams/default/q/{qos}"),
                "-m",
                &format!("m{qos}"),
            ],
        );
        assert!(o.status.success(), "publish QoS {qos}: {}", text(&o));
    }
    let mut got = vec![sub.message(), sub.message(), sub.message()];
    got.sort();
    assert_eq!(
        got,
        [
            "teams/default/q/0 m0",
            "teams/default/q/1 m1",
            "teams/default/q/2 m2"
        ]
    );

    // Bad credentials: CONNACK 0x86 (134) in MQTT 5, return code 4 in 3.1.1.
    let expired_aud = mqtt_token(&server, None, "alice", "berth");
    for (user, password, why) in [
        ("alice", "not-a-token", "not a JWT"),
        ("alice", expired_aud.as_str(), "audience berth, not mqtt"),
        ("mallory", alice.as_str(), "username is not the subject"),
    ] {
        let o = b.publish(
            user,
            password,
            &["-V", "5", "-t", "teams/default/x", "-m", "x"],
        );
        assert!(
            text(&o).contains("received CONNACK (134)"),
            "{why}: {}",
            text(&o)
        );
        let o = b.publish(
            user,
            password,
            &["-V", "311", "-t", "teams/default/x", "-m", "x"],
        );
        assert!(
            !o.status.success() && text(&o).contains("bad user name or password"),
            "{why} (3.1.1): {}",
            text(&o)
        );
    }
    // A token with no password at all.
    let o = Command::new("mosquitto_pub")
        .args(["-d", "-V", "5", "-h", &b.host, "-p", &b.port, "-u", "alice"])
        .args(["-t", "teams/default/x", "-m", "x"])
        .output()
        .unwrap();
    assert!(text(&o).contains("received CONNACK (134)"), "{}", text(&o));

    // Refused publishes: PUBACK 0x87 (MQTT 5), dropped (3.1.1); nobody receives them.
    let mut watch = b.subscribe(
        "alice",
        &alice,
        &["-V", "5", "-q", "1", "-t", "teams/default/#"],
    );
    let o = b.publish(
        "bob",
        &bob,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "teams/default/x",
            "-m",
            "intruder",
        ],
    );
    assert!(text(&o).contains("Not authorized"), "{}", text(&o));
    let o = b.publish(
        "bob",
        &bob,
        &[
            "-V",
            "311",
            "-q",
            "1",
            "-t",
            "teams/default/x",
            "-m",
            "intruder311",
        ],
    );
    assert!(
        o.status.success(),
        "3.1.1 drops without an error: {}",
        text(&o)
    );
    let o = b.publish(
        "alice",
        &alice,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "berth/events/default/fake",
            "-m",
            "x",
        ],
    );
    assert!(
        text(&o).contains("Not authorized"),
        "nobody publishes under berth/: {}",
        text(&o)
    );
    let o = b.publish(
        "alice",
        &alice,
        &["-V", "5", "-q", "2", "-t", "teams/shop/x", "-m", "x"],
    );
    assert!(
        text(&o).contains("Not authorized"),
        "QoS 2 refusal: {}",
        text(&o)
    );
    // The broker keeps serving: alice's own message still arrives, the refused ones never do.
    let o = b.publish(
        "alice",
        &alice,
        &["-q", "1", "-t", "teams/default/x", "-m", "mine"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(watch.message(), "teams/default/x mine");
    assert!(watch.messages_within(Duration::from_millis(500)).is_empty());

    // Refused subscriptions: SUBACK 0x87 (135) in MQTT 5, 0x80 (128) in 3.1.1.
    for (who, token, filter) in [
        ("bob", &bob, "teams/default/#"),
        ("bob", &bob, "teams/#"),
        ("bob", &bob, "#"),
        ("bob", &bob, "berth/events/default/#"),
        ("alice", &alice, "teams/+/x"),
    ] {
        let s = b.subscribe(who, token, &["-V", "5", "-t", filter]);
        assert!(
            s.suback().ends_with(": 135"),
            "{who} {filter}: {}",
            s.suback()
        );
        let s = b.subscribe(who, token, &["-V", "311", "-t", filter]);
        assert!(
            s.suback().ends_with(": 128"),
            "{who} {filter} (3.1.1): {}",
            s.suback()
        );
    }
    // A team's own topics and events are granted.
    let mut shop = b.subscribe("bob", &bob, &["-V", "5", "-q", "1", "-t", "teams/shop/#"]);
    assert!(shop.suback().ends_with(": 1"), "{}", shop.suback());
    let s = b.subscribe("bob", &bob, &["-V", "5", "-t", "berth/events/shop/#"]);
    assert!(s.suback().ends_with(": 0"), "{}", s.suback());
    let o = b.publish(
        "bob",
        &bob,
        &["-q", "1", "-t", "teams/shop/orders", "-m", "o1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(shop.message(), "teams/shop/orders o1");

    // Retained: a later subscriber gets the last retained message at once.
    let o = b.publish(
        "alice",
        &alice,
        &["-r", "-q", "1", "-t", "teams/default/state", "-m", "on"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut late = b.subscribe("alice", &alice, &["-t", "teams/default/state"]);
    assert_eq!(late.message(), "teams/default/state on");

    // Will: a client that vanishes without DISCONNECT has its will published.
    let mut wills = b.subscribe("alice", &alice, &["-V", "5", "-t", "teams/default/will"]);
    let mut doomed = b.subscribe(
        "alice",
        &alice,
        &[
            "-V",
            "5",
            "-k",
            "5",
            "-t",
            "teams/default/nothing",
            "--will-topic",
            "teams/default/will",
            "--will-payload",
            "gone",
        ],
    );
    let _ = doomed.child.kill(); // SIGKILL: no DISCONNECT
    assert_eq!(wills.message(), "teams/default/will gone");
    // A will under another team's topics is refused when it fires.
    let mut sneaky = b.subscribe(
        "bob",
        &bob,
        &[
            "-V",
            "5",
            "-t",
            "teams/shop/nothing",
            "--will-topic",
            "teams/default/will",
            "--will-payload",
            "evil",
        ],
    );
    let _ = sneaky.child.kill();
    assert!(wills.messages_within(Duration::from_secs(2)).is_empty());
    drop(server);
}

#[test]
fn sessions_and_retained_messages_survive_a_restart_and_deployments_are_published() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-restart");
    let image = testapp_image(&run);
    let dir = tempfile::tempdir().unwrap();
    let mqtt = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let mut server = start(&run, dir.path(), &mqtt, &api, &gw);
    let b = Broker::new(&mqtt);
    let alice = mqtt_token(&server, None, "alice", "mqtt");
    let persistent = [
        "-V",
        "5",
        "-c",
        "-i",
        "keeper",
        "-x",
        "3600",
        "-q",
        "1",
        "-t",
        "teams/default/jobs/#",
    ];

    // A persistent session: subscribe, go away, a QoS 1 message waits, resume and get it.
    drop(b.subscribe("alice", &alice, &persistent));
    let o = b.publish(
        "alice",
        &alice,
        &["-q", "1", "-t", "teams/default/jobs/1", "-m", "while-away"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut back = b.subscribe("alice", &alice, &persistent);
    assert_eq!(back.message(), "teams/default/jobs/1 while-away");
    drop(back);

    // Again, with a server restart in between; and a retained message.
    let o = b.publish(
        "alice",
        &alice,
        &[
            "-q",
            "1",
            "-t",
            "teams/default/jobs/2",
            "-m",
            "across-restart",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = b.publish(
        "alice",
        &alice,
        &["-r", "-q", "1", "-t", "teams/default/config", "-m", "v7"],
    );
    assert!(o.status.success(), "{}", text(&o));
    server.stop();
    let server = start(&run, dir.path(), &mqtt, &api, &gw);
    let mut back = b.subscribe("alice", &alice, &persistent);
    assert_eq!(back.message(), "teams/default/jobs/2 across-restart");
    let mut retained = b.subscribe("alice", &alice, &["-t", "teams/default/config"]);
    assert_eq!(retained.message(), "teams/default/config v7");

    // A deployment's event arrives on berth/events/{team}/app/deployed, with the JSON body of
    // GET /api/v1/events.
    let mut events = b.subscribe(
        "alice",
        &alice,
        &["-V", "5", "-q", "1", "-t", "berth/events/default/#"],
    );
    let file = compose(
        dir.path(),
        "compose.yaml",
        &format!("services:\n  web:\n    image: {image}\n"),
    );
    server.ok(&["apply", "-f", file.to_str().unwrap(), "--app", "hello"]);
    let msg = events.message();
    let (topic, body) = msg.split_once(' ').unwrap();
    assert_eq!(topic, "berth/events/default/app/deployed", "{msg}");
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["kind"], "app.deployed");
    assert_eq!(event["subject"], "hello");
    assert_eq!(event["level"], "info");
    let feed: serde_json::Value =
        serde_json::from_str(&server.ok(&["events", "--output", "json"])).unwrap();
    assert!(
        feed.as_array().unwrap().contains(&event),
        "the same event, with the same body, is in GET /api/v1/events: {feed}"
    );
}

#[test]
fn connections_per_subject_are_limited() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-limits");
    let dir = tempfile::tempdir().unwrap();
    let (server, mqtt) = mqtt_server(
        &run,
        dir.path(),
        &["--mqtt-max-connections-per-subject", "2"],
    );
    let b = Broker::new(&mqtt);
    let alice = mqtt_token(&server, None, "alice", "mqtt");
    let _one = b.subscribe(
        "alice",
        &alice,
        &["-V", "5", "-i", "a1", "-t", "teams/default/x"],
    );
    let _two = b.subscribe(
        "alice",
        &alice,
        &["-V", "5", "-i", "a2", "-t", "teams/default/x"],
    );
    // A third connection of the same subject: CONNACK 0x97 (151) Quota exceeded.
    let o = b.publish(
        "alice",
        &alice,
        &["-V", "5", "-i", "a3", "-t", "teams/default/x", "-m", "x"],
    );
    assert!(text(&o).contains("received CONNACK (151)"), "{}", text(&o));
    // Another subject is not affected; the same client id takes its session over.
    let carol = mqtt_token(&server, None, "carol", "mqtt");
    let o = b.publish(
        "carol",
        &carol,
        &["-V", "5", "-t", "teams/default/x", "-m", "x"],
    );
    assert!(text(&o).contains("received CONNACK (0)"), "{}", text(&o));
    let o = b.publish(
        "alice",
        &alice,
        &["-V", "5", "-i", "a2", "-t", "teams/default/x", "-m", "x"],
    );
    assert!(
        text(&o).contains("received CONNACK (0)"),
        "takeover: {}",
        text(&o)
    );
    // Another identity may not take a client id in use over: CONNACK 0x85 (133).
    let o = b.publish(
        "carol",
        &carol,
        &["-V", "5", "-i", "a1", "-t", "teams/default/x", "-m", "x"],
    );
    assert!(text(&o).contains("received CONNACK (133)"), "{}", text(&o));
}

/// A CONNECT to `$BERTH_MQTT_URL` as `$BERTH_MQTT_USERNAME` with the token in
/// `$BERTH_MQTT_TOKEN_FILE`, in busybox `sh` and `nc`; prints the answer's first 4 bytes in hex.
const CONNECT_FROM_INSIDE: &str = r#"
o() { printf "$(printf '\\%03o' "$1")"; }
s() { o $((${#1} / 256)); o $((${#1} % 256)); printf %s "$1"; }
hp=${BERTH_MQTT_URL#mqtt://}
T=$(cat "$BERTH_MQTT_TOKEN_FILE")
U=$BERTH_MQTT_USERNAME
L=$((10 + 2 + 3 + 2 + ${#U} + 2 + ${#T}))
{
  o 16
  if [ $L -lt 128 ]; then o $L; else o $((L % 128 + 128)); o $((L / 128)); fi
  o 0; o 4; printf MQTT; o 4; o 194; o 0; o 60
  s box; s "$U"; s "$T"
  sleep 2
} | nc "${hp%:*}" "${hp##*:}" | head -c 4 | od -An -tx1
"#;

/// `docker exec CONTAINER sh -c SCRIPT`: its stdout, or `None` while it fails.
fn exec_sh(container: &str, script: &str) -> Option<String> {
    let o = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn services_with_x_berth_mqtt_get_a_login_that_works() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-wire");
    let Some(toolbox) = busybox_image(&run) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Containers reach the broker at the Docker host: it listens on every address.
    let mqtt_port = free_port();
    let mqtt = format!("127.0.0.1:{mqtt_port}");
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let server = start(&run, dir.path(), &format!("0.0.0.0:{mqtt_port}"), &api, &gw);
    let b = Broker::new(&mqtt);
    let bob_session = team_member(&server, "shop", "bob", "developer");
    let bob = mqtt_token(&server, Some(&bob_session), "bob", "mqtt");
    let file = compose(
        dir.path(),
        "sensor.yaml",
        &format!(
            "services:\n  probe:\n    image: {toolbox}\n    command: [\"sleep\", \"3600\"]\n    x-berth:\n      mqtt: true\n  plain:\n    image: {toolbox}\n    command: [\"sleep\", \"3600\"]\n"
        ),
    );
    ok_as(
        &server,
        &bob_session,
        &["apply", "-f", file.to_str().unwrap(), "--app", "sensor"],
    );
    let container_of = |service: &str| {
        wait_for(
            Duration::from_secs(60),
            &format!("{service}'s container runs"),
            || {
                containers(&run)
                    .iter()
                    .find(|l| l.contains(" running ") && l.ends_with(&format!(" {service}")))
                    .map(|l| l.split(' ').next().unwrap().to_string())
            },
        )
    };
    let probe = container_of("probe");
    // The container reads both variables and the token file.
    let seen = wait_for(
        Duration::from_secs(10),
        "the variables and the token file inside the container",
        || {
            exec_sh(&probe, "echo \"$BERTH_MQTT_URL\"; echo \"$BERTH_MQTT_USERNAME\"; echo \"$BERTH_MQTT_TOKEN_FILE\"; cat \"$BERTH_MQTT_TOKEN_FILE\"")
        },
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 4, "{seen}");
    let port = mqtt.rsplit_once(':').unwrap().1;
    assert_eq!(lines[0], format!("mqtt://berth-gateway:{port}"), "{seen}");
    assert_eq!(lines[1], "shop/sensor", "{seen}");
    assert_eq!(lines[2], "/run/secrets/berth/mqtt/token", "{seen}");
    let (user, token) = (lines[1], lines[3].trim());
    // `berth-gateway` names the Docker host inside the container.
    let hosts = exec_sh(&probe, "cat /etc/hosts").unwrap();
    assert!(hosts.contains("berth-gateway"), "{hosts}");
    // From inside the container, with nothing but the variables: busybox's `nc` to
    // BERTH_MQTT_URL, an MQTT 3.1.1 CONNECT with the username and the file's token; the
    // CONNACK's return code is 0.
    let connack = exec_sh(&probe, CONNECT_FROM_INSIDE).unwrap_or_default();
    assert_eq!(
        connack.split_whitespace().collect::<Vec<_>>(),
        ["20", "02", "00", "00"],
        "{connack:?}"
    );
    // A service without the key gets nothing.
    let plain = container_of("plain");
    let env = exec_sh(&plain, "env").unwrap();
    assert!(!env.contains("BERTH_MQTT"), "{env}");

    // The token logs in to the broker as the application, in its team: a message it publishes
    // under teams/shop/... reaches a subscriber of team shop; another team's topics are not
    // its own.
    let mut watch = b.subscribe("bob", &bob, &["-V", "5", "-q", "1", "-t", "teams/shop/#"]);
    let o = b.publish(
        user,
        token,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "teams/shop/sensor/t",
            "-m",
            "21C",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(watch.message(), "teams/shop/sensor/t 21C");
    let o = b.publish(
        user,
        token,
        &["-V", "5", "-q", "1", "-t", "teams/default/x", "-m", "x"],
    );
    assert!(text(&o).contains("Not authorized"), "{}", text(&o));

    // A server without --mqtt-listen refuses the key at apply: mqtt_disabled.
    let dir2 = tempfile::tempdir().unwrap();
    let plain_server = Server::start(&run, dir2.path());
    let out = plain_server.cli(&["apply", "-f", file.to_str().unwrap(), "--app", "sensor"]);
    let err = failed_with(&out, "mqtt_disabled");
    assert!(
        err.contains("services.probe.x-berth.mqtt") && err.contains("--mqtt-listen"),
        "{err}"
    );
}

#[test]
fn a_connection_ends_when_its_token_expires() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-expiry");
    let dir = tempfile::tempdir().unwrap();
    let (server, mqtt) = mqtt_server(&run, dir.path(), &[]);
    let b = Broker::new(&mqtt);
    let alice = mqtt_token(&server, None, "alice", "mqtt");
    let out = server.ok(&[
        "token",
        "issue",
        "--subject",
        "brief",
        "--audience",
        "mqtt",
        "--ttl",
        "6s",
    ]);
    let issued = Instant::now();
    let short = out.trim().to_string();
    let mut brief = b.subscribe(
        "brief",
        &short,
        &["-V", "5", "-q", "1", "-t", "teams/default/ticks"],
    );
    // Alive before its exp: it receives.
    let o = b.publish(
        "alice",
        &alice,
        &["-q", "1", "-t", "teams/default/ticks", "-m", "t1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(brief.message(), "teams/default/ticks t1");
    assert!(brief.child.try_wait().unwrap().is_none());
    // At its exp the broker closes the connection; mosquitto_sub reconnects with the same
    // (now expired) token, is refused, and exits.
    let ended = wait_for(Duration::from_secs(20), "mosquitto_sub ends", || {
        brief.child.try_wait().unwrap().map(|_| Instant::now())
    });
    let after = ended.duration_since(issued);
    assert!(
        after >= Duration::from_secs(4) && after <= Duration::from_secs(10),
        "closed {after:?} after the token was issued (ttl 6s)"
    );
    assert!(
        server.log_tail().contains("its token expired"),
        "{}",
        server.log_tail()
    );
    // A connection with a valid token is not touched.
    let mut lasting = b.subscribe("alice", &alice, &["-V", "5", "-t", "teams/default/still"]);
    std::thread::sleep(Duration::from_secs(2));
    let o = b.publish(
        "alice",
        &alice,
        &["-t", "teams/default/still", "-m", "here"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(lasting.message(), "teams/default/still here");
}

/// A CA, and a certificate it signed for `localhost`: (ca.pem, cert.pem, key.pem).
fn ca_and_certificate(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    std::fs::write(&paths[0], ca.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths
}

/// An MQTT 3.1.1 CONNECT (clean session) with a username and password.
fn connect_packet(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    for s in [client_id, user, password] {
        body.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = u8::try_from(len % 128).unwrap();
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// MQTT over WebSocket by hand (the Debian clients have no WebSocket support): the upgrade to
/// subprotocol `mqtt` on `/mqtt`, one CONNECT in a masked binary frame; the CONNACK's return
/// code.
fn ws_connack(addr: &str, user: &str, password: &str) -> u8 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt"),
        "{head}"
    );
    let payload = connect_packet("ws-client", user, password);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x82];
    if payload.len() < 126 {
        frame.push(0x80 | u8::try_from(payload.len()).unwrap());
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    // The answer: an unmasked binary frame holding CONNACK (0x20, 2, flags, code).
    let mut answer = [0u8; 6];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..4], &[0x82, 4, 0x20, 2], "{answer:?}");
    answer[5]
}

#[test]
fn tls_websocket_packet_size_and_connections_per_address() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-listeners");
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = ca_and_certificate(dir.path());
    let mqtt = format!("127.0.0.1:{}", free_port());
    let tls_port = free_port().to_string();
    let ws = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        &run,
        dir.path(),
        &api,
        &gw,
        &[
            "--mqtt-listen",
            &mqtt,
            "--mqtt-tls-listen",
            &format!("127.0.0.1:{tls_port}"),
            "--mqtt-ws-listen",
            &ws,
            "--gateway-tls-cert",
            &format!(
                "localhost={}:{}",
                cert.to_str().unwrap(),
                key.to_str().unwrap()
            ),
            "--mqtt-max-packet-size",
            "2048",
            "--mqtt-max-connections-per-address",
            "4",
        ],
    );
    let b = Broker::new(&mqtt);
    let alice = mqtt_token(&server, None, "alice", "mqtt");

    // TLS: the gateway's certificate, verified against its CA; a message crosses from TLS to
    // plain TCP.
    let mut plain = b.subscribe(
        "alice",
        &alice,
        &["-V", "5", "-q", "1", "-t", "teams/default/#"],
    );
    let tls = Broker {
        host: "localhost".into(),
        port: tls_port.clone(),
    };
    let o = Command::new("mosquitto_pub")
        .arg("-d")
        .args(tls.args("alice", &alice))
        .arg("--cafile")
        .arg(&ca)
        .args(["-q", "1", "-t", "teams/default/tls", "-m", "sealed"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(plain.message(), "teams/default/tls sealed");
    // Without the CA the certificate is not trusted.
    let o = Command::new("mosquitto_pub")
        .args(tls.args("alice", &alice))
        .args([
            "--cafile",
            "/dev/null",
            "-t",
            "teams/default/tls",
            "-m",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    // Logins are the same over TLS: a bad token is refused (3.1.1 code 4).
    let o = Command::new("mosquitto_pub")
        .args(tls.args("alice", "not-a-token"))
        .arg("--cafile")
        .arg(&ca)
        .args(["-V", "311", "-t", "teams/default/tls", "-m", "x"])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("bad user name or password"),
        "{}",
        text(&o)
    );

    // WebSocket: CONNACK 0 with a valid token, 4 with a bad one.
    assert_eq!(ws_connack(&ws, "alice", &alice), 0);
    assert_eq!(ws_connack(&ws, "alice", "not-a-token"), 4);

    // Packet size: MQTT 5 clients are told the limit in CONNACK (mosquitto_pub does not send
    // a larger message); a 3.1.1 client, which is not told, has its too-large PUBLISH refused and its
    // connection closed; the message reaches nobody, and a small one still does.
    let big = "x".repeat(4000);
    let o = b.publish(
        "alice",
        &alice,
        &[
            "-V",
            "311",
            "-q",
            "1",
            "-t",
            "teams/default/big",
            "-m",
            &big,
        ],
    );
    assert!(
        text(&o).contains("received CONNACK (0)")
            && text(&o).contains("connection was lost")
            && !text(&o).contains("received PUBACK"),
        "{}",
        text(&o)
    );
    let o = b.publish(
        "alice",
        &alice,
        &["-V", "5", "-q", "1", "-t", "teams/default/big", "-m", &big],
    );
    // Told the limit in CONNACK, the MQTT 5 client never sends it.
    assert!(
        text(&o).contains("received CONNACK (0)") && !text(&o).contains("sending PUBLISH"),
        "{}",
        text(&o)
    );
    assert!(plain.messages_within(Duration::from_secs(1)).is_empty());
    let o = b.publish(
        "alice",
        &alice,
        &[
            "-V",
            "311",
            "-q",
            "1",
            "-t",
            "teams/default/small",
            "-m",
            "s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(plain.message(), "teams/default/small s");

    // Connections per address: 4 from 127.0.0.1 (`plain` is one); the fifth is closed before
    // its CONNECT is answered; when one goes, a new one is let in.
    let mut held: Vec<Sub> = (0..3)
        .map(|i| {
            b.subscribe(
                "alice",
                &alice,
                &[
                    "-V",
                    "5",
                    "-i",
                    &format!("held{i}"),
                    "-t",
                    "teams/default/held",
                ],
            )
        })
        .collect();
    let o = b.publish(
        "alice",
        &alice,
        &["-V", "5", "-t", "teams/default/x", "-m", "x"],
    );
    assert!(
        !o.status.success()
            && text(&o).contains("connection was lost")
            && !text(&o).contains("received CONNACK"),
        "{}",
        text(&o)
    );
    drop(held.pop());
    let o = wait_for(Duration::from_secs(10), "a connection let in again", || {
        let o = b.publish(
            "alice",
            &alice,
            &["-V", "5", "-t", "teams/default/x", "-m", "y"],
        );
        o.status.success().then_some(o)
    });
    assert!(text(&o).contains("received CONNACK (0)"), "{}", text(&o));
}

#[test]
fn market_subscribers_read_the_entrys_topics_until_they_unsubscribe() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-market");
    let Some(toolbox) = busybox_image(&run) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(berth_testkit::testapp_binary(), repo.join("app")).unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM scratch\nCOPY app /app\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "v1"]);
    let mqtt = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let server = start(&run, &data, &mqtt, &api, &gw);
    let b = Broker::new(&mqtt);
    let a_dev = team_member(&server, "a", "ann", "developer");
    let a_approver = team_member(&server, "a", "abe", "approver");
    let b_dev = team_member(&server, "b", "bob", "developer");
    let c_dev = team_member(&server, "c", "cid", "developer");
    let ann = mqtt_token(&server, Some(&a_dev), "ann", "mqtt");
    let bob = mqtt_token(&server, Some(&b_dev), "bob", "mqtt");
    let cid = mqtt_token(&server, Some(&c_dev), "cid", "mqtt");

    // Team a publishes `orders`, bound to its running application `prov`.
    let repo_arg = repo.to_str().unwrap();
    ok_as(
        &server,
        &a_dev,
        &["service", "create", "orders", "--git", repo_arg],
    );
    ok_as(&server, &a_dev, &["build", "orders", "--follow"]);
    let versions = json(&ok_as(
        &server,
        &a_dev,
        &["versions", "orders", "-o", "json"],
    ));
    let tag = versions[0]["tag"].as_str().unwrap().to_string();
    ok_as(&server, &a_dev, &["submit", "orders:v1", "--note", "v1"]);
    ok_as(
        &server,
        &a_approver,
        &["approve", "orders:v1", "--reason", "ok"],
    );
    let prov = compose(
        dir.path(),
        "prov.yaml",
        &format!("services:\n  api:\n    image: {tag}\n    expose: [\"8080\"]\n    x-berth:\n      route: {{ path_prefix: /orders, auth: subscribers }}\n"),
    );
    ok_as(
        &server,
        &a_dev,
        &["apply", "-f", prov.to_str().unwrap(), "--app", "prov"],
    );
    ok_as(&server, &a_dev, &["publish", "orders:v1", "--app", "prov"]);

    // Team b's application `other` subscribes: its credential is an MQTT login too.
    let other = compose(
        dir.path(),
        "other.yaml",
        &format!("services:\n  w:\n    image: {toolbox}\n    command: [\"sleep\", \"3600\"]\n"),
    );
    ok_as(
        &server,
        &b_dev,
        &["apply", "-f", other.to_str().unwrap(), "--app", "other"],
    );
    ok_as(
        &server,
        &b_dev,
        &["subscribe", "--app", "other", "a/orders"],
    );
    let credential =
        std::fs::read_to_string(data.join("credentials/b.other/orders.token")).unwrap();
    let credential = credential.trim();

    // The credential subscribes under the entry's topics, not another service's, and publishes
    // nowhere.
    let mut reader = b.subscribe(
        "b/other",
        credential,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-i",
            "reader",
            "-t",
            "teams/a/orders/#",
        ],
    );
    assert!(reader.suback().ends_with(": 1"), "{}", reader.suback());
    let s = b.subscribe("b/other", credential, &["-V", "5", "-t", "teams/a/stock/#"]);
    assert!(s.suback().ends_with(": 135"), "{}", s.suback());
    let s = b.subscribe("b/other", credential, &["-V", "5", "-t", "teams/b/#"]);
    assert!(s.suback().ends_with(": 135"), "{}", s.suback());
    let o = b.publish(
        "b/other",
        credential,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "teams/a/orders/x",
            "-m",
            "forged",
        ],
    );
    assert!(text(&o).contains("Not authorized"), "{}", text(&o));
    // Team b's own MQTT tokens: the same read access while an application of b subscribes;
    // team c (no subscription) has none.
    let mut team_reader = b.subscribe(
        "bob",
        &bob,
        &["-V", "5", "-q", "1", "-t", "teams/a/orders/#"],
    );
    assert!(
        team_reader.suback().ends_with(": 1"),
        "{}",
        team_reader.suback()
    );
    let o = b.publish(
        "bob",
        &bob,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "teams/a/orders/x",
            "-m",
            "forged",
        ],
    );
    assert!(text(&o).contains("Not authorized"), "{}", text(&o));
    let s = b.subscribe("cid", &cid, &["-V", "5", "-t", "teams/a/orders/#"]);
    assert!(s.suback().ends_with(": 135"), "{}", s.suback());
    // The provider's message reaches both readers; the refused publishes reached nobody.
    let o = b.publish(
        "ann",
        &ann,
        &["-V", "5", "-q", "1", "-t", "teams/a/orders/new", "-m", "o1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(reader.message(), "teams/a/orders/new o1");
    assert_eq!(team_reader.message(), "teams/a/orders/new o1");

    // Unsubscribing closes the credential's connection within seconds; its reconnect (the
    // token is still within its exp) has its subscription refused.
    ok_as(
        &server,
        &b_dev,
        &["unsubscribe", "--app", "other", "a/orders"],
    );
    let refused = reader.wait_line(Duration::from_secs(10), |l| {
        l.starts_with("Subscribed") && l.ends_with(": 135")
    });
    assert!(refused.contains("Subscribed"), "{refused}");
    assert!(
        server.log_tail().contains("no longer subscribes"),
        "{}",
        server.log_tail()
    );
    let o = b.publish(
        "ann",
        &ann,
        &["-V", "5", "-q", "1", "-t", "teams/a/orders/new", "-m", "o2"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(reader.messages_within(Duration::from_secs(1)).is_empty());
}

#[test]
fn failed_logins_lock_their_address_out() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-lockout");
    let dir = tempfile::tempdir().unwrap();
    let (server, mqtt) = mqtt_server(
        &run,
        dir.path(),
        &[
            "--mqtt-max-login-failures",
            "3",
            "--mqtt-login-lockout",
            "2m",
        ],
    );
    // The startup log says what logs clients in, and not mqtt5's placeholder provider.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("failed-login limit per address") && log.contains("max_login_failures=3"),
        "{log}"
    );
    assert!(!log.contains("Anonymous authentication enabled"), "{log}");
    assert!(
        !log.contains("Authentication rate limiting enabled"),
        "{log}"
    );
    let b = Broker::new(&mqtt);
    let alice = mqtt_token(&server, None, "alice", "mqtt");
    let pub_as = |user: &str, token: &str| {
        let o = b.publish(
            user,
            token,
            &["-V", "5", "-t", "teams/default/x", "-m", "x"],
        );
        text(&o)
    };
    assert!(pub_as("alice", &alice).contains("received CONNACK (0)"));
    // Three bad logins from 127.0.0.1 within the window: CONNACK 0x86 (134) each.
    for _ in 0..3 {
        let o = pub_as("alice", "not-a-token");
        assert!(o.contains("received CONNACK (134)"), "{o}");
    }
    // Now even a valid token is refused from this address, without being verified.
    let o = pub_as("alice", &alice);
    assert!(o.contains("received CONNACK (134)"), "locked out: {o}");
    // The refusal's log line may land just after the CONNACK reached the client.
    let logged = |log: &str| {
        log.contains("the address is locked out")
            && log.contains("too many failed logins from this address")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = std::fs::read_to_string(&server.log).unwrap();
    while !logged(&log) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(&server.log).unwrap();
    }
    assert!(logged(&log), "{log}");
    // Never the token.
    assert!(!log.contains(&alice));
}

#[test]
fn a_users_connections_end_when_the_user_is_disabled_or_leaves_the_team() {
    if !have_clients() {
        return;
    }
    let run = TestRun::new("mqtt-users");
    let dir = tempfile::tempdir().unwrap();
    let mqtt = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let gw = format!("127.0.0.1:{}", free_port());
    let server = start(&run, dir.path(), &mqtt, &api, &gw);
    let b = Broker::new(&mqtt);
    // Two users of team shop with MQTT tokens of their own name, and a token whose subject is
    // no user (a device, an application).
    let dora_session = team_member(&server, "shop", "dora", "developer");
    let eve_session = team_member(&server, "shop", "eve", "developer");
    let dora = mqtt_token(&server, Some(&dora_session), "dora", "mqtt");
    let eve = mqtt_token(&server, Some(&eve_session), "eve", "mqtt");
    let sensor = mqtt_token(&server, Some(&dora_session), "sensor", "mqtt");
    let topic = ["-V", "5", "-t", "teams/shop/x"];
    let mut dora_sub = b.subscribe("dora", &dora, &topic);
    let mut eve_sub = b.subscribe("eve", &eve, &topic);
    let mut sensor_sub = b.subscribe("sensor", &sensor, &topic);
    let send = |m: &str| {
        let o = b.publish(
            "sensor",
            &sensor,
            &["-V", "5", "-q", "1", "-t", "teams/shop/x", "-m", m],
        );
        assert!(o.status.success(), "{}", text(&o));
    };
    send("m1");
    assert_eq!(dora_sub.message(), "teams/shop/x m1");
    assert_eq!(eve_sub.message(), "teams/shop/x m1");
    assert_eq!(sensor_sub.message(), "teams/shop/x m1");

    // The administrator disables dora: her connection is closed within seconds; mosquitto_sub
    // reconnects with the same token, is refused, and exits.
    let admin = server.token();
    let (status, _, body) = call(
        &server.api,
        "POST",
        "/api/v1/users/dora/disable",
        Some(&admin),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let disabled = Instant::now();
    wait_for(Duration::from_secs(10), "dora's connection ends", || {
        dora_sub.child.try_wait().unwrap()
    });
    assert!(disabled.elapsed() < Duration::from_secs(8));
    let o = b.publish("dora", &dora, &["-V", "5", "-t", "teams/shop/x", "-m", "x"]);
    assert!(text(&o).contains("received CONNACK (134)"), "{}", text(&o));

    // eve leaves team shop: the same.
    let (status, _, body) = call(
        &server.api,
        "DELETE",
        "/api/v1/teams/shop/members/eve",
        Some(&admin),
        None,
    );
    assert_eq!(status, 204, "{body}");
    wait_for(Duration::from_secs(10), "eve's connection ends", || {
        eve_sub.child.try_wait().unwrap()
    });
    let o = b.publish("eve", &eve, &["-V", "5", "-t", "teams/shop/x", "-m", "x"]);
    assert!(text(&o).contains("received CONNACK (134)"), "{}", text(&o));

    // A token whose subject is no user is not affected.
    send("m2");
    assert_eq!(sensor_sub.message(), "teams/shop/x m2");
    assert!(sensor_sub.child.try_wait().unwrap().is_none());
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("its user is disabled"), "{log}");
    assert!(
        log.contains("its user is no longer a member of the token's team"),
        "{log}"
    );
}
