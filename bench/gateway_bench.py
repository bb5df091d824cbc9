#!/usr/bin/env python3
"""Gateway benchmark: CPU per proxied request and added latency of Berth's gateway vs nginx and
HAProxy, on the same local backend in the same run; plus a replica-kill test under load.

Python 3 standard library only. Needs `nginx`, `haproxy` and `wrk` on PATH
(Debian: `apt-get install -y nginx haproxy wrk`), `openssl` for the ES256 variant (skipped
without it), and optionally `perf` (`--perf`). No Docker: every process runs on 127.0.0.1.

What runs:
* backend: a tiny nginx server block answering `return 200 "ok\\n"` (1 worker, no access log), or
  `--backend testapp` (target/x86_64-unknown-linux-gnu/perf/berth-testapp). The SAME backend
  instance serves every proxy.
* proxies: nginx (keep-alive upstream pool), HAProxy (`http-reuse always`), and
  `berth gateway --control URL`, fed by a fake control plane in this program that streams the
  routing table as NDJSON (one line at start, the same line again every 5 s, a new line whenever
  the benchmark changes the table).
* load: `wrk -t T -c C -d D` (not pinned); CPU = utime+stime of every process of the proxy
  (nginx: master + workers) from /proc/<pid>/stat before and after, divided by completed
  requests. Latency: `wrk -t1 -c1 --latency` p50/p99, also straight to the backend.
* Berth policy variants (table swaps on the same process): plain; route rate limit (huge, so
  nothing is rejected); HS256 JWT from an external issuer + consumer rate limit; ES256 JWT
  (Berth's own issuer, JWKS; the verified-token cache makes every request after the first a
  cache hit) + consumer rate limit.
* kill test: two backends, load through the proxy, SIGKILL one after 2 s; failed requests and
  the time of the last request that was still tried on the dead replica (from the proxy's log).

Usage:
    python3 bench/gateway_bench.py [--no-build] [--reps 2] [--duration 10] [--connections 50]
        [--threads 2] [--workers auto|N] [--backend nginx|testapp] [--with-logs] [--perf-stat]
        [--perf DIR] [--skip-kill | --skip-bench] [--kill-reps 1]
Results and how to read them: docs/benchmarks.md, section 4.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (BERTH_BIN, BUILD_BERTH, BUILD_TESTAPP, REPO, TESTAPP_BIN,  # noqa: E402
                    TESTAPP_RUSTFLAGS, free_port, log, table)

CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every process this program starts; all are killed (by pid, process group) at cleanup."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, env=None, stdout=None, stderr=None, cwd=None):
        p = subprocess.Popen(cmd, env=env, stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL, cwd=cwd,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p)


def children(pid):
    """pid and all its descendants (from /proc/*/stat ppid)."""
    ppid_of = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                ppid_of[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in ppid_of.items() if pp == p)
    return out


def cpu_seconds(pids):
    """utime+stime (all threads) of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError):
            pass
    return total / CLK_TCK


def busy_seconds():
    """CPU time (all CPUs, user+nice+system+irq+softirq+steal) the whole machine spent so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def children_cpu():
    """CPU time of this program's finished children (wrk runs)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_http(port, path="/", want=200, timeout=15.0, headers=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
            with urllib.request.urlopen(req, timeout=1) as r:
                last = r.status
        except urllib.error.HTTPError as e:
            last = e.code
        except OSError as e:
            last = str(e)
        if last == want:
            return
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer {want} (last: {last})")


def version_of(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
        return p.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------------------------
# wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def wrk(port, conns, threads, duration, headers=(), latency=False, path="/"):
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s"]
    if latency:
        cmd.append("--latency")
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=duration + 60)
    out = p.stdout
    res = {"cmd": cmd, "raw": out}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["sock_errors"] = sum(int(x) for x in m.groups()) if m else 0
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", out, re.M)
        res[f"p{q}"] = _ms(m.group(1)) if m else None
    return res


# --------------------------------------------------------------------------------------------
# configurations of the peers and the backend (written to the work dir, printed once)


def nginx_backend_conf(work, name, port):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    conf = f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def nginx_proxy_conf(work, name, port, upstreams, workers, access_log=False):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    servers = "\n".join(f"        server {u};" for u in upstreams)
    log_line = (f"access_log {d}/access.log kill buffer=64k flush=100ms;" if access_log == "kill" else
                f"access_log {d}/access.log main buffer=64k flush=1s;" if access_log else "access_log off;")
    conf = f"""worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
    log_format main '$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_id $upstream_addr $request_time';
    log_format kill '$msec $status $upstream_addr';
    {log_line}
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    keepalive_requests 1000000;
    upstream backend {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id always;
        }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def haproxy_conf(work, name, port, upstreams, threads, log_kill=False):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    servers = "\n".join(f"    server s{i + 1} {u} check inter 1s fall 2 rise 2" for i, u in enumerate(upstreams))
    log = ("    log stdout format raw local0\n" if log_kill else "")
    logfmt = ('    log global\n    log-format "%[date(0,ms)] %ST %s %rc"\n' if log_kill else "")
    conf = f"""global
    nbthread {threads}
    maxconn 4000
{log}
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    option redispatch 1
    retries 3
    http-reuse always
{logfmt}
frontend fe
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto http
    unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
    unique-id-header X-Request-Id
    http-response set-header X-Request-Id %[unique-id]
    default_backend be

backend be
    balance roundrobin
{servers}
"""
    path = os.path.join(d, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(conf)
    return path


# --------------------------------------------------------------------------------------------
# the fake control plane: streams the routing table as NDJSON, like `GET /api/v1/gateway/table`


class ControlPlane:
    def __init__(self):
        self.cond = threading.Condition()
        self.table = {"version": 0, "routes": [], "ports": [], "issuers": []}
        self.published = {}  # version -> time the line was written
        cp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if not self.path.startswith("/api/v1/gateway/table"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = -1
                try:
                    while not cp.stopping:
                        with cp.cond:
                            if cp.table["version"] == sent:
                                cp.cond.wait(timeout=5.0)
                            t = cp.table
                        line = (json.dumps(t) + "\n").encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                        if t["version"] != sent:
                            cp.published.setdefault(t["version"], time.time())
                        sent = t["version"]
                except OSError:
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.stopping = False
        self.port = free_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, routes, issuers=()):
        with self.cond:
            self.table = {"version": self.table["version"] + 1, "routes": routes, "ports": [],
                          "issuers": list(issuers)}
            self.cond.notify_all()
            return self.table["version"]

    def close(self):
        self.stopping = True
        with self.cond:
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


def route(endpoints, policy=None):
    return {"app": "b", "service": "s", "host": None, "path_prefix": "/", "strip_prefix": False,
            "endpoints": [{"id": eid, "addr": addr} for eid, addr in endpoints],
            "policy": policy or {}}


# --------------------------------------------------------------------------------------------
# tokens


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_signing_input(header, claims):
    return b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64u(json.dumps(claims, separators=(",", ":")).encode())


def hs256_token(secret, claims):
    si = jwt_signing_input({"alg": "HS256", "typ": "JWT"}, claims)
    sig = hmac.new(secret.encode(), si.encode(), hashlib.sha256).digest()
    return si + "." + b64u(sig)


def _der_len(b, i):
    n = b[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7f
    return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k


def es256_material(work, claims, kid="bench-1"):
    """(token, jwks json) made with the openssl CLI; None when openssl is missing."""
    if not shutil.which("openssl"):
        return None
    key = os.path.join(work, "es256.pem")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                   check=True, capture_output=True)
    pub = subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    point = pub[-65:]
    assert point[0] == 4
    x, y = point[1:33], point[33:]
    si = jwt_signing_input({"alg": "ES256", "typ": "JWT", "kid": kid}, claims)
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=si.encode(),
                         check=True, capture_output=True).stdout
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> fixed r || s
    _, i = _der_len(der, 1)
    ints = []
    for _ in range(2):
        assert der[i] == 2
        n, i = _der_len(der, i + 1)
        ints.append(int.from_bytes(der[i:i + n], "big"))
        i += n
    sig = ints[0].to_bytes(32, "big") + ints[1].to_bytes(32, "big")
    jwks = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": b64u(x), "y": b64u(y),
                                 "kid": kid, "alg": "ES256", "use": "sig"}]})
    return si + "." + b64u(sig), jwks


# --------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.work = tempfile.mkdtemp(prefix="berth-gwbench-")
        self.cp = None
        self.results = {}  # name -> list of per-rep dicts
        self.kill_results = []
        self.perfstat = {}

    # -- backends

    def start_backend(self, name):
        port = free_port()
        if self.args.backend == "testapp":
            env = dict(os.environ, PORT=str(port))
            p = self.procs.start([TESTAPP_BIN], env=env)
        else:
            conf = nginx_backend_conf(self.work, name, port)
            p = self.procs.start(["nginx", "-c", conf, "-p", os.path.dirname(conf)])
        wait_http(port, "/")
        return p, port

    # -- proxies: each returns (proc, port)

    def start_nginx(self, name, upstreams, access_log=False):
        port = free_port()
        conf = nginx_proxy_conf(self.work, name, port, upstreams, self.args.workers, access_log)
        os.makedirs(os.path.join(self.work, name, "tmp"), exist_ok=True)
        p = self.procs.start(["nginx", "-c", conf, "-p", os.path.dirname(conf)],
                             stderr=open(os.path.join(self.work, name, "stderr.log"), "w"))
        wait_http(port, "/")
        return p, port

    def start_haproxy(self, name, upstreams, log_kill=False):
        port = free_port()
        threads = os.cpu_count() if self.args.workers == "auto" else int(self.args.workers)
        conf = haproxy_conf(self.work, name, port, upstreams, threads, log_kill)
        out = open(os.path.join(self.work, name, "stdout.log"), "w")
        p = self.procs.start(["haproxy", "-db", "-f", conf], stdout=out, stderr=out)
        wait_http(port, "/")
        return p, port

    def start_berth(self, name, berth_log="warn"):
        port = free_port()
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        env = dict(os.environ, BERTH_LOG=berth_log)
        if self.args.workers != "auto":
            env["BERTH_GATEWAY_WORKERS"] = str(self.args.workers)
        err = open(os.path.join(d, "stderr.log"), "w")
        p = self.procs.start([self.berth_bin, "gateway", "--control", f"http://127.0.0.1:{self.cp.port}",
                              "--listen", f"127.0.0.1:{port}"], env=env, stderr=err, stdout=err)
        return p, port

    # -- one measurement

    def measure(self, name, proc, port, headers=(), rep=0):
        a = self.args
        wrk(port, a.connections, a.threads, 2, headers)  # warm-up (pools, caches)
        pids = children(proc.pid)
        c0, t0 = cpu_seconds(pids), time.time()
        b0 = cpu_seconds(self.backend_pids)
        m0, w0 = busy_seconds(), children_cpu()
        r = wrk(port, a.connections, a.threads, a.duration, headers)
        c1, t1 = cpu_seconds(pids), time.time()
        b1 = cpu_seconds(self.backend_pids)
        m1, w1 = busy_seconds(), children_cpu()
        # CPU used by everything else on the machine (other users' jobs): the noise indicator
        foreign = ((m1 - m0) - (c1 - c0) - (b1 - b0) - (w1 - w0)) / (t1 - t0)
        lat = wrk(port, 1, 1, a.latency_duration, headers, latency=True)
        res = {
            "rps": r["rps"], "requests": r["requests"],
            "errors": r["non2xx"] + r["sock_errors"],
            "cpu_s": c1 - c0, "cpu_cores": (c1 - c0) / (t1 - t0),
            "us_per_req": (c1 - c0) / max(r["requests"], 1) * 1e6,
            "backend_us_per_req": (b1 - b0) / max(r["requests"], 1) * 1e6,
            "p50": lat["p50"], "p99": lat["p99"], "lat_errors": lat["non2xx"] + lat["sock_errors"],
            "foreign": foreign, "wrk_cores": (w1 - w0) / (t1 - t0),
        }
        if rep == 0 and name not in self.results:
            log(f"    $ {' '.join(r['cmd'])}")
            log(f"    $ {' '.join(lat['cmd'])}")
        log(f"  {name:28s} {res['rps']:9.0f} req/s  {res['us_per_req']:6.2f} µs CPU/req "
            f"({res['cpu_cores']:.2f} cores)  backend {res['backend_us_per_req']:5.2f} µs/req  "
            f"c1 p50 {res['p50']:.3f} ms p99 {res['p99']:.3f} ms  errors {res['errors']}+{res['lat_errors']}  "
            f"[wrk {res['wrk_cores']:.2f} cores, others {foreign:.2f} cores]")
        self.results.setdefault(name, []).append(res)
        if self.args.perf and (name.startswith("berth") or name in ("nginx", "haproxy")):
            self.perf(name, pids, port, headers, rep)
        if self.args.perf_stat and rep == 0:
            self.perf_stat(name, pids, port, headers)
        return res

    def perf_stat(self, name, pids, port, headers):
        """Syscalls and context switches per request (perf stat on the proxy's pids, 5 s load)."""
        if not shutil.which("perf"):
            return
        out = os.path.join(self.work, re.sub(r"[^a-z0-9]+", "-", name.lower()) + ".perfstat")
        ev = "raw_syscalls:sys_enter,context-switches,cpu-migrations"
        pr = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ev, "-o", out, "-p",
                               ",".join(str(p) for p in pids)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            r = wrk(port, self.args.connections, self.args.threads, 5, headers)
        finally:
            pr.send_signal(signal.SIGINT)
            pr.wait(timeout=30)
        counts = {}
        with open(out) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                    counts[parts[2]] = float(parts[0])
        n = max(r["requests"], 1)
        per = {k: v / n for k, v in counts.items()}
        self.perfstat[name] = per
        log(f"    perf stat {name}: " + ", ".join(f"{k} {v:.2f}/req" for k, v in per.items()))

    def perf(self, name, pids, port, headers, rep):
        if rep != 0 or not shutil.which("perf"):
            return
        out = os.path.join(self.args.perf, f"{name}.data")
        os.makedirs(self.args.perf, exist_ok=True)
        # BENCH_PERF_CALLGRAPH=dwarf for call graphs through code built without frame pointers.
        graph = os.environ.get("BENCH_PERF_CALLGRAPH", "fp")
        pr = subprocess.Popen(["perf", "record", "-F", "999" if graph == "dwarf" else "1999",
                               f"--call-graph={graph}", "-e", "cpu-clock", "-o", out,
                               "-p", ",".join(str(p) for p in pids)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            wrk(port, self.args.connections, self.args.threads, 6, headers)
        finally:
            pr.send_signal(signal.SIGINT)
            pr.wait(timeout=60)
        log(f"    perf data: {out}")

    # -- the throughput / latency part

    def run_direct(self, rep):
        lat = wrk(self.backend_port, 1, 1, self.args.latency_duration, latency=True)
        pids = self.backend_pids
        b0 = cpu_seconds(pids)
        r = wrk(self.backend_port, self.args.connections, self.args.threads, self.args.duration)
        b1 = cpu_seconds(pids)
        res = {"rps": r["rps"], "requests": r["requests"], "errors": r["non2xx"] + r["sock_errors"],
               "cpu_s": 0, "cpu_cores": 0, "us_per_req": 0,
               "backend_us_per_req": (b1 - b0) / max(r["requests"], 1) * 1e6,
               "p50": lat["p50"], "p99": lat["p99"], "lat_errors": 0}
        log(f"  {'direct (no proxy)':28s} {res['rps']:9.0f} req/s  backend {res['backend_us_per_req']:5.2f} µs/req  "
            f"c1 p50 {res['p50']:.3f} ms p99 {res['p99']:.3f} ms")
        self.results.setdefault("direct (no proxy)", []).append(res)

    def run_rep(self, rep):
        up = [f"127.0.0.1:{self.backend_port}"]
        order = ["nginx", "haproxy", "berth"]
        order = order[rep % 3:] + order[:rep % 3]  # who goes first rotates
        log(f"\n== repetition {rep + 1}: order {order}")
        self.run_direct(rep)
        for who in order:
            if self.args.only and who != "berth" and not re.search(self.args.only, who):
                continue
            if who == "nginx":
                p, port = self.start_nginx(f"nginx-r{rep}", up)
                try:
                    self.measure("nginx", p, port, rep=rep)
                finally:
                    self.procs.stop(p)
                if self.args.with_logs:
                    p, port = self.start_nginx(f"nginx-log-r{rep}", up, access_log=True)
                    try:
                        self.measure("nginx + access log", p, port, rep=rep)
                    finally:
                        self.procs.stop(p)
            elif who == "haproxy":
                p, port = self.start_haproxy(f"haproxy-r{rep}", up)
                try:
                    self.measure("haproxy", p, port, rep=rep)
                finally:
                    self.procs.stop(p)
            else:
                self.run_berth(rep, up)

    def run_berth(self, rep, up):
        ep = [("e1", up[0])]
        p, port = self.start_berth(f"berth-r{rep}")
        try:
            self.cp.set([route(ep)])
            wait_http(port, "/")
            for name, policy, issuers, hdrs in self.variants():
                if self.args.only and not re.search(self.args.only, name):
                    continue
                self.cp.set([route(ep, policy)], issuers)
                want = 200 if not hdrs else 401
                wait_http(port, "/", want=want)  # the new table is served
                if hdrs:
                    wait_http(port, "/", headers=dict([hdrs[0].split(": ", 1)]))
                self.measure(name, p, port, headers=hdrs, rep=rep)
        finally:
            self.procs.stop(p)
        if self.args.with_logs:
            p, port = self.start_berth(f"berth-log-r{rep}", berth_log="info")
            try:
                self.cp.set([route(ep)])
                wait_http(port, "/")
                self.measure("berth + access log", p, port, rep=rep)
            finally:
                self.procs.stop(p)

    def variants(self):
        huge = {"per_second": 1_000_000_000, "burst": 1_000_000_000}
        now = int(time.time())
        claims = {"iss": "https://issuer.example", "sub": "user-42", "aud": ["bench"],
                  "iat": now, "exp": now + 7200}
        secret = "bench-hs256-secret-0123456789abcdef-xyz"  # ≥ 32 bytes
        ext = {"name": "ext", "issuer": "https://issuer.example", "jwks": None, "hs256_secret": secret}
        out = [
            ("berth plain", {}, [], []),
            ("berth rate limit", {"rate_limit": dict(huge, key="route")}, [], []),
            ("berth HS256 + rate limit",
             {"auth": {"issuers": ["ext"], "audiences": ["bench"]},
              "rate_limit": dict(huge, key="consumer")},
             [ext], [f"Authorization: Bearer {hs256_token(secret, claims)}"]),
        ]
        if self.es256 is not None:
            token, jwks = self.es256
            own = {"name": "berth", "issuer": "https://berth.local", "jwks": jwks, "hs256_secret": None}
            out.append(("berth ES256 (cached) + rate limit",
                        {"auth": {"issuers": ["berth"], "audiences": ["bench"]},
                         "rate_limit": dict(huge, key="consumer")},
                        [own], [f"Authorization: Bearer {token}"]))
            # The same route as `auth: subscribers` (docs/market.md): the token's `sub` must be
            # one of the entry's subscribers (here 1000, the caller among them), and the caller's
            # plan is its own bucket (huge, so nothing is rejected).
            subscribers = sorted([f"team-{i}/app" for i in range(999)] + ["user-42"])
            out.append(("berth ES256 subscribers + rate limit",
                        {"auth": {"issuers": ["berth"], "audiences": ["bench"],
                                  "subscribers": subscribers},
                         "rate_limit": dict(huge, key="consumer")},
                        [own], [f"Authorization: Bearer {token}"]))
            out.append(("berth ES256 subscribers + plan",
                        {"auth": {"issuers": ["berth"], "audiences": ["bench"],
                                  "subscribers": subscribers},
                         "rate_limit": dict(huge, key="consumer"),
                         "plans": [dict(huge, name="gold", subscribers=["user-42"])]},
                        [own], [f"Authorization: Bearer {token}"]))
        return out

    # -- kill test

    def kill_test(self, who, mode, rep):
        """Two backends; load through the proxy; SIGKILL backend 1 after 2 s."""
        a = self.args
        slug = re.sub(r"[^a-z0-9]+", "-", f"kill-{who}-{mode}-r{rep}")
        (b1, p1), (b2, p2) = self.start_backend(f"{slug}-b1"), self.start_backend(f"{slug}-b2")
        dead = f"127.0.0.1:{p1}"
        up = [dead, f"127.0.0.1:{p2}"]
        name = slug
        proc = None
        try:
            if who == "nginx":
                proc, port = self.start_nginx(name, up, access_log="kill")
            elif who == "haproxy":
                proc, port = self.start_haproxy(name, up, log_kill=True)
            else:
                proc, port = self.start_berth(
                    name, berth_log="warn,berth_gateway=debug,berth_gateway::access=off")
                policy = {"retries": {"attempts": 2, "budget_percent": 20}} if "retries" in mode else {}
                self.cp.set([route([("e1", up[0]), ("e2", up[1])], policy)])
                wait_http(port, "/")
            res_box = {}
            t = threading.Thread(target=lambda: res_box.update(
                wrk(port, a.kill_connections, a.threads, a.kill_duration)))
            t.start()
            time.sleep(2.0)
            t_kill = time.time()
            os.killpg(b1.pid, signal.SIGKILL)  # the replica dies (nginx: master and worker)
            if who == "berth" and "update" in mode:
                self.cp.set([route([("e2", up[1])], policy)])  # as on Docker's `die` event
            t.join()
            b1.wait(timeout=5)
            self.procs.stop(b1)
            r = res_box
            time.sleep(1.2)  # let logs flush
            last = self.last_dead_attempt(who, name, proc, dead, "e1", t_kill)
            res = {"who": who, "mode": mode, "requests": r["requests"], "rps": r["rps"],
                   "failed": r["non2xx"] + r["sock_errors"],
                   "last_dead_s": (last - t_kill) if last else None,
                   "dead_attempts": self.dead_attempts}
            self.kill_results.append(res)
            ld = f"{res['last_dead_s']:.3f} s" if res["last_dead_s"] is not None else "none seen"
            log(f"  kill {who:8s} {mode:22s} requests {res['requests']:7d}  failed {res['failed']:4d}  "
                f"attempts on the dead replica {self.dead_attempts:4d}, last at kill + {ld}")
        finally:
            if proc is not None:
                self.procs.stop(proc)
            self.procs.stop(b1)
            self.procs.stop(b2)

    def last_dead_attempt(self, who, name, proc, dead, dead_id, t_kill):
        """Epoch time of the last request that tried the dead replica after the kill, from the
        proxy's log (nginx: `$upstream_addr` lists it; HAProxy: server s1 or a retry; Berth: a
        debug event naming its address)."""
        d = os.path.join(self.work, name)
        times = []
        if who == "nginx":
            # $msec $status $upstream_addr: the dead address in the list = it was tried
            self.procs.stop(proc)  # flushes the buffered log
            with open(os.path.join(d, "access.log")) as f:
                for line in f:
                    parts = line.split(" ", 2)
                    if len(parts) == 3 and dead in parts[2]:
                        times.append(float(parts[0]))
        elif who == "haproxy":
            # (log time, ms) %ST %s %rc: retries > 0 means a connection to the dead server failed
            # first; a request sent to it that failed has %s = s1
            with open(os.path.join(d, "stdout.log")) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 4 and parts[0].isdigit():
                        rc = parts[3].lstrip("+")
                        if (rc.isdigit() and int(rc) > 0) or parts[2] == "s1":
                            times.append(int(parts[0]) / 1000)
        else:
            # debug events naming the dead endpoint ("trying the next replica", "upstream failed")
            with open(os.path.join(d, "stderr.log")) as f:
                for line in f:
                    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                    # only the dead replica fails in this test, so every upstream failure counts
                    if "DEBUG" in line and ("trying the next replica" in line
                                            or "upstream failed after the request was sent" in line):
                        ts = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
                        if ts:
                            s = ts.group(1)
                            base, frac = s.split(".")
                            t = time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - time.timezone
                            times.append(t + float("0." + frac))
        times = [t for t in times if t >= t_kill - 0.002]
        self.dead_attempts = len(times)
        return max(times) if times else None

    # -- main

    def run(self):
        a = self.args
        log(f"work dir: {self.work}")
        log(f"nginx: {version_of(['nginx', '-v'])}")
        log(f"haproxy: {version_of(['haproxy', '-v'])}")
        log(f"wrk: {version_of(['wrk', '-v'])}")
        # A private copy: other engineers may rebuild target/perf/berth during the run.
        self.berth_bin = os.path.join(self.work, "berth")
        shutil.copy2(BERTH_BIN, self.berth_bin)
        with open(self.berth_bin, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(os.path.getmtime(BERTH_BIN)))
        log(f"berth: {version_of([self.berth_bin, '--version'])} ({BERTH_BIN} built {built} UTC, "
            f"sha256 {digest}…, copied to the work dir)")
        log(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()}")
        log(f"load: wrk -t{a.threads} -c{a.connections} -d{a.duration}s (after a 2 s warm-up), not pinned; "
            f"latency: wrk -t1 -c1 -d{a.latency_duration}s --latency; workers: {a.workers}; backend: {a.backend}")
        now = int(time.time())
        self.es256 = es256_material(self.work, {"iss": "https://berth.local", "sub": "user-42",
                                                "aud": ["bench"], "iat": now, "exp": now + 7200})
        if self.es256 is None:
            log("openssl not found: the ES256 variant is skipped")
        self.cp = ControlPlane()
        b, self.backend_port = self.start_backend("backend")
        self.backend_pids = children(b.pid)
        for conf in ["backend/nginx.conf"] if a.backend == "nginx" else []:
            log(f"\n--- {conf}\n" + open(os.path.join(self.work, conf)).read())
        if not a.skip_bench:
            for rep in range(a.reps):
                self.run_rep(rep)
            self.procs.stop(b)
            for conf in ["nginx-r0/nginx.conf", "haproxy-r0/haproxy.cfg"]:
                if os.path.exists(os.path.join(self.work, conf)):
                    log(f"\n--- {conf}\n" + open(os.path.join(self.work, conf)).read())
            self.summary()
        else:
            self.procs.stop(b)
        if not a.skip_kill:
            log(f"\n== kill test: 2 backends, wrk -t{a.threads} -c{a.kill_connections} -d{a.kill_duration}s, "
                "SIGKILL backend 1 at t = 2 s")
            for rep in range(a.kill_reps):
                for who, mode in [("nginx", "passive"), ("haproxy", "passive + checks 1s"),
                                  ("berth", "table update"), ("berth", "table update + retries"),
                                  ("berth", "passive"), ("berth", "passive + retries")]:
                    self.kill_test(who, mode, rep)
            self.kill_summary()

    def summary(self):
        res = self.results
        med = lambda name, k: statistics.median(r[k] for r in res[name]) if name in res else None  # noqa: E731
        ng_cpu, ng_p50, ng_p99 = med("nginx", "us_per_req"), med("nginx", "p50"), med("nginx", "p99")
        d50, d99 = med("direct (no proxy)", "p50"), med("direct (no proxy)", "p99")
        plain = med("berth plain", "us_per_req")
        rows = []
        for name in res:
            rs = res[name]
            cpu = [r["us_per_req"] for r in rs]
            row = [name, f"{med(name, 'rps'):.0f}",
                   "-" if name.startswith("direct") else
                   f"{statistics.median(cpu):.2f} ({min(cpu):.2f}–{max(cpu):.2f})",
                   "-" if name.startswith("direct") or ng_cpu is None
                   else f"{med(name, 'us_per_req') / ng_cpu:.2f}",
                   "-" if not name.startswith("berth") or name == "berth plain" or plain is None
                   else f"{(med(name, 'us_per_req') / plain - 1) * 100:+.0f} %",
                   f"{med(name, 'backend_us_per_req'):.2f}",
                   f"{med(name, 'p50'):.3f}", f"{med(name, 'p99'):.3f}",
                   "-" if name.startswith("direct") else f"{(med(name, 'p50') - d50) * 1000:.0f}",
                   "-" if name.startswith("direct") else f"{(med(name, 'p99') - d99) * 1000:.0f}",
                   "-" if name.startswith("direct") or ng_p50 is None
                   else f"{med(name, 'p50') / ng_p50:.2f}",
                   "-" if name.startswith("direct") or ng_p99 is None
                   else f"{med(name, 'p99') / ng_p99:.2f}",
                   sum(r["errors"] + r["lat_errors"] for r in rs)]
            rows.append(row)
        log("\n== results: median (min–max) over " + str(self.args.reps) + " repetitions")
        log(table(rows, ["proxy", "req/s", "µs CPU/req", "×nginx", "vs berth plain",
                         "backend µs/req", "c1 p50 ms", "c1 p99 ms", "+p50 µs", "+p99 µs",
                         "p50 ×nginx", "p99 ×nginx", "errors"]))
        log("(+p50/+p99: added latency = proxy − direct backend, one connection)")
        jwt = med("berth ES256 (cached) + rate limit", "us_per_req")
        for name, what in [("berth ES256 subscribers + rate limit", "auth: subscribers"),
                           ("berth ES256 subscribers + plan", "auth: subscribers + a plan's own limit")]:
            subs = med(name, "us_per_req")
            if jwt and subs:
                log(f"{what} vs the same route with plain JWT auth: "
                    f"{(subs / jwt - 1) * 100:+.1f} % CPU per request (goal for auth: subscribers: ≤ +2 %)")
        quiet = []
        for name, rs in res.items():
            q = [r for r in rs if r.get("foreign", 1) < 0.2 and not name.startswith("direct")]
            if q:
                cpu = [r["us_per_req"] for r in q]
                quiet.append([name, len(q), f"{statistics.median(cpu):.2f} ({min(cpu):.2f}–{max(cpu):.2f})",
                              f"{statistics.median(r['p50'] for r in q):.3f}",
                              f"{statistics.median(r['p99'] for r in q):.3f}"])
        if quiet:
            log("\nonly the windows in which other processes used < 0.2 cores:")
            log(table(quiet, ["proxy", "n", "µs CPU/req", "c1 p50 ms", "c1 p99 ms"]))
        log("\nper repetition (µs CPU/req): " + "; ".join(
            f"{n}: " + ", ".join(f"{r['us_per_req']:.2f}" for r in rs) for n, rs in res.items()
            if not n.startswith("direct")))

    def kill_summary(self):
        rows = []
        for r in self.kill_results:
            rows.append([r["who"], r["mode"], r["requests"], r["failed"], r["dead_attempts"],
                         "none" if r["last_dead_s"] is None else f"{r['last_dead_s']:.3f}"])
        log("\n== kill test")
        log(table(rows, ["proxy", "mode", "requests", "failed", "requests that tried the dead replica",
                         "last one at kill + s"]))

    def cleanup(self):
        self.procs.cleanup()
        if self.cp:
            self.cp.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--latency-duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", default="auto", help="nginx worker_processes / haproxy nbthread / "
                    "BERTH_GATEWAY_WORKERS for berth (auto = number of CPUs)")
    ap.add_argument("--only", metavar="REGEX", help="run only the proxies/variants whose name matches")
    ap.add_argument("--backend", choices=["nginx", "testapp"], default="nginx")
    ap.add_argument("--with-logs", action="store_true", help="also nginx and berth with access logs on")
    ap.add_argument("--skip-kill", action="store_true")
    ap.add_argument("--skip-bench", action="store_true", help="only the kill test")
    ap.add_argument("--kill-reps", type=int, default=1)
    ap.add_argument("--kill-connections", type=int, default=20)
    ap.add_argument("--kill-duration", type=int, default=14)
    ap.add_argument("--perf-stat", action="store_true",
                    help="syscalls and context switches per request of each proxy (perf stat, rep 1)")
    ap.add_argument("--perf", metavar="DIR", help="perf record Berth's variants (6 s each) into DIR")
    args = ap.parse_args()
    for tool in ("nginx", "haproxy", "wrk"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install -y nginx haproxy wrk")
    if not args.no_build:
        subprocess.run(BUILD_BERTH, cwd=REPO, check=True)
        if args.backend == "testapp":
            env = dict(os.environ, RUSTFLAGS=TESTAPP_RUSTFLAGS)
            subprocess.run(BUILD_TESTAPP, cwd=REPO, check=True, env=env)
    b = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
