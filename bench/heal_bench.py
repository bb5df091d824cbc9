#!/usr/bin/env python3
"""Benchmark 11: healing a killed replica, idle and under load (issue 13).

One application, one service of `--replicas` (3) replicas of the static test app, routed by
Berth's gateway with `x-berth.health` (HTTP /healthz, interval 1 s). Per repetition one replica
is killed through the Engine API (`docker kill`, SIGKILL), and from that instant two clocks run:

* **serving**: the first `200` through the gateway answered by the replacement (a container that
  is not one of the survivors: a new one, or the killed one started again), polled every ~10 ms
  with a new connection;
* **healthy**: the application's status (`GET /api/v1/apps/{app}`) reports every replica
  healthy again, polled every 10 ms (what the issue measured: "until Berth reports 3 healthy").

Both are measured idle, and with `--clients` (4) client threads requesting through the gateway
5 ms apart each (half keep-alive, half a new connection per request; `common.Load`), the issue's "while 4
clients keep requesting". Failed client requests in the window are counted (they must stay 0:
the gateway routes only to ready replicas and retries idempotent requests).

With `--swarm`, Swarm mode's own healing of the same image (stack service, restart_policy
default, healthcheck every 1 s) is measured in the same run, idle and under the same load
aimed at the surviving tasks' own addresses (this kernel has no IPVS, so no routing mesh): the
time until the replacement task's container answers on its own address.

    python3 bench/heal_bench.py [--no-build] [--reps 5] [--replicas 3] [--clients 4] [--swarm]

The server runs with `BERTH_LOG=info,berth_controlplane::heal=debug` and the benchmark prints
the server's own breakdown of each heal (event -> pass -> create/start -> first probe passed ->
routing table) from its log (`heal timeline` lines).
"""

import argparse
import re
import statistics
import sys
import threading
import time

import common
from common import log, now

POLL = 0.010


class Clients:
    """`n` threads requesting `path` through host:port (5 ms between a thread's requests), half
    with keep-alive connections, half a new connection per request; counts failures."""

    def __init__(self, host, port, path, n):
        self.load = common.Load(host, port, path, threads=n, pause=0.005, timeout=10.0)

    def __enter__(self):
        if self.load.threads:
            self.load.start()
        return self

    def __exit__(self, *exc):
        if self.load.threads:
            self.load.finish()

    def counts(self):
        with self.load.lock:
            return self.load.ok, len(self.load.failures)


def hostname_of(body):
    parts = body.split()
    return parts[1] if len(parts) > 1 else ""


def app_file(b, replicas, prefix):
    return {"services": {"web": {
        "image": b.image, "expose": ["8080"], "labels": {"berth.test": b.id},
        "deploy": {"replicas": replicas},
        "x-berth": {"route": {"path_prefix": prefix},
                    "health": {"http": "/healthz", "port": 8080, "interval": "1s", "timeout": "1s"}},
    }}}


def all_healthy(b, app, replicas):
    s = b.berth_status(app)
    if not s or s.get("health") != "healthy":
        return False
    return all(svc.get("healthy") == replicas for svc in s.get("services", []))


def kill_and_time(b, app, prefix, replicas, victim, survivors, timeout=30):
    """Kill `victim`; (seconds to serving, seconds to healthy)."""
    host, port = b.gateway
    survivor_hosts = {s[:12] for s in survivors}
    old_started = b.docker.inspect(victim)["State"]["StartedAt"]
    t0 = now()
    b.docker.kill(victim)
    serving = healthy = None
    seen_down = False
    checked = {}
    while now() - t0 < timeout and (serving is None or healthy is None):
        t = now()
        if serving is None:
            try:
                status, body = common.http_get(host, port, prefix + "/", timeout=0.5)
            except OSError:
                status, body = 0, ""
            h = hostname_of(body) if status == 200 else ""
            if h and h not in survivor_hosts:
                if not checked.get(h):
                    info = b.docker.inspect(h)
                    checked[h] = bool(info) and (not info["Id"].startswith(victim[:12])
                                                 or info["State"]["StartedAt"] != old_started)
                if checked[h]:
                    serving = now() - t0
        if healthy is None:
            ok = all_healthy(b, app, replicas)
            if not ok:
                seen_down = True
            elif seen_down or now() - t0 > 3:
                healthy = now() - t0
        rest = POLL - (now() - t)
        if rest > 0:
            time.sleep(rest)
    if serving is None or healthy is None:
        raise RuntimeError(f"not healed within {timeout} s (serving {serving}, healthy {healthy})")
    return serving, healthy


def wait_steady(b, app, prefix, replicas, timeout=120):
    host, port = b.gateway
    deadline = now() + timeout
    seen, streak = set(), 0
    while now() < deadline:
        try:
            status, body = common.http_get(host, port, prefix + "/", timeout=1)
        except OSError:
            status, body = 0, ""
        if status == 200:
            streak += 1
            seen.add(hostname_of(body))
        else:
            streak = 0
        if streak >= 20 and len(seen) >= replicas and all_healthy(b, app, replicas):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{app} not steady within {timeout} s")


TIMELINE = re.compile(r"heal timeline.*")


def timelines(b, since):
    """The server's `heal timeline` log lines written after byte offset `since`."""
    with open(b.server_log, errors="replace") as f:
        f.seek(since)
        return [m.group(0) for line in f if (m := TIMELINE.search(line))]


def log_size(b):
    try:
        with open(b.server_log, "rb") as f:
            return f.seek(0, 2)
    except OSError:
        return 0


def run_berth(b, reps, replicas, clients):
    app = f"heal{b.short[-4:]}"
    prefix = "/heal"
    f = b.write("heal.yaml", common.to_yaml(app_file(b, replicas, prefix)) + "\n")
    b.berth_apps.add(app)
    b.berth("apply", "-f", f, "--app", app)
    host, port = b.gateway
    out = {}
    for load in (0, clients):
        serving, healthy, failed, lines = [], [], [], []
        for rep in range(reps):
            wait_steady(b, app, prefix, replicas)
            time.sleep(1.5)
            ids = [r["container_id"] for r in sorted(b.berth_ps(app), key=lambda r: r["slot"])
                   if r.get("state") == "running"]
            victim = ids[rep % len(ids)]
            survivors = [i for i in ids if i != victim]
            mark = log_size(b)
            with Clients(host, port, prefix + "/", load) as c:
                time.sleep(0.5 if load else 0)
                ok0, failed0 = c.counts()
                s, h = kill_and_time(b, app, prefix, replicas, victim, survivors)
                time.sleep(0.2)
                ok1, failed1 = c.counts()
            serving.append(s)
            healthy.append(h)
            failed.append(failed1 - failed0)
            tl = timelines(b, mark)
            lines.extend(tl)
            log(f"  {load} clients, kill {rep + 1}: serving {s * 1000:.0f} ms, healthy {h * 1000:.0f} ms,"
                f" {failed1 - failed0} failed of {ok1 - ok0 + failed1 - failed0} client requests")
            for t in tl:
                log(f"    server: {t}")
        out[load] = {"serving": serving, "healthy": healthy, "failed": failed, "timelines": lines}
    b.berth_rm(app)
    return out


# ---- Swarm mode, same image, same health interval, direct to the task's address


def swarm_file(b, replicas):
    svc = {"image": b.image, "labels": {"berth.test": b.id},
           "deploy": {"replicas": replicas, "labels": {"berth.test": b.id}},
           "healthcheck": {"test": ["CMD", "/app", "probe"], "interval": "1s", "timeout": "1s", "retries": 3}}
    return {"version": "3.8", "services": {"web": svc},
            "networks": {"default": {"labels": {"berth.test": b.id}}}}


class AddrClients:
    """`n` threads requesting the given addresses round robin, 5 ms apart each."""

    def __init__(self, addrs, n):
        self.addrs, self.n = addrs, n
        self.stop = threading.Event()
        self.ok = self.failed = 0
        self.lock = threading.Lock()
        self.threads = []

    def loop(self, k):
        i = k
        while not self.stop.is_set():
            ip = self.addrs[i % len(self.addrs)]
            i += 1
            try:
                status, _ = common.http_get(ip, 8080, "/", timeout=2)
            except OSError:
                status = 0
            with self.lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
            time.sleep(0.005)

    def __enter__(self):
        for k in range(self.n):
            t = threading.Thread(target=self.loop, args=(k,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


def run_swarm(b, reps, replicas, clients):
    stack = f"heal{b.short[-4:]}"
    svc = f"{stack}_web"
    f = b.write("heal-swarm.yaml", common.to_yaml(swarm_file(b, replicas)) + "\n")
    b.ensure_swarm()
    b.stack_deploy(stack, f)
    out = {}
    try:
        for load in (0, clients):
            times = []
            for rep in range(reps):
                deadline = now() + 120
                while True:
                    running = [c for c in b.docker.containers([f"com.docker.swarm.service.name={svc}"], all_=False)
                               if "(healthy)" in c.get("Status", "")]
                    if len(running) == replicas:
                        break
                    if now() > deadline:
                        raise RuntimeError("swarm service did not reach its replicas")
                    time.sleep(0.2)
                time.sleep(1.5)
                ids = sorted(c["Id"] for c in running)
                victim = ids[rep % len(ids)]
                survivors = [i for i in ids if i != victim]
                addrs = [b.docker.gwbridge_ip(i) for i in survivors]
                with AddrClients(addrs, load):
                    time.sleep(0.5 if load else 0)
                    skip = set(ids)
                    t0 = now()
                    b.docker.kill(victim)
                    done = None
                    while now() - t0 < 60 and done is None:
                        t = now()
                        for c in b.docker.containers([f"com.docker.swarm.service.name={svc}"], all_=False):
                            if c["Id"] in skip or "(healthy)" not in c.get("Status", ""):
                                continue
                            ip = b.docker.gwbridge_ip(c["Id"])
                            try:
                                status, _ = common.http_get(ip, 8080, "/", timeout=0.5)
                            except OSError:
                                status = 0
                            if status == 200:
                                done = now() - t0
                                break
                        rest = POLL - (now() - t)
                        if rest > 0:
                            time.sleep(rest)
                if done is None:
                    raise RuntimeError("no healthy replacement task within 60 s")
                times.append(done)
                log(f"  swarm, {load} clients, kill {rep + 1}: replacement healthy and answering after"
                    f" {done * 1000:.0f} ms")
            out[load] = times
    finally:
        b.stack_rm(stack)
    return out


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--swarm", action="store_true", help="also measure Swarm mode in the same run")
    ap.add_argument("--swarm-reps", type=int, default=3)
    a = ap.parse_args()
    if a.berth_log == "info":
        a.berth_log = "info,berth_controlplane::heal=debug"
    b = common.Bench(build=not a.no_build, berth_log=a.berth_log)
    try:
        b.print_versions()
        b.prepare()
        b.start_berth()
        log(f"\n=== Benchmark 11: a killed replica of {a.replicas}, idle and under {a.clients} clients ===")
        res = run_berth(b, a.reps, a.replicas, a.clients)
        sw = run_swarm(b, a.swarm_reps, a.replicas, a.clients) if a.swarm else None
        rows = []
        for load in (0, a.clients):
            r = res[load]
            rows.append([f"Berth, {load} clients", common.fmt_stats(r["serving"]), common.fmt_stats(r["healthy"]),
                         sum(r["failed"]), "<= 0.5 s",
                         "yes" if statistics.median(r["healthy"]) <= 0.5 else "no"])
            if sw:
                rows.append([f"Swarm mode, {load} clients (direct to task)", common.fmt_stats(sw[load]), "", "",
                             "", ""])
        log("\n== results (median (min-max))")
        log(common.table(rows, ["case", "replacement serving", "all replicas healthy", "failed requests",
                                "goal (healthy)", "met"]))
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
