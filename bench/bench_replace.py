#!/usr/bin/env python3
"""Benchmark 2: time to a working replacement after a replica is killed, Berth vs Swarm mode.

Berth: one service (1 replica, and 2), routed by Berth's gateway (`x-berth.route`), health
       `x-berth.health` (HTTP /healthz, interval 1s). Swarm: the same image as a stack service
       with default settings (restart_policy default: condition any, delay 5s), Compose
       healthcheck `["CMD", "/app", "probe"]` every 1s, published on a port with the routing mesh.

Per repetition: SIGKILL one replica's container through the Engine API (`POST /containers/{id}/kill`,
what `docker kill` does) and from that instant poll every ~10 ms with a fresh connection:
`GET /` through Berth's gateway (or the published port). The timer stops at the first 200 answered
by the *replacement*: a container that is not one of the surviving replicas and is either a new
container or the killed one started again (its Docker `StartedAt` changed). Berth's gateway only
routes to replicas whose readiness probe passed, and Swarm only adds a task to the mesh once its
healthcheck passed, so this is "replacement healthy AND serving through the front door".
Failed polls in the window are counted too (with 2 replicas, every one is a failed user request).
"""

import argparse
import sys
import time

import common
from common import log, now

INTERVAL = "1s"
POLL = 0.010


def service(b, replicas):
    return {"image": b.image, "expose": ["8080"], "labels": {"berth.test": b.id},
            "deploy": {"replicas": replicas}}


def berth_file(b, replicas, prefix):
    svc = service(b, replicas)
    svc["x-berth"] = {"route": {"path_prefix": prefix},
                      "health": {"http": "/healthz", "port": 8080, "interval": INTERVAL, "timeout": "1s"}}
    return {"services": {"web": svc}}


def swarm_mode(b, replicas):
    """How the Swarm service is reached: 'ingress' (routing mesh, needs IPVS in the kernel),
    'host' (a host-mode published port: one task per node, so 1 replica only), or 'direct'
    (no front door: the new task container's own address on docker_gwbridge)."""
    if b.docker.ipvs_available():
        return "ingress"
    return "host" if replicas == 1 else "direct"


def swarm_file(b, replicas, port, mode):
    svc = service(b, replicas)
    del svc["expose"]
    if mode == "ingress":
        svc["ports"] = [f"{port}:8080"]
    elif mode == "host":
        svc["ports"] = [{"target": 8080, "published": port, "protocol": "tcp", "mode": "host"}]
    svc["deploy"]["labels"] = {"berth.test": b.id}
    svc["healthcheck"] = {"test": ["CMD", "/app", "probe"], "interval": INTERVAL, "timeout": "1s", "retries": 3}
    return {"version": "3.8", "services": {"web": svc},
            "networks": {"default": {"labels": {"berth.test": b.id}}}}


def hostname_of(body):
    parts = body.split()
    return parts[1] if len(parts) > 1 else ""


def measure_kill(b, host, port, path, victim, survivors, timeout=60):
    """Kill `victim` (full id) and poll until the replacement answers. Returns (seconds, failed polls,
    new container id)."""
    vic = b.docker.inspect(victim)
    old_started = vic["State"]["StartedAt"]
    survivor_hosts = {s[:12] for s in survivors}
    failed = 0
    t0 = now()
    b.docker.kill(victim)
    deadline = t0 + timeout
    checked = {}
    while now() < deadline:
        t = now()
        try:
            status, body = common.http_get(host, port, path, timeout=0.5)
        except OSError:
            status, body = 0, ""
        if status == 200:
            h = hostname_of(body)
            if h and h not in survivor_hosts:
                if h not in checked or checked[h] is False:
                    info = b.docker.inspect(h)
                    fresh = bool(info) and (not info["Id"].startswith(victim[:12])
                                            or info["State"]["StartedAt"] != old_started)
                    checked[h] = info["Id"] if fresh else False
                if checked[h]:
                    return t_done(t0, status_time=now()), failed, checked[h]
        else:
            failed += 1
        rest = POLL - (now() - t)
        if rest > 0:
            time.sleep(rest)
    raise RuntimeError(f"no replacement answered within {timeout} s")


def measure_kill_direct(b, svc, victim, survivors, timeout=60):
    """Swarm without a usable front door: kill `victim`, then poll every ~10 ms until a new task
    container of `svc` is running and a GET to its own address (docker_gwbridge IP:8080) answers
    200. Returns seconds."""
    skip = set(survivors) | {victim}
    t0 = now()
    b.docker.kill(victim)
    deadline = t0 + timeout
    while now() < deadline:
        t = now()
        for c in b.docker.containers([f"com.docker.swarm.service.name={svc}"], all_=False):
            if c["Id"] in skip:
                continue
            ip = b.docker.gwbridge_ip(c["Id"])
            if not ip:
                continue
            try:
                status, _ = common.http_get(ip, 8080, "/", timeout=0.5)
            except OSError:
                status = 0
            if status == 200:
                return now() - t0, c["Id"]
        rest = POLL - (now() - t)
        if rest > 0:
            time.sleep(rest)
    raise RuntimeError(f"no replacement task answered within {timeout} s")


def t_done(t0, status_time):
    return status_time - t0


def wait_serving(host, port, path, want_hosts, timeout=120):
    """Until requests succeed 20 times in a row and `want_hosts` distinct containers answered."""
    deadline = now() + timeout
    seen, streak = set(), 0
    while now() < deadline:
        try:
            status, body = common.http_get(host, port, path, timeout=1)
        except OSError:
            status, body = 0, ""
        if status == 200:
            streak += 1
            seen.add(hostname_of(body))
        else:
            streak = 0
        if streak >= 20 and len(seen) >= want_hosts:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{host}:{port}{path} not serving {want_hosts} replicas steadily within {timeout} s")


def run_berth(b, replicas, reps):
    app = f"k{replicas}{b.short[-4:]}"
    prefix = f"/k{replicas}"
    f = b.write(f"replace-berth-{replicas}.yaml", common.to_yaml(berth_file(b, replicas, prefix)) + "\n")
    log(f"Berth file ({f}):\n" + open(f).read())
    b.berth_apps.add(app)
    b.berth("apply", "-f", f, "--app", app)
    host, port = b.gateway
    times, fails = [], []
    for rep in range(1, reps + 1):
        wait_serving(host, port, prefix + "/", replicas)
        time.sleep(1.0)  # let probes settle at their normal interval
        ps = sorted(b.berth_ps(app), key=lambda i: i["slot"])
        ids = [i["container_id"] for i in ps]
        victim = ids[(rep - 1) % len(ids)]
        survivors = [i for i in ids if i != victim]
        dt, failed, new = measure_kill(b, host, port, prefix + "/", victim, survivors)
        times.append(dt)
        fails.append(failed)
        log(f"    berth replicas={replicas} rep {rep}: replacement answered through the gateway after "
            f"{dt * 1000:.0f} ms ({'same container restarted' if new.startswith(victim[:12]) else 'new container'};"
            f" {failed} failed polls)")
    st = b.berth_status(app)
    log(f"    berth status after the kills: revision {st['revision']} {st['revision_status']}, health {st['health']}"
        f", problem(s): {[s.get('problem') for s in st['services'] if s.get('problem')]}")
    b.berth_rm(app)
    return times, fails


def swarm_running(b, svc):
    return [t for t in b.docker.tasks(svc)
            if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]


def run_swarm(b, replicas, reps):
    stack = f"k{replicas}{b.short[-4:]}"
    svc = f"{stack}_web"
    port = common.free_port()
    mode = swarm_mode(b, replicas)
    f = b.write(f"replace-swarm-{replicas}.yaml", common.to_yaml(swarm_file(b, replicas, port, mode)) + "\n")
    log(f"Swarm stack file ({f}):\n" + open(f).read())
    log(f"Swarm command: docker stack deploy --resolve-image never -c {f} {stack}")
    if mode == "host":
        log("NOTE: this kernel has no IPVS (/proc/net/ip_vs), so Swarm's routing mesh cannot publish ports here;"
            " the peer uses a host-mode published port instead (one task per node: fine for 1 replica).")
    elif mode == "direct":
        log("NOTE: this kernel has no IPVS, so Swarm's routing mesh cannot publish ports here, and a host-mode port"
            " cannot serve 2 tasks on one node: the peer is measured until the new task container is running"
            " (Swarm marks it running once its healthcheck passed) and answers on its own docker_gwbridge"
            " address -- no front door, which favours Swarm.")
    b.stack_deploy(stack, f)
    times, fails = [], []
    try:
        for rep in range(1, reps + 1):
            deadline = now() + 120
            while len(swarm_running(b, svc)) != replicas:
                if now() > deadline:
                    raise RuntimeError("swarm service did not reach its replicas")
                time.sleep(0.2)
            if mode != "direct":
                wait_serving("127.0.0.1", port, "/", replicas)
            time.sleep(1.0)
            cs = sorted(c["Id"] for c in b.docker.containers([f"com.docker.swarm.service.name={svc}"], all_=False))
            victim = cs[(rep - 1) % len(cs)]
            survivors = [c for c in cs if c != victim]
            if mode == "direct":
                dt, new = measure_kill_direct(b, svc, victim, survivors)
                failed = None
            else:
                dt, failed, new = measure_kill(b, "127.0.0.1", port, "/", victim, survivors)
            times.append(dt)
            fails.append(failed)
            via = {"ingress": "the routing mesh", "host": "the host-mode published port",
                   "direct": "its own address (no front door)"}[mode]
            log(f"    swarm replicas={replicas} rep {rep}: replacement answered through {via} after "
                f"{dt * 1000:.0f} ms ({failed} failed polls)")
    finally:
        b.stack_rm(stack)
    return times, fails, mode


def bench(b, replica_counts=(1, 2), reps=5, swarm_reps=3):
    log("\n=== Benchmark 2: time to a serving replacement after `docker kill` (Berth vs Swarm mode) ===")
    log("Kill: POST /v1.41/containers/<id>/kill?signal=SIGKILL (= docker kill); poll GET / every 10 ms,"
        " new connection, 0.5 s timeout")
    b.ensure_swarm()
    results = {}
    for r in replica_counts:
        log(f"\n-- replicas = {r}")
        bt, bf = run_berth(b, r, reps)
        st, sf, mode = run_swarm(b, r, swarm_reps)
        ratio = common.ratio(bt, st)
        results[r] = {"berth": bt, "berth_failed": bf, "swarm": st, "swarm_failed": sf, "ratio": ratio,
                      "swarm_mode": mode}
        log(f"replicas={r}: berth {common.fmt_stats(bt)}  failed polls {bf}")
        log(f"replicas={r}: swarm {common.fmt_stats(st)}  failed polls {sf}")
        log(f"replicas={r}: ratio Berth/Swarm (medians) = {ratio:.3f}  (goal <= 0.2: {'met' if ratio <= 0.2 else 'NOT met'})")
    return results


def summary_rows(results):
    rows = []
    for r, x in results.items():
        rows.append([f"2. replacement, {r} replica(s)", f"Swarm ({x['swarm_mode']} port)", common.fmt_stats(x["berth"]),
                     common.fmt_stats(x["swarm"]), f"{x['ratio']:.3f}", "<= 0.2",
                     "yes" if x["ratio"] <= 0.2 else "NO"])
    return rows


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=5, help="kills per configuration for Berth")
    ap.add_argument("--swarm-reps", type=int, default=3, help="kills per configuration for Swarm (each takes >5 s)")
    ap.add_argument("--replicas", default="1,2")
    args = ap.parse_args()
    b = common.Bench(build=not args.no_build, berth_log=args.berth_log)
    try:
        b.print_versions()
        b.prepare()
        b.start_berth()
        res = bench(b, [int(x) for x in args.replicas.split(",")], args.reps, args.swarm_reps)
        print()
        print(common.table(summary_rows(res), ["benchmark", "peer", "Berth", "peer", "ratio", "goal", "met"]))
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
