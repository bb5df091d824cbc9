//! The published-port forwarder against small TCP/UDP servers on 127.0.0.1.

mod common;

use berth_core::{PortForward, Protocol, RoutingTable};
use berth_gateway::{Gateway, GatewayConfig};
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A TCP server that greets with `NAME\n` then echoes.
async fn tcp_echo(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Connect through the forwarder and read the greeting. `None` if the connection was refused
/// or closed without a greeting.
async fn greet(addr: SocketAddr) -> Option<(String, TcpStream)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match within("greeting", s.read(&mut byte)).await {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some((String::from_utf8(line).unwrap(), s))
}

fn ports_table(version: u64, ports: Vec<PortForward>) -> Arc<RoutingTable> {
    Arc::new(RoutingTable {
        version,
        routes: vec![],
        ports,
        issuers: vec![],
    })
}

struct Forwarder {
    gateway: Gateway,
    tables: watch::Sender<Arc<RoutingTable>>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Forwarder {
    fn start(table: Arc<RoutingTable>) -> Forwarder {
        let (tables, rx) = watch::channel(table);
        let gateway = Gateway::new(rx, GatewayConfig::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (gateway, shutdown) = (gateway.clone(), shutdown.clone());
            async move { gateway.run_port_forwarder(shutdown).await }
        });
        Forwarder {
            gateway,
            tables,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("forwarder stops", self.task).await.unwrap();
    }
}

/// Connect until the forwarder's listener is up (it binds asynchronously).
async fn greet_when_bound(addr: SocketAddr) -> (String, TcpStream) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(g) = greet(addr).await {
            return g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port {addr} never forwarded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn tcp_ports_forward_balance_and_skip_refusing_endpoints() {
    let (a, _ta) = tcp_echo("a").await;
    let (b, _tb) = tcp_echo("b").await;
    let dead = refusing_addr().await;
    let listen = free_addr().await;
    let fwd = Forwarder::start(ports_table(
        1,
        vec![tcp_port(
            listen,
            vec![ep("a", a), ep("dead", dead), ep("b", b)],
        )],
    ));
    let (first, mut conn) = greet_when_bound(listen).await;
    conn.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    within("echo", conn.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");

    let mut seen = vec![first];
    for _ in 0..8 {
        let (name, _) = greet(listen).await.expect("every connection is forwarded");
        seen.push(name);
    }
    let count = |n: &str| seen.iter().filter(|s| *s == n).count();
    assert_eq!(count("a") + count("b"), 9, "{seen:?}");
    assert!(count("a") >= 3 && count("b") >= 3, "balanced: {seen:?}");
    assert!(fwd.gateway.port_errors().is_empty());
    fwd.stop().await;
    assert!(
        TcpStream::connect(listen).await.is_err(),
        "listener closed on shutdown"
    );
}

#[tokio::test]
async fn tcp_port_stays_bound_while_endpoints_change() {
    let (a, _ta) = tcp_echo("a").await;
    let (c, _tc) = tcp_echo("c").await;
    let listen = free_addr().await;
    let fwd = Forwarder::start(ports_table(1, vec![tcp_port(listen, vec![ep("a", a)])]));
    let (name, mut established) = greet_when_bound(listen).await;
    assert_eq!(name, "a");

    fwd.tables
        .send(ports_table(2, vec![tcp_port(listen, vec![ep("c", c)])]))
        .unwrap();
    // Every connection during the change is accepted and forwarded (never refused); soon they
    // all reach the new endpoint.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (name, _) = greet(listen)
            .await
            .expect("port stays reachable during the change");
        if name == "c" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never switched to c"
        );
    }
    for _ in 0..3 {
        assert_eq!(greet(listen).await.unwrap().0, "c");
    }
    // The connection established before the change still works.
    established.write_all(b"old!").await.unwrap();
    let mut buf = [0u8; 4];
    within("old echo", established.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"old!");

    // Removing the port closes its listener.
    fwd.tables.send(ports_table(3, vec![])).unwrap();
    eventually("listener closed", || {
        std::net::TcpStream::connect(listen).is_err()
    })
    .await;
    fwd.stop().await;
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_bound_once_free() {
    let (a, _ta) = tcp_echo("a").await;
    let holder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = holder.local_addr().unwrap();
    let fwd = Forwarder::start(ports_table(1, vec![tcp_port(listen, vec![ep("a", a)])]));
    let gateway = fwd.gateway.clone();
    eventually("bind error reported", || !gateway.port_errors().is_empty()).await;
    let errors = fwd.gateway.port_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, listen);
    assert!(!errors[0].1.is_empty());

    // Once the port is free, the forwarder binds it (retried periodically) and clears the error.
    drop(holder);
    let (name, _) = greet_when_bound(listen).await;
    assert_eq!(name, "a");
    assert!(fwd.gateway.port_errors().is_empty());
    fwd.stop().await;
}

#[tokio::test]
async fn udp_ports_forward_per_client_session() {
    // A UDP echo that prefixes its name.
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = server.recv_from(&mut buf).await else {
                return;
            };
            let mut out = b"u:".to_vec();
            out.extend_from_slice(&buf[..n]);
            let _ = server.send_to(&out, from).await;
        }
    });
    let listen = {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    };
    let fwd = Forwarder::start(ports_table(
        1,
        vec![PortForward {
            app: "app".into(),
            service: "svc".into(),
            listen,
            protocol: Protocol::Udp,
            endpoints: vec![ep("u", server_addr)],
            probe: None,
        }],
    ));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(listen).await.unwrap();
    let mut buf = [0u8; 1500];
    // Datagrams sent before the port is bound are lost: resend until an answer comes.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let n = loop {
        client.send(b"hello").await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(100), client.recv(&mut buf)).await
        {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "no udp answer");
    };
    assert_eq!(&buf[..n], b"u:hello");
    client.send(b"again").await.unwrap();
    let n = within("second datagram", client.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf[..n], b"u:again");
    fwd.stop().await;
}
