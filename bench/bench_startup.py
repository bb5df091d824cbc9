#!/usr/bin/env python3
"""Benchmark 1: time until N replicas are healthy, Berth vs docker-compose (v1).

Berth:   `berth apply -f compose.yaml --app X` on a fresh app; the timer stops when the command
         returns (it waits until the revision has converged: every replica ready per Berth's HTTP
         probe `x-berth.health`). Also recorded: when the server's status API first says
         `converged` (polled every 50 ms), to show what the CLI's own 200 ms polling adds.
Compose: `docker-compose -p X up -d` with the same file minus `x-berth`, plus a Compose
         healthcheck `["CMD", "/app", "probe"]` with the same interval; docker-compose 1.29 has no
         `up --wait`, so the timer runs from the start of `up -d` until every container of the
         project reports `healthy` (polled every 50 ms through the Engine API).
Between repetitions: `berth rm --app X` / `docker-compose down`. Repetitions alternate the tools.
"""

import argparse
import sys
import threading
import time

import common
from common import log, now

INTERVAL = "1s"


def service(b, replicas):
    return {
        "image": b.image,
        "expose": ["8080"],
        "labels": {"berth.test": b.id},
        "deploy": {"replicas": replicas},
    }


def berth_file(b, replicas):
    svc = service(b, replicas)
    svc["x-berth"] = {"health": {"http": "/healthz", "port": 8080, "interval": INTERVAL, "timeout": "1s"}}
    return {"services": {"web": svc}}


def compose_file(b, replicas):
    svc = service(b, replicas)
    svc["healthcheck"] = {"test": ["CMD", "/app", "probe"], "interval": INTERVAL, "timeout": "1s",
                          "retries": 3}
    return {"services": {"web": svc},
            "networks": {"default": {"labels": {"berth.test": b.id}}}}


def run_berth(b, replicas, rep, file):
    app = f"s{replicas}r{rep}{b.short[-4:]}"
    b.berth_apps.add(app)
    converged_at = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                st = b.berth_status(app)
                if st and st.get("converged") and st.get("revision_status") == "converged":
                    converged_at["t"] = now()
                    return
            except OSError:
                pass
            time.sleep(0.05)

    t0 = now()
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    p = b.berth("apply", "-f", file, "--app", app, check=False, quiet=True)
    t1 = now()
    stop.set()
    w.join(timeout=5)
    if p.returncode != 0:
        raise RuntimeError(f"berth apply failed: {p.stdout}{p.stderr}")
    ps = b.berth_ps(app)
    ready = sum(1 for i in ps if i.get("health") == "healthy" or i.get("in_rotation"))
    elapsed = t1 - t0
    server = converged_at["t"] - t0 if "t" in converged_at else None
    log(f"    berth   N={replicas} rep {rep}: apply returned after {elapsed:.2f} s"
        f" (server status converged at {server:.2f} s)" if server else
        f"    berth   N={replicas} rep {rep}: apply returned after {elapsed:.2f} s")
    if len(ps) != replicas:
        log(f"    WARNING: berth ps shows {len(ps)} replicas ({ready} ready), expected {replicas}")
    t2 = now()
    b.berth_rm(app)
    log(f"      (berth rm took {now() - t2:.2f} s)")
    return elapsed, server


def run_compose(b, replicas, rep, file):
    project = f"s{replicas}r{rep}{b.short[-4:]}c"
    t0 = now()
    b.compose(project, file, "up", "-d", quiet=True)
    t_up = now() - t0
    deadline = now() + 300
    while True:
        cs = b.docker.containers([f"com.docker.compose.project={project}"])
        healthy = sum(1 for c in cs if "(healthy)" in c.get("Status", ""))
        if healthy >= replicas:
            break
        if now() > deadline:
            raise RuntimeError(f"compose: only {healthy}/{replicas} healthy after 300 s")
        time.sleep(0.05)
    elapsed = now() - t0
    log(f"    compose N={replicas} rep {rep}: all healthy after {elapsed:.2f} s (`up -d` returned at {t_up:.2f} s)")
    t2 = now()
    b.compose(project, file, "down", "-v", quiet=True)
    del b.compose_projects[project]
    log(f"      (docker-compose down took {now() - t2:.2f} s)")
    return elapsed, t_up


def run_floor(b, replicas, rep):
    """The engine's own floor, for reference: on a fresh bridge network, create and start N containers
    of the image in parallel through the Engine API and poll each one's /healthz from the host every
    25 ms (what Berth does, with no control plane at all). Timed until all N answered 200."""
    name = f"f{replicas}r{rep}{b.short[-4:]}"
    st, net = b.docker.req("POST", "/networks/create", {"Name": name, "Labels": {"berth.test": b.id}})
    if st >= 300:
        raise RuntimeError(f"network create: {st} {net}")
    ready = {}
    lock = threading.Lock()

    def one(i):
        body = {"Image": b.image, "Labels": {"berth.test": b.id}, "ExposedPorts": {"8080/tcp": {}},
                "HostConfig": {"NetworkMode": name}}
        st, c = b.docker.req("POST", f"/containers/create?name={name}-{i}", body)
        if st >= 300:
            raise RuntimeError(f"create: {st} {c}")
        b.docker.req("POST", f"/containers/{c['Id']}/start")
        ip = b.docker.inspect(c["Id"])["NetworkSettings"]["Networks"][name]["IPAddress"]
        while True:
            try:
                if common.http_get(ip, 8080, "/healthz", timeout=0.5)[0] == 200:
                    with lock:
                        ready[i] = now()
                    return
            except OSError:
                pass
            time.sleep(0.025)

    t0 = now()
    ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(replicas)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=120)
    elapsed = max(ready.values()) - t0 if len(ready) == replicas else None
    for c in b.docker.containers([f"berth.test={b.id}"]):
        if c["Names"][0].lstrip("/").startswith(name + "-"):
            b.docker.req("DELETE", f"/containers/{c['Id']}?force=1&v=1")
    b.docker.req("DELETE", f"/networks/{name}")
    log(f"    engine floor N={replicas} rep {rep}: {replicas} containers created, started and answering /healthz"
        f" after {elapsed:.2f} s")
    return elapsed, None


def bench(b, counts=(10, 30), reps=3):
    log("\n=== Benchmark 1: time until N replicas are healthy (Berth vs docker-compose) ===")
    results = {}
    for n in counts:
        bf = b.write(f"startup-berth-{n}.yaml", common.to_yaml(berth_file(b, n)) + "\n")
        cf = b.write(f"startup-compose-{n}.yaml", common.to_yaml(compose_file(b, n)) + "\n")
        log(f"\n-- N = {n}")
        log(f"Berth command:   berth apply -f {bf} --app <fresh app>   then berth rm --app <app>")
        log(f"Compose command: docker-compose -p <project> -f {cf} up -d  + poll until {n} containers are healthy;"
            " then docker-compose down -v")
        log(f"Berth file ({bf}):\n" + open(bf).read())
        log(f"Compose file ({cf}):\n" + open(cf).read())
        berth_t, berth_srv, comp_t, comp_up, floor_t = [], [], [], [], []
        for rep in range(1, reps + 1):
            # alternate which tool goes first so neither always runs on a warmer engine
            order = [("berth", run_berth, bf), ("compose", run_compose, cf)]
            if rep % 2 == 0:
                order.reverse()
            order.append(("floor", run_floor, None))
            for name, fn, f in order:
                x, y = fn(b, n, rep, f) if f else fn(b, n, rep)
                if name == "floor":
                    floor_t.append(x)
                elif name == "berth":
                    berth_t.append(x)
                    berth_srv.append(y)
                else:
                    comp_t.append(x)
                    comp_up.append(y)
        r = common.ratio(berth_t, comp_t)
        results[n] = {"berth": berth_t, "berth_server": berth_srv, "compose": comp_t, "compose_up": comp_up,
                      "floor": floor_t, "ratio": r}
        log(f"N={n}: engine floor (parallel create+start via the API, until every /healthz answers)"
            f" {common.fmt_stats(floor_t)}")
        log(f"N={n}: berth apply {common.fmt_stats(berth_t)}; server-side converged {common.fmt_stats(berth_srv)}")
        log(f"N={n}: compose healthy {common.fmt_stats(comp_t)}; `up -d` alone {common.fmt_stats(comp_up)}")
        log(f"N={n}: ratio Berth/Compose (medians) = {r:.2f}  (goal <= 0.5: {'met' if r <= 0.5 else 'NOT met'})")
    return results


def summary_rows(results):
    rows = []
    for n, r in results.items():
        rows.append([f"1. N={n} healthy", "docker-compose", common.fmt_stats(r["berth"]),
                     common.fmt_stats(r["compose"]), f"{r['ratio']:.2f}", "<= 0.5",
                     "yes" if r["ratio"] <= 0.5 else "NO"])
    return rows


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--counts", default="10,30")
    args = ap.parse_args()
    b = common.Bench(build=not args.no_build, berth_log=args.berth_log)
    try:
        b.print_versions()
        b.prepare()
        b.start_berth()
        res = bench(b, [int(x) for x in args.counts.split(",")], args.reps)
        print()
        print(common.table(summary_rows(res), ["benchmark", "peer", "Berth", "peer", "ratio", "goal", "met"]))
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
