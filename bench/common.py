"""Shared helpers for Berth's benchmarks (Python 3 standard library only).

Everything a benchmark creates carries the label ``berth.test=bench-<id>`` (containers, networks,
volumes, the image, Swarm services) and is removed by :meth:`Bench.cleanup`, which runs in a
``finally`` and also on SIGINT/SIGTERM. Swarm mode is enabled only when a benchmark needs it and
only if it was inactive; it is left again at cleanup (only in that case).
"""

import atexit
import http.client
import json
import os
import random
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
# Benchmarks build with the `perf` profile (Cargo.toml: release plus fat LTO and one codegen
# unit), not the plain release profile that scripts/demo and `cargo install` use.
PROFILE = "perf"
BERTH_BIN = os.path.join(TARGET, PROFILE, "berth")
TESTAPP_BIN = os.path.join(TARGET, "x86_64-unknown-linux-gnu", PROFILE, "berth-testapp")
BUILD_BERTH = ["cargo", "build", "--profile", PROFILE, "-p", "berth"]
BUILD_TESTAPP = ["cargo", "build", "--profile", PROFILE, "-p", "berth-testapp", "--target",
                 "x86_64-unknown-linux-gnu"]
TESTAPP_RUSTFLAGS = "-C target-feature=+crt-static"


def log(*a):
    print(*a, flush=True)


def now():
    return time.monotonic()


# --------------------------------------------------------------------------------------------
# statistics and formatting


def stats(values):
    """(median, min, max) of a list of numbers, or None for an empty list."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt_stats(values, unit="s", digits=2):
    s = stats(values)
    if s is None:
        return "n/a"
    m, lo, hi = s
    return f"{m:.{digits}f} {unit} ({lo:.{digits}f}–{hi:.{digits}f}, n={len([v for v in values if v is not None])})"


def ratio(a, b):
    sa, sb = stats(a), stats(b)
    if not sa or not sb or sb[0] == 0:
        return None
    return sa[0] / sb[0]


def table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# a tiny YAML writer (block style; scalars as JSON strings/numbers, which YAML accepts)


def to_yaml(obj, indent=0):
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 1))
            else:
                out.append(f"{pad}{k}: {scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 1).lstrip()
                out.append(f"{pad}- {inner}")
            else:
                out.append(f"{pad}- {scalar(v)}")
    return "\n".join(out)


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(str(v))


# --------------------------------------------------------------------------------------------
# Docker Engine API over the unix socket (fast enough to poll every few ms)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Docker:
    def __init__(self, host=None):
        """The engine at `host` (`unix://PATH`), else `DOCKER_HOST`, else the default socket."""
        host = host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not host.startswith("unix://"):
            raise SystemExit("the benchmarks talk to Docker over a unix socket (DOCKER_HOST=unix://...)")
        self.path = host[len("unix://"):]

    def req(self, method, path, body=None, timeout=60):
        c = UnixHTTPConnection(self.path, timeout=timeout)
        try:
            headers = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            c.request(method, "/v1.41" + path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode(errors="replace")
            return r.status, payload
        finally:
            c.close()

    def get(self, path, **kw):
        status, payload = self.req("GET", path, **kw)
        if status >= 300:
            raise RuntimeError(f"docker GET {path}: {status} {payload}")
        return payload

    def containers(self, labels, all_=True):
        f = urllib.parse.quote(json.dumps({"label": labels}))
        return self.get(f"/containers/json?all={1 if all_ else 0}&filters={f}")

    def inspect(self, cid):
        status, payload = self.req("GET", f"/containers/{cid}/json")
        return payload if status == 200 else None

    def kill(self, cid):
        status, payload = self.req("POST", f"/containers/{cid}/kill?signal=SIGKILL")
        if status >= 300:
            raise RuntimeError(f"docker kill {cid}: {status} {payload}")

    def gwbridge_ip(self, cid):
        """The container's address on docker_gwbridge (Swarm tasks are reachable from the host there)."""
        net = self.get("/networks/docker_gwbridge")
        for k, v in (net.get("Containers") or {}).items():
            if k.startswith(cid[:12]):
                return v["IPv4Address"].split("/")[0]
        return None

    def ipvs_available(self):
        return os.path.exists("/proc/net/ip_vs")

    def tasks(self, service):
        f = urllib.parse.quote(json.dumps({"service": [service]}))
        return self.get(f"/tasks?filters={f}")


def run(cmd, check=True, timeout=600, env=None, capture=True, quiet=False):
    """Run a command; returns CompletedProcess. Prints it unless quiet."""
    if not quiet:
        log("  $ " + " ".join(cmd))
    p = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


_given_ports = set()


def free_port():
    """A free loopback port, never the same one twice in this process."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p not in _given_ports:
            _given_ports.add(p)
            return p


# --------------------------------------------------------------------------------------------
# plain HTTP client used for polling and load


def http_get(host, port, path, timeout=1.0, conn=None, headers=None):
    """GET; returns (status, body). With `conn` (an http.client.HTTPConnection) uses keep-alive."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        h = dict(headers or {})
        if own:
            h["Connection"] = "close"
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        return r.status, body
    finally:
        if own:
            conn.close()


class Load:
    """Steady load: `threads` threads doing GETs (half keep-alive, half a new connection per
    request), ~`pause` seconds apart each. Counts successes, failures and versions seen."""

    def __init__(self, host, port, path, threads=4, pause=0.005, timeout=10.0, record=False):
        self.host, self.port, self.path = host, port, path
        self.pause, self.timeout = pause, timeout
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.versions = {}
        # with `record`: (start, end, status (0: error), body's first two words) per request,
        # wall-clock times (time.time())
        self.records = [] if record else None
        self.threads = [threading.Thread(target=self._loop, args=(i % 2 == 0,), daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _loop(self, keepalive):
        conn = None
        while not self.stop_ev.is_set():
            t = time.time()
            try:
                if keepalive:
                    if conn is None:
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                    status, body = http_get(self.host, self.port, self.path, conn=conn)
                else:
                    status, body = http_get(self.host, self.port, self.path, timeout=self.timeout)
                with self.lock:
                    if status == 200:
                        self.ok += 1
                        v = body.split(" ", 1)[0]
                        self.versions[v] = self.versions.get(v, 0) + 1
                    else:
                        self.failures.append((t, f"{status} {body.strip()[:200]}"))
                    if self.records is not None:
                        self.records.append((t, time.time(), status, " ".join(body.split()[:2])))
            except Exception as e:  # noqa: BLE001 - every error is a failed request
                with self.lock:
                    self.failures.append((t, f"{type(e).__name__}: {e}"))
                    if self.records is not None:
                        self.records.append((t, time.time(), 0, f"{type(e).__name__}: {e}"))
                if conn is not None:
                    conn.close()
                    conn = None
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def finish(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)
        return {"ok": self.ok, "failed": len(self.failures), "failures": self.failures[:20],
                "versions": dict(self.versions)}


# --------------------------------------------------------------------------------------------
# the benchmark context: run id, image, berth server, swarm, cleanup


class Bench:
    def __init__(self, build=True, berth_log="info"):
        rid = time.strftime("%H%M%S") + "".join(random.choice(string.ascii_lowercase) for _ in range(4))
        self.id = f"bench-{rid}"
        self.label = f"berth.test={self.id}"
        self.short = rid  # for names
        self.dir = tempfile.mkdtemp(prefix=f"berth-{self.id}-")
        self.docker = Docker()
        self.image = f"berth-bench/testapp:{rid}"
        self.build = build
        self.berth_log = berth_log
        self.server = None
        self.server_log = os.path.join(self.dir, "berth-server.log")
        self.data_dir = os.path.join(self.dir, "berth-data")
        self.api = None
        self.gateway = None
        self.berth_apps = set()
        self.compose_projects = {}  # project -> compose file
        self.stacks = set()
        self.swarm_inited = False
        self.gwbridge_existed = True
        self._cleaned = False
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        log(f"signal {signum}: cleaning up")
        self.cleanup()
        sys.exit(130)

    # ---- versions and environment

    def versions(self):
        out = {}
        for name, cmd in [
            ("docker-compose", ["docker-compose", "version", "--short"]),
            ("docker engine", ["docker", "version", "--format", "{{.Server.Version}}"]),
            ("berth", [BERTH_BIN, "--version"]),
        ]:
            try:
                out[name] = run(cmd, check=False, quiet=True).stdout.strip()
            except Exception as e:  # noqa: BLE001
                out[name] = f"unknown ({e})"
        out["cpus"] = str(os.cpu_count())
        try:
            out["load average"] = " ".join(open("/proc/loadavg").read().split()[:3])
        except OSError:
            pass
        return out

    def print_versions(self):
        log(f"run id: {self.id}   (work dir {self.dir})")
        for k, v in self.versions().items():
            log(f"  {k}: {v}")

    # ---- image

    def prepare(self):
        if self.build:
            log(f"building berth (profile {PROFILE}) and the static test app")
            run(BUILD_BERTH, timeout=1800)
            env = dict(os.environ, RUSTFLAGS=TESTAPP_RUSTFLAGS)
            run(BUILD_TESTAPP, env=env, timeout=1800)
        for b in (BERTH_BIN, TESTAPP_BIN):
            if not os.path.exists(b):
                raise SystemExit(f"missing {b}: build it (see bench/README.md) or drop --no-build")
        ctx = os.path.join(self.dir, "image")
        os.makedirs(ctx, exist_ok=True)
        with open(TESTAPP_BIN, "rb") as src, open(os.path.join(ctx, "app"), "wb") as dst:
            dst.write(src.read())
        os.chmod(os.path.join(ctx, "app"), 0o755)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM scratch\nCOPY app /app\nEXPOSE 8080\nENTRYPOINT [\"/app\"]\n")
        run(["docker", "build", "-q", "--label", self.label, "-t", self.image, ctx])

    # ---- berth server

    def start_berth(self, extra=(), keep_ports=False, api_host="127.0.0.1", env=None):
        """Start `berth server` on this run's data directory (again, after a stop: it adopts
        what runs); `extra` are more server arguments, `env` more environment (e.g. a
        `DOCKER_HOST`); the API listens on `api_host` (a Swarm lab's hub address, where the
        nodes reach it)."""
        if not keep_ports:
            self.api = f"{api_host}:{free_port()}"
            self.gateway = ("127.0.0.1", free_port())
        cmd = [BERTH_BIN, "server", "--api-listen", self.api,
               "--gateway-listen", f"{self.gateway[0]}:{self.gateway[1]}",
               "--label", self.label, "--data-dir", self.data_dir, *extra]
        log("  $ BERTH_LOG=%s %s 2>%s" % (self.berth_log, " ".join(cmd), self.server_log))
        self.logf = open(self.server_log, "a")
        # own session: a signal sent to this script's process group does not reach the server
        self.server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.logf,
                                       env=dict(os.environ, BERTH_LOG=self.berth_log, **(env or {})),
                                       start_new_session=True)
        deadline = now() + 30
        host, port = self.api.split(":")
        while now() < deadline:
            self.check_server()
            try:
                if http_get(host, int(port), "/api/v1/health", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("berth server did not answer /api/v1/health within 30 s")

    def check_server(self):
        """Raise with the log tail if the server is gone (e.g. signalled from outside)."""
        if self.server is not None and self.server.poll() is not None:
            tail = "".join(open(self.server_log, errors="replace").readlines()[-15:])
            raise RuntimeError(f"berth server exited ({self.server.returncode}); log tail:\n{tail}")

    def berth(self, *args, check=True, timeout=600, quiet=False, env=None):
        self.check_server()
        # The CLI finds the local administrator token in <data-dir>/admin.token.
        e = dict(os.environ, BERTH_SERVER=f"http://{self.api}", BERTH_DATA_DIR=self.data_dir)
        if env:
            e.update(env)
        return run([BERTH_BIN, *args], check=check, timeout=timeout, env=e, quiet=quiet)

    def api_headers(self):
        """The local administrator token the server writes at each start (none with --auth off
        or before the server ever started)."""
        try:
            with open(os.path.join(self.data_dir, "admin.token")) as f:
                return {"Authorization": f"Bearer {f.read().strip()}"}
        except OSError:
            return {}

    def berth_status(self, app):
        host, port = self.api.split(":")
        status, body = http_get(host, int(port), f"/api/v1/apps/{app}", timeout=5,
                                headers=self.api_headers())
        return json.loads(body) if status == 200 else None

    def berth_ps(self, app):
        host, port = self.api.split(":")
        status, body = http_get(host, int(port), f"/api/v1/apps/{app}/ps", timeout=5,
                                headers=self.api_headers())
        return json.loads(body) if status == 200 else []

    def berth_rm(self, app):
        self.berth("rm", "--app", app, check=False, timeout=180)
        self.berth_apps.discard(app)

    # ---- compose / swarm

    def write(self, name, content):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(content)
        return p

    def compose(self, project, file, *args, check=True, quiet=False, timeout=600):
        self.compose_projects[project] = file
        return run(["docker-compose", "-p", project, "-f", file, *args], check=check,
                   quiet=quiet, timeout=timeout)

    def swarm_state(self):
        return run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], quiet=True).stdout.strip()

    def ensure_swarm(self):
        if self.swarm_inited:
            return
        state = self.swarm_state()
        if state == "active":
            log("  swarm mode already active (not ours: it will be left active)")
            return
        if state != "inactive":
            raise RuntimeError(f"swarm state is {state!r}; refusing to touch it")
        self.gwbridge_existed = run(["docker", "network", "inspect", "docker_gwbridge"], quiet=True,
                                    check=False).returncode == 0
        run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"])
        self.swarm_inited = True
        # the ingress network appears asynchronously
        deadline = now() + 30
        while now() < deadline:
            p = run(["docker", "network", "ls", "-q", "--filter", "name=ingress"], quiet=True)
            if p.stdout.strip():
                break
            time.sleep(0.2)

    def stack_deploy(self, stack, file):
        self.stacks.add(stack)
        run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", file, stack])

    def stack_rm(self, stack):
        run(["docker", "stack", "rm", stack], check=False)
        # wait until its containers and networks are gone (the network removal is asynchronous)
        deadline = now() + 60
        while now() < deadline:
            cs = self.docker.containers([f"com.docker.stack.namespace={stack}"])
            ns = run(["docker", "network", "ls", "-q", "--filter",
                      f"label=com.docker.stack.namespace={stack}"], quiet=True, check=False).stdout.strip()
            if not cs and not ns:
                break
            time.sleep(0.3)
        self.stacks.discard(stack)

    # ---- cleanup

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        log(f"cleanup of {self.id}")
        try:
            for app in list(self.berth_apps):
                if self.server and self.server.poll() is None:
                    try:
                        self.berth_rm(app)
                    except Exception as e:  # noqa: BLE001
                        log(f"  berth rm {app}: {e}")
            if self.server and self.server.poll() is None:
                self.server.terminate()
                try:
                    self.server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.server.kill()
                    self.server.wait()
            for project, file in list(self.compose_projects.items()):
                run(["docker-compose", "-p", project, "-f", file, "down", "-v", "--remove-orphans"],
                    check=False, quiet=True, timeout=300)
            for stack in list(self.stacks):
                self.stack_rm(stack)
            # anything else carrying our label
            for kind, ls, rm in [
                ("service", ["docker", "service", "ls", "-q"], ["docker", "service", "rm"]),
                ("container", ["docker", "ps", "-aq"], ["docker", "rm", "-f", "-v"]),
                ("network", ["docker", "network", "ls", "-q"], ["docker", "network", "rm"]),
                ("volume", ["docker", "volume", "ls", "-q"], ["docker", "volume", "rm", "-f"]),
            ]:
                if kind == "service" and self.swarm_state() != "active":
                    continue
                p = run(ls + ["--filter", f"label={self.label}"], check=False, quiet=True)
                ids = p.stdout.split()
                if ids:
                    log(f"  removing {len(ids)} leftover {kind}(s)")
                    run(rm + ids, check=False, quiet=True)
                    if kind == "service":
                        time.sleep(3)
        finally:
            if self.swarm_inited:
                run(["docker", "swarm", "leave", "--force"], check=False)
                self.swarm_inited = False
                # `swarm init` created docker_gwbridge; `swarm leave` keeps it: remove it if it was ours
                if not self.gwbridge_existed:
                    time.sleep(1)
                    run(["docker", "network", "rm", "docker_gwbridge"], check=False, quiet=True)
            p = run(["docker", "images", "-q", "--filter", f"label={self.label}"], check=False, quiet=True)
            if p.stdout.split():
                run(["docker", "rmi", "-f", *sorted(set(p.stdout.split()))], check=False, quiet=True)
            log(f"cleanup done; berth server log kept at {self.server_log}")


# --------------------------------------------------------------------------------------------
# a Swarm lab (scripts/swarm-lab.sh): node dockerds in network namespaces, never the host's


CLONE_NEWNET = 0x40000000
_libc = None


def setns_net(path):
    """Move the calling thread into the network namespace at `path` (`/run/netns/NAME`,
    `/proc/PID/ns/net`). Only this thread moves (Linux namespaces are per thread); sockets it
    makes stay in that namespace, threads and processes it starts inherit it."""
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            import ctypes
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


class SwarmLab:
    """A lab Swarm of `nodes` node dockerds (node 1 the manager) made by scripts/swarm-lab.sh
    under a base directory, namespace prefix and network of its own; torn down by `down()`,
    which also runs at exit (and from `Bench`'s signal handler through `atexit`). The host's
    engine, its Swarm state and its network are never touched."""

    SCRIPT = os.path.join(REPO, "scripts", "swarm-lab.sh")

    def __init__(self, short, net="192.168.78"):
        self.prefix = f"bs{short[-4:]}"
        self.base = f"/tmp/bsw-{short}"
        self.net = net
        self.nodes = 0
        self.log = self.base + ".log"
        self.host_ns = None
        self._up = False
        self._down = False

    def env(self, images=""):
        return dict(os.environ, SW_BASE=self.base, SW_PREFIX=self.prefix, SW_NET=self.net,
                    SW_IMAGES=images)

    def script(self, *args, images="", check=True, quiet=False):
        if not quiet:
            log(f"  $ SW_PREFIX={self.prefix} SW_NET={self.net} scripts/swarm-lab.sh {' '.join(args)}")
        with open(self.log, "a") as out:
            # output to a file, never a pipe: the node dockerds inherit it and outlive the script
            p = subprocess.run(["bash", self.SCRIPT, *args], env=self.env(images), stdin=subprocess.DEVNULL,
                               stdout=out, stderr=out, timeout=300)
        if check and p.returncode != 0:
            tail = "".join(open(self.log, errors="replace").readlines()[-20:])
            raise RuntimeError(f"swarm-lab.sh {' '.join(args)} failed ({p.returncode}):\n{tail}")
        return p

    def up(self, nodes, images=()):
        if os.geteuid() != 0:
            raise SystemExit("the Swarm lab needs root (network namespaces)")
        if os.path.exists(f"/run/netns/{self.hub}"):
            raise RuntimeError(f"namespace {self.hub} exists already")
        self.nodes = nodes
        self._up = True
        atexit.register(self.down)
        self.script("up", str(nodes), images=" ".join(images))

    @property
    def hub(self):
        return f"{self.prefix}hub"

    @property
    def hub_addr(self):
        return f"{self.net}.254"

    def addr(self, i):
        return f"{self.net}.{i}"

    def socket(self, i):
        return f"{self.base}/n{i}/docker.sock"

    def docker(self, i):
        """An Engine API client for node `i`'s dockerd."""
        return Docker(f"unix://{self.socket(i)}")

    def d(self, i, *args, check=True, quiet=True, timeout=120):
        """`docker` against node `i`'s engine."""
        return run(["docker", "-H", f"unix://{self.socket(i)}", *args], check=check, quiet=quiet,
                   timeout=timeout)

    def cut(self, i):
        self.script("cut", str(i), quiet=True)

    def heal(self, i):
        self.script("heal", str(i), quiet=True)

    def enter_hub(self):
        """Move this (main) thread into the hub's network namespace, where node addresses are
        reachable: the server started from here listens on the hub's bridge, and clients,
        threads and subprocesses started from here are in the lab's network."""
        if self.host_ns is None:
            self.host_ns = os.open("/proc/self/task/%d/ns/net" % threading.get_native_id(), os.O_RDONLY)
        setns_net(f"/run/netns/{self.hub}")

    def leave_hub(self):
        if self.host_ns is not None:
            if _libc.setns(self.host_ns, CLONE_NEWNET) != 0:
                log("  could not return to the host's network namespace")
            os.close(self.host_ns)
            self.host_ns = None

    def down(self):
        if not self._up or self._down:
            return
        self._down = True
        try:
            self.leave_hub()
        except Exception as e:  # noqa: BLE001
            log(f"  leave hub: {e}")
        self.script("down", check=False)
        left = [n for n in run(["ip", "netns", "list"], check=False, quiet=True).stdout.split()
                if n.startswith(self.prefix)]
        log(f"lab {self.prefix} down" + (f"; namespaces left: {left}" if left else ""))
        if not left:
            try:
                os.remove(self.log)  # the lab script's output, kept only while something is left
            except OSError:
                pass

    def node_names(self):
        """{node ID: hostname} from the manager."""
        return {n["ID"]: n["Description"]["Hostname"] for n in self.docker(1).get("/nodes")}

    def node_state(self, hostname):
        for n in self.docker(1).get("/nodes"):
            if n["Description"]["Hostname"] == hostname:
                return n["Status"]["State"]
        return None


def common_args(parser):
    parser.add_argument("--no-build", action="store_true",
                        help="use the already built binaries (target/perf/berth and the static test app)")
    parser.add_argument("--berth-log", default="info", help="BERTH_LOG for the server (e.g. debug)")
    return parser
