#!/usr/bin/env python3
"""Benchmark: what authenticating every API call costs (issue 11), Berth with auth vs without.

The peer is the same binary started with `--auth off` (a hidden flag that exists for this
benchmark only: it refuses a non-loopback `--api-listen`), on the same data directory, in the
same run, alternating on/off so that drift on the machine hits both alike.

1. CPU per API call. The server serves `--calls` keep-alive `GET /api/v1/apps` (the listing the CLI
   makes most) from `--clients` client threads. CPU = utime + stime of the server process from
   /proc/<pid>/stat before and after, divided by the calls answered. With auth on, every call
   carries the local administrator token (`<data-dir>/admin.token`): SHA-256 of the token, a
   cache lookup, the authorisation decision (GETs write no audit row). The difference of the two
   medians is authentication's CPU per call; the issue asks for <= 50 us.
2. `berth ps` over 100 applications. `--apps` one-replica applications are deployed once. Then,
   with auth on and off alternately (the server restarts on the same data directory and adopts the
   containers), the CLI runs as a user runs it, one process per call: `berth apps`, then
   `berth ps --app appN` for every application. Wall time of the whole sweep; the issue asks for
   auth on <= 1.1x auth off.

    python3 bench/api_auth_bench.py [--no-build] [--reps 3] [--calls 20000] [--apps 100]
"""

import argparse
import http.client
import os
import subprocess
import threading
import time

import common
from common import fmt_stats, log, now, ratio, stats


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def token(b):
    path = os.path.join(b.data_dir, "admin.token")
    with open(path) as f:
        return f.read().strip()


def hammer(b, calls, clients, auth):
    """`calls` keep-alive GET /api/v1/apps from `clients` threads; returns (CPU s, answered)."""
    host, port = b.api.split(":")
    headers = {"Authorization": f"Bearer {token(b)}"} if auth else {}
    per = calls // clients
    answered = [0] * clients
    errors = []

    def loop(i):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            for _ in range(per):
                conn.request("GET", "/api/v1/apps", headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
                    return
                answered[i] += 1
        except OSError as e:
            errors.append(str(e))
        finally:
            conn.close()

    # warm up: connections, caches, the token's cache entry
    t = threading.Thread(target=loop, args=(0,))
    t.start()
    t.join()
    answered[0] = 0
    before = cpu_seconds(b.server.pid)
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = cpu_seconds(b.server.pid)
    if errors:
        raise RuntimeError(f"API calls failed (auth {'on' if auth else 'off'}): {errors[:5]}")
    return after - before, sum(answered)


def sweep(b, apps):
    """`berth apps` + `berth ps --app` for every app, one CLI process each; wall seconds."""
    # The CLI does the same in both cases (it reads <data-dir>/admin.token and sends it); only
    # the server's checking differs.
    start = now()
    b.berth("apps", quiet=True)
    for app in apps:
        b.berth("ps", "--app", app, quiet=True)
    return now() - start


def restart(b, auth):
    if b.server is not None:
        b.server.terminate()
        b.server.wait(timeout=30)
        b.logf.close()
    b.start_berth(extra=[] if auth else ["--auth", "off"], keep_ports=b.api is not None)


def main():
    p = common.common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--apps", type=int, default=100)
    a = p.parse_args()

    b = common.Bench(build=not a.no_build, berth_log=a.berth_log)
    b.print_versions()
    b.prepare()

    # 1. CPU per call
    cpu = {True: [], False: []}
    for rep in range(a.reps):
        for auth in (True, False):
            restart(b, auth)
            secs, n = hammer(b, a.calls, a.clients, auth)
            cpu[auth].append(secs / n * 1e6)
            log(f"rep {rep + 1} auth {'on ' if auth else 'off'}: {n} calls, "
                f"{secs:.3f} s CPU, {secs / n * 1e6:.1f} us/call")

    # 2. ps over N applications
    restart(b, True)
    names = [f"a{i:03d}" for i in range(a.apps)]
    compose = b.write("app.yaml", common.to_yaml({"services": {"web": {
        "image": b.image, "expose": ["8080"], "labels": {"berth.test": b.id},
        "deploy": {"replicas": 1}}}}))
    log(f"deploying {a.apps} applications")
    for app in names:
        b.berth("apply", "-f", compose, "--app", app, "--detach", quiet=True)
        b.berth_apps.add(app)
    deadline = now() + 600
    while now() < deadline:
        ok = sum(1 for app in names if (b.berth_status(app) or {}).get("converged"))
        if ok == len(names):
            break
        time.sleep(2)
    walls = {True: [], False: []}
    for rep in range(a.reps):
        for auth in (True, False):
            restart(b, auth)
            sweep(b, names[:5])  # warm the server's caches after the restart
            w = sweep(b, names)
            walls[auth].append(w)
            log(f"rep {rep + 1} auth {'on ' if auth else 'off'}: {len(names) + 1} CLI calls in {w:.2f} s")
    restart(b, True)  # cleanup removes the apps through an authenticated CLI

    on, off = stats(cpu[True])[0], stats(cpu[False])[0]
    print()
    print(common.table([
        ["API CPU per call, auth on", fmt_stats(cpu[True], "us", 1), ""],
        ["API CPU per call, auth off", fmt_stats(cpu[False], "us", 1), ""],
        ["authentication CPU per call", f"{on - off:.1f} us", "(limit 50 us)"],
        [f"apps + ps x{len(names)}, auth on", fmt_stats(walls[True]), ""],
        [f"apps + ps x{len(names)}, auth off", fmt_stats(walls[False]), ""],
        ["ratio on/off", f"{ratio(walls[True], walls[False]):.3f}", "(limit 1.10)"],
    ], ["measure", "median (min-max)", ""]))


if __name__ == "__main__":
    main()
