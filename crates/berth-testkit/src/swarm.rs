//! A Docker Swarm of several nodes on this machine (docs/swarm.md#testing-on-several-nodes-on-one-machine):
//! each node an extra `dockerd` in network, UTS and mount namespaces of its own, joined through a
//! bridge in a hub namespace, driven by the repository's `scripts/swarm-lab.sh`.
//!
//! Rules it keeps:
//! - The host's Docker engine, its Swarm state, its network namespace and its iptables are never
//!   touched: everything lives in namespaces and a base directory of this lab, named after the
//!   test run, so several labs can exist at once.
//! - `Drop` tears the lab down (also while a failing test unwinds): the nodes' `dockerd`s and
//!   their containers, the namespaces, the cgroups, the base directory.
//! - Node addresses exist only inside the lab's namespaces: reach them from the hub
//!   ([`Lab::in_hub`]).

use crate::TestRun;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running lab.
pub struct Lab {
    base: PathBuf,
    prefix: String,
    /// How many nodes (node 1 is the manager).
    pub nodes: usize,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swarm-lab.sh")
}

impl Lab {
    /// Why this machine cannot run a lab, if it cannot: the lab needs root and `ip netns`.
    #[must_use]
    pub fn unavailable() -> Option<String> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            return Some("the Swarm lab needs root (network namespaces)".into());
        }
        if Command::new("ip")
            .args(["netns", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            return Some("the Swarm lab needs `ip netns` (iproute2)".into());
        }
        None
    }

    /// Bring up `nodes` nodes (one manager) and load `images` (references on the host's engine)
    /// into every node.
    ///
    /// # Errors
    /// The script's failure, with the tail of its log.
    pub fn up(run: &TestRun, nodes: usize, images: &[&str]) -> Result<Lab, String> {
        Self::up_with(run, nodes, images, "")
    }

    /// [`Lab::up`] with extra `dockerd` options for every node (`--insecure-registry ...`).
    ///
    /// # Errors
    /// The script's failure, with the tail of its log.
    pub fn up_with(
        run: &TestRun,
        nodes: usize,
        images: &[&str],
        dockerd_opts: &str,
    ) -> Result<Lab, String> {
        // Namespace and cgroup names: short, unique per run.
        let digest = run.id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let prefix = format!("bl{:08x}", digest & 0xffff_ffff);
        let base = std::env::temp_dir().join(format!("berth-swarm-{prefix}"));
        let lab = Lab {
            base,
            prefix,
            nodes,
        };
        let n = nodes.to_string();
        let images = images.join(" ");
        lab.script(
            &["up", &n],
            &[("SW_IMAGES", &images), ("SW_DOCKERD_OPTS", dockerd_opts)],
        )?;
        Ok(lab)
    }

    fn script(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
        std::fs::create_dir_all(&self.base).map_err(|e| format!("{}: {e}", self.base.display()))?;
        let log = self.base.with_extension("log");
        let out_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        // Output to a file, never a pipe: the nodes' dockerds inherit it and outlive the script.
        let status = Command::new("bash")
            .arg(script())
            .args(args)
            .env("SW_BASE", &self.base)
            .env("SW_PREFIX", &self.prefix)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                out_file.try_clone().map_err(|e| e.to_string())?,
            ))
            .stderr(Stdio::from(out_file))
            .status()
            .map_err(|e| format!("swarm-lab.sh: {e}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if status.success() {
            Ok(text)
        } else {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            Err(format!(
                "swarm-lab.sh {args:?} failed ({status}):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    }

    /// The socket of node `i`'s engine (1-based), for `DOCKER_HOST=unix://...`.
    #[must_use]
    pub fn socket(&self, i: usize) -> PathBuf {
        self.base.join(format!("n{i}/docker.sock"))
    }

    /// `docker` against node `i`'s engine; stdout.
    ///
    /// # Errors
    /// The command's stderr.
    pub fn docker(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket(i).display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The hub namespace, where node addresses are reachable.
    #[must_use]
    pub fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    /// A command run inside the hub namespace.
    #[must_use]
    pub fn in_hub(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hub(), program]);
        c
    }

    /// Node `i`'s address (only inside the lab).
    #[must_use]
    pub fn addr(&self, i: usize) -> String {
        format!("192.168.77.{i}")
    }

    /// The hub's address on the nodes' bridge: where a server the nodes reach listens.
    #[must_use]
    pub fn hub_addr(&self) -> String {
        "192.168.77.254".into()
    }

    /// A plain-HTTP image registry (Debian's `docker-registry`) in the hub namespace at
    /// `hub_addr():5000`, storing under `dir`; `None` when the program is not installed. The
    /// nodes must be started with `--insecure-registry` for it ([`Lab::up_with`]). Stopped
    /// when the returned guard drops.
    ///
    /// # Errors
    /// It did not start or did not answer within 10 s.
    pub fn registry(&self, dir: &std::path::Path) -> Result<Option<Registry>, String> {
        if !std::path::Path::new("/usr/bin/docker-registry").exists() {
            return Ok(None);
        }
        let addr = format!("{}:5000", self.hub_addr());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let child = self
            .in_hub("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("docker-registry: {e}"))?;
        let registry = Registry { child, addr };
        for _ in 0..100 {
            let up = self
                .in_hub("bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/{}/5000", self.hub_addr())])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return Ok(Some(registry));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!(
            "the registry did not answer at {}: {}",
            registry.addr,
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        ))
    }

    /// Cut node `i` off the network (a partition); [`Lab::heal`] undoes it.
    ///
    /// # Errors
    /// The script's failure.
    pub fn cut(&self, i: usize) -> Result<(), String> {
        self.script(&["cut", &i.to_string()], &[]).map(drop)
    }

    /// Reconnect node `i`.
    ///
    /// # Errors
    /// The script's failure.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        self.script(&["heal", &i.to_string()], &[]).map(drop)
    }
}

impl Lab {
    /// Run `f` on a thread of its own that has entered the hub's network namespace (sockets it
    /// makes stay in that namespace; nothing else of the process moves).
    fn in_hub_ns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let path = format!("/run/netns/{}", self.hub());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            f()
        })
        .join()
        .map_err(|_| std::io::Error::other("the hub thread panicked"))?
    }

    /// A port on this machine's loopback whose connections go on to `target`, reached from the
    /// hub namespace (a node's address): how a test's own client talks to a node. The relay
    /// lives as long as the test process.
    ///
    /// # Errors
    /// Binding the port.
    pub fn relay_to_hub(&self, target: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let path = format!("/run/netns/{}", self.hub());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let path = path.clone();
                std::thread::spawn(move || {
                    let upstream = std::thread::spawn(move || {
                        let ns = std::fs::File::open(&path)?;
                        rustix::thread::move_into_link_name_space(
                            std::os::fd::AsFd::as_fd(&ns),
                            Some(rustix::thread::LinkNameSpaceType::Network),
                        )?;
                        TcpStream::connect_timeout(&target, Duration::from_secs(5))
                    })
                    .join();
                    if let Ok(Ok(upstream)) = upstream {
                        pipe(client, upstream);
                    }
                });
            }
        });
        Ok(addr)
    }

    /// A port on the hub's bridge address (`192.168.77.254`, which every node reaches) whose
    /// connections go on to `target` on this machine (e.g. a server's API on the loopback): how
    /// the nodes reach a server the test runs outside the lab.
    ///
    /// # Errors
    /// Binding the port in the hub.
    pub fn relay_from_hub(&self, target: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = self.in_hub_ns(|| TcpListener::bind("192.168.77.254:0"))?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    if let Ok(upstream) =
                        TcpStream::connect_timeout(&target, Duration::from_secs(5))
                    {
                        pipe(client, upstream);
                    }
                });
            }
        });
        Ok(addr)
    }
}

/// Copy both ways until each side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = std::thread::spawn(move || copy_then_close(a, b2));
    copy_then_close(b, a2);
    let _ = one.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A registry of the lab (see [`Lab::registry`]); killed on drop.
pub struct Registry {
    child: std::process::Child,
    /// `HOST:PORT`, reachable from the nodes.
    pub addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A failing test shows what the nodes' engines said last: a node's engine that went away
        // is otherwise only "connection refused" in the test's output.
        if std::thread::panicking() {
            for i in 1..=self.nodes {
                let log = self.base.join(format!("n{i}/dockerd.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                // A Go panic's first lines say why; its goroutine dump after them is long.
                let from = lines
                    .iter()
                    .position(|l| l.starts_with("panic:") || l.starts_with("fatal error:"))
                    .unwrap_or(lines.len().saturating_sub(30));
                let end = (from + 30).min(lines.len());
                eprintln!(
                    "swarm lab {} node{i}: {}, lines {from}..{end}:\n{}",
                    self.prefix,
                    log.display(),
                    lines[from..end].join("\n")
                );
            }
        }
        if let Err(e) = self.script(&["down"], &[]) {
            eprintln!("swarm lab {}: teardown failed: {e}", self.prefix);
        }
        let _ = std::fs::remove_file(self.base.with_extension("log"));
    }
}
