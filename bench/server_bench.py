#!/usr/bin/env python3
"""Benchmark 12: the whole `berth server` process under gateway load vs nginx (issue 13).

`bench/gateway_bench.py` measures a standalone `berth gateway` fed by a fake control plane. What
a user runs is `berth server`: the gateway plus the control plane (Docker events, probes,
resyncs, metrics, the API) in one process. This benchmark measures that process as a whole.

Setup (same run, same backend): `berth server` (real Docker, this run's data directory) runs
one application, one replica of the static test app (`/app`, answers `GET /`), routed at `/`
with `x-berth.health` (HTTP /healthz every 1 s). nginx proxies to **the same container** (its
address on the application's network, port 8080), with a keep-alive upstream pool, no access
log. Both serve with the same number of threads: `--gateway-workers W` and
`worker_processes W`, for each W of `--workers` (1,2).

Per repetition and W, in alternating order: `wrk -t2 -c50 -d10s` (after a 2 s warm-up); CPU =
utime+stime of the whole proxy process (every thread of `berth server`; nginx master and
workers) from /proc, divided by completed requests; then `wrk -t1 -c1 --latency` for p50/p99.
Goals (issue 13): `berth server` CPU per request <= 0.9x nginx's at equal threads (median of
3), one-connection p50 <= 1.0x and p99 <= 1.5x nginx.

    python3 bench/server_bench.py [--no-build] [--reps 3] [--workers 1,2] [--duration 10]
        [--perf DIR]   # also `perf record` the server for 6 s per W (first repetition)
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import common
import gateway_bench as gb
from common import log


def nginx(work, name, upstream, workers, procs):
    port = gb.free_port()
    conf = gb.nginx_proxy_conf(work, name, port, [upstream], workers)
    os.makedirs(os.path.join(work, name, "tmp"), exist_ok=True)
    p = procs.start(["nginx", "-c", conf, "-p", os.path.dirname(conf)])
    gb.wait_http(port, "/")
    return p, port


def measure(name, pid, port, a):
    gb.wrk(port, a.connections, a.threads, 2)  # warm-up
    pids = gb.children(pid)
    c0, t0 = gb.cpu_seconds(pids), time.time()
    m0, w0 = gb.busy_seconds(), gb.children_cpu()
    r = gb.wrk(port, a.connections, a.threads, a.duration)
    c1, t1 = gb.cpu_seconds(pids), time.time()
    m1, w1 = gb.busy_seconds(), gb.children_cpu()
    others = ((m1 - m0) - (c1 - c0) - (w1 - w0)) / (t1 - t0)
    lat = gb.wrk(port, 1, 1, a.latency_duration, latency=True)
    res = {"rps": r["rps"], "us": (c1 - c0) / max(r["requests"], 1) * 1e6,
           "cores": (c1 - c0) / (t1 - t0), "p50": lat["p50"], "p99": lat["p99"],
           "errors": r["non2xx"] + r["sock_errors"] + lat["non2xx"] + lat["sock_errors"],
           "others": others}
    log(f"  {name:24s} {res['rps']:9.0f} req/s  {res['us']:6.2f} µs CPU/req ({res['cores']:.2f} cores)"
        f"  c1 p50 {res['p50']:.3f} ms p99 {res['p99']:.3f} ms  errors {res['errors']}"
        f"  [others {others:.2f} cores]")
    return res


def perf_record(out, pid, port, a):
    if not shutil.which("perf"):
        log("  (perf not installed: no profile)")
        return
    pr = subprocess.Popen(["perf", "record", "-F", "1999", "--call-graph=fp", "-e", "cpu-clock",
                           "-o", out, "-p", ",".join(str(p) for p in gb.children(pid))],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        gb.wrk(port, a.connections, a.threads, 6)
    finally:
        pr.send_signal(signal.SIGINT)
        pr.wait(timeout=60)
    log(f"  perf data: {out}  (perf report -i {out} --no-children --sort symbol)")


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--latency-duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--perf", metavar="DIR")
    a = ap.parse_args()
    if a.berth_log == "info":
        a.berth_log = "warn"  # the access log off, as nginx's
    b = common.Bench(build=not a.no_build, berth_log=a.berth_log)
    procs = gb.Procs()
    results = {}
    try:
        b.print_versions()
        log(f"nginx: {gb.version_of(['nginx', '-v'])}; wrk: {gb.version_of(['wrk', '-v'])}")
        b.prepare()
        app = f"srv{b.short[-4:]}"
        f = b.write("server.yaml", common.to_yaml({"services": {"web": {
            "image": b.image, "expose": ["8080"], "labels": {"berth.test": b.id},
            "x-berth": {"route": {"path_prefix": "/"},
                        "health": {"http": "/healthz", "port": 8080, "interval": "1s"}}}}}) + "\n")
        for w in [int(x) for x in a.workers.split(",")]:
            log(f"\n=== {w} serving thread(s): berth server --gateway-workers {w} vs nginx worker_processes {w}")
            if b.server is not None:  # the next W: restarted, it adopts the running replica
                b.server.terminate()
                b.server.wait(timeout=30)
            b.start_berth(extra=["--gateway-workers", str(w)], keep_ports=b.api is not None)
            if app not in b.berth_apps:
                b.berth_apps.add(app)
                b.berth("apply", "-f", f, "--app", app)
            host, port = b.gateway
            gb.wait_http(port, "/")
            ps = b.berth_ps(app)
            cid = next(r["container_id"] for r in ps if r.get("state") == "running")
            nets = b.docker.inspect(cid)["NetworkSettings"]["Networks"]
            ip = next(n["IPAddress"] for n in nets.values() if n.get("IPAddress"))
            upstream = f"{ip}:8080"
            log(f"  backend: container {cid[:12]} at {upstream} (both proxies)")
            for rep in range(a.reps):
                order = ["nginx", "berth server"] if rep % 2 == 0 else ["berth server", "nginx"]
                for who in order:
                    if who == "nginx":
                        p, nport = nginx(b.dir, f"nginx-w{w}-r{rep}", upstream, w, procs)
                        try:
                            res = measure(f"nginx (w={w})", p.pid, nport, a)
                        finally:
                            procs.stop(p)
                    else:
                        res = measure(f"berth server (w={w})", b.server.pid, port, a)
                        if a.perf and rep == 0:
                            os.makedirs(a.perf, exist_ok=True)
                            perf_record(os.path.join(a.perf, f"server-w{w}.data"), b.server.pid, port, a)
                    results.setdefault((who, w), []).append(res)
        rows = []
        for w in [int(x) for x in a.workers.split(",")]:
            ng, sv = results[("nginx", w)], results[("berth server", w)]
            med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
            for who, rs in (("nginx", ng), ("berth server", sv)):
                rows.append([f"{who}, {w} thread(s)", f"{med(rs, 'rps'):.0f}",
                             f"{med(rs, 'us'):.2f} ({min(r['us'] for r in rs):.2f}-{max(r['us'] for r in rs):.2f})",
                             f"{med(rs, 'us') / med(ng, 'us'):.2f}",
                             f"{med(rs, 'p50'):.3f}", f"{med(rs, 'p50') / med(ng, 'p50'):.2f}",
                             f"{med(rs, 'p99'):.3f}", f"{med(rs, 'p99') / med(ng, 'p99'):.2f}",
                             sum(r["errors"] for r in rs), f"{med(rs, 'others'):.2f}"])
        log(f"\n== results: median (min-max) of {a.reps} repetitions; goals: CPU <= 0.9x, p50 <= 1.0x, p99 <= 1.5x nginx")
        log(common.table(rows, ["proxy", "req/s", "µs CPU/req", "x nginx", "c1 p50 ms", "x nginx",
                                "c1 p99 ms", "x nginx", "errors", "other cores"]))
    finally:
        procs.cleanup()
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
